//! The steps of a decision: verification (signatures and chain, cached by
//! token), then, on every request, revocation, proof of possession, Datalog
//! and approvals.

use super::denials::{
    chain_denial, datalog_denial, limit_exceeded, parse_denial, revocation_denial, unmeterable,
};
use super::{Purpose, Verifier, INLINE_COST};
use crate::approval;
use crate::cache::Verified;
use crate::decision::{Decision, Denial, DenialKind};
use crate::holder::{self, Presented};
use crate::prepared::Prepared;
use crate::replay::Use;
use crate::revocation::revocation_targets;
use crate::usage::{chain_limits, charges_for, Charge, Charged};
use biscuit_auth::error::Token;
use biscuit_auth::Biscuit;
use mandate_spec::{decode_verified_blocks, Chain, Request};
use std::sync::Arc;

impl Verifier {
    /// Steps 1–2: every signature (root key by id), then the chain: who
    /// delegated to whom, each hop signed by the key the previous hop named.
    pub(super) fn verify(&self, token: &[u8]) -> Result<Arc<Verified>, Denial> {
        // Every block costs a signature verification: count them first.
        // (A container that does not decode is left to Biscuit, whose
        // error says why.)
        if let Ok(n) = mandate_spec::block_count(token) {
            if n > mandate_spec::MAX_BLOCKS {
                return Err(Denial::new(
                    DenialKind::MalformedToken,
                    format!(
                        "the token has {n} blocks; at most {} are allowed",
                        mandate_spec::MAX_BLOCKS
                    ),
                ));
            }
        }
        let biscuit = Biscuit::from(token, &self.keys).map_err(|e| parse_denial(&e))?;
        let blocks = decode_verified_blocks(token, &biscuit)
            .map_err(|e| Denial::new(DenialKind::MalformedToken, e.to_string()))?;
        let chain = Chain::from_blocks(&blocks, biscuit.root_key_id()).map_err(chain_denial)?;
        let targets = revocation_targets(biscuit.revocation_identifiers(), &chain);
        let has_approval_rules = chain
            .hops
            .iter()
            .any(|h| h.grant.alternatives.iter().any(|a| a.approval.is_some()));
        let holder_required = holder::required(&chain);
        let raw_datalog = has_raw_datalog(&chain);
        let limits = chain_limits(&chain);
        // `from_blocks` refused tokens over the bound; this is their cost.
        // The part every request pays (the signatures are paid once).
        let cost = mandate_spec::cost_of(&blocks).map_or(u64::MAX, |c| c.evaluation);
        // Loading the Datalog pays off only when the token is kept, and only
        // for cheap tokens: a request the loaded checks deny is decided again
        // by biscuit-auth's authorizer, which an expensive token would make
        // pay twice.
        let prepared = if self.cache.is_some() && cost <= INLINE_COST {
            Prepared::load(biscuit, &blocks)
        } else {
            Prepared::unloaded(biscuit)
        };
        Ok(Arc::new(Verified {
            chain: Arc::new(chain),
            targets,
            blocks: prepared.block_count(),
            prepared,
            has_approval_rules,
            holder_required,
            raw_datalog,
            cost,
            limits,
        }))
    }

