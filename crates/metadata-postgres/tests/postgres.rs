//! What the PostgreSQL store promises beyond the behavioural suite: the advisory and row locks
//! that stand in for SQLite's one writer, connections left clean by a failed transaction, errors
//! classified as the server reports them, and an outage answered as "unavailable" within the
//! acquire timeout, with the store recovering by itself when the server is back.
//!
//! The lock tests are deterministic: another session takes the lock a write needs, the test
//! waits until the server shows the write's session waiting (`pg_locks`), then lets it go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use wharf_core::digest::{Algorithm, Digest};
use wharf_core::placement::StorageKey;
use wharf_core::reference::RepositoryName;
use wharf_core::time::now_millis;
use wharf_core::upload_id::UploadId;
use wharf_gate::metrics::Metrics;
use wharf_gate::store::GateStore;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent, WritePermit};
use wharf_metadata::accounts::{AccountChange, AccountStore, UserRecord};
use wharf_metadata::{
    BlobRecord, MetadataError, MetadataStore, NewManifest, UploadCompletion, UploadSession,
};
use wharf_metadata_postgres::testing::{PrivateServer, TestDatabase};
use wharf_metadata_postgres::{PostgresOptions, PostgresStore};

struct Fixture {
    database: TestDatabase,
    store: Arc<PostgresStore>,
    gate: WriteGate,
}

impl Fixture {
    async fn new(configure: impl FnOnce(&mut PostgresOptions)) -> Self {
        let database = TestDatabase::create().await.expect("a test database");
        let mut options = database.options();
        configure(&mut options);
        let store = Arc::new(PostgresStore::connect(&options).await.unwrap());
        let gate = gate(&store).await;
        Fixture {
            database,
            store,
            gate,
        }
    }

    async fn permit(&self) -> WritePermit {
        self.gate
            .admit(WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap()
    }

    /// Another session on the test's database, as another replica would have.
    async fn other_session(&self) -> PgConnection {
        PgConnection::connect(self.database.url()).await.unwrap()
    }

    /// Waits until one of the store's sessions waits for a lock another session holds.
    async fn until_a_write_waits(&self) {
        let mut observer = self.other_session().await;
        for _ in 0..1000 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE NOT l.granted AND a.application_name = $1 AND a.pid <> pg_backend_pid()",
            )
            .bind(self.database.name())
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the write never waited for the lock");
    }

    async fn open_session(&self, repository: &str) -> UploadSession {
        let session = UploadSession {
            id: UploadId::generate(),
            repository: repo(repository),
            client: "test".to_owned(),
            received: 0,
            hash_algorithm: Algorithm::Sha256,
            hash_state: Vec::new(),
            hashed: 0,
            created_at: now_millis(),
            updated_at: now_millis(),
            storage_state: String::new(),
        };
        self.store
            .open_upload(&self.permit().await, &session)
            .await
            .unwrap();
        session
    }

    /// A blob `content` uploaded into `repository`.
    async fn blob(&self, repository: &str, content: &[u8]) -> BlobRecord {
        let session = self.open_session(repository).await;
        let digest = Digest::sha256_of(content);
        let completion = self
            .store
            .complete_upload(
                &self.permit().await,
                &session.id,
                0,
                &digest,
                content.len() as u64,
                Some(&StorageKey::for_new_placement(&digest)),
            )
            .await
            .unwrap();
        match completion {
            UploadCompletion::Committed { blob, .. } => blob,
            other => panic!("completing the upload: {other:?}"),
        }
    }
}

