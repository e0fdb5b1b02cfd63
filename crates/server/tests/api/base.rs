//! The API's entry point, unknown endpoints, methods, and health.

use reqwest::{Method, StatusCode};

use crate::app::{TestApp, expect_error, header};

#[tokio::test]
async fn v2_answers_with_the_api_version() {
    let app = TestApp::start().await;
    for path in ["/v2/", "/v2"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(response.text().await.unwrap(), "{}");
    }
    assert_eq!(app.head("/v2/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn errors_carry_the_api_version_too() {
    let app = TestApp::start().await;
    let response = app.get("/v2/nothing/here/tags/list").await;
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    expect_error(response, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn unknown_endpoints_are_404_with_a_json_error() {
    let app = TestApp::start().await;
    for path in [
        "/v2/a/unknown/x",
        "/v2/tags/list",
        "/v3/",
        "/",
        "/v2/a/blobs/",
    ] {
        expect_error(app.get(path).await, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
    }
}

#[tokio::test]
async fn methods_an_endpoint_does_not_have_are_405() {
    let app = TestApp::start().await;
    for (method, path) in [
        (Method::POST, "/v2/a/manifests/latest"),
        (Method::PUT, "/v2/a/tags/list"),
        (Method::PATCH, "/v2/a/blobs/uploads/"),
        (Method::DELETE, "/v2/_catalog"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        expect_error(response, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
}

#[tokio::test]
async fn invalid_repository_names_are_400_name_invalid() {
    let app = TestApp::start().await;
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a..b/manifests/latest",
        "/v2/a%2Fb/tags/list/x/tags/list",
        "/v2/-a/blobs/uploads/",
    ] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert!(
            matches!(
                response.status(),
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND
            ),
            "{path}: {}",
            response.status()
        );
    }
    let response = app.get("/v2/UPPER/tags/list").await;
    expect_error(response, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    let long = "a".repeat(256);
    let response = app.get(&format!("/v2/{long}/tags/list")).await;
    expect_error(response, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn path_traversal_attempts_get_nowhere() {
    let app = TestApp::start().await;
    for path in [
        "/v2/../../etc/passwd/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "/v2/a/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
        "/v2/a/blobs/uploads/..%2F..%2Fmetadata.db",
        "/v2/a/blobs/uploads/../../metadata.db",
    ] {
        let status = app.get(path).await.status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
}
