//! Where a blob's content is stored: placement keys. Every upload places its content under a
//! fresh key, so garbage collection, which deletes one placement, can never delete a copy that a
//! concurrent upload revived. The metadata store records keys; blob storage reads and writes them.

use crate::digest::{Algorithm, Digest};
use crate::upload_id::UploadId;

/// The name of the object holding one placement of a blob's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey(String);

impl StorageKey {
    /// A key for a new placement of `digest`'s content.
    pub fn for_new_placement(digest: &Digest) -> Self {
        let hex = digest.hex();
        StorageKey(format!(
            "blobs/{}/{}/{}/{}",
            digest.algorithm().name(),
            &hex[..2],
            hex,
            UploadId::generate()
        ))
    }

    /// The key of upload `upload`'s placement of `digest`'s content, for blob storage that
    /// writes an upload at its final key as it arrives (S3's multipart uploads): the
    /// incarnation is the upload's id, so an object or multipart upload a killed process left
    /// behind names the session it belonged to.
    pub fn for_upload(digest: &Digest, upload: &UploadId) -> Self {
        let hex = digest.hex();
        StorageKey(format!(
            "blobs/{}/{}/{}/{}",
            digest.algorithm().name(),
            &hex[..2],
            hex,
            upload
        ))
    }

    /// The key of a chunked upload's placement when its bytes must be written at their final
    /// key before the client names the digest (an S3 multipart upload's key is fixed when it
    /// is created): `blobs/<algorithm>/upload/<xx>/<upload id>`.
    pub fn for_chunked_upload(algorithm: Algorithm, upload: &UploadId) -> Self {
        let id = upload.as_str();
        StorageKey(format!(
            "blobs/{}/upload/{}/{id}",
            algorithm.name(),
            &id[..2]
        ))
    }

    /// The upload session a key made by [`StorageKey::for_upload`] or
    /// [`StorageKey::for_chunked_upload`] belongs to (for other keys, an id no session has).
    pub fn upload_id(&self) -> Option<UploadId> {
        self.0.rsplit('/').next()?.parse().ok()
    }

    /// Accepts a key read back from the metadata store, refusing anything that is not of the
    /// form this module writes (so a damaged database cannot point outside the blob folder).
    pub fn from_stored(key: String) -> Result<Self, String> {
        let parts: Vec<&str> = key.split('/').collect();
        let well_formed = parts.len() == 5
            && parts[0] == "blobs"
            && parts[1..].iter().all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if well_formed {
            Ok(StorageKey(key))
        } else {
            Err(format!("invalid storage key {key:?}"))
        }
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest whose content this key holds, as its path says.
    pub fn digest(&self) -> Option<Digest> {
        let mut parts = self.0.split('/').skip(1);
        let (algorithm, _, hex) = (parts.next()?, parts.next()?, parts.next()?);
        format!("{algorithm}:{hex}").parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_their_digest_and_reject_traversal() {
        let digest = Digest::sha256_of(b"hello");
        let key = StorageKey::for_new_placement(&digest);
        assert!(key.as_str().starts_with(&format!(
            "blobs/sha256/{}/{}/",
            &digest.hex()[..2],
            digest.hex()
        )));
        assert_eq!(key.digest(), Some(digest.clone()));
        assert_eq!(StorageKey::from_stored(key.as_str().to_owned()), Ok(key));
        let upload = UploadId::generate();
        let placed = StorageKey::for_upload(&digest, &upload);
        assert_eq!(placed.digest(), Some(digest.clone()));
        assert_eq!(placed.upload_id(), Some(upload.clone()));
        let chunked = StorageKey::for_chunked_upload(Algorithm::Sha256, &upload);
        assert!(chunked.as_str().starts_with("blobs/sha256/upload/"));
        assert_eq!(chunked.upload_id(), Some(upload));
        assert_eq!(chunked.digest(), None);
        for key in [placed, chunked] {
            assert_eq!(StorageKey::from_stored(key.as_str().to_owned()), Ok(key));
        }
        for bad in [
            "blobs/../../etc/passwd/x",
            "/etc/passwd",
            "blobs/sha256/ab/cd",
            "blobs/sha256/ab/cd/../x",
            "uploads/x/y/z/w",
            "blobs/sha256//cd/x",
        ] {
            assert!(StorageKey::from_stored(bad.to_owned()).is_err(), "{bad:?}");
        }
    }
}
