//! Blobs in S3 through the HTTP API, always on the S3 server `scripts/s3` started (s3s-fs,
//! which checks every signature), whatever `TEST_STORAGE` says: pushes of every shape pulled
//! back byte-identical, a pull that writes nothing to the bucket, `OCI-Chunk-Min-Length`,
//! redirects to presigned URLs, garbage collection and upload expiry, fsck, and the startup
//! check's one-line error.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use wharf_config::Config;
use wharf_core::digest::Digest;
use wharf_core::time::now_millis;
use wharf_registry::GcSettings;
use wharf_storage::BlobStore;

use crate::app::{
    OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, TestApp, descriptor, header, location, random_bytes,
    use_moto, use_s3, with_query,
};

const MIB: usize = 1024 * 1024;
/// The part size the tests configure (S3's smallest).
const PART: usize = 5 * MIB;

/// A registry with its blobs in S3, the key files beside its data folder.
async fn s3_app(adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::start_with(|config| {
        let dir = config.storage.data_dir.parent().unwrap().to_owned();
        use_s3(config, &dir);
        adjust(config);
    })
    .await
}

/// What the registry's prefix in the bucket holds: every committed object (key and time) and
/// every upload with staged objects.
async fn bucket_listing(app: &TestApp) -> (Vec<(String, i64)>, Vec<String>) {
    use futures_util::StreamExt;
    let blobs = BlobStore::s3(&app.config.storage.s3.settings().unwrap())
        .await
        .unwrap();
    let mut objects: Vec<_> = blobs
        .list_objects()
        .map(|o| {
            let o = o.unwrap();
            (o.key.as_str().to_owned(), o.modified_millis)
        })
        .collect()
        .await;
    objects.sort();
    let mut staged: Vec<_> = blobs
        .staged_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    staged.sort();
    (objects, staged)
}

/// Pushes `content` in chunks of `chunk` bytes (PATCHes with Content-Range), then completes
/// it; checks each answer advertises the part size as the smallest chunk.
async fn push_chunked(app: &TestApp, repository: &str, content: &[u8], chunk: usize) -> Digest {
    let response = app
        .request(Method::POST, &format!("/v2/{repository}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "oci-chunk-min-length"), PART.to_string());
    let mut location = location(&response);
    let mut sent = 0;
    for piece in content.chunks(chunk) {
        let response = app
            .request(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{sent}-{}", sent + piece.len() - 1),
            )
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{}",
            response.text().await.unwrap()
        );
        assert_eq!(header(&response, "oci-chunk-min-length"), PART.to_string());
        sent += piece.len();
        assert_eq!(header(&response, "range"), format!("0-{}", sent - 1));
        location = crate::app::location(&response);
    }
    let digest = Digest::sha256_of(content);
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    digest
}

/// A monolithic push: `POST ?digest=` with the whole body.
async fn push_monolithic(app: &TestApp, repository: &str, content: &[u8]) -> Digest {
    let digest = Digest::sha256_of(content);
    let response = app
        .request(
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    digest
}

async fn pull_blob(app: &TestApp, repository: &str, digest: &Digest) -> Vec<u8> {
    let response = app.get(&format!("/v2/{repository}/blobs/{digest}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().to_vec()
}

/// Pushes of every shape (monolithic over several parts, chunked in PATCHes smaller than a
/// part, chunked in one PATCH, POST then PUT) are pulled back byte-identical, whole and in
/// ranges; and the pulls write nothing to the bucket.
#[tokio::test]
async fn pushes_of_every_shape_pull_back_identical_and_a_pull_writes_nothing() {
    let app = s3_app(|_| {}).await;
    let repository = "s3/app";
    let monolithic = random_bytes(2 * PART + 123);
    let small_chunks = random_bytes(PART + 3 * MIB + 7);
    let one_chunk = random_bytes(PART + 1);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let pushed = [
        (
            push_monolithic(&app, repository, &monolithic).await,
            &monolithic,
        ),
        (
            push_chunked(&app, repository, &small_chunks, MIB).await,
            &small_chunks,
        ),
        (
            push_chunked(&app, repository, &one_chunk, one_chunk.len()).await,
            &one_chunk,
        ),
        (app.push_blob(repository, &config).await, &config),
    ];
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [
            descriptor(OCI_LAYER, &monolithic),
            descriptor(OCI_LAYER, &small_chunks),
            descriptor(OCI_LAYER, &one_chunk),
        ],
    }))
    .unwrap();
    let response = app
        .put_manifest(repository, "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let before = bucket_listing(&app).await;
    assert_eq!(before.0.len(), 4, "one object per blob: {before:?}");
    assert!(before.1.is_empty(), "nothing staged is left: {before:?}");

    let response = app.get(&format!("/v2/{repository}/manifests/v1")).await;
    assert_eq!(response.bytes().await.unwrap(), manifest);
    for (digest, content) in pushed {
        assert_eq!(pull_blob(&app, repository, &digest).await, *content);
        let head = app.head(&format!("/v2/{repository}/blobs/{digest}")).await;
        assert_eq!(header(&head, "content-length"), content.len().to_string());
        let range = app
            .request(Method::GET, &format!("/v2/{repository}/blobs/{digest}"))
            .header("range", "bytes=3-12")
            .send()
            .await
            .unwrap();
        assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(range.bytes().await.unwrap(), &content[3..13]);
    }
    assert_eq!(
        bucket_listing(&app).await,
        before,
        "the pulls wrote to the bucket"
    );

    let report = app.registry().await.fsck(true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.blobs_checked, report.unused_objects), (4, 0));
}

/// A digest that does not match leaves nothing in the bucket, for a monolithic push and for a
/// chunked one (whose session stays, so the client may still complete it correctly).
#[tokio::test]
async fn a_wrong_digest_stores_nothing() {
    let app = s3_app(|_| {}).await;
    let content = random_bytes(PART + 10);
    let wrong = Digest::sha256_of(b"not this");
    let response = app
        .request(
            Method::POST,
            &format!("/v2/s3/app/blobs/uploads/?digest={wrong}"),
        )
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bucket_listing(&app).await, (vec![], vec![]));

    let location = app.open_upload("s3/app").await;
    let response = app
        .request(Method::PATCH, &location)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = crate::app::location(&response);
    let refused = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={wrong}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(bucket_listing(&app).await.0.is_empty());
    let digest = Digest::sha256_of(&content);
    let completed = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), StatusCode::CREATED);
    assert_eq!(pull_blob(&app, "s3/app", &digest).await, content);
}

