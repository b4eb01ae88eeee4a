//! The authorization pipeline.

use crate::approval;
use crate::audit::{AuditEvent, AuditSink};
use crate::cache::{CacheOptions, VerificationCache, Verified};
use crate::decision::{Decision, Denial, DenialKind};
use crate::error::VerifierError;
use crate::explain;
use crate::holder::{self, Presented, DEFAULT_PROOF_SKEW};
use crate::keys::RootKeys;
use crate::prepared::Prepared;
use crate::replay::{ReplayGuard, Use};
use crate::revocation::{Revocation, RevocationStore, Target};
use biscuit_auth::error::{FailedCheck, Format, Logic, Token};
use biscuit_auth::Biscuit;
use mandate_spec::{
    decode_verified_blocks, Chain, ChainError, ChainErrorKind, Request, MAX_TOKEN_BYTES,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Datalog run limits applied to every authorization: a backstop.
///
/// What a decision can cost is bounded by the token's structure before any
/// Datalog runs (SPEC §6 rule 1c: at most [`mandate_spec::MAX_BLOCKS`]
/// blocks, no rules, and a cost bound over every check query under
/// [`mandate_spec::MAX_COST`]); the worst token that passes is decided in a
/// few milliseconds (`cargo bench -p mandate-tests --bench worst_case`). These
/// limits therefore never decide anything on a healthy verifier: the time
/// limit is set far above the worst case, so that a busy machine (every core
/// saturated) never turns a legitimate request into a spurious denial.
/// biscuit-auth's own default (1 ms) did exactly that under load. A limit
/// hit is a denial ([`DenialKind::Evaluation`]), never an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most facts the evaluation may derive to. Token blocks carry no rules,
    /// so nothing is derived; the token's own facts are bounded by its size.
    /// Default 1 000.
    pub max_facts: u64,
    /// Most rule-application rounds. Default 100.
    pub max_iterations: u64,
    /// Most wall-clock time for the Datalog run. Default 1 s: a backstop
    /// against a bug in the cost bound, hundreds of times the worst case.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_facts: 1_000,
            max_iterations: 100,
            max_time: Duration::from_secs(1),
        }
    }
}

/// Called with the entries of each revocation a list takes in.
pub type RevocationObserver = Arc<dyn Fn(&[Revocation]) + Send + Sync>;

/// A revocation list the verifier consults: given targets in order, the
/// first one revoked. Implemented by [`RevocationStore`], by `Arc`s of any
/// list, and by closures (for tests or a custom store).
pub trait RevocationList: Send + Sync {
    /// The first revoked target among `targets`, with its index.
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError>;

    /// Where the list stands in the revocation feed (the last stream
    /// sequence applied), for audit records; `None` when it does not know.
    fn position(&self) -> Option<u64> {
        None
    }

    /// Asks to be told of every revocation the list takes in from now on
    /// (the verification cache prunes itself with it). Returns false when
    /// the list cannot tell (the default).
    fn subscribe(&self, _observer: RevocationObserver) -> bool {
        false
    }
}

impl RevocationList for RevocationStore {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        RevocationStore::first_revoked(self, targets)
    }

    fn position(&self) -> Option<u64> {
        Some(self.cached_feed_position())
    }

    fn subscribe(&self, observer: RevocationObserver) -> bool {
        RevocationStore::subscribe(self, observer);
        true
    }
}

impl<T: RevocationList + ?Sized> RevocationList for Arc<T> {
    fn first_revoked(
        &self,
        targets: &[Target],
    ) -> Result<Option<(usize, Revocation)>, VerifierError> {
        (**self).first_revoked(targets)
    }

    fn position(&self) -> Option<u64> {
        (**self).position()
    }

