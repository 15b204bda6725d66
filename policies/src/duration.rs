//! Durations as policies and the command line write them: `30s`, `500ms`, `2m`, `1h`,
//! `1m30s`.

use std::time::Duration;

/// The longest duration [`parse_duration`] accepts: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration: one or more `NUMBER UNIT` parts with no spaces, units from the largest
/// to the smallest and each at most once (`1h`, `2m`, `30s`, `500ms`, `1m30s`, `1h0m5s`).
/// Numbers are whole and unsigned; units are `h`, `m`, `s` and `ms`. The result must be
/// positive and at most [`MAX_DURATION`] (24 h).
///
/// The error is one lower-case line that quotes the input, for a caller to prefix with where
/// the text came from (`t.toml:3:15: invalid ask_timeout: ...`, `--for: ...`).
///
/// ```
/// use std::time::Duration;
/// use netjail_policy::parse_duration;
///
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(
///     parse_duration("30").unwrap_err(),
///     "`30` has no unit; write 30s, 30ms, 30m or 30h"
/// );
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration; write one such as 30s, 500ms, 2m or 1h".to_owned());
    }
    let too_long = || format!("`{text}` is longer than 24h");
    let mut rest = text;
    let mut total: u64 = 0;
    let mut previous: Option<usize> = None;
    while let Some(first) = rest.chars().next() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if digits.is_empty() {
            return Err(match first {
                '-' => format!("`{text}` is negative; a duration is positive"),
                _ if !unit.is_empty() => format!("no number before `{unit}` in `{text}`"),
                c => unexpected(c, text),
            });
        }
        if unit.is_empty() {
            return Err(match after.chars().next() {
                None if digits.len() == text.len() => {
                    format!(
                        "`{text}` has no unit; write {digits}s, {digits}ms, {digits}m or {digits}h"
                    )
                }
                None => format!("`{text}` has no unit after {digits}; use h, m, s or ms"),
                Some('.') | Some(',') => {
                    format!("`{text}` has a fraction; write whole units, as in 1s500ms")
                }
                Some(c) => unexpected(c, text),
            });
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`; use h, m, s or ms"
            ));
        };
        if previous.is_some_and(|p| rank <= p) {
            return Err(format!(
                "units in `{text}` must go from the largest to the smallest, each once, as in 1h30m or 1m30s"
            ));
        }
        previous = Some(rank);
        // All digits: only overflow can fail, and that is far beyond a day.
        let value: u64 = digits.parse().map_err(|_| too_long())?;
        total = value
            .checked_mul(UNITS[rank].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(too_long)?;
        rest = after;
    }
    let d = Duration::from_millis(total);
    if d.is_zero() {
        return Err(format!("`{text}` is zero; a duration is positive"));
    }
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

fn unexpected(c: char, text: &str) -> String {
    format!("unexpected `{c}` in `{text}`; write a duration such as 30s or 1m30s")
}

/// The canonical short form of a duration, as [`parse_duration`] reads it: its hours,
/// minutes, seconds and milliseconds, largest first, zero parts left out (`30s`, `1m30s`,
/// `500ms`, `1h0m5s` prints `1h5s`). Time below a millisecond is dropped; a duration under
/// one millisecond prints `0s`, which [`parse_duration`] refuses as zero.
///
/// ```
/// use std::time::Duration;
/// use netjail_policy::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        let len = u128::from(len);
        let n = ms / len;
        ms %= len;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn good_durations() {
        for (text, want) in [
            ("30s", ms(30_000)),
            ("500ms", ms(500)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("90s", ms(90_000)),
            ("1h0m5s", ms(3_605_000)),
            ("1s500ms", ms(1_500)),
            ("007s", ms(7_000)),
            ("1ms", ms(1)),
            ("24h", MAX_DURATION),
            ("23h59m59s999ms", MAX_DURATION - ms(1)),
            ("86400000ms", MAX_DURATION),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (text, message) in [
            ("", "empty duration; write one such as 30s, 500ms, 2m or 1h"),
            ("30", "`30` has no unit; write 30s, 30ms, 30m or 30h"),
            ("1m30", "`1m30` has no unit after 30; use h, m, s or ms"),
            ("s", "no number before `s` in `s`"),
            ("1ms30", "`1ms30` has no unit after 30; use h, m, s or ms"),
            ("-5s", "`-5s` is negative; a duration is positive"),
            ("0s", "`0s` is zero; a duration is positive"),
            ("0h0m", "`0h0m` is zero; a duration is positive"),
            ("25h", "`25h` is longer than 24h"),
            ("24h1ms", "`24h1ms` is longer than 24h"),
            ("99999999999999999999s", "`99999999999999999999s` is longer than 24h"),
            ("18446744073709551615h", "`18446744073709551615h` is longer than 24h"),
            ("2d", "unknown unit `d` in `2d`; use h, m, s or ms"),
            ("30S", "unknown unit `S` in `30S`; use h, m, s or ms"),
            ("5us", "unknown unit `us` in `5us`; use h, m, s or ms"),
            ("1.5s", "`1.5s` has a fraction; write whole units, as in 1s500ms"),
            (
                "30s1m",
                "units in `30s1m` must go from the largest to the smallest, each once, as in 1h30m or 1m30s",
            ),
            (
                "1s1s",
                "units in `1s1s` must go from the largest to the smallest, each once, as in 1h30m or 1m30s",
            ),
            (
                "1m 30s",
                "unexpected ` ` in `1m 30s`; write a duration such as 30s or 1m30s",
            ),
            (
                " 30s",
                "unexpected ` ` in ` 30s`; write a duration such as 30s or 1m30s",
            ),
            (
                "+30s",
                "unexpected `+` in `+30s`; write a duration such as 30s or 1m30s",
            ),
            (
                "30s!",
                "unexpected `!` in `30s!`; write a duration such as 30s or 1m30s",
            ),
            ("é", "unexpected `é` in `é`; write a duration such as 30s or 1m30s"),
        ] {
            assert_eq!(parse_duration(text), Err(message.to_owned()), "{text:?}");
        }
    }

    #[test]
    fn canonical_form() {
        assert_eq!(format_duration(ms(30_000)), "30s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(ms(3_605_000)), "1h5s");
        assert_eq!(format_duration(MAX_DURATION), "24h");
        assert_eq!(format_duration(Duration::from_secs(100 * 3600)), "100h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(999)), "0s");
        assert_eq!(format_duration(Duration::from_nanos(1_000_999)), "1ms");
    }
}
