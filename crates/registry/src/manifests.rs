//! Pushing, pulling and deleting manifests and tags.

use super::{Registry, RegistryError};
use wharf_core::digest::Digest;
use wharf_core::manifest;
use wharf_core::reference::{Reference, RepositoryName, Tag};
use wharf_gate::WriteIntent;
use wharf_metadata::{ManifestDeletion, ManifestRecord, ManifestRejection, NewManifest};

/// What the registry reports about a manifest it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifestInfo {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its subject's digest, if it has one (returned as `OCI-Subject`).
    pub subject: Option<Digest>,
    /// The tags now pointing at it from this push (returned as `OCI-Tag`, one header each).
    pub tags: Vec<Tag>,
}

impl Registry {
    /// The manifest `reference` names in `repository`.
    pub async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestRecord, RegistryError> {
        self.metadata
            .manifest(repository, reference)
            .await?
            .ok_or(RegistryError::ManifestUnknown)
    }

    /// Validates and stores a manifest pushed by `client` under `reference` (a tag to point at
    /// it, or the digest it must have), and points `also_tags` at it in the same transaction
    /// (the `?tag=` parameters of a push by digest).
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        also_tags: &[Tag],
        client: &str,
        content_type: Option<&str>,
        content: Vec<u8>,
    ) -> Result<StoredManifestInfo, RegistryError> {
        let limit = self.limits.max_manifest_size;
        if content.len() as u64 > limit {
            return Err(RegistryError::TooLarge(format!(
                "the manifest exceeds the size limit of {limit} bytes"
            )));
        }
        let parsed = manifest::parse(&content, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let (digest, reference_tag) = match reference {
            Reference::Digest(expected) => {
                let actual = expected.recompute(&content);
                if actual != *expected {
                    return Err(RegistryError::DigestInvalid(format!(
                        "the manifest's digest is {actual}, not {expected}"
                    )));
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::sha256_of(&content), Some(tag.clone())),
        };
        let new = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type,
            content,
            blobs: parsed.blobs,
            manifests: parsed.manifests,
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.clone(),
            annotations: parsed.annotations,
            tags: unique(reference_tag.into_iter().chain(also_tags.iter().cloned())),
            client: client.to_owned(),
            sparse: self.limits.sparse_manifests,
        };
        let permit = self
            .admit(WriteIntent::PutManifest { repository, client })
            .await?;
        match self
            .metadata
            .put_manifest(&permit, repository, &new)
            .await?
        {
            Ok(()) => Ok(StoredManifestInfo {
                digest,
                subject: parsed.subject,
                tags: new.tags,
            }),
            Err(ManifestRejection::MissingBlob(d) | ManifestRejection::MissingManifest(d)) => {
                Err(RegistryError::ManifestBlobUnknown(d))
            }
            Err(ManifestRejection::SizeMismatch {
                digest,
                declared,
                actual,
            }) => Err(RegistryError::ManifestInvalid(format!(
                "the manifest declares {declared} bytes for {digest}, which has {actual} bytes; \
                 a descriptor's size must be its content's"
            ))),
        }
    }

    /// Deletes a manifest (by digest, with the tags pointing at it) or only a tag.
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let permit = self.admit(WriteIntent::Delete { repository }).await?;
        let deletion = match reference {
            Reference::Digest(digest) => {
                self.metadata
                    .delete_manifest(&permit, repository, digest)
                    .await?
            }
            Reference::Tag(tag) => {
                if self.metadata.delete_tag(&permit, repository, tag).await? {
                    ManifestDeletion::Deleted
                } else {
                    ManifestDeletion::NotFound
                }
            }
        };
        match deletion {
            ManifestDeletion::Deleted => Ok(()),
            ManifestDeletion::NotFound => Err(RegistryError::ManifestUnknown),
            ManifestDeletion::InUse(index) => Err(RegistryError::ManifestInUse(index)),
        }
    }
}

/// Each tag once, in order.
fn unique(tags: impl Iterator<Item = Tag>) -> Vec<Tag> {
    let mut unique: Vec<Tag> = Vec::new();
    for tag in tags {
        if !unique.contains(&tag) {
            unique.push(tag);
        }
    }
    unique
}
