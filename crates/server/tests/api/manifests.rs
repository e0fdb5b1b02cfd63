//! Manifests: push, pull, content negotiation, validation, deletion.

use reqwest::{Method, StatusCode};
use serde_json::json;
use wharf_core::digest::Digest;

use crate::app::{
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestApp, TestImage, descriptor,
    expect_error, header,
};

#[tokio::test]
async fn push_by_tag_then_pull_by_tag_and_digest() {
    let app = TestApp::start().await;
    let image = TestImage::generate(2);
    for blob in image.blobs() {
        app.push_blob("team/app", blob).await;
    }
    let response = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/team/app/manifests/{}", image.digest)
    );
    assert_eq!(
        header(&response, "docker-content-digest"),
        image.digest.to_string()
    );

    for reference in ["v1".to_owned(), image.digest.to_string()] {
        let path = format!("/v2/team/app/manifests/{reference}");
        let response = app
            .request(Method::GET, &path)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), OCI_MANIFEST);
        assert_eq!(
            header(&response, "docker-content-digest"),
            image.digest.to_string()
        );
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            image.manifest.as_slice(),
            "byte for byte"
        );

        let head = app.head(&path).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            header(&head, "content-length"),
            image.manifest.len().to_string()
        );
        assert_eq!(
            header(&head, "docker-content-digest"),
            image.digest.to_string()
        );
    }
}

#[tokio::test]
async fn push_by_digest_checks_the_digest() {
    let app = TestApp::start().await;
    let image = TestImage::generate(1);
    for blob in image.blobs() {
        app.push_blob("r", blob).await;
    }
    let response = app
        .put_manifest(
            "r",
            &image.digest.to_string(),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let wrong = Digest::sha256_of(b"another document");
    let response = app
        .put_manifest("r", &wrong.to_string(), OCI_MANIFEST, &image.manifest)
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        app.get(&format!("/v2/r/manifests/{wrong}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn accept_negotiation() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 1).await;
    let get = |accept: Vec<&'static str>| {
        let mut request = app.request(Method::GET, "/v2/r/manifests/v1");
        for value in accept {
            request = request.header("accept", value);
        }
        request.send()
    };
    // No Accept, a wildcard, a list containing the type: served.
    for accept in [
        vec![],
        vec!["*/*"],
        vec![DOCKER_MANIFEST, OCI_MANIFEST],
        vec![
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        ],
    ] {
        assert_eq!(
            get(accept.clone()).await.unwrap().status(),
            StatusCode::OK,
            "{accept:?}"
        );
    }
    // Only other manifest types: the client could not use it.
    let message = expect_error(
        get(vec![DOCKER_MANIFEST, DOCKER_LIST]).await.unwrap(),
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert!(message.contains(OCI_MANIFEST), "{message}");
    drop(image);
}

#[tokio::test]
async fn docker_schema2_manifests_and_lists() {
    let app = TestApp::start().await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"docker layer";
    app.push_blob("d", config).await;
    app.push_blob("d", layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
    }))
    .unwrap();
    let response = app
        .put_manifest("d", "amd64", DOCKER_MANIFEST, &manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": Digest::sha256_of(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"}
        }],
    }))
    .unwrap();
    let response = app.put_manifest("d", "latest", DOCKER_LIST, &list).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.get("/v2/d/manifests/latest").await;
    assert_eq!(header(&response, "content-type"), DOCKER_LIST);
    assert_eq!(response.bytes().await.unwrap().as_ref(), list.as_slice());
}

