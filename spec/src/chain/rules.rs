//! What each block may contain (§6 rules 1–1b), and the errors that say
//! which block and hop broke a rule.

use super::{BlockContent, ChainError, ChainErrorKind};
use crate::vocab;
use biscuit_auth::builder::Term;

/// Limits on what token blocks may contain (§6): no rules anywhere, only the
/// vocabulary's facts, and queries whose joins stay small, so no block can
/// make the authorizer do unbounded work before its run limits are looked at.
pub(super) fn check_content(
    block: &BlockContent,
    hop: usize,
    allowed_facts: &[&str],
) -> Result<(), ChainError> {
    if !block.rule_heads.is_empty() {
        return Err(err(block.index, hop, "token blocks may not contain rules"));
    }
    if let Some(f) = block
        .facts
        .iter()
        .find(|f| !allowed_facts.contains(&f.predicate.name.as_str()))
    {
        return Err(err(
            block.index,
            hop,
            &format!("fact {}(…) is not allowed in this block", f.predicate.name),
        ));
    }
    for f in facts_named(block, vocab::APPROVER) {
        let ok = matches!(f.as_slice(), [Term::Str(name), Term::Bytes(key)]
            if key.len() == 32 && crate::grant::validate_name("approver name", name).is_ok());
        if !ok {
            return Err(err(
                block.index,
                hop,
                "approver(…) must be approver(name, 32-byte key)",
            ));
        }
    }
    for check in &block.checks {
        for q in &check.queries {
            if q.body.len() > MAX_BODY_PREDICATES {
                return Err(err(
                    block.index,
                    hop,
                    &format!("a check query has more than {MAX_BODY_PREDICATES} predicates"),
                ));
            }
            let open_params = q
                .body
                .iter()
                .filter(|p| {
                    p.name == vocab::PARAM && !matches!(p.terms.first(), Some(Term::Str(_)))
                })
                .count();
            if open_params > 1 {
                return Err(err(
                    block.index,
                    hop,
                    "a check query may join at most one param(…) whose name is not a literal",
                ));
            }
        }
    }
    Ok(())
}

/// Most predicates in one check query's body.
pub(super) const MAX_BODY_PREDICATES: usize = 16;

pub(super) fn check_reserved(block: &BlockContent, hop: usize) -> Result<(), ChainError> {
    let defined = block
        .facts
        .iter()
        .map(|f| f.predicate.name.as_str())
        .chain(block.rule_heads.iter().map(String::as_str));
    for name in defined {
        if vocab::RESERVED.contains(&name) {
            return Err(err(
                block.index,
                hop,
                &format!("defines {name}(…), which only the verifier may supply"),
            ));
        }
    }
    Ok(())
}

pub(super) fn facts_named<'a>(block: &'a BlockContent, name: &str) -> Vec<&'a Vec<Term>> {
    block
        .facts
        .iter()
        .filter(|f| f.predicate.name == name)
        .map(|f| &f.predicate.terms)
        .collect()
}

pub(super) fn single<'a>(
    block: &'a BlockContent,
    name: &str,
    hop: usize,
) -> Result<Option<&'a Vec<Term>>, ChainError> {
    let found = facts_named(block, name);
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(err(
            block.index,
            hop,
            &format!("{n} {name}(…) facts where at most one is allowed"),
        )),
    }
}

pub(super) fn one_string(
    block: &BlockContent,
    name: &str,
    hop: usize,
) -> Result<String, ChainError> {
    match single(block, name, hop)?.map(|t| t.as_slice()) {
        Some([Term::Str(s)]) => Ok(s.clone()),
        _ => Err(err(
            block.index,
            hop,
            &format!("the root needs one {name}(string) fact"),
        )),
    }
}

pub(super) fn depth_err(block: usize, hop: usize, message: &str) -> ChainError {
    ChainError {
        kind: ChainErrorKind::DepthExceeded,
        ..err(block, hop, message)
    }
}

pub(super) fn err(block: usize, hop: usize, message: &str) -> ChainError {
    ChainError {
        kind: ChainErrorKind::Invalid,
        block,
        hop,
        message: message.to_string(),
    }
}
