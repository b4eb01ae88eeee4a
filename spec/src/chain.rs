//! Reading a token's blocks and the delegation chain they form
//! (specification §3 "Token layout" and §6 "Chain integrity").
//!
//! Blocks are decoded from the token bytes with Biscuit's own protobuf schema
//! and symbol tables, so every string is read as the term it is (never
//! re-parsed from printed Datalog, which Biscuit prints without escaping).
//! Decoding does not verify signatures: the verifier does that with Biscuit
//! first; `inspect` without a root key says it did not.

use crate::datalog::{decode_check, is_holder_check};
use crate::grant::{rfc3339, Grant};
use crate::keys::public_key_from_bytes;
use crate::{vocab, SpecError};
use biscuit_auth::builder::{Check, Convert, Fact, Scope, Term};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema::public_key::Algorithm;
use biscuit_auth::format::{convert::proto_block_to_token_block, schema};
use biscuit_auth::{Biscuit, PublicKey};
use prost::Message;
use serde::Serialize;
use std::fmt;
use time::OffsetDateTime;

/// The content of one block, decoded.
#[derive(Debug, Clone)]
pub struct BlockContent {
    /// Position in the token (0 = authority).
    pub index: usize,
    /// The key that signed this block as a third-party block, if any.
    pub external_key: Option<PublicKey>,
    /// That key's signature (over the block and the previous block's
    /// signature), if any: unlike the revocation id, the holder cannot
    /// change it by appending the same block again.
    pub external_signature: Option<Vec<u8>>,
    /// The block's facts.
    pub facts: Vec<Fact>,
    /// Names of the predicates the block's rules produce.
    pub rule_heads: Vec<String>,
    /// The block's checks.
    pub checks: Vec<Check>,
    /// The block's own scope annotations (`trusting …` on the block); empty
    /// for every block Mandate writes.
    pub scopes: Vec<Scope>,
    /// The block's revocation id (its signature, 64 bytes for Ed25519).
    pub revocation_id: Vec<u8>,
    /// How many symbols (strings) the block adds to a symbol table: a
    /// verifier's Datalog engine looks strings up by scanning its table
    /// (§6 rule 1c counts them).
    pub symbols: usize,
}

/// Decodes every block of a serialized token (raw bytes, not base64).
pub fn decode_blocks(token: &[u8]) -> Result<Vec<BlockContent>, SpecError> {
    decode(token, None)
}

/// [`decode_blocks`] for a token Biscuit has already parsed from the same
/// bytes (`Biscuit::from`, which verified every signature): each third-party
/// signer key is taken from `verified` rather than decoded a second time
/// (an Ed25519 point decompression per hop). A key that does not match the
/// bytes is decoded from the bytes, so the result is always that of
/// [`decode_blocks`].
pub fn decode_verified_blocks(
    token: &[u8],
    verified: &Biscuit,
) -> Result<Vec<BlockContent>, SpecError> {
    decode(token, Some(verified))
}

