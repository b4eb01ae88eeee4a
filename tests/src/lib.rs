//! # mandate-tests
//!
//! End-to-end tests across Mandate's library crates: a token is minted with
//! `mandate-issuer`, delegated hop by hop with `mandate-attenuate` and decided
//! by `mandate-verifier`, exactly as an API server would see it. This crate is
//! the shared harness; the tests live in `tests/`, one file per area:
//!
//! - `chain.rs`: happy paths at every depth, the chain a decision carries,
//!   decision JSON, root key rotation;
//! - `adversarial.rs`: forged, reordered, dropped and spliced blocks, hops
//!   signed by the wrong key, chain-integrity violations, malformed tokens;
//! - `widening.rs`: children trying to widen what their parent allows,
//!   expiry, delegation depth;
//! - `injection.rs`: Datalog syntax through ids, patterns and values,
//!   non-canonical resources, mistyped and missing parameters, run limits;
//! - `proptest_narrowing.rs`: random grants and requests — a child never
//!   allows what its parent denies, and the Datalog decision agrees with the
//!   Rust reference semantics;
//! - `regression.rs`: one test per bug found, named after what broke;
//! - `fuzz_corpus.rs`: every committed fuzz corpus and crash file replayed
//!   through the fuzz targets of [`fuzz_targets`] (the `fuzz/` crate runs
//!   the same functions under libFuzzer).
//!
//! The harness builds a [`Family`] (one root token and the tokens delegated
//! from it), appends blocks with the raw Biscuit API where the Mandate API
//! refuses to ([`append_hop`], [`append_first_party`]), re-encodes token
//! containers ([`container`], [`encode`]) and asserts decisions with their
//! reasons ([`assert_allowed`], [`assert_denied`]).

pub mod conformance;
pub mod hostile;

use biscuit_auth::builder::BlockBuilder;
use biscuit_auth::format::schema;
use biscuit_auth::{KeyPair, UnverifiedBiscuit};
use mandate_attenuate::{delegate_at, Attenuated, Delegation};
use mandate_issuer::{Issuer, MintRequest, Minted};
use mandate_spec::{hop_block, Grant, HopContent, Request};
use mandate_verifier::{Decision, Denial, DenialKind, Limits, RootKeys, Verifier};
use prost::Message;
use std::time::{Duration, SystemTime};

pub use biscuit_auth;

pub mod fuzz_targets;

/// The principal every [`Family`] acts for unless a test says otherwise.
pub const PRINCIPAL: &str = "user:alice";

/// The root token's time-to-live in a [`Family`].
pub const ROOT_TTL: Duration = Duration::from_secs(3600);

/// An agent: its id and its own Ed25519 key pair.
#[derive(Debug)]
pub struct Agent {
    /// The agent id written into the hop that delegates to it.
    pub id: String,
    /// The agent's key pair; its public half is the hop's agent key.
    pub key: KeyPair,
}

impl Agent {
    /// A new agent with a fresh key.
    pub fn new(id: &str) -> Agent {
        Agent {
            id: id.to_string(),
            key: KeyPair::new(),
        }
    }

    /// The agent's public key as `ed25519/<hex>`, as chains print it.
    pub fn key_text(&self) -> String {
        self.key.public().to_string()
    }
}

/// The grant most tests start from: `read,list:/api/customers/*` with
/// `rows<=100`.
pub fn customers_grant() -> Grant {
    grant(&["read,list:/api/customers/*"], &["rows<=100"])
}

/// `read /api/customers/42` with `rows` = `rows`: within
/// [`customers_grant`] for 0 ≤ rows ≤ 100.
pub fn read_customer(rows: i64) -> Request {
    Request::new("read", "/api/customers/42").param("rows", rows)
}

/// A family minted with [`customers_grant`] whose newest token has `depth`
/// hops, each granting `read:/api/customers/*` with `rows<=100`.
pub fn customers_family(depth: usize) -> Family {
    let mut f = Family::mint(customers_grant());
    f.delegate_n(depth, &grant(&["read:/api/customers/*"], &["rows<=100"]));
    f
}

/// One hour from now, an expiry for hops built by hand.
pub fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

/// Parses a grant written the CLI way (`ACTION[,ACTION…]:PATTERN` and
/// `--where` constraints); panics on a malformed grant.
pub fn grant(allow: &[&str], where_: &[&str]) -> Grant {
    Grant::parse(allow, where_).unwrap_or_else(|e| panic!("grant {allow:?} {where_:?}: {e}"))
}

