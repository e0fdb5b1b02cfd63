//! Uploads into the bucket: every upload is an S3 multipart upload at its blob's final key,
//! with parts of one size (some stores, R2 among them, want uniform parts), so that completing
//! it copies nothing.
//!
//! A monolithic upload (its digest known up front) streams into parts as it arrives and is
//! completed once the digest is verified; one smaller than a part is a single `PUT`, after it
//! was verified. Nothing of it is in the bucket under its key before it is verified.
//!
//! A chunked upload spans requests and replicas, so its state is in the metadata database (the
//! session's `storage_state`, an [`UploadState`]): the multipart upload's key and id, its parts'
//! ETags, and the staged object holding the bytes received past the last full part. Each
//! request reads the staged bytes back, appends its body, uploads every part that fills and
//! stages what is left in a new object (named at random, so that a request that loses the
//! race to record its progress overwrites nothing the winner recorded); the object it replaces
//! is deleted once the new state is recorded. The multipart upload is created when its first
//! part is full: a small blob pushed in chunks is one `PUT` at completion. A request hashes
//! every byte it receives before it answers (parts cannot be read back to hash later).
//!
//! Nothing in memory beyond one part per request: the body is gathered into a part, which is
//! uploaded (and hashed meanwhile) before more of the body is read.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::S3Blobs;
use crate::staging::{AppendError, HashResume, Hashing};
use crate::{StorageError, UploadLock};
use wharf_core::digest::{ContentHasher, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::upload_id::UploadId;
use wharf_gate::WritePermit;

/// What the metadata database keeps of an upload's bytes in the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct UploadState {
    /// The multipart upload, once a part was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<Multipart>,
    /// The bytes past the last part, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged: Option<Staged>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Multipart {
    /// The blob's key, where the upload completes.
    key: String,
    /// S3's id of the multipart upload.
    id: String,
    /// The size of every part, as it was when the upload began (the configured size may
    /// change before it ends).
    part_size: u64,
    /// The ETags of the parts uploaded, in order.
    parts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Staged {
    /// The object, relative to the prefix (under `uploads/<upload id>/`).
    object: String,
    /// Its length.
    len: u64,
}

impl UploadState {
    /// Reads a session's state back, refusing one that names objects outside the upload's own.
    fn parse(text: &str, upload: &UploadId) -> Result<Self, StorageError> {
        if text.is_empty() {
            return Ok(UploadState::default());
        }
        let damaged = |why: &str| {
            StorageError::Io(std::io::Error::other(format!(
                "upload {upload}'s storage state is damaged: {why}"
            )))
        };
        let state: UploadState = serde_json::from_str(text).map_err(|e| damaged(&e.to_string()))?;
        if let Some(multipart) = &state.multipart {
            let key = StorageKey::from_stored(multipart.key.clone()).map_err(|e| damaged(&e))?;
            if key.upload_id().as_ref() != Some(upload) {
                return Err(damaged("its multipart upload is another upload's"));
            }
        }
        if let Some(staged) = &state.staged
            && !staged.object.starts_with(&staged_folder(upload))
        {
            return Err(damaged("its staged object is another upload's"));
        }
        Ok(state)
    }

    fn encode(&self) -> String {
        // Plain data: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The bytes the state holds.
    fn received(&self) -> u64 {
        let parts = self
            .multipart
            .as_ref()
            .map_or(0, |m| m.part_size * m.parts.len() as u64);
        parts + self.staged.as_ref().map_or(0, |s| s.len)
    }
}

/// Where an upload's staged objects are.
fn staged_folder(upload: &UploadId) -> String {
    format!("uploads/{upload}/")
}

/// How an upload's body was taken in: the bytes appended, the hashing of all of them, and the
/// upload's storage state if it changed.
pub(crate) struct S3Appended {
    pub(crate) appended: u64,
    pub(crate) hashing: Hashing,
    pub(crate) storage_state: Option<String>,
}

/// Gathers bytes into parts and uploads each as it fills, hashing the bytes of this request
/// meanwhile.
struct PartWriter<'a> {
    s3: &'a S3Blobs,
    /// Where the multipart upload completes (created when the first part is full).
    key: String,
    multipart: Option<Multipart>,
    part_size: u64,
    /// The part being filled.
    part: Vec<Bytes>,
    part_len: u64,
    /// Bytes of this request not hashed yet (shared with `part`, not copied).
    unhashed: Vec<Bytes>,
    hasher: ContentHasher,
}

impl<'a> PartWriter<'a> {
    fn new(
        s3: &'a S3Blobs,
        key: String,
        multipart: Option<Multipart>,
        hasher: ContentHasher,
    ) -> Self {
        let part_size = multipart.as_ref().map_or(s3.part_size, |m| m.part_size);
        PartWriter {
            s3,
            key,
            multipart,
            part_size,
            part: Vec::new(),
            part_len: 0,
            unhashed: Vec::new(),
            hasher,
        }
    }

    async fn push(&mut self, mut bytes: Bytes, hash: bool) -> Result<(), AppendError> {
        if hash {
            self.unhashed.push(bytes.clone());
        }
        while !bytes.is_empty() {
            let room = usize::try_from(self.part_size - self.part_len).unwrap_or(usize::MAX);
            let taken = bytes.split_to(room.min(bytes.len()));
            self.part_len += taken.len() as u64;
            self.part.push(taken);
            if self.part_len == self.part_size {
                self.upload_part().await?;
            }
        }
        Ok(())
    }

    /// Uploads the part gathered so far, creating the multipart upload first if there is
    /// none, while the bytes not hashed yet are hashed on a blocking thread.
    async fn upload_part(&mut self) -> Result<(), AppendError> {
        let path = self.s3.path(&self.key);
        if self.multipart.is_none() {
            let id = self.s3.store.create_multipart(&path).await?;
            self.multipart = Some(Multipart {
                key: self.key.clone(),
                id,
                part_size: self.part_size,
                parts: Vec::new(),
            });
        }
        let Some((index, id)) = self
            .multipart
            .as_ref()
            .map(|m| (m.parts.len(), m.id.clone()))
        else {
            return Err(std::io::Error::other("no multipart upload").into());
        };
        let payload = self.take_part();
        let unhashed = std::mem::take(&mut self.unhashed);
        let (hasher, part) = tokio::join!(
            hash_on_blocking_thread(self.hasher.clone(), unhashed),
            self.s3.store.put_part(&path, &id, index, payload)
        );
        self.hasher = hasher?;
        let part = part?;
        if let Some(multipart) = self.multipart.as_mut() {
            multipart.parts.push(part.content_id);
        }
        Ok(())
    }

    /// Hashes the bytes of this request received so far.
    async fn hash_received(&mut self) -> Result<(), AppendError> {
        let unhashed = std::mem::take(&mut self.unhashed);
        self.hasher = hash_on_blocking_thread(self.hasher.clone(), unhashed).await?;
        Ok(())
    }

    /// The part gathered so far, taken out as a payload.
    fn take_part(&mut self) -> PutPayload {
        self.part_len = 0;
        std::mem::take(&mut self.part).into_iter().collect()
    }

    /// Uploads what is gathered as the last part (if anything is) and completes the upload.
    async fn complete(mut self, permit: Option<&WritePermit>) -> Result<(), AppendError> {
        if self.part_len > 0 || self.multipart.as_ref().is_some_and(|m| m.parts.is_empty()) {
            self.upload_part().await?;
        }
        let Some(multipart) = self.multipart else {
            return Err(std::io::Error::other("no multipart upload").into());
        };
        let parts = multipart
            .parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        check(permit)?;
        self.s3
            .store
            .complete_multipart(&self.s3.path(&multipart.key), &multipart.id, parts)
            .await?;
        Ok(())
    }

    /// Aborts the multipart upload, if one was created (a failed or refused upload): its parts
    /// would otherwise stay in the bucket, billed and invisible.
    async fn abort(&self) {
        if let Some(multipart) = &self.multipart {
            abort(self.s3, multipart).await;
        }
    }
}

/// Whether the write may still become visible: always, without a permit.
fn check(permit: Option<&WritePermit>) -> Result<(), AppendError> {
    match permit {
        Some(permit) => permit.check().map_err(|_| AppendError::Cancelled),
        None => Ok(()),
    }
}

/// `hasher` after `chunks`, hashed off the async workers.
async fn hash_on_blocking_thread(
    mut hasher: ContentHasher,
    chunks: Vec<Bytes>,
) -> Result<ContentHasher, AppendError> {
    if chunks.is_empty() {
        return Ok(hasher);
    }
    Ok(tokio::task::spawn_blocking(move || {
        for chunk in &chunks {
            hasher.update(chunk);
        }
        hasher
    })
    .await
    .map_err(std::io::Error::other)?)
}

async fn abort(s3: &S3Blobs, multipart: &Multipart) {
    let path = s3.path(&multipart.key);
    match s3.store.abort_multipart(&path, &multipart.id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => {
            tracing::warn!(key = %multipart.key, error = %super::one_line(&error),
                "could not abort a multipart upload; the garbage collector's sweep of open multipart uploads will")
        }
    }
}

/// Reads a request body into `writer`, stopping when the permit is cancelled, the body fails
/// or the upload would exceed `max_size`. Returns how many bytes it read. Bytes `staged`
/// earlier go into the part first, read when the body's first bytes arrive (so that an empty
/// body reads nothing).
async fn receive<E: std::fmt::Display>(
    writer: &mut PartWriter<'_>,
    permit: Option<&WritePermit>,
    offset: u64,
    mut staged: Option<&Staged>,
    mut body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
    max_size: Option<u64>,
) -> Result<u64, AppendError> {
    let mut appended = 0u64;
    loop {
        let cancelled = async {
            match permit {
                Some(permit) => permit.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let chunk = tokio::select! {
            biased;
            () = cancelled => return Err(AppendError::Cancelled),
            chunk = body.next() => chunk,
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| AppendError::Body(e.to_string()))?;
        appended += chunk.len() as u64;
        if let Some(limit) = max_size
            && offset + appended > limit
        {
            return Err(AppendError::TooLarge { limit });
        }
        if let Some(staged) = staged.take() {
            let bytes = writer.s3.read_staged(staged).await?;
            writer.push(bytes, false).await?;
        }
        writer.push(chunk, true).await?;
    }
    writer.hash_received().await?;
    Ok(appended)
}

impl S3Blobs {
    /// Uploads a whole blob whose digest is known, verifying it before it is completed; returns
    /// its key and size. A failure leaves nothing at the key (an upload cut off by a killed
    /// process leaves a multipart upload, which the sweep of leftovers aborts).
    pub(crate) async fn put_blob<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        digest: &Digest,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        max_size: Option<u64>,
    ) -> Result<(StorageKey, u64), AppendError> {
        let key = StorageKey::for_upload(digest, lock.id());
        let size = self
            .put_verified(permit, &key, digest, body, max_size)
            .await?;
        Ok((key, size))
    }

    /// Uploads `body` to `key`, verifying it has `digest` before it is completed (or put, when
    /// smaller than a part); returns its size. A failure leaves nothing at the key.
    pub(crate) async fn put_verified<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        key: &StorageKey,
        digest: &Digest,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        max_size: Option<u64>,
    ) -> Result<u64, AppendError> {
        self.put_verified_at(Some(permit), key.as_str(), digest, body, max_size)
            .await
    }

    /// As [`S3Blobs::put_verified`], at any key under the prefix, with a permit where the
    /// bucket is a registry's (a backup's bucket is not: nothing there is a registry write).
    pub(crate) async fn put_verified_at<E: std::fmt::Display>(
        &self,
        permit: Option<&WritePermit>,
        key: &str,
        digest: &Digest,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        max_size: Option<u64>,
    ) -> Result<u64, AppendError> {
        let hasher = ContentHasher::new(digest.algorithm());
        let mut writer = PartWriter::new(self, key.to_owned(), None, hasher);
        let outcome = async {
            let size = receive(&mut writer, permit, 0, None, body, max_size).await?;
            let actual = writer.hasher.clone().finish();
            if actual != *digest {
                return Err(AppendError::DigestMismatch {
                    actual,
                    expected: digest.clone(),
                });
            }
            Ok(size)
        }
        .await;
        let size = match outcome {
            Ok(size) => size,
            Err(error) => {
                writer.abort().await;
                return Err(error);
            }
        };
        if writer.multipart.is_none() {
            // Smaller than a part: one PUT, of bytes already verified.
            let payload = writer.take_part();
            check(permit)?;
            self.store.put(&self.path(key), payload).await?;
        } else {
            let multipart = writer.multipart.clone();
            if let Err(error) = writer.complete(permit).await {
                if let Some(multipart) = &multipart {
                    abort(self, multipart).await;
                }
                return Err(error);
            }
        }
        Ok(size)
    }

    /// Appends a request body to a chunked upload whose first `offset` bytes are recorded in
    /// `storage_state`, hashing it on from `hash`. Nothing is recorded: the caller records the
    /// new state (and then calls [`S3Blobs::discard_replaced`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn append<E: std::fmt::Display>(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        offset: u64,
        storage_state: &str,
        body: impl futures_util::Stream<Item = Result<Bytes, E>> + Send + Unpin,
        hash: HashResume,
        max_size: Option<u64>,
    ) -> Result<S3Appended, AppendError> {
        let upload = lock.id();
        let state = UploadState::parse(storage_state, upload).map_err(storage_error)?;
        if state.received() != offset {
            tracing::error!(%upload, offset, in_bucket = state.received(),
                "the upload's storage state does not hold its recorded length");
            return Err(AppendError::Lost);
        }
        let hasher = hash.resume_without_rereading(offset).await?;
        let key = match &state.multipart {
            Some(multipart) => multipart.key.clone(),
            None => StorageKey::for_chunked_upload(hasher.algorithm(), upload)
                .as_str()
                .to_owned(),
        };
        let mut writer = PartWriter::new(self, key, state.multipart.clone(), hasher);
        let appended = receive(
            &mut writer,
            Some(permit),
            offset,
            state.staged.as_ref(),
            body,
            max_size,
        )
        .await?;
        if appended == 0 {
            // An empty body changes nothing (and read nothing of the staged bytes).
            return Ok(S3Appended {
                appended,
                hashing: Hashing::finished(writer.hasher, offset),
                storage_state: None,
            });
        }
        let staged = if writer.part_len == 0 {
            None
        } else {
            let object = format!("{}{}", staged_folder(upload), UploadId::generate());
            let len = writer.part_len;
            let payload = writer.take_part();
            permit.check().map_err(|_| AppendError::Cancelled)?;
            self.store.put(&self.path(&object), payload).await?;
            Some(Staged { object, len })
        };
        let new_state = UploadState {
            multipart: writer.multipart,
            staged,
        };
        Ok(S3Appended {
            appended,
            hashing: Hashing::finished(writer.hasher, offset + appended),
            storage_state: Some(new_state.encode()),
        })
    }

    async fn read_staged(&self, staged: &Staged) -> Result<Bytes, AppendError> {
        let bytes = match self.store.get(&self.path(&staged.object)).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(AppendError::Lost),
            Err(e) => return Err(e.into()),
        };
        if bytes.len() as u64 != staged.len {
            return Err(AppendError::Lost);
        }
        Ok(bytes)
    }

    /// Deletes the staged object `replaced` named that `current` (the state just recorded)
    /// does not; a failure only leaves it to upload expiry.
    pub(crate) async fn discard_replaced(&self, upload: &UploadId, replaced: &str, current: &str) {
        let (Ok(replaced), Ok(current)) = (
            UploadState::parse(replaced, upload),
            UploadState::parse(current, upload),
        ) else {
            return;
        };
        if let Some(staged) = replaced.staged
            && current.staged.as_ref() != Some(&staged)
            && let Err(error) = self.delete(&staged.object).await
        {
            tracing::warn!(%upload, %error, "a replaced staged object is left for upload expiry");
        }
    }

    /// Completes a chunked upload of `size` bytes, verified to have `digest`: the staged bytes
    /// become the last part and the multipart upload is completed at its key, or, if no part
    /// ever filled, they are put at a key of their own. Returns the blob's key.
    pub(crate) async fn publish(
        &self,
        permit: &WritePermit,
        lock: &UploadLock,
        digest: &Digest,
        size: u64,
        storage_state: &str,
    ) -> Result<StorageKey, StorageError> {
        let upload = lock.id();
        let state = UploadState::parse(storage_state, upload)?;
        if state.received() != size {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "upload {upload} holds {} bytes in the bucket, not {size}",
                state.received()
            ))));
        }
        let staged = match &state.staged {
            Some(staged) => self.read_staged(staged).await.map_err(append_to_storage)?,
            None => Bytes::new(),
        };
        let key = match &state.multipart {
            None => {
                let key = StorageKey::for_upload(digest, upload);
                permit.check()?;
                self.store
                    .put(&self.path(key.as_str()), PutPayload::from(staged))
                    .await?;
                key
            }
            Some(multipart) => {
                let key = StorageKey::from_stored(multipart.key.clone())
                    .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
                let mut writer = PartWriter::new(
                    self,
                    multipart.key.clone(),
                    Some(multipart.clone()),
                    ContentHasher::new(digest.algorithm()),
                );
                writer
                    .push(staged, false)
                    .await
                    .map_err(append_to_storage)?;
                writer
                    .complete(Some(permit))
                    .await
                    .map_err(append_to_storage)?;
                key
            }
        };
        if let Some(staged) = &state.staged
            && let Err(error) = self.delete(&staged.object).await
        {
            tracing::warn!(%upload, %error, "a staged object is left for upload expiry");
        }
        Ok(key)
    }

    /// Deletes everything of an upload in the bucket: its multipart upload (from its state,
    /// if it has one) and every object in its staging folder.
    pub(crate) async fn discard(
        &self,
        upload: &UploadId,
        storage_state: &str,
    ) -> Result<(), StorageError> {
        // A damaged state still leaves the staging folder to clean.
        if let Ok(UploadState {
            multipart: Some(multipart),
            ..
        }) = UploadState::parse(storage_state, upload)
        {
            abort(self, &multipart).await;
        }
        let folder = self.path(&staged_folder(upload));
        let mut objects = self.store.list(Some(&folder));
        while let Some(object) = objects.next().await {
            let object = object?;
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The uploads with staged objects, and when each was last written.
    pub(crate) async fn staged_uploads(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        let mut latest = std::collections::BTreeMap::<UploadId, i64>::new();
        let mut objects = self.store.list(Some(&self.path("uploads")));
        while let Some(object) = objects.next().await {
            let object = object?;
            // Anything not named like an upload's staging is not ours to judge; leave it.
            let Some(id) = self
                .relative(&object.location)
                .and_then(|r| r.strip_prefix("uploads/"))
                .and_then(|r| r.split('/').next())
                .and_then(|id| id.parse().ok())
            else {
                continue;
            };
            let modified = object.last_modified.timestamp_millis();
            let entry = latest.entry(id).or_insert(modified);
            *entry = (*entry).max(modified);
        }
        Ok(latest.into_iter().collect())
    }
}

fn storage_error(error: StorageError) -> AppendError {
    match error {
        StorageError::ObjectStore(e) => AppendError::ObjectStore(e),
        StorageError::Io(e) => AppendError::Io(e),
        StorageError::Refused(_) => AppendError::Cancelled,
        other => AppendError::Io(std::io::Error::other(other.to_string())),
    }
}

pub(super) fn append_to_storage(error: AppendError) -> StorageError {
    match error {
        AppendError::ObjectStore(e) => StorageError::ObjectStore(e),
        AppendError::Io(e) => StorageError::Io(e),
        AppendError::Cancelled => StorageError::Refused(wharf_gate::WriteRefused::Cancelled),
        other => StorageError::Io(std::io::Error::other(other.to_string())),
    }
}
