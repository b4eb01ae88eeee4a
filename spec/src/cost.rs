//! The cost bound of a token (specification §6, rule 1c): what deciding one
//! request with it can cost at most, computed from the token alone, before
//! any Datalog runs.
//!
//! biscuit-auth looks at its time limit only between queries, so one query
//! that joins many facts, or evaluates an expression over large values many
//! times, runs to its end whatever the limit. Mandate bounds that work by
//! construction instead: every block's content is limited (§6 rules 1–1b),
//! and the sum over every check query of what evaluating it can cost must stay
//! under [`MAX_COST`]. The wall-clock limit of §7.1 is then only a backstop.
//!
//! The bound is deliberately simple so that any implementation computes the
//! same number (§6 rule 1c gives the formula):
//!
//! - every block costs its signature verifications (one for a first-party
//!   block, two for a third-party block) and the loading of its content,
//!   which the verifier and biscuit-auth each convert several times (sets:
//!   a sorted insertion per element each time);
//! - a query's body predicates are joined left to right; each level scans
//!   every fact the query can see, once per combination of the levels before
//!   it;
//! - each combination of body facts evaluates every expression once; an
//!   expression's operations each cost at most the size of every value it
//!   names (values only grow by combining them).
//!
//! One unit is about 20 ns of one core here (`cargo bench -p mandate-tests
//! --bench worst_case` prints the units and the time of each hostile shape).

use crate::chain::BlockContent;
use crate::request::MAX_PARAMS;
use crate::vocab;
use biscuit_auth::builder::{Binary, Op, Predicate, Rule, Scope, Term, Unary};
use biscuit_auth::PublicKey;

/// Most blocks a token may have (root, hops, narrowing blocks, approvals).
/// Every block costs at least one Ed25519 verification before anything else
/// can be checked, a third-party block two.
pub const MAX_BLOCKS: usize = 16;

/// Most cost units (see the module docs) one token may need to decide a
/// request. A canonical hop costs about 6 000 (most of it its two
/// signatures).
pub const MAX_COST: u64 = 200_000;

/// A first-party block: one Ed25519 verification, and its container.
const FIRST_PARTY_BLOCK: u64 = 2_500;

/// A third-party block: two Ed25519 verifications (the external signature
/// and the block's own).
const THIRD_PARTY_BLOCK: u64 = 5_000;

/// Most symbols (distinct strings) a token's blocks may add: biscuit-auth
/// finds a string in its symbol table by scanning the table.
pub const MAX_SYMBOLS: usize = 1024;

/// biscuit-auth's default symbols (`read`, `write`, `resource`, …).
const DEFAULT_SYMBOLS: usize = 28;

/// Strings a request adds: an action, a resource, and a name and a value
/// per parameter.
const REQUEST_STRINGS: usize = 2 + 2 * MAX_PARAMS;

/// Symbols compared per unit when a string is looked up in the table.
const SCAN_PER_UNIT: u64 = 64;

/// Symbols compared per unit when an expression interns a string (during
/// evaluation, a slower scan: each entry is a `String` compared in full).
const INTERN_PER_UNIT: u64 = 8;

/// One combination of body facts: binding its variables and starting its
/// expressions' evaluation.
const COMBINATION: u64 = 20;

/// How many times a request may evaluate a token's checks.
const EVALUATIONS: u64 = 2;

/// Loading one term (a fact's, a predicate's, an operation's).
const TERM_LOAD: u64 = 2;

/// Loading one element of a set, array or map: a sorted insertion, done
/// once per conversion.
const ELEMENT_LOAD: u64 = 24;

/// Loading one check query, beyond its terms (and showing it, when it is
/// raw Datalog).
const QUERY_LOAD: u64 = 40;

/// Facts the verifier itself may supply to a request (§2.1): one
/// `operation`, two `resource`, one `time`, one `request_digest`, one
/// `holder`, and the parameters.
const REQUEST_FACTS: u64 = 6 + MAX_PARAMS as u64;

/// What a variable bound to a parameter's value or a purpose is counted as,
/// in bytes: the largest value either may hold (§3.5).
const VARIABLE_BYTES: u64 = 4096;

/// What any other variable is counted as: names, resources and ids are at
/// most 256 bytes, keys and digests 32, dates and integers 8.
const SMALL_VARIABLE_BYTES: u64 = 256;

/// Bytes per cost unit when an operation handles a value.
const BYTES_PER_UNIT: u64 = 64;

/// Why a token's checks are refused before they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CostError {
    /// The block at fault (for the total, the block where it went over).
    pub(crate) block: usize,
    /// What is wrong, in words.
    pub(crate) message: String,
}

