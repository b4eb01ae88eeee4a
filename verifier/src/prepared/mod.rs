//! A verified token's Datalog, loaded once and run against each request.
//!
//! biscuit-auth's `AuthorizerBuilder::build` converts every block from its
//! protobuf form and translates its symbols into a fresh table on every
//! authorization; that is most of the cost of authorizing an already-parsed
//! token (~30 µs of ~33 µs for a 2-hop chain here). A cached token does this
//! once: its facts go into a Datalog [`World`] and its checks are translated
//! into one symbol table. Per request the world is cloned, the request's
//! facts are added with the authorizer's origin, and every check of every
//! block runs through biscuit-auth's own Datalog engine (`World::query_match`),
//! with the origins biscuit-auth would trust for it.
//!
//! Only tokens within Mandate's vocabulary take this path: no rules (§6
//! refuses them anyway) and no scope annotations on blocks or check queries
//! (so every check trusts exactly the authorizer, the authority block and
//! its own block). Any other token, and every request the loaded checks
//! deny, is decided by biscuit-auth's full authorizer: the loaded path can
//! only confirm an allow, and a denial keeps biscuit-auth's error for the
//! explanation. `prepared_agrees_with_biscuit` tests the two against each
//! other.
//!
//! Faster still, a token whose checks are all Mandate's own (no approval
//! rules, no raw Datalog: nearly every token) is decided without Datalog at
//! all: [`native`] reads its checks back into grants, keeps them only when
//! they re-encode to the very same checks, and walks them per request in
//! biscuit-auth's evaluation order.

mod native;

use crate::limits::Limits;
use biscuit_auth::builder::Fact;
use biscuit_auth::builder::{CheckKind, Convert};
use biscuit_auth::datalog::{Check, Origin, RunLimits, SymbolTable, TrustedOrigins, World};
use biscuit_auth::error::{FailedBlockCheck, FailedCheck, Logic, MatchedPolicy, RunLimit, Token};
use biscuit_auth::{AuthorizerBuilder, Biscuit};
use mandate_spec::{BlockContent, Request};
use std::time::Instant;

/// The token's Datalog, kept with a verified token.
pub(crate) struct Prepared {
    biscuit: Biscuit,
    /// The token's checks decided in Rust, when all are Mandate's own.
    native: Option<native::Native>,
    /// Else its Datalog loaded once, when within the vocabulary.
    loaded: Option<Loaded>,
}

struct Loaded {
    world: World,
    symbols: SymbolTable,
    checks: Vec<LoadedCheck>,
}

struct LoadedCheck {
    block: usize,
    id: usize,
    check: Check,
    trusted: TrustedOrigins,
}

impl Prepared {
    /// Loads `blocks` (decoded from the same verified bytes as `biscuit`)
    /// when they are within the vocabulary and are all of its blocks, else
    /// keeps only `biscuit`.
    pub(crate) fn load(biscuit: Biscuit, blocks: &[BlockContent]) -> Prepared {
        let complete = blocks.len() == biscuit.block_count()
            && blocks.iter().enumerate().all(|(i, b)| b.index == i);
        let native = if complete && !blocks.is_empty() {
            native::Native::load(blocks)
        } else {
            None
        };
        let loaded = if complete && native.is_none() {
            load(blocks)
        } else {
            None
        };
        Prepared {
            biscuit,
            native,
            loaded,
        }
    }

    /// Keeps `biscuit` only: every request runs biscuit-auth's authorizer.
    pub(crate) fn unloaded(biscuit: Biscuit) -> Prepared {
        Prepared {
            biscuit,
            native: None,
            loaded: None,
        }
    }

    /// The token's number of blocks.
    pub(crate) fn block_count(&self) -> usize {
        self.biscuit.block_count()
    }

    /// Whether requests run on the loaded world (else natively or on
    /// biscuit-auth's authorizer every time).
    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    /// Whether requests are decided natively.
    #[cfg(test)]
    pub(crate) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// The token as biscuit-auth parsed it.
    pub(crate) fn biscuit(&self) -> &Biscuit {
        &self.biscuit
    }

    /// Runs every check of every block with the request's facts and `extra`
    /// verifier facts (policy `allow if true`) within `limits`: `Ok` when
    /// all pass.
    pub(crate) fn run(
        &self,
        request: &Request,
        extra: &[Fact],
        limits: Limits,
    ) -> Result<(), Token> {
        if let Some(native) = &self.native {
            return match native.allows(request, extra) {
                Some(true) => Ok(()),
                _ => self.run_biscuit(request, extra, limits),
            };
        }
        match &self.loaded {
            Some(loaded) if loaded.run(request, extra, limits).is_ok() => Ok(()),
            _ => self.run_biscuit(request, extra, limits),
        }
    }

