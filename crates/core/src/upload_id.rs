//! Upload session identifiers: random UUIDs, validated wherever they come back from a URL.

use std::fmt;
use std::str::FromStr;

/// The identifier of an upload session, a random UUID in its lowercase hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

/// The text is not an upload identifier Wharf issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid upload id")]
pub struct UploadIdError;

impl UploadId {
    /// A fresh random identifier.
    pub fn generate() -> Self {
        UploadId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UploadId {
    type Err = UploadIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = uuid::Uuid::try_parse(s).map_err(|_| UploadIdError)?;
        let canonical = uuid.hyphenated().to_string();
        // Only the canonical form, so one session has exactly one spelling (and one file name).
        if canonical == s {
            Ok(UploadId(canonical))
        } else {
            Err(UploadIdError)
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_spellings() {
        let id = UploadId::generate();
        assert_eq!(id.as_str().parse::<UploadId>(), Ok(id.clone()));
        assert!(id.as_str().to_uppercase().parse::<UploadId>().is_err());
        assert!(id.as_str().replace('-', "").parse::<UploadId>().is_err());
        for bad in ["", "../../etc/passwd", "x", "sha256:abc"] {
            assert!(bad.parse::<UploadId>().is_err(), "{bad:?}");
        }
    }
}
