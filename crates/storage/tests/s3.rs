//! Blob storage on real S3-compatible servers that `scripts/s3` starts: `s3s-fs` with access
//! keys, so that every request's signature is checked, and moto's server, a second
//! implementation that also lists multipart uploads (s3s-fs 0.14 does not: where a test
//! looks at the open multipart uploads, it does so on moto). Both refuse parts under 5 MiB as
//! S3 does. Each test works under a prefix of its own in the bucket.
//!
//! Two `BlobStore`s on the same bucket and prefix stand for two replicas: an upload begun on
//! one continues on the other with nothing but the state the metadata database would keep (the
//! session's storage state and hash state), which the test carries between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use wharf_core::digest::{Algorithm, ContentHasher, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::upload_id::UploadId;
use wharf_gate::metrics::Metrics;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent, WritePermit};
use wharf_metadata_sqlite::SqliteStore;
use wharf_storage::{AppendError, BlobStore, HashResume, S3Credentials, S3Settings, StorageError};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// The S3-compatible servers the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    S3sFs,
    Moto,
}

/// Runs each behaviour on both servers.
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        mod s3s_fs {
            $(#[tokio::test] async fn $name() { super::$name(super::Server::S3sFs).await })*
        }
        mod moto {
            $(#[tokio::test] async fn $name() { super::$name(super::Server::Moto).await })*
        }
    };
}

on_both_servers!(
    committed_blobs_are_read_in_ranges_listed_and_deleted,
    a_monolithic_upload_streams_into_parts_and_is_verified_first,
    a_chunked_upload_continues_on_another_replica_and_completes_at_its_key,
    a_small_chunked_upload_is_one_put_at_completion,
    a_discarded_upload_leaves_nothing_in_the_bucket,
    a_presigned_download_url_reads_the_blob,
);

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the S3 tests need S3-compatible servers. Run scripts/test, \
             or start them with: eval \"$(scripts/s3 start /tmp/wharf-s3)\""
        )
    })
}

fn settings_of(server: Server) -> S3Settings {
    match server {
        Server::S3sFs => settings(),
        Server::Moto => S3Settings {
            endpoint: Some(var("S3_MOTO_TEST_ENDPOINT")),
            credentials: Some(S3Credentials {
                access_key_id: "moto".to_owned(),
                secret_access_key: "moto".to_owned(),
            }),
            ..settings()
        },
    }
}

/// The s3s-fs server's settings from the environment `scripts/s3 start` prints, under a fresh
/// prefix. Fails (never skips) without them.
fn settings() -> S3Settings {
    S3Settings {
        bucket: var("S3_TEST_BUCKET"),
        // Short: s3s-fs names a file after the base64 of the bucket, the key and a multipart
        // upload's id, which must fit in 255 bytes (keys of at most 130 bytes in bucket
        // `wharf`); S3 allows 1024.
        prefix: format!("s{}", &UploadId::generate().as_str()[..8]),
        region: "us-east-1".to_owned(),
        endpoint: Some(var("S3_TEST_ENDPOINT")),
        path_style: true,
        allow_http: true,
        credentials: Some(S3Credentials {
            access_key_id: var("S3_TEST_ACCESS_KEY_ID"),
            secret_access_key: var("S3_TEST_SECRET_ACCESS_KEY"),
        }),
        part_size: PART as u64,
        redirect: None,
    }
}

struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
    gate: WriteGate,
    settings: S3Settings,
    store: BlobStore,
}

async fn fixture(server: Server) -> Fixture {
    fixture_with(server, settings_of(server)).await
}

