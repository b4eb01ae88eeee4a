//! A verified token's Datalog, loaded once and run against each request.
//!
//! biscuit-auth's `AuthorizerBuilder::build` converts every block from its
//! protobuf form and translates its symbols into a fresh table on every
//! authorization; that is most of the cost of authorizing an already-parsed
//! token (~30 µs of ~33 µs for a 2-hop chain here). A cached token does this
//! once: its facts go into a Datalog [`World`] and its checks are translated
//! into one symbol table. Per request the world is cloned, the request's
//! facts are added with the authorizer's origin, and every check of every
//! block runs through biscuit-auth's own Datalog engine (`World::query_match`),
//! with the origins biscuit-auth would trust for it.
//!
//! Only tokens within Mandate's vocabulary take this path: no rules (§6
//! refuses them anyway) and no scope annotations on blocks or check queries
//! (so every check trusts exactly the authorizer, the authority block and
//! its own block). Any other token, and every request the loaded checks
//! deny, is decided by biscuit-auth's full authorizer: the loaded path can
//! only confirm an allow, and a denial keeps biscuit-auth's error for the
//! explanation. `prepared_agrees_with_biscuit` tests the two against each
//! other.

use crate::limits::Limits;
use biscuit_auth::builder::Fact;
use biscuit_auth::builder::{CheckKind, Convert};
use biscuit_auth::datalog::{Check, Origin, RunLimits, SymbolTable, TrustedOrigins, World};
use biscuit_auth::error::{FailedBlockCheck, FailedCheck, Logic, MatchedPolicy, RunLimit, Token};
use biscuit_auth::{AuthorizerBuilder, Biscuit};
use mandate_spec::{BlockContent, Request};
use std::time::Instant;

/// The token's Datalog, kept with a verified token.
pub(crate) struct Prepared {
    biscuit: Biscuit,
    loaded: Option<Loaded>,
}

struct Loaded {
    world: World,
    symbols: SymbolTable,
    checks: Vec<LoadedCheck>,
}

struct LoadedCheck {
    block: usize,
    id: usize,
    check: Check,
    trusted: TrustedOrigins,
}

impl Prepared {
    /// Loads `blocks` (decoded from the same verified bytes as `biscuit`)
    /// when they are within the vocabulary and are all of its blocks, else
    /// keeps only `biscuit`.
    pub(crate) fn load(biscuit: Biscuit, blocks: &[BlockContent]) -> Prepared {
        let complete = blocks.len() == biscuit.block_count()
            && blocks.iter().enumerate().all(|(i, b)| b.index == i);
        let loaded = if complete { load(blocks) } else { None };
        Prepared { biscuit, loaded }
    }

    /// Keeps `biscuit` only: every request runs biscuit-auth's authorizer.
    pub(crate) fn unloaded(biscuit: Biscuit) -> Prepared {
        Prepared {
            biscuit,
            loaded: None,
        }
    }

    /// The token's number of blocks.
    pub(crate) fn block_count(&self) -> usize {
        self.biscuit.block_count()
    }