async fn gate(store: &Arc<PostgresStore>) -> WriteGate {
    WriteGate::open(
        Arc::clone(store) as Arc<dyn GateStore>,
        DrainSettings::default(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap()
}

fn repo(name: &str) -> RepositoryName {
    name.parse().unwrap()
}

fn manifest(content: &str, tag: Option<&str>) -> NewManifest {
    NewManifest {
        digest: Digest::sha256_of(content.as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        content: content.as_bytes().to_vec(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        artifact_type: None,
        subject: None,
        annotations: None,
        sparse: false,
        tags: tag.into_iter().map(|t| t.parse().unwrap()).collect(),
        client: "test".to_owned(),
    }
}

/// A transaction that fails halfway (its statement cancelled by the statement timeout while it
/// waits for a row another session holds) is rolled back, and the pool's only connection
/// serves the next writes: nothing keeps a broken connection, or one inside an aborted
/// transaction, in the pool.
#[tokio::test]
async fn a_transaction_failing_halfway_leaves_its_connection_clean() {
    let fixture = Fixture::new(|options| {
        options.max_connections = 1;
        options.statement_timeout = Duration::from_millis(300);
    })
    .await;
    let repository = repo("team/app");
    let store = &fixture.store;
    store
        .put_manifest(
            &fixture.permit().await,
            &repository,
            &manifest("{}", Some("v1")),
        )
        .await
        .unwrap()
        .unwrap();

    // Another session holds the repository's row: the manifest put below gets its advisory
    // locks, then waits for the row in its third statement until the timeout cancels it.
    let mut other = fixture.other_session().await;
    let mut held = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM repositories WHERE name = $1 FOR UPDATE")
        .bind(repository.as_str())
        .execute(&mut *held)
        .await
        .unwrap();
    for attempt in 0..3 {
        let failed = store
            .put_manifest(
                &fixture.permit().await,
                &repository,
                &manifest(&format!("{{\"attempt\":{attempt}}}"), Some("v2")),
            )
            .await;
        assert!(
            matches!(failed, Err(MetadataError::Unavailable(_))),
            "a statement cancelled by the timeout is the database not answering: {failed:?}"
        );
        // The same (only) connection writes at once, outside the failed transaction.
        store
            .open_upload(
                &fixture.permit().await,
                &UploadSession {
                    id: UploadId::generate(),
                    repository: repository.clone(),
                    client: "test".to_owned(),
                    received: 0,
                    hash_algorithm: Algorithm::Sha256,
                    hash_state: Vec::new(),
                    hashed: 0,
                    created_at: 1,
                    updated_at: 1,
                    storage_state: String::new(),
                },
            )
            .await
            .unwrap();
    }
    held.commit().await.unwrap();

    let digest = Digest::sha256_of(b"{\"attempt\":9}");
    store
        .put_manifest(
            &fixture.permit().await,
            &repository,
            &manifest("{\"attempt\":9}", Some("v2")),
        )
        .await
        .unwrap()
        .unwrap();
    let tagged = store
        .manifest(&repository, &"v2".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tagged.digest, digest);
    // Nothing of the failed attempts is visible, and no session is left in a transaction.
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM manifests")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(stored, 2);
    let in_transaction: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(fixture.database.name())
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert_eq!(in_transaction, 0);
}

/// The garbage collector claims blobs under the blob life cycle's exclusive lock: a manifest
/// put under way (holding it shared) finishes first, and the claim, on a fresh snapshot, sees
/// the reference the manifest made and leaves the blob alone.
#[tokio::test]
async fn garbage_collection_waits_for_a_manifest_being_put() {
    let fixture = Fixture::new(|_| {}).await;
    let blob = fixture.blob("team/app", b"layer").await;
    let unlinked = fixture
        .store
        .unlink_blob(&fixture.permit().await, &repo("team/app"), &blob.digest)
        .await
        .unwrap();
    assert_eq!(unlinked, wharf_metadata::BlobUnlink::Unlinked);

    let mut other = fixture.other_session().await;
    let mut put = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared(1, 0)")
        .execute(&mut *put)
        .await
        .unwrap();
    let store = Arc::clone(&fixture.store);
    let permit = fixture.permit().await;
    let far = now_millis() + 3_600_000;
    let claim = tokio::spawn(async move {
        store
            .claim_unreferenced_blobs(&permit, far, now_millis(), 100)
            .await
    });
    fixture.until_a_write_waits().await;
    // What a manifest put does: the manifest and its reference to the blob.
    for statement in [
        "INSERT INTO manifests (repository_id, digest, media_type, size, content, created_at)
         SELECT id, 'sha256:m', 'x', 0, '', 0 FROM repositories WHERE name = 'team/app'",
        "INSERT INTO manifest_references (repository_id, manifest_digest, child_kind, child_digest)
         SELECT id, 'sha256:m', 'blob', $1 FROM repositories WHERE name = 'team/app'",
    ] {
        sqlx::query(statement)
            .bind(blob.digest.to_string())
            .execute(&mut *put)
            .await
            .unwrap();
    }
    put.commit().await.unwrap();
    let claimed = claim.await.unwrap().unwrap();
    assert_eq!(
        claimed,
        Vec::new(),
        "a blob a manifest refers to is claimed"
    );
    assert!(
        fixture
            .store
            .live_blob(&blob.digest)
            .await
            .unwrap()
            .is_some()
    );
}

/// Account changes run one at a time: a user created while an organization of the same name is
/// being created waits, then finds the name taken.
#[tokio::test]
async fn account_changes_run_one_at_a_time() {
    let fixture = Fixture::new(|_| {}).await;
    let mut other = fixture.other_session().await;
    let mut change = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4, 0)")
        .execute(&mut *change)
        .await
        .unwrap();
    sqlx::query("INSERT INTO organizations (name, created_at) VALUES ('platform', 0)")
        .execute(&mut *change)
        .await
        .unwrap();
    let store = Arc::clone(&fixture.store);
    let permit = fixture.permit().await;
    let create = tokio::spawn(async move {
        let user = UserRecord {
            name: "platform".to_owned(),
            password_hash: "x".to_owned(),
            superuser: false,
            created_at: 0,
        };
        store.create_user(&permit, &user).await
    });
    fixture.until_a_write_waits().await;
    change.commit().await.unwrap();
    assert_eq!(
        create.await.unwrap().unwrap(),
        AccountChange::Taken("organization")
    );
    assert!(fixture.store.user("platform").await.unwrap().is_none());
}

/// Completing an upload locks its session: a request completing it while another one does
/// waits, then finds it gone (not completed twice).
#[tokio::test]
async fn a_session_completed_meanwhile_is_gone() {
    let fixture = Fixture::new(|_| {}).await;
    let session = fixture.open_session("team/app").await;
    let mut other = fixture.other_session().await;
    let mut complete = other.begin().await.unwrap();
    sqlx::query("UPDATE upload_sessions SET completed_at = 1 WHERE id = $1")
        .bind(session.id.as_str())
        .execute(&mut *complete)
        .await
        .unwrap();
    let store = Arc::clone(&fixture.store);
    let permit = fixture.permit().await;
    let id = session.id.clone();
    let second = tokio::spawn(async move {
        let digest = Digest::sha256_of(b"content");
        store
            .complete_upload(
                &permit,
                &id,
                0,
                &digest,
                7,
                Some(&StorageKey::for_new_placement(&digest)),
            )
            .await
    });
    fixture.until_a_write_waits().await;
    complete.commit().await.unwrap();
    assert_eq!(
        second.await.unwrap().unwrap(),
        UploadCompletion::SessionGone
    );
}

/// The codes PostgreSQL answers with are classified as the registry needs them: a full disk is
/// `StorageFull` (507), a server shutting down or a cancelled statement is `Unavailable` (503),
/// anything else is a database error (500).
#[tokio::test]
async fn errors_are_classified_from_the_servers_codes() {
    let database = TestDatabase::create().await.expect("a test database");
    let mut connection = PgConnection::connect(database.url()).await.unwrap();
    let mut raised = async |code: &str| {
        let error = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN RAISE EXCEPTION 'raised by the test' USING ERRCODE = '{code}'; END $$"
        )))
        .execute(&mut connection)
        .await
        .unwrap_err();
        MetadataError::from(error)
    };
    assert!(matches!(
        raised("53100").await,
        MetadataError::StorageFull(_)
    ));
    for code in ["57P01", "57014", "08006", "53300"] {
        let error = raised(code).await;
        assert!(
            matches!(error, MetadataError::Unavailable(_)),
            "{code}: {error:?}"
        );
    }
    assert!(matches!(raised("23505").await, MetadataError::Database(_)));
}

