//! Tags, the catalog and referrers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_core::digest::Digest;

use crate::app::{OCI_INDEX, OCI_MANIFEST, TestApp, TestImage, expect_error, header};

async fn json_of(app: &TestApp, path: &str) -> (Option<String>, Value) {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(header(&response, "content-type"), "application/json");
    let link = response
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_owned());
    (link, response.json().await.unwrap())
}

#[tokio::test]
async fn tags_are_sorted_and_paginated() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "b", 1).await;
    for tag in ["a", "c", "B", "a1", "z"] {
        app.put_manifest("r", tag, OCI_MANIFEST, &image.manifest)
            .await;
    }
    let (link, body) = json_of(&app, "/v2/r/tags/list").await;
    assert_eq!(
        body,
        json!({ "name": "r", "tags": ["B", "a", "a1", "b", "c", "z"] })
    );
    assert_eq!(link, None);

    let (link, body) = json_of(&app, "/v2/r/tags/list?n=2").await;
    assert_eq!(body["tags"], json!(["B", "a"]));
    assert_eq!(
        link.as_deref(),
        Some("</v2/r/tags/list?n=2&last=a>; rel=\"next\"")
    );
    let (_, body) = json_of(&app, "/v2/r/tags/list?n=2&last=a").await;
    assert_eq!(body["tags"], json!(["a1", "b"]));
    let (link, body) = json_of(&app, "/v2/r/tags/list?n=2&last=b").await;
    assert_eq!(body["tags"], json!(["c", "z"]));
    assert_eq!(link, None, "the last page has no next link");
    let (_, body) = json_of(&app, "/v2/r/tags/list?last=c").await;
    assert_eq!(body["tags"], json!(["z"]));
    let (link, body) = json_of(&app, "/v2/r/tags/list?n=0").await;
    assert_eq!(body["tags"], json!([]));
    assert_eq!(link, None);

    for bad in ["-1", "x", "1.5"] {
        expect_error(
            app.get(&format!("/v2/r/tags/list?n={bad}")).await,
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
        )
        .await;
    }
}

