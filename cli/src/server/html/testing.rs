//! Helpers for the HTML attack tests: hostile values, and a reading of a
//! page that shows whether a value changed its structure.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

/// Values that try to become markup, break out of an attribute, or reorder
/// or hide text.
pub(crate) const ATTACKS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "'><img src=x onerror=alert(1)>",
    "' onmouseover='alert(1)",
    "&",
    "&lt;script&gt;",
    "\u{202e}exe.txt",
    "a\u{2066}b\u{2069}c",
    "nul\u{0}here",
    "x\n hop 9 (block 9): agent \"evil\" \u{1b}[2J\u{202e}exe.txt",
    "</td></tr></table><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "<!--",
    "\u{85}\u{2028}\u{200b}\u{feff}",
];

/// Strings rich in markup, quotes, entities and hidden characters.
pub(crate) fn nasty() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("<".to_string()),
        Just(">".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("&".to_string()),
        Just("&amp;".to_string()),
        Just("<script>".to_string()),
        Just("\"><img src=x onerror=alert(1)>".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{2066}".to_string()),
        Just("\u{0}".to_string()),
        Just("\n".to_string()),
        Just("\u{1b}[2J".to_string()),
        Just("\\u{202e}".to_string()),
        "[a-z /=]{0,4}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(pieces, 0..10).prop_map(|v| v.concat())
}

/// Reads entities back (those [`super::shown`] and maud write).
pub(crate) fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The structure of a page: each tag with its attribute names (values
/// skipped, as a browser would read them: up to the next `"`). Two pages
/// with the same skeleton differ only in text and attribute values: no
/// value added a tag or an attribute.
pub(crate) fn skeleton(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let mut tag = String::new();
        loop {
            let Some(c) = rest.chars().next() else {
                out.push(format!("unterminated <{tag}"));
                return out;
            };
            rest = &rest[c.len_utf8()..];
            match c {
                '>' => break,
                '"' => {
                    // A quoted value: skipped up to its closing quote.
                    let end = rest.find('"').unwrap_or(rest.len());
                    tag.push_str("\"…\"");
                    rest = &rest[(end + 1).min(rest.len())..];
                }
                c => tag.push(c),
            }
        }
        out.push(tag);
    }
    out
}
