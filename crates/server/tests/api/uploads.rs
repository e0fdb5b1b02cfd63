//! Blob uploads: monolithic, chunked, status, cancel, mount, resumption, and bad input.

use reqwest::{Method, StatusCode};
use wharf_core::digest::{Algorithm, ContentHasher, Digest};

use crate::app::{
    HeldBody, TestApp, eventually, expect_error, header, location, random_bytes, staged_size,
    with_database, with_query,
};

#[tokio::test]
async fn post_then_put_with_the_content() {
    let app = TestApp::start().await;
    let response = app
        .request(Method::POST, "/v2/r/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = location(&response);
    assert!(location.starts_with("/v2/r/blobs/uploads/"), "{location}");
    assert_eq!(header(&response, "range"), "0-0");
    assert_eq!(
        header(&response, "docker-upload-uuid"),
        location.rsplit('/').next().unwrap()
    );
    assert_eq!(header(&response, "content-length"), "0");

    let content = b"monolithic after post";
    let digest = Digest::sha256_of(content);
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/r/blobs/{digest}")
    );
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    // The session is finished.
    expect_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn single_post_with_digest_uploads_at_once() {
    let app = TestApp::start().await;
    let content = random_bytes(3000);
    let digest = Digest::sha256_of(&content);
    let response = app
        .request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/r/blobs/{digest}")
    );
    let body = app
        .get(&format!("/v2/r/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), content.as_slice());
}

#[tokio::test]
async fn sha512_digests_are_verified_too() {
    let app = TestApp::start().await;
    let content = random_bytes(2000);
    let mut hasher = ContentHasher::new(Algorithm::Sha512);
    hasher.update(&content);
    let digest = hasher.finish();
    // Monolithic: hashed as sha512 while receiving.
    let response = app
        .request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
        )
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // Chunked: hashed as sha256 while receiving, so verified by re-reading.
    let location = app.open_upload("s").await;
    let response = app
        .request(Method::PATCH, &location)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = app
        .get(&format!("/v2/s/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), content.as_slice());
}

/// `digest-algorithm` on the `POST` says which digest will complete the upload, so the session
/// hashes with it while receiving; an algorithm Wharf does not implement is refused at once.
#[tokio::test]
async fn an_upload_hashes_with_the_digest_algorithm_it_was_opened_with() {
    let app = TestApp::start().await;
    let content = random_bytes(3000);
    let mut hasher = ContentHasher::new(Algorithm::Sha512);
    hasher.update(&content);
    let digest = hasher.finish();
    let response = app
        .request(Method::POST, "/v2/r/blobs/uploads/?digest-algorithm=sha512")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = location(&response);
    let algorithm: String = with_database!(app, |database| sqlx::query_scalar(
        "SELECT hash_algorithm FROM upload_sessions"
    )
    .fetch_one(&database)
    .await
    .unwrap());
    assert_eq!(algorithm, "sha512");
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );

    let message = expect_error(
        app.request(Method::POST, "/v2/r/blobs/uploads/?digest-algorithm=md5")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert!(message.contains("md5"), "{message}");
}

#[tokio::test]
async fn chunks_with_content_range_then_put() {
    let app = TestApp::start().await;
    let content = random_bytes(10_000);
    let digest = Digest::sha256_of(&content);
    let mut location = app.open_upload("r").await;
    for (start, end) in [(0usize, 4095usize), (4096, 8191), (8192, 9999)] {
        let response = app
            .request(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{end}"))
            .body(content[start..=end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "range"), format!("0-{end}"));
        location = header(&response, "location");
    }
    let status = app.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), "0-9999");

    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = app
        .get(&format!("/v2/r/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), content.as_slice());
}

#[tokio::test]
async fn a_final_chunk_may_come_with_the_put() {
    let app = TestApp::start().await;
    let content = random_bytes(5000);
    let digest = Digest::sha256_of(&content);
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(content[..3000].to_vec())
        .send()
        .await
        .unwrap();
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .header("content-range", "3000-4999")
        .body(content[3000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        content.as_slice()
    );
}

#[tokio::test]
async fn out_of_order_chunks_are_416_and_leave_the_session_intact() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    let chunk = |range: &str, body: &[u8]| {
        app.request(Method::PATCH, &location)
            .header("content-range", range.to_owned())
            .body(body.to_vec())
            .send()
    };
    // Skipping ahead.
    let response = chunk("10-19", &[1; 10]).await.unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&response, "range"), "0-0");
    assert_eq!(header(&response, "location"), location);
    expect_error(
        response,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;

    assert_eq!(
        chunk("0-9", &[1; 10]).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    // Repeating a chunk already received.
    let response = chunk("0-9", &[1; 10]).await.unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&response, "range"), "0-9");
    // The session still has its 10 bytes.
    let status = app.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), "0-9");
}

