//! Garbage collection and fsck.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use wharf_core::digest::Digest;
use wharf_core::time::now_millis;
use wharf_gate::metrics::Metrics;
use wharf_gate::{DrainSettings, WriteGate, WriteIntent};
use wharf_metadata::MetadataStore;
use wharf_metadata_sqlite::SqliteStore;
use wharf_registry::{FsckProblem, GcSettings, Limits, Registry};
use wharf_storage::BlobStore;

use crate::app::{TestApp, random_bytes, staged_size, with_database};

const HOUR: i64 = 3600 * 1000;

fn settings() -> GcSettings {
    GcSettings {
        grace: Duration::from_secs(3600),
        upload_expiry: Duration::from_secs(24 * 3600),
    }
}

#[tokio::test]
async fn unreferenced_blobs_are_kept_for_the_grace_period_then_deleted() {
    let app = TestApp::start().await;
    let digest = app.push_blob("r", b"uploaded, never used").await;
    let registry = app.registry().await;

    let report = registry
        .collect_garbage(settings(), now_millis())
        .await
        .unwrap();
    assert_eq!(
        report.deleted_blobs, 0,
        "a push in progress uploads blobs before its manifest"
    );
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.status(),
        StatusCode::OK
    );

    let report = registry
        .collect_garbage(settings(), now_millis() + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.pruned_links, 1);
    assert_eq!(report.deleted_blobs, 1);
    assert_eq!(report.deleted_bytes, 20);
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let folder = app
        .data_dir()
        .join("storage/blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    assert!(!folder.exists(), "the content is gone from disk");
}