/// Operations whose cost grows faster than their size, refused in tokens:
/// `.all()` / `.any()` run a closure per element (nested, the elements
/// multiply), `.matches()` compiles a regular expression on every
/// evaluation, and extern functions are not the token's to call.
fn refused_op(op: &Op) -> Option<&'static str> {
    match op {
        Op::Binary(Binary::All) | Op::Binary(Binary::Any) => {
            Some(".all() and .any() (a closure per element)")
        }
        Op::Binary(Binary::Regex) => Some(".matches() (regular expressions)"),
        // Its result is a new string, interned by a scan of the symbol
        // table; no grant needs it.
        Op::Unary(Unary::TypeOf) => Some(".type()"),
        Op::Binary(Binary::Ffi(_)) | Op::Unary(Unary::Ffi(_)) => Some("extern calls"),
        Op::Closure(params, _) if !params.is_empty() => {
            Some("closures with parameters (.all(), .any(): a closure per element)")
        }
        _ => None,
    }
}

/// The size of a literal value, in bytes (collections: their elements).
fn term_bytes(term: &Term) -> u64 {
    match term {
        Term::Str(s) | Term::Variable(s) | Term::Parameter(s) => s.len() as u64,
        Term::Bytes(b) => b.len() as u64,
        Term::Set(s) => s.iter().map(|t| 8 + term_bytes(t)).sum(),
        Term::Array(a) => a.iter().map(|t| 8 + term_bytes(t)).sum(),
        Term::Map(m) => m.values().map(|t| 16 + term_bytes(t)).sum(),
        _ => 8,
    }
}

/// The variables of a query that can only hold small values: bound by
/// some body predicate at a position other than `param`'s value or
/// `purpose`'s text.
fn small_variables(body: &[Predicate]) -> Vec<&str> {
    let mut small = Vec::new();
    for p in body {
        for (i, t) in p.terms.iter().enumerate() {
            let large = (p.name == vocab::PARAM && i == 1) || p.name == vocab::PURPOSE;
            if let (Term::Variable(v), false) = (t, large) {
                small.push(v.as_str());
            }
        }
    }
    small
}

/// Cost of evaluating one expression once, or why it is refused. `intern`
/// is what one `+` costs beyond its operands: a string it makes is looked up
/// in the symbol table by a scan.
fn expression_cost(ops: &[Op], small: &[&str], intern: u64) -> Result<u64, &'static str> {
    fn walk(
        ops: &[Op],
        small: &[&str],
        count: &mut u64,
        bytes: &mut u64,
    ) -> Result<(), &'static str> {
        for op in ops {
            if let Some(why) = refused_op(op) {
                return Err(why);
            }
            *count += 1;
            match op {
                Op::Value(Term::Variable(v)) if small.contains(&v.as_str()) => {
                    *bytes += SMALL_VARIABLE_BYTES
                }
                Op::Value(Term::Variable(_)) => *bytes += VARIABLE_BYTES,
                Op::Value(t) => *bytes += term_bytes(t),
                Op::Closure(_, body) => walk(body, small, count, bytes)?,
                _ => {}
            }
        }
        Ok(())
    }
    let (mut count, mut bytes) = (0u64, 0u64);
    walk(ops, small, &mut count, &mut bytes)?;
    Ok(count
        .saturating_mul(1 + bytes / BYTES_PER_UNIT)
        .saturating_add(count_adds(ops).saturating_mul(intern)))
}

/// Facts of the request predicates (§2.1) that can match `p`.
fn request_matches(p: &Predicate) -> u64 {
    let arity = p.terms.len();
    match (p.name.as_str(), arity) {
        (vocab::OPERATION, 1)
        | (vocab::RESOURCE, 1)
        | (vocab::RESOURCE, 2)
        | (vocab::TIME, 1)
        | (vocab::REQUEST_DIGEST, 1)
        | (vocab::HOLDER, 1)
        | (vocab::LIMITS_ENFORCED, 1) => 1,
        // Parameters are unique by name: a literal name matches one at most.
        (vocab::PARAM, 2) if matches!(p.terms[0], Term::Str(_)) => 1,
        (vocab::PARAM, 2) => MAX_PARAMS as u64,
        _ => 0,
    }
}

/// Whether a token fact can match body predicate `p`: same name and arity,
/// and equal terms wherever `p` has a literal.
fn fact_matches(p: &Predicate, fact: &Predicate) -> bool {
    p.name == fact.name
        && p.terms.len() == fact.terms.len()
        && p.terms
            .iter()
            .zip(&fact.terms)
            .all(|(pt, ft)| matches!(pt, Term::Variable(_)) || pt == ft)
}

