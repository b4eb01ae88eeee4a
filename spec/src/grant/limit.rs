//! Usage limits (specification §18): how often a hop's subtree may act, or
//! how much of an integer parameter it may spend, per fixed time window.
//!
//! - a **count**: `ACTION[,ACTION…] N/WINDOW`, e.g. `send_email 10/1h`: at
//!   most N allowed requests for those actions per window;
//! - a **budget**: `ACTION[,ACTION…] PARAM N/WINDOW`, e.g.
//!   `pay amount 5000/1d`: the sum of the integer parameter PARAM over the
//!   allowed requests for those actions is at most N per window.
//!
//! A limit is written into the block of the hop that sets it and binds every
//! request made through that hop or anything delegated from it: its counter
//! is named by the hop block's revocation id ([`Limit::counter_key`]).

use super::{clip, validate_name, Value};
use crate::request::Request;
use crate::SpecError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;

/// Most limits one block may carry.
pub const MAX_LIMITS_PER_BLOCK: usize = 8;

/// Longest window: 366 days, the longest a token may live.
pub const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// The largest count or budget (a Biscuit integer is an i64).
pub const MAX_LIMIT: u64 = i64::MAX as u64;

/// One usage limit (specification §18).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Limit {
    /// The actions it meters (at least one).
    pub actions: BTreeSet<String>,
    /// `None` for a count (each matching request counts 1); the integer
    /// parameter summed for a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Most requests (count) or most of the parameter's sum (budget) per
    /// window; at least 1.
    pub max: u64,
    /// The window's length in seconds. Windows are fixed and aligned on the
    /// Unix epoch: window k is [k·w, (k+1)·w).
    pub window_secs: u64,
}

/// What a request costs against a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metered {
    /// The limit does not meter this request's action.
    Not,
    /// It costs this many units (1 for a count; the parameter for a budget).
    Units(u64),
    /// A budget's parameter is missing, not an integer, or negative: the
    /// request cannot be metered, and is denied (the reason says why).
    Unmeterable(String),
}

impl Limit {
    /// Parses `ACTION[,ACTION…] N/WINDOW` (a count).
    pub fn parse_count(text: &str) -> Result<Limit, SpecError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [actions, rate] => Limit::build(actions, None, rate),
            _ => Err(SpecError::Grant(format!(
                "expected a limit ACTION[,ACTION…] N/WINDOW (e.g. send_email 10/1h), got {:?}",
                clip(text)
            ))),
        }
    }

    /// Parses `ACTION[,ACTION…] PARAM N/WINDOW` (a budget).
    pub fn parse_budget(text: &str) -> Result<Limit, SpecError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [actions, param, rate] => Limit::build(actions, Some(param), rate),
            _ => Err(SpecError::Grant(format!(
                "expected a budget ACTION[,ACTION…] PARAM N/WINDOW (e.g. pay amount 5000/1d), \
                 got {:?}",
                clip(text)
            ))),
        }
    }

    fn build(actions: &str, param: Option<&str>, rate: &str) -> Result<Limit, SpecError> {
        let bad = |why: &str| SpecError::Grant(format!("limit {:?}: {why}", clip(rate)));
        let (n, window) = rate
            .split_once('/')
            .ok_or_else(|| bad("expected N/WINDOW, e.g. 10/1h or 5000/1d"))?;
        let max = match Value::infer(n) {
            Value::Int(n) if n >= 1 => n,
            _ => {
                return Err(bad(
                    "N must be a positive integer (no sign, no leading zero)",
                ))
            }
        };
        let window_secs = crate::parse_duration(window)
            .map_err(|e| bad(&e.to_string()))?
            .as_secs();
        let limit = Limit {
            actions: actions.split(',').map(str::to_string).collect(),
            param: param.map(str::to_string),
            max: max as u64,
            window_secs,
        };
        limit.validate()?;
        Ok(limit)
    }

    /// Checks names and bounds (specification §18.1).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.actions.is_empty() {
            return Err(SpecError::Grant("a limit needs at least one action".into()));
        }
        for a in &self.actions {
            validate_name("action", a)?;
        }
        if let Some(p) = &self.param {
            validate_name("parameter", p)?;
        }
        if !(1..=MAX_LIMIT).contains(&self.max) {
            return Err(SpecError::Grant(format!(
                "a limit's N must be between 1 and {MAX_LIMIT}"
            )));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&self.window_secs) {
            return Err(SpecError::Grant(
                "a limit's window must be between 1s and 366d".into(),
            ));
        }
        Ok(())
    }

    /// `count` or `budget`.
    pub fn kind(&self) -> &'static str {
        if self.param.is_some() {
            "budget"
        } else {
            "count"
        }
    }

    /// What `request` costs against this limit.
    pub fn meter(&self, request: &Request) -> Metered {
        if !self.actions.contains(&request.action) {
            return Metered::Not;
        }
        let Some(param) = &self.param else {
            return Metered::Units(1);
        };
        match request.params.get(param) {
            Some(Value::Int(v)) if *v >= 0 => Metered::Units(*v as u64),
            Some(Value::Int(v)) => Metered::Unmeterable(format!(
                "the budget {self} meters parameter {param}, and {v} is negative"
            )),
            Some(Value::Str(_)) => Metered::Unmeterable(format!(
                "the budget {self} meters parameter {param}, which must be an integer"
            )),
            None => Metered::Unmeterable(format!(
                "the budget {self} meters parameter {param}, which the request does not carry"
            )),
        }
    }

    /// The window a time (Unix seconds) falls in: its index and when it
    /// ends (Unix seconds).
    pub fn window_of(&self, unix: i64) -> (i64, i64) {
        let w = self.window_secs as i64;
        let index = unix.div_euclid(w);
        (index, index.saturating_add(1).saturating_mul(w))
    }

    /// The name of this limit's counter when hop block `revocation_id`
    /// (hex) sets it: lowercase hex of SHA-256 over
    /// `"mandate-limit-v1\n" || revocation_id || "\n" || text`, where text is
    /// the limit's canonical text ([`fmt::Display`]). Every verifier of a
    /// fleet computes the same name; no holder can choose it.
    pub fn counter_key(&self, revocation_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"mandate-limit-v1\n");
        h.update(revocation_id.as_bytes());
        h.update(b"\n");
        h.update(self.to_string().as_bytes());
        hex::encode(h.finalize())
    }
}