#[tokio::test]
async fn blobs_manifests_use_are_kept_until_the_manifests_go() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 2).await;
    let registry = app.registry().await;
    let report = registry
        .collect_garbage(settings(), now_millis() + 48 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.deleted_blobs, 0);
    for blob in image.blobs() {
        let response = app
            .get(&format!("/v2/r/blobs/{}", Digest::sha256_of(blob)))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    app.delete(&format!("/v2/r/manifests/{}", image.digest))
        .await;
    let report = registry
        .collect_garbage(settings(), now_millis() + 48 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.deleted_blobs, 3);
    assert!(registry.fsck(true).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_blob_shared_with_another_repository_survives_its_deletion_from_one() {
    let app = TestApp::start().await;
    let image = app.push_image("keep", "v1", 1).await;
    let layer = Digest::sha256_of(&image.layers[0]);
    app.push_blob("drop", &image.layers[0]).await;
    let registry = app.registry().await;
    let report = registry
        .collect_garbage(settings(), now_millis() + 48 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.pruned_links, 1, "the link in `drop` is unused");
    assert_eq!(report.deleted_blobs, 0, "`keep` still uses the content");
    assert_eq!(
        app.get(&format!("/v2/drop/blobs/{layer}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v2/keep/blobs/{layer}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn idle_uploads_expire_with_their_bytes() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(vec![1; 500])
        .send()
        .await
        .unwrap();
    let registry = app.registry().await;
    let report = registry
        .collect_garbage(settings(), now_millis() + 23 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.expired_uploads, 0);
    assert_eq!(app.get(&location).await.status(), StatusCode::NO_CONTENT);
    let report = registry
        .collect_garbage(settings(), now_millis() + 25 * HOUR)
        .await
        .unwrap();
    assert_eq!(report.expired_uploads, 1);
    assert_eq!(app.get(&location).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(staged_size(&app, &location), 0);
}

#[tokio::test]
async fn leftovers_of_a_crash_are_swept_after_the_grace_period() {
    let app = TestApp::start().await;
    app.push_image("r", "v1", 1).await;
    let storage = app.data_dir().join("storage");
    // An object moved into place by an upload that crashed before committing its record.
    let orphan_folder = storage.join("blobs/sha256/ab").join("ab".repeat(32));
    std::fs::create_dir_all(&orphan_folder).unwrap();
    std::fs::write(
        orphan_folder.join("0b1e8c5e-0d5f-4a8e-9a55-000000000001"),
        b"orphan",
    )
    .unwrap();
    // Staged bytes of a session whose record is gone.
    std::fs::write(
        storage.join("uploads/0b1e8c5e-0d5f-4a8e-9a55-000000000002"),
        b"staged",
    )
    .unwrap();

    let registry = app.registry().await;
    let report = registry.fsck(true).await.unwrap();
    assert!(
        report.is_clean(),
        "leftovers are not inconsistencies: {report:?}"
    );
    assert_eq!(report.unused_objects, 1);

    let report = registry
        .collect_garbage(settings(), now_millis())
        .await
        .unwrap();
    assert_eq!(
        (report.orphan_objects, report.orphan_staging),
        (0, 0),
        "young leftovers may be a write in progress"
    );
    let report = registry
        .collect_garbage(settings(), now_millis() + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!((report.orphan_objects, report.orphan_staging), (1, 1));
    assert!(!orphan_folder.exists());
    // The image's blobs are untouched.
    let report = registry.fsck(true).await.unwrap();
    assert!(report.is_clean());
    assert_eq!((report.blobs_checked, report.unused_objects), (2, 0));
}

/// The garbage collector marks a blob for deletion; before it deletes the content, a client
/// uploads the same content again. The new upload must survive the old deletion.
#[tokio::test]
async fn a_blob_uploaded_again_while_being_collected_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<SqliteStore> = Arc::new(
        SqliteStore::open(&dir.path().join("metadata.db"))
            .await
            .unwrap(),
    );
    let gate = WriteGate::open(
        metadata.clone(),
        DrainSettings::default(),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    let blobs = BlobStore::filesystem(&dir.path().join("storage"), false).unwrap();
    let registry = Registry::new(
        metadata.clone(),
        blobs.clone(),
        gate.clone(),
        Limits::default(),
        dir.path().join("backups"),
    );
    let repository = "r".parse().unwrap();
    let content = random_bytes(10_000);
    let digest = Digest::sha256_of(&content);
    let body = || {
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(content.clone()))])
    };

    let first = registry
        .upload_monolithic(&repository, "client", &digest, body())
        .await
        .unwrap();
    registry.delete_blob(&repository, &digest).await.unwrap();

    // The collector's first step: the blob is claimed, and invisible from now on.
    let permit = gate
        .admit(WriteIntent::Housekeeping { job: "test" })
        .await
        .unwrap();
    let claimed = metadata
        .claim_unreferenced_blobs(&permit, now_millis() + HOUR, now_millis(), 10)
        .await
        .unwrap();
    assert_eq!(claimed, vec![first.clone()]);

    // The same content arrives again.
    let second = registry
        .upload_monolithic(&repository, "client", &digest, body())
        .await
        .unwrap();
    assert_ne!(second.storage_key, first.storage_key, "a new placement");

    // The collector's second step deletes what it claimed.
    blobs.delete(&permit, &first.storage_key).await.unwrap();
    metadata
        .forget_deleted_blob(&permit, &digest, &first.storage_key)
        .await
        .unwrap();
    drop(permit);

    let blob = registry.blob(&repository, &digest).await.unwrap();
    assert_eq!(blob.storage_key, second.storage_key);
    let mut stream = registry.read_blob(&blob, 0..blob.size).await.unwrap();
    let mut read = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, content);
    assert!(registry.fsck(true).await.unwrap().is_clean());
}

#[tokio::test]
async fn fsck_finds_damaged_and_missing_content() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 2).await;
    let registry = app.registry().await;
    let report = registry.fsck(true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.blobs_checked, report.manifests_checked), (3, 1));

    let blob_file = |content: &[u8]| {
        let digest = Digest::sha256_of(content);
        let folder = app
            .data_dir()
            .join("storage/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex());
        let file = std::fs::read_dir(folder)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        (digest, file)
    };
    // Same size, other bytes: only hashing notices.
    let (damaged, file) = blob_file(&image.layers[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let (missing, file) = blob_file(&image.layers[1]);
    std::fs::remove_file(file).unwrap();

    let report = registry.fsck(true).await.unwrap();
    assert_eq!(report.problems.len(), 2, "{report:?}");
    assert!(report.problems.iter().any(
        |p| matches!(p, FsckProblem::BlobDigestMismatch { digest, .. } if *digest == damaged)
    ));
    assert!(report.problems.iter().any(
        |p| matches!(p, FsckProblem::MissingBlobContent { digest, .. } if *digest == missing)
    ));

    let quick = registry.fsck(false).await.unwrap();
    assert_eq!(
        quick.problems.len(),
        1,
        "without hashing, only the missing content shows"
    );
    assert_eq!(quick.bytes_verified, 0);
}

/// A manifest stored before sizes were checked (here written into the database by hand) whose
/// descriptor declares another size than its blob's: fsck reports it.
#[tokio::test]
async fn fsck_finds_a_descriptor_of_the_wrong_size() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 1).await;
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["layers"][0]["size"] = serde_json::json!(1);
    let lying = serde_json::to_vec(&manifest).unwrap();
    let lying_digest = Digest::sha256_of(&lying);
    let inserted = with_database!(app, |database| sqlx::query(
        "INSERT INTO manifests (repository_id, digest, media_type, size, content, created_at)
         SELECT id, $1, $2, $3, $4, 0 FROM repositories WHERE name = 'r'",
    )
    .bind(lying_digest.to_string())
    .bind("application/vnd.oci.image.manifest.v1+json")
    .bind(lying.len() as i64)
    .bind(&lying)
    .execute(&database)
    .await
    .unwrap()
    .rows_affected());
    assert_eq!(inserted, 1);

    let report = app.registry().await.fsck(false).await.unwrap();
    let layer = Digest::sha256_of(&image.layers[0]);
    assert_eq!(
        report.problems,
        [FsckProblem::DescriptorSizeMismatch {
            repository: "r".to_owned(),
            manifest: lying_digest,
            child: layer,
            declared: 1,
            actual: image.layers[0].len() as u64,
        }]
    );
}
