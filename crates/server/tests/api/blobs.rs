//! Reading and deleting blobs: HEAD, GET with ranges, DELETE, repository isolation.

use reqwest::{Method, StatusCode};
use wharf_core::digest::Digest;

use crate::app::{TestApp, expect_error, header, random_bytes};

const UNKNOWN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn head_and_get_serve_the_blob_with_its_headers() {
    let app = TestApp::start().await;
    let content = random_bytes(70_000);
    let digest = app.push_blob("team/app", &content).await;
    let path = format!("/v2/team/app/blobs/{digest}");

    let head = app.head(&path).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "70000");
    assert_eq!(header(&head, "docker-content-digest"), digest.to_string());
    assert_eq!(header(&head, "accept-ranges"), "bytes");
    assert_eq!(header(&head, "etag"), format!("\"{digest}\""));
    assert!(head.bytes().await.unwrap().is_empty());

    let get = app.get(&path).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "content-type"), "application/octet-stream");
    assert_eq!(get.bytes().await.unwrap().as_ref(), content.as_slice());
}

#[tokio::test]
async fn ranges_are_served_partially_or_refused() {
    let app = TestApp::start().await;
    let content = random_bytes(1000);
    let digest = app.push_blob("r", &content).await;
    let path = format!("/v2/r/blobs/{digest}");
    let ranged = |range: &'static str| {
        app.request(Method::GET, &path)
            .header("range", range)
            .send()
    };

    let response = ranged("bytes=10-19").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&response, "content-length"), "10");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &content[10..20]);

    let response = ranged("bytes=990-").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &content[990..]);

    let response = ranged("bytes=-5").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &content[995..]);

    let response = ranged("bytes=1000-2000").await.unwrap();
    assert_eq!(header(&response, "content-range"), "bytes */1000");
    expect_error(response, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;

    // An inverted range selects nothing.
    let response = ranged("bytes=500-0").await.unwrap();
    assert_eq!(header(&response, "content-range"), "bytes */1000");
    expect_error(response, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;

    // Several ranges, or a malformed one, may be ignored: the whole blob is served.
    for range in ["bytes=0-1,5-6", "bytes=x-y", "pages=1-2"] {
        let response = ranged(range).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{range}");
        assert_eq!(response.bytes().await.unwrap().len(), 1000);
    }
}

#[tokio::test]
async fn unknown_and_malformed_digests() {
    let app = TestApp::start().await;
    app.push_blob("r", b"x").await;
    let response = app.get(&format!("/v2/r/blobs/{UNKNOWN}")).await;
    expect_error(response, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_eq!(
        app.head(&format!("/v2/r/blobs/{UNKNOWN}")).await.status(),
        StatusCode::NOT_FOUND
    );
    for bad in [
        "sha256:abc",
        "nothing",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:ZZ",
    ] {
        let response = app.get(&format!("/v2/r/blobs/{bad}")).await;
        expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

#[tokio::test]
async fn a_blob_is_visible_only_in_repositories_it_was_pushed_or_mounted_to() {
    let app = TestApp::start().await;
    let digest = app.push_blob("one", b"private layer").await;
    let response = app.get(&format!("/v2/two/blobs/{digest}")).await;
    expect_error(response, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn delete_removes_the_blob_from_the_repository() {
    let app = TestApp::start().await;
    let digest = app.push_blob("r", b"to delete").await;
    app.push_blob("other", b"to delete").await;
    let response = app.delete(&format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    expect_error(
        app.get(&format!("/v2/r/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    // Other repositories keep it.
    assert_eq!(
        app.get(&format!("/v2/other/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
    // Deleting again: it is no longer there.
    expect_error(
        app.delete(&format!("/v2/r/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn a_blob_a_manifest_uses_cannot_be_deleted_from_under_it() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 1).await;
    let layer = Digest::sha256_of(&image.layers[0]);
    let message = expect_error(
        app.delete(&format!("/v2/r/blobs/{layer}")).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "DENIED",
    )
    .await;
    assert!(
        message.contains("delete those manifests first"),
        "{message}"
    );
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{layer}")).await.status(),
        StatusCode::OK
    );
    // Once the manifest is gone, the blob can go.
    assert_eq!(
        app.delete(&format!("/v2/r/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.delete(&format!("/v2/r/blobs/{layer}")).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn large_blobs_stream_through_intact() {
    let app = TestApp::start().await;
    // Larger than every internal buffer, and not a multiple of any of them.
    let content = random_bytes(5 * 1024 * 1024 + 12345);
    let digest = app.push_blob("big", &content).await;
    let body = app
        .get(&format!("/v2/big/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&body), digest);
}
