//! Blob uploads: a session is opened (`POST`), fed in chunks (`PATCH`), completed with the digest
//! (`PUT`) or cancelled (`DELETE`); a monolithic upload does all of it in one request, and a mount
//! links a blob another repository already has.
//!
//! Received bytes are hashed as they arrive and the hasher's state is saved with the session, so
//! completing never re-reads the content (unless the client names another digest algorithm) and
//! an upload continues after a restart. A chunk is answered once it is written and recorded: its
//! hashing may end a moment later, while the client sends the next chunk, so the state saved
//! may be a few blocks behind the bytes received (see `storage::staging`). The blob becomes
//! visible only in the transaction that completes the session, after its digest was verified
//! and its content moved into place.

use bytes::Bytes;
use futures_util::Stream;

use super::{Registry, RegistryError};
use wharf_core::digest::{Algorithm, ContentHasher, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::reference::RepositoryName;
use wharf_core::time::now_millis;
use wharf_core::upload_id::UploadId;
use wharf_gate::{WriteIntent, WritePermit};
use wharf_metadata::{BlobRecord, UploadCompletion, UploadSession};
use wharf_storage::{AppendError, Appended, HashResume, Hashing, UploadLock};

/// What a mount request led to.
#[derive(Debug)]
pub enum MountOutcome {
    /// The blob is now in the repository.
    Mounted(BlobRecord),
    /// The source repository does not have the blob: a regular upload session was opened.
    Opened(UploadSession),
}

/// The bytes a chunk claims to cover (`Content-Range: <start>-<end>`, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte.
    pub end: u64,
}

impl ChunkRange {
    fn len(self) -> u64 {
        self.end - self.start + 1
    }
}

impl Registry {
    /// Opens an upload session in `repository` for `client`, hashing what it receives with
    /// `algorithm` (the digest the client will complete it with: sha256 unless it said
    /// otherwise with `digest-algorithm`, so that completing never re-reads the content).
    pub async fn open_upload(
        &self,
        repository: &RepositoryName,
        client: &str,
        algorithm: Algorithm,
    ) -> Result<UploadSession, RegistryError> {
        let permit = self
            .admit(WriteIntent::OpenUpload { repository, client })
            .await?;
        self.open_chunked_session(&permit, repository, client, algorithm)
            .await
    }

    /// Opens a session that later requests continue, so it is remembered as in progress.
    async fn open_chunked_session(
        &self,
        permit: &WritePermit,
        repository: &RepositoryName,
        client: &str,
        algorithm: Algorithm,
    ) -> Result<UploadSession, RegistryError> {
        let session = self
            .open_session(permit, UploadId::generate(), repository, client, algorithm)
            .await?;
        self.remember(&session, None);
        Ok(session)
    }

    async fn open_session(
        &self,
        permit: &WritePermit,
        id: UploadId,
        repository: &RepositoryName,
        client: &str,
        algorithm: Algorithm,
    ) -> Result<UploadSession, RegistryError> {
        let now = now_millis();
        let session = UploadSession {
            id,
            repository: repository.clone(),
            client: client.to_owned(),
            received: 0,
            hash_algorithm: algorithm,
            hash_state: ContentHasher::new(algorithm).save(),
            hashed: 0,
            created_at: now,
            updated_at: now,
            storage_state: String::new(),
        };
        self.metadata.open_upload(permit, &session).await?;
        Ok(session)
    }

    /// Links blob `digest` from repository `from` into `repository`; if `from` does not have it,
    /// opens a regular upload session instead (as the OCI spec asks).
    pub async fn mount_or_open(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
        client: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let permit = self
            .admit(WriteIntent::OpenUpload { repository, client })
            .await?;
        if let Some(blob) = self
            .metadata
            .mount_blob(&permit, repository, digest, from, client)
            .await?
        {
            return Ok(MountOutcome::Mounted(blob));
        }
        // The session a failed mount opens is for the digest it named.
        let session = self
            .open_chunked_session(&permit, repository, client, digest.algorithm())
            .await?;
        Ok(MountOutcome::Opened(session))
    }

