//! Content digests (`sha256:<hex>`, `sha512:<hex>`): parsing by the OCI grammar, and the streaming
//! hasher whose state can be saved between requests so a chunked upload resumes anywhere.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm Wharf can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the algorithm every client uses by default.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:` of a digest.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm of a name as [`Algorithm::name`] gives it (the `digest-algorithm` of an
    /// upload, the prefix of a digest); `None` for one Wharf does not implement.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest: a supported algorithm and its lowercase hex encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest Wharf accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string does not follow the OCI digest grammar, or its encoding has the wrong form.
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>, such as sha256:<64 hex digits>")]
    Malformed(String),
    /// A well-formed digest whose algorithm Wharf does not implement.
    #[error("unsupported digest algorithm {0:?}: use sha256 or sha512")]
    Unsupported(String),
}

impl Digest {
    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The SHA-256 digest of `bytes` (for content small enough to hold, such as manifests).
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut hasher = ContentHasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of `bytes` under this digest's algorithm, to compare against it.
    pub fn recompute(&self, bytes: &[u8]) -> Digest {
        let mut hasher = ContentHasher::new(self.algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses by the OCI grammar: `algorithm ":" encoded`, where
    /// `algorithm = [a-z0-9]+ ([+._-] [a-z0-9]+)*` and `encoded = [a-zA-Z0-9=_-]+`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || DigestError::Malformed(s.to_owned());
        let (algorithm, encoded) = s.split_once(':').ok_or_else(malformed)?;
        if !is_algorithm_grammar(algorithm)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        {
            return Err(malformed());
        }
        let algorithm = Algorithm::from_name(algorithm)
            .ok_or_else(|| DigestError::Unsupported(algorithm.to_owned()))?;
        let is_lower_hex = encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if encoded.len() != algorithm.hex_len() || !is_lower_hex {
            return Err(malformed());
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }
}

fn is_algorithm_grammar(algorithm: &str) -> bool {
    !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|component| !component.is_empty() && component.bytes().all(is_lower_alnum))
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher for one algorithm whose state can be saved and restored, so that an upload
/// spread over several requests (and replicas) is hashed once, as it arrives.
#[derive(Clone)]
pub enum ContentHasher {
    /// Hashing with SHA-256 (uses the CPU's SHA extensions when present).
    Sha256(Sha256),
    /// Hashing with SHA-512.
    Sha512(Sha512),
}

/// A saved hasher state could not be restored (it is corrupt or of another algorithm).
#[derive(Debug, thiserror::Error)]
#[error("the saved hash state of this upload is corrupt")]
pub struct HashStateError;

impl ContentHasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => ContentHasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => ContentHasher::Sha512(Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            ContentHasher::Sha256(_) => Algorithm::Sha256,
            ContentHasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds more content.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Sha256(h) => h.update(bytes),
            ContentHasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            ContentHasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            ContentHasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            algorithm,
            hex: to_hex(&bytes),
        }
    }

    /// The hasher's state, to store with an upload session.
    pub fn save(&self) -> Vec<u8> {
        match self {
            ContentHasher::Sha256(h) => h.serialize().to_vec(),
            ContentHasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Restores a state produced by [`ContentHasher::save`] for `algorithm`.
    pub fn restore(algorithm: Algorithm, state: &[u8]) -> Result<Self, HashStateError> {
        Ok(match algorithm {
            Algorithm::Sha256 => {
                let state =
                    SerializedState::<Sha256>::try_from(state).map_err(|_| HashStateError)?;
                ContentHasher::Sha256(Sha256::deserialize(&state).map_err(|_| HashStateError)?)
            }
            Algorithm::Sha512 => {
                let state =
                    SerializedState::<Sha512>::try_from(state).map_err(|_| HashStateError)?;
                ContentHasher::Sha512(Sha512::deserialize(&state).map_err(|_| HashStateError)?)
            }
        })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_values() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY_SHA256);
        let mut h = ContentHasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert_eq!(
            h.finish().to_string(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            EMPTY_SHA256.parse::<Digest>().unwrap().to_string(),
            EMPTY_SHA256
        );
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))),
                "{bad:?} should be malformed"
            );
        }
        assert_eq!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::Unsupported("md5".into()))
        );
        assert_eq!(
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".parse::<Digest>(),
            Err(DigestError::Unsupported("multihash+base58".into()))
        );
    }

    proptest! {
        #[test]
        fn any_string_parses_or_errors_without_panicking(s in "\\PC*") {
            let _ = s.parse::<Digest>();
        }

        #[test]
        fn valid_digests_round_trip(hex in "[0-9a-f]{64}") {
            let text = format!("sha256:{hex}");
            let digest: Digest = text.parse().unwrap();
            prop_assert_eq!(digest.to_string(), text);
            prop_assert_eq!(digest.hex(), hex.as_str());
        }

        #[test]
        fn saved_state_resumes_to_the_same_digest(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            split in 0usize..600,
            sha512 in any::<bool>(),
        ) {
            let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let split = split.min(data.len());
            let mut whole = ContentHasher::new(algorithm);
            whole.update(&data);
            let mut first = ContentHasher::new(algorithm);
            first.update(&data[..split]);
            let mut resumed = ContentHasher::restore(algorithm, &first.save()).unwrap();
            resumed.update(&data[split..]);
            prop_assert_eq!(resumed.finish(), whole.finish());
        }
    }

    #[test]
    fn corrupt_state_is_an_error() {
        assert!(ContentHasher::restore(Algorithm::Sha256, b"short").is_err());
        let state = ContentHasher::new(Algorithm::Sha256).save();
        assert!(ContentHasher::restore(Algorithm::Sha512, &state).is_err());
    }
}