fn decode(token: &[u8], verified: Option<&Biscuit>) -> Result<Vec<BlockContent>, SpecError> {
    let container = schema::Biscuit::decode(token)
        .map_err(|e| SpecError::Biscuit(format!("token does not decode: {e}")))?;
    let mut token_symbols = SymbolTable::new();
    let mut out = Vec::with_capacity(1 + container.blocks.len());
    for (index, signed) in std::iter::once(&container.authority)
        .chain(container.blocks.iter())
        .enumerate()
    {
        let proto = schema::Block::decode(signed.block.as_slice())
            .map_err(|e| SpecError::Biscuit(format!("block {index} does not decode: {e}")))?;
        // Only Ed25519 (§8): ECDSA signatures are malleable, so a P-256 next
        // key would let a bearer change the last block's revocation id.
        let ed25519 = schema::public_key::Algorithm::Ed25519 as i32;
        if signed.next_key.algorithm != ed25519
            || signed
                .external_signature
                .as_ref()
                .is_some_and(|e| e.public_key.algorithm != ed25519)
        {
            return Err(SpecError::Token(format!(
                "block {index} uses a key that is not Ed25519; Mandate accepts only Ed25519"
            )));
        }
        let external_key = match &signed.external_signature {
            Some(ext) => Some(signer_key(index, &ext.public_key, verified)?),
            None => None,
        };
        let block = proto_block_to_token_block(&proto, external_key)?;
        // Third-party blocks carry their own symbol table; first-party blocks
        // extend the token's (Biscuit's rule, format v3).
        let own;
        let symbols = if external_key.is_some() {
            let mut t = SymbolTable::new();
            t.extend(&block.symbols)?;
            own = t;
            &own
        } else {
            token_symbols.extend(&block.symbols)?;
            &token_symbols
        };
        let facts = block
            .facts
            .iter()
            .map(|f| Fact::convert_from(f, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        let rule_heads = block
            .rules
            .iter()
            .map(|r| symbols.print_symbol(r.head.name).map_err(SpecError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let checks = block
            .checks
            .iter()
            .map(|c| Check::convert_from(c, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        let scopes = block
            .scopes
            .iter()
            .map(|s| Scope::convert_from(s, symbols))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(BlockContent {
            index,
            external_key,
            external_signature: signed
                .external_signature
                .as_ref()
                .map(|e| e.signature.clone()),
            facts,
            rule_heads,
            checks,
            scopes,
            revocation_id: signed.signature.clone(),
            symbols: proto.symbols.len(),
        });
    }
    Ok(out)
}

/// The third-party signer key of block `index`: Biscuit's, when it parsed the
/// same key, else decoded from `proto`.
fn signer_key(
    index: usize,
    proto: &schema::PublicKey,
    verified: Option<&Biscuit>,
) -> Result<PublicKey, SpecError> {
    match verified.and_then(|b| b.block_external_key(index).ok().flatten()) {
        Some(key) if key.to_proto() == *proto => Ok(key),
        _ => Ok(PublicKey::from_proto(proto)?),
    }
}

/// The delegation chain of a token: principal → agent → agent …
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Chain {
    /// The root token id (UUID v4).
    pub token_id: String,
    /// Who the chain acts for.
    pub principal: String,
    /// When the root was minted.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// Most delegation hops the root allows, if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Hop 0 is the root token, hop 1 the first delegation, and so on.
    pub hops: Vec<Hop>,
    /// The earliest expiry along the chain: when the token stops working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Approval blocks appended after the last hop (§14), in token order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// An approval block: a third-party block signed by an approver, naming the
/// digest of the one request it approves and until when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Approval {
    /// Block index in the token.
    pub block: usize,
    /// The key that signed it, `ed25519/<hex>`.
    pub approver_key: String,
    /// The approved request's digest (SHA-256, hex; see
    /// [`crate::Request::approval_digest`]).
    pub digest: String,
    /// Until when the approval may be used.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The approval block's revocation id, hex.
    pub revocation_id: String,
    /// The approver's signature over the block (hex): what marks the
    /// approval used (§14.4). Re-appending the same approval gives the block
    /// a new revocation id but the same approver signature.
    pub approver_signature: String,
}

/// One hop of the chain: who holds the token after it, and what it allows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Hop {
    /// Hop number (0 = root).
    pub hop: usize,
    /// Block index in the token.
    pub block: usize,
    /// The agent the token is handed to at this hop.
    pub agent: String,
    /// That agent's public key, `ed25519/<hex>`.
    pub agent_key: String,
    /// The same key, decoded: what chain integrity compares signers with and
    /// what revocation looks up (not serialized; `agent_key` is its text).
    #[serde(skip)]
    pub agent_public_key: PublicKey,
    /// Who signed this hop: `root` for hop 0, else the previous hop's agent.
    pub signed_by: Signer,
    /// Why the hop was made, if stated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// This hop's own expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// What this hop allows (a request must also pass every other hop).
    pub grant: Grant,
    /// The hop block's revocation id, hex.
    pub revocation_id: String,
    /// First-party blocks appended while this hop's agent held the token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub narrowing: Vec<Narrowing>,
}

/// Who signed a hop.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signer {
    /// The issuer's root key (hop 0).
    Root {
        /// The root key id the token names, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        key_id: Option<u32>,
    },
    /// The agent that held the token before this hop.
    Agent {
        /// Agent id.
        agent: String,
        /// Agent key, `ed25519/<hex>`.
        key: String,
    },
}

/// A first-party block: a holder's narrowing that delegates to no one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Narrowing {
    /// Block index in the token.
    pub block: usize,
    /// Its expiry, if it sets one.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// What it allows.
    pub grant: Grant,
    /// Its revocation id, hex.
    pub revocation_id: String,
}

/// Why a token's blocks do not form a valid Mandate chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {block} (hop {hop}): {message}")]
pub struct ChainError {
    /// What kind of violation.
    pub kind: ChainErrorKind,
    /// The offending block.
    pub block: usize,
    /// The hop it belongs to (the hop it would start, for a delegation).
    pub hop: usize,
    /// What is wrong, in words.
    pub message: String,
}

/// Kinds of chain violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainErrorKind {
    /// More delegation hops than the root's `max_depth`.
    DepthExceeded,
    /// Any other violation of §6 (wrong signer, missing or extra facts,
    /// reserved predicates, a first-party block naming an agent).
    Invalid,
}

impl Chain {
    /// Builds the chain from decoded blocks, enforcing the integrity rules of
    /// §6: the root names the first agent; each third-party block is a
    /// delegation hop signed by the key the previous hop named and naming
    /// exactly one next agent; first-party blocks name no agent; no block
    /// defines a request predicate; the root's `max_depth` holds.
    pub fn from_blocks(
        blocks: &[BlockContent],
        root_key_id: Option<u32>,
    ) -> Result<Chain, ChainError> {
        let root = blocks
            .first()
            .ok_or_else(|| err(0, 0, "token has no block"))?;
        check_reserved(root, 0)?;
        check_content(
            root,
            0,
            &[
                vocab::TOKEN,
                vocab::PRINCIPAL,
                vocab::ISSUED_AT,
                vocab::MAX_DEPTH,
                vocab::AGENT,
                vocab::PURPOSE,
                vocab::APPROVER,
            ],
        )?;
        if root.external_key.is_some() {
            return Err(err(0, 0, "the root block cannot be a third-party block"));
        }
        let token_id = one_string(root, vocab::TOKEN, 0)?;
        let principal = one_string(root, vocab::PRINCIPAL, 0)?;
        let issued_at = match single(root, vocab::ISSUED_AT, 0)?.map(|t| t.as_slice()) {
            Some([Term::Date(d)]) => i64::try_from(*d)
                .ok()
                .and_then(|d| OffsetDateTime::from_unix_timestamp(d).ok())
                .ok_or_else(|| err(0, 0, "issued_at out of range"))?,
            _ => return Err(err(0, 0, "the root needs one issued_at(date) fact")),
        };
        let max_depth = match single(root, vocab::MAX_DEPTH, 0)?.map(|t| t.as_slice()) {
            None => None,
            Some([Term::Integer(n)]) if (0..=u32::MAX as i64).contains(n) => Some(*n as u32),
            Some(_) => return Err(err(0, 0, "max_depth must be one non-negative integer")),
        };
        let mut hops = vec![hop_from_block(
            root,
            0,
            Signer::Root {
                key_id: root_key_id,
            },
            next_signer(blocks, 0),
        )?];
        let mut approvals: Vec<Approval> = Vec::new();
        for (position, block) in blocks.iter().enumerate().skip(1) {
            let current = hops.len() - 1;
            if let Some(approver) = &block.external_key {
                if is_approval_block(block) {
                    approvals.push(approval_from_block(block, approver, current)?);
                    continue;
                }
            }
            if !approvals.is_empty() {
                return Err(err(
                    block.index,
                    current,
                    "approval blocks come last: no hop or narrowing after an approval",
                ));
            }
            let would_be = if block.external_key.is_some() {
                current + 1
            } else {
                current
            };
            check_reserved(block, would_be)?;
            // Root facts in a hop and agent facts in a first-party block get
            // their own, more specific errors below.
            let allowed: &[&str] = if block.external_key.is_some() {
                &[
                    vocab::AGENT,
                    vocab::PURPOSE,
                    vocab::APPROVER,
                    vocab::TOKEN,
                    vocab::PRINCIPAL,
                    vocab::ISSUED_AT,
                    vocab::MAX_DEPTH,
                ]
            } else {
                &[vocab::AGENT]
            };
            check_content(block, would_be, allowed)?;
            match &block.external_key {
                None => {
                    if !facts_named(block, vocab::AGENT).is_empty() {
                        return Err(err(
                            block.index,
                            current,
                            "a first-party block cannot name a delegate (agent fact); \
                             delegation hops are third-party blocks signed by the holder",
                        ));
                    }
                    let (expires_at, grant) = grant_of(block);
                    hops[current].narrowing.push(Narrowing {
                        block: block.index,
                        expires_at,
                        grant,
                        revocation_id: hex::encode(&block.revocation_id),
                    });
                }
                Some(signer) => {
                    let holder = &hops[current];
                    if *signer != holder.agent_public_key {
                        let signer_text = signer.to_string();
                        return Err(err(
                            block.index,
                            current + 1,
                            &format!(
                                "signed by {signer_text}, but hop {current} delegated to agent {:?} \
                                 with key {}",
                                holder.agent, holder.agent_key
                            ),
                        ));
                    }
                    let hop_no = current + 1;
                    if let Some(max) = max_depth {
                        if hop_no > max as usize {
                            return Err(depth_err(
                                block.index,
                                hop_no,
                                &format!(
                                    "delegation depth {hop_no} exceeds the root's max_depth {max}"
                                ),
                            ));
                        }
                    }
                    for name in [
                        vocab::TOKEN,
                        vocab::PRINCIPAL,
                        vocab::ISSUED_AT,
                        vocab::MAX_DEPTH,
                    ] {
                        if !facts_named(block, name).is_empty() {
                            return Err(err(
                                block.index,
                                hop_no,
                                &format!(
                                    "a delegation hop cannot state {name}(…); only the root does"
                                ),
                            ));
                        }
                    }
                    let signed_by = Signer::Agent {
                        agent: holder.agent.clone(),
                        key: holder.agent_key.clone(),
                    };
                    hops.push(hop_from_block(
                        block,
                        hop_no,
                        signed_by,
                        next_signer(blocks, position),
                    )?);
                }
            }
        }
        // Rule 1c: what deciding a request can cost, from the blocks alone.
        crate::cost::token_cost(blocks).map_err(|e| {
            let hop = hops
                .iter()
                .rev()
                .find(|h| h.block <= e.block)
                .map_or(0, |h| h.hop);
            err(e.block, hop, &e.message)
        })?;
        let expires_at = hops
            .iter()
            .flat_map(|h| {
                std::iter::once(h.expires_at).chain(h.narrowing.iter().map(|n| n.expires_at))
            })
            .flatten()
            .min();
        Ok(Chain {
            token_id,
            principal,
            issued_at,
            max_depth,
            hops,
            expires_at,
            approvals,
        })
    }

    /// The agent that holds the token now (the last hop's agent).
    pub fn holder(&self) -> &Hop {
        // `from_blocks` always produces at least the root hop.
        &self.hops[self.hops.len() - 1]
    }

    /// The hop a block belongs to: the delegation it starts, or the hop whose
    /// holder appended it (for a first-party block).
    pub fn hop_of_block(&self, block: usize) -> Option<&Hop> {
        self.hops.iter().rev().find(|h| h.block <= block)
    }

    /// The number of delegation hops (the root is not one).
    pub fn depth(&self) -> usize {
        self.hops.len() - 1
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::display::word(&self.principal))?;
        for h in &self.hops {
            write!(f, " → {}", crate::display::word(&h.agent))?;
        }
        Ok(())
    }
}

impl fmt::Display for Approval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "approval (block {}): signed by {}",
            self.block, self.approver_key
        )?;
        writeln!(f, "  for request digest: {}", self.digest)?;
        writeln!(f, "  valid until: {}", rfc3339(&self.expires_at))?;
        writeln!(f, "  revocation id: {}", self.revocation_id)
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hop {} (block {}): agent {} key {}",
            self.hop,
            self.block,
            crate::display::quoted(&self.agent),
            self.agent_key
        )?;
        match &self.signed_by {
            Signer::Root { key_id: Some(id) } => writeln!(f, "  signed by: root key id {id}")?,
            Signer::Root { key_id: None } => writeln!(f, "  signed by: root key")?,
            Signer::Agent { agent, key } => writeln!(
                f,
                "  signed by: agent {} ({key})",
                crate::display::quoted(agent)
            )?,
        }
        if let Some(p) = &self.purpose {
            writeln!(f, "  purpose: {}", crate::display::quoted(p))?;
        }
        match &self.expires_at {
            Some(e) => writeln!(f, "  expires: {}", rfc3339(e))?,
            None => writeln!(f, "  expires: (no expiry of its own)")?,
        }
        writeln!(f, "  allows: {}", self.grant)?;
        writeln!(f, "  revocation id: {}", self.revocation_id)?;
        for n in &self.narrowing {
            writeln!(
                f,
                "  narrowed by first-party block {}: {}",
                n.block, n.grant
            )?;
        }
        Ok(())
    }
}

