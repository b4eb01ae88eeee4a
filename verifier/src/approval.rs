//! Approvals at the verifier (specification §14): which approvals a request
//! needs, why an attached one does not count, and spending one.

use crate::decision::{ApprovalNeeded, Approver, Decision, Denial, DenialKind, Outcome};
use crate::explain::describe_hop;
use mandate_spec::display::word;
use mandate_spec::{Approval, ApprovalRule, Chain, Hop, Request};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long an approval a verifier suggests stays valid.
pub(crate) const SUGGESTED_VALIDITY: Duration = Duration::from_secs(600);

/// The approval rules that apply to `request`, with their hop, one per
/// approver key.
pub(crate) fn needed<'c>(chain: &'c Chain, request: &Request) -> Vec<(&'c Hop, &'c ApprovalRule)> {
    let mut out: Vec<(&Hop, &ApprovalRule)> = Vec::new();
    for hop in &chain.hops {
        for rule in hop.grant.approvals_needed(request) {
            if !out.iter().any(|(_, r)| r.key == rule.key) {
                out.push((hop, rule));
            }
        }
    }
    out
}

/// Whether every hop (and narrowing) allows `request` apart from approvals,
/// by the Rust reference semantics, and nothing has expired: a Datalog
/// denial of such a request is about approvals alone.
fn within_every_grant(chain: &Chain, request: &Request) -> bool {
    let now = request.time_unix();
    let grants = chain.hops.iter().flat_map(|h| {
        std::iter::once((&h.grant, h.expires_at))
            .chain(h.narrowing.iter().map(|n| (&n.grant, n.expires_at)))
    });
    for (grant, expires) in grants {
        if !grant.datalog.is_empty() || expires.is_some_and(|e| e.unix_timestamp() < now) {
            return false;
        }
        if !grant.alternatives.is_empty() && !grant.alternatives.iter().any(|a| a.allows(request)) {
            return false;
        }
    }
    true
}

/// After a Datalog denial: when the request is within every grant and an
/// approval rule applies, the decision about approvals (needs approval, or
/// why the attached one does not count); `None` otherwise.
pub(crate) fn explain_denial(
    chain: &Arc<Chain>,
    request: &Request,
    third_party_request: impl FnOnce() -> Option<String>,
) -> Option<Decision> {
    let needed = needed(chain, request);
    if needed.is_empty() || !within_every_grant(chain, request) {
        return None;
    }
    let digest = hex::encode(request.approval_digest());
    let mut missing = Vec::new();
    for (hop, rule) in needed {
        match attached_for(chain, request, hop, rule, &digest) {
            Attached::None => missing.push((hop, rule)),
            Attached::Refused(decision) => return Some(*decision),
            // A matching, current approval did not satisfy Datalog: not an
            // approval problem the verifier can name.
            Attached::Unexplained => return None,
        }
    }
    Some(needs_approval(
        chain,
        request,
        &missing,
        digest,
        third_party_request().unwrap_or_default(),
    ))
}

/// What the approvals attached to a chain mean for one approval rule.
enum Attached {
    /// None is signed by the rule's key: the request needs one.
    None,
    /// Why the attached approval does not count.
    Refused(Box<Decision>),
    /// A matching, current approval is attached.
    Unexplained,
}

/// The attached approvals for `rule` (of `hop`), against the request's
/// `digest`: another approver's, another request's, expired, or none.
fn attached_for(
    chain: &Arc<Chain>,
    request: &Request,
    hop: &Hop,
    rule: &ApprovalRule,
    digest: &str,
) -> Attached {
    let by_rule: Vec<&Approval> = chain
        .approvals
        .iter()
        .filter(|a| a.approver_key == rule.key)
        .collect();
    let who = describe_hop(chain, hop, "");
    let refuse = |kind, why: String| {
        Attached::Refused(Box::new(Decision::deny(
            request.clone(),
            Some(chain.clone()),
            Denial {
                kind,
                hop: Some(hop.hop),
                block: Some(hop.block),
                agent: Some(hop.agent.clone()),
                reason: format!("{who}: {why}"),
                limit: None,
                restriction: None,
            },
        )))
    };
    if by_rule.is_empty() {
        return match chain.approvals.first() {
            Some(other) => refuse(
                DenialKind::ApprovalWrongApprover,
                format!(
                    "the attached approval is signed by {}, but this request needs one \
                     from {} ({})",
                    other.approver_key,
                    word(&rule.approver),
                    rule.key
                ),
            ),
            None => Attached::None,
        };
    }
    let matching: Vec<&&Approval> = by_rule.iter().filter(|a| a.digest == digest).collect();
    if matching.is_empty() {
        return refuse(
            DenialKind::ApprovalMismatch,
            format!(
                "the approval by {} is for another request (digest {}…); this request \
                 ({} {} with {}) has digest {}…",
                word(&rule.approver),
                &by_rule[0].digest[..12],
                word(&request.action),
                word(&request.resource),
                params_text(request),
                &digest[..12]
            ),
        );
    }
    if matching
        .iter()
        .all(|a| a.expires_at.unix_timestamp() < request.time_unix())
    {
        return refuse(
            DenialKind::ApprovalExpired,
            format!(
                "the approval by {} expired at {}",
                word(&rule.approver),
                rfc3339(matching[0].expires_at)
            ),
        );
    }
    Attached::Unexplained
}

