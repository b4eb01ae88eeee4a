//! The chain as a self-contained HTML page, for people who would rather look
//! than read: the path principal → agent → agent drawn left to right, each
//! hop with its key, signer, purpose, expiry, what it added and the
//! effective capability there, and the narrowing between hops. No external
//! asset (no script, font or image is fetched); every text from the token is
//! escaped.

use crate::chain::{Chain, Signer};
use crate::effective::effective_capabilities;
use crate::grant::rfc3339;

/// Escapes text for HTML element content and quoted attribute values:
/// markup characters as entities, and every hidden character (controls,
/// bidi controls, invisible format characters: [`crate::display::is_hidden`])
/// as its visible escape (`\u{202e}`), the same rule as the text outputs, so
/// a bidi control in a token cannot reorder what the page shows.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if crate::display::is_hidden(c) => {
                out.push_str(&crate::display::text(c.encode_utf8(&mut [0; 4])).to_string())
            }
            c => out.push(c),
        }
    }
    out
}

/// The page's style, shared by every Mandate page (inline: no asset).
pub const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;background:#f6f7f9}
h1{font-size:1.4rem;margin:0 0 .3rem}
.meta{color:#5b6475;margin-bottom:1.2rem;font-size:.9rem}
.path{display:flex;align-items:stretch;gap:0;overflow-x:auto;padding-bottom:1rem}
.node{background:#fff;border:1px solid #d5d9e0;border-radius:10px;padding:.8rem 1rem;min-width:15rem;max-width:22rem;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.node h2{font-size:1.05rem;margin:0 0 .4rem}
.principal{background:#eef3ff;border-color:#b9c8f5}
.arrow{align-self:center;font-size:1.6rem;color:#8a94a6;padding:0 .5rem;text-align:center;min-width:6rem}
.arrow small{display:block;font-size:.7rem;color:#5b6475}
dl{margin:0;font-size:.82rem}
dt{color:#5b6475;margin-top:.35rem}
dd{margin:0;word-break:break-word}
.effective{background:#f0faf3;border-left:3px solid #3aa364;padding:.2rem .4rem}
.nothing{background:#fdf0f0;border-left:3px solid #c0392b}
.key{font-family:ui-monospace,Menlo,monospace;font-size:.72rem;color:#444}
.badge{display:inline-block;font-size:.7rem;padding:.05rem .35rem;border-radius:4px;background:#e3e7ee;margin-left:.3rem}
.approval{background:#fff8e6;border-color:#f0c36d}
.revoked{border-color:#c0392b;opacity:.85}.revoked-badge{background:#c0392b;color:#fff}
table{border-collapse:collapse;background:#fff;font-size:.82rem;width:100%}
th,td{border:1px solid #d5d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef0f4}
.allow{color:#1e7b45;font-weight:600}.deny{color:#b3261e;font-weight:600}.needs_approval{color:#9a6700;font-weight:600}
form{margin-bottom:1rem}form input,form select{margin-right:.5rem}
"#;

/// A whole page: `title`, then `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// The chain drawn as a path, with each hop's details and effective
/// capability; `verified` says whether the signatures were checked;
/// `revoked[i]`, when given, says why hop i is revoked.
pub fn chain_section(chain: &Chain, verified: bool, revoked: &[Option<String>]) -> String {
    let caps = effective_capabilities(chain);
    let mut out = String::new();
    out.push_str(&format!(
        "<h1>Delegation chain of token <span class=\"key\">{}</span></h1>\n",
        escape(&chain.token_id)
    ));
    let expires = chain
        .expires_at
        .map(|e| rfc3339(&e))
        .unwrap_or_else(|| "never".into());
    out.push_str(&format!(
        "<div class=\"meta\">issued {} · expires {} (earliest along the chain) · {} hop(s){} · signatures {}</div>\n",
        escape(&rfc3339(&chain.issued_at)),
        escape(&expires),
        chain.depth(),
        chain
            .max_depth
            .map(|d| format!(" of at most {d}"))
            .unwrap_or_default(),
        if verified {
            "verified with the given root key"
        } else {
            "NOT verified"
        }
    ));
    out.push_str("<div class=\"path\" id=\"chain\">\n");
    out.push_str(&format!(
        "<div class=\"node principal\" data-hop=\"principal\"><h2>{}</h2><dl><dt>principal</dt><dd>who the chain acts for</dd></dl></div>\n",
        escape(&chain.principal)
    ));
    for (hop, cap) in chain.hops.iter().zip(&caps) {
        let by = match &hop.signed_by {
            Signer::Root { key_id } => format!(
                "the issuer's root key{}",
                key_id.map(|i| format!(" (id {i})")).unwrap_or_default()
            ),
            Signer::Agent { agent, .. } => format!("agent {agent}"),
        };
        out.push_str(&format!(
            "<div class=\"arrow\">→<small>{}</small></div>\n",
            escape(&format!("signed by {by}"))
        ));
        let revocation = revoked.get(hop.hop).cloned().flatten();
        out.push_str(&format!(
            "<div class=\"node{}\" data-hop=\"{}\"><h2>{}<span class=\"badge\">hop {}</span>{}</h2><dl>",
            if revocation.is_some() { " revoked" } else { "" },
            hop.hop,
            escape(&hop.agent),
            hop.hop,
            if revocation.is_some() {
                "<span class=\"badge revoked-badge\">REVOKED</span>"
            } else {
                ""
            }
        ));
        let mut item = |k: &str, v: String, class: &str| {
            out.push_str(&format!(
                "<dt>{}</dt><dd class=\"{class}\">{v}</dd>",
                escape(k)
            ));
        };
        if let Some(why) = &revocation {
            item("revoked", escape(why), "nothing");
        }
        item(
            "key",
            format!("<span class=\"key\">{}</span>", escape(&hop.agent_key)),
            "",
        );
        if let Some(p) = &hop.purpose {
            item("purpose", escape(p), "");
        }
        item(
            "expires",
            escape(
                &hop.expires_at
                    .map(|e| rfc3339(&e))
                    .unwrap_or_else(|| "(no expiry of its own)".into()),
            ),
            "",
        );
        item("this hop allows", escape(&hop.grant.to_string()), "");
        for n in &hop.narrowing {
            item(
                &format!("narrowed by block {}", n.block),
                escape(&n.grant.to_string()),
                "",
            );
        }
        item(
            "effective capability here",
            escape(&cap.describe()),
            if cap.nothing {
                "effective nothing"
            } else {
                "effective"
            },
        );
        item(
            "revocation id",
            format!(
                "<span class=\"key\">{}…</span>",
                escape(&hop.revocation_id[..hop.revocation_id.len().min(24)])
            ),
            "",
        );
        out.push_str("</dl></div>\n");
    }
    for a in &chain.approvals {
        out.push_str("<div class=\"arrow\">+</div>\n");
        out.push_str(&format!(
            "<div class=\"node approval\" data-approval=\"{}\"><h2>approval</h2><dl><dt>signed by</dt><dd class=\"key\">{}</dd><dt>for request digest</dt><dd class=\"key\">{}…</dd><dt>valid until</dt><dd>{}</dd></dl></div>\n",
            a.block,
            escape(&a.approver_key),
            escape(&a.digest[..a.digest.len().min(16)]),
            escape(&rfc3339(&a.expires_at))
        ));
    }
    out.push_str("</div>\n");
    out
}

/// A complete page for one token's chain.
pub fn chain_page(chain: &Chain, verified: bool, revoked: &[Option<String>]) -> String {
    page(
        &format!("Mandate chain {}", chain.token_id),
        &chain_section(chain, verified, revoked),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_hidden_characters() {
        let shown = escape("<b>\"x\"</b>&'\u{202e}evil\u{2066}\n\u{1b}[2J\u{200b}");
        assert_eq!(
            shown,
            "&lt;b&gt;&quot;x&quot;&lt;/b&gt;&amp;&#39;\\u{202e}evil\\u{2066}\\n\\u{1b}[2J\\u{200b}"
        );
        assert!(!shown.chars().any(crate::display::is_hidden));
    }
}