#[tokio::test]
async fn content_range_must_match_the_body() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    let response = app
        .request(Method::PATCH, &location)
        .header("content-range", "0-99")
        .body(vec![7; 50])
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    assert_eq!(
        header(&app.get(&location).await, "range"),
        "0-0",
        "nothing was committed"
    );

    for bad in ["garbage", "9-3", "bytes=a-b"] {
        let response = app
            .request(Method::PATCH, &location)
            .header("content-range", bad)
            .body(vec![7; 5])
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    }
}

#[tokio::test]
async fn a_wrong_digest_stores_nothing() {
    let app = TestApp::start().await;
    let claimed = Digest::sha256_of(b"what the client claims");
    let response = app
        .request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={claimed}"),
        )
        .body(b"what the client sends".to_vec())
        .send()
        .await
        .unwrap();
    let message = expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(message.contains(&claimed.to_string()), "{message}");
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{claimed}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let actual = Digest::sha256_of(b"what the client sends");
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{actual}")).await.status(),
        StatusCode::NOT_FOUND
    );

    // A session keeps its bytes after a wrong PUT; the right digest then completes it.
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={claimed}")),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(header(&app.get(&location).await, "range"), "0-2");
    let right = Digest::sha256_of(b"abc");
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={right}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn put_needs_a_valid_digest() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    let response = app
        .request(Method::PUT, &location)
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let response = app
        .request(Method::PUT, &with_query(&location, "digest=sha256:short"))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let response = app
        .request(
            Method::POST,
            "/v2/r/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e",
        )
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    let message = expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(message.contains("unsupported"), "{message}");
}

