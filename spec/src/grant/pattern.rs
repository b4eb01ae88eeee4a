//! Resource patterns (§4.2): an exact resource, `PREFIX/*` or `PREFIX/**`.

use super::{clip, MAX_NAME_LEN};
use crate::display::word;
use crate::{request::check_resource, SpecError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which resources an alternative covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ResourcePattern {
    /// Exactly this resource.
    Exact(String),
    /// `PREFIX/*`: a resource directly below the directory (held with its
    /// trailing `/`), one non-empty segment, no deeper.
    Children(String),
    /// `PREFIX/**`: any resource that starts with the directory (held with its
    /// trailing `/`): the directory itself and everything below it.
    Descendants(String),
}

impl ResourcePattern {
    /// Parses an exact resource, `PREFIX/*` or `PREFIX/**`.
    pub fn parse(text: &str) -> Result<ResourcePattern, SpecError> {
        let pattern = if let Some(prefix) = text.strip_suffix("/**") {
            ResourcePattern::Descendants(format!("{prefix}/"))
        } else if let Some(prefix) = text.strip_suffix("/*") {
            ResourcePattern::Children(format!("{prefix}/"))
        } else {
            ResourcePattern::Exact(text.to_string())
        };
        pattern.validate()?;
        Ok(pattern)
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        let text = match self {
            ResourcePattern::Exact(s) => s.as_str(),
            ResourcePattern::Children(d) | ResourcePattern::Descendants(d) => {
                if !d.starts_with('/') || !d.ends_with('/') {
                    return Err(SpecError::Grant(format!(
                        "a wildcard pattern must be a path like /api/customers/*, got {:?}",
                        clip(d)
                    )));
                }
                // The directory is checked with its trailing `/`: trimming
                // every trailing `/` would let `/api//*` through, a pattern
                // no canonical resource can match.
                d.as_str()
            }
        };
        if text.is_empty() {
            return Err(SpecError::Grant(
                "a resource pattern cannot be empty".into(),
            ));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(SpecError::Grant(format!(
                "resource pattern longer than {MAX_NAME_LEN} bytes"
            )));
        }
        if text.contains('*') {
            return Err(SpecError::Grant(format!(
                "`*` is only allowed as a final /* or /** segment, got {:?}",
                clip(text)
            )));
        }
        check_resource(text).map_err(|e| match e {
            SpecError::Request(m) => SpecError::Grant(format!("pattern {:?}: {m}", clip(text))),
            other => other,
        })
    }

    /// Whether a (canonical) resource matches the pattern.
    pub fn matches(&self, resource: &str) -> bool {
        match self {
            ResourcePattern::Exact(s) => resource == s,
            ResourcePattern::Children(d) => resource_parent(resource) == Some(d.as_str()),
            ResourcePattern::Descendants(d) => resource.starts_with(d.as_str()),
        }
    }
}

/// The directory of a path resource (everything up to and including the last
/// `/`), when the last segment is not empty. The verifier supplies it as the
/// two-term `resource($dir, $name)` fact; `PREFIX/*` patterns match on it.
pub fn resource_parent(resource: &str) -> Option<&str> {
    let idx = resource.rfind('/')?;
    if idx + 1 == resource.len() || !resource.starts_with('/') {
        return None;
    }
    Some(&resource[..=idx])
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Exact(s) => write!(f, "{}", word(s)),
            ResourcePattern::Children(d) => write!(f, "{}*", word(d)),
            ResourcePattern::Descendants(d) => write!(f, "{}**", word(d)),
        }
    }
}
