//! Mandate's HTML pages: the chain page of `mandate inspect --html` and,
//! with feature `server`, the issuer service's `GET /ui/decisions` and its
//! approval desk `GET /ui/approvals`. Built with [`maud`], which escapes
//! every spliced value by default; no page carries a script, a font, an
//! image or any external asset.
//!
//! Every text that may come from a token, a request, a configuration or a
//! store is spliced as [`shown`]: the display rule of the text outputs
//! ([`mandate_spec::display::text`]: every hidden character — controls,
//! bidi controls, invisible format characters — shown as `\n` or
//! `\u{202e}`), then markup characters (`& < > " '`) as entities. So a
//! string inside a token can neither become markup nor reorder what the
//! page shows (specification §16). [`page`] is the last line of defence: a
//! value spliced without [`shown`] is still escaped by maud, and any hidden
//! character it brought is neutralised in the finished page.
//!
//! The only markup not built by `maud` from values is the constant
//! [`STYLE`] (`&'static str`).

mod chain;

pub use chain::{chain_page, chain_page_with_usage, chain_section, chain_section_with_usage};

use mandate_spec::display::{is_hidden, text};
use maud::{html, Markup, PreEscaped, Render, DOCTYPE};
use std::fmt::{self, Write as _};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Text from outside the program, ready for a page: see [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

/// Marks `s` for a page: rendered (element content or a quoted attribute
/// value) with its hidden characters escaped as in the text outputs, then
/// `&`, `<`, `>`, `"` and `'` as entities.
///
/// ```
/// use mandate_server::html::shown;
/// use maud::Render;
///
/// let page = shown("<script>\u{202e}'").render().into_string();
/// assert_eq!(page, "&lt;script&gt;\\u{202e}&#39;");
/// ```
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// Writes what it is given with markup characters as entities.
struct Entities<'a>(&'a mut String);

impl fmt::Write for Entities<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

impl Render for Shown<'_> {
    fn render_to(&self, buffer: &mut String) {
        // The display rule first (its escapes are plain ASCII with no
        // markup character), then the entities.
        let _ = write!(Entities(buffer), "{}", text(self.0));
    }
}