async fn fixture_with(server: Server, settings: S3Settings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let metadata = SqliteStore::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    let gate = WriteGate::open(
        Arc::new(metadata),
        DrainSettings::default(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let store = BlobStore::s3(&settings).await.unwrap();
    Fixture {
        server,
        _dir: dir,
        gate,
        settings,
        store,
    }
}

impl Fixture {
    async fn permit(&self) -> WritePermit {
        self.gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap()
    }

    /// The multipart uploads open under the prefix, where the server can list them (moto).
    async fn open_uploads(&self) -> Option<Vec<wharf_storage::OpenMultipartUpload>> {
        match self.server {
            Server::S3sFs => None,
            Server::Moto => Some(self.store.open_multipart_uploads().await.unwrap()),
        }
    }

    /// Asserts that no multipart upload is open, where the server can list them.
    async fn assert_no_open_uploads(&self) {
        if let Some(open) = self.open_uploads().await {
            assert!(open.is_empty(), "{open:?}");
        }
    }

    /// Another replica on the same bucket and prefix.
    async fn replica(&self) -> BlobStore {
        BlobStore::s3(&self.settings).await.unwrap()
    }
}

fn content(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// A request body of `data` in 64 KiB chunks.
fn body(data: &[u8]) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let chunks: Vec<_> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks)
}

async fn read_all(store: &BlobStore, key: &StorageKey, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut stream = store.read(key, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn listed_keys(store: &BlobStore) -> Vec<StorageKey> {
    let mut keys: Vec<_> = store.list_objects().map(|o| o.unwrap().key).collect().await;
    keys.sort();
    keys
}

/// An upload's state as the metadata database would keep it between requests.
struct Session {
    id: UploadId,
    received: u64,
    storage_state: String,
    hash_state: Vec<u8>,
}

impl Session {
    fn new() -> Self {
        Session {
            id: UploadId::generate(),
            received: 0,
            storage_state: String::new(),
            hash_state: ContentHasher::new(Algorithm::Sha256).save(),
        }
    }

    /// What the storage state says: (parts uploaded, staged bytes).
    fn parts_and_staged(&self) -> (usize, u64) {
        if self.storage_state.is_empty() {
            return (0, 0);
        }
        let state: serde_json::Value = serde_json::from_str(&self.storage_state).unwrap();
        let parts = state["multipart"]["parts"].as_array().map_or(0, Vec::len);
        (parts, state["staged"]["len"].as_u64().unwrap_or(0))
    }
}

/// Appends `data` to the session through `store`, as a `PATCH` does, and records the outcome
/// as the registry does (then deletes what the new state replaced).
async fn patch(fx: &Fixture, store: &BlobStore, session: &mut Session, data: &[u8]) {
    let permit = fx.permit().await;
    let lock = store.lock_upload(&session.id).unwrap();
    let hasher = ContentHasher::restore(Algorithm::Sha256, &session.hash_state).unwrap();
    let hash = HashResume::new(hasher, session.received, None);
    let appended = store
        .append_upload(
            &permit,
            &lock,
            session.received,
            &session.storage_state,
            body(data),
            hash,
            None,
        )
        .await
        .unwrap();
    assert_eq!(appended.bytes, data.len() as u64);
    let progress = appended.hashing.progress();
    session.received += appended.bytes;
    assert_eq!(
        progress.hashed, session.received,
        "S3 hashes before it answers"
    );
    session.hash_state = progress.state;
    if let Some(state) = appended.storage_state {
        store
            .discard_replaced_staging(&session.id, &session.storage_state, &state)
            .await;
        session.storage_state = state;
    }
}

async fn publish(
    fx: &Fixture,
    store: &BlobStore,
    session: &Session,
    digest: &Digest,
) -> StorageKey {
    let permit = fx.permit().await;
    let lock = store.lock_upload(&session.id).unwrap();
    store
        .publish_upload(
            &permit,
            &lock,
            digest,
            session.received,
            &session.storage_state,
        )
        .await
        .unwrap()
}

async fn staged_ids(store: &BlobStore) -> Vec<UploadId> {
    store
        .staged_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// A blob smaller than a part is one object, read whole and in ranges, listed and deleted;
/// deleting it twice is fine.
async fn committed_blobs_are_read_in_ranges_listed_and_deleted(server: Server) {
    let fx = fixture(server).await;
    let data = content(300_000, 1);
    let digest = Digest::sha256_of(&data);
    let permit = fx.permit().await;
    let id = UploadId::generate();
    let lock = fx.store.lock_upload(&id).unwrap();
    let (key, size) = fx
        .store
        .put_verified_blob(&permit, &lock, &digest, body(&data), None)
        .await
        .unwrap();
    assert_eq!(key, StorageKey::for_upload(&digest, &id));
    assert_eq!(size, data.len() as u64);
    assert_eq!(fx.store.size(&key).await.unwrap(), Some(size));
    assert_eq!(read_all(&fx.store, &key, 0..size).await, data);
    assert_eq!(
        read_all(&fx.store, &key, 1000..1010).await,
        &data[1000..1010]
    );
    assert_eq!(listed_keys(&fx.store).await, std::slice::from_ref(&key));
    fx.assert_no_open_uploads().await;

    fx.store.delete(&permit, &key).await.unwrap();
    fx.store.delete(&permit, &key).await.unwrap();
    assert_eq!(fx.store.size(&key).await.unwrap(), None);
    assert!(listed_keys(&fx.store).await.is_empty());
}

/// A monolithic upload of several parts streams into a multipart upload at its final key and
/// is verified before it is completed: with the wrong digest nothing is at the key and no
/// multipart upload is left open.
async fn a_monolithic_upload_streams_into_parts_and_is_verified_first(server: Server) {
    let fx = fixture(server).await;
    let data = content(2 * PART + 12_345, 2);
    let digest = Digest::sha256_of(&data);
    let permit = fx.permit().await;

    let wrong = Digest::sha256_of(b"something else");
    let id = UploadId::generate();
    let lock = fx.store.lock_upload(&id).unwrap();
    let refused = fx
        .store
        .put_verified_blob(&permit, &lock, &wrong, body(&data), None)
        .await;
    assert!(
        matches!(&refused, Err(AppendError::DigestMismatch { actual, .. }) if *actual == digest),
        "{refused:?}"
    );
    assert!(listed_keys(&fx.store).await.is_empty());
    fx.assert_no_open_uploads().await;

    let too_large = fx
        .store
        .put_verified_blob(&permit, &lock, &digest, body(&data), Some(PART as u64 + 1))
        .await;
    assert!(matches!(too_large, Err(AppendError::TooLarge { .. })));
    fx.assert_no_open_uploads().await;

    let (key, size) = fx
        .store
        .put_verified_blob(&permit, &lock, &digest, body(&data), None)
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(read_all(&fx.store, &key, 0..size).await, data);
    let tail = size - 10..size;
    assert_eq!(
        read_all(&fx.store, &key, tail).await,
        &data[data.len() - 10..]
    );
    fx.assert_no_open_uploads().await;
}

/// A chunked upload's `PATCH`es smaller than a part are staged in an object until a part is
/// full; its `PATCH`es go to two replicas in turn, which share nothing but the session's
/// state; it completes at its final key with no copy, and nothing staged is left.
async fn a_chunked_upload_continues_on_another_replica_and_completes_at_its_key(server: Server) {
    let fx = fixture(server).await;
    let other = fx.replica().await;
    let data = content(2 * PART + 3 * MIB + 17, 3);
    let digest = Digest::sha256_of(&data);
    let mut session = Session::new();

    // Four 1 MiB chunks: staged, no multipart upload yet.
    let mut sent = 0;
    for (i, store) in [&fx.store, &other, &fx.store, &other]
        .into_iter()
        .enumerate()
    {
        patch(&fx, store, &mut session, &data[sent..sent + MIB]).await;
        sent += MIB;
        assert_eq!(session.parts_and_staged(), (0, ((i + 1) * MIB) as u64));
    }
    fx.assert_no_open_uploads().await;
    assert_eq!(staged_ids(&fx.store).await, [session.id.clone()]);
    // One staged object at a time: each replaced one is deleted once the new one is recorded.
    assert!(listed_keys(&fx.store).await.is_empty());

    // 7 MiB more on the other replica: one part full, 6 MiB minus a part staged.
    patch(&fx, &other, &mut session, &data[sent..sent + 7 * MIB]).await;
    sent += 7 * MIB;
    assert_eq!(session.parts_and_staged(), (2, (sent - 2 * PART) as u64));
    if let Some(open) = fx.open_uploads().await {
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].key.upload_id(), Some(session.id.clone()));
    }

    // The rest, and the completion, on the first.
    patch(&fx, &fx.store, &mut session, &data[sent..]).await;
    let hasher = ContentHasher::restore(Algorithm::Sha256, &session.hash_state).unwrap();
    assert_eq!(hasher.finish(), digest, "the hash state covers every byte");
    let key = publish(&fx, &fx.store, &session, &digest).await;
    assert_eq!(
        key,
        StorageKey::for_chunked_upload(Algorithm::Sha256, &session.id),
        "completed where the multipart upload was created: no copy"
    );
    assert_eq!(read_all(&other, &key, 0..data.len() as u64).await, data);
    assert_eq!(listed_keys(&fx.store).await, [key]);
    fx.assert_no_open_uploads().await;
    assert!(
        staged_ids(&fx.store).await.is_empty(),
        "nothing staged is left"
    );
}

/// A chunked blob smaller than a part never opens a multipart upload: it is put at completion,
/// under the digest's layout.
async fn a_small_chunked_upload_is_one_put_at_completion(server: Server) {
    let fx = fixture(server).await;
    let data = content(100_000, 4);
    let digest = Digest::sha256_of(&data);
    let mut session = Session::new();
    patch(&fx, &fx.store, &mut session, &data[..40_000]).await;
    patch(&fx, &fx.store, &mut session, &[]).await;
    patch(&fx, &fx.store, &mut session, &data[40_000..]).await;
    assert_eq!(session.parts_and_staged(), (0, data.len() as u64));
    let key = publish(&fx, &fx.store, &session, &digest).await;
    assert_eq!(key, StorageKey::for_upload(&digest, &session.id));
    assert_eq!(read_all(&fx.store, &key, 0..data.len() as u64).await, data);
    assert!(staged_ids(&fx.store).await.is_empty());
}

/// Discarding an upload (cancelled, expired) aborts its multipart upload and deletes its staged
/// object: nothing of it is left in the bucket.
async fn a_discarded_upload_leaves_nothing_in_the_bucket(server: Server) {
    let fx = fixture(server).await;
    let mut session = Session::new();
    patch(&fx, &fx.store, &mut session, &content(PART + MIB, 5)).await;
    assert_eq!(session.parts_and_staged(), (1, MIB as u64));
    if let Some(open) = fx.open_uploads().await {
        assert_eq!(open.len(), 1);
    }
    let permit = fx.permit().await;
    fx.store
        .discard_upload(&permit, &session.id, &session.storage_state)
        .await
        .unwrap();
    fx.assert_no_open_uploads().await;
    assert!(staged_ids(&fx.store).await.is_empty());
    assert!(listed_keys(&fx.store).await.is_empty());
}

/// A multipart upload whose state was lost (its process was killed before recording it) is
/// found by listing the prefix, names its upload, and is aborted.
#[tokio::test]
async fn multipart_uploads_left_open_are_listed_and_aborted() {
    let fx = fixture(Server::Moto).await;
    let mut session = Session::new();
    patch(&fx, &fx.store, &mut session, &content(PART + 1, 6)).await;
    // The state is forgotten, as by a process killed before recording it.
    let open = fx.store.open_multipart_uploads().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key.upload_id(), Some(session.id.clone()));
    assert!(open[0].initiated_millis > 0);
    let permit = fx.permit().await;
    fx.store
        .abort_multipart_upload(&permit, &open[0])
        .await
        .unwrap();
    fx.assert_no_open_uploads().await;
}

/// The startup check stops with one line naming the bucket and what failed; a wrong secret
/// appears in no message. (On s3s-fs: moto accepts any key.)
#[tokio::test]
async fn the_startup_check_names_the_bucket_and_what_failed() {
    let unusable = |result: Result<BlobStore, StorageError>| match result {
        Ok(_) => panic!("the store was accepted"),
        Err(StorageError::Unusable(message)) => message,
        Err(other) => panic!("not a startup error: {other}"),
    };
    let wrong_bucket = S3Settings {
        bucket: "no-such-bucket-for-wharf".to_owned(),
        ..settings()
    };
    let message = unusable(BlobStore::s3(&wrong_bucket).await);
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains("\"no-such-bucket-for-wharf\""),
        "{message}"
    );
    assert!(message.contains("cannot list objects"), "{message}");

    let mut bad_key = settings();
    let secret = "wrong-secret-that-must-not-show".to_owned();
    bad_key.credentials = Some(S3Credentials {
        access_key_id: bad_key.credentials.unwrap().access_key_id,
        secret_access_key: secret.clone(),
    });
    let message = unusable(BlobStore::s3(&bad_key).await);
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains(&format!("{:?}", bad_key.bucket)),
        "{message}"
    );
    assert!(!message.contains(&secret), "{message}");
    assert!(!format!("{bad_key:?}").contains(&secret));
}