/// The run limits of the harness's verifiers: the defaults with a 2 s time
/// limit. Tests decide what a request means, not how fast: an unoptimized
/// build on a loaded machine can overrun the 20 ms default and turn an allow
/// into a spurious `evaluation` denial. The defaults themselves are tested
/// explicitly (`adversarial.rs`).
pub fn test_limits() -> Limits {
    Limits {
        max_time: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// The root keys of `issuer`, by root key id, as a verifier trusts them.
pub fn root_keys_of(issuer: &Issuer) -> RootKeys {
    issuer
        .keys()
        .public_keys()
        .into_iter()
        .fold(RootKeys::new(), |keys, (id, key)| keys.with(id, key))
}

/// A verifier trusting `keys`, with [`test_limits`].
pub fn verifier(keys: RootKeys) -> Verifier {
    Verifier::new(keys).with_limits(test_limits())
}

/// A verifier trusting every root key of `issuer`, by root key id, with
/// [`test_limits`].
pub fn verifier_for(issuer: &Issuer) -> Verifier {
    verifier(root_keys_of(issuer))
}

/// A mint request for `PRINCIPAL` handing `grant` to `agent` for
/// [`ROOT_TTL`], with a purpose and no depth limit.
pub fn mint_request(agent: &Agent, grant: Grant) -> MintRequest {
    MintRequest {
        principal: PRINCIPAL.into(),
        agent: agent.id.clone(),
        agent_key: agent.key.public(),
        grant,
        ttl: ROOT_TTL,
        purpose: Some(format!("root task for {}", agent.id)),
        max_depth: None,
    }
}

/// A delegation of `grant` to `agent` until the chain's expiry, with a
/// purpose naming the agent.
pub fn delegation(agent: &Agent, grant: Grant) -> Delegation {
    Delegation {
        agent: agent.id.clone(),
        agent_key: agent.key.public(),
        grant,
        ttl: None,
        purpose: Some(format!("task for {}", agent.id)),
    }
}

/// One root token and the tokens delegated from it, hop by hop:
/// `tokens[d]` has `d` delegation hops and is held by `agents[d]`
/// (`agents[0]` is the root's first agent, `agent-0`).
#[derive(Debug)]
pub struct Family {
    /// The issuer that minted the root.
    pub issuer: Issuer,
    /// A verifier trusting the issuer's root keys by id ([`verifier_for`]).
    pub verifier: Verifier,
    /// The minted root token.
    pub minted: Minted,
    /// `agents[d]` holds `tokens[d]`.
    pub agents: Vec<Agent>,
    /// `tokens[d]` has `d` delegation hops.
    pub tokens: Vec<Vec<u8>>,
    /// The result of each delegation (`delegations[d - 1]` made `tokens[d]`).
    pub delegations: Vec<Attenuated>,
}

impl Family {
    /// Mints a root token with `root_grant` for `agent-0`, now, with a fresh
    /// issuer key.
    pub fn mint(root_grant: Grant) -> Family {
        Family::mint_with(root_grant, |_| {})
    }

    /// [`Family::mint`] after `edit` adjusts the mint request (depth limit,
    /// principal, ttl, …).
    pub fn mint_with(root_grant: Grant, edit: impl FnOnce(&mut MintRequest)) -> Family {
        Family::mint_by(
            Issuer::new(KeyPair::new()),
            root_grant,
            edit,
            SystemTime::now(),
        )
    }

    /// Mints with `issuer` as of `now`, after `edit` adjusts the request.
    pub fn mint_by(
        issuer: Issuer,
        root_grant: Grant,
        edit: impl FnOnce(&mut MintRequest),
        now: SystemTime,
    ) -> Family {
        let first = Agent::new("agent-0");
        let mut req = mint_request(&first, root_grant);
        edit(&mut req);
        let minted = issuer
            .mint_at(&req, now)
            .unwrap_or_else(|e| panic!("mint: {e}"));
        Family {
            verifier: verifier_for(&issuer),
            issuer,
            tokens: vec![minted.token.clone()],
            minted,
            agents: vec![first],
            delegations: Vec::new(),
        }
    }

    /// The newest token (the deepest delegation so far).
    pub fn token(&self) -> &[u8] {
        self.tokens.last().expect("a family has its root token")
    }

    /// The agent holding the newest token.
    pub fn holder(&self) -> &Agent {
        self.agents.last().expect("a family has its first agent")
    }

    /// The number of delegation hops of the newest token.
    pub fn depth(&self) -> usize {
        self.tokens.len() - 1
    }

    /// The holder delegates `grant` to a new agent `agent-<depth>`, now.
    pub fn delegate(&mut self, grant: Grant) -> &mut Family {
        self.delegate_with(grant, |_| {}, SystemTime::now())
    }

    /// The holder delegates `grant` as of `now`, after `edit` adjusts the
    /// delegation (ttl, purpose, …).
    pub fn delegate_with(
        &mut self,
        grant: Grant,
        edit: impl FnOnce(&mut Delegation),
        now: SystemTime,
    ) -> &mut Family {
        let next = Agent::new(&format!("agent-{}", self.depth() + 1));
        let mut d = delegation(&next, grant);
        edit(&mut d);
        let out = delegate_at(self.token(), &self.holder().key, &d, now)
            .unwrap_or_else(|e| panic!("delegate hop {}: {e}", self.depth() + 1));
        self.tokens.push(out.token.clone());
        self.agents.push(next);
        self.delegations.push(out);
        self
    }

    /// Delegates `n` times in a row, each hop with `grant`.
    pub fn delegate_n(&mut self, n: usize, grant: &Grant) -> &mut Family {
        for _ in 0..n {
            self.delegate(grant.clone());
        }
        self
    }

    /// Decides `request` with the newest token.
    pub fn authorize(&self, request: &Request) -> Decision {
        self.verifier.authorize(self.token(), request)
    }

    /// Decides `request` with `tokens[depth]`.
    pub fn authorize_at_depth(&self, depth: usize, request: &Request) -> Decision {
        self.verifier.authorize(&self.tokens[depth], request)
    }
}

/// A delegation-hop block naming `agent`, built by the spec's own encoder
/// (exactly what `delegate` would sign), expiring at `expires`.
pub fn hop_block_for(agent: &Agent, grant: &Grant, expires: SystemTime) -> BlockBuilder {
    hop_block(&HopContent {
        agent: &agent.id,
        agent_key: &agent.key.public(),
        purpose: Some("raw hop"),
        grant,
        expires,
    })
    .unwrap_or_else(|e| panic!("hop block: {e}"))
}

/// Appends `block` as a third-party block signed by `signer`, with the raw
/// Biscuit API (`third_party_request` → `create_block` →
/// `append_third_party`), bypassing every check `delegate` makes.
pub fn append_hop(token: &[u8], signer: &KeyPair, block: BlockBuilder) -> Vec<u8> {
    let biscuit = UnverifiedBiscuit::from(token).expect("token parses");
    let request = biscuit.third_party_request().expect("third-party request");
    let signed = request
        .create_block(&signer.private(), block)
        .expect("third-party block");
    biscuit
        .append_third_party(&signed.serialize().expect("serialize block"))
        .expect("append third-party block")
        .to_vec()
        .expect("serialize token")
}

/// Appends `block` as a plain first-party block with the raw Biscuit API.
pub fn append_first_party(token: &[u8], block: BlockBuilder) -> Vec<u8> {
    UnverifiedBiscuit::from(token)
        .expect("token parses")
        .append(block)
        .expect("append block")
        .to_vec()
        .expect("serialize token")
}

/// A block built from Datalog source; panics if it does not parse.
pub fn datalog_block(source: &str) -> BlockBuilder {
    BlockBuilder::new()
        .code(source)
        .unwrap_or_else(|e| panic!("block {source:?}: {e}"))
}

/// Decodes a token's protobuf container (`format::schema::Biscuit`): its
/// authority block, later blocks and proof, as signed bytes.
pub fn container(token: &[u8]) -> schema::Biscuit {
    schema::Biscuit::decode(token).expect("token container decodes")
}

/// Re-encodes a (possibly altered) container into token bytes.
pub fn encode(container: &schema::Biscuit) -> Vec<u8> {
    container.encode_to_vec()
}

/// Flips one bit of `bytes` at the first occurrence of `needle` (so a
/// protobuf payload stays well-formed: only a string's content changes).
pub fn flip_in(bytes: &mut [u8], needle: &[u8]) {
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)));
    bytes[at] ^= 0x01;
}

