//! The authorization pipeline.

use crate::decision::{Decision, Denial, DenialKind};
use crate::error::VerifierError;
use crate::explain;
use crate::keys::RootKeys;
use crate::revocation::{Revocation, RevocationStore, Target};
use biscuit_auth::datalog::RunLimits;
use biscuit_auth::error::{FailedCheck, Format, Logic, Token};
use biscuit_auth::{AuthorizerBuilder, Biscuit};
use mandate_spec::{
    decode_verified_blocks, Chain, ChainError, ChainErrorKind, Request, MAX_TOKEN_BYTES,
};
use std::sync::Arc;
use std::time::Duration;

/// Datalog run limits applied to every authorization.
///
/// biscuit-auth's default time limit (1 ms) fails under load on a shared
/// machine, turning busy moments into spurious denials; Mandate's canonical
/// tokens need far less than these bounds (the Datalog run of a 2-hop
/// authorization holds 10 facts, needs no rule iteration and takes ~5 µs;
/// see `verifier/BENCHMARKS.md`), so the limits only stop pathological
/// Datalog a raw escape-hatch check might carry. A limit hit is a denial
/// ([`DenialKind::Evaluation`]), never an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most facts the evaluation may derive to: biscuit-auth checks it after
    /// each round of rule application, so it bounds what rules in raw
    /// Datalog checks can generate (canonical tokens carry no rules; the
    /// token's own facts are bounded by the 64 KiB token size). Default 1 000.
    pub max_facts: u64,
    /// Most rule-application rounds. Default 100.
    pub max_iterations: u64,
    /// Most wall-clock time for the Datalog run. Default 20 ms.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_facts: 1_000,
            max_iterations: 100,
            max_time: Duration::from_millis(20),
        }
    }
}

/// A revocation list the verifier consults: given targets in order, the
/// first one revoked. Implemented by [`RevocationStore`], by `Arc`s of any
/// list, and by closures (for tests or a custom store).
pub trait RevocationList: Send + Sync {
    /// The first revoked target among `targets`, with its index.
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError>;
}

impl RevocationList for RevocationStore {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        RevocationStore::first_revoked(self, targets)
    }
}

impl<T: RevocationList + ?Sized> RevocationList for Arc<T> {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        (**self).first_revoked(targets)
    }
}

impl<F> RevocationList for F
where
    F: Fn(&[Target]) -> Result<Option<(usize, Revocation)>, VerifierError> + Send + Sync,
{
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        self(targets)
    }
}

/// Decides requests made with Mandate tokens. Cheap to clone and share.
///
/// Without [`Verifier::with_revocations`] no revocation list is consulted:
/// every deployment that can revoke (all but throwaway tests) should set one.
#[derive(Clone)]
pub struct Verifier {
    keys: RootKeys,
    limits: Limits,
    revocations: Option<Arc<dyn RevocationList>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting `keys`, with default [`Limits`].
    pub fn new(keys: RootKeys) -> Verifier {
        Verifier {
            keys,
            limits: Limits::default(),
            revocations: None,
        }
    }

    /// Consults `list` on every authorization, before Datalog runs: every
    /// block's revocation id, the token family and every agent key of the
    /// chain. A list that cannot be read denies (fails closed).
    pub fn with_revocations(mut self, list: impl RevocationList + 'static) -> Verifier {
        self.revocations = Some(Arc::new(list));
        self
    }

    /// Replaces the Datalog run limits.
    pub fn with_limits(mut self, limits: Limits) -> Verifier {
        self.limits = limits;
        self
    }

