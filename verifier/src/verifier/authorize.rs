//! The entry points of a decision.

use super::{Check, Purpose, Verifier, INLINE_COST};
use crate::audit::AuditEvent;
use crate::cache::VerificationCache;
use crate::decision::{Decision, Denial, DenialKind};
use crate::holder::Presented;
use mandate_spec::{Request, MAX_TOKEN_BYTES};
use time::OffsetDateTime;

impl Verifier {
    /// Authorizes `request` with the token's raw bytes. Never fails: every
    /// problem is a denial with its reason. The decision goes to the audit
    /// sink, if there is one. A token requiring proof of possession needs
    /// [`Verifier::authorize_presented`].
    pub fn authorize(&self, token: &[u8], request: &Request) -> Decision {
        self.authorize_presented(token, request, &Presented::default())
    }

    /// [`Verifier::authorize`] with what came with the request besides the
    /// token: the method, the body's digest and a proof of possession.
    pub fn authorize_presented(
        &self,
        token: &[u8],
        request: &Request,
        presented: &Presented,
    ) -> Decision {
        self.decide_presented(token, request, presented, Check::Grant)
    }

    /// [`Verifier::authorize_presented`] asking `check` of the request:
    /// with [`Check::Token`], only that the token is valid, unexpired and
    /// unrevoked and its holder proven (protocol housekeeping that acts on
    /// nothing). Recorded like any decision.
    pub fn decide_presented(
        &self,
        token: &[u8],
        request: &Request,
        presented: &Presented,
        check: Check,
    ) -> Decision {
        let started = std::time::Instant::now();
        let decision = guarded(request, || {
            self.authorize_inner(token, request, presented, check.into())
        });
        crate::metrics::decided(&decision, Some(started.elapsed()));
        self.record(&decision);
        decision
    }

    /// [`Verifier::authorize_presented`], but only when the decision is
    /// cheap: the token's verification is in the cache, its cost bound is at
    /// most [`INLINE_COST`], and deciding writes nothing synced (no approval
    /// rules) and waits on no network (a chain with usage limits only with
    /// a local meter, [`crate::usage::UsageMeter::remote`] false). Otherwise `None`, and nothing is decided or recorded: the
    /// caller decides with [`Verifier::authorize_presented`] where blocking
    /// is allowed (e.g. `tokio::task::spawn_blocking`).
    ///
    /// Servers use it to keep repeat requests on their async threads (a
    /// thread hand-off costs more than such a decision) while never running
    /// a cold verification (signatures, a token whose Datalog can cost up to
    /// [`mandate_spec::MAX_COST`]) or a synced write there.
    pub fn try_authorize_inline(
        &self,
        token: &[u8],
        request: &Request,
        presented: &Presented,
    ) -> Option<Decision> {
        self.try_decide_inline(token, request, presented, Check::Grant)
    }

    /// [`Verifier::try_authorize_inline`] asking `check` of the request (a
    /// token-only check runs no Datalog: any cached token is decided inline).
    pub fn try_decide_inline(
        &self,
        token: &[u8],
        request: &Request,
        presented: &Presented,
        check: Check,
    ) -> Option<Decision> {
        let cache = self.cache.as_ref()?;
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let started = std::time::Instant::now();
        let verified = cache.get(&VerificationCache::key(token))?;
        let runs_datalog = check == Check::Grant || verified.raw_datalog;
        if runs_datalog && (verified.cost > INLINE_COST || verified.has_approval_rules) {
            return None;
        }
        // A proof's nonce spent in a fleet's bucket is a network round trip.
        if verified.holder_required && self.replay.as_ref().is_some_and(|r| r.remote_nonces()) {
            return None;
        }
        // So is a usage charge in a fleet's counters (or a synced disk write).
        if runs_datalog
            && !verified.limits.is_empty()
            && self.usage.as_ref().is_some_and(|u| u.remote())
        {
            return None;
        }
        // So may the live restrictions in effect (an approval to spend, a
        // limit on a fleet's counters).
        if runs_datalog && self.restrictions_may_block(&verified) {
            return None;
        }
        // A miss is counted by the decision that follows on a blocking
        // thread; a hit only here, where it is decided.
        crate::metrics::cache_lookup(true);
        let decision = guarded(request, || {
            if let Some(invalid) = invalid_request(request) {
                return invalid;
            }
            self.decide(&verified, request, token, presented, check.into())
        });
        crate::metrics::decided(&decision, Some(started.elapsed()));
        self.record(&decision);
        Some(decision)
    }

