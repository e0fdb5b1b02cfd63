//! Graceful shutdown: requests in flight finish; writes that outlast the grace period are
//! cancelled without leaving anything half-written.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use wharf_config::HumanDuration;
use wharf_core::digest::Digest;

use crate::app::{HeldBody, TestApp, eventually, header, staged_size, with_query};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn an_upload_in_flight_finishes_during_shutdown() {
    let mut app = TestApp::start().await;
    let location = app.open_upload("r").await;
    let (body, request_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &location)
            .body(request_body)
            .send(),
    );
    body.send(&vec![1; 2 * MIB]).await;
    eventually("the chunk is being written", || {
        staged_size(&app, &location) > 0
    })
    .await;

    app.begin_shutdown();
    // The rest of the chunk arrives after shutdown began, and is accepted.
    body.send(&vec![1; MIB]).await;
    body.finish();
    let response = patch.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "range"), format!("0-{}", 3 * MIB - 1));
    app.stop().await;

    let app = app.restart().await;
    let status = app.get(&location).await;
    assert_eq!(
        header(&status, "range"),
        format!("0-{}", 3 * MIB - 1),
        "the chunk was committed"
    );
}

#[tokio::test]
async fn writes_outlasting_the_grace_period_are_cancelled_cleanly() {
    let mut app = TestApp::start_with(|c| {
        c.server.shutdown_grace = HumanDuration(Duration::from_millis(200))
    })
    .await;
    let location = app.open_upload("r").await;
    app.request(Method::PATCH, &location)
        .body(vec![1; 100])
        .send()
        .await
        .unwrap();

    // A chunk and a monolithic upload, both stalled mid-body.
    let (chunk, chunk_body) = HeldBody::new();
    let patch = tokio::spawn(
        app.request(Method::PATCH, &location)
            .body(chunk_body)
            .send(),
    );
    chunk.send(&vec![2; 2 * MIB]).await;
    let content = vec![3; 3 * MIB];
    let digest = Digest::sha256_of(&content);
    let (whole, whole_body) = HeldBody::new();
    let post = tokio::spawn(
        app.request(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={digest}"),
        )
        .body(whole_body)
        .send(),
    );
    whole.send(&content[..2 * MIB]).await;
    eventually("the chunk is being written", || {
        staged_size(&app, &location) > 100
    })
    .await;

    app.stop().await;
    // Both requests ended without success (the server answered 503, or the connection closed).
    for request in [patch, post] {
        if let Ok(response) = request.await.unwrap() {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    drop((chunk, whole));

    let app = app.restart().await;
    assert_eq!(
        header(&app.get(&location).await, "range"),
        "0-99",
        "the cancelled chunk was not committed"
    );
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    // The session still works.
    let rest = Digest::sha256_of(&[1; 100]);
    let response = app
        .request(
            Method::PUT,
            &with_query(&location, &format!("digest={rest}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(app.registry().await.fsck(true).await.unwrap().is_clean());
}
