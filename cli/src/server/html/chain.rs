//! The chain as a self-contained page, for people who would rather look
//! than read (`mandate inspect --html`): the path principal → agent → agent
//! drawn left to right, each hop with its key, signer, purpose, expiry,
//! what it added, the usage limits it sets on its subtree (and, given a
//! usage store, what is left of them), the effective capability there, and
//! the narrowing between hops.

use super::{page, prefix, rfc3339, shown};
use mandate_spec::{effective_capabilities, Capability, Chain, Grant, Hop, Signer};
use maud::{html, Markup};

/// The chain drawn as a path, with each hop's details and effective
/// capability; `verified` says whether the signatures were checked;
/// `revoked[i]`, when given, says why hop i is revoked.
pub fn chain_section(chain: &Chain, verified: bool, revoked: &[Option<String>]) -> Markup {
    chain_section_with_usage(chain, verified, revoked, &[])
}

/// [`chain_section`], and `usage[i]`, when given, in words per limit of hop
/// i: what its counter holds now (`send_email 10/1h: 3 used, 7 left in the
/// window ending …`).
pub fn chain_section_with_usage(
    chain: &Chain,
    verified: bool,
    revoked: &[Option<String>],
    usage: &[Vec<String>],
) -> Markup {
    let caps = effective_capabilities(chain);
    let expires = chain
        .expires_at
        .map(|e| rfc3339(&e))
        .unwrap_or_else(|| "never".into());
    html! {
        h1 { "Delegation chain of token " span.key { (shown(&chain.token_id)) } }
        div.meta {
            "issued " (shown(&rfc3339(&chain.issued_at)))
            " · expires " (shown(&expires)) " (earliest along the chain) · "
            (chain.depth()) " hop(s)"
            @if let Some(d) = chain.max_depth { " of at most " (d) }
            " · signatures "
            @if verified { "verified with the given root key" } @else { "NOT verified" }
        }
        div.path #chain {
            div.node.principal data-hop="principal" {
                h2 { (shown(&chain.principal)) }
                dl { dt { "principal" } dd { "who the chain acts for" } }
            }
            @for (hop, cap) in chain.hops.iter().zip(&caps) {
                (hop_node(
                    hop,
                    cap,
                    revoked.get(hop.hop).cloned().flatten(),
                    usage.get(hop.hop).map(Vec::as_slice).unwrap_or_default(),
                ))
            }
            @for a in &chain.approvals {
                div.arrow { "+" }
                div.node.approval data-approval=(a.block) {
                    h2 { "approval" }
                    dl {
                        dt { "signed by" }
                        dd.key { (shown(&a.approver_key)) }
                        dt { "for request digest" }
                        dd.key { (shown(prefix(&a.digest, 16))) "…" }
                        dt { "valid until" }
                        dd { (shown(&rfc3339(&a.expires_at))) }
                    }
                }
            }
        }
    }
}

/// One hop: the arrow from its signer, then its node.
fn hop_node(hop: &Hop, cap: &Capability, revocation: Option<String>, usage: &[String]) -> Markup {
    let by = match &hop.signed_by {
        Signer::Root { key_id } => format!(
            "the issuer's root key{}",
            key_id.map(|i| format!(" (id {i})")).unwrap_or_default()
        ),
        Signer::Agent { agent, .. } => format!("agent {agent}"),
    };
    let expires = hop
        .expires_at
        .map(|e| rfc3339(&e))
        .unwrap_or_else(|| "(no expiry of its own)".into());
    // Limits on rows of their own: they bind the hop's subtree (§18).
    let allows = Grant {
        limits: Vec::new(),
        ..hop.grant.clone()
    };
    html! {
        div.arrow { "→" small { "signed by " (shown(&by)) } }
        div.node.revoked[revocation.is_some()] data-hop=(hop.hop) {
            h2 {
                (shown(&hop.agent))
                span.badge { "hop " (hop.hop) }
                @if revocation.is_some() { span.badge.revoked-badge { "REVOKED" } }
            }
            dl {
                @if let Some(why) = &revocation {
                    dt { "revoked" } dd.nothing { (shown(why)) }
                }
                dt { "key" } dd class="" { span.key { (shown(&hop.agent_key)) } }
                @if let Some(p) = &hop.purpose {
                    dt { "purpose" } dd class="" { (shown(p)) }
                }
                dt { "expires" } dd class="" { (shown(&expires)) }
                dt { "this hop allows" } dd class="" { (shown(&allows.to_string())) }
                @if !hop.grant.limits.is_empty() {
                    dt { "limits, shared by this hop and everything delegated from it" }
                    dd.limits {
                        @for (i, l) in hop.grant.limits.iter().enumerate() {
                            @if i > 0 { br; }
                            (shown(&l.to_string()))
                        }
                    }
                }
                @if !usage.is_empty() {
                    dt { "usage now" }
                    dd.usage {
                        @for (i, u) in usage.iter().enumerate() {
                            @if i > 0 { br; }
                            (shown(u))
                        }
                    }
                }
                @for n in &hop.narrowing {
                    dt { "narrowed by block " (n.block) }
                    dd class="" { (shown(&n.grant.to_string())) }
                }
                dt { "effective capability here" }
                dd.effective.nothing[cap.nothing] { (shown(&cap.describe())) }
                dt { "revocation id" }
                dd class="" { span.key { (shown(prefix(&hop.revocation_id, 24))) "…" } }
            }
        }
    }
}

