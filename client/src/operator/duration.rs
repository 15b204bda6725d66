//! Durations in tables (`1m05s`). The command line parses durations with the policy crate's
//! [`netjail_policy::parse_duration`], the same parser as `ask_timeout`.

/// A duration in milliseconds, short and coarse for a table: `0s`, `42s`, `1m05s`,
/// `2h03m`, `3d04h`.
pub(super) fn short(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_is_coarse() {
        assert_eq!(short(0), "0s");
        assert_eq!(short(999), "0s");
        assert_eq!(short(42_000), "42s");
        assert_eq!(short(65_000), "1m05s");
        assert_eq!(short(7_380_000), "2h03m");
        assert_eq!(short(100_800_000), "1d04h");
    }
}
