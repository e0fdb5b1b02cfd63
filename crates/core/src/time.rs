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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }
}
