//! Values with units in the configuration: durations (`30s`, `1h 30m`) and sizes (`4MiB`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written for people: `500ms`, `30s`, `5m`, `1h 30m`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 30s, 5m or 1h"))
    }
}

impl fmt::Display for HumanDuration {
    /// As [`wharf_core::time::format_duration`] writes it: it parses back to the same duration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&wharf_core::time::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written as a number of bytes or with a unit: `512KiB`, `4MiB`, `2GiB`,
/// `10MB` (decimal units are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || format!("invalid size {s:?}; write it like 4MiB, 512KiB or 1048576");
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| error())?;
        let unit = unit.trim();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|(_, m)| *m)
                .ok_or_else(error)?
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(error)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest binary unit that divides the size exactly, so the text reads back the same.
        let (name, multiplier) = UNITS[..5]
            .iter()
            .rev()
            .find(|(_, m)| self.0.is_multiple_of(*m) && self.0 >= *m)
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", self.0 / multiplier)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!("4MiB".parse(), Ok(ByteSize(4 << 20)));
        assert_eq!("4 mib".parse(), Ok(ByteSize(4 << 20)));
        assert_eq!("10MB".parse(), Ok(ByteSize(10_000_000)));
        assert_eq!("1024".parse(), Ok(ByteSize(1024)));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5GiB",
            "4 parsecs",
            "99999999999999999999",
            "18446744073709551615TiB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
        assert_eq!(ByteSize(4 << 20).to_string(), "4MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn durations() {
        assert_eq!(
            "1h 30m".parse(),
            Ok(HumanDuration(Duration::from_secs(5400)))
        );
        assert!("soon".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn durations_print_as_the_documentation_writes_them() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(5 * 60), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(24 * 3600), "1d"),
            (Duration::from_secs(7 * 24 * 3600), "7d"),
            (Duration::from_secs(30 * 24 * 3600), "30d"),
            (Duration::from_secs(365 * 24 * 3600 + 1), "365d 1s"),
            (Duration::from_nanos(1_001), "1us 1ns"),
        ] {
            assert_eq!(HumanDuration(duration).to_string(), text);
            assert_eq!(text.parse(), Ok(HumanDuration(duration)), "{text}");
        }
    }

    proptest! {
        #[test]
        fn sizes_round_trip(n in any::<u64>()) {
            prop_assert_eq!(ByteSize(n).to_string().parse::<ByteSize>(), Ok(ByteSize(n)));
        }

        #[test]
        fn durations_round_trip(seconds in any::<u64>(), nanos in 0..1_000_000_000u32) {
            let duration = HumanDuration(Duration::new(seconds, nanos));
            prop_assert_eq!(duration.to_string().parse::<HumanDuration>(), Ok(duration));
        }

        #[test]
        fn any_text_parses_or_errors(s in "\\PC{0,30}") {
            let _ = s.parse::<ByteSize>();
            let _ = s.parse::<HumanDuration>();
        }
    }
}