    /// Whether every check passes: the loaded world's answer when the token
    /// is loaded (exact, tested against biscuit-auth's), else biscuit-auth's.
    /// Unlike [`Prepared::run`], a denial is not decided a second time to
    /// get biscuit-auth's explanation: for questions that need only yes or
    /// no (whether an approval was relied on, §14.4).
    pub(crate) fn passes(&self, request: &Request, extra: &[Fact], limits: Limits) -> bool {
        if let Some(allowed) = self.native.as_ref().and_then(|n| n.allows(request, extra)) {
            return allowed;
        }
        match &self.loaded {
            Some(loaded) => loaded.run(request, extra, limits).is_ok(),
            None => self.run_biscuit(request, extra, limits).is_ok(),
        }
    }

    /// The same decision through biscuit-auth's authorizer alone.
    pub(crate) fn run_biscuit(
        &self,
        request: &Request,
        extra: &[Fact],
        limits: Limits,
    ) -> Result<(), Token> {
        let mut builder = AuthorizerBuilder::new();
        for fact in request.facts().into_iter().chain(extra.iter().cloned()) {
            builder = builder.fact(fact)?;
        }
        let mut authorizer = builder
            .policy("allow if true")?
            .set_limits(run_limits(limits))
            .build(&self.biscuit)?;
        authorizer.authorize().map(|_| ())
    }
}

fn run_limits(limits: Limits) -> RunLimits {
    RunLimits {
        max_facts: limits.max_facts,
        max_iterations: limits.max_iterations,
        max_time: limits.max_time,
    }
}

fn load(blocks: &[BlockContent]) -> Option<Loaded> {
    let plain = !blocks.is_empty()
        && blocks.iter().all(|b| {
            b.rule_heads.is_empty()
                && b.scopes.is_empty()
                && b.checks
                    .iter()
                    .all(|c| c.queries.iter().all(|q| q.scopes.is_empty()))
        });
    if !plain {
        return None;
    }
    let mut symbols = SymbolTable::new();
    let mut world = World::new();
    let mut checks = Vec::new();
    for block in blocks {
        let mut origin = Origin::default();
        origin.insert(block.index);
        for fact in &block.facts {
            world.facts.insert(&origin, fact.convert(&mut symbols));
        }
        // What biscuit-auth trusts for a query without scopes in block i:
        // the authorizer, the authority block and block i.
        let trusted: TrustedOrigins = [usize::MAX, 0, block.index].into_iter().collect();
        for (id, check) in block.checks.iter().enumerate() {
            checks.push(LoadedCheck {
                block: block.index,
                id,
                check: check.convert(&mut symbols),
                trusted: trusted.clone(),
            });
        }
    }
    Some(Loaded {
        world,
        symbols,
        checks,
    })
}