/// With redirects on, a blob's download URL is presigned and reads the blob (ranges too) from
/// the store directly; without, there is none.
async fn a_presigned_download_url_reads_the_blob(server: Server) {
    let fx = fixture_with(
        server,
        S3Settings {
            redirect: Some(std::time::Duration::from_secs(60)),
            ..settings_of(server)
        },
    )
    .await;
    let data = content(70_000, 7);
    let digest = Digest::sha256_of(&data);
    let permit = fx.permit().await;
    let lock = fx.store.lock_upload(&UploadId::generate()).unwrap();
    let (key, _) = fx
        .store
        .put_verified_blob(&permit, &lock, &digest, body(&data), None)
        .await
        .unwrap();
    let url = fx.store.download_url(&key).await.unwrap().unwrap();
    let http = reqwest::Client::new();
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), data);
    let range = http
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().await.unwrap(), &data[10..20]);

    let plain = fixture(server).await;
    assert_eq!(plain.store.download_url(&key).await.unwrap(), None);
}

/// sha512 blobs, whose keys are longer than s3s-fs can store (see `settings`), on moto: a
/// monolithic one and a chunked one hashed with sha512 as it arrived.
#[tokio::test]
async fn sha512_blobs_are_stored_under_their_keys() {
    let fx = fixture(Server::Moto).await;
    let sha512 = |data: &[u8]| {
        let mut hasher = ContentHasher::new(Algorithm::Sha512);
        hasher.update(data);
        hasher.finish()
    };
    let data = content(PART + 99, 8);
    let digest = sha512(&data);
    let permit = fx.permit().await;
    let lock = fx.store.lock_upload(&UploadId::generate()).unwrap();
    let (key, size) = fx
        .store
        .put_verified_blob(&permit, &lock, &digest, body(&data), None)
        .await
        .unwrap();
    assert_eq!(read_all(&fx.store, &key, 0..size).await, data);

    let mut session = Session {
        hash_state: ContentHasher::new(Algorithm::Sha512).save(),
        ..Session::new()
    };
    let permit = fx.permit().await;
    let lock = fx.store.lock_upload(&session.id).unwrap();
    let hasher = ContentHasher::restore(Algorithm::Sha512, &session.hash_state).unwrap();
    let appended = fx
        .store
        .append_upload(
            &permit,
            &lock,
            0,
            "",
            body(&data),
            HashResume::new(hasher, 0, None),
            None,
        )
        .await
        .unwrap();
    session.received = appended.bytes;
    session.storage_state = appended.storage_state.unwrap();
    assert_eq!(appended.hashing.wait().await.unwrap().finish(), digest);
    drop(lock);
    let key = publish(&fx, &fx.store, &session, &digest).await;
    assert_eq!(read_all(&fx.store, &key, 0..size).await, data);
}
