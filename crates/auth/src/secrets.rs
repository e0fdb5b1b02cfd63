//! Passwords and random secrets: argon2id hashes for passwords people choose, SHA-256 for the
//! random tokens robots use (which are too long to guess, so a slow hash buys nothing).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// The longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a secret could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The system's random source failed.
    #[error("the system's random source failed")]
    Random,
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// `n` random bytes from the system's source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, SecretError> {
    let mut bytes = vec![0; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

/// A random secret of 32 bytes as URL-safe text (43 characters), with a prefix saying what it is.
pub fn random_secret(prefix: &str) -> Result<String, SecretError> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes(32)?)
    ))
}

/// Checks a password people chose: long enough, not absurdly long, one line.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "a password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "a password must have at most {MAX_PASSWORD_LEN} bytes"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("a password must not contain control characters".to_owned());
    }
    Ok(())
}

/// The argon2id hash of a password, as a PHC string. Slow on purpose: run it off the async
/// threads.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    let salt = random_bytes(16)?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `password` matches an argon2 PHC string (false for a damaged hash too).
pub fn verify_password(password: &str, hash: &str) -> bool {
    password.len() <= MAX_PASSWORD_LEN
        && Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
}

/// The SHA-256 of some text, in hex.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two strings in time that does not depend on where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut difference = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

/// A short, non-reversible mark of a credential's hash: refresh tokens carry it, so a changed
/// password or token invalidates them without any record of the tokens issued.
pub fn fingerprint(credential_hash: &str) -> String {
    sha256_hex(credential_hash)[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn password_rules() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password("1234567\n8").is_err());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }

    #[test]
    fn secrets_are_random_and_comparisons_exact() {
        let a = random_secret("wharf_").unwrap();
        assert!(a.starts_with("wharf_") && a.len() == 6 + 43, "{a}");
        assert_ne!(a, random_secret("wharf_").unwrap());
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "a"));
    }
}
