//! The keys that sign tokens: PKCS#8 PEM files holding an Ed25519 or ECDSA P-256 private key,
//! such as a mounted Kubernetes Secret (`openssl genpkey -algorithm ed25519`). Several may be
//! configured for a rotation: the first signs, all verify. Without any, one Ed25519 key is
//! generated once into the data folder (0600), so tokens survive a restart. A key never lives
//! only in memory and is never written to the database.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use super::secrets::sha256_hex;

/// Where the generated key is kept, inside the data folder.
pub const GENERATED_KEY: &str = "auth/token-signing-key.pem";

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("token signing key {path}: {why}")]
pub struct KeyError {
    /// The key's file.
    pub path: String,
    /// What is wrong.
    pub why: String,
}

/// One signing key.
pub struct SigningKey {
    /// Identifies the key in a token's header (`kid`): a hash of its public key.
    pub id: String,
    /// The JWT algorithm it signs with.
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (Ed25519 or ECDSA P-256).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PKCS#8 PEM private key (BEGIN PRIVATE KEY): {e}"))?;
        let der = der.secret_pkcs8_der();
        let (algorithm, public, encoding) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
            // Re-encoded as PKCS#8 v2, which signing accepts whatever the file's version was.
            let document = pair
                .to_pkcs8()
                .map_err(|_| "cannot re-encode the Ed25519 key".to_owned())?;
            (
                Algorithm::EdDSA,
                pair.public_key().as_ref().to_vec(),
                EncodingKey::from_ed_der(document.as_ref()),
            )
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            (
                Algorithm::ES256,
                pair.public_key().as_ref().to_vec(),
                EncodingKey::from_ec_der(der),
            )
        } else {
            return Err(
                "an unsupported key: give an Ed25519 or ECDSA P-256 private key".to_owned(),
            );
        };
        let decoding = match algorithm {
            Algorithm::EdDSA => DecodingKey::from_ed_der(&public),
            _ => DecodingKey::from_ec_der(&public),
        };
        let id = sha256_hex(&STANDARD.encode(&public))[..16].to_owned();
        Ok(SigningKey {
            id,
            algorithm,
            encoding,
            decoding,
        })
    }

    /// The key that signs.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The key that verifies.
    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// A new Ed25519 private key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, String> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| "cannot generate a key".to_owned())?;
    let body = STANDARD.encode(document.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// The keys in use: the first signs, every one verifies.
#[derive(Debug)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// Reads the configured key files, or (when none is configured) the key generated into the
    /// data folder, generating it on first use.
    pub fn load(files: &[PathBuf], data_dir: &Path) -> Result<SigningKeys, KeyError> {
        if files.is_empty() {
            let path = data_dir.join(GENERATED_KEY);
            if !path.exists() {
                write_generated_key(&path)?;
                tracing::info!(key = %path.display(), "generated a token signing key");
            }
            return Ok(SigningKeys {
                keys: vec![read_key(&path)?],
            });
        }
        let keys = files
            .iter()
            .map(|path| read_key(path))
            .collect::<Result<_, _>>()?;
        Ok(SigningKeys { keys })
    }

    /// Keys from PEM texts (the first signs).
    pub fn from_pems(pems: &[&[u8]]) -> Result<SigningKeys, String> {
        let keys = pems
            .iter()
            .map(|pem| SigningKey::from_pem(pem))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no key".to_owned());
        }
        Ok(SigningKeys { keys })
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The key with this id, to verify a token.
    pub fn find(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|key| key.id == id)
    }
}

fn read_key(path: &Path) -> Result<SigningKey, KeyError> {
    let error = |why: String| KeyError {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    SigningKey::from_pem(&pem).map_err(error)
}

/// Writes a new key readable by its owner only, in a folder only its owner may enter.
fn write_generated_key(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    let error = |why: String| KeyError {
        path: path.display().to_string(),
        why,
    };
    let pem = generate_pem().map_err(error)?;
    if let Some(folder) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| error(e.to_string()))?;
    }
    super::write_private_file(path, &pem).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKeys::load(&[], dir.path()).unwrap();
        let path = dir.path().join(GENERATED_KEY);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let second = SigningKeys::load(&[], dir.path()).unwrap();
        assert_eq!(
            first.signer().id,
            second.signer().id,
            "the same key after a restart"
        );
        assert_eq!(first.signer().algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn configured_keys_rotate_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        std::fs::write(&a, generate_pem().unwrap()).unwrap();
        std::fs::write(&b, generate_pem().unwrap()).unwrap();
        let keys = SigningKeys::load(&[a.clone(), b.clone()], dir.path()).unwrap();
        let b_id = SigningKeys::load(std::slice::from_ref(&b), dir.path())
            .unwrap()
            .signer()
            .id
            .clone();
        assert!(keys.find(&b_id).is_some());
        assert_ne!(keys.signer().id, b_id, "the first key signs");
        assert!(!dir.path().join(GENERATED_KEY).exists());
        std::fs::write(
            &b,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = SigningKeys::load(&[a, b.clone()], dir.path()).unwrap_err();
        assert!(
            error.to_string().contains(&b.display().to_string()),
            "{error}"
        );
    }
}