#[tokio::test]
async fn tags_of_unknown_and_emptied_repositories() {
    let app = TestApp::start().await;
    expect_error(
        app.get("/v2/nope/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    let image = app.push_image("r", "v1", 1).await;
    app.delete(&format!("/v2/r/manifests/{}", image.digest))
        .await;
    let (_, body) = json_of(&app, "/v2/r/tags/list").await;
    assert_eq!(
        body,
        json!({ "name": "r", "tags": [] }),
        "a repository without tags still lists"
    );
}

#[tokio::test]
async fn repository_names_may_contain_route_words() {
    let app = TestApp::start().await;
    for repository in ["a/blobs/b", "x/manifests", "tags", "a/blobs/uploads"] {
        let image = app.push_image(repository, "v1", 1).await;
        let response = app.get(&format!("/v2/{repository}/manifests/v1")).await;
        assert_eq!(
            header(&response, "docker-content-digest"),
            image.digest.to_string(),
            "{repository}"
        );
        let (_, body) = json_of(&app, &format!("/v2/{repository}/tags/list")).await;
        assert_eq!(body["name"], repository);
        let layer = Digest::sha256_of(&image.layers[0]);
        assert_eq!(
            app.get(&format!("/v2/{repository}/blobs/{layer}"))
                .await
                .status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn the_catalog_lists_repositories_in_pages() {
    let app = TestApp::start().await;
    for repository in ["zeta", "alpha/one", "alpha/two", "mid"] {
        app.push_image(repository, "v1", 1).await;
    }
    let (link, body) = json_of(&app, "/v2/_catalog").await;
    assert_eq!(
        body,
        json!({ "repositories": ["alpha/one", "alpha/two", "mid", "zeta"] })
    );
    assert_eq!(link, None);
    let (link, body) = json_of(&app, "/v2/_catalog?n=3").await;
    assert_eq!(
        body["repositories"],
        json!(["alpha/one", "alpha/two", "mid"])
    );
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=3&last=mid>; rel=\"next\"")
    );
    let (_, body) = json_of(&app, "/v2/_catalog?n=3&last=mid").await;
    assert_eq!(body["repositories"], json!(["zeta"]));
    // Last values are URL-encoded in links.
    let (link, _) = json_of(&app, "/v2/_catalog?n=1").await;
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=1&last=alpha%2Fone>; rel=\"next\"")
    );
}

#[tokio::test]
async fn referrers_list_manifests_with_a_subject() {
    let app = TestApp::start().await;
    let subject = app.push_image("r", "v1", 1).await;
    let mut pushed = Vec::new();
    for (artifact_type, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let referrer = TestImage::generate_with(
            1,
            json!({ "artifactType": artifact_type, "subject": subject.descriptor(), "annotations": { "note": note } }),
        );
        for blob in referrer.blobs() {
            app.push_blob("r", blob).await;
        }
        let response = app
            .put_manifest(
                "r",
                &referrer.digest.to_string(),
                OCI_MANIFEST,
                &referrer.manifest,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        pushed.push((referrer, artifact_type, note));
    }
    // An index can refer to a subject too.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": subject.descriptor(),
        "annotations": { "note": "index" },
    }))
    .unwrap();
    let index_digest = Digest::sha256_of(&index);
    let response = app
        .put_manifest("r", &index_digest.to_string(), OCI_INDEX, &index)
        .await;
    assert_eq!(header(&response, "oci-subject"), subject.digest.to_string());

    let response = app
        .get(&format!("/v2/r/referrers/{}", subject.digest))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), OCI_INDEX);
    assert!(response.headers().get("oci-filters-applied").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    let manifests = body["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3);
    for (referrer, artifact_type, note) in &pushed {
        let entry = manifests
            .iter()
            .find(|m| m["digest"] == referrer.digest.to_string())
            .unwrap();
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert_eq!(entry["size"], referrer.manifest.len());
        assert_eq!(entry["artifactType"], *artifact_type);
        assert_eq!(entry["annotations"], json!({ "note": note }));
    }
    let entry = manifests
        .iter()
        .find(|m| m["digest"] == index_digest.to_string())
        .unwrap();
    assert_eq!(entry["mediaType"], OCI_INDEX);
    assert_eq!(entry.get("artifactType"), None);

    let response = app
        .get(&format!(
            "/v2/r/referrers/{}?artifactType=application/vnd.example.sig",
            subject.digest
        ))
        .await;
    assert_eq!(header(&response, "oci-filters-applied"), "artifactType");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
}

#[tokio::test]
async fn referrers_of_unknown_subjects_are_an_empty_list() {
    let app = TestApp::start().await;
    let unknown = Digest::sha256_of(b"never pushed");
    for repository in ["r", "never/created"] {
        let response = app
            .get(&format!("/v2/{repository}/referrers/{unknown}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), OCI_INDEX);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["manifests"], json!([]));
    }
    expect_error(
        app.get("/v2/r/referrers/sha256:nope").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

/// Walks a tags list from the start in pages of `n`, calling `between` after each page with the
/// page's last tag. Returns every tag seen, in the order seen.
async fn walk_tags(app: &TestApp, n: usize, mut between: impl AsyncFnMut(&str)) -> Vec<String> {
    let mut seen = Vec::new();
    let mut path = format!("/v2/r/tags/list?n={n}");
    loop {
        let (link, body) = json_of(app, &path).await;
        let page: Vec<String> = serde_json::from_value(body["tags"].clone()).unwrap();
        assert!(page.len() <= n, "a page holds at most n tags: {page:?}");
        seen.extend(page);
        let Some(link) = link else { break };
        between(seen.last().unwrap()).await;
        // `</v2/r/tags/list?n=10&last=t0010>; rel="next"`
        path = link[1..link.find('>').unwrap()].to_owned();
    }
    seen
}

#[tokio::test]
async fn tag_pages_stay_exact_while_tags_are_pushed_between_them() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "t0000", 1).await;
    let tag = async |name: String| {
        let response = app
            .put_manifest("r", &name, OCI_MANIFEST, &image.manifest)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    };
    let original: Vec<String> = (0..120).map(|i| format!("t{:04}", i * 10)).collect();
    for name in &original[1..] {
        tag(name.clone()).await;
    }

    // After each page, one tag is pushed behind the cursor (the walk must not go back for it)
    // and one ahead of it (the walk must find it once, in its place).
    let mut ahead = Vec::new();
    let seen = walk_tags(&app, 7, async |last: &str| {
        let at: u32 = last[1..].parse().unwrap();
        tag(format!("t{:04}", at - 5)).await;
        let next = format!("t{:04}", at + 5);
        tag(next.clone()).await;
        ahead.push(next);
    })
    .await;

    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, no tag twice: {seen:?}"
    );
    let mut expected = original.clone();
    expected.extend(ahead);
    expected.sort();
    assert_eq!(
        seen, expected,
        "every tag that was there throughout, and every tag pushed ahead of the cursor, once; \
         none pushed behind it"
    );
}

#[tokio::test]
async fn tag_pages_stay_exact_during_concurrent_pushes() {
    let app = TestApp::start().await;
    let image = app.push_image("r", "a0000", 1).await;
    let original: Vec<String> = (0..200).map(|i| format!("a{i:04}")).collect();
    for name in &original[1..] {
        app.put_manifest("r", name, OCI_MANIFEST, &image.manifest)
            .await;
    }

    // A pusher adds tags that sort between the original ones while the walks run; the walks
    // must see every original tag exactly once, in order, whatever the interleaving. The walks
    // go on until at least 50 tags were pushed during them, so the two did overlap.
    let stop = AtomicBool::new(false);
    let pushed = AtomicUsize::new(0);
    let pusher = async {
        while !stop.load(Ordering::Relaxed) {
            let count = pushed.load(Ordering::Relaxed);
            let name = format!("a{:04}-{count}", count % 200);
            let response = app
                .put_manifest("r", &name, OCI_MANIFEST, &image.manifest)
                .await;
            assert_eq!(response.status(), StatusCode::CREATED, "{name}");
            pushed.fetch_add(1, Ordering::Relaxed);
        }
    };
    let walks = async {
        let mut walks = 0;
        while walks < 5 || pushed.load(Ordering::Relaxed) < 50 {
            let seen = walk_tags(&app, 13, async |_: &str| {}).await;
            assert!(
                seen.windows(2).all(|pair| pair[0] < pair[1]),
                "in order, no tag twice: {seen:?}"
            );
            let originals: Vec<&String> = seen.iter().filter(|t| !t.contains('-')).collect();
            assert_eq!(originals, original.iter().collect::<Vec<_>>());
            walks += 1;
        }
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(pusher, walks);
}