/// The pages' style, shared by every Mandate page (inline: no asset).
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
.limits,.usage{background:#fff8e6;border-left:3px solid #f0c36d;padding:.2rem .4rem}
.key{font-family:ui-monospace,Menlo,monospace;font-size:.72rem;color:#444}
.badge{display:inline-block;font-size:.7rem;padding:.05rem .35rem;border-radius:4px;background:#e3e7ee;margin-left:.3rem}
.approval{background:#fff8e6;border-color:#f0c36d}
.revoked{border-color:#c0392b;opacity:.85}.revoked-badge{background:#c0392b;color:#fff}
table{border-collapse:collapse;background:#fff;font-size:.82rem;width:100%}
th,td{border:1px solid #d5d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef0f4}
.allow{color:#1e7b45;font-weight:600}.deny{color:#b3261e;font-weight:600}.needs_approval{color:#9a6700;font-weight:600}
form{margin-bottom:1rem}form input,form select{margin-right:.5rem}
.desk{max-width:62rem}
.desk #requests{list-style:none;padding:0;margin:0}
.desk .request{background:#fff;border:1px solid #d5d9e0;border-radius:10px;padding:.8rem 1rem;margin-bottom:1rem}
.desk h2{font-size:1.05rem;margin:.2rem 0 .6rem;overflow-wrap:anywhere}
.desk dl{display:grid;grid-template-columns:10rem minmax(0,1fr);gap:.15rem .8rem;font-size:.88rem}
.desk dt{margin:0}.desk dd{overflow-wrap:anywhere}
.desk .hops,.desk .params{margin:0;padding-left:1.2rem}
.desk .actions{display:flex;flex-wrap:wrap;gap:.6rem 1.5rem;margin-top:.8rem}
.desk form{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem;margin:0}
.desk form input,.desk form select{margin:0}
.desk input,.desk select,.desk button{font:inherit;min-height:2.75rem;padding:.3rem .6rem;box-sizing:border-box;max-width:100%}
.desk button{border-radius:6px;border:1px solid #5b6475;background:#fff;cursor:pointer}
.desk .deny{color:inherit;font-weight:400}
.desk .approve button{background:#1e7b45;border-color:#1e7b45;color:#fff}
.desk .deny button{background:#b3261e;border-color:#b3261e;color:#fff}
.desk :focus-visible{outline:3px solid #1a56db;outline-offset:2px}
.desk .signout{justify-content:flex-end;margin-bottom:.6rem}
.desk .notice{background:#f0faf3;border-left:3px solid #3aa364;padding:.5rem .8rem}
.desk .error{background:#fdf0f0;border-left:3px solid #c0392b;padding:.5rem .8rem;overflow-wrap:anywhere}
.desk .stale{color:#5b6475;overflow-wrap:anywhere}
@media (max-width:600px){body{margin:.75rem}.desk dl{grid-template-columns:minmax(0,1fr)}.desk dt{font-weight:600;margin-top:.4rem}.desk .actions,.desk form{flex-direction:column;align-items:stretch}.desk input,.desk select,.desk button{width:100%}}
"#;

/// Constant markup: only a `&'static str` written in this crate can be
/// spliced unescaped.
fn constant(markup: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(markup)
}

/// A whole page: `title`, then `body`.
pub fn page(title: &str, body: Markup) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (shown(title)) }
                style { (constant(STYLE)) }
            }
            body { (body) }
        }
    };
    neutralise_hidden(page.into_string())
}

/// The last line of defence: every hidden character in the finished page
/// shown as its escape, as [`shown`] would have. Our own markup has none
/// but the newlines of [`STYLE`], which are kept.
fn neutralise_hidden(page: String) -> String {
    if !page.chars().any(|c| c != '\n' && is_hidden(c)) {
        return page;
    }
    let mut out = String::with_capacity(page.len() + 16);
    for c in page.chars() {
        if c != '\n' && is_hidden(c) {
            let _ = write!(out, "{}", text(c.encode_utf8(&mut [0; 4])));
        } else {
            out.push(c);
        }
    }
    out
}

/// A time as RFC 3339.
fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The first `n` characters of `s` (ids shown shortened).
fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::testing::{nasty, skeleton, unescape, ATTACKS};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shown_neutralises_markup_and_hidden_characters() {
        let page = shown("<b>\"x\"</b>&'\u{202e}evil\u{2066}\n\u{1b}[2J\u{200b}\u{0}")
            .render()
            .into_string();
        assert_eq!(
            page,
            "&lt;b&gt;&quot;x&quot;&lt;/b&gt;&amp;&#39;\\u{202e}evil\\u{2066}\\n\\u{1b}[2J\\u{200b}\\u{0}"
        );
        assert!(!page.chars().any(is_hidden));
    }

    /// Regression (issue 13): HTML was composed with `format!` and an
    /// `escape()` call per value, so one forgotten call put token text into
    /// the page raw. Now a value spliced without [`shown`] is still escaped
    /// by maud, and [`page`] neutralises any hidden character it carried.
    #[test]
    fn a_value_spliced_without_shown_still_cannot_inject_or_reorder() {
        for attack in ATTACKS {
            let forgotten: &str = attack;
            let out = page(attack, html! { p title=(forgotten) { (forgotten) } });
            assert!(!out.contains("<script"), "{out}");
            assert!(!out.contains("<img"), "{out}");
            assert!(!out.chars().any(|c| c != '\n' && is_hidden(c)), "{out:?}");
            assert_eq!(
                skeleton(&out),
                skeleton(&page("a", html! { p title=("a") { "a" } })),
                "{out}"
            );
        }
    }

    #[test]
    fn only_constants_are_spliced_unescaped() {
        // Every `PreEscaped` in the HTML code goes through `constant`, which
        // takes a `&'static str`; maud's `DOCTYPE` is one too.
        for (file, src) in [
            ("html/mod.rs", include_str!("mod.rs")),
            ("html/chain.rs", include_str!("chain.rs")),
            ("service/ui.rs", include_str!("../service/ui.rs")),
        ] {
            let uses = src.matches("PreEscaped(").count();
            let allowed = if file == "html/mod.rs" { 2 } else { 0 };
            assert!(uses <= allowed, "{file}: PreEscaped outside `constant`");
        }
    }

    proptest! {
        /// Any string spliced as [`shown`] is one text: no tag or attribute
        /// appears, no hidden character survives, and reading the entities
        /// back gives exactly the display rule's form of the string.
        #[test]
        fn any_string_is_only_text(s in any::<String>(), t in nasty()) {
            for s in [s, t] {
                let out = html! { p title=(shown(&s)) { (shown(&s)) } }.into_string();
                let escaped = text(&s).to_string();
                let inner = out
                    .strip_prefix("<p title=\"")
                    .and_then(|o| o.strip_suffix("</p>"))
                    .unwrap();
                let (attr, content) = inner.split_once("\">").unwrap();
                prop_assert_eq!(attr, content);
                prop_assert!(!content.contains(['<', '>', '"', '\'']), "{}", out);
                prop_assert!(!content.chars().any(is_hidden), "{:?}", out);
                prop_assert_eq!(unescape(content), escaped);
            }
        }

        /// The same through [`page`], with values spliced raw or shown.
        #[test]
        fn a_page_keeps_its_structure_whatever_the_values(s in nasty()) {
            let out = page(&s, html! { p title=(s) { (shown(&s)) } });
            prop_assert!(!out.chars().any(|c| c != '\n' && is_hidden(c)), "{:?}", out);
            prop_assert_eq!(
                skeleton(&out),
                skeleton(&page("a", html! { p title=("a") { "a" } }))
            );
        }
    }
}
