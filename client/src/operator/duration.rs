//! Durations on the command line (`--for 2s`, `--timeout 1m30s`) and in tables (`1m05s`).
//!
//! A stand-in: `netjail_policy::duration::parse_duration` takes its place once it exists, so
//! this stays small and private to the operator commands.

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (examples: 500ms, 2s, 5m, 1h, 1m30s)")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

/// Parses a duration written as numbers with units, largest first or not: `500ms`, `2s`,
/// `5m`, `1h`, `1d`, `1m30s`. A bare number has no unit and is an error.
///
/// # Errors
///
/// [`DurationError`] for an empty text, a number without a unit, an unknown unit, or a sum
/// beyond what [`Duration`] holds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| err("too long"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| err("too long"))?;
    }
    Ok(total)
}

/// A duration in milliseconds, short and coarse for a table: `0s`, `42s`, `1m05s`,
/// `2h03m`, `3d04h`.
pub fn short(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Writes a duration back in the form [`parse_duration`] reads (`1m30s`, `500ms`).
pub fn display(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis >= per {
            text.push_str(&format!("{}{unit}", millis / per));
            millis %= per;
        }
    }
    if millis > 0 {
        text.push_str(&format!("{millis}ms"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "2",
            "s",
            "2x",
            "1.5s",
            "-1s",
            "2 s",
            "1m30",
            "99999999999999999999s",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid duration"), "{e}");
        }
        assert!(parse_duration("2")
            .expect_err("bare number")
            .to_string()
            .contains("missing unit"));
        assert!(parse_duration(&format!("{}d", u64::MAX / 1000))
            .expect_err("overflow")
            .to_string()
            .contains("too long"));
    }

    #[test]
    fn short_and_display() {
        assert_eq!(short(0), "0s");
        assert_eq!(short(999), "0s");
        assert_eq!(short(42_000), "42s");
        assert_eq!(short(65_000), "1m05s");
        assert_eq!(short(7_380_000), "2h03m");
        assert_eq!(short(100_800_000), "1d04h");
        assert_eq!(display(Duration::from_millis(90_500)), "1m30s500ms");
        assert_eq!(display(Duration::ZERO), "0s");
        for text in ["2s", "1h", "1m30s", "500ms"] {
            let d = parse_duration(text).expect(text);
            assert_eq!(display(d), text);
        }
    }
}
