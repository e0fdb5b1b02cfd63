//! Backups through the admin API, copied with the library: the lease keeps the snapshot's blobs
//! through garbage collection, a second backup copies only what is new, verification and restore
//! refuse what is not a complete, intact backup.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wharf_backup::{
    Destination, LocalSource, Progress, RestoreTarget, copy_backup, restore, verify,
};
use wharf_core::digest::Digest;
use wharf_registry::backups::BackupSnapshot;

use crate::app::TestApp;

/// A registry whose drains do not wait long for manifests after the pushes these tests make
/// just before their snapshots.
async fn start() -> TestApp {
    TestApp::start_with(|c| {
        c.drain.push_grace = wharf_config::HumanDuration(std::time::Duration::from_millis(100))
    })
    .await
}

/// Progress nobody watches.
pub(crate) struct Silent;

impl Progress for Silent {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn skipped(&self, _: u64) {}
    fn blob_done(&self, _: bool) {}
}

pub(crate) async fn snapshot(app: &TestApp) -> BackupSnapshot {
    let response = app
        .request(Method::POST, "/api/v1/backups")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

pub(crate) async fn copy(
    app: &TestApp,
    snapshot: &BackupSnapshot,
    to: &Path,
) -> wharf_backup::BackupManifest {
    let source = LocalSource::new(app.registry().await, snapshot.id.clone())
        .await
        .unwrap();
    let destination = Destination::create(to).unwrap();
    copy_backup(snapshot, &source, destination, &Silent, "test")
        .await
        .unwrap()
}

async fn collect_with_no_grace(app: &TestApp) -> Value {
    let response = app
        .request(Method::POST, "/api/v1/gc")
        .json(&json!({ "grace": "0s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_snapshot_is_short_and_the_registry_writable_during_the_copy() {
    let app = start().await;
    let image = app.push_image("team/app", "v1", 2).await;
    let snapshot = snapshot(&app).await;
    assert!(snapshot.read_only_until >= snapshot.read_only_from);
    assert_eq!(snapshot.counts.manifests, 1);
    assert_eq!(snapshot.counts.blobs, 3);
    assert_eq!(
        snapshot.counts.bytes,
        image.blobs().map(|b| b.len() as u64).sum::<u64>()
    );
    // Writable again at once: the copy does not need read-only.
    assert_eq!(app.state().await["effective"], "read-write");
    app.push_image("team/app", "v2", 1).await;
    // The hold and the release are in the audit trail.
    let events: Value = app.get("/api/v1/events").await.json().await.unwrap();
    let backup_hold = format!("backup-{}", snapshot.id);
    let events = events["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "hold-set" && e["hold"] == backup_hold.as_str())
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "hold-released" && e["hold"] == backup_hold.as_str())
    );

    let dir = tempfile::tempdir().unwrap();
    let manifest = copy(&app, &snapshot, dir.path()).await;
    assert_eq!(manifest.counts.manifests, 1, "v2 came after the snapshot");
    assert_eq!(manifest.copy.copied, 3);
    let response = app
        .delete(&format!("/api/v1/backups/{}", snapshot.id))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(verify(dir.path(), true, &Silent).await.unwrap().is_good());
}

/// A source that collects garbage (with no grace at all) when the copy first asks for a blob.
struct CollectingMidCopy<'a> {
    inner: LocalSource,
    app: &'a TestApp,
    collected: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl wharf_backup::BackupSource for CollectingMidCopy<'_> {
    async fn metadata(
        &self,
    ) -> Result<wharf_storage::BlobStream, wharf_registry::backups::BackupError> {
        self.inner.metadata().await
    }
    async fn blobs(
        &self,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, wharf_registry::backups::BackupError> {
        self.inner.blobs(last, limit).await
    }
    async fn blob(
        &self,
        digest: &Digest,
    ) -> Result<wharf_storage::BlobStream, wharf_registry::backups::BackupError> {
        if !self
            .collected
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let report = collect_with_no_grace(self.app).await;
            assert_eq!(report["deleted_blobs"], 0, "mid-copy: {report}");
        }
        self.inner.blob(digest).await
    }
    async fn renew(
        &self,
        ttl: std::time::Duration,
    ) -> Result<(), wharf_registry::backups::BackupError> {
        self.inner.renew(ttl).await
    }
}

#[tokio::test]
async fn garbage_collection_in_the_middle_of_the_copy_keeps_what_the_backup_needs() {
    let app = start().await;
    let image = app.push_image("r", "v1", 3).await;
    let snapshot = snapshot(&app).await;
    app.delete(&format!("/v2/r/manifests/{}", image.digest))
        .await;
    let source = CollectingMidCopy {
        inner: LocalSource::new(app.registry().await, snapshot.id.clone())
            .await
            .unwrap(),
        app: &app,
        collected: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = copy_backup(
        &snapshot,
        &source,
        Destination::create(dir.path()).unwrap(),
        &Silent,
        "test",
    )
    .await
    .unwrap();
    assert!(source.collected.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(manifest.copy.copied, 4);
    assert!(verify(dir.path(), true, &Silent).await.unwrap().is_good());
}

#[tokio::test]
async fn a_lease_nobody_renews_lapses_and_garbage_goes() {
    let app = start().await;
    let image = app.push_image("r", "v1", 1).await;
    let response = app
        .request(Method::POST, "/api/v1/backups")
        .json(&json!({ "lease_ttl": "1m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let snapshot: BackupSnapshot = response.json().await.unwrap();
    assert_eq!(snapshot.lease_ttl_ms, 60_000);
    app.delete(&format!("/v2/r/manifests/{}", image.digest))
        .await;
    let renew = |ttl: &'static str| {
        app.request(Method::PUT, &format!("/api/v1/backups/{}", snapshot.id))
            .json(&json!({ "lease_ttl": ttl }))
            .send()
    };
    // While the lease holds, nothing the snapshot references is collected.
    assert_eq!(renew("1m").await.unwrap().status(), StatusCode::OK);
    let report = collect_with_no_grace(&app).await;
    assert_eq!(report["deleted_blobs"], 0, "{report}");
    // The last renewal is short, and then nobody renews it (the backup died): once it lapses,
    // the garbage goes.
    assert_eq!(renew("1ms").await.unwrap().status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let deleted = loop {
        let report = collect_with_no_grace(&app).await;
        if report["deleted_blobs"] == 2 {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never collected: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(deleted["expired_backups"], 1, "{deleted}");
    assert_eq!(
        renew("1m").await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "a lapsed lease is not renewed"
    );
}

#[tokio::test]
async fn garbage_collection_during_the_copy_keeps_what_the_backup_needs() {
    let app = start().await;
    let image = app.push_image("r", "v1", 2).await;
    let snapshot = snapshot(&app).await;

    // After the snapshot the image is deleted and garbage collected with no grace at all.
    let response = app
        .delete(&format!("/v2/r/manifests/{}", image.digest))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report = collect_with_no_grace(&app).await;
    assert_eq!(
        report["deleted_blobs"], 0,
        "the lease keeps the snapshot's blobs: {report}"
    );

    let dir = tempfile::tempdir().unwrap();
    let manifest = copy(&app, &snapshot, dir.path()).await;
    assert_eq!(manifest.copy.copied, 3);
    assert!(verify(dir.path(), true, &Silent).await.unwrap().is_good());

    // Once the backup ends, the lease no longer keeps them.
    app.delete(&format!("/api/v1/backups/{}", snapshot.id))
        .await;
    let report = collect_with_no_grace(&app).await;
    assert_eq!(report["deleted_blobs"], 3, "{report}");
    assert_eq!(
        app.request(
            Method::GET,
            &format!("/api/v1/backups/{}/metadata", snapshot.id)
        )
        .send()
        .await
        .unwrap()
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_second_backup_copies_only_what_is_new() {
    let app = start().await;
    app.push_image("r", "v1", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let first = snapshot(&app).await;
    let manifest = copy(&app, &first, dir.path()).await;
    assert_eq!((manifest.copy.copied, manifest.copy.reused), (4, 0));
    app.delete(&format!("/api/v1/backups/{}", first.id)).await;

    let second_image = app.push_image("r", "v2", 2).await;
    let second = snapshot(&app).await;
    let manifest = copy(&app, &second, dir.path()).await;
    assert_eq!((manifest.copy.copied, manifest.copy.reused), (3, 4));
    assert_eq!(
        manifest.copy.copied_bytes,
        second_image.blobs().map(|b| b.len() as u64).sum::<u64>()
    );
    assert_eq!(manifest.counts.manifests, 2);
    assert!(verify(dir.path(), true, &Silent).await.unwrap().is_good());
}

#[tokio::test]
async fn verify_and_restore_refuse_what_is_not_a_complete_intact_backup() {
    let app = start().await;
    let image = app.push_image("r", "v1", 2).await;
    let snapshot = snapshot(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    copy(&app, &snapshot, &backup).await;
    let restored = dir.path().join("restored");

    // A damaged blob.
    let layer = Digest::sha256_of(&image.layers[0]);
    let path = backup
        .join("blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex());
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let report = verify(&backup, true, &Silent).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains(&layer.to_string()));
    assert!(
        verify(&backup, false, &Silent).await.unwrap().is_good(),
        "sizes alone do not see it"
    );
    let error = restore(&backup, RestoreTarget::folder(&restored, false), &Silent)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&layer.to_string()), "{error}");
    assert_eq!(
        std::fs::read_dir(&restored).map(|d| d.count()).unwrap_or(0),
        0,
        "a failed restore leaves nothing behind"
    );
    std::fs::write(&path, &good).unwrap();

    // A missing blob.
    std::fs::remove_file(&path).unwrap();
    let report = verify(&backup, false, &Silent).await.unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("missing")),
        "{report:?}"
    );
    std::fs::write(&path, &good).unwrap();

    // An interrupted first backup: the mark, and no backup.json.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir_all(&interrupted).unwrap();
    std::fs::write(interrupted.join("INCOMPLETE"), "").unwrap();
    let report = verify(&interrupted, true, &Silent).await.unwrap();
    assert!(report.problems[0].contains("incomplete"), "{report:?}");
    let restored_twice = dir.path().join("restored-twice");
    let error = restore(
        &interrupted,
        RestoreTarget::folder(&restored_twice, false),
        &Silent,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("incomplete"), "{error}");
    // A backup that committed but crashed before removing the mark is complete.
    std::fs::write(backup.join("INCOMPLETE"), "").unwrap();
    assert!(verify(&backup, true, &Silent).await.unwrap().is_good());
    std::fs::remove_file(backup.join("INCOMPLETE")).unwrap();

    // A metadata snapshot that is not the one written.
    let named: Value =
        serde_json::from_slice(&std::fs::read(backup.join("backup.json")).unwrap()).unwrap();
    let metadata = backup.join(named["metadata"]["file"].as_str().unwrap());
    let original = std::fs::read(&metadata).unwrap();
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(&metadata, &changed).unwrap();
    assert!(!verify(&backup, false, &Silent).await.unwrap().is_good());
    std::fs::write(&metadata, &original).unwrap();

    // Not a backup at all, and a non-empty target.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        verify(empty.path(), true, &Silent).await.unwrap().problems[0].contains("not a backup")
    );
    let occupied = dir.path().join("occupied");
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("something"), "x").unwrap();
    let error = restore(&backup, RestoreTarget::folder(&occupied, false), &Silent)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");

    // Intact again: it restores, and the restored registry starts read-write.
    let report = restore(&backup, RestoreTarget::folder(&restored, false), &Silent)
        .await
        .unwrap();
    assert!(report.fsck.is_clean(), "{report:?}");
    assert_eq!(report.blobs, 3);
    let mut config = wharf_config::Config::default();
    config.storage.data_dir = restored.clone();
    let registry = wharf_registry::Registry::open_local(
        &config.data_paths(),
        false,
        config.limits(),
        config.drain_settings(),
    )
    .await
    .unwrap();
    assert_eq!(
        registry.gate().snapshot().holds,
        vec![],
        "no holds come back"
    );
    let tag = "v1".parse().unwrap();
    let manifest = registry
        .manifest(&"r".parse().unwrap(), &tag)
        .await
        .unwrap();
    assert_eq!(manifest.content, image.manifest);
    registry.close().await;
}

#[tokio::test]
async fn a_destination_holding_other_things_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("thesis.pdf"), "precious").unwrap();
    let error = Destination::create(dir.path()).err().unwrap();
    assert!(error.to_string().contains("thesis.pdf"), "{error}");
    assert!(!dir.path().join("INCOMPLETE").exists());
}

#[tokio::test]
async fn backup_requests_are_validated() {
    let app = start().await;
    for body in [
        json!({ "wait": "0s" }),
        json!({ "hold_ttl": "soon" }),
        json!({ "surprise": 1 }),
    ] {
        let response = app
            .request(Method::POST, "/api/v1/backups")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    for path in [
        "/api/v1/backups/nope/metadata",
        "/api/v1/backups/../x/blobs",
        "/api/v1/backups/20261122-000000-abcdef/blobs",
    ] {
        let status = app.get(path).await.status();
        assert!(
            matches!(status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST),
            "{path}: {status}"
        );
    }
    // A backup does not need a manifest to exist; an empty registry backs up too.
    let snapshot = snapshot(&app).await;
    assert_eq!(snapshot.counts.blobs, 0);
    let dir = tempfile::tempdir().unwrap();
    let manifest = copy(&app, &snapshot, dir.path()).await;
    assert_eq!(manifest.counts.manifests, 0);
}

#[tokio::test]
async fn a_backup_of_a_registry_already_read_only_reports_its_own_window_and_leaves_it_so() {
    let app = start().await;
    app.push_image("r", "v1", 1).await;
    app.hold_read_only("admin", "maintenance").await;
    let before = app.wait_for_mode("read-only").await;
    let snapshot = snapshot(&app).await;
    assert!(
        snapshot.read_only_from >= snapshot.hold_taken_at,
        "{snapshot:?}"
    );
    assert!(snapshot.read_only_until >= snapshot.read_only_from);
    let after = app.state().await;
    assert_eq!(
        after["effective"], "read-only",
        "the administrator's hold remains"
    );
    assert_eq!(after["holds"], before["holds"]);
    app.delete(&format!("/api/v1/backups/{}", snapshot.id))
        .await;
}

/// A registry on PostgreSQL backs up as one on SQLite does, into the same format: the backup
/// holds the registry as it was under the hold (a push after the snapshot is not in it), and it
/// restores into an empty PostgreSQL database — where a server then serves it, read-write, and
/// new rows do not collide with restored ones — and into SQLite alike. A database that holds a
/// registry already is refused, and nothing is created.
#[tokio::test]
async fn a_registry_on_postgresql_backs_up_and_restores_into_postgresql_or_sqlite() {
    use wharf_metadata_postgres::testing::TestDatabase;
    use wharf_registry::MetadataDatabase;

    let database = TestDatabase::create().await.expect("a PostgreSQL database");
    let app = TestApp::start_with(|config| {
        config.metadata.url = wharf_config::DatabaseUrl(database.url().to_owned());
        config.drain.push_grace =
            wharf_config::HumanDuration(std::time::Duration::from_millis(100));
    })
    .await;
    let image = app.push_image("team/app", "v1", 2).await;
    let taken = snapshot(&app).await;
    assert_eq!(taken.counts.tags, 1, "{taken:?}");
    assert_eq!(app.state().await["effective"], "read-write");
    // Pushed after the snapshot, while its rows are still to be copied: not in the backup.
    app.push_image("team/later", "v1", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let manifest = copy(&app, &taken, &backup).await;
    app.delete(&format!("/api/v1/backups/{}", taken.id)).await;
    assert_eq!(manifest.counts.blobs, 3);
    assert!(verify(&backup, true, &Silent).await.unwrap().is_good());

    let target = TestDatabase::create().await.expect("a PostgreSQL database");
    let into_postgres = |data: &Path| RestoreTarget {
        data: data.to_owned(),
        fsync: false,
        blobs: None,
        metadata: MetadataDatabase::Postgres(target.options()),
    };
    let restored = dir.path().join("restored-on-postgres");
    let report = restore(&backup, into_postgres(&restored), &Silent)
        .await
        .unwrap();
    assert!(report.fsck.is_clean(), "{report:?}");
    assert_eq!((report.blobs, report.forgotten[0]), (3, 1), "{report:?}");
    assert!(
        !restored.join("metadata.db").exists(),
        "the snapshot is not left in the data folder"
    );

    let again = dir.path().join("restored-again");
    let error = restore(&backup, into_postgres(&again), &Silent)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("already holds a registry"),
        "{error}"
    );
    assert!(!again.exists(), "a refused restore creates nothing");

    let served = TestApp::start_with(|config| {
        config.metadata.url = wharf_config::DatabaseUrl(target.url().to_owned());
        config.storage.data_dir = restored.clone();
        config.storage.backend = wharf_config::StorageBackend::Filesystem;
    })
    .await;
    let pulled = served
        .request(Method::GET, "/v2/team/app/manifests/v1")
        .header("accept", crate::app::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(
        pulled.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );
    for blob in image.blobs() {
        let digest = Digest::sha256_of(blob);
        let got = served.get(&format!("/v2/team/app/blobs/{digest}")).await;
        assert_eq!(got.bytes().await.unwrap().as_ref(), blob.as_slice());
    }
    let later = served.get("/v2/team/later/manifests/v1").await;
    assert_eq!(later.status(), StatusCode::NOT_FOUND);
    let state = served.state().await;
    assert_eq!(state["effective"], "read-write", "{state}");
    assert_eq!(state["holds"], json!([]), "{state}");
    // New repositories get ids after the restored ones'.
    served.push_image("team/new", "v1", 1).await;
    served.push_image("team/app", "v2", 1).await;

    let into_sqlite = dir.path().join("restored-on-sqlite");
    let report = restore(&backup, RestoreTarget::folder(&into_sqlite, false), &Silent)
        .await
        .unwrap();
    assert!(report.fsck.is_clean(), "{report:?}");
    assert_eq!(report.blobs, 3);
    assert!(into_sqlite.join("metadata.db").is_file());
}

/// A backup of a registry on SQLite restores into an empty PostgreSQL database: the way to
/// move a registry to replicas.
#[tokio::test]
async fn a_registry_on_sqlite_moves_to_postgresql_through_a_backup() {
    use wharf_metadata_postgres::testing::TestDatabase;
    use wharf_registry::MetadataDatabase;

    let app = TestApp::start_with(|config| {
        config.metadata.url = wharf_config::DatabaseUrl(String::new());
        config.drain.push_grace =
            wharf_config::HumanDuration(std::time::Duration::from_millis(100));
    })
    .await;
    let image = app.push_image("team/app", "v1", 1).await;
    let taken = snapshot(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    copy(&app, &taken, &backup).await;
    app.delete(&format!("/api/v1/backups/{}", taken.id)).await;

    let target = TestDatabase::create().await.expect("a PostgreSQL database");
    let restored = dir.path().join("restored");
    let report = restore(
        &backup,
        RestoreTarget {
            metadata: MetadataDatabase::Postgres(target.options()),
            ..RestoreTarget::folder(&restored, false)
        },
        &Silent,
    )
    .await
    .unwrap();
    assert!(report.fsck.is_clean(), "{report:?}");
    assert_eq!(report.blobs, 2);
    let served = TestApp::start_with(|config| {
        config.metadata.url = wharf_config::DatabaseUrl(target.url().to_owned());
        config.storage.data_dir = restored.clone();
        config.storage.backend = wharf_config::StorageBackend::Filesystem;
    })
    .await;
    let pulled = served
        .request(Method::GET, "/v2/team/app/manifests/v1")
        .header("accept", crate::app::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(
        pulled.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );
}
