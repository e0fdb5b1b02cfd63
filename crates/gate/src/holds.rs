//! Read-only holds: the registry is desired read-only while at least one exists. Each actor (an
//! administrator, the configuration file, a backup job, an operator) takes and releases its own
//! hold by name, so they never undo each other's.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use wharf_core::time::Millis;

/// The longest reason kept with a hold.
pub const MAX_REASON_LEN: usize = 1024;

/// Whether `reason` (trimmed) may explain a hold: 1 to [`MAX_REASON_LEN`] characters, no
/// control characters (it is shown to clients and written to logs).
pub fn is_valid_reason(reason: &str) -> bool {
    let length = reason.chars().count();
    (1..=MAX_REASON_LEN).contains(&length) && !reason.chars().any(char::is_control)
}

/// The hold the configuration file's `read_only.enabled` manages.
pub const CONFIG_HOLD: &str = "config";

/// A hold's name: `[a-z0-9][a-z0-9._-]{0,62}`, such as `admin`, `config` or `backup-42`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct HoldName(String);

/// Why a hold name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid hold name {0:?}: use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
)]
pub struct HoldNameError(pub String);

impl HoldName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the hold the configuration file manages.
    pub fn is_config(&self) -> bool {
        self.0 == CONFIG_HOLD
    }
}

impl FromStr for HoldName {
    type Err = HoldNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if valid {
            Ok(HoldName(s.to_owned()))
        } else {
            Err(HoldNameError(s.chars().take(100).collect()))
        }
    }
}

impl fmt::Display for HoldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a hold (or a release) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldSource {
    /// The admin HTTP API (and the `wharf read-only` command, which uses it).
    Api,
    /// The configuration file's `read_only` section.
    Config,
    /// The command line, working on a stopped registry's data.
    Cli,
    /// The registry itself (an expiry, a start-up).
    System,
}

impl HoldSource {
    /// The source as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldSource::Api => "api",
            HoldSource::Config => "config",
            HoldSource::Cli => "cli",
            HoldSource::System => "system",
        }
    }
}

impl FromStr for HoldSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "api" => Ok(HoldSource::Api),
            "config" => Ok(HoldSource::Config),
            "cli" => Ok(HoldSource::Cli),
            "system" => Ok(HoldSource::System),
            other => Err(format!("unknown hold source {other:?}")),
        }
    }
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// Its name.
    pub name: HoldName,
    /// Why the registry is held read-only.
    pub reason: String,
    /// Who set it.
    pub set_by: String,
    /// Where it was set from.
    pub source: HoldSource,
    /// When it was first set.
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub created_at: Millis,
    /// When it was last set (a hold set again keeps its creation time).
    #[serde(serialize_with = "wharf_core::time::serialize_time")]
    pub updated_at: Millis,
    /// When it ends by itself, if it does.
    #[serde(serialize_with = "wharf_core::time::serialize_optional_time")]
    pub expires_at: Option<Millis>,
}

impl Hold {
    /// Whether the hold still holds at `now`.
    pub fn is_active(&self, now: Millis) -> bool {
        self.expires_at.is_none_or(|expires| expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "admin",
            "config",
            "backup-42",
            "a",
            "x.y_z",
            &"a".repeat(63),
        ] {
            assert!(good.parse::<HoldName>().is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "Admin",
            "-x",
            ".x",
            "a b",
            "a/b",
            &"a".repeat(64),
            "../x",
        ] {
            assert!(bad.parse::<HoldName>().is_err(), "{bad:?}");
        }
    }
}