    fn subscribe(&self, observer: RevocationObserver) -> bool {
        (**self).subscribe(observer)
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
    cache: Option<VerificationCache>,
    audit: Option<Arc<dyn AuditSink>>,
    replay: Option<Arc<ReplayGuard>>,
    proof_skew: Duration,
    policy_notes: Vec<String>,
    policy_hash: Arc<str>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .field("revocations", &self.revocations.is_some())
            .field("cache", &self.cache.is_some())
            .field("audit", &self.audit.is_some())
            .field("policy_hash", &self.policy_hash)
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting `keys`, with default [`Limits`], no revocation
    /// list, no cache and no audit sink.
    pub fn new(keys: RootKeys) -> Verifier {
        let mut v = Verifier {
            keys,
            limits: Limits::default(),
            revocations: None,
            cache: None,
            audit: None,
            replay: None,
            proof_skew: DEFAULT_PROOF_SKEW,
            policy_notes: Vec::new(),
            policy_hash: Arc::from(""),
        };
        v.rehash();
        v
    }

    /// Consults `list` on every authorization, before Datalog runs: every
    /// block's revocation id, the token family and every agent key of the
    /// chain. A list that cannot be read denies (fails closed).
    pub fn with_revocations(mut self, list: impl RevocationList + 'static) -> Verifier {
        self.revocations = Some(Arc::new(list));
        self.connect_cache();
        self.rehash();
        self
    }

    /// Keeps what the signature and chain checks established about each
    /// token, by a hash of its bytes, within `options`' bounds: a token seen
    /// again skips them. Revocation and Datalog still run on every request,
    /// and a revocation the list takes in (a local revoke or the feed) drops
    /// the cached tokens it concerns.
    pub fn with_cache(mut self, options: CacheOptions) -> Verifier {
        self.cache = Some(VerificationCache::new(options));
        self.connect_cache();
        self
    }

    /// Records used approvals and proof nonces in `guard`, so each is
    /// accepted once. Without one, a request that needs an approval or a
    /// proof of possession is denied (`replay_record_unavailable`).
    pub fn with_replay_guard(mut self, guard: Arc<ReplayGuard>) -> Verifier {
        self.replay = Some(guard);
        self
    }

    /// How far a proof's timestamp may be from the verifier's clock, either
    /// way. Default 60 s.
    pub fn with_proof_skew(mut self, skew: Duration) -> Verifier {
        self.proof_skew = skew;
        self.rehash();
        self
    }

    /// Sends every decision to `sink` (e.g. an [`crate::AuditLog`]).
    pub fn with_audit(mut self, sink: impl AuditSink + 'static) -> Verifier {
        self.audit = Some(Arc::new(sink));
        self
    }

    /// Adds `note` (e.g. the HTTP request mapping) to what the policy hash
    /// covers.
    pub fn with_policy_note(mut self, note: &str) -> Verifier {
        self.policy_notes.push(note.to_string());
        self.rehash();
        self
    }

    /// Replaces the Datalog run limits.
    pub fn with_limits(mut self, limits: Limits) -> Verifier {
        self.limits = limits;
        self.rehash();
        self
    }

    /// The run limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// SHA-256 (hex) of this verifier's policy: its root keys, run limits,
    /// whether it consults a revocation list, and its policy notes. Audit
    /// records carry it, so an auditor can tell which policy decided.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// Whether the revocation list can be consulted now: `Ok` when it
    /// answers (or none is set), else why every request is being denied
    /// (e.g. a stale feed). For health endpoints.
    pub fn revocations_ready(&self) -> Result<(), VerifierError> {
        match &self.revocations {
            None => Ok(()),
            Some(list) => list.first_revoked(&[]).map(|_| ()),
        }
    }

    /// `Ok` while the audit sink records decisions (or there is none).
    pub fn audit_health(&self) -> Result<(), VerifierError> {
        match &self.audit {
            None => Ok(()),
            Some(a) => a.health(),
        }
    }

    /// Tokens in the verification cache (0 without one). Runs the cache's
    /// pending maintenance first, so it is exact but not free.
    pub fn cached_tokens(&self) -> u64 {
        self.cache.as_ref().map_or(0, VerificationCache::len)
    }

    fn connect_cache(&self) {
        if let (Some(cache), Some(list)) = (&self.cache, &self.revocations) {
            let cache = cache.clone();
            list.subscribe(Arc::new(move |entries: &[Revocation]| cache.prune(entries)));
        }
    }

    fn rehash(&mut self) {
        let mut h = Sha256::new();
        h.update(b"mandate-policy-v1\n");
        h.update(self.keys.describe().as_bytes());
        h.update(
            format!(
                "\nlimits facts={} iterations={} time_us={}\nrevocations={}\nproof_skew_s={}\n",
                self.limits.max_facts,
                self.limits.max_iterations,
                self.limits.max_time.as_micros(),
                self.revocations.is_some(),
                self.proof_skew.as_secs()
            )
            .as_bytes(),
        );
        for note in &self.policy_notes {
            h.update(b"note\n");
            h.update(note.as_bytes());
            h.update(b"\n");
        }
        self.policy_hash = Arc::from(hex::encode(h.finalize()).as_str());
    }

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
        let started = std::time::Instant::now();
        let decision = guarded(request, || self.authorize_inner(token, request, presented));
        crate::metrics::decided(&decision, Some(started.elapsed()));
        self.record(&decision);
        decision
    }