    /// The run limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Authorizes `request` with the token's raw bytes. Never fails: every
    /// problem is a denial with its reason.
    pub fn authorize(&self, token: &[u8], request: &Request) -> Decision {
        let req = request.clone();
        if let Err(e) = request.validate() {
            return Decision::deny(
                req,
                None,
                Denial::new(DenialKind::InvalidRequest, e.to_string()),
            );
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Decision::deny(
                req,
                None,
                Denial::new(
                    DenialKind::MalformedToken,
                    format!("token larger than {MAX_TOKEN_BYTES} bytes"),
                ),
            );
        }
        // 1. Signatures, root key by id.
        let biscuit = match Biscuit::from(token, &self.keys) {
            Ok(b) => b,
            Err(e) => return Decision::deny(req, None, parse_denial(&e)),
        };
        // 2. The chain: who delegated to whom, each hop signed by the key the
        //    previous hop named.
        let chain = match decode_verified_blocks(token, &biscuit)
            .map_err(|e| Denial::new(DenialKind::MalformedToken, e.to_string()))
            .and_then(|blocks| {
                Chain::from_blocks(&blocks, biscuit.root_key_id()).map_err(chain_denial)
            }) {
            Ok(c) => c,
            Err(d) => return Decision::deny(req, None, d),
        };
        // 3. Revocation: every block, the family, every agent key.
        if let Some(list) = &self.revocations {
            if let Some(denial) = revocation_denial(list.as_ref(), &biscuit, &chain) {
                return Decision::deny(req, Some(chain), denial);
            }
        }
        // 4. Datalog: every check of every block, with the request's facts.
        match self.run_datalog(&biscuit, request) {
            Ok(()) => Decision::allow(req, chain),
            Err(e) => {
                let denial = datalog_denial(&e, &chain, request);
                Decision::deny(req, Some(chain), denial)
            }
        }
    }

    /// Authorizes with a token given as URL-safe base64 text.
    pub fn authorize_base64(&self, token: &str, request: &Request) -> Decision {
        match mandate_spec::token_from_text(token) {
            Ok(bytes) => self.authorize(&bytes, request),
            Err(e) => Decision::deny(
                request.clone(),
                None,
                Denial::new(DenialKind::MalformedToken, e.to_string()),
            ),
        }
    }

    fn run_datalog(&self, biscuit: &Biscuit, request: &Request) -> Result<(), Token> {
        let mut builder = AuthorizerBuilder::new();
        for fact in request.facts() {
            builder = builder.fact(fact)?;
        }
        let mut authorizer = builder
            .policy("allow if true")?
            .set_limits(RunLimits {
                max_facts: self.limits.max_facts,
                max_iterations: self.limits.max_iterations,
                max_time: self.limits.max_time,
            })
            .build(biscuit)?;
        authorizer.authorize().map(|_| ())
    }
}

/// The revocation targets of a chain, in order: every block's revocation id
/// (block i at index i), then the token family, then each hop's agent key.
pub(crate) fn revocation_targets(biscuit: &Biscuit, chain: &Chain) -> Vec<Target> {
    let ids = biscuit.revocation_identifiers();
    let mut targets = Vec::with_capacity(ids.len() + 1 + chain.hops.len());
    targets.extend(ids.into_iter().map(Target::Block));
    targets.push(Target::Token(chain.token_id.clone()));
    for hop in &chain.hops {
        let key = hop
            .agent_key
            .strip_prefix("ed25519/")
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default();
        targets.push(Target::Agent(key));
    }
    targets
}

