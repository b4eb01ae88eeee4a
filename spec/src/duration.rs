//! Durations as people type them: `30s`, `10m`, `1h`, `7d`.

use crate::SpecError;
use std::time::Duration;

/// Parses `<integer><unit>` with unit `s`, `m`, `h` or `d`. Zero and
/// durations over ten years are refused.
pub fn parse_duration(text: &str) -> Result<Duration, SpecError> {
    let text = text.trim();
    let err = || {
        SpecError::Duration(format!(
            "expected a number and a unit s, m, h or d (e.g. 30s, 10m, 1h, 7d), got {text:?}"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(err)?;
    if secs == 0 {
        return Err(SpecError::Duration("a duration must be positive".into()));
    }
    if secs > 10 * 366 * 86_400 {
        return Err(SpecError::Duration(format!(
            "{text} is longer than ten years"
        )));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10",
            "h",
            "1w",
            "-1h",
            "0s",
            "99999999999999999999d",
            "1.5h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