/// A third-party block whose only content is `approval(…)` facts.
fn is_approval_block(block: &BlockContent) -> bool {
    !block.facts.is_empty()
        && block
            .facts
            .iter()
            .all(|f| f.predicate.name == vocab::APPROVAL)
}

/// Reads an approval block: exactly one `approval(digest, expiry)` fact,
/// no checks, no rules, no scopes.
fn approval_from_block(
    block: &BlockContent,
    approver: &PublicKey,
    hop: usize,
) -> Result<Approval, ChainError> {
    if !block.checks.is_empty() || !block.rule_heads.is_empty() || !block.scopes.is_empty() {
        return Err(err(
            block.index,
            hop,
            "an approval block holds one approval(digest, expiry) fact and nothing else",
        ));
    }
    let (digest, expires) = match block.facts.as_slice() {
        [f] => match f.predicate.terms.as_slice() {
            [Term::Bytes(d), Term::Date(e)] if d.len() == 32 => (d, *e),
            _ => {
                return Err(err(
                    block.index,
                    hop,
                    "approval(digest, expiry) needs a 32-byte digest and a date",
                ))
            }
        },
        _ => {
            return Err(err(
                block.index,
                hop,
                "an approval block holds exactly one approval(…) fact",
            ))
        }
    };
    let expires_at = i64::try_from(expires)
        .ok()
        .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok())
        .ok_or_else(|| err(block.index, hop, "approval expiry out of range"))?;
    Ok(Approval {
        block: block.index,
        approver_key: approver.to_string(),
        digest: hex::encode(digest),
        expires_at,
        revocation_id: hex::encode(&block.revocation_id),
        approver_signature: hex::encode(block.external_signature.as_deref().unwrap_or_default()),
    })
}