/// The blocks a query of block `block` sees (besides the request's facts):
/// by default the root and its own block; with `trusting` scopes its own
/// block, the root for `authority`, and the blocks signed by each key named.
fn visible_blocks(
    blocks: &[BlockContent],
    block: usize,
    scopes: &[Scope],
) -> Result<Vec<usize>, String> {
    let mut out = vec![block];
    if scopes.is_empty() {
        out.push(0);
    }
    for scope in scopes {
        match scope {
            Scope::Authority => out.push(0),
            Scope::PublicKey(key) => out.extend(signed_by(blocks, key)),
            Scope::Previous => {
                return Err(
                    "a check may not use `trusting previous` (§4.3): earlier blocks \
                            could supply the facts it asks for"
                        .into(),
                )
            }
            Scope::Parameter(_) => return Err("a check scope is an unbound parameter".into()),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn signed_by<'a>(
    blocks: &'a [BlockContent],
    key: &'a PublicKey,
) -> impl Iterator<Item = usize> + 'a {
    blocks
        .iter()
        .filter(move |b| b.external_key.as_ref() == Some(key))
        .map(|b| b.index)
}

/// What loading `term` costs (collections: each element).
fn term_load(term: &Term) -> u64 {
    let elements = |n: usize| n as u64 * ELEMENT_LOAD;
    match term {
        Term::Set(s) => elements(s.len()) + s.iter().map(term_load).sum::<u64>(),
        Term::Array(a) => elements(a.len()) + a.iter().map(term_load).sum::<u64>(),
        Term::Map(m) => elements(m.len()) + m.values().map(term_load).sum::<u64>(),
        Term::Str(s) | Term::Variable(s) => TERM_LOAD + s.len() as u64 / BYTES_PER_UNIT,
        Term::Bytes(b) => TERM_LOAD + b.len() as u64 / BYTES_PER_UNIT,
        _ => TERM_LOAD,
    }
}

fn ops_load(ops: &[Op]) -> u64 {
    ops.iter()
        .map(|op| match op {
            Op::Value(t) => term_load(t),
            Op::Closure(_, body) => TERM_LOAD + ops_load(body),
            _ => TERM_LOAD,
        })
        .sum()
}

/// What verifying and loading block `b` costs, before any query runs.
fn block_load(b: &BlockContent) -> u64 {
    let signatures = if b.external_key.is_some() {
        THIRD_PARTY_BLOCK
    } else {
        FIRST_PARTY_BLOCK
    };
    let facts: u64 = b
        .facts
        .iter()
        .map(|f| TERM_LOAD + f.predicate.terms.iter().map(term_load).sum::<u64>())
        .sum();
    let checks: u64 = b
        .checks
        .iter()
        .flat_map(|c| c.queries.iter())
        .map(|q| {
            QUERY_LOAD
                + q.body
                    .iter()
                    .map(|p| TERM_LOAD + p.terms.iter().map(term_load).sum::<u64>())
                    .sum::<u64>()
                + q.expressions.iter().map(|e| ops_load(&e.ops)).sum::<u64>()
        })
        .sum();
    signatures + facts + checks
}

/// Cost of one check query of block `block`, with `symbols` strings in the
/// symbol table.
fn query_cost(
    blocks: &[BlockContent],
    block: usize,
    q: &Rule,
    symbols: u64,
) -> Result<u64, String> {
    let visible = visible_blocks(blocks, block, &q.scopes)?;
    let facts = || visible.iter().flat_map(|&i| blocks[i].facts.iter());
    let seen = REQUEST_FACTS + facts().count() as u64;
    // Scan: each level goes over every visible fact once per combination of
    // the levels before it.
    let (mut scan, mut combos) = (0u64, 1u64);
    for p in &q.body {
        scan = scan.saturating_add(combos.saturating_mul(seen));
        let matching =
            request_matches(p) + facts().filter(|f| fact_matches(p, &f.predicate)).count() as u64;
        combos = combos.saturating_mul(matching);
    }
    let small = small_variables(&q.body);
    // Each `+` may intern a new string: a scan of the table and of the
    // strings the query made before.
    let adds: u64 = q.expressions.iter().map(|e| count_adds(&e.ops)).sum();
    let intern = (symbols + adds) / INTERN_PER_UNIT;
    let mut per_combination = COMBINATION;
    for e in &q.expressions {
        let cost = expression_cost(&e.ops, &small, intern)
            .map_err(|why| format!("a check uses {why}, whose cost is not bounded by its size"))?;
        per_combination = per_combination.saturating_add(cost);
    }
    Ok(scan.saturating_add(combos.saturating_mul(per_combination)))
}

fn count_adds(ops: &[Op]) -> u64 {
    ops.iter()
        .map(|op| match op {
            Op::Binary(Binary::Add) => 1,
            Op::Closure(_, body) => count_adds(body),
            _ => 0,
        })
        .sum()
}

/// The cost bound of a token whose blocks are `blocks` (§6 rule 1c): the
/// sum over every check query; refused above [`MAX_COST`], or when a block
/// has its own scope annotations or a check uses an operation whose cost is
/// not bounded by its size.
pub(crate) fn token_cost(blocks: &[BlockContent]) -> Result<u64, CostError> {
    cost_parts(blocks).map(|c| c.total())
}

/// A token's cost bound, in its two parts (§6 rule 1c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Verifying and loading its blocks: paid once per token (a verifier
    /// that caches verified tokens pays it once).
    pub load: u64,
    /// Evaluating its checks, counted for the two evaluations a request may
    /// need: paid on every request.
    pub evaluation: u64,
}

