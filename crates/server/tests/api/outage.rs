//! The metadata database going away under a running server (PostgreSQL, on a server of the
//! test's own, stopped and started again): requests are answered `503` with a message that says
//! so within the acquire timeout — not a 500, not a hang — and the server serves again by
//! itself once the database is back.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use wharf_config::{DatabaseUrl, HumanDuration};
use wharf_metadata_postgres::testing::PrivateServer;

use crate::app::TestApp;

/// The acquire and statement timeouts of the test's server: how long a request may wait.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Asserts that `response` is the answer of a server whose metadata database is unreachable.
async fn assert_database_unavailable(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_eq!(response.headers()["retry-after"], "5", "{what}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("metadata database is unreachable"),
        "{what}: {message}"
    );
}

#[tokio::test]
async fn while_the_metadata_database_is_down_requests_get_503_and_then_it_recovers() {
    let database = PrivateServer::start().expect("a PostgreSQL server of the test's own");
    let app = TestApp::start_with(|config| {
        config.metadata.url = DatabaseUrl(database.url().to_owned());
        config.metadata.acquire_timeout = HumanDuration(TIMEOUT);
        config.metadata.statement_timeout = HumanDuration(TIMEOUT);
    })
    .await;
    let image = app.push_image("team/app", "v1", 1).await;

    database.pause().unwrap();
    let started = Instant::now();
    assert_database_unavailable(app.get("/v2/team/app/manifests/v1").await, "a pull").await;
    assert_database_unavailable(app.get("/v2/team/app/tags/list").await, "a tag list").await;
    let push = app
        .request(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_database_unavailable(push, "a push").await;
    assert_database_unavailable(app.delete("/v2/team/app/manifests/v1").await, "a delete").await;
    // Three requests, each within the timeouts (plus the time to fail a connection).
    assert!(
        started.elapsed() < 4 * (TIMEOUT + Duration::from_secs(1)),
        "the requests took {:?}",
        started.elapsed()
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    database.resume().unwrap();
    let pulled = app.get("/v2/team/app/manifests/v1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.unwrap(), image.manifest);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.push_image("team/app", "v2", 1).await;
    let tags: serde_json::Value = app
        .get("/v2/team/app/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1", "v2"]));
}