/// The key that signed the first delegation hop after `blocks[position]`.
fn next_signer(blocks: &[BlockContent], position: usize) -> Option<&PublicKey> {
    blocks
        .get(position + 1..)?
        .iter()
        .find_map(|b| b.external_key.as_ref())
}

/// `next_signer` is the key that signed the next delegation hop, if any: when
/// the agent key has the same bytes it is already a decoded, valid Ed25519
/// key, and decoding it again (a point decompression) is skipped.
fn hop_from_block(
    block: &BlockContent,
    hop: usize,
    signed_by: Signer,
    next_signer: Option<&PublicKey>,
) -> Result<Hop, ChainError> {
    let (agent, agent_key) = match single(block, vocab::AGENT, hop)?.map(|t| t.as_slice()) {
        Some([Term::Str(id), Term::Bytes(key)]) => {
            crate::grant::validate_name("agent id", id)
                .map_err(|e| err(block.index, hop, &e.to_string()))?;
            let key = match next_signer {
                Some(signer)
                    if signer.algorithm() == Algorithm::Ed25519 && signer.to_bytes() == *key =>
                {
                    *signer
                }
                _ => {
                    public_key_from_bytes(key).map_err(|e| err(block.index, hop, &e.to_string()))?
                }
            };
            (id.clone(), key)
        }
        _ => {
            return Err(err(
                block.index,
                hop,
                "a hop needs exactly one agent(id, key_bytes) fact naming who it delegates to",
            ))
        }
    };
    let purpose = match single(block, vocab::PURPOSE, hop)?.map(|t| t.as_slice()) {
        None => None,
        Some([Term::Str(p)]) => Some(p.clone()),
        Some(_) => return Err(err(block.index, hop, "purpose must be one string")),
    };
    let (expires_at, grant) = grant_of(block);
    Ok(Hop {
        hop,
        block: block.index,
        agent,
        agent_key: agent_key.to_string(),
        agent_public_key: agent_key,
        signed_by,
        purpose,
        expires_at,
        grant,
        revocation_id: hex::encode(&block.revocation_id),
        narrowing: Vec::new(),
    })
}