/// With `storage.s3.redirect`, a blob GET answers 307 to a presigned URL that serves the blob
/// (ranges too); HEAD is still answered by the registry.
#[tokio::test]
async fn redirect_mode_sends_pulls_to_a_presigned_url() {
    let app = s3_app(|config| config.storage.s3.redirect = true).await;
    let content = random_bytes(300_000);
    let digest = push_monolithic(&app, "s3/app", &content).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(format!("{}/v2/s3/app/blobs/{digest}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    let url = location(&response);
    let endpoint = app.config.storage.s3.endpoint.clone().unwrap();
    assert!(url.starts_with(&endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let direct = reqwest::get(&url).await.unwrap();
    assert_eq!(direct.bytes().await.unwrap(), content);
    let ranged = no_redirects
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.bytes().await.unwrap(), &content[..10]);
    // Followed as a client follows it.
    assert_eq!(pull_blob(&app, "s3/app", &digest).await, content);

    let head = app.head(&format!("/v2/s3/app/blobs/{digest}")).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), content.len().to_string());
}

/// Garbage collection on S3 deletes a blob nothing refers to and expires an idle upload with
/// its part and staged bytes, and leaves nothing of either in the bucket.
#[tokio::test]
async fn garbage_collection_and_upload_expiry_clear_the_bucket() {
    let app = s3_app(|_| {}).await;
    let unreferenced = app.push_blob("s3/app", b"nothing refers to this").await;
    let location = app.open_upload("s3/app").await;
    let response = app
        .request(Method::PATCH, &location)
        .body(random_bytes(PART + MIB))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (objects, staged) = bucket_listing(&app).await;
    assert_eq!((objects.len(), staged.len()), (1, 1));

    let hour = Duration::from_secs(3600);
    let settings = GcSettings {
        grace: hour,
        upload_expiry: hour,
    };
    let later = now_millis() + 2 * 3_600_000;
    let report = app
        .registry()
        .await
        .collect_garbage(settings, later)
        .await
        .unwrap();
    assert_eq!(
        (report.deleted_blobs, report.expired_uploads),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(bucket_listing(&app).await, (vec![], vec![]));
    let gone = app.get(&format!("/v2/s3/app/blobs/{unreferenced}")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

/// A registry whose bucket is wrong, or whose key is, does not start: the error is one line
/// naming the bucket and what failed, and holds no secret.
#[tokio::test]
async fn a_wrong_bucket_or_key_stops_the_start_with_one_line() {
    async fn start_error(adjust: impl FnOnce(&mut Config, &std::path::Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().join("data");
        use_s3(&mut config, dir.path());
        adjust(&mut config, dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = wharf_server::serve_with(
            config,
            listener,
            std::future::pending(),
            wharf_server::ServeOptions::default(),
        );
        match tokio::time::timeout(Duration::from_secs(60), served).await {
            Ok(Err(error)) => error.to_string(),
            Ok(Ok(())) => panic!("the server ran and stopped"),
            Err(_) => panic!("the server started"),
        }
    }
    let message = start_error(|config, _| config.storage.s3.bucket = "no-such-bucket".into()).await;
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("\"no-such-bucket\""), "{message}");
    assert!(message.contains("cannot list objects"), "{message}");

    let secret = "a-wrong-secret-never-shown";
    let message = start_error(|config, dir| {
        let file = dir.join("wrong-secret");
        std::fs::write(&file, secret).unwrap();
        config.storage.s3.secret_access_key_file = Some(file);
    })
    .await;
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("S3 bucket \"wharf\""), "{message}");
    assert!(!message.contains(secret), "{message}");
}

/// A chunked upload hashed with sha256 as it arrived cannot be completed with a sha512 digest
/// in S3 (unfinished parts cannot be read back to hash again): the refusal says what to do, and
/// the session is kept, so completing it with its sha256 digest still works.
#[tokio::test]
async fn completing_with_another_algorithm_is_refused_with_what_to_do() {
    let app = s3_app(|_| {}).await;
    let content = random_bytes(1000);
    let location = app.open_upload("s3/app").await;
    let response = app
        .request(Method::PATCH, &location)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    let location = crate::app::location(&response);
    let mut hasher = wharf_core::digest::ContentHasher::new(wharf_core::digest::Algorithm::Sha512);
    hasher.update(&content);
    let sha512 = hasher.finish();
    let refused = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={sha512}")),
        )
        .send()
        .await
        .unwrap();
    let message =
        crate::app::expect_error(refused, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(message.contains("?digest-algorithm=sha512"), "{message}");
    let digest = Digest::sha256_of(&content);
    let completed = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), StatusCode::CREATED);
}

/// A backup of a registry whose blobs are in S3 copies them from the bucket; a restore with
/// blobs in S3 writes them into the bucket (here another prefix), and the restored registry
/// serves the image byte-identical and is clean.
#[tokio::test]
async fn a_backup_from_s3_restores_into_a_bucket() {
    let app = s3_app(|_| {}).await;
    let image = app.push_image("s3/app", "v1", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    let snapshot = crate::backup::snapshot(&app).await;
    crate::backup::copy(&app, &snapshot, &backup).await;

    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("restored");
    config.storage.fsync = false;
    config.gc.enabled = false;
    use_s3(&mut config, dir.path());
    assert_ne!(config.storage.s3.prefix, app.config.storage.s3.prefix);
    let blobs = BlobStore::s3(&config.storage.s3.settings().unwrap())
        .await
        .unwrap();
    let target = wharf_backup::RestoreTarget {
        blobs: Some(blobs),
        ..wharf_backup::RestoreTarget::folder(&config.storage.data_dir, false)
    };
    let report = wharf_backup::restore(&backup, target, &crate::backup::Silent)
        .await
        .unwrap();
    assert!(report.fsck.is_clean(), "{report:?}");
    assert_eq!(report.blobs, 3);
    assert!(
        !config.storage.data_dir.join("storage/blobs").exists(),
        "the blobs went into the bucket"
    );

    let restored = TestApp::start_with(|c| *c = config.clone()).await;
    assert_eq!(bucket_listing(&restored).await.0.len(), 3);
    let response = restored.get("/v2/s3/app/manifests/v1").await;
    assert_eq!(response.bytes().await.unwrap(), image.manifest);
    for blob in image.blobs() {
        let digest = Digest::sha256_of(blob);
        assert_eq!(pull_blob(&restored, "s3/app", &digest).await, *blob);
    }
}

/// A multipart upload a killed process left open (here: one whose session was never
/// recorded) is aborted by garbage collection, while the multipart upload of a session still
/// open is kept. On moto, which lists multipart uploads — but reports the same initiation time
/// (in 2010) for all of them, so the grace period is not what this tests.
#[tokio::test]
async fn garbage_collection_aborts_multipart_uploads_a_killed_process_left() {
    let app = TestApp::start_with(|config| {
        let dir = config.storage.data_dir.parent().unwrap().to_owned();
        use_moto(config, &dir);
    })
    .await;
    // A session still open, past its first part: its multipart upload is its own.
    let location = app.open_upload("s3/app").await;
    let response = app
        .request(Method::PATCH, &location)
        .body(random_bytes(PART + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // A monolithic push cut off after its first part, by a process that then died: nothing
    // but the bucket knows of its multipart upload.
    let registry = app.registry().await;
    let blobs = registry.blobs().clone();
    let orphan = wharf_core::upload_id::UploadId::generate();
    {
        let permit = registry
            .gate()
            .admit(wharf_gate::WriteIntent::Housekeeping { job: "test" })
            .await
            .unwrap();
        let lock = blobs.lock_upload(&orphan).unwrap();
        let hash = wharf_storage::HashResume::new(
            wharf_core::digest::ContentHasher::new(wharf_core::digest::Algorithm::Sha256),
            0,
            None,
        );
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            random_bytes(PART + 1),
        ))]);
        blobs
            .append_upload(&permit, &lock, 0, "", body, hash, None)
            .await
            .unwrap();
    }
    assert_eq!(blobs.open_multipart_uploads().await.unwrap().len(), 2);

    let settings = GcSettings {
        grace: Duration::from_secs(3600),
        upload_expiry: Duration::from_secs(24 * 3600),
    };
    let later = registry
        .collect_garbage(settings, now_millis() + 2 * 3_600_000)
        .await
        .unwrap();
    assert_eq!(later.aborted_multipart_uploads, 1, "{later:?}");
    let open = blobs.open_multipart_uploads().await.unwrap();
    assert_eq!(open.len(), 1);
    let session = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(open[0].key.upload_id().unwrap().to_string(), session);
}