/// The needs-approval decision: who must approve (`missing`, never empty),
/// the request digest they sign, and the third-party request to sign.
fn needs_approval(
    chain: &Arc<Chain>,
    request: &Request,
    missing: &[(&Hop, &ApprovalRule)],
    digest: String,
    third_party_request: String,
) -> Decision {
    let reasons: Vec<String> = missing
        .iter()
        .map(|(hop, rule)| {
            format!(
                "{}: {} {} with {} needs an approval by {} ({})",
                describe_hop(chain, hop, ""),
                word(&request.action),
                word(&request.resource),
                params_text(request),
                word(&rule.approver),
                rule.key
            )
        })
        .collect();
    let (first_hop, _) = missing[0];
    let expires_at = OffsetDateTime::from_unix_timestamp(request.time_unix())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        + SUGGESTED_VALIDITY;
    Decision {
        decision: Outcome::NeedsApproval,
        denial: Some(Denial {
            kind: DenialKind::NeedsApproval,
            hop: Some(first_hop.hop),
            block: Some(first_hop.block),
            agent: Some(first_hop.agent.clone()),
            reason: reasons.join("; "),
            limit: None,
            restriction: None,
        }),
        request: request.clone(),
        chain: Some(chain.clone()),
        approval: Some(ApprovalNeeded {
            approvers: missing
                .iter()
                .map(|(hop, rule)| Approver {
                    name: rule.approver.clone(),
                    key: rule.key.clone(),
                    hop: hop.hop,
                })
                .collect(),
            digest,
            expires_at,
            third_party_request,
        }),
        restrictions: Vec::new(),
    }
}

/// The needs-approval decision for approvals live restrictions (SPEC §19)
/// ask for: like a rule's, each reason naming the restriction.
pub(crate) fn restriction_needs_approval(
    chain: &Arc<Chain>,
    request: &Request,
    missing: &[(&Hop, &ApprovalRule, &crate::restriction::InEffect)],
    digest: String,
    third_party_request: String,
) -> Decision {
    let pairs: Vec<(&Hop, &ApprovalRule)> = missing.iter().map(|(h, r, _)| (*h, *r)).collect();
    let mut d = needs_approval(chain, request, &pairs, digest, third_party_request);
    if let Some(denial) = &mut d.denial {
        let by: Vec<String> = missing
            .iter()
            .map(|(_, _, e)| restriction_words(&e.restriction))
            .collect();
        denial.reason = format!("{} (asked by {})", denial.reason, by.join("; "));
    }
    d
}

/// Why the approvals attached for a live restriction's approval rule do not
/// count: all signed by its key, but for another request or expired.
pub(crate) fn refused_for_restriction(
    chain: &Arc<Chain>,
    request: &Request,
    hop: &Hop,
    rule: &ApprovalRule,
    by_key: &[&Approval],
    digest: &str,
    restriction: &mandate_spec::Restriction,
) -> Decision {
    let who = describe_hop(chain, hop, "");
    let (kind, why) = match by_key.iter().find(|a| a.digest == digest) {
        Some(a) => (
            DenialKind::ApprovalExpired,
            format!(
                "the approval by {} expired at {}",
                word(&rule.approver),
                rfc3339(a.expires_at)
            ),
        ),
        None => (
            DenialKind::ApprovalMismatch,
            format!(
                "the approval by {} is for another request (digest {}…); this request \
                 ({} {} with {}) has digest {}…",
                word(&rule.approver),
                &by_key[0].digest[..by_key[0].digest.len().min(12)],
                word(&request.action),
                word(&request.resource),
                params_text(request),
                &digest[..12]
            ),
        ),
    };
    Decision::deny(
        request.clone(),
        Some(chain.clone()),
        Denial {
            kind,
            hop: Some(hop.hop),
            block: Some(hop.block),
            agent: Some(hop.agent.clone()),
            reason: format!("{who}: {why} (asked by {})", restriction_words(restriction)),
            limit: None,
            restriction: None,
        },
    )
}

/// "live restriction <id> by "ops" at <when>: "reason"".
pub(crate) fn restriction_words(r: &mandate_spec::Restriction) -> String {
    format!(
        "live restriction {} by {} at {}: {}",
        r.id,
        mandate_spec::display::quoted(&r.by),
        rfc3339(r.restricted_at),
        mandate_spec::display::quoted(&r.reason)
    )
}

/// The attached approvals an approval query (§14.2) could match for
/// `request`: signed by a key some approval rule of the chain trusts, naming
/// this request's digest, not expired. Whether the request needed any of
/// them is Datalog's to say (see `Verifier::spend_approvals`); this list
/// does not depend on the Rust reading of the rules' conditions, so a
/// request the conditions cannot be evaluated on (a missing or mistyped
/// parameter) spends its approval like any other.
pub(crate) fn candidates<'c>(chain: &'c Chain, request: &Request) -> Vec<&'c Approval> {
    let digest = hex::encode(request.approval_digest());
    let now = request.time_unix();
    let rule_keys: Vec<&str> = chain
        .hops
        .iter()
        .flat_map(|h| std::iter::once(&h.grant).chain(h.narrowing.iter().map(|n| &n.grant)))
        .flat_map(|g| g.alternatives.iter())
        .filter_map(|a| a.approval.as_ref().map(|r| r.key.as_str()))
        .collect();
    chain
        .approvals
        .iter()
        .filter(|a| {
            rule_keys.contains(&a.approver_key.as_str())
                && a.digest == digest
                && a.expires_at.unix_timestamp() >= now
        })
        .collect()
}

fn params_text(request: &Request) -> String {
    if request.params.is_empty() {
        return "no parameters".into();
    }
    request
        .params
        .iter()
        .map(|(k, v)| format!("{}={v}", word(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
