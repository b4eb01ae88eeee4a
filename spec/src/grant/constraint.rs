//! Parameter and time constraints (§4.3): their textual form, their
//! values, and what each allows.

use super::{clip, rfc3339, validate_name, MAX_VALUE_LEN};
use crate::display::{quoted, word};
use crate::SpecError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A condition on one typed request parameter, or on the request time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Constraint {
    /// `param <op> bound` on an integer parameter.
    Int {
        /// Parameter name.
        param: String,
        /// Comparison.
        cmp: IntCmp,
        /// Bound.
        bound: i64,
    },
    /// The parameter equals this value (an integer or a string).
    Equals {
        /// Parameter name.
        param: String,
        /// Required value.
        value: Value,
    },
    /// A string parameter starts with this prefix.
    StartsWith {
        /// Parameter name.
        param: String,
        /// Required prefix.
        prefix: String,
    },
    /// A string parameter ends with this suffix.
    EndsWith {
        /// Parameter name.
        param: String,
        /// Required suffix.
        suffix: String,
    },
    /// The parameter is one of these values (integers or strings).
    OneOf {
        /// Parameter name.
        param: String,
        /// Allowed values (at least one).
        values: BTreeSet<Value>,
    },
    /// The request time is at or after this instant.
    NotBefore {
        /// Start of the window.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// The request time is at or before this instant.
    NotAfter {
        /// End of the window.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

/// Integer comparisons a constraint can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntCmp {
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `>`
    #[serde(rename = ">")]
    Gt,
}

/// A typed request parameter value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A 64-bit signed integer.
    Int(i64),
    /// A UTF-8 string.
    Str(String),
}

impl Value {
    /// Types text the way the CLI does: an integer when it is an integer
    /// written canonically (`0`, `42`, `-7`: no sign `+`, no leading zeros,
    /// within i64), a string otherwise — so `007` stays the string `"007"`.
    pub fn infer(text: &str) -> Value {
        match text.parse::<i64>() {
            Ok(i) if i.to_string() == text => Value::Int(i),
            _ => Value::Str(text.to_string()),
        }
    }
}

/// A string value of `starts-with`, `ends-with` or `in`, taken exactly as
/// written: one beginning or ending with whitespace is refused (§3.4).
fn exact_value(value: &str) -> Result<&str, SpecError> {
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(SpecError::Grant(format!(
            "constraint value {:?} begins or ends with whitespace, which would be ambiguous",
            clip(value)
        )));
    }
    Ok(value)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{}", quoted(s)),
        }
    }
}

impl IntCmp {
    /// The comparison that holds exactly when this one does not.
    pub fn negated(self) -> IntCmp {
        match self {
            IntCmp::Le => IntCmp::Gt,
            IntCmp::Lt => IntCmp::Ge,
            IntCmp::Ge => IntCmp::Lt,
            IntCmp::Gt => IntCmp::Le,
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            IntCmp::Le => "<=",
            IntCmp::Lt => "<",
            IntCmp::Ge => ">=",
            IntCmp::Gt => ">",
        }
    }
}

