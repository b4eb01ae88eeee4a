//! Reading a token's blocks and the delegation chain they form
//! (specification §3 "Token layout" and §6 "Chain integrity").
//!
//! - `block`: decoding each block from the token bytes ([`BlockContent`]);
//! - `rules`: what each kind of block may contain (§6 rules 1–1b);
//! - `hops`: reading the root, a delegation hop, a narrowing block or an
//!   approval block into the chain's parts.
//!
//! Decoding does not verify signatures: the verifier does that with Biscuit
//! first; `inspect` without a root key says it did not.

mod block;
mod hops;
mod rules;

pub use block::{decode_blocks, decode_verified_blocks, BlockContent};

use crate::grant::{rfc3339, Grant};
use biscuit_auth::PublicKey;
use hops::{approval_from_block, hop_from_block, is_approval_block, next_signer, RootFacts};
use rules::err;
use serde::Serialize;
use std::fmt;
use time::OffsetDateTime;

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
    /// defines a request predicate; the root's `max_depth` holds; approval
    /// blocks come last; the token's cost is bounded (rule 1c).
    pub fn from_blocks(
        blocks: &[BlockContent],
        root_key_id: Option<u32>,
    ) -> Result<Chain, ChainError> {
        let root = blocks
            .first()
            .ok_or_else(|| err(0, 0, "token has no block"))?;
        let facts = RootFacts::read(root)?;
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
            match &block.external_key {
                None => {
                    let narrowing = hops::narrowing_from_block(block, current)?;
                    hops[current].narrowing.push(narrowing);
                }
                Some(signer) => {
                    let hop = hops::delegation_from_block(
                        blocks,
                        position,
                        signer,
                        &hops[current],
                        facts.max_depth,
                    )?;
                    hops.push(hop);
                }
            }
        }
        check_cost(blocks, &hops)?;
        let expires_at = earliest_expiry(&hops);
        Ok(Chain {
            token_id: facts.token_id,
            principal: facts.principal,
            issued_at: facts.issued_at,
            max_depth: facts.max_depth,
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

/// Rule 1c: what deciding a request can cost, from the blocks alone.
fn check_cost(blocks: &[BlockContent], hops: &[Hop]) -> Result<(), ChainError> {
    crate::cost::token_cost(blocks).map_err(|e| {
        let hop = hops
            .iter()
            .rev()
            .find(|h| h.block <= e.block)
            .map_or(0, |h| h.hop);
        err(e.block, hop, &e.message)
    })?;
    Ok(())
}

/// The earliest expiry any hop or narrowing block states.
fn earliest_expiry(hops: &[Hop]) -> Option<OffsetDateTime> {
    hops.iter()
        .flat_map(|h| std::iter::once(h.expires_at).chain(h.narrowing.iter().map(|n| n.expires_at)))
        .flatten()
        .min()
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
        // Limits on a line of their own: they bind the hop's subtree (§18).
        let allows = Grant {
            limits: Vec::new(),
            ..self.grant.clone()
        };
        writeln!(f, "  allows: {allows}")?;
        if !self.grant.limits.is_empty() {
            let limits: Vec<String> = self.grant.limits.iter().map(|l| l.to_string()).collect();
            writeln!(
                f,
                "  limits (shared by this hop and everything delegated from it): {}",
                limits.join(", ")
            )?;
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{hop_block, root_block, HopContent, RootContent};
    use biscuit_auth::{Biscuit, KeyPair};
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
