//! Consistency checks: every manifest's blobs and children exist, every blob's content is there
//! and matches its digest, every manifest matches its digest.

use futures_util::StreamExt;

use super::{Registry, RegistryError};
use wharf_core::digest::Digest;
use wharf_core::manifest;
use wharf_core::reference::Reference;
use wharf_metadata::{BlobCursor, StoredManifest};

const BATCH: u32 = 500;

/// Something wrong that fsck found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum FsckProblem {
    /// A blob's content is missing from storage.
    MissingBlobContent {
        /// The blob.
        digest: Digest,
        /// Where its content should be.
        storage_key: String,
    },
    /// A blob's stored content has another size than recorded.
    BlobSizeMismatch {
        /// The blob.
        digest: Digest,
        /// The recorded size.
        expected: u64,
        /// The stored object's size.
        actual: u64,
    },
    /// A blob's stored content does not hash to its digest.
    BlobDigestMismatch {
        /// The blob.
        digest: Digest,
        /// The digest of what is stored.
        actual: Digest,
    },
    /// A stored manifest does not hash to its digest.
    ManifestDigestMismatch {
        /// The manifest's repository.
        repository: String,
        /// The recorded digest.
        digest: Digest,
        /// The digest of the stored bytes.
        actual: Digest,
    },
    /// A stored manifest is not valid for its media type.
    ManifestInvalid {
        /// The manifest's repository.
        repository: String,
        /// The manifest.
        digest: Digest,
        /// What is wrong with it.
        error: String,
    },
    /// A manifest refers to a blob or manifest its repository does not have.
    DanglingReference {
        /// The manifest's repository.
        repository: String,
        /// The manifest.
        manifest: Digest,
        /// What it refers to.
        child: Digest,
        /// `blob` or `manifest`.
        kind: &'static str,
    },
    /// A manifest declares a size for a blob or manifest it refers to that is not that content's
    /// size.
    DescriptorSizeMismatch {
        /// The manifest's repository.
        repository: String,
        /// The manifest.
        manifest: Digest,
        /// What it refers to.
        child: Digest,
        /// The size it declares.
        declared: u64,
        /// The content's size.
        actual: u64,
    },
    /// A tag points at a manifest that does not exist.
    DanglingTag {
        /// The tag's repository.
        repository: String,
        /// The tag.
        tag: String,
    },
}