impl Constraint {
    /// Parses one `--where` constraint (§3.4). Whitespace around the
    /// parameter name and around an operator is ignored; a constraint that
    /// begins or ends with whitespace, or a string value that does, is
    /// refused (whether the space belongs to the value would be ambiguous).
    /// Integers are typed by the canonical rule of §5.1 ([`Value::infer`]);
    /// a bound `N` must be such an integer.
    pub fn parse(text: &str) -> Result<Constraint, SpecError> {
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err(SpecError::Grant(format!(
                "constraint {:?} begins or ends with whitespace: write it without,                  since a trailing space would be ambiguous",
                clip(text)
            )));
        }
        let t = text;
        for (word, build) in [(" starts-with ", 0u8), (" ends-with ", 1), (" in ", 2)] {
            if let Some((param, value)) = t.split_once(word) {
                let param = param.trim().to_string();
                let c = match build {
                    0 => Constraint::StartsWith {
                        param,
                        prefix: exact_value(value)?.to_string(),
                    },
                    1 => Constraint::EndsWith {
                        param,
                        suffix: exact_value(value)?.to_string(),
                    },
                    _ => Constraint::OneOf {
                        param,
                        values: value
                            .split('|')
                            .map(|v| exact_value(v).map(Value::infer))
                            .collect::<Result<_, _>>()?,
                    },
                };
                c.validate()?;
                return Ok(c);
            }
        }
        for (op, cmp) in [
            ("<=", Some(IntCmp::Le)),
            (">=", Some(IntCmp::Ge)),
            ("<", Some(IntCmp::Lt)),
            (">", Some(IntCmp::Gt)),
            ("=", None),
        ] {
            let Some((param, value)) = t.split_once(op) else {
                continue;
            };
            let param = param.trim();
            let value = value.trim_start();
            if param == "time" {
                let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                    SpecError::Grant(format!(
                        "time bounds are RFC 3339 instants (2026-12-31T23:59:59Z), got {:?}",
                        clip(value)
                    ))
                })?;
                let c = match cmp {
                    Some(IntCmp::Ge) => Constraint::NotBefore { at },
                    Some(IntCmp::Le) => Constraint::NotAfter { at },
                    _ => return Err(SpecError::Grant("time takes only >= and <=".into())),
                };
                c.validate()?;
                return Ok(c);
            }
            let c = match cmp {
                Some(cmp) => Constraint::Int {
                    param: param.to_string(),
                    cmp,
                    bound: match Value::infer(value) {
                        Value::Int(bound) => bound,
                        Value::Str(_) => {
                            return Err(SpecError::Grant(format!(
                                "{param}{op} needs an integer bound written canonically                                  (-?[0-9]+, no +, no leading zeros, no -0, within 64 bits),                                  got {:?}",
                                clip(value)
                            )))
                        }
                    },
                },
                None => Constraint::Equals {
                    param: param.to_string(),
                    value: Value::infer(value),
                },
            };
            c.validate()?;
            return Ok(c);
        }
        Err(SpecError::Grant(format!(
            "expected PARAM<=N, PARAM>=N, PARAM<N, PARAM>N, PARAM=VALUE, PARAM starts-with TEXT, \
             PARAM ends-with TEXT, PARAM in A|B, time>=RFC3339 or time<=RFC3339; got {:?}",
            clip(t)
        )))
    }

    /// The parameter this constraint reads (`None` for time bounds).
    pub fn param(&self) -> Option<&str> {
        match self {
            Constraint::Int { param, .. }
            | Constraint::Equals { param, .. }
            | Constraint::StartsWith { param, .. }
            | Constraint::EndsWith { param, .. }
            | Constraint::OneOf { param, .. } => Some(param),
            Constraint::NotBefore { .. } | Constraint::NotAfter { .. } => None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        // Biscuit dates are whole seconds from 1970: a bound the token
        // cannot carry exactly would be minted as another one.
        if let Constraint::NotBefore { at } | Constraint::NotAfter { at } = self {
            if at.unix_timestamp() < 0 || at.nanosecond() != 0 {
                return Err(SpecError::Grant(format!(
                    "time bounds are whole seconds from 1970 on (what a token can carry), got {}",
                    rfc3339(at)
                )));
            }
        }
        if let Some(p) = self.param() {
            validate_name("parameter name", p)?;
            if p == "time" {
                return Err(SpecError::Grant(
                    "`time` is reserved for the request time: use time>=… or time<=…".into(),
                ));
            }
        }
        let check_value = |v: &str| {
            if v.len() > MAX_VALUE_LEN {
                Err(SpecError::Grant(format!(
                    "constraint value longer than {MAX_VALUE_LEN} bytes"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Constraint::Equals {
                value: Value::Str(s),
                ..
            } => check_value(s),
            Constraint::StartsWith { prefix: s, .. } | Constraint::EndsWith { suffix: s, .. } => {
                check_value(s)
            }
            Constraint::OneOf { values, .. } => {
                if values.is_empty() {
                    return Err(SpecError::Grant("`in` needs at least one value".into()));
                }
                // Biscuit sets are homogeneous: a token holding `{1, "a"}`
                // does not deserialize (and biscuit-auth panics appending it).
                let ints = values.iter().filter(|v| matches!(v, Value::Int(_))).count();
                if ints != 0 && ints != values.len() {
                    return Err(SpecError::Grant(format!(
                        "`{self}` mixes integer and string values; `in` values must all be \
                         integers or all be strings"
                    )));
                }
                values.iter().try_for_each(|v| match v {
                    Value::Str(s) => check_value(s),
                    Value::Int(_) => Ok(()),
                })
            }
            _ => Ok(()),
        }
    }

    /// For an integer bound, whether its negation holds (`amount>100`:
    /// the request has an integer `amount` and it is at most 100). This is
    /// what exempts a request from an approval rule (§14.2): a request
    /// without the parameter, or with a string, is exempted by no
    /// condition, so the rule fails closed. `false` for other constraints.
    pub fn negation_holds(&self, request: &crate::Request) -> bool {
        match self {
            Constraint::Int { param, cmp, bound } => Constraint::Int {
                param: param.clone(),
                cmp: cmp.negated(),
                bound: *bound,
            }
            .holds(request),
            _ => false,
        }
    }

    /// Reference semantics in Rust (see [`Alternative::allows`]). A parameter
    /// the request does not carry, or carries with the wrong type, fails.
    pub fn holds(&self, request: &crate::Request) -> bool {
        let param = |name: &str| request.params.get(name);
        match self {
            Constraint::Int {
                param: p,
                cmp,
                bound,
            } => match param(p) {
                Some(Value::Int(v)) => match cmp {
                    IntCmp::Le => v <= bound,
                    IntCmp::Lt => v < bound,
                    IntCmp::Ge => v >= bound,
                    IntCmp::Gt => v > bound,
                },
                _ => false,
            },
            Constraint::Equals { param: p, value } => param(p) == Some(value),
            Constraint::StartsWith { param: p, prefix } => {
                matches!(param(p), Some(Value::Str(s)) if s.starts_with(prefix.as_str()))
            }
            Constraint::EndsWith { param: p, suffix } => {
                matches!(param(p), Some(Value::Str(s)) if s.ends_with(suffix.as_str()))
            }
            Constraint::OneOf { param: p, values } => param(p).is_some_and(|v| values.contains(v)),
            Constraint::NotBefore { at } => request.time_unix() >= at.unix_timestamp(),
            Constraint::NotAfter { at } => request.time_unix() <= at.unix_timestamp(),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Int { param, cmp, bound } => {
                write!(f, "{}{}{bound}", word(param), cmp.symbol())
            }
            Constraint::Equals { param, value } => write!(f, "{}={value}", word(param)),
            Constraint::StartsWith { param, prefix } => {
                write!(f, "{} starts-with {}", word(param), quoted(prefix))
            }
            Constraint::EndsWith { param, suffix } => {
                write!(f, "{} ends-with {}", word(param), quoted(suffix))
            }
            Constraint::OneOf { param, values } => {
                let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                write!(f, "{} in {}", word(param), v.join("|"))
            }
            Constraint::NotBefore { at } => write!(f, "time>={}", rfc3339(at)),
            Constraint::NotAfter { at } => write!(f, "time<={}", rfc3339(at)),
        }
    }
}
