//! Repository names, tags and manifest references, validated by the OCI Distribution grammar.
//!
//! Every value of these types has passed validation, so code holding one never re-checks it and
//! can use it in storage keys and SQL parameters without fear of traversal or injection.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The longest repository name accepted, as Distribution and most clients limit it.
pub const MAX_NAME_LEN: usize = 255;

/// A repository name such as `library/alpine` or `team/app/backend`: one or more `/`-separated
/// components of `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

/// Why a repository name is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository name {name:?}: {why}")]
pub struct NameError {
    /// The rejected name (truncated to a readable length).
    pub name: String,
    /// What rule it breaks.
    pub why: &'static str,
}

impl RepositoryName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |why| NameError {
            name: s.chars().take(300).collect(),
            why,
        };
        if s.is_empty() {
            return Err(error("it is empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(error("it is longer than 255 characters"));
        }
        for component in s.split('/') {
            if !is_path_component(component) {
                return Err(error(
                    "each /-separated part must be lowercase letters and digits, \
                     joined by '.', '_', '__' or dashes",
                ));
            }
        }
        Ok(RepositoryName(s.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
pub fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        // An alphanumeric run.
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator, then another run must follow.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A tag such as `latest` or `v1.2.3`: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// Why a tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid tag {0:?}: a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
)]
pub struct TagError(pub String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(Tag(s.to_owned()))
        } else {
            Err(TagError(s.chars().take(200).collect()))
        }
    }
}

/// How a manifest is addressed in a URL: by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable name pointing at a manifest.
    Tag(Tag),
    /// The manifest's content digest.
    Digest(Digest),
}

/// Why a manifest reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Neither a tag nor a digest.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// Looks like a digest (has a `:`) but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A tag never contains ':', so the colon decides which grammar applies.
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => tag.fmt(f),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_names() {
        for good in [
            "a",
            "library/alpine",
            "a/b/c/d/e/f",
            "my-app",
            "my--app",
            "a.b",
            "a_b",
            "a__b",
            "x/manifests",
            "a/blobs/b",
            "0/9",
        ] {
            assert!(good.parse::<RepositoryName>().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a.", "_a", "a b", "a/../b",
            "..", "a/./b", "a:b", "ä",
        ] {
            assert!(bad.parse::<RepositoryName>().is_err(), "{bad:?}");
        }
        assert!("a".repeat(256).parse::<RepositoryName>().is_err());
        assert!("a".repeat(255).parse::<RepositoryName>().is_ok());
    }

    #[test]
    fn tags() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(good.parse::<Tag>().is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a:b",
            "a/b",
            &"t".repeat(129),
            "tag with space",
        ] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        assert!(matches!(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse(),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            "sha256:nothex".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
    }

    proptest! {
        #[test]
        fn generated_names_are_accepted(
            name in "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+){0,3}(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+){0,3}){0,4}"
        ) {
            prop_assume!(name.len() <= MAX_NAME_LEN);
            let parsed = name.parse::<RepositoryName>().unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }

        #[test]
        fn arbitrary_strings_never_panic_and_never_contain_dot_dot(s in "\\PC{0,300}") {
            if let Ok(name) = s.parse::<RepositoryName>() {
                prop_assert!(!name.as_str().contains(".."));
                prop_assert!(!name.as_str().starts_with('/'));
            }
            let _ = s.parse::<Reference>();
        }
    }
}
