//! Holder binding at the verifier (specification §15): checking a proof of
//! possession against the chain's final holder.

use crate::decision::{Denial, DenialKind};
use crate::replay::{SingleUse, Use};
use ed25519_dalek::{Signature, VerifyingKey};
use mandate_spec::{Audience, Chain, HolderProof, Hop, ProofSubject};
use std::time::Duration;
use time::OffsetDateTime;

/// Default clock-skew allowance for proof timestamps: 60 seconds.
pub const DEFAULT_PROOF_SKEW: Duration = Duration::from_secs(60);

/// What came with a request besides the token: for holder binding, the
/// method, the audience the verifier serves, the request-target as sent, a
/// digest of the body and the proof.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The HTTP method (or, outside HTTP, the action).
    pub method: String,
    /// This verifier's own audience (`scheme://host[:port]`), from its
    /// configuration — never from the request's `Host` header. Without one,
    /// every proof of possession is refused: the verifier cannot tell a
    /// proof made for it from one made for another server.
    pub audience: Option<Audience>,
    /// The request-target exactly as sent (HTTP: path and query, the bytes
    /// the mapping reads); `None`: the request's resource (outside HTTP).
    pub target: Option<String>,
    /// SHA-256 of the request body.
    pub body_digest: [u8; 32],
    /// The proof of possession, if the request carries one.
    pub proof: Option<HolderProof>,
}

impl Presented {
    /// A request with this method and body and, maybe, a proof; no audience
    /// and no target yet (see [`Presented::at`]).
    pub fn new(method: &str, body: &[u8], proof: Option<HolderProof>) -> Presented {
        Presented {
            method: method.to_string(),
            audience: None,
            target: None,
            body_digest: ProofSubject::digest(body),
            proof,
        }
    }

    /// The same, received at `audience` (the verifier's configured origin,
    /// if it has one) for `target` (the request-target as sent).
    pub fn at(mut self, audience: Option<Audience>, target: impl Into<String>) -> Presented {
        self.audience = audience;
        self.target = Some(target.into());
        self
    }
}

/// Whether any hop or narrowing of the chain requires proof of possession.
pub(crate) fn required(chain: &Chain) -> bool {
    chain
        .hops
        .iter()
        .any(|h| h.grant.holder_bound || h.narrowing.iter().any(|n| n.grant.holder_bound))
}

/// Checks the proof: present, fresh (within `skew` of `now`), signed by the
/// final holder's key over this request and token, and its nonce unused.
/// Returns the holder's key bytes for the `holder` fact.
pub(crate) fn check(
    chain: &Chain,
    token: &[u8],
    resource: &str,
    presented: &Presented,
    now: i64,
    skew: Duration,
    replay: Option<&dyn SingleUse>,
) -> Result<[u8; 32], Denial> {
    let holder = chain
        .hops
        .last()
        .ok_or_else(|| Denial::new(DenialKind::ProofInvalid, "the chain has no holder"))?;
    let denial = |kind, why: String| Denial {
        kind,
        hop: Some(holder.hop),
        block: Some(holder.block),
        agent: Some(holder.agent.clone()),
        reason: why,
        limit: None,
        restriction: None,
    };
    let Some(proof) = &presented.proof else {
        return Err(denial(
            DenialKind::ProofMissing,
            format!(
                "this token requires proof of possession: sign the request with the key of \
                 agent {:?} ({}) and send it as the Mandate-Proof header",
                holder.agent, holder.agent_key
            ),
        ));
    };
    let skew_s = skew.as_secs();
    let off_by = now.abs_diff(proof.timestamp);
    if off_by > skew_s {
        return Err(denial(
            DenialKind::ProofInvalid,
            format!(
                "the proof of possession is stale: made at {}, {off_by} s from the verifier's \
                 clock (allowed: {skew_s} s)",
                proof.timestamp,
            ),
        ));
    }
    let key_bytes = signed_by_holder(holder, token, resource, presented, proof)
        .map_err(|why| denial(DenialKind::ProofInvalid, why))?;
    let Some(replay) = replay else {
        return Err(Denial::new(
            DenialKind::ReplayRecordUnavailable,
            "this verifier keeps no record of used nonces (no replay guard), so it cannot \
             accept proofs of possession; denied to fail closed",
        ));
    };
    let until = i64::try_from(skew_s)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(proof.timestamp.saturating_add(s)).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut key = crate::replay::NONCE_KEY_PREFIX.to_vec();
    key.extend_from_slice(&key_bytes);
    key.extend_from_slice(proof.nonce.as_bytes());
    match replay.use_once(&key, until, false) {
        Ok(Use::First) => Ok(key_bytes),
        Ok(Use::Replayed) => Err(denial(
            DenialKind::ProofInvalid,
            format!(
                "the proof of possession was replayed: nonce {:?} was already used",
                proof.nonce
            ),
        )),
        Err(e) => Err(Denial::new(
            DenialKind::ReplayRecordUnavailable,
            format!("the record of used nonces is unavailable ({e}); denied to fail closed"),
        )),
    }
}

/// Whether `proof` is the final holder's signature over this method,
/// audience, target, body and token: the holder's key bytes, or why not.
fn signed_by_holder(
    holder: &Hop,
    token: &[u8],
    resource: &str,
    presented: &Presented,
    proof: &HolderProof,
) -> Result<[u8; 32], String> {
    let Some(audience) = &presented.audience else {
        return Err("this verifier has no configured audience (its public URL: \
             MandateLayer::audience, the gateway's public_url), so it cannot tell a proof of \
             possession made for it from one made for another server; denied to fail closed"
            .into());
    };
    let key_bytes: [u8; 32] = holder
        .agent_public_key
        .to_bytes()
        .try_into()
        .map_err(|_| "the holder key is not Ed25519".to_string())?;
    let target = presented.target.as_deref().unwrap_or(resource);
    let message = HolderProof::message(
        &ProofSubject {
            method: &presented.method,
            audience,
            target,
            body_digest: presented.body_digest,
            token,
        },
        proof.timestamp,
        &proof.nonce,
    )
    .map_err(|e| e.to_string())?;
    let valid = VerifyingKey::from_bytes(&key_bytes).ok().is_some_and(|k| {
        Signature::from_slice(&proof.signature)
            .is_ok_and(|sig| k.verify_strict(&message, &sig).is_ok())
    });
    if !valid {
        return Err(format!(
            "the proof of possession is not signed by the final holder, agent {:?} ({}), \
             over this method ({}), audience ({audience}), target ({:?}), body and token",
            holder.agent,
            holder.agent_key,
            presented.method,
            clip(target),
        ));
    }
    Ok(key_bytes)
}

/// At most 200 characters of `text`, for a denial reason.
fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