#[tokio::test]
async fn an_index_needs_its_manifests_in_the_repository() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "amd64", 1).await;
    let absent = TestImage::generate(1);
    let index = |children: Vec<serde_json::Value>| {
        serde_json::to_vec(
            &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children }),
        )
        .unwrap()
    };
    let response = app
        .put_manifest(
            "r",
            "multi",
            OCI_INDEX,
            &index(vec![image.descriptor(), absent.descriptor()]),
        )
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let response = app
        .put_manifest("r", "multi", OCI_INDEX, &index(vec![image.descriptor()]))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The child exists in another repository only: still unknown here.
    let response = app
        .put_manifest(
            "other",
            "multi",
            OCI_INDEX,
            &index(vec![image.descriptor()]),
        )
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn a_manifest_needs_its_blobs_in_the_repository() {
    let app = TestApp::start().await;
    let image = TestImage::generate(2);
    app.push_blob("r", &image.config).await;
    app.push_blob("r", &image.layers[0]).await;
    let response = app
        .put_manifest("r", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        body["errors"][0]["detail"]["digest"],
        Digest::sha256_of(&image.layers[1]).to_string()
    );
    expect_error(
        app.get("/v2/r/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn invalid_manifests_are_refused() {
    let app = TestApp::start().await;
    let image = TestImage::generate(1);
    for blob in image.blobs() {
        app.push_blob("r", blob).await;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"blablabla".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion":1}"#.to_vec()),
        (
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
        ),
        (DOCKER_MANIFEST, image.manifest.clone()),
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            b"{\"schemaVersion\":1}".to_vec(),
        ),
        ("text/plain", br#"{"schemaVersion":2}"#.to_vec()),
    ];
    for (media_type, body) in cases {
        let response = app.put_manifest("r", "bad", media_type, &body).await;
        expect_error(response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    // An invalid tag in a push is a bad request.
    let response = app
        .put_manifest("r", "-bad-tag", OCI_MANIFEST, &image.manifest)
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // Nothing of the refused pushes is visible.
    expect_error(
        app.get("/v2/r/manifests/bad").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn manifests_over_the_size_limit_are_refused() {
    let app =
        TestApp::start_with(|c| c.limits.max_manifest_size = wharf_config::ByteSize(2048)).await;
    let padding = "x".repeat(3000);
    let image = TestImage::generate_with(1, json!({ "annotations": { "padding": padding } }));
    for blob in image.blobs() {
        app.push_blob("r", blob).await;
    }
    let response = app
        .put_manifest("r", "big", OCI_MANIFEST, &image.manifest)
        .await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // Without a Content-Length the limit is enforced while reading.
    let stream = futures_util::stream::iter(
        image
            .manifest
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .request(Method::PUT, "/v2/r/manifests/big")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
}

#[tokio::test]
async fn a_subject_is_reported_even_when_it_does_not_exist_yet() {
    let app = TestApp::start().await;
    let subject = TestImage::generate(1);
    let signature = TestImage::generate_with(
        1,
        json!({ "artifactType": "application/vnd.example.signature", "subject": subject.descriptor() }),
    );
    for blob in signature.blobs() {
        app.push_blob("r", blob).await;
    }
    let response = app
        .put_manifest(
            "r",
            &signature.digest.to_string(),
            OCI_MANIFEST,
            &signature.manifest,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "oci-subject"), subject.digest.to_string());
}

#[tokio::test]
async fn invalid_references_in_reads() {
    let app = TestApp::start().await;
    app.push_image("r", "v1", 1).await;
    // A name that cannot be a tag names nothing.
    for reference in [".INVALID_MANIFEST_NAME", "-x"] {
        expect_error(
            app.get(&format!("/v2/r/manifests/{reference}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_eq!(
            app.head(&format!("/v2/r/manifests/{reference}"))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    expect_error(
        app.get("/v2/r/manifests/sha256:totallywrong").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    expect_error(
        app.get("/v2/r/manifests/v2").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_manifest() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 1).await;
    app.put_manifest("r", "also", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(
        app.delete("/v2/r/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    expect_error(
        app.get("/v2/r/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        app.get("/v2/r/manifests/also").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/v2/r/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::OK
    );
    expect_error(
        app.delete("/v2/r/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_manifest_removes_its_tags() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "v1", 1).await;
    app.put_manifest("r", "v1-again", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(
        app.delete(&format!("/v2/r/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    for reference in [
        "v1".to_owned(),
        "v1-again".to_owned(),
        image.digest.to_string(),
    ] {
        expect_error(
            app.get(&format!("/v2/r/manifests/{reference}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
    }
    let tags: serde_json::Value = app.get("/v2/r/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], json!([]));
    expect_error(
        app.delete(&format!("/v2/r/manifests/{}", image.digest))
            .await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn retagging_moves_the_tag() {
    let app = TestApp::start().await;
    let first = app.push_image("r", "latest", 1).await;
    let second = app.push_image("r", "latest", 1).await;
    assert_ne!(first.digest, second.digest);
    let response = app.get("/v2/r/manifests/latest").await;
    assert_eq!(
        header(&response, "docker-content-digest"),
        second.digest.to_string()
    );
    // The first manifest is still there by digest.
    assert_eq!(
        app.get(&format!("/v2/r/manifests/{}", first.digest))
            .await
            .status(),
        StatusCode::OK
    );
}

fn index_of(children: &[&TestImage]) -> Vec<u8> {
    let children: Vec<_> = children.iter().map(|c| c.descriptor()).collect();
    serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children }),
    )
    .unwrap()
}

#[tokio::test]
async fn a_manifest_an_index_uses_cannot_be_deleted_from_under_it() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "amd64", 1).await;
    let index = index_of(&[&image]);
    let response = app.put_manifest("r", "multi", OCI_INDEX, &index).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let message = expect_error(
        app.delete(&format!("/v2/r/manifests/{}", image.digest))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "DENIED",
    )
    .await;
    let index_digest = Digest::sha256_of(&index);
    assert!(message.contains(&index_digest.to_string()), "{message}");
    assert_eq!(
        app.get(&format!("/v2/r/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::OK
    );
    // Once the index is gone, its child can go.
    assert_eq!(
        app.delete(&format!("/v2/r/manifests/{index_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.delete(&format!("/v2/r/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let report = app.registry().await.fsck(false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// The delete of a manifest and the push of an index naming it, started together: whichever
/// commits first wins and the other is refused, so no round leaves an index whose child is gone.
#[tokio::test]
async fn deleting_a_manifest_while_an_index_naming_it_is_pushed_leaves_no_dangling_index() {
    let app = TestApp::start().await;
    // Once the server has opened the data folder (a second handle opening a fresh folder would
    // race the server's schema migration).
    app.push_image("r", "first", 1).await;
    let registry = app.registry().await;
    let (mut deleted, mut indexed) = (0, 0);
    for round in 0..40 {
        let image = app.push_image("r", &format!("child-{round}"), 1).await;
        let index = index_of(&[&image]);
        let barrier = tokio::sync::Barrier::new(2);
        let delete_path = format!("/v2/r/manifests/{}", image.digest);
        let (delete, put) = tokio::join!(
            async {
                barrier.wait().await;
                app.delete(&delete_path).await
            },
            async {
                barrier.wait().await;
                app.put_manifest("r", &format!("index-{round}"), OCI_INDEX, &index)
                    .await
            }
        );
        match (delete.status(), put.status()) {
            (StatusCode::ACCEPTED, StatusCode::BAD_REQUEST) => {
                expect_error(put, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
                deleted += 1;
            }
            (StatusCode::METHOD_NOT_ALLOWED, StatusCode::CREATED) => indexed += 1,
            (delete, put) => panic!("round {round}: delete {delete}, index put {put}"),
        }
        let report = registry.fsck(false).await.unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
    assert_eq!(
        deleted + indexed,
        40,
        "deleted {deleted}, indexed {indexed}"
    );
}

#[tokio::test]
async fn a_descriptor_must_declare_its_contents_size() {
    let app = TestApp::start().await;
    let image = TestImage::generate(1);
    for blob in image.blobs() {
        app.push_blob("r", blob).await;
    }
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["layers"][0]["size"] = json!(1);
    let lying = serde_json::to_vec(&manifest).unwrap();
    let message = expect_error(
        app.put_manifest("r", "v1", OCI_MANIFEST, &lying).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    let layer = Digest::sha256_of(&image.layers[0]);
    assert!(
        message.contains(&format!("declares 1 bytes for {layer}")),
        "{message}"
    );
    expect_error(
        app.get("/v2/r/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // The same holds for an index's entries: a child manifest's size is its length.
    let pushed = app.push_image("r", "v2", 1).await;
    let mut entry = pushed.descriptor();
    entry["size"] = json!(pushed.manifest.len() + 1);
    let index = serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry] }),
    )
    .unwrap();
    expect_error(
        app.put_manifest("r", "multi", OCI_INDEX, &index).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
}

/// A push by digest with `?tag=` parameters applies every tag in one step and says so with one
/// `OCI-Tag` each; a sha512 manifest keeps its digest under its tags.
#[tokio::test]
async fn a_push_by_digest_applies_its_tag_parameters() {
    let app = TestApp::start().await;
    let image = TestImage::generate(1);
    for blob in image.blobs() {
        app.push_blob("r", blob).await;
    }
    let mut hasher = wharf_core::digest::ContentHasher::new(wharf_core::digest::Algorithm::Sha512);
    hasher.update(&image.manifest);
    let digest = hasher.finish();
    let response = app
        .request(
            Method::PUT,
            &format!("/v2/r/manifests/{digest}?tag=v1&tag=latest&tag=v1"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let tags: Vec<_> = response
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, ["v1", "latest"], "each tag once");
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    for tag in ["v1", "latest"] {
        let response = app.get(&format!("/v2/r/manifests/{tag}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{tag}");
        assert_eq!(
            header(&response, "docker-content-digest"),
            digest.to_string()
        );
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            image.manifest.as_slice()
        );
    }
    // An invalid tag refuses the whole push.
    let response = app
        .request(
            Method::PUT,
            &format!("/v2/r/manifests/{}?tag=ok&tag=-bad", image.digest),
        )
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    expect_error(
        app.get("/v2/r/manifests/ok").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

/// The catalog lists repositories that hold a manifest: one whose last manifest is deleted
/// leaves it.
#[tokio::test]
async fn a_repository_whose_last_manifest_is_deleted_leaves_the_catalog() {
    let app = TestApp::start().await;
    let image = app.push_image("gone", "v1", 1).await;
    app.push_image("kept", "v1", 1).await;
    let catalog = || async {
        let body: serde_json::Value = app.get("/v2/_catalog").await.json().await.unwrap();
        body["repositories"].clone()
    };
    assert_eq!(catalog().await, json!(["gone", "kept"]));
    assert_eq!(
        app.delete(&format!("/v2/gone/manifests/{}", image.digest))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(catalog().await, json!(["kept"]));
}

/// With `limits.sparse_manifests`, an index may name platforms the mirror does not have; fsck
/// counts those references instead of calling them problems. (Off, the default, the same push
/// is `MANIFEST_BLOB_UNKNOWN`: `an_index_needs_its_manifests_in_the_repository`.)
#[tokio::test]
async fn a_sparse_index_is_accepted_when_the_option_is_on() {
    let app = TestApp::start_with(|config| config.limits.sparse_manifests = true).await;
    let mirrored = app.push_image("mirror", "amd64", 1).await;
    let absent = TestImage::generate(1);
    let index = index_of(&[&mirrored, &absent]);
    let response = app.put_manifest("mirror", "v1", OCI_INDEX, &index).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.get("/v2/mirror/manifests/v1").await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), index.as_slice());
    expect_error(
        app.get(&format!("/v2/mirror/manifests/{}", absent.digest))
            .await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // What is there must still be declared with its size.
    let mut wrong = mirrored.descriptor();
    wrong["size"] = json!(1);
    let lying = serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [wrong] }),
    )
    .unwrap();
    expect_error(
        app.put_manifest("mirror", "lying", OCI_INDEX, &lying).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    let report = app.registry().await.fsck(false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.absent_references, 1);
}