    /// Whether requests run on the loaded world (else on biscuit-auth's
    /// authorizer every time).
    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.is_some()
    }

    /// The token as biscuit-auth parsed it.
    pub(crate) fn biscuit(&self) -> &Biscuit {
        &self.biscuit
    }

    /// Runs every check of every block with the request's facts and `extra`
    /// verifier facts (policy `allow if true`) within `limits`: `Ok` when
    /// all pass.
    pub(crate) fn run(
        &self,
        request: &Request,
        extra: &[Fact],
        limits: Limits,
    ) -> Result<(), Token> {
        match &self.loaded {
            Some(loaded) if loaded.run(request, extra, limits).is_ok() => Ok(()),
            _ => self.run_biscuit(request, extra, limits),
        }
    }

    /// Whether every check passes: the loaded world's answer when the token
    /// is loaded (exact, tested against biscuit-auth's), else biscuit-auth's.
    /// Unlike [`Prepared::run`], a denial is not decided a second time to
    /// get biscuit-auth's explanation: for questions that need only yes or
    /// no (whether an approval was relied on, §14.4).
    pub(crate) fn passes(&self, request: &Request, extra: &[Fact], limits: Limits) -> bool {
        match &self.loaded {
            Some(loaded) => loaded.run(request, extra, limits).is_ok(),
            None => self.run_biscuit(request, extra, limits).is_ok(),
        }
    }

    /// The same decision through biscuit-auth's authorizer alone.
    pub(crate) fn run_biscuit(
        &self,
        request: &Request,
        extra: &[Fact],
        limits: Limits,
    ) -> Result<(), Token> {
        let mut builder = AuthorizerBuilder::new();
        for fact in request.facts().into_iter().chain(extra.iter().cloned()) {
            builder = builder.fact(fact)?;
        }
        let mut authorizer = builder
            .policy("allow if true")?
            .set_limits(run_limits(limits))
            .build(&self.biscuit)?;
        authorizer.authorize().map(|_| ())
    }

    /// The loaded path alone (`None` when the token is not loaded).
    #[cfg(test)]
    pub(crate) fn run_loaded(
        &self,
        request: &Request,
        limits: Limits,
    ) -> Option<Result<(), Token>> {
        self.loaded.as_ref().map(|l| l.run(request, &[], limits))
    }
}

fn run_limits(limits: Limits) -> RunLimits {
    RunLimits {
        max_facts: limits.max_facts,
        max_iterations: limits.max_iterations,
        max_time: limits.max_time,
    }
}

fn load(blocks: &[BlockContent]) -> Option<Loaded> {
    let plain = !blocks.is_empty()
        && blocks.iter().all(|b| {
            b.rule_heads.is_empty()
                && b.scopes.is_empty()
                && b.checks
                    .iter()
                    .all(|c| c.queries.iter().all(|q| q.scopes.is_empty()))
        });
    if !plain {
        return None;
    }
    let mut symbols = SymbolTable::new();
    let mut world = World::new();
    let mut checks = Vec::new();
    for block in blocks {
        let mut origin = Origin::default();
        origin.insert(block.index);
        for fact in &block.facts {
            world.facts.insert(&origin, fact.convert(&mut symbols));
        }
        // What biscuit-auth trusts for a query without scopes in block i:
        // the authorizer, the authority block and block i.
        let trusted: TrustedOrigins = [usize::MAX, 0, block.index].into_iter().collect();
        for (id, check) in block.checks.iter().enumerate() {
            checks.push(LoadedCheck {
                block: block.index,
                id,
                check: check.convert(&mut symbols),
                trusted: trusted.clone(),
            });
        }
    }
    Some(Loaded {
        world,
        symbols,
        checks,
    })
}