/// The grant a block's checks express: canonical checks decoded, any other
/// check kept as its Datalog text.
fn grant_of(block: &BlockContent) -> (Option<OffsetDateTime>, Grant) {
    let mut grant = Grant::default();
    let mut expires_at: Option<OffsetDateTime> = None;
    for check in &block.checks {
        if is_holder_check(check) {
            grant.holder_bound = true;
            continue;
        }
        match decode_check(check) {
            Some(d) => {
                if let Some(e) = d.expires {
                    expires_at = Some(expires_at.map_or(e, |x| x.min(e)));
                }
                grant.alternatives.extend(d.alternatives);
            }
            None => grant.datalog.push(print_check(check)),
        }
    }
    // Approval rules carry the approver's key; the block's approver facts
    // give the name people know it by.
    for alt in &mut grant.alternatives {
        if let Some(rule) = alt.approval.as_mut() {
            rule.approver = approver_name(block, &rule.key)
                .unwrap_or_else(|| format!("key {}", &rule.key[..rule.key.len().min(20)]));
        }
    }
    (expires_at, grant)
}

fn approver_name(block: &BlockContent, key: &str) -> Option<String> {
    let key = crate::parse_public_key(key).ok()?.to_bytes();
    facts_named(block, vocab::APPROVER)
        .into_iter()
        .find_map(|terms| match terms.as_slice() {
            [Term::Str(name), Term::Bytes(k)] if *k == key => Some(name.clone()),
            _ => None,
        })
}

