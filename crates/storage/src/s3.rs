//! Blobs in an S3-compatible bucket, through `object_store`'s S3 store.
//!
//! Under the configured prefix the bucket holds the same layout as the file system's folder:
//!
//! ```text
//! blobs/<algorithm>/<xx>/<hex>/<upload id>        a blob whose digest was known when written
//! blobs/<algorithm>/upload/<xx>/<upload id>       a chunked upload's blob (see below)
//! uploads/<upload id>/<random>                    bytes of an open upload short of a part
//! ```
//!
//! An upload is written at its final key as it arrives, as an S3 multipart upload, so that
//! completing it copies nothing. The key of a multipart upload is fixed when it is created,
//! and a chunked upload's digest is only named when it completes: its blob's key is therefore
//! made from the upload's id rather than the digest (`upload/`). Both kinds end in the upload's
//! id, which makes every placement unique (as the garbage collector needs) and lets a
//! multipart upload left open by a killed process be matched with its session.
//!
//! How uploads use the bucket is in [`upload`]; what the startup check does in
//! [`S3Blobs::connect`].

mod failure;
mod folder;
mod leftovers;
mod upload;

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

pub use failure::is_storage_unavailable;
pub use folder::S3Folder;
pub use leftovers::OpenMultipartUpload;

use super::locks::UploadLocks;
use super::{BlobStream, StorageError, StoredObject};
use wharf_core::placement::StorageKey;
use wharf_core::upload_id::UploadId;

/// The smallest part S3 accepts (every part of a multipart upload but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Where blobs are kept in S3, and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The folder inside the bucket (without slashes at either end); empty for the bucket's
    /// top.
    pub prefix: String,
    /// The bucket's region.
    pub region: String,
    /// The S3 API's URL, for stores other than AWS (MinIO, Ceph, R2); `None` for AWS.
    pub endpoint: Option<String>,
    /// Address the bucket as a path of the endpoint rather than as its host name.
    pub path_style: bool,
    /// Allow an `http://` endpoint.
    pub allow_http: bool,
    /// Keys given in the configuration; `None` for the environment's (`AWS_ACCESS_KEY_ID` and
    /// the rest, web identity, instance metadata), as `object_store` finds them.
    pub credentials: Option<S3Credentials>,
    /// The size of every part of a multipart upload but the last.
    pub part_size: u64,
    /// Answer blob downloads with a redirect to a presigned URL valid this long, instead of
    /// streaming them.
    pub redirect: Option<Duration>,
}

/// An access key. Its `Debug` shows neither half, so that no log line can hold it.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("S3Credentials { <redacted> }")
    }
}

/// The bucket, the store that reaches it, and the locks of the uploads this process writes.
pub(crate) struct S3Blobs {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    part_size: u64,
    redirect: Option<Duration>,
    locks: UploadLocks,
}

impl S3Blobs {
    /// Builds the store and checks, before anything else uses it, that Wharf can list and
    /// write under its prefix: a wrong bucket, key or endpoint stops the start with one line
    /// naming the bucket and what failed, instead of failing the first push.
    pub(crate) async fn connect(settings: &S3Settings) -> Result<Self, StorageError> {
        let s3 = Self::build(settings)?;
        s3.check().await?;
        Ok(s3)
    }

    fn build(settings: &S3Settings) -> Result<Self, StorageError> {
        let where_ = format!("s3://{}/{}", settings.bucket, settings.prefix);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.part_size) {
            return Err(StorageError::Unusable(format!(
                "{where_}: the part size must be between 5MiB and 5GiB"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http)
            .with_virtual_hosted_style_request(!settings.path_style)
            // No overall timeout: a pull of a large blob streams for as long as it takes. A
            // connection that stops sending fails after the read timeout instead.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_read_timeout(Duration::from_secs(60)),
            )
            // What object_store retries, and why the rest is a 503, is in `failure`.
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = &settings.credentials {
            builder = builder
                .with_access_key_id(&credentials.access_key_id)
                .with_secret_access_key(&credentials.secret_access_key);
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::Unusable(format!("{where_}: {}", one_line(&e))))?;
        Ok(S3Blobs {
            store,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.trim_matches('/').to_owned(),
            part_size: settings.part_size,
            redirect: settings.redirect,
            locks: UploadLocks::default(),
        })
    }

    /// Lists one object under the prefix, then writes and deletes a probe object there.
    async fn check(&self) -> Result<(), StorageError> {
        let unusable = |what: &str, e: &object_store::Error| {
            StorageError::Unusable(format!(
                "S3 bucket {:?} (prefix {:?}): cannot {what}: {}",
                self.bucket,
                self.prefix,
                failure::describe(e)
            ))
        };
        let prefix = self.path("blobs");
        if let Some(Err(e)) = self.store.list(Some(&prefix)).next().await {
            return Err(unusable("list objects", &e));
        }
        let probe = self.path(&format!("wharf-startup-check/{}", UploadId::generate()));
        self.store
            .put(
                &probe,
                PutPayload::from_static(b"wharf checks it can write here"),
            )
            .await
            .map_err(|e| unusable("write an object", &e))?;
        self.store
            .delete(&probe)
            .await
            .map_err(|e| unusable("delete an object", &e))?;
        Ok(())
    }

    /// The object `key` (relative to the prefix) in the bucket.
    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The key of `path` relative to the prefix, if it is under it.
    fn relative<'p>(&self, path: &'p ObjectPath) -> Option<&'p str> {
        let path = path.as_ref();
        if self.prefix.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    pub(crate) fn part_size(&self) -> u64 {
        self.part_size
    }

    pub(crate) fn lock_upload(&self, id: &UploadId) -> Option<super::UploadLock> {
        self.locks.lock(id)
    }

    pub(crate) async fn read(
        &self,
        key: &StorageKey,
        range: Range<u64>,
    ) -> Result<BlobStream, StorageError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key.as_str()), options)
            .await?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    pub(crate) async fn size(&self, key: &StorageKey) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.path(key.as_str())).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every committed object under `blobs/`.
    pub(crate) fn list_objects(
        self: &std::sync::Arc<Self>,
    ) -> BoxStream<'static, Result<StoredObject, StorageError>> {
        let s3 = std::sync::Arc::clone(self);
        self.store
            .list(Some(&self.path("blobs")))
            .map(move |meta| {
                let meta = meta?;
                let relative = s3.relative(&meta.location).unwrap_or_default();
                let key = StorageKey::from_stored(relative.to_owned())
                    .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
                Ok(StoredObject {
                    key,
                    modified_millis: meta.last_modified.timestamp_millis(),
                })
            })
            .boxed()
    }

    /// A presigned URL that downloads `key` for a while, if downloads are redirected.
    pub(crate) async fn download_url(
        &self,
        key: &StorageKey,
    ) -> Result<Option<String>, StorageError> {
        let Some(valid_for) = self.redirect else {
            return Ok(None);
        };
        let url = self
            .store
            .signed_url(http::Method::GET, &self.path(key.as_str()), valid_for)
            .await?;
        Ok(Some(url.to_string()))
    }
}

/// An error and its sources on one line, for a message that must fit a log line: S3's error
/// bodies come with line breaks.
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