impl Cost {
    /// The bound: both parts.
    pub fn total(self) -> u64 {
        self.load.saturating_add(self.evaluation)
    }
}

fn cost_parts(blocks: &[BlockContent]) -> Result<Cost, CostError> {
    if blocks.len() > MAX_BLOCKS {
        return Err(CostError {
            block: MAX_BLOCKS,
            message: format!(
                "the token has {} blocks; at most {MAX_BLOCKS} are allowed",
                blocks.len()
            ),
        });
    }
    let own: usize = blocks.iter().map(|b| b.symbols).sum();
    if own > MAX_SYMBOLS {
        return Err(CostError {
            block: blocks.len().saturating_sub(1),
            message: format!(
                "the token's blocks hold {own} symbols (strings); at most {MAX_SYMBOLS} are \
                 allowed"
            ),
        });
    }
    // Every string the Datalog engine may look up scans this many: its
    // default symbols, the token's, and the request's.
    let symbols = (DEFAULT_SYMBOLS + own + REQUEST_STRINGS) as u64;
    let mut cost = Cost {
        // The request's strings go into the table, each after a scan.
        load: REQUEST_STRINGS as u64 * symbols / SCAN_PER_UNIT,
        evaluation: 0,
    };
    for b in blocks {
        cost.load = cost.load.saturating_add(block_load(b));
        // A third-party block's symbols are translated into the verifier's
        // table, each after a scan of it.
        if b.external_key.is_some() {
            cost.load = cost
                .load
                .saturating_add(b.symbols as u64 * symbols / SCAN_PER_UNIT);
        }
        if !b.scopes.is_empty() {
            return Err(CostError {
                block: b.index,
                message: "a block may not carry scope annotations (`trusting …` on the block)"
                    .into(),
            });
        }
        for check in &b.checks {
            for q in &check.queries {
                let one = query_cost(blocks, b.index, q, symbols).map_err(|message| CostError {
                    block: b.index,
                    message,
                })?;
                // A verifier may evaluate a token's checks twice for one
                // request (§14.4: again without the digest, to know whether
                // an approval was relied on).
                cost.evaluation = cost
                    .evaluation
                    .saturating_add(one.saturating_mul(EVALUATIONS));
            }
        }
        if cost.total() > MAX_COST {
            return Err(CostError {
                block: b.index,
                message: format!(
                    "deciding a request with this token could cost more than {MAX_COST} \
                     units (§6 rule 1c): too many blocks, facts joined, or values too large"
                ),
            });
        }
    }
    Ok(cost)
}

/// The number of blocks in a serialized token, read from its container
/// without verifying anything: a verifier refuses a token with more than
/// [`MAX_BLOCKS`] before spending a signature verification on it.
pub fn block_count(token: &[u8]) -> Result<usize, crate::SpecError> {
    use prost::Message;
    let container = biscuit_auth::format::schema::Biscuit::decode(token)
        .map_err(|e| crate::SpecError::Biscuit(format!("token does not decode: {e}")))?;
    Ok(1 + container.blocks.len())
}

/// The cost bound (§6 rule 1c) of a token's decoded blocks, or `None` when
/// its checks are refused (over [`MAX_COST`], too many blocks, or an
/// operation or scope the rule does not allow).
pub fn cost_bound(blocks: &[BlockContent]) -> Option<u64> {
    token_cost(blocks).ok()
}

/// [`cost_bound`] in its parts: what loading the token costs once, and what
/// each request costs.
pub fn cost_of(blocks: &[BlockContent]) -> Option<Cost> {
    cost_parts(blocks).ok()
}
