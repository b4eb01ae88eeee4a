//! Showing token-derived text to people (specification §16 "Reading the
//! chain", §11): one rule for every text output, so a string inside a token
//! can never pass for the structure around it.
//!
//! Agent ids, purposes, resources, actions, parameter names and values,
//! ids, approver names, a raw check's Datalog, a principal, a revocation's
//! reason: any of them may come from a token, a request or a store that a
//! delegating agent or an attacker wrote. Printed raw, a newline fabricates
//! a line ("hop 9 … agent "evil""), an ANSI escape rewrites the terminal,
//! a bidi control (U+202E) shows text in another order than it is read.
//!
//! The rule: every [hidden](is_hidden) character — control characters (C0,
//! DEL, C1, so every ANSI escape), Unicode bidi controls, other invisible
//! format characters (zero-width, soft hyphen, U+2028/2029, tags, variation
//! selectors, invisible fillers) and spaces other than U+0020 — is shown
//! escaped, as `\n`, `\r`, `\t` or `\u{202e}` (lowercase hex, Rust's form).
//! A value is shown [`quoted`] (`"…"`, with `\"` and `\\`), or as a bare
//! [`word`] when it holds only characters that cannot be read as structure.
//! Both are unambiguous: distinct strings are shown distinctly. Text the
//! program composed itself around such values (a denial reason) is shown
//! through [`text`], which escapes hidden characters only.
//!
//! Escaping happens at the output: JSON output keeps the raw strings (JSON
//! escaping is its own), and HTML output (`mandate_server::html`) escapes
//! hidden characters the same way, through [`text`], before its markup
//! escaping.
//!
//! ```
//! use mandate_spec::display::{quoted, text, word};
//!
//! assert_eq!(word("/api/customers/").to_string(), "/api/customers/");
//! assert_eq!(word("/a b").to_string(), r#""/a b""#);
//! assert_eq!(
//!     quoted("x\n hop 9 \u{1b}[2J\u{202e}").to_string(),
//!     r#""x\n hop 9 \u{1b}[2J\u{202e}""#
//! );
//! assert_eq!(text("denied: \"a\"\n").to_string(), r#"denied: "a"\n"#);
//! ```

use std::fmt::{self, Write as _};

/// Whether `c` is shown escaped: it is invisible, changes how text around
/// it is displayed, or looks like another character.
///
/// - control characters: C0 (U+0000–U+001F), DEL (U+007F), C1
///   (U+0080–U+009F);
/// - bidi controls: U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069;
/// - other format characters (Unicode category Cf: zero-width space and
///   joiners U+200B–U+200D, word joiner and invisible operators
///   U+2060–U+2064, deprecated format controls U+206A–U+206F, BOM U+FEFF,
///   soft hyphen U+00AD, interlinear annotation U+FFF9–U+FFFB, tags
///   U+E0001 and U+E0020–U+E007F, and the rest of Cf);
/// - line and paragraph separators U+2028, U+2029;
/// - spaces other than U+0020 (no-break, en, em, ideographic, …);
/// - invisible characters that are not Cf: combining grapheme joiner
///   U+034F, Hangul fillers U+115F, U+1160, U+3164, U+FFA0, braille blank
///   U+2800, variation selectors U+FE00–U+FE0F and U+E0100–U+E01EF.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidi controls.
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                // Other format characters (Cf).
                | '\u{00ad}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200d}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206a}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
                // Line and paragraph separators.
                | '\u{2028}'
                | '\u{2029}'
                // Spaces that look like U+0020 or like nothing.
                | '\u{00a0}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200a}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                // Invisible, though not Cf.
                | '\u{034f}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{ffa0}'
                | '\u{2800}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// Writes `s` with hidden characters escaped; with `quote`, also `"` and
/// `\` (so the result, between quotes, reads back as exactly `s`).
fn write_escaped(f: &mut impl fmt::Write, s: &str, quote: bool) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '"' | '\\' if quote => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if is_hidden(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

/// A value shown between double quotes, escaped: see [`quoted`].
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

/// Shows `s` as `"…"`: `"` and `\` preceded by `\`, hidden characters
/// escaped. Reads back as exactly `s`; nothing inside can end the value.
pub fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_escaped(f, self.0, true)?;
        f.write_char('"')
    }
}

/// A value shown bare when it can be, else quoted: see [`word`].
#[derive(Debug, Clone, Copy)]
pub struct Word<'a>(&'a str);