fn revocation_denial(
    list: &dyn RevocationList,
    biscuit: &Biscuit,
    chain: &Chain,
) -> Option<Denial> {
    let targets = revocation_targets(biscuit, chain);
    let blocks = biscuit.block_count();
    let (index, entry) = match list.first_revoked(&targets) {
        Ok(None) => return None,
        Ok(Some(hit)) => hit,
        Err(e) => {
            return Some(Denial::new(
                DenialKind::RevocationUnavailable,
                format!("revocation list unavailable ({e}); denied to fail closed"),
            ))
        }
    };
    let when = entry
        .revoked_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let why = format!("revoked at {when} by {:?}: {:?}", entry.by, entry.reason);
    let (hop, block, what) = if index < blocks {
        let hop = chain.hop_of_block(index);
        let what = match hop {
            Some(h) if h.block == index && h.hop == 0 => format!(
                "the root token (hop 0, agent {:?}) is {why}; every token derived from it is dead",
                h.agent
            ),
            Some(h) if h.block == index => format!(
                "hop {} (agent {:?}, delegated by {:?}) is {why}",
                h.hop,
                h.agent,
                chain
                    .hops
                    .get(h.hop - 1)
                    .map(|p| p.agent.as_str())
                    .unwrap_or("?")
            ),
            Some(h) => format!(
                "first-party block {index} appended by agent {:?} at hop {} is {why}",
                h.agent, h.hop
            ),
            None => format!("block {index} is {why}"),
        };
        (hop.map(|h| h.hop), Some(index), what)
    } else if index == blocks {
        (
            Some(0),
            Some(0),
            format!("token family {} is {why}", chain.token_id),
        )
    } else {
        let hop_no = index - blocks - 1;
        let h = &chain.hops[hop_no];
        (
            Some(hop_no),
            Some(h.block),
            format!(
                "agent {:?} (key {}) at hop {hop_no} is {why}",
                h.agent, h.agent_key
            ),
        )
    };
    Some(Denial {
        kind: DenialKind::Revoked,
        hop,
        block,
        agent: hop.and_then(|h| chain.hops.get(h)).map(|h| h.agent.clone()),
        reason: what,
    })
}

fn parse_denial(e: &Token) -> Denial {
    match e {
        Token::Format(Format::Signature(_)) | Token::Format(Format::SealedSignature) => Denial::new(
            DenialKind::BadSignature,
            "a signature does not verify: the token was altered, forged, or signed by another root key",
        ),
        Token::Format(Format::UnknownPublicKey) => Denial::new(
            DenialKind::UnknownRootKey,
            "the token names a root key id this verifier does not trust",
        ),
        Token::Format(f) => Denial::new(
            DenialKind::MalformedToken,
            format!("not a valid token: {f} ({f:?})"),
        ),
        other => Denial::new(DenialKind::MalformedToken, format!("not a valid token: {other}")),
    }
}

fn chain_denial(e: ChainError) -> Denial {
    let kind = match e.kind {
        ChainErrorKind::DepthExceeded => DenialKind::DepthExceeded,
        _ => DenialKind::BrokenChain,
    };
    Denial {
        kind,
        hop: Some(e.hop),
        block: Some(e.block),
        agent: None,
        reason: e.to_string(),
    }
}

fn datalog_denial(e: &Token, chain: &Chain, request: &Request) -> Denial {
    match e {
        Token::FailedLogic(Logic::Unauthorized { checks, .. })
        | Token::FailedLogic(Logic::NoMatchingPolicy { checks }) => {
            // The earliest failing block is the most authoritative reason;
            // later failing hops are named after it.
            let mut failed: Vec<_> = checks
                .iter()
                .filter_map(|c| match c {
                    FailedCheck::Block(b) => Some(b),
                    FailedCheck::Authorizer(_) => None,
                })
                .collect();
            failed.sort_by_key(|b| (b.block_id, b.check_id));
            failed.dedup_by_key(|b| b.block_id);
            let mut explained = failed
                .iter()
                .map(|b| explain::failed_check(chain, b.block_id as usize, &b.rule, request));
            match explained.next() {
                Some(mut first) => {
                    let others: Vec<String> = explained.map(|d| d.reason).collect();
                    if !others.is_empty() {
                        first.reason =
                            format!("{}; also denied by {}", first.reason, others.join("; "));
                    }
                    first
                }
                None => Denial::new(DenialKind::NotAllowed, e.to_string()),
            }
        }
        Token::RunLimit(limit) => Denial::new(
            DenialKind::Evaluation,
            format!("Datalog evaluation stopped at a run limit ({limit}); denied"),
        ),
        Token::Execution(expr) => Denial::new(
            DenialKind::Evaluation,
            format!(
                "a check could not be evaluated ({expr}), e.g. a string parameter compared \
                 with an integer bound; denied"
            ),
        ),
        other => Denial::new(
            DenialKind::Evaluation,
            format!("authorization failed: {other}"),
        ),
    }
}
