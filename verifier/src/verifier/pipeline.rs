//! The steps of a decision: verification (signatures and chain, cached by
//! token), then, on every request, revocation, proof of possession, Datalog
//! and approvals.

use super::denials::{
    chain_denial, datalog_denial, limit_exceeded, parse_denial, restricted, revocation_denial,
    unmeterable,
};
use super::{Purpose, Verifier, INLINE_COST};
use crate::approval;
use crate::cache::Verified;
use crate::decision::{Decision, Denial, DenialKind};
use crate::holder::{self, Presented};
use crate::prepared::Prepared;
use crate::replay::Use;
use crate::restriction::{self, InEffect};
use crate::revocation::revocation_targets;
use crate::usage::{chain_limits, charges_for, ChainLimit, Charge, Charged};
use biscuit_auth::error::Token;
use biscuit_auth::Biscuit;
use mandate_spec::{decode_verified_blocks, Chain, Request};
use mandate_spec::{Approval, ApprovalRule};
use std::borrow::Cow;
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

    /// Steps 6–8, on every request: revocation, live restrictions (SPEC
    /// §19), proof of possession, Datalog, usage limits (SPEC §18.4),
    /// approvals.
    pub(super) fn decide(
        &self,
        v: &Verified,
        request: &Request,
        token: &[u8],
        presented: &Presented,
        purpose: Purpose,
    ) -> Decision {
        let deny = |denial| Decision::deny(request.clone(), Some(v.chain.clone()), denial);
        let Some(list) = &self.revocations else {
            return self.decide_unrestricted(v, request, token, presented, purpose, &[]);
        };
        // Revocation: every block, the family, every agent key.
        if let Some(denial) = revocation_denial(list.as_ref(), v) {
            return deny(denial);
        }
        // Live restrictions, from the same list (a token-only check is
        // about the token, not a request: restrictions are about requests).
        if purpose == Purpose::Token && !v.raw_datalog {
            return self.decide_unrestricted(v, request, token, presented, purpose, &[]);
        }
        let in_effect = match in_effect(list.as_ref(), v) {
            Ok(e) => e,
            Err(e) => {
                return deny(Denial::new(
                    DenialKind::RevocationUnavailable,
                    format!("the live restrictions cannot be read ({e}); denied to fail closed"),
                ))
            }
        };
        if in_effect.is_empty() {
            return self.decide_unrestricted(v, request, token, presented, purpose, &[]);
        }
        let mut decision = match restriction::first_denial(&in_effect, request) {
            Some((e, rule)) => deny(restricted(&v.chain, v.blocks, e, rule, request)),
            None => self.decide_unrestricted(v, request, token, presented, purpose, &in_effect),
        };
        decision.restrictions = in_effect.iter().map(|e| e.restriction.id.clone()).collect();
        decision
    }

    /// Whether deciding a request with `v` may spend an approval or charge
    /// a remote usage meter because of the live restrictions in effect (an
    /// approval rule; a limit, with a fleet meter): a synced write or a
    /// network round trip, never on an async thread (see
    /// [`Verifier::try_decide_inline`]). A list that cannot be read is
    /// left to the decision (which denies).
    pub(super) fn restrictions_may_block(&self, v: &Verified) -> bool {
        let Some(list) = &self.revocations else {
            return false;
        };
        let Ok(in_effect) = in_effect(list.as_ref(), v) else {
            return false;
        };
        let remote_meter = self.usage.as_ref().is_some_and(|u| u.remote());
        in_effect.iter().any(|e| {
            e.restriction.rules.iter().any(|r| match r {
                mandate_spec::RestrictionRule::RequireApproval { .. } => true,
                mandate_spec::RestrictionRule::Limit { .. } => remote_meter,
                _ => false,
            })
        })
    }

    /// Steps 7–8 once revocation and the restrictions' denials are past:
    /// proof of possession, Datalog, usage limits (the chain's and those of
    /// the restrictions `in_effect`), approvals (the chain's rules and the
    /// restrictions').
    fn decide_unrestricted(
        &self,
        v: &Verified,
        request: &Request,
        token: &[u8],
        presented: &Presented,
        purpose: Purpose,
        in_effect: &[InEffect],
    ) -> Decision {
        let deny = |denial| Decision::deny(request.clone(), Some(v.chain.clone()), denial);
        // Only a request acted on is charged: never what an approver is
        // shown, nor a token-only check (even one decided on its grants).
        let charges_usage = purpose == Purpose::Request;
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
            // What an approver is shown: the approvals the request needs,
            // the restrictions' included (nothing is charged or spent).
            Ok(()) if purpose == Purpose::Approval => {
                match restriction_approvals(v, in_effect, request) {
                    Ok(_) => Decision::allow(request.clone(), v.chain.clone()),
                    Err(decision) => *decision,
                }
            }
            Ok(()) => {
                // The restrictions' approvals: all attached, or the request
                // needs them (before anything is charged).
                let restricted_approvals = match restriction_approvals(v, in_effect, request) {
                    Ok(a) => a,
                    Err(decision) => return *decision,
                };
                let limits = restricted_limits(v, in_effect);
                let charged = if charges_usage {
                    match self.charge_limits(v, &limits, request) {
                        Ok(charged) => charged,
                        Err(denial) => return deny(denial),
                    }
                } else {
                    Vec::new()
                };
                match self.spend_approvals(v, request, &extra, restricted_approvals) {
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
    fn charge_limits(
        &self,
        v: &Verified,
        limits: &[ChainLimit],
        request: &Request,
    ) -> Result<Vec<Charge>, Denial> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let charges = charges_for(limits, request).map_err(|(i, why)| {
            crate::metrics::limit_denied(crate::metrics::LimitDenial::Unmeterable);
            unmeterable(&v.chain, &limits[i], &why)
        })?;
        // A request costing more than a whole window allows can never fit:
        // no retry helps, so it is not allowed (not "exceeded").
        if let Some((i, c)) = charges.iter().find(|(_, c)| c.units > c.max) {
            crate::metrics::limit_denied(crate::metrics::LimitDenial::Unmeterable);
            let why = format!(
                "the request costs {} against {}, more than its whole allowance of {} per \
                 window: no window can allow it",
                c.units, limits[*i].limit, c.max
            );
            return Err(unmeterable(&v.chain, &limits[*i], &why));
        }
        let Some(meter) = &self.usage else {
            // A token's own limits need a meter for every request (its
            // guard, §18.2); a live restriction's only for the requests it
            // meters (§19.2): `send 10/1h` does not stop reads here.
            if charges.is_empty() && v.limits.is_empty() {
                return Ok(Vec::new());
            }
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
                let (limit, charge) = (&limits[indices[index]], &charges[index]);
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
    ///
    /// `restricted` are the approvals the live restrictions asked for: spent
    /// with them (each approval once, whoever asked for it).
    pub(super) fn spend_approvals(
        &self,
        v: &Verified,
        request: &Request,
        extra: &[biscuit_auth::builder::Fact],
        restricted: Vec<&Approval>,
    ) -> Result<(), Denial> {
        let mut candidates = self.approvals_relied_on(v, request, extra);
        for a in restricted {
            if !candidates
                .iter()
                .any(|c| c.approver_signature == a.approver_signature)
            {
                candidates.push(a);
            }
        }
        if candidates.is_empty() {
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
                        restriction: None,
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

    /// The attached approvals the chain's approval rules relied on to allow
    /// `request` (see [`Verifier::spend_approvals`]).
    fn approvals_relied_on<'v>(
        &self,
        v: &'v Verified,
        request: &Request,
        extra: &[biscuit_auth::builder::Fact],
    ) -> Vec<&'v Approval> {
        if !v.has_approval_rules {
            return Vec::new();
        }
        let candidates = approval::candidates(&v.chain, request);
        if candidates.is_empty() {
            return candidates;
        }
        let digest = request.digest_fact();
        let without: Vec<_> = extra.iter().filter(|f| **f != digest).cloned().collect();
        if v.prepared.passes(request, &without, self.limits) {
            return Vec::new();
        }
        candidates
    }
}

/// The live restrictions `list` holds for `v`'s chain: by its revocation
/// targets (its hops' agent keys sit after its blocks and its family) and
/// its principal.
fn in_effect(
    list: &dyn crate::revocation::RevocationList,
    v: &Verified,
) -> Result<Vec<InEffect>, crate::VerifierError> {
    let agents = v.blocks + 1..v.blocks + 1 + v.chain.hops.len();
    list.restrictions(&v.targets, agents, &v.chain.principal)
}

/// The approvals the live restrictions `in_effect` ask `request` for
/// (SPEC §19.2): the attached approval that meets each (signed by its key,
/// naming this request's digest, not expired), or the decision when one is
/// missing (`needs_approval`), for another request or expired.
fn restriction_approvals<'v>(
    v: &'v Verified,
    in_effect: &[InEffect],
    request: &Request,
) -> Result<Vec<&'v Approval>, Box<Decision>> {
    let mut needed: Vec<(&InEffect, &ApprovalRule)> = Vec::new();
    for e in in_effect {
        for rule in &e.restriction.rules {
            if let Some(a) = rule.approval_needed(request) {
                if !needed.iter().any(|(_, r)| r.key == a.key) {
                    needed.push((e, a));
                }
            }
        }
    }
    if needed.is_empty() {
        return Ok(Vec::new());
    }
    let chain = &v.chain;
    let digest = hex::encode(request.approval_digest());
    let now = request.time_unix();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (e, rule) in needed {
        let hop = &chain.hops[restriction::hop_of(chain, v.blocks, e).min(chain.hops.len() - 1)];
        let by_key: Vec<&Approval> = chain
            .approvals
            .iter()
            .filter(|a| a.approver_key == rule.key)
            .collect();
        if let Some(a) = by_key
            .iter()
            .find(|a| a.digest == digest && a.expires_at.unix_timestamp() >= now)
        {
            found.push(*a);
            continue;
        }
        if by_key.is_empty() {
            missing.push((hop, rule, e));
            continue;
        }
        return Err(Box::new(approval::refused_for_restriction(
            chain,
            request,
            hop,
            rule,
            &by_key,
            &digest,
            &e.restriction,
        )));
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let tpr = v
        .prepared
        .biscuit()
        .third_party_request()
        .and_then(|r| r.serialize_base64())
        .unwrap_or_default();
    Err(Box::new(approval::restriction_needs_approval(
        chain, request, &missing, digest, tpr,
    )))
}

/// The usage limits a request is charged against: the chain's, then those
/// the live restrictions `in_effect` set (each restriction's counters
/// shared by everything it applies to, SPEC §19.2).
fn restricted_limits<'v>(v: &'v Verified, in_effect: &[InEffect]) -> Cow<'v, [ChainLimit]> {
    let from_restrictions = in_effect.iter().flat_map(|e| {
        let hop = restriction::hop_of(&v.chain, v.blocks, e);
        let h = v.chain.hops.get(hop);
        e.restriction.rules.iter().filter_map(move |r| {
            r.limit().map(|l| ChainLimit {
                hop,
                agent: h.map(|h| h.agent.clone()).unwrap_or_default(),
                block: h.map_or(0, |h| h.block),
                key: e.restriction.counter_key(l),
                limit: l.clone(),
                restriction: Some(e.restriction.id.clone()),
            })
        })
    });
    let mut limits = from_restrictions.peekable();
    if limits.peek().is_none() {
        return Cow::Borrowed(&v.limits);
    }
    let mut all = v.limits.clone();
    all.extend(limits);
    Cow::Owned(all)
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