    /// A repository holding blob `digest` that `may_pull` allows, for a mount that names no
    /// source ("automatic content discovery"): the first in name order, so a repository the
    /// caller may not read is never used, and nothing says whether one has the blob.
    pub async fn find_mount_source(
        &self,
        digest: &Digest,
        may_pull: impl Fn(&RepositoryName) -> bool,
    ) -> Result<Option<RepositoryName>, RegistryError> {
        const PAGE: u32 = 100;
        let mut last: Option<RepositoryName> = None;
        loop {
            let page = wharf_metadata::Page {
                last: last.as_ref().map(RepositoryName::as_str),
                limit: PAGE,
            };
            let holders = self.metadata.repositories_with_blob(digest, page).await?;
            if let Some(source) = holders.iter().find(|r| may_pull(r)) {
                return Ok(Some(source.clone()));
            }
            if holders.len() < PAGE as usize {
                return Ok(None);
            }
            last = holders.last().cloned();
        }
    }

    /// Uploads a whole blob in one request and verifies it against `digest`.
    pub async fn upload_monolithic<E: std::fmt::Display>(
        &self,
        repository: &RepositoryName,
        client: &str,
        digest: &Digest,
        body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<BlobRecord, RegistryError> {
        let id = UploadId::generate();
        let lock = self
            .blobs
            .lock_upload(&id)
            .ok_or(RegistryError::UploadBusy)?;
        let permit = self
            .admit(WriteIntent::OpenUpload { repository, client })
            .await?;
        // Hash with the digest's own algorithm: it is known up front.
        let session = self
            .open_session(&permit, id, repository, client, digest.algorithm())
            .await?;
        // Blob storage that writes the upload at its final key as it arrives (S3) verifies it
        // before completing it there; then only the metadata is committed.
        let max_size = self.limits.max_blob_size;
        if self.blobs.is_shared() {
            let (key, size) = self
                .blobs
                .put_verified_blob(&permit, &lock, digest, body, max_size)
                .await
                .map_err(|error| append_error(&session, error))?;
            return self
                .commit_placement(&permit, &session, digest, size, key)
                .await;
        }
        let hash = HashResume::new(ContentHasher::new(digest.algorithm()), 0, None);
        let appended = self.append(&permit, &lock, &session, body, hash).await?;
        self.commit(&permit, &lock, &session, digest, appended)
            .await
    }

    /// The open upload session `id` of `repository`.
    pub async fn upload_status(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadSession, RegistryError> {
        match self.metadata.upload(id).await? {
            Some(session) if session.repository == *repository => Ok(session),
            _ => Err(RegistryError::BlobUploadUnknown),
        }
    }

    /// Appends a chunk to upload `id` and returns the session after it.
    pub async fn append_chunk<E: std::fmt::Display>(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        range: Option<ChunkRange>,
        body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<UploadSession, RegistryError> {
        let (lock, session, running, permit) = self.continue_session(repository, id, range).await?;
        let hash = hash_resume(&session, running)?;
        let appended = self.append(&permit, &lock, &session, body, hash).await?;
        check_declared_length(range, appended.bytes)?;
        let received = session.received + appended.bytes;
        // Recorded without waiting for the hashing to end: the client's next chunk need not
        // wait for it, and the next chunk's hasher continues from this one.
        let progress = appended.hashing.progress();
        let (advanced, storage_state) = match appended.storage_state {
            None => {
                let advanced = self
                    .metadata
                    .record_upload_progress(
                        &permit,
                        id,
                        session.received,
                        received,
                        progress.hashed,
                        &progress.state,
                    )
                    .await;
                (advanced, session.storage_state.clone())
            }
            Some(state) => {
                let advanced = self
                    .metadata
                    .record_upload_progress_with_storage(
                        &permit,
                        id,
                        session.received,
                        received,
                        progress.hashed,
                        &progress.state,
                        &state,
                    )
                    .await;
                // What the state not recorded names is garbage now, whichever it was.
                let (replaced, recorded) = match &advanced {
                    Ok(true) => (&session.storage_state, &state),
                    _ => (&state, &session.storage_state),
                };
                self.blobs
                    .discard_replaced_staging(id, replaced, recorded)
                    .await;
                (advanced, state)
            }
        };
        if !advanced? {
            return Err(RegistryError::BlobUploadUnknown);
        }
        let session = UploadSession {
            received,
            hashed: progress.hashed,
            hash_state: progress.state,
            updated_at: now_millis(),
            storage_state,
            ..session
        };
        self.remember(&session, Some(appended.hashing));
        Ok(session)
    }

    /// Completes upload `id` with an optional final chunk, verifying the content against
    /// `digest`. On a mismatch nothing is stored and the session stays as it was.
    pub async fn complete_upload<E: std::fmt::Display>(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
    ) -> Result<BlobRecord, RegistryError> {
        let (lock, session, running, permit) = self.continue_session(repository, id, range).await?;
        let hash = hash_resume(&session, running)?;
        let appended = self.append(&permit, &lock, &session, body, hash).await?;
        check_declared_length(range, appended.bytes)?;
        self.commit(&permit, &lock, &session, digest, appended)
            .await
    }

    /// Cancels upload `id`, deleting what it received.
    pub async fn cancel_upload(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
    ) -> Result<(), RegistryError> {
        let (_lock, session, _running, permit) =
            self.continue_session(repository, id, None).await?;
        self.metadata.delete_upload(&permit, &session.id).await?;
        self.discard_after_commit(&permit, &session.id, &session.storage_state)
            .await;
        Ok(())
    }

    /// Takes the upload's lock and its session (another request may have just advanced it) and
    /// admits the write. The session comes from the cache of sessions in progress if it is
    /// there, with the hashing of its last chunk, and is out of the cache until this request
    /// puts its next state back.
    async fn continue_session(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        range: Option<ChunkRange>,
    ) -> Result<(UploadLock, UploadSession, Option<Hashing>, WritePermit), RegistryError> {
        let lock = self
            .blobs
            .lock_upload(id)
            .ok_or(RegistryError::UploadBusy)?;
        let (session, running) = match self.sessions.take(id) {
            Some(cached) if cached.session.repository == *repository => {
                (cached.session, cached.hashing)
            }
            _ => (self.upload_status(repository, id).await?, None),
        };
        if let Some(range) = range
            && range.start != session.received
        {
            return Err(RegistryError::UploadOutOfOrder {
                repository: session.repository,
                id: session.id,
                received: session.received,
            });
        }
        let permit = self
            .admit(WriteIntent::ContinueUpload {
                repository: &session.repository,
                client: &session.client,
            })
            .await?;
        if super::upload_claims::claim(&self.metadata, &permit, &lock, id).await? {
            // Read again under the claim: another replica may have written a chunk between
            // the first read and the claim.
            let current = self.upload_status(repository, id).await?;
            if current.received != session.received {
                return Err(RegistryError::UploadOutOfOrder {
                    repository: current.repository,
                    id: current.id,
                    received: current.received,
                });
            }
            return Ok((lock, current, None, permit));
        }
        Ok((lock, session, running, permit))
    }

    async fn append<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        session: &UploadSession,
        body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin,
        hash: HashResume,
    ) -> Result<Appended, RegistryError> {
        self.blobs
            .append_upload(
                permit,
                lock,
                session.received,
                &session.storage_state,
                body,
                hash,
                self.limits.max_blob_size,
            )
            .await
            .map_err(|error| append_error(session, error))
    }

    /// Verifies the session's content against `digest` and commits it as a blob.
    async fn commit(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        session: &UploadSession,
        digest: &Digest,
        appended: Appended,
    ) -> Result<BlobRecord, RegistryError> {
        let size = session.received + appended.bytes;
        let storage_state = appended
            .storage_state
            .as_deref()
            .unwrap_or(&session.storage_state);
        let hasher = appended
            .hashing
            .wait()
            .await
            .map_err(|error| append_error(session, error))?;
        let actual = if hasher.algorithm() == digest.algorithm() {
            hasher.finish()
        } else {
            self.blobs
                .digest_of_upload(lock, digest.algorithm(), size, hasher.algorithm())
                .await
                .map_err(|e| match e {
                    e @ wharf_storage::StorageError::OtherAlgorithm { .. } => {
                        RegistryError::DigestInvalid(e.to_string())
                    }
                    other => other.into(),
                })?
        };
        if actual != *digest {
            return Err(RegistryError::DigestInvalid(format!(
                "the uploaded content has digest {actual}, not {digest}"
            )));
        }
        let id = &session.id;
        let expected = session.received;
        let completion = self
            .metadata
            .complete_upload(permit, id, expected, digest, size, None)
            .await?;
        let completion = match completion {
            UploadCompletion::ContentNeeded => {
                let key = self
                    .blobs
                    .publish_upload(permit, lock, digest, size, storage_state)
                    .await?;
                return self
                    .commit_placement(permit, session, digest, size, key)
                    .await;
            }
            committed => {
                self.discard_after_commit(permit, id, storage_state).await;
                committed
            }
        };
        completed_blob(completion)
    }

    /// Commits `key`, a new placement of the session's verified content, as the blob; deletes
    /// it again if it is not what the blob now uses.
    async fn commit_placement(
        &self,
        permit: &WritePermit,
        session: &UploadSession,
        digest: &Digest,
        size: u64,
        key: StorageKey,
    ) -> Result<BlobRecord, RegistryError> {
        let completion = self
            .metadata
            .complete_upload(
                permit,
                &session.id,
                session.received,
                digest,
                size,
                Some(&key),
            )
            .await;
        // Our placement is redundant unless it was committed as the blob's content.
        let ours_in_use = matches!(
            &completion,
            Ok(UploadCompletion::Committed {
                reused_existing: false,
                ..
            })
        );
        if !ours_in_use && let Err(e) = self.blobs.delete(permit, &key).await {
            tracing::warn!(key = key.as_str(), error = %e, "could not delete a redundant blob copy; gc will");
        }
        completed_blob(completion?)
    }
}

fn completed_blob(completion: UploadCompletion) -> Result<BlobRecord, RegistryError> {
    {
        match completion {
            UploadCompletion::Committed { blob, .. } => Ok(blob),
            UploadCompletion::SessionGone => Err(RegistryError::BlobUploadUnknown),
            UploadCompletion::ContentNeeded => Err(RegistryError::internal(
                "the metadata store asked again for content it was given",
            )),
        }
    }
}

impl Registry {
    /// Keeps a session's committed state for its next request, unless blob storage is shared
    /// with other processes (S3): another replica may move the session on, so its next request
    /// reads the database.
    fn remember(&self, session: &UploadSession, hashing: Option<Hashing>) {
        // Any replica may take the session's next request when the blobs or the metadata are
        // shared: each request reads the database then.
        if !self.blobs.is_shared() && !self.metadata.shared_by_replicas() {
            self.sessions.put(session.clone(), hashing);
        }
    }

    /// Deletes an upload's staged bytes after its fate was committed: a failure (or a cancelled
    /// permit) leaves them to the garbage collector rather than failing what already succeeded.
    async fn discard_after_commit(&self, permit: &WritePermit, id: &UploadId, storage_state: &str) {
        if let Err(error) = self.blobs.discard_upload(permit, id, storage_state).await {
            tracing::warn!(upload = %id, %error, "staged upload data left for the garbage collector");
        }
    }
}

/// Where the hashing of a session's next chunk starts: the session's committed state, or the
/// previous chunk's hashing if it is `running` on.
fn hash_resume(
    session: &UploadSession,
    running: Option<Hashing>,
) -> Result<HashResume, RegistryError> {
    let hasher = ContentHasher::restore(session.hash_algorithm, &session.hash_state)
        .map_err(RegistryError::internal)?;
    Ok(HashResume::new(hasher, session.hashed, running))
}

fn append_error(session: &UploadSession, error: AppendError) -> RegistryError {
    match error {
        AppendError::Cancelled => wharf_gate::WriteRefused::Cancelled.into(),
        AppendError::Body(why) => {
            RegistryError::BlobUploadInvalid(format!("the request body could not be read: {why}"))
        }
        AppendError::TooLarge { limit } => {
            RegistryError::TooLarge(format!("the blob exceeds the size limit of {limit} bytes"))
        }
        AppendError::Lost => {
            tracing::error!(upload = %session.id, "staged upload data is missing");
            RegistryError::BlobUploadUnknown
        }
        AppendError::DigestMismatch { actual, expected } => RegistryError::DigestInvalid(format!(
            "the uploaded content has digest {actual}, not {expected}"
        )),
        error @ (AppendError::HashAhead { .. }
        | AppendError::Io(_)
        | AppendError::ObjectStore(_)) => RegistryError::store_failed(error),
    }
}

fn check_declared_length(range: Option<ChunkRange>, appended: u64) -> Result<(), RegistryError> {
    match range {
        Some(range) if range.len() != appended => Err(RegistryError::SizeInvalid(format!(
            "Content-Range declares {} bytes but the body had {appended}",
            range.len()
        ))),
        _ => Ok(()),
    }
}
