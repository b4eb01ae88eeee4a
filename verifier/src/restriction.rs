//! Live restrictions at the verifier (specification §19): the restrictions
//! in effect, indexed in memory by target so that a request pays a few hash
//! lookups whatever their number, and what they mean for one request.
//!
//! The index holds the restrictions that apply (not lifted); the store that
//! owns it ([`crate::revocation::RevocationStore`]) keeps them on disk with
//! the lifts, and rebuilds the index when it opens. A restriction applies to
//! a chain when its target is one of the chain's blocks (that hop and every
//! token derived from it), its family, one of its hops' agent keys, or its
//! principal.

use crate::revocation::Target;
use mandate_spec::{Chain, Request, Restriction, RestrictionRule, RestrictionTarget};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// A restriction that applies to a chain, and through which of its
/// targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InEffect {
    /// The restriction.
    pub restriction: Arc<Restriction>,
    /// The index of the matched target among the chain's revocation targets
    /// ([`crate::revocation::revocation_targets`]); `None` for a principal.
    pub target: Option<usize>,
}

/// The restrictions in effect, by target.
#[derive(Debug, Default)]
pub struct RestrictionIndex {
    blocks: HashMap<Vec<u8>, Vec<Arc<Restriction>>>,
    tokens: HashMap<String, Vec<Arc<Restriction>>>,
    agents: HashMap<Vec<u8>, Vec<Arc<Restriction>>>,
    principals: HashMap<String, Vec<Arc<Restriction>>>,
    len: usize,
}

impl RestrictionIndex {
    /// How many restrictions are in effect.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a restriction (one with the same id is replaced).
    pub fn insert(&mut self, r: Arc<Restriction>) {
        self.remove(&r.id, &r.target);
        let list = match &r.target {
            RestrictionTarget::Block(h) => self
                .blocks
                .entry(hex::decode(h).unwrap_or_default())
                .or_default(),
            RestrictionTarget::Agent(h) => self
                .agents
                .entry(hex::decode(h).unwrap_or_default())
                .or_default(),
            RestrictionTarget::Token(t) => self.tokens.entry(t.clone()).or_default(),
            RestrictionTarget::Principal(p) => self.principals.entry(p.clone()).or_default(),
        };
        list.push(r);
        self.len += 1;
    }

    /// Removes the restriction `id` on `target`, if present.
    pub fn remove(&mut self, id: &str, target: &RestrictionTarget) {
        fn take<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Vec<Arc<Restriction>>>,
            key: K,
            id: &str,
        ) -> usize {
            let Some(list) = map.get_mut(&key) else {
                return 0;
            };
            let before = list.len();
            list.retain(|r| r.id != id);
            let removed = before - list.len();
            if list.is_empty() {
                map.remove(&key);
            }
            removed
        }
        let removed = match target {
            RestrictionTarget::Block(h) => {
                take(&mut self.blocks, hex::decode(h).unwrap_or_default(), id)
            }
            RestrictionTarget::Agent(h) => {
                take(&mut self.agents, hex::decode(h).unwrap_or_default(), id)
            }
            RestrictionTarget::Token(t) => take(&mut self.tokens, t.clone(), id),
            RestrictionTarget::Principal(p) => take(&mut self.principals, p.clone(), id),
        };
        self.len -= removed;
    }

    /// The restrictions that apply to a chain whose revocation targets are
    /// `targets`, whose hops' agent keys are `targets[agents]` (approval
    /// signers, after them, are not agents a restriction names), and whose
    /// principal is `principal`: in the order of the targets, the
    /// principal's last.
    pub fn in_effect(
        &self,
        targets: &[Target],
        agents: Range<usize>,
        principal: &str,
    ) -> Vec<InEffect> {
        let mut out = Vec::new();
        if self.len == 0 {
            return out;
        }
        let mut push = |list: Option<&Vec<Arc<Restriction>>>, target: Option<usize>| {
            for r in list.into_iter().flatten() {
                out.push(InEffect {
                    restriction: r.clone(),
                    target,
                });
            }
        };
        for (i, t) in targets.iter().enumerate() {
            match t {
                Target::Block(b) => push(self.blocks.get(b.as_slice()), Some(i)),
                Target::Token(id) => push(self.tokens.get(id.as_str()), Some(i)),
                Target::Agent(k) if agents.contains(&i) => {
                    push(self.agents.get(k.as_slice()), Some(i))
                }
                Target::Agent(_) => {}
            }
        }
        push(self.principals.get(principal), None);
        out
    }
}

/// The hop a restriction reaches a chain through: the hop whose block (or
/// narrowing block) it names, the hop whose agent key it names, or the root
/// for a family or a principal.
pub(crate) fn hop_of(chain: &Chain, blocks: usize, e: &InEffect) -> usize {
    let Some(i) = e.target else { return 0 };
    if i < blocks {
        // The hop holding block i: the last hop starting at or before it.
        return chain
            .hops
            .iter()
            .rev()
            .find(|h| h.block <= i)
            .map_or(0, |h| h.hop);
    }
    if i == blocks {
        return 0;
    }
    (i - blocks - 1).min(chain.hops.len().saturating_sub(1))
}

/// The first rule of the restrictions in effect that denies `request`.
pub(crate) fn first_denial<'e>(
    in_effect: &'e [InEffect],
    request: &Request,
) -> Option<(&'e InEffect, &'e RestrictionRule)> {
    in_effect.iter().find_map(|e| {
        e.restriction
            .rules
            .iter()
            .find(|rule| rule.denies(request))
            .map(|rule| (e, rule))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::OffsetDateTime;

    fn restriction(target: RestrictionTarget) -> Arc<Restriction> {
        Arc::new(Restriction {
            id: uuid::Uuid::new_v4().to_string(),
            target,
            rules: vec![RestrictionRule::parse_deny("send:/**").unwrap()],
            restricted_at: OffsetDateTime::UNIX_EPOCH,
            by: "ops".into(),
            reason: "r".into(),
            expires_at: None,
            note: None,
        })
    }

    #[test]
    fn the_index_finds_restrictions_by_each_kind_of_target() {
        let mut ix = RestrictionIndex::default();
        let block = vec![7u8; 64];
        let key = vec![9u8; 32];
        let rb = restriction(RestrictionTarget::Block(hex::encode(&block)));
        let ra = restriction(RestrictionTarget::Agent(hex::encode(&key)));
        let rt = restriction(RestrictionTarget::Token("fam".into()));
        let rp = restriction(RestrictionTarget::Principal("user:a".into()));
        for r in [&rb, &ra, &rt, &rp] {
            ix.insert(r.clone());
        }
        assert_eq!(ix.len(), 4);
        let targets = vec![
            Target::Block(block.clone()),
            Target::Token("fam".into()),
            Target::Agent(key.clone()),
            // An approval signer with the same key is not an agent.
            Target::Agent(key.clone()),
        ];
        let found = ix.in_effect(&targets, 2..3, "user:a");
        let ids: Vec<_> = found.iter().map(|e| e.restriction.id.clone()).collect();
        assert_eq!(
            ids,
            vec![rb.id.clone(), rt.id.clone(), ra.id.clone(), rp.id.clone()]
        );
        assert_eq!(found[2].target, Some(2));
        assert_eq!(found[3].target, None);
        assert!(ix.in_effect(&targets, 2..3, "user:b").len() == 3);
        ix.remove(&ra.id, &ra.target);
        ix.remove(&ra.id, &ra.target);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.in_effect(&targets[2..3], 0..1, "x"), vec![]);
    }
}