/// Asserts the decision allows, showing the denial if it does not.
pub fn assert_allowed(decision: &Decision) {
    assert!(
        decision.is_allowed(),
        "expected allow for {:?}, got {:?}",
        decision.request,
        decision.denial
    );
}

/// Asserts the decision denies with `kind`, names `hop` (`None`: no hop is
/// responsible), and gives a reason containing every one of `needles`.
/// Returns the denial for further checks.
pub fn assert_denied(
    decision: &Decision,
    kind: DenialKind,
    hop: Option<usize>,
    needles: &[&str],
) -> Denial {
    let denial = decision.denial.clone().unwrap_or_else(|| {
        panic!(
            "expected a {kind:?} denial for {:?}, but it was allowed",
            decision.request
        )
    });
    assert!(!decision.is_allowed(), "denial without deny: {decision:?}");
    assert_eq!(denial.kind, kind, "kind; denial: {denial:?}");
    assert_eq!(denial.hop, hop, "hop; denial: {denial:?}");
    for needle in needles {
        assert!(
            denial.reason.contains(needle),
            "reason should contain {needle:?}: {}",
            denial.reason
        );
    }
    denial
}

/// Seconds, for ttl arithmetic.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The Rust examples of the reader docs, compiled and run as doctests (with
/// `cargo test --doc`), so the docs cannot drift from the code. The shell
/// examples run in `scripts/docs-test.sh`.
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../docs/agents.md")]
    pub struct Agents;
    #[doc = include_str!("../../docs/api-servers.md")]
    pub struct ApiServers;
    #[doc = include_str!("../../docs/operators.md")]
    pub struct Operators;
    #[doc = include_str!("../../docs/auditors.md")]
    pub struct Auditors;
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
}