/// With the server gone, a read and a write fail as unavailable within the acquire timeout
/// (not a hang); once it is back, the store serves again by itself, on fresh connections.
#[tokio::test]
async fn an_outage_is_unavailable_within_the_timeout_and_the_store_recovers() {
    let server = PrivateServer::start().expect("a PostgreSQL server of the test's own");
    let mut options = PostgresOptions::new(server.url());
    options.acquire_timeout = Duration::from_secs(2);
    options.statement_timeout = Duration::from_secs(2);
    let store = Arc::new(PostgresStore::connect(&options).await.unwrap());
    let gate = gate(&store).await;
    let repository = repo("team/app");
    let permit = gate
        .admit(WriteIntent::Housekeeping { job: "test" })
        .await
        .unwrap();
    store
        .put_manifest(&permit, &repository, &manifest("{}", Some("v1")))
        .await
        .unwrap()
        .unwrap();

    server.pause().unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let read = store.manifest(&repository, &"v1".parse().unwrap()).await;
        assert!(
            matches!(read, Err(MetadataError::Unavailable(_))),
            "{read:?}"
        );
        let write = store
            .put_manifest(&permit, &repository, &manifest("{\"a\":1}", None))
            .await;
        assert!(
            matches!(write, Err(MetadataError::Unavailable(_))),
            "{write:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "took {:?}",
            started.elapsed()
        );
    }

    server.resume().unwrap();
    let read = store
        .manifest(&repository, &"v1".parse().unwrap())
        .await
        .unwrap();
    assert!(read.is_some());
    store
        .put_manifest(&permit, &repository, &manifest("{\"a\":2}", Some("v2")))
        .await
        .unwrap()
        .unwrap();
    store.close().await;
}

/// A URL that is not one is refused with a message that does not show its password.
#[tokio::test]
async fn a_malformed_url_is_refused_without_showing_its_password() {
    let options = PostgresOptions::new("postgres://wharf:hunter2@db:notaport/wharf");
    let error = PostgresStore::connect(&options).await.err().unwrap();
    let shown = error.to_string();
    assert!(matches!(error, MetadataError::Settings(_)), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