/// A check's Datalog text. Biscuit's printer panics on an expression that is
/// not well-formed RPN (a token can carry one), so the stack is checked first.
fn print_check(check: &Check) -> String {
    use biscuit_auth::builder::Op;
    fn well_formed(ops: &[Op]) -> bool {
        let mut depth: usize = 0;
        for op in ops {
            match op {
                Op::Value(_) => depth += 1,
                Op::Unary(_) if depth >= 1 => {}
                Op::Binary(_) if depth >= 2 => depth -= 1,
                Op::Closure(_, body) if well_formed(body) => depth += 1,
                _ => return false,
            }
        }
        depth == 1
    }
    let ok = check
        .queries
        .iter()
        .all(|q| q.expressions.iter().all(|e| well_formed(&e.ops)));
    if ok {
        check.to_string()
    } else {
        "(a check with a malformed expression: it can never pass)".into()
    }
}

/// Limits on what token blocks may contain (§6): no rules anywhere, only the
/// vocabulary's facts, and queries whose joins stay small, so no block can
/// make the authorizer do unbounded work before its run limits are looked at.
fn check_content(
    block: &BlockContent,
    hop: usize,
    allowed_facts: &[&str],
) -> Result<(), ChainError> {
    if !block.rule_heads.is_empty() {
        return Err(err(block.index, hop, "token blocks may not contain rules"));
    }
    if let Some(f) = block
        .facts
        .iter()
        .find(|f| !allowed_facts.contains(&f.predicate.name.as_str()))
    {
        return Err(err(
            block.index,
            hop,
            &format!("fact {}(…) is not allowed in this block", f.predicate.name),
        ));
    }
    for f in facts_named(block, vocab::APPROVER) {
        let ok = matches!(f.as_slice(), [Term::Str(name), Term::Bytes(key)]
            if key.len() == 32 && crate::grant::validate_name("approver name", name).is_ok());
        if !ok {
            return Err(err(
                block.index,
                hop,
                "approver(…) must be approver(name, 32-byte key)",
            ));
        }
    }
    for check in &block.checks {
        for q in &check.queries {
            if q.body.len() > MAX_BODY_PREDICATES {
                return Err(err(
                    block.index,
                    hop,
                    &format!("a check query has more than {MAX_BODY_PREDICATES} predicates"),
                ));
            }
            let open_params = q
                .body
                .iter()
                .filter(|p| {
                    p.name == vocab::PARAM && !matches!(p.terms.first(), Some(Term::Str(_)))
                })
                .count();
            if open_params > 1 {
                return Err(err(
                    block.index,
                    hop,
                    "a check query may join at most one param(…) whose name is not a literal",
                ));
            }
        }
    }
    Ok(())
}

/// Most predicates in one check query's body.
const MAX_BODY_PREDICATES: usize = 16;