/// The shortest exact form of a window: `1d`, `12h`, `90m`, `45s`.
pub fn window_text(secs: u64) -> String {
    for (unit, per) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs.is_multiple_of(per) {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        write!(f, "{}", actions.join(","))?;
        if let Some(p) = &self.param {
            write!(f, " {p}")?;
        }
        write!(f, " {}/{}", self.max, window_text(self.window_secs))
    }
}

/// Checks a block's limits together: each valid, at most
/// [`MAX_LIMITS_PER_BLOCK`], no two the same.
pub fn validate_limits(limits: &[Limit]) -> Result<(), SpecError> {
    if limits.len() > MAX_LIMITS_PER_BLOCK {
        return Err(SpecError::Grant(format!(
            "at most {MAX_LIMITS_PER_BLOCK} limits per hop"
        )));
    }
    let mut seen = BTreeSet::new();
    for l in limits {
        l.validate()?;
        if !seen.insert(l) {
            return Err(SpecError::Grant(format!("the limit {l} is given twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_prints_the_cli_forms() {
        let l = Limit::parse_count("send_email 10/1h").unwrap();
        assert_eq!(l.max, 10);
        assert_eq!(l.window_secs, 3600);
        assert_eq!(l.param, None);
        assert_eq!(l.to_string(), "send_email 10/1h");
        let b = Limit::parse_budget(" pay  amount 5000/1d ").unwrap();
        assert_eq!(b.param.as_deref(), Some("amount"));
        assert_eq!(b.to_string(), "pay amount 5000/1d");
        assert_eq!(
            Limit::parse_count("send,read 3/90m").unwrap().to_string(),
            "read,send 3/90m"
        );
        assert_eq!(Limit::parse_count("a 1/60s").unwrap().to_string(), "a 1/1m");
    }

    #[test]
    fn refuses_malformed_limits() {
        for bad in [
            "",
            "send_email",
            "send_email 10",
            "send_email 0/1h",
            "send_email -1/1h",
            "send_email +1/1h",
            "send_email 01/1h",
            "send_email 10/0s",
            "send_email 10/367d",
            "send_email 10/1w",
            "send_email 10/h",
            "send_email 99999999999999999999/1h",
            ",send 1/1h",
            "send email 1/1h",
        ] {
            assert!(Limit::parse_count(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "pay 5000/1d",
            "pay amount",
            "pay am$ount 1/1d",
            "pay a b 1/1d",
        ] {
            assert!(Limit::parse_budget(bad).is_err(), "{bad:?}");
        }
        let l = Limit::parse_count("a 1/1h").unwrap();
        assert!(validate_limits(&[l.clone(), l]).is_err());
    }

    #[test]
    fn meters_requests() {
        let count = Limit::parse_count("send 2/1h").unwrap();
        let budget = Limit::parse_budget("pay amount 100/1d").unwrap();
        let send = Request::new("send", "/m");
        assert_eq!(count.meter(&send), Metered::Units(1));
        assert_eq!(budget.meter(&send), Metered::Not);
        let pay = Request::new("pay", "/p").param("amount", 40);
        assert_eq!(budget.meter(&pay), Metered::Units(40));
        for bad in [
            Request::new("pay", "/p"),
            Request::new("pay", "/p").param("amount", -1),
            Request::new("pay", "/p").param("amount", "40"),
        ] {
            assert!(matches!(budget.meter(&bad), Metered::Unmeterable(_)));
        }
    }

    #[test]
    fn windows_are_fixed_and_epoch_aligned() {
        let l = Limit::parse_count("a 1/1h").unwrap();
        assert_eq!(l.window_of(0), (0, 3600));
        assert_eq!(l.window_of(3599), (0, 3600));
        assert_eq!(l.window_of(3600), (1, 7200));
        assert_eq!(l.window_of(-1), (-1, 0));
    }

    #[test]
    fn counter_keys_depend_on_the_hop_and_the_limit() {
        let a = Limit::parse_count("a 1/1h").unwrap();
        let b = Limit::parse_count("a 2/1h").unwrap();
        assert_ne!(a.counter_key("00"), a.counter_key("01"));
        assert_ne!(a.counter_key("00"), b.counter_key("00"));
        assert_eq!(a.counter_key("00").len(), 64);
    }
}