    /// Whether `token` verifies: its signatures under a trusted root key and
    /// its chain (from the cache when it holds the token, else checked and
    /// cached). What a server may ask before it works for a request (e.g.
    /// parses a large body); not a decision — nothing is recorded, and
    /// revocation and grants are for the decision.
    pub fn verifies(&self, token: &[u8]) -> bool {
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        let Some(cache) = &self.cache else {
            return self.verify(token).is_ok();
        };
        let key = VerificationCache::key(token);
        if cache.get(&key).is_some() {
            return true;
        }
        match self.verify(token) {
            Ok(v) => {
                cache.insert(key, v);
                true
            }
            Err(_) => false,
        }
    }

    /// Denies `request` without a token being read (e.g. none was
    /// presented), recording the decision like any other.
    pub fn deny_and_record(&self, request: Request, denial: Denial) -> Decision {
        let decision = Decision::deny(request, None, denial);
        crate::metrics::decided(&decision, None);
        self.record(&decision);
        decision
    }

    /// What an approver is shown (SPEC §14.4): `request` decided with
    /// `token` now, as it will be once its final holder's proof of
    /// possession has been checked (an approver cannot make that proof; the
    /// request still needs it when it is made). A `needs_approval` outcome
    /// says by whom and carries the third-party request to sign. Nothing is
    /// spent, nothing is recorded in the audit log: this is not a request.
    pub fn decide_for_approver(&self, token: &[u8], request: &Request) -> Decision {
        guarded(request, || {
            if let Some(invalid) = invalid_request(request) {
                return invalid;
            }
            if token.len() > MAX_TOKEN_BYTES {
                return Decision::deny(
                    request.clone(),
                    None,
                    Denial::new(DenialKind::MalformedToken, "token too large"),
                );
            }
            match self.verify(token) {
                Ok(v) => self.decide(&v, request, token, &Presented::default(), Purpose::Approval),
                Err(denial) => Decision::deny(request.clone(), None, denial),
            }
        })
    }

    /// Authorizes with a token given as URL-safe base64 text.
    pub fn authorize_base64(&self, token: &str, request: &Request) -> Decision {
        match mandate_spec::token_from_text(token) {
            Ok(bytes) => self.authorize(&bytes, request),
            Err(e) => self.deny_and_record(
                request.clone(),
                Denial::new(DenialKind::MalformedToken, e.to_string()),
            ),
        }
    }

    pub(super) fn record(&self, decision: &Decision) {
        if let Some(audit) = &self.audit {
            audit.record(AuditEvent {
                decided_at: OffsetDateTime::now_utc(),
                decision: decision.clone(),
                revocation_position: self.revocations.as_ref().and_then(|l| l.position()),
                policy_hash: self.policy_hash.to_string(),
            });
        }
    }

    pub(super) fn authorize_inner(
        &self,
        token: &[u8],
        request: &Request,
        presented: &Presented,
        purpose: Purpose,
    ) -> Decision {
        if let Some(invalid) = invalid_request(request) {
            return invalid;
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Decision::deny(
                request.clone(),
                None,
                Denial::new(
                    DenialKind::MalformedToken,
                    format!("token larger than {MAX_TOKEN_BYTES} bytes"),
                ),
            );
        }
        // 1–2. Signatures and chain integrity, or what the cache remembers
        //      of them for these exact bytes.
        let verified = match &self.cache {
            None => self.verify(token),
            Some(cache) => {
                let key = VerificationCache::key(token);
                let cached = cache.get(&key);
                crate::metrics::cache_lookup(cached.is_some());
                match cached {
                    Some(v) => Ok(v),
                    None => self.verify(token).inspect(|v| cache.insert(key, v.clone())),
                }
            }
        };
        let verified = match verified {
            Ok(v) => v,
            Err(denial) => return Decision::deny(request.clone(), None, denial),
        };
        self.decide(&verified, request, token, presented, purpose)
    }
}

/// Runs `decide`, turning a panic in a dependency while reading a crafted
/// token into a denial (defence in depth: never a crashed server).
fn guarded(request: &Request, decide: impl FnOnce() -> Decision) -> Decision {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide)).unwrap_or_else(|_| {
        Decision::deny(
            request.clone(),
            None,
            Denial::new(
                DenialKind::MalformedToken,
                "the token could not be read (a decoder failed on it); denied",
            ),
        )
    })
}

/// The denial of a request that is not well formed (bad action name,
/// non-canonical resource, reserved parameter), if it is not.
fn invalid_request(request: &Request) -> Option<Decision> {
    let e = request.validate().err()?;
    Some(Decision::deny(
        request.clone(),
        None,
        Denial::new(DenialKind::InvalidRequest, e.to_string()),
    ))
}