    /// [`Verifier::authorize_presented`], but only when the decision is
    /// cheap: the token's verification is in the cache, its cost bound is at
    /// most [`INLINE_COST`], and deciding writes nothing synced (no approval
    /// rules). Otherwise `None`, and nothing is decided or recorded: the
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
        let cache = self.cache.as_ref()?;
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let started = std::time::Instant::now();
        let verified = cache.get(&VerificationCache::key(token))?;
        if verified.cost > INLINE_COST || verified.has_approval_rules {
            return None;
        }
        // A miss is counted by the decision that follows on a blocking
        // thread; a hit only here, where it is decided.
        crate::metrics::cache_lookup(true);
        let decision = guarded(request, || {
            if let Err(e) = request.validate() {
                return Decision::deny(
                    request.clone(),
                    None,
                    Denial::new(DenialKind::InvalidRequest, e.to_string()),
                );
            }
            self.decide(&verified, request, token, presented, Purpose::Request)
        });
        crate::metrics::decided(&decision, Some(started.elapsed()));
        self.record(&decision);
        Some(decision)
    }

    /// Denies `request` without a token being read (e.g. none was
    /// presented), recording the decision like any other.
    pub fn deny_and_record(&self, request: Request, denial: Denial) -> Decision {
        let decision = Decision::deny(request, None, denial);
        crate::metrics::decided(&decision, None);
        self.record(&decision);
        decision
    }

    fn record(&self, decision: &Decision) {
        if let Some(audit) = &self.audit {
            audit.record(AuditEvent {
                decided_at: OffsetDateTime::now_utc(),
                decision: decision.clone(),
                revocation_position: self.revocations.as_ref().and_then(|l| l.position()),
                policy_hash: self.policy_hash.to_string(),
            });
        }
    }

    fn authorize_inner(&self, token: &[u8], request: &Request, presented: &Presented) -> Decision {
        if let Err(e) = request.validate() {
            return Decision::deny(
                request.clone(),
                None,
                Denial::new(DenialKind::InvalidRequest, e.to_string()),
            );
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
        self.decide(&verified, request, token, presented, Purpose::Request)
    }

    /// Steps 1–2: every signature (root key by id), then the chain: who
    /// delegated to whom, each hop signed by the key the previous hop named.
    fn verify(&self, token: &[u8]) -> Result<Arc<Verified>, Denial> {
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
            cost,
        }))
    }

    /// Steps 6–8, on every request: revocation, proof of possession, Datalog,
    /// approvals.
    fn decide(
        &self,
        v: &Verified,
        request: &Request,
        token: &[u8],
        presented: &Presented,
        purpose: Purpose,
    ) -> Decision {
        let deny = |denial| Decision::deny(request.clone(), Some(v.chain.clone()), denial);
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
        if v.has_approval_rules {
            extra.push(request.digest_fact());
        }
        // Datalog: every check of every block.
        match v.prepared.run(request, &extra, self.limits) {
            Ok(()) if purpose == Purpose::Approval => {
                Decision::allow(request.clone(), v.chain.clone())
            }
            Ok(()) => match self.spend_approvals(v, request, &extra) {
                Ok(()) => Decision::allow(request.clone(), v.chain.clone()),
                Err(denial) => deny(denial),
            },
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
    fn spend_approvals(
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

    /// What an approver is shown (SPEC §14.4): `request` decided with
    /// `token` now, as it will be once its final holder's proof of
    /// possession has been checked (an approver cannot make that proof; the
    /// request still needs it when it is made). A `needs_approval` outcome
    /// says by whom and carries the third-party request to sign. Nothing is
    /// spent, nothing is recorded in the audit log: this is not a request.
    pub fn decide_for_approver(&self, token: &[u8], request: &Request) -> Decision {
        guarded(request, || {
            if let Err(e) = request.validate() {
                return Decision::deny(
                    request.clone(),
                    None,
                    Denial::new(DenialKind::InvalidRequest, e.to_string()),
                );
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
}

/// The evaluation cost (SPEC §6 rule 1c, the part each request pays) up to
/// which a cached token is decided inline by
/// [`Verifier::try_authorize_inline`], and its Datalog loaded once into the
/// cache: a canonical chain of a few hops costs a few thousand units, and a
/// decision of this cost takes well under a millisecond.
pub const INLINE_COST: u64 = 20_000;

/// Why a request is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To act on it: proofs checked, approvals spent.
    Request,
    /// To show an approver (see [`Verifier::decide_for_approver`]).
    Approval,
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

/// The revocation targets a verifier looks up for a token, in order: every
/// block's revocation id (block i at index i, as Biscuit's
/// `revocation_identifiers` gives them), then the token family, then each
/// hop's agent key, then each approval block's signer key (§9.1: a revoked
/// approver key stops the approvals it signed).
pub fn revocation_targets(ids: Vec<Vec<u8>>, chain: &Chain) -> Vec<Target> {
    let mut targets = Vec::with_capacity(ids.len() + 1 + chain.hops.len() + chain.approvals.len());
    targets.extend(ids.into_iter().map(Target::Block));
    targets.push(Target::Token(chain.token_id.clone()));
    targets.extend(
        chain
            .hops
            .iter()
            .map(|hop| Target::Agent(hop.agent_public_key.to_bytes().to_vec())),
    );
    targets.extend(chain.approvals.iter().filter_map(|a| {
        mandate_spec::parse_public_key(&a.approver_key)
            .ok()
            .map(|k| Target::Agent(k.to_bytes().to_vec()))
    }));
    targets
}

fn revocation_denial(list: &dyn RevocationList, v: &Verified) -> Option<Denial> {
    let (chain, blocks) = (&*v.chain, v.blocks);
    let (index, entry) = match list.first_revoked(&v.targets) {
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
            Some(h) if h.block == index => {
                let who = explain::describe_hop(chain, h, "");
                let dead = if h.hop == 0 {
                    "; every token derived from it is dead"
                } else {
                    ""
                };
                format!("{who} is {why}{dead}")
            }
            Some(h) => format!(
                "{} is {why}",
                explain::describe_hop(chain, h, &format!(", first-party block {index}"))
            ),
            None => format!("block {index} is {why}"),
        };
        (hop.map(|h| h.hop), Some(index), what)
    } else if index == blocks {
        (
            Some(0),
            Some(0),
            format!(
                "token family {} is {why}",
                mandate_spec::display::word(&chain.token_id)
            ),
        )
    } else if let Some(h) = chain.hops.get(index - blocks - 1) {
        let hop_no = h.hop;
        (
            Some(hop_no),
            Some(h.block),
            format!(
                "agent {} (key {}) at hop {hop_no} is {why}",
                mandate_spec::display::quoted(&h.agent),
                h.agent_key
            ),
        )
    } else {
        let a = chain
            .approvals
            .get(index - blocks - 1 - chain.hops.len())
            .map_or_else(
                || ("?".to_string(), 0),
                |a| (a.approver_key.clone(), a.block),
            );
        (
            None,
            Some(a.1),
            format!(
                "the approver key {} of approval block {} is {why}",
                a.0, a.1
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