impl Loaded {
    fn run(&self, request: &Request, extra: &[Fact], limits: Limits) -> Result<(), Token> {
        let start = Instant::now();
        let mut symbols = self.symbols.clone();
        let mut world = self.world.clone();
        let mut authorizer = Origin::default();
        authorizer.insert(usize::MAX);
        for fact in request.facts().iter().chain(extra) {
            world.facts.insert(&authorizer, fact.convert(&mut symbols));
        }
        world.run_with_limits(&symbols, run_limits(limits))?;
        let deadline = start + limits.max_time;
        let mut failed = Vec::new();
        for c in &self.checks {
            let mut passed = false;
            for query in &c.check.queries {
                let matched = match c.check.kind {
                    CheckKind::One => {
                        world.query_match(query.clone(), c.block, &c.trusted, &symbols)?
                    }
                    CheckKind::All => world.query_match_all(query.clone(), &c.trusted, &symbols)?,
                    CheckKind::Reject => {
                        !world.query_match(query.clone(), c.block, &c.trusted, &symbols)?
                    }
                };
                if Instant::now() >= deadline {
                    return Err(Token::RunLimit(RunLimit::Timeout));
                }
                if matched {
                    passed = true;
                    break;
                }
            }
            if !passed {
                failed.push(FailedCheck::Block(FailedBlockCheck {
                    block_id: c.block as u32,
                    check_id: c.id as u32,
                    rule: symbols.print_check(&c.check),
                }));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Token::FailedLogic(Logic::Unauthorized {
                policy: MatchedPolicy::Allow(0),
                checks: failed,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;
    use mandate_attenuate::{delegate, narrow, Delegation};
    use mandate_issuer::{Issuer, MintRequest};
    use mandate_spec::{decode_verified_blocks, Grant};
    use std::time::{Duration, SystemTime};

    fn grant(allow: &[&str], wh: &[&str]) -> Grant {
        Grant::parse(allow, wh).unwrap()
    }

    /// A root (read,list on customers, rows<=100, s in a|b), a hop to
    /// `read` only, and a first-party narrowing to customer 42.
    fn token() -> (Biscuit, Vec<u8>) {
        let issuer = Issuer::new(KeyPair::new());
        let (a, b) = (KeyPair::new(), KeyPair::new());
        let root = issuer
            .mint(&MintRequest {
                principal: "user:alice".into(),
                agent: "a".into(),
                agent_key: a.public(),
                grant: grant(&["read,list:/api/customers/*"], &["rows<=100", "s in x|y"]),
                ttl: Duration::from_secs(3600),
                purpose: Some("p".into()),
                max_depth: None,
            })
            .unwrap();
        let hop = delegate(
            &root.token,
            &a,
            &Delegation {
                agent: "b".into(),
                agent_key: b.public(),
                grant: grant(&["read:/api/customers/*"], &[]),
                ttl: Some(Duration::from_secs(600)),
                purpose: None,
            },
        )
        .unwrap();
        let narrowed = narrow(&hop.token, &grant(&["read:/api/customers/42"], &[]), None).unwrap();
        let (_, key) = issuer.keys().public_keys()[0];
        let biscuit = Biscuit::from(&narrowed.token, key).unwrap();
        (biscuit, narrowed.token)
    }

    #[test]
    fn the_loaded_world_decides_as_biscuit_does() {
        let (biscuit, bytes) = token();
        let blocks = decode_verified_blocks(&bytes, &biscuit).unwrap();
        let p = Prepared::load(biscuit, &blocks);
        assert!(p.is_loaded());
        let limits = Limits::default();
        let base = || {
            Request::new("read", "/api/customers/42")
                .param("rows", 10)
                .param("s", "x")
        };
        let cases = [
            (base(), true),
            (base().param("rows", 101), false),
            (base().param("s", "z"), false),
            (base().param("rows", "ten"), false),
            (
                Request::new("read", "/api/customers/42").param("s", "x"),
                false,
            ),
            (
                Request::new("list", "/api/customers/42")
                    .param("rows", 1)
                    .param("s", "x"),
                false,
            ),
            (
                Request::new("read", "/api/customers/43")
                    .param("rows", 1)
                    .param("s", "x"),
                false,
            ),
            (
                base().at(SystemTime::now() + Duration::from_secs(700)),
                false,
            ),
        ];
        for (req, allowed) in cases {
            let loaded = p.run_loaded(&req, limits).unwrap();
            let full = p.run_biscuit(&req, &[], limits);
            assert_eq!(loaded.is_ok(), allowed, "{req:?}: {loaded:?}");
            assert_eq!(full.is_ok(), allowed, "{req:?}: {full:?}");
            assert_eq!(p.run(&req, &[], limits).is_ok(), allowed);
        }
    }

    #[test]
    fn incomplete_or_missing_blocks_are_never_loaded() {
        let (biscuit, bytes) = token();
        let blocks = decode_verified_blocks(&bytes, &biscuit).unwrap();
        let req = Request::new("write", "/nothing");
        // No blocks at all would be a world without checks: never loaded.
        let p = Prepared::load(biscuit.clone(), &[]);
        assert!(!p.is_loaded());
        assert!(p.run(&req, &[], Limits::default()).is_err());
        // Some blocks only: never loaded either.
        let p = Prepared::load(biscuit, &blocks[..1]);
        assert!(!p.is_loaded());
        assert!(p.run(&req, &[], Limits::default()).is_err());
    }
}
