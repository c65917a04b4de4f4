//! Human-readable durations, as `k8s.io/apimachinery/pkg/util/duration.HumanDuration`
//! prints them in AGE and similar columns.

use chrono::{DateTime, TimeDelta, Utc};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;

/// A succinct duration with about two significant figures: `45s`, `2m30s`, `15m`,
/// `5h3m`, `22h`, `3d4h`, `30d`, `2y5d`, `9y`.
///
/// A duration down to one second in the past prints as `0s` (clocks of different
/// machines disagree a little); anything further in the past is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    // Go's time.Duration is an i64 of nanoseconds and time.Since saturates at its
    // limits; do the same so that absurd timestamps print as upstream does.
    let nanos = d.num_nanoseconds().unwrap_or(if d < TimeDelta::zero() { i64::MIN } else { i64::MAX });
    human_duration_nanos(nanos)
}

fn human_duration_nanos(nanos: i64) -> String {
    // Integer division truncates toward zero, like Go's int(d.Seconds()).
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / NANOS_PER_MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / NANOS_PER_HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        let days = hours / 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let years = hours / 24 / 365;
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{years}y")
}

/// The age of a timestamp at `now`, as upstream's `translateTimestampSince`:
/// `<unknown>` when the timestamp is unset.
pub fn translate_timestamp_since(ts: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match ts {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> TimeDelta {
        TimeDelta::seconds(s)
    }

    #[test]
    fn human_duration_matches_upstream_table() {
        let cases: &[(TimeDelta, &str)] = &[
            (TimeDelta::milliseconds(-1999), "0s"),
            (secs(-2), "<invalid>"),
            (secs(-1), "0s"),
            (secs(0), "0s"),
            (TimeDelta::milliseconds(999), "0s"),
            (secs(5), "5s"),
            (secs(119), "119s"),
            (secs(120), "2m"),
            (secs(150), "2m30s"),
            (secs(9 * 60 + 59), "9m59s"),
            (secs(10 * 60), "10m"),
            (secs(10 * 60 + 30), "10m"),
            (secs(179 * 60 + 59), "179m"),
            (secs(3 * 3600), "3h"),
            (secs(5 * 3600 + 3 * 60), "5h3m"),
            (secs(7 * 3600 + 59 * 60), "7h59m"),
            (secs(8 * 3600), "8h"),
            (secs(22 * 3600), "22h"),
            (secs(47 * 3600 + 3599), "47h"),
            (secs(48 * 3600), "2d"),
            (secs(76 * 3600), "3d4h"),
            (secs((24 * 8 - 1) * 3600), "7d23h"),
            (secs(24 * 8 * 3600), "8d"),
            (secs(364 * 24 * 3600), "364d"),
            (secs(729 * 24 * 3600), "729d"),
            (secs(730 * 24 * 3600), "2y"),
            (secs(735 * 24 * 3600), "2y5d"),
            (secs(365 * 8 * 24 * 3600), "8y"),
            (secs(365 * 100 * 24 * 3600), "100y"),
            (TimeDelta::MAX, "292y"),
            (TimeDelta::MIN, "<invalid>"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "duration {d:?}");
        }
    }

    #[test]
    fn unset_timestamps_are_unknown() {
        let now = Utc::now();
        assert_eq!(translate_timestamp_since(None, now), "<unknown>");
        assert_eq!(translate_timestamp_since(Some(now - secs(30)), now), "30s");
        assert_eq!(translate_timestamp_since(Some(now + secs(30)), now), "<invalid>");
    }
}