#[tokio::test]
async fn cancel_deletes_the_session_and_its_bytes() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(vec![1; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(staged_size(&app, &location), 100);
    let response = app.delete(&location).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(staged_size(&app, &location), 0);
    expect_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        app.delete(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn unknown_sessions_and_sessions_of_other_repositories() {
    let app = TestApp::start().await;
    let location = app.open_upload("mine").await;
    let id = location.rsplit('/').next().unwrap();
    for path in [
        format!("/v2/theirs/blobs/uploads/{id}"),
        "/v2/mine/blobs/uploads/not-a-session".to_owned(),
        "/v2/mine/blobs/uploads/4b1e8c5e-0d5f-4a8e-9a55-000000000000".to_owned(),
    ] {
        expect_error(
            app.get(&path).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
        let response = app
            .request(Method::PATCH, &path)
            .body(b"x".to_vec())
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
}

#[tokio::test]
async fn mount_links_a_blob_from_another_repository() {
    let app = TestApp::start().await;
    let digest = app.push_blob("source", b"shared layer").await;
    let response = app
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}&from=source"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/target/blobs/{digest}")
    );
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    assert_eq!(
        app.get(&format!("/v2/target/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"shared layer"
    );
}

#[tokio::test]
async fn mount_falls_back_to_an_upload_when_the_source_lacks_the_blob() {
    let app = TestApp::start().await;
    let digest = app.push_blob("elsewhere", b"not in source").await;
    let nowhere = Digest::sha256_of(b"in no repository");
    for query in [
        format!("mount={digest}&from=source"),
        format!("mount={nowhere}"),
    ] {
        let response = app
            .request(Method::POST, &format!("/v2/target/blobs/uploads/?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{query}");
        assert!(location(&response).starts_with("/v2/target/blobs/uploads/"));
    }
    assert_eq!(
        app.get(&format!("/v2/target/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// A mount without `from` leaves the registry to find the blob ("automatic content discovery").
#[tokio::test]
async fn a_mount_without_a_source_finds_the_blob_in_another_repository() {
    let app = TestApp::start().await;
    let digest = app.push_blob("elsewhere", b"found by digest alone").await;
    let response = app
        .request(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/target/blobs/{digest}")
    );
    assert_eq!(
        app.get(&format!("/v2/target/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"found by digest alone"
    );
}

/// Sends `chunk`, which starts at byte `start` of the upload at `location`, as a `PATCH` with
/// its `Content-Range`; the upload takes it.
async fn send_chunk(app: &TestApp, location: &str, start: usize, chunk: &[u8]) {
    let response = app
        .request(Method::PATCH, location)
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// Completes the upload at `location` (in repository `r`) as `content`, and reads the blob back.
async fn complete_and_read_back(app: &TestApp, location: &str, content: &[u8]) {
    let digest = Digest::sha256_of(content);
    let response = app
        .request(
            Method::PUT,
            &with_query(location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = app
        .get(&format!("/v2/r/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&body), digest);
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart() {
    let app = TestApp::start().await;
    let content = random_bytes(300_000);
    let location = app.open_upload("r").await;
    send_chunk(&app, &location, 0, &content[..150_000]).await;

    let app = app.restart().await;
    let status = app.get(&location).await;
    assert_eq!(header(&status, "range"), "0-149999");
    send_chunk(&app, &location, 150_000, &content[150_000..]).await;
    complete_and_read_back(&app, &location, &content).await;
}

/// A chunk is answered before its hashing has ended, so the hash state saved with the session
/// may cover fewer bytes than were received. After a restart, with that hashing gone, the upload
/// continues from the saved state and first hashes the staged bytes it does not cover. Here the
/// saved state is set back (through another connection to the database) to cover none of
/// them, the furthest it can lag.
#[tokio::test]
async fn an_upload_whose_saved_hash_lags_resumes_after_a_restart() {
    let app = TestApp::start().await;
    let content = random_bytes(3 << 20);
    let split = 2 << 20;
    let location = app.open_upload("r").await;
    send_chunk(&app, &location, 0, &content[..split]).await;

    with_database!(app, |database| {
        let (received, hashed): (i64, i64) =
            sqlx::query_as("SELECT received, hashed FROM upload_sessions")
                .fetch_one(&database)
                .await
                .unwrap();
        assert_eq!(received, split as i64);
        assert!(hashed <= received, "{hashed} of {received} bytes hashed");
        sqlx::query("UPDATE upload_sessions SET hashed = 0, hash_state = $1")
            .bind(ContentHasher::new(Algorithm::Sha256).save())
            .execute(&database)
            .await
            .unwrap();
    });

    let app = app.restart().await;
    send_chunk(&app, &location, split, &content[split..]).await;
    complete_and_read_back(&app, &location, &content).await;
}

#[tokio::test]
async fn a_body_broken_off_commits_nothing_and_the_upload_continues() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(vec![1; 1000])
        .send()
        .await
        .unwrap();

    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &location)
            .body(request_body)
            .send(),
    );
    body.send(&vec![2; 2 * 1024 * 1024]).await;
    eventually("the server has staged part of the broken chunk", || {
        staged_size(&app, &location) > 1000
    })
    .await;
    body.abort().await;
    let _ = patch.await.unwrap();
    // The client saw its own failure first; the server lets go of the session just after.
    wait_until_session_is_free(&app, &location).await;

    let status = app.get(&location).await;
    assert_eq!(
        header(&status, "range"),
        "0-999",
        "the broken chunk was not committed"
    );
    // The garbage after byte 1000 is discarded by the next chunk.
    let mut content = vec![1u8; 1000];
    content.extend_from_slice(&[3; 500]);
    let response = app
        .request(Method::PATCH, &location)
        .body(vec![3; 500])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let digest = Digest::sha256_of(&content);
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={digest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}"))
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        content.as_slice()
    );
}

/// Waits until no request holds the session, probing with a chunk that cannot be written (it
/// starts far past the end): 409 while the session is busy, 416 once it is free.
async fn wait_until_session_is_free(app: &TestApp, location: &str) {
    for _ in 0..500 {
        let probe = app
            .request(Method::PATCH, location)
            .header("content-range", "999999999-999999999")
            .body(vec![0])
            .send()
            .await
            .unwrap();
        match probe.status() {
            StatusCode::CONFLICT => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            status => {
                assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
                return;
            }
        }
    }
    panic!("the session stayed busy");
}

#[tokio::test]
async fn one_request_at_a_time_writes_to_a_session() {
    let app = TestApp::start().await;
    let location = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let first = tokio::spawn(
        app.request(Method::PATCH, &location)
            .body(request_body)
            .send(),
    );
    body.send(&vec![5; 2 * 1024 * 1024]).await;
    eventually("the first chunk is being written", || {
        staged_size(&app, &location) > 0
    })
    .await;

    let second = app
        .request(Method::PATCH, &location)
        .body(vec![6; 10])
        .send()
        .await
        .unwrap();
    expect_error(second, StatusCode::CONFLICT, "BLOB_UPLOAD_INVALID").await;

    body.finish();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&first, "range"),
        format!("0-{}", 2 * 1024 * 1024 - 1)
    );
}

#[tokio::test]
async fn blobs_over_the_size_limit_are_refused() {
    let app =
        TestApp::start_with(|c| c.limits.max_blob_size = Some(wharf_config::ByteSize(1000))).await;
    let content = vec![9; 1001];
    let digest = Digest::sha256_of(&content);
    let response = app
        .request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
        )
        .body(content)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.push_blob("r", &[9; 1000]).await,
        Digest::sha256_of(&[9; 1000])
    );
}

#[tokio::test]
async fn the_same_content_pushed_twice_is_stored_once() {
    let app = TestApp::start().await;
    let content = random_bytes(4000);
    let digest = app.push_blob("a", &content).await;
    assert_eq!(app.push_blob("b", &content).await, digest);
    let placements = std::fs::read_dir(
        app.data_dir()
            .join("storage/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex()),
    )
    .unwrap()
    .count();
    assert_eq!(placements, 1);
    let staged = std::fs::read_dir(app.data_dir().join("storage/uploads"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "no staged upload is left behind");
}

/// The server keeps the sessions it is continuing in memory, but the database stays the judge:
/// a session deleted behind the server's back (here through another connection to its
/// database, as another process could) is unknown to its next chunk, which changes nothing.
#[tokio::test]
async fn a_session_deleted_behind_the_servers_back_is_unknown_to_its_next_chunk() {
    let app = TestApp::start().await;
    let opened = app.open_upload("mine").await;
    let patch = |location: String, range: &'static str, body: &'static [u8]| {
        app.request(Method::PATCH, &location)
            .header("Content-Range", range)
            .body(body)
            .send()
    };
    let response = patch(opened, "0-4", b"hello").await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let next = location(&response);

    let deleted = with_database!(app, |database| sqlx::query("DELETE FROM upload_sessions")
        .execute(&database)
        .await
        .unwrap()
        .rows_affected());
    assert_eq!(deleted, 1);

    let response = patch(next.clone(), "5-9", b"world").await.unwrap();
    expect_error(response, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    expect_error(
        app.get(&next).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let count: i64 = with_database!(app, |database| sqlx::query_scalar(
        "SELECT COUNT(*) FROM upload_sessions"
    )
    .fetch_one(&database)
    .await
    .unwrap());
    assert_eq!(count, 0);
}