/// What fsck checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckReport {
    /// Blobs whose content was checked.
    pub blobs_checked: u64,
    /// Bytes of blob content hashed (0 when content verification was skipped).
    pub bytes_verified: u64,
    /// Manifests checked.
    pub manifests_checked: u64,
    /// Stored objects that no blob record uses (crash leftovers; `wharf gc` removes them).
    /// They are harmless, so they are not problems.
    pub unused_objects: u64,
    /// With `limits.sparse_manifests`: references to content the repository does not have,
    /// which sparse manifests are allowed (each a `dangling_reference` problem otherwise).
    /// Counted up to the first 500, as problems are listed.
    pub absent_references: u64,
    /// What is wrong; empty when the registry is consistent.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Registry {
    /// Checks the registry's consistency. With `verify_content`, every blob is read and hashed;
    /// otherwise only its presence and size are checked.
    pub async fn fsck(&self, verify_content: bool) -> Result<FsckReport, RegistryError> {
        let mut report = FsckReport::default();
        self.check_blobs(verify_content, &mut report).await?;
        self.check_manifests(&mut report).await?;
        for reference in self.metadata.dangling_references(BATCH).await? {
            if self.limits.sparse_manifests {
                report.absent_references += 1;
                continue;
            }
            report.problems.push(FsckProblem::DanglingReference {
                repository: reference.repository.to_string(),
                manifest: reference.manifest,
                child: reference.child,
                kind: if reference.child_is_blob {
                    "blob"
                } else {
                    "manifest"
                },
            });
        }
        for (repository, tag) in self.metadata.dangling_tags(BATCH).await? {
            report
                .problems
                .push(FsckProblem::DanglingTag { repository, tag });
        }
        let mut objects = self.blobs.list_objects();
        while let Some(object) = objects.next().await {
            if !self.metadata.storage_key_in_use(&object?.key).await? {
                report.unused_objects += 1;
            }
        }
        Ok(report)
    }

    async fn check_blobs(
        &self,
        verify_content: bool,
        report: &mut FsckReport,
    ) -> Result<(), RegistryError> {
        let mut cursor = BlobCursor::new(BATCH);
        loop {
            let blobs = self.metadata.live_blobs(cursor.page()).await?;
            if !cursor.advance(&blobs) {
                return Ok(());
            }
            for blob in blobs {
                report.blobs_checked += 1;
                let Some(actual_size) = self.blobs.size(&blob.storage_key).await? else {
                    report.problems.push(FsckProblem::MissingBlobContent {
                        digest: blob.digest,
                        storage_key: blob.storage_key.as_str().to_owned(),
                    });
                    continue;
                };
                if actual_size != blob.size {
                    report.problems.push(FsckProblem::BlobSizeMismatch {
                        digest: blob.digest,
                        expected: blob.size,
                        actual: actual_size,
                    });
                    continue;
                }
                if verify_content {
                    let actual = self
                        .blobs
                        .digest_of(&blob.storage_key, blob.digest.algorithm(), blob.size)
                        .await?;
                    report.bytes_verified += blob.size;
                    if actual != blob.digest {
                        report.problems.push(FsckProblem::BlobDigestMismatch {
                            digest: blob.digest,
                            actual,
                        });
                    }
                }
            }
        }
    }

    async fn check_manifests(&self, report: &mut FsckReport) -> Result<(), RegistryError> {
        let mut last = None;
        loop {
            let manifests = self
                .metadata
                .stored_manifests(last.as_ref().map(|(r, d)| (r, d)), BATCH)
                .await?;
            let Some(final_manifest) = manifests.last() else {
                return Ok(());
            };
            last = Some((
                final_manifest.repository.clone(),
                final_manifest.manifest.digest.clone(),
            ));
            for stored in manifests {
                report.manifests_checked += 1;
                let record = &stored.manifest;
                let repository = stored.repository.to_string();
                let actual = record.digest.recompute(&record.content);
                if actual != record.digest {
                    report.problems.push(FsckProblem::ManifestDigestMismatch {
                        repository: repository.clone(),
                        digest: record.digest.clone(),
                        actual,
                    });
                }
                match manifest::parse(&record.content, Some(&record.media_type)) {
                    Ok(parsed) => {
                        self.check_descriptor_sizes(&stored, &parsed, report)
                            .await?;
                    }
                    Err(e) => report.problems.push(FsckProblem::ManifestInvalid {
                        repository,
                        digest: record.digest.clone(),
                        error: e.to_string(),
                    }),
                }
            }
        }
    }

    /// Every descriptor's size against its content's: a blob's recorded size, a child manifest's
    /// length. (Content that is missing altogether is a dangling reference, reported apart.)
    async fn check_descriptor_sizes(
        &self,
        stored: &StoredManifest,
        parsed: &manifest::ParsedManifest,
        report: &mut FsckReport,
    ) -> Result<(), RegistryError> {
        let mut mismatch = |child: &manifest::Descriptor, actual: u64| {
            if child.size != actual {
                report.problems.push(FsckProblem::DescriptorSizeMismatch {
                    repository: stored.repository.to_string(),
                    manifest: stored.manifest.digest.clone(),
                    child: child.digest.clone(),
                    declared: child.size,
                    actual,
                });
            }
        };
        for blob in &parsed.blobs {
            if let Some(record) = self.metadata.live_blob(&blob.digest).await? {
                mismatch(blob, record.size);
            }
        }
        for child in &parsed.manifests {
            let reference = Reference::Digest(child.digest.clone());
            if let Some(record) = self
                .metadata
                .manifest(&stored.repository, &reference)
                .await?
            {
                mismatch(child, record.content.len() as u64);
            }
        }
        Ok(())
    }
}