/// Characters a [`word`] may show bare: none of them is a delimiter of any
/// Mandate text output (space, `,`, `;`, `|`, `=`, `<`, `>`, `*`, `"`,
/// `(`, `)`, `→`), and none is hidden.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '@' | '+' | '~' | '%')
}

/// Shows `s` bare when it is non-empty and made only of ASCII letters,
/// digits and `_ . : / - @ + ~ %` (names, ids, canonical paths), else as
/// [`quoted`]. Unambiguous: a bare word never starts with `"`.
pub fn word(s: &str) -> Word<'_> {
    Word(s)
}

impl fmt::Display for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() && self.0.chars().all(is_word_char) {
            f.write_str(self.0)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

/// Free text shown with its hidden characters escaped: see [`text`].
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(&'a str);

/// Shows text the program composed (a denial reason, an error message)
/// with every hidden character escaped and nothing else changed: one line,
/// no terminal control, no reordering. Values inside such text are already
/// [`quoted`] where it was composed; this is the last line of defence for
/// whatever was not.
pub fn text(s: &str) -> Text<'_> {
    Text(s)
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Reads a [`quoted`] form back (the inverse the rule promises).
    fn unquote(shown: &str) -> Option<String> {
        let inner = shown.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '"' {
                return None; // an unescaped quote cannot be inside
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Strings rich in what the rule is about.
    fn nasty() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just("\n".to_string()),
            Just("\r".to_string()),
            Just("\t".to_string()),
            Just("\u{1b}[2J".to_string()),
            Just("\u{202e}".to_string()),
            Just("\u{2066}".to_string()),
            Just("\u{200b}".to_string()),
            Just("\u{2028}".to_string()),
            Just("\u{85}".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\\u{202e}".to_string()),
            Just(" hop 9 (block 9): agent \"evil\"".to_string()),
            "[a-z/]{0,4}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn escaped_forms_hold_no_hidden_char_and_read_back(s in nasty(), t in nasty()) {
            for shown in [quoted(&s).to_string(), word(&s).to_string(), text(&s).to_string()] {
                prop_assert!(!shown.chars().any(is_hidden), "{shown:?}");
            }
            // Quoted reads back as exactly the input: distinct inputs are
            // shown distinctly.
            prop_assert_eq!(unquote(&quoted(&s).to_string()), Some(s.clone()));
            let w = word(&s).to_string();
            prop_assert_eq!(w.starts_with('"'), w != s);
            if w.starts_with('"') {
                prop_assert_eq!(unquote(&w), Some(s.clone()));
            }
            if s != t {
                prop_assert_ne!(quoted(&s).to_string(), quoted(&t).to_string());
                prop_assert_ne!(word(&s).to_string(), word(&t).to_string());
            }
        }

        #[test]
        fn any_string_reads_back(s in any::<String>()) {
            prop_assert!(!quoted(&s).to_string().chars().any(is_hidden));
            prop_assert_eq!(unquote(&quoted(&s).to_string()), Some(s));
        }
    }

    #[test]
    fn the_characters_the_rule_names_are_escaped() {
        for c in [
            '\u{0}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{61c}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{200b}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{2028}',
            '\u{2029}',
            '\u{a0}',
            '\u{3000}',
            '\u{e0041}',
            '\u{fe0f}',
            '\u{3164}',
        ] {
            let shown = text(&c.to_string()).to_string();
            assert_eq!(shown, format!("\\u{{{:x}}}", c as u32), "{c:?}");
        }
        assert_eq!(text("a\nb\r\tc").to_string(), "a\\nb\\r\\tc");
        for c in ['a', 'é', 'ж', '日', '→', ' ', '"', '\\', '😀'] {
            assert!(!is_hidden(c), "{c:?}");
        }
    }

    #[test]
    fn words_are_bare_only_when_nothing_in_them_reads_as_structure() {
        for w in [
            "read",
            "user:alice",
            "/api/customers/",
            "agent-1.b_c",
            "ed25519/ab",
        ] {
            assert_eq!(word(w).to_string(), w);
        }
        for (w, shown) in [
            ("", r#""""#),
            ("/a b", r#""/a b""#),
            ("a,b", r#""a,b""#),
            ("/a/*", r#""/a/*""#),
            ("x=1", r#""x=1""#),
            ("é", r#""é""#),
            ("\"", r#""\"""#),
        ] {
            assert_eq!(word(w).to_string(), shown);
        }
    }
}