    /// Steps 6–8, on every request: revocation, proof of possession, Datalog,
    /// usage limits (SPEC §18.4), approvals.
    pub(super) fn decide(
        &self,
        v: &Verified,
        request: &Request,
        token: &[u8],
        presented: &Presented,
        purpose: Purpose,
    ) -> Decision {
        let deny = |denial| Decision::deny(request.clone(), Some(v.chain.clone()), denial);
        // Only a request acted on is charged: never what an approver is
        // shown, nor a token-only check (even one decided on its grants).
        let charges_usage = purpose == Purpose::Request;
        // Revocation: every block, the family, every agent key.
        if let Some(list) = &self.revocations {
            if let Some(denial) = revocation_denial(list.as_ref(), v) {
                return deny(denial);
            }
        }
        // Facts the verifier adds beyond the request's own.
        let mut extra = Vec::new();
        if v.holder_required && purpose == Purpose::Approval {
            // The approver cannot make the holder's proof; the request
            // will need it when it is made.
            extra.push(biscuit_auth::builder::fact(
                mandate_spec::vocab::HOLDER,
                &[biscuit_auth::builder::bytes(
                    &v.chain.holder().agent_public_key.to_bytes(),
                )],
            ));
        } else if v.holder_required {
            match holder::check(
                &v.chain,
                token,
                &request.resource,
                presented,
                request.time_unix(),
                self.proof_skew,
                self.replay.as_deref(),
            ) {
                Ok(key) => extra.push(biscuit_auth::builder::fact(
                    mandate_spec::vocab::HOLDER,
                    &[biscuit_auth::builder::bytes(&key)],
                )),
                Err(denial) => return deny(denial),
            }
        }
        // A chain with raw Datalog checks gets no token-only pass: they
        // cannot be read, and may forbid anything (`check if false`), so
        // its housekeeping is decided on its grants like any request.
        let purpose = if purpose == Purpose::Token && v.raw_datalog {
            Purpose::Request
        } else {
            purpose
        };
        if purpose == Purpose::Token {
            let timed = crate::explain::expiry_denial(&v.chain, request)
                .or_else(|| crate::explain::time_window_denial(&v.chain, request));
            return match timed {
                Some(denial) => deny(denial),
                None => Decision::allow(request.clone(), v.chain.clone()),
            };
        }
        if v.has_approval_rules {
            extra.push(request.digest_fact());
        }
        // The limits' guard (`check if limits_enforced(1)`): this verifier
        // counts them, or denies below (limit_unavailable).
        if !v.limits.is_empty() {
            extra.push(biscuit_auth::builder::fact(
                mandate_spec::vocab::LIMITS_ENFORCED,
                &[biscuit_auth::builder::int(1)],
            ));
        }
        // Datalog: every check of every block.
        match v.prepared.run(request, &extra, self.limits) {
            Ok(()) if purpose == Purpose::Approval => {
                Decision::allow(request.clone(), v.chain.clone())
            }
            Ok(()) => {
                let charged = if charges_usage {
                    match self.charge_limits(v, request) {
                        Ok(charged) => charged,
                        Err(denial) => return deny(denial),
                    }
                } else {
                    Vec::new()
                };
                match self.spend_approvals(v, request, &extra) {
                    Ok(()) => Decision::allow(request.clone(), v.chain.clone()),
                    Err(denial) => {
                        self.refund_limits(v, &charged, request);
                        deny(denial)
                    }
                }
            }
            Err(e) => {
                // Only a check that failed (not an evaluation error, which an
                // approval cannot fix) can be about approvals.
                if v.has_approval_rules && matches!(e, Token::FailedLogic(_)) {
                    let tpr = || {
                        v.prepared
                            .biscuit()
                            .third_party_request()
                            .and_then(|r| r.serialize_base64())
                            .ok()
                    };
                    if let Some(d) = approval::explain_denial(&v.chain, request, tpr) {
                        return d;
                    }
                }
                deny(datalog_denial(&e, &v.chain, request))
            }
        }
    }

    /// Charges `request` against every usage limit on its chain's path that
    /// meters it, all or nothing (SPEC §18.4): what was charged, or the
    /// denial (a budget that cannot meter the request, no meter, a meter
    /// that fails, a limit without room).
    fn charge_limits(&self, v: &Verified, request: &Request) -> Result<Vec<Charge>, Denial> {
        if v.limits.is_empty() {
            return Ok(Vec::new());
        }
        let charges = charges_for(&v.limits, request).map_err(|(i, why)| {
            crate::metrics::limit_denied(crate::metrics::LimitDenial::Unmeterable);
            unmeterable(&v.chain, &v.limits[i], &why)
        })?;
        // A request costing more than a whole window allows can never fit:
        // no retry helps, so it is not allowed (not "exceeded").
        if let Some((i, c)) = charges.iter().find(|(_, c)| c.units > c.max) {
            crate::metrics::limit_denied(crate::metrics::LimitDenial::Unmeterable);
            let why = format!(
                "the request costs {} against {}, more than its whole allowance of {} per \
                 window: no window can allow it",
                c.units, v.limits[*i].limit, c.max
            );
            return Err(unmeterable(&v.chain, &v.limits[*i], &why));
        }
        let Some(meter) = &self.usage else {
            crate::metrics::limit_denied(crate::metrics::LimitDenial::Unavailable);
            return Err(Denial::new(
                DenialKind::LimitUnavailable,
                "this verifier keeps no usage counters (no usage store), so requests with tokens \
                 that set usage limits are denied to fail closed",
            ));
        };
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        let (indices, charges): (Vec<usize>, Vec<Charge>) = charges.into_iter().unzip();
        let unix = request.time_unix();
        match meter.charge(&charges, metering_time(&v.chain, request)) {
            Ok(Charged::Spent) => Ok(charges),
            Ok(Charged::Exceeded {
                index,
                used,
                window_end,
            }) => {
                crate::metrics::limit_denied(crate::metrics::LimitDenial::Exceeded);
                let (limit, charge) = (&v.limits[indices[index]], &charges[index]);
                Err(limit_exceeded(
                    &v.chain,
                    limit,
                    charge.units,
                    used,
                    window_end,
                    unix,
                ))
            }
            Err(e) => {
                crate::metrics::limit_denied(crate::metrics::LimitDenial::Unavailable);
                Err(Denial::new(
                    DenialKind::LimitUnavailable,
                    format!("the usage counters are unavailable ({e}); denied to fail closed"),
                ))
            }
        }
    }

