//! Time as the registry keeps it: milliseconds since the Unix epoch, shown as RFC 3339.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serializer;

/// Milliseconds since the Unix epoch, the unit of every time the store keeps.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis::try_from(since_epoch.as_millis()).unwrap_or(Millis::MAX)
}

/// Formats milliseconds since the epoch as RFC 3339 (`2026-11-22T09:20:01.123Z`).
pub fn format_time(millis: Millis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// Serialises a time as RFC 3339.
pub fn serialize_time<S: Serializer>(millis: &Millis, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*millis))
}

/// Serialises an optional time as RFC 3339 or `null`.
pub fn serialize_optional_time<S: Serializer>(
    millis: &Option<Millis>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match millis {
        Some(millis) => serializer.serialize_str(&format_time(*millis)),
        None => serializer.serialize_none(),
    }
}

/// The units a duration is written in, largest first: the ones the documentation writes. Not
/// humantime's own printing, which spells days `30days` and goes on to months and years of
/// 30.44 and 365.25 days (so `60d` would print as a month, 29 days and some hours).
const DURATION_UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// A duration as the documentation and the configuration write it: one number per unit that
/// is not zero, `30d`, `5m`, `1h 30m`, `1s 500ms`; `0s` for nothing. humantime parses it back
/// to the same duration.
pub fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_nanos();
    if rest == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (unit, size) in DURATION_UNITS {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

/// Serialises a duration as [`format_duration`] writes it.
pub fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