fn check_reserved(block: &BlockContent, hop: usize) -> Result<(), ChainError> {
    let defined = block
        .facts
        .iter()
        .map(|f| f.predicate.name.as_str())
        .chain(block.rule_heads.iter().map(String::as_str));
    for name in defined {
        if vocab::RESERVED.contains(&name) {
            return Err(err(
                block.index,
                hop,
                &format!("defines {name}(…), which only the verifier may supply"),
            ));
        }
    }
    Ok(())
}

fn facts_named<'a>(block: &'a BlockContent, name: &str) -> Vec<&'a Vec<Term>> {
    block
        .facts
        .iter()
        .filter(|f| f.predicate.name == name)
        .map(|f| &f.predicate.terms)
        .collect()
}

fn single<'a>(
    block: &'a BlockContent,
    name: &str,
    hop: usize,
) -> Result<Option<&'a Vec<Term>>, ChainError> {
    let found = facts_named(block, name);
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(err(
            block.index,
            hop,
            &format!("{n} {name}(…) facts where at most one is allowed"),
        )),
    }
}

fn one_string(block: &BlockContent, name: &str, hop: usize) -> Result<String, ChainError> {
    match single(block, name, hop)?.map(|t| t.as_slice()) {
        Some([Term::Str(s)]) => Ok(s.clone()),
        _ => Err(err(
            block.index,
            hop,
            &format!("the root needs one {name}(string) fact"),
        )),
    }
}

fn depth_err(block: usize, hop: usize, message: &str) -> ChainError {
    ChainError {
        kind: ChainErrorKind::DepthExceeded,
        ..err(block, hop, message)
    }
}

fn err(block: usize, hop: usize, message: &str) -> ChainError {
    ChainError {
        kind: ChainErrorKind::Invalid,
        block,
        hop,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{hop_block, root_block, HopContent, RootContent};
    use biscuit_auth::KeyPair;
    use std::time::{Duration, SystemTime};

    /// A root token and `depth` delegation hops, built with this crate's
    /// blocks; returns the token bytes and the root public key.
    fn token(depth: usize) -> (Vec<u8>, PublicKey) {
        let root_key = KeyPair::new();
        let grant = Grant::parse(&["read,list:/api/customers/*"], &[] as &[&str]).unwrap();
        let expires = SystemTime::now() + Duration::from_secs(3600);
        let mut holder = KeyPair::new();
        let root = RootContent {
            token_id: "00000000-0000-4000-8000-000000000000",
            principal: "user:alice",
            issued_at: SystemTime::now(),
            max_depth: None,
        };
        let hop = |agent: &str, key: &PublicKey| {
            hop_block(&HopContent {
                agent,
                agent_key: key,
                purpose: None,
                grant: &grant,
                expires,
            })
            .unwrap()
        };
        let mut biscuit = root_block(
            &root,
            &HopContent {
                agent: "agent-0",
                agent_key: &holder.public(),
                purpose: None,
                grant: &grant,
                expires,
            },
        )
        .unwrap()
        .build(&root_key)
        .unwrap();
        for n in 1..=depth {
            let next = KeyPair::new();
            let signed = biscuit
                .third_party_request()
                .unwrap()
                .create_block(
                    &holder.private(),
                    hop(&format!("agent-{n}"), &next.public()),
                )
                .unwrap();
            biscuit = biscuit.append_third_party(holder.public(), signed).unwrap();
            holder = next;
        }
        (biscuit.to_vec().unwrap(), root_key.public())
    }

    #[test]
    fn verified_decoding_reads_the_same_chain() {
        let (bytes, root) = token(3);
        let verified = Biscuit::from(&bytes, root).unwrap();
        let plain = Chain::from_blocks(&decode_blocks(&bytes).unwrap(), None).unwrap();
        let fast =
            Chain::from_blocks(&decode_verified_blocks(&bytes, &verified).unwrap(), None).unwrap();
        assert_eq!(fast, plain);
        assert_eq!(fast.depth(), 3);

        // A Biscuit of another token lends no key: everything is decoded from the bytes.
        let (other_bytes, other_root) = token(3);
        let other = Biscuit::from(&other_bytes, other_root).unwrap();
        let mismatched =
            Chain::from_blocks(&decode_verified_blocks(&bytes, &other).unwrap(), None).unwrap();
        assert_eq!(mismatched, plain);
    }
}