    /// Gives back what [`Verifier::charge_limits`] charged for a request
    /// then denied. A refund that fails leaves the units spent (counted).
    fn refund_limits(&self, v: &Verified, charged: &[Charge], request: &Request) {
        let (Some(meter), false) = (&self.usage, charged.is_empty()) else {
            return;
        };
        let unix = metering_time(&v.chain, request);
        crate::metrics::limit_refunded(meter.refund(charged, unix).is_ok());
    }

    /// Marks the approvals an allowed request relied on as spent; a second
    /// use is a denial.
    ///
    /// Which approvals were relied on comes from the same Datalog that
    /// allowed the request, not from a re-reading of the rules: when the
    /// checks still pass without the request's digest, no approval query
    /// was needed and nothing is spent; otherwise every attached approval an
    /// approval query could have matched (signed by a key some rule trusts,
    /// naming this request's digest, not expired) is spent. An approval is
    /// identified by its approver's signature, which the holder cannot
    /// change: re-appending it to the token makes a new block (a new
    /// revocation id) with the same signature.
    pub(super) fn spend_approvals(
        &self,
        v: &Verified,
        request: &Request,
        extra: &[biscuit_auth::builder::Fact],
    ) -> Result<(), Denial> {
        if !v.has_approval_rules {
            return Ok(());
        }
        let candidates = approval::candidates(&v.chain, request);
        if candidates.is_empty() {
            return Ok(());
        }
        let digest = request.digest_fact();
        let without: Vec<_> = extra.iter().filter(|f| **f != digest).cloned().collect();
        if v.prepared.passes(request, &without, self.limits) {
            return Ok(());
        }
        let Some(guard) = &self.replay else {
            return Err(Denial::new(
                DenialKind::ReplayRecordUnavailable,
                "this verifier keeps no record of used approvals (no replay guard), so it \
                 cannot accept approvals; denied to fail closed",
            ));
        };
        for a in candidates {
            let mut key = b"approval-signature:".to_vec();
            key.extend_from_slice(a.approver_signature.as_bytes());
            match guard.use_once(&key, a.expires_at, true) {
                Ok(Use::First) => {}
                Ok(Use::Replayed) => {
                    return Err(Denial {
                        kind: DenialKind::ApprovalReplayed,
                        hop: None,
                        block: Some(a.block),
                        agent: None,
                        reason: format!(
                            "the approval in block {} (signed by {}) was already used: \
                             approvals are single-use",
                            a.block, a.approver_key
                        ),
                        limit: None,
                    })
                }
                Err(e) => {
                    return Err(Denial::new(
                        DenialKind::ReplayRecordUnavailable,
                        format!(
                            "the record of used approvals is unavailable ({e}); denied to \
                             fail closed"
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Whether a hop or a first-party narrowing block of `chain` carries a raw
/// Datalog check (one outside the vocabulary's canonical shapes, §4.4).
fn has_raw_datalog(chain: &Chain) -> bool {
    chain.hops.iter().any(|h| {
        !h.grant.datalog.is_empty() || h.narrowing.iter().any(|n| !n.grant.datalog.is_empty())
    })
}

/// The time a request is metered at (SPEC §18.3): its own, but never
/// before the token was issued. A caller that sets the request time (a
/// library caller, `mandate verify --time`) could otherwise date requests
/// into windows before the token existed and get N more per window; every
/// window before issuance counts as the issuance window.
fn metering_time(chain: &Chain, request: &Request) -> i64 {
    request.time_unix().max(chain.issued_at.unix_timestamp())
}
