//! The chain as a self-contained page, for people who would rather look
//! than read (`mandate inspect --html`): the path principal → agent → agent
//! drawn left to right, each hop with its key, signer, purpose, expiry,
//! what it added and the effective capability there, and the narrowing
//! between hops.

use super::{page, prefix, rfc3339, shown};
use mandate_spec::{effective_capabilities, Capability, Chain, Hop, Signer};
use maud::{html, Markup};

/// The chain drawn as a path, with each hop's details and effective
/// capability; `verified` says whether the signatures were checked;
/// `revoked[i]`, when given, says why hop i is revoked.
pub fn chain_section(chain: &Chain, verified: bool, revoked: &[Option<String>]) -> Markup {
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
                (hop_node(hop, cap, revoked.get(hop.hop).cloned().flatten()))
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
fn hop_node(hop: &Hop, cap: &Capability, revocation: Option<String>) -> Markup {
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
                dt { "this hop allows" } dd class="" { (shown(&hop.grant.to_string())) }
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
    page(
        &format!("Mandate chain {}", chain.token_id),
        chain_section(chain, verified, revoked),
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