/// A complete page for one token's chain.
pub fn chain_page(chain: &Chain, verified: bool, revoked: &[Option<String>]) -> String {
    chain_page_with_usage(chain, verified, revoked, &[])
}

/// A complete page for one token's chain, with the usage of its limits
/// (see [`chain_section_with_usage`]).
pub fn chain_page_with_usage(
    chain: &Chain,
    verified: bool,
    revoked: &[Option<String>],
    usage: &[Vec<String>],
) -> String {
    page(
        &format!("Mandate chain {}", chain.token_id),
        chain_section_with_usage(chain, verified, revoked, usage),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::testing::{nasty, skeleton, unescape, ATTACKS};
    use super::*;
    use mandate_spec::display::{is_hidden, text};
    use mandate_spec::{Approval, Grant, Narrowing};
    use proptest::prelude::*;
    use time::OffsetDateTime;

    /// A chain of two hops and an approval whose every string is `s`.
    fn chain_of(s: &str) -> Chain {
        let key = biscuit_auth::KeyPair::new().public();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let grant = Grant {
            datalog: vec![s.to_string()],
            ..Grant::default()
        };
        let hop = |n: usize, signed_by: Signer| Hop {
            hop: n,
            block: n,
            agent: s.to_string(),
            agent_key: s.to_string(),
            agent_public_key: key,
            signed_by,
            purpose: Some(s.to_string()),
            expires_at: Some(at),
            grant: grant.clone(),
            revocation_id: s.to_string(),
            narrowing: vec![Narrowing {
                block: 9,
                expires_at: None,
                grant: grant.clone(),
                revocation_id: s.to_string(),
            }],
        };
        Chain {
            token_id: s.to_string(),
            principal: s.to_string(),
            issued_at: at,
            max_depth: Some(3),
            hops: vec![
                hop(0, Signer::Root { key_id: Some(1) }),
                hop(
                    1,
                    Signer::Agent {
                        agent: s.to_string(),
                        key: s.to_string(),
                    },
                ),
            ],
            expires_at: Some(at),
            approvals: vec![Approval {
                block: 3,
                approver_key: s.to_string(),
                digest: s.to_string(),
                expires_at: at,
                revocation_id: s.to_string(),
                approver_signature: s.to_string(),
            }],
        }
    }

    /// The text of the first element opened by `open`, entities read back.
    fn text_after(page: &str, open: &str, close: &str) -> String {
        let start = page.find(open).unwrap() + open.len();
        let end = page[start..].find(close).unwrap() + start;
        unescape(&page[start..end])
    }

    fn assert_safe(s: &str, page: &str) {
        let baseline = chain_page(&chain_of("a"), true, &[Some("a".into()), None]);
        assert_eq!(skeleton(page), skeleton(&baseline), "{s:?}:\n{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.chars().any(|c| c != '\n' && is_hidden(c)), "{page:?}");
        // Newlines only from the style: none from a value.
        assert_eq!(page.matches('\n').count(), baseline.matches('\n').count());
        // Each value reads back as the display rule shows it.
        let shown = text(s).to_string();
        assert_eq!(
            text_after(page, "data-hop=\"principal\"><h2>", "</h2>"),
            shown
        );
        assert_eq!(
            text_after(page, "<dt>purpose</dt><dd class=\"\">", "</dd>"),
            shown
        );
        assert_eq!(
            text_after(page, "<dt>revoked</dt><dd class=\"nothing\">", "</dd>"),
            shown
        );
        assert_eq!(
            text_after(page, "<dt>signed by</dt><dd class=\"key\">", "</dd>"),
            shown
        );
    }

    /// Every field of a chain that reaches the page (token id, principal,
    /// agents, keys, signer, purpose, grants and narrowing, revocation ids
    /// and reasons, approver key, digest) given each attack.
    #[test]
    fn hostile_chain_strings_are_only_text_on_the_chain_page() {
        for attack in ATTACKS {
            let page = chain_page(&chain_of(attack), true, &[Some(attack.to_string()), None]);
            assert_safe(attack, &page);
        }
    }

    #[test]
    fn the_chain_page_keeps_its_structure() {
        let page = chain_page(&chain_of("agent-1"), false, &[None, Some("lost".into())]);
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{page}"
        );
        for needle in [
            "<title>Mandate chain agent-1</title>",
            "<div class=\"path\" id=\"chain\">",
            "<div class=\"node principal\" data-hop=\"principal\"><h2>agent-1</h2>",
            "<div class=\"node\" data-hop=\"0\"><h2>agent-1<span class=\"badge\">hop 0</span></h2>",
            "<div class=\"node revoked\" data-hop=\"1\"><h2>agent-1<span class=\"badge\">hop 1</span><span class=\"badge revoked-badge\">REVOKED</span></h2>",
            "<div class=\"arrow\">→<small>signed by the issuer&#39;s root key (id 1)</small></div>",
            "<small>signed by agent agent-1</small>",
            "<dt>narrowed by block 9</dt>",
            "<div class=\"node approval\" data-approval=\"3\">",
            "· 1 hop(s) of at most 3 · signatures NOT verified",
            "<dd class=\"effective\">",
        ] {
            assert!(page.contains(needle), "{needle}\nnot in:\n{page}");
        }
    }

    /// A hop's limits get rows of their own, and the usage lines given;
    /// both are text whatever they hold (a decoded chain's limits are
    /// names, but the page does not rely on it).
    #[test]
    fn limits_and_usage_are_only_text_on_the_chain_page() {
        for attack in ATTACKS {
            let mut chain = chain_of("a");
            chain.hops[1].grant.limits = vec![mandate_spec::Limit {
                actions: [attack.to_string()].into(),
                param: Some(attack.to_string()),
                max: 5,
                window_secs: 3600,
            }];
            let usage = vec![vec![], vec![attack.to_string()]];
            let page = chain_page_with_usage(&chain, true, &[], &usage);
            assert!(!page.contains("<script"), "{page}");
            assert!(!page.contains("<img"), "{page}");
            assert!(!page.chars().any(|c| c != '\n' && is_hidden(c)), "{page:?}");
            let limit = text(&format!("{attack} {attack} 5/1h")).to_string();
            assert_eq!(
                text_after(
                    &page,
                    "<dt>limits, shared by this hop and everything delegated from it</dt>\
                     <dd class=\"limits\">",
                    "</dd>"
                ),
                limit
            );
            assert_eq!(
                text_after(&page, "<dt>usage now</dt><dd class=\"usage\">", "</dd>"),
                text(attack).to_string()
            );
            // One node holds them: hop 1's.
            assert_eq!(page.matches("<dd class=\"limits\">").count(), 1);
        }
    }

    /// Regression: the shortened digest and revocation id were cut at a
    /// byte offset, which panics inside a multi-byte character.
    #[test]
    fn ids_are_shortened_on_character_boundaries() {
        let page = chain_page(&chain_of("ééééééééééééééééééééééééé"), true, &[]);
        assert!(page.contains("ééééééééééééééé…"), "{page}");
    }

    proptest! {
        #[test]
        fn any_chain_strings_are_only_text(s in nasty()) {
            let page = chain_page(&chain_of(&s), true, &[Some(s.clone()), None]);
            assert_safe(&s, &page);
        }
    }
}