impl Loaded {
    fn run(&self, request: &Request, extra: &[Fact], limits: Limits) -> Result<(), Token> {
        let start = Instant::now();
        let mut symbols = self.symbols.clone();
        let mut world = self.world.clone();
        let mut authorizer = Origin::default();
        authorizer.insert(usize::MAX);
        for fact in request.facts().iter().chain(extra) {
            world.facts.insert(&authorizer, fact.convert(&mut symbols));
        }
        world.run_with_limits(&symbols, run_limits(limits))?;
        let deadline = start + limits.max_time;
        let mut failed = Vec::new();
        for c in &self.checks {
            let mut passed = false;
            for query in &c.check.queries {
                let matched = match c.check.kind {
                    CheckKind::One => {
                        world.query_match(query.clone(), c.block, &c.trusted, &symbols)?
                    }
                    CheckKind::All => world.query_match_all(query.clone(), &c.trusted, &symbols)?,
                    CheckKind::Reject => {
                        !world.query_match(query.clone(), c.block, &c.trusted, &symbols)?
                    }
                };
                if Instant::now() >= deadline {
                    return Err(Token::RunLimit(RunLimit::Timeout));
                }
                if matched {
                    passed = true;
                    break;
                }
            }
            if !passed {
                failed.push(FailedCheck::Block(FailedBlockCheck {
                    block_id: c.block as u32,
                    check_id: c.id as u32,
                    rule: symbols.print_check(&c.check),
                }));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Token::FailedLogic(Logic::Unauthorized {
                policy: MatchedPolicy::Allow(0),
                checks: failed,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;
    use mandate_attenuate::{delegate, narrow, Delegation};
    use mandate_issuer::{Issuer, MintRequest};
    use mandate_spec::{decode_verified_blocks, vocab, Grant};
    use std::time::{Duration, SystemTime};

    fn grant(allow: &[&str], wh: &[&str]) -> Grant {
        Grant::parse(allow, wh).unwrap()
    }

    /// A root (read,list on customers, rows<=100, s in a|b), a hop to
    /// `read` only, and a first-party narrowing to customer 42.
    fn token() -> (Biscuit, Vec<u8>) {
        let issuer = Issuer::new(KeyPair::new());
        let (a, b) = (KeyPair::new(), KeyPair::new());
        let root = issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "a".into(),
                agent_key: a.public(),
                grant: grant(&["read,list:/api/customers/*"], &["rows<=100", "s in x|y"]),
                ttl: Duration::from_secs(3600),
                purpose: Some("p".into()),
                max_depth: None,
            })
            .unwrap();
        let hop = delegate(
            &root.token,
            &a,
            &Delegation {
                agent: "b".into(),
                agent_key: b.public(),
                grant: grant(&["read:/api/customers/*"], &[]),
                ttl: Some(Duration::from_secs(600)),
                purpose: None,
            },
        )
        .unwrap();
        let narrowed = narrow(&hop.token, &grant(&["read:/api/customers/42"], &[]), None).unwrap();
        let (_, key) = issuer.keys().public_keys()[0];
        let biscuit = Biscuit::from(&narrowed.token, key).unwrap();
        (biscuit, narrowed.token)
    }

    #[test]
    fn the_native_path_and_the_loaded_world_decide_as_biscuit_does() {
        let (biscuit, bytes) = token();
        let blocks = decode_verified_blocks(&bytes, &biscuit).unwrap();
        let p = Prepared::load(biscuit, &blocks);
        // Every check is Mandate's own: decided natively, nothing loaded.
        assert!(p.is_native());
        assert!(!p.is_loaded());
        let native = native::Native::load(&blocks).unwrap();
        let loaded = load(&blocks).unwrap();
        let limits = Limits::default();
        let base = || {
            Request::new("read", "/api/customers/42")
                .param("rows", 10)
                .param("s", "x")
        };
        let cases = [
            (base(), true),
            (base().param("rows", 101), false),
            (base().param("s", "z"), false),
            (base().param("rows", "ten"), false),
            (
                Request::new("read", "/api/customers/42").param("s", "x"),
                false,
            ),
            (
                Request::new("list", "/api/customers/42")
                    .param("rows", 1)
                    .param("s", "x"),
                false,
            ),
            (
                Request::new("read", "/api/customers/43")
                    .param("rows", 1)
                    .param("s", "x"),
                false,
            ),
            (
                base().at(SystemTime::now() + Duration::from_secs(700)),
                false,
            ),
        ];
        for (req, allowed) in cases {
            let by_loaded = loaded.run(&req, &[], limits);
            let full = p.run_biscuit(&req, &[], limits);
            assert_eq!(by_loaded.is_ok(), allowed, "{req:?}: {by_loaded:?}");
            assert_eq!(full.is_ok(), allowed, "{req:?}: {full:?}");
            assert_eq!(native.allows(&req, &[]), Some(allowed), "{req:?}");
            assert_eq!(p.run(&req, &[], limits).is_ok(), allowed);
            assert_eq!(p.passes(&req, &[], limits), allowed);
        }
    }

    /// A token of the given blocks' Datalog (authority first, then
    /// first-party blocks), as the verifier would load it.
    fn token_of(blocks: &[&str]) -> Prepared {
        let root = KeyPair::new();
        let mut b = Biscuit::builder()
            .code(blocks[0])
            .unwrap()
            .build(&root)
            .unwrap();
        for code in &blocks[1..] {
            b = b
                .append(
                    biscuit_auth::builder::BlockBuilder::new()
                        .code(code)
                        .unwrap(),
                )
                .unwrap();
        }
        let bytes = b.to_vec().unwrap();
        let biscuit = Biscuit::from(&bytes, root.public()).unwrap();
        let decoded = decode_verified_blocks(&bytes, &biscuit).unwrap();
        Prepared::load(biscuit, &decoded)
    }

    #[test]
    fn only_checks_that_re_encode_exactly_are_decided_natively() {
        let canonical = r#"check if time($time), operation("read"), resource("/api/customers/", $resource), $time <= 2100-01-01T00:00:00Z;"#;
        let read = Request::new("read", "/api/customers/42");
        let limits = Limits::default();
        let p = token_of(&[canonical]);
        assert!(p.is_native());
        assert!(p.run(&read, &[], limits).is_ok());
        // The same check with its expression and predicates reordered
        // means the same, but is not the encoder's: left to Datalog.
        let reordered = r#"check if operation("read"), time($time), resource("/api/customers/", $resource), $time <= 2100-01-01T00:00:00Z;"#;
        let p = token_of(&[reordered]);
        assert!(!p.is_native() && p.is_loaded());
        assert!(p.run(&read, &[], limits).is_ok());
        // A block defining a request predicate (which would make a later
        // check match without the request): never native, and Datalog
        // sees the fact, as biscuit-auth does.
        let forged = r#"operation("delete");"#;
        let delete = r#"check if operation("delete");"#;
        let p = token_of(&[&format!("{forged} {canonical}"), delete]);
        assert!(!p.is_native());
        assert!(p.run(&read, &[], limits).is_ok());
        // Raw Datalog next to a canonical check: the token is not native.
        let p = token_of(&[canonical, r#"check if param("to", $to), $to != "ceo";"#]);
        assert!(!p.is_native() && p.is_loaded());
        assert!(p.run(&read.clone().param("to", "ap"), &[], limits).is_ok());
        assert!(p
            .run(&read.clone().param("to", "ceo"), &[], limits)
            .is_err());
    }

    #[test]
    fn the_holder_and_limits_guards_need_the_verifier_s_facts() {
        use biscuit_auth::builder::{bytes as b, fact, int, pred, var};
        let canonical = r#"check if time($time), operation("read"), resource("/api/customers/", $resource), $time <= 2100-01-01T00:00:00Z;"#;
        let p = token_of(&[
            canonical,
            "check if holder($holder);",
            "check if limits_enforced(1);",
        ]);
        assert!(p.is_native());
        let read = Request::new("read", "/api/customers/42");
        let limits = Limits::default();
        let holder = fact(vocab::HOLDER, &[b(&[7; 32])]);
        let enforced = fact(vocab::LIMITS_ENFORCED, &[int(1)]);
        let other = fact(vocab::LIMITS_ENFORCED, &[int(2)]);
        for (extra, allowed) in [
            (vec![], false),
            (vec![holder.clone()], false),
            (vec![enforced.clone()], false),
            (vec![holder.clone(), other], false),
            (vec![holder.clone(), enforced.clone()], true),
        ] {
            assert_eq!(p.run(&read, &extra, limits).is_ok(), allowed, "{extra:?}");
            assert_eq!(
                p.run_biscuit(&read, &extra, limits).is_ok(),
                allowed,
                "{extra:?}"
            );
            assert_eq!(p.passes(&read, &extra, limits), allowed, "{extra:?}");
        }
        // The same guards with a head variable their bodies do not bind
        // never pass in biscuit-auth: they are not Mandate's, not native.
        for body in [
            pred(vocab::HOLDER, &[var("holder")]),
            pred(vocab::LIMITS_ENFORCED, &[int(1)]),
        ] {
            use biscuit_auth::builder::{Check, CheckKind, Rule};
            let query = Rule::new(
                pred("query", &[var("x")]),
                vec![body.clone()],
                vec![],
                vec![],
            );
            let odd = Check {
                queries: vec![query],
                kind: CheckKind::One,
            };
            let root = KeyPair::new();
            let token = Biscuit::builder()
                .code(canonical)
                .unwrap()
                .check(odd)
                .unwrap()
                .build(&root)
                .unwrap();
            let bytes = token.to_vec().unwrap();
            let biscuit = Biscuit::from(&bytes, root.public()).unwrap();
            let decoded = decode_verified_blocks(&bytes, &biscuit).unwrap();
            let odd = Prepared::load(biscuit, &decoded);
            assert!(!odd.is_native(), "{body:?}");
            let both = [holder.clone(), enforced.clone()];
            assert!(odd.run(&read, &both, limits).is_err(), "{body:?}");
            assert!(!odd.passes(&read, &both, limits), "{body:?}");
        }
        // A verifier fact named like a request predicate is never judged
        // natively (biscuit-auth would match it).
        let n = p.native.as_ref().unwrap();
        let op = fact(vocab::OPERATION, &[biscuit_auth::builder::string("read")]);
        assert_eq!(n.allows(&read, &[op, holder, enforced]), None);
    }

    #[test]
    fn incomplete_or_missing_blocks_are_never_loaded() {
        let (biscuit, bytes) = token();
        let blocks = decode_verified_blocks(&bytes, &biscuit).unwrap();
        let req = Request::new("write", "/nothing");
        // No blocks at all would be a world without checks: never loaded.
        let p = Prepared::load(biscuit.clone(), &[]);
        assert!(!p.is_loaded() && !p.is_native());
        assert!(p.run(&req, &[], Limits::default()).is_err());
        // Some blocks only: never loaded either.
        let p = Prepared::load(biscuit, &blocks[..1]);
        assert!(!p.is_loaded() && !p.is_native());
        assert!(p.run(&req, &[], Limits::default()).is_err());
    }
}
