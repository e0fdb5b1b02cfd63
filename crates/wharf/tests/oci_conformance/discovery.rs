//! Workflow 3: Content Discovery (`03_discovery_test.go`), 16 specs.

use crate::client::{Client, Opts, with_digest, with_reference};
use crate::data::{
    ARTIFACT_TYPE_FILTER, CONTENT_DISCOVERY, EMPTY_JSON_DIGEST, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST, TEST_ANNOTATION_KEY, TEST_REF_ARTIFACT_TYPE_A, TEST_TAG_NAME, TestData,
};
use crate::harness::{
    SpecResult, Suite, expect, expect_2xx, expect_2xx_or, expect_eq, expect_status, panic_fail,
    run_only_if, run_only_if_not, spec,
};
use crate::steps::{Referrer, get_tag_list, parse_index, upload_blob};

pub async fn run(s: &mut Suite) {
    s.workflow("Content Discovery");
    let mut num_tags: usize = 4;
    let mut tag_list: Vec<String> = Vec::new();

    s.context("Setup");
    spec!(s, "Populate registry with test blob", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        let blob = &s.data.configs[2];
        upload_blob(
            &mut s.client,
            &blob.content,
            &blob.content_length,
            &blob.digest,
            "",
        )
        .await
    });
    spec!(s, "Populate registry with test layer", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        let d = &s.data;
        upload_blob(
            &mut s.client,
            &d.layer_blob_data,
            &d.layer_blob_content_length,
            &d.layer_blob_digest,
            "",
        )
        .await
    });
    spec!(s, "Populate registry with test tags", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        for i in 0..num_tags {
            let tag = format!("test{i}");
            tag_list.push(tag.clone());
            let req = s
                .client
                .request(
                    "PUT",
                    "/v2/<name>/manifests/<reference>",
                    with_reference(&tag),
                )
                .header("Content-Type", MEDIA_TYPE_MANIFEST)
                .body(&s.data.manifests[2].content);
            let resp = s.client.send(req).await?;
            expect_2xx(&resp)?;
        }
        // The result is stored, not asserted (a transport error would be a nil dereference).
        let req = s
            .client
            .request("GET", "/v2/<name>/tags/list", Opts::default());
        let resp = s.client.send(req).await?;
        tag_list = get_tag_list(&resp);
        Ok(())
    });
    spec!(s, "Populate registry with test tags (no push)", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if_not(s.config.run_content_discovery_setup())?;
        tag_list = s.config.tag_list.split(',').map(str::to_owned).collect();
        Ok(())
    });
    spec!(s, "References setup", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        references_setup(&mut s.client, &s.data).await
    });

    s.context("Test content discovery endpoints (listing tags)");
    spec!(s, "GET request to list tags should yield 200 response", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        let req = s
            .client
            .request("GET", "/v2/<name>/tags/list", Opts::default());
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        tag_list = get_tag_list(&resp);
        num_tags = tag_list.len();
        Ok(())
    });
    spec!(
        s,
        "GET number of tags should be limitable by `n` query parameter",
        {
            s.skip_if_disabled(CONTENT_DISCOVERY)?;
            let num_results = num_tags / 2;
            let req = s
                .client
                .request("GET", "/v2/<name>/tags/list", Opts::default())
                .query("n", &num_results.to_string());
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            tag_list = get_tag_list(&resp);
            expect(tag_list.len() == num_results, || {
                format!(
                    "Expected {} tags (n={num_results}), got {}: {tag_list:?}",
                    num_results,
                    tag_list.len()
                )
            })
        }
    );
    spec!(s, "GET start of tag is set by `last` query parameter", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        let num_results = num_tags / 2;
        let req = s
            .client
            .request("GET", "/v2/<name>/tags/list", Opts::default())
            .query("n", &num_results.to_string());
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        tag_list = get_tag_list(&resp);
        let Some(last) = num_results
            .checked_sub(1)
            .and_then(|i| tag_list.get(i))
            .cloned()
        else {
            return panic_fail(&format!(
                "runtime error: index out of range [{}] with length {}",
                num_results as i64 - 1,
                tag_list.len()
            ));
        };
        let req = s
            .client
            .request("GET", "/v2/<name>/tags/list", Opts::default())
            .query("n", &num_results.to_string())
            .query("last", &last);
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        tag_list = get_tag_list(&resp);
        expect(tag_list.len() <= num_results, || {
            format!(
                "Expected at most {num_results} tags, got {}: {tag_list:?}",
                tag_list.len()
            )
        })?;
        expect(!tag_list.contains(&last), || {
            format!("Expected {tag_list:?} not to contain {last:?} (the `last` tag)")
        })
    });

    s.context("Test content discovery endpoints (listing references)");
    spec!(
        s,
        "GET request to nonexistent blob should result in empty 200 response",
        {
            s.skip_if_disabled(CONTENT_DISCOVERY)?;
            let req = s.client.request(
                "GET",
                "/v2/<name>/referrers/<digest>",
                with_digest(&s.data.dummy_digest),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            expect_eq(
                &resp.header("Content-Type"),
                MEDIA_TYPE_INDEX,
                "the Content-Type header",
            )?;
            let index = parse_index(&resp)?;
            expect(index.is_empty(), || {
                format!("Expected no manifests, got {}", index.len())
            })
        }
    );
    spec!(s, "GET request to existing blob should yield 200", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/referrers/<digest>",
            with_digest(&s.data.manifests[4].digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        expect_eq(
            &resp.header("Content-Type"),
            MEDIA_TYPE_INDEX,
            "the Content-Type header",
        )?;
        let index = parse_index(&resp)?;
        expect(index.len() == 5, || {
            format!(
                "Expected 5 manifests, got {}: {}",
                index.len(),
                digests(&index)
            )
        })?;
        expect(index[0].0 != index[1].0, || {
            format!(
                "Expected manifests[0].digest {:?} to differ from manifests[1].digest",
                index[0].0
            )
        })?;
        check_annotations(&s.data, &index)
    });
    spec!(
        s,
        "GET request to existing blob with filter should yield 200",
        {
            s.skip_if_disabled(CONTENT_DISCOVERY)?;
            let req = s
                .client
                .request(
                    "GET",
                    "/v2/<name>/referrers/<digest>",
                    with_digest(&s.data.manifests[4].digest),
                )
                .query("artifactType", TEST_REF_ARTIFACT_TYPE_A);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            expect_eq(
                &resp.header("Content-Type"),
                MEDIA_TYPE_INDEX,
                "the Content-Type header",
            )?;
            let index = parse_index(&resp)?;
            // "OCI-Filters-Applied: artifactType" says the filter was applied; filtering is optional.
            let filters_applied = resp.header("OCI-Filters-Applied");
            if !filters_applied.is_empty() {
                expect(index.len() == 2, || {
                    format!(
                        "Expected 2 manifests, got {}: {}",
                        index.len(),
                        digests(&index)
                    )
                })?;
                expect_eq(
                    &filters_applied,
                    ARTIFACT_TYPE_FILTER,
                    "the OCI-Filters-Applied header",
                )?;
                check_annotations(&s.data, &index)?;
            } else {
                expect(index.len() == 5, || {
                    format!(
                        "Expected 5 manifests, got {}: {}",
                        index.len(),
                        digests(&index)
                    )
                })?;
                check_annotations(&s.data, &index)?;
                s.warn("filtering by artifact-type is not implemented");
            }
            Ok(())
        }
    );
    spec!(s, "GET request to missing manifest should yield 200", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/referrers/<digest>",
            with_digest(&s.data.manifests[3].digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        expect_eq(
            &resp.header("Content-Type"),
            MEDIA_TYPE_INDEX,
            "the Content-Type header",
        )?;
        let index = parse_index(&resp)?;
        expect(index.len() == 1, || {
            format!(
                "Expected 1 manifest, got {}: {}",
                index.len(),
                digests(&index)
            )
        })?;
        expect_eq(
            &index[0].0,
            &s.data.refs_manifest_c_layer_artifact_digest,
            "manifests[0].digest",
        )
    });

    s.context("Teardown");
    if s.config.delete_manifest_before_blobs {
        delete_created_manifests(s).await;
    }
    spec!(s, "Delete config blob created in tests", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        delete(
            &mut s.client,
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[2].digest),
        )
        .await
    });
    spec!(s, "Delete layer blob created in setup", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        delete(
            &mut s.client,
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.layer_blob_digest),
        )
        .await
    });
    if !s.config.delete_manifest_before_blobs {
        delete_created_manifests(s).await;
    }
    spec!(s, "References teardown", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        let manifests_first = s.config.delete_manifest_before_blobs;
        if manifests_first {
            delete_reference_manifests(&mut s.client, &s.data).await?;
        }
        let d = &s.data;
        for digest in [
            &d.configs[4].digest,
            &d.test_ref_blob_a_digest,
            &d.test_ref_blob_b_digest,
            &d.empty_json_digest,
        ] {
            delete(
                &mut s.client,
                "/v2/<name>/blobs/<digest>",
                with_digest(digest),
            )
            .await?;
        }
        if !manifests_first {
            delete_reference_manifests(&mut s.client, &s.data).await?;
        }
        Ok(())
    });
}

/// The 13 steps of "References setup"; the first failure ends the spec.
async fn references_setup(client: &mut Client, d: &TestData) -> SpecResult {
    // a. A self-check of the computed empty JSON digest.
    expect_eq(
        &d.empty_json_digest,
        EMPTY_JSON_DIGEST,
        "the empty JSON descriptor's digest",
    )?;
    // b, c. The empty JSON blob, and reference blob A before the subject is pushed.
    upload_blob(
        client,
        &d.empty_json_blob,
        &d.empty_json_size.to_string(),
        &d.empty_json_digest,
        "",
    )
    .await?;
    upload_blob(
        client,
        &d.test_ref_blob_a,
        &d.test_ref_blob_a_length,
        &d.test_ref_blob_a_digest,
        "",
    )
    .await?;
    // d, e, f. Referrers of manifests[4], which does not exist yet.
    let subject4 = &d.manifests[4].digest;
    put_referrer(
        client,
        &d.refs_manifest_a_config_artifact_digest,
        MEDIA_TYPE_MANIFEST,
        &d.refs_manifest_a_config_artifact_content,
        subject4,
    )
    .await?;
    put_referrer(
        client,
        &d.refs_manifest_a_layer_artifact_digest,
        MEDIA_TYPE_MANIFEST,
        &d.refs_manifest_a_layer_artifact_content,
        subject4,
    )
    .await?;
    put_referrer(
        client,
        &d.refs_index_artifact_digest,
        MEDIA_TYPE_INDEX,
        &d.refs_index_artifact_content,
        subject4,
    )
    .await?;
    // g, h, i. The subject itself, tagged tagtest0.
    let config = &d.configs[4];
    upload_blob(
        client,
        &config.content,
        &config.content_length,
        &config.digest,
        "",
    )
    .await?;
    upload_blob(
        client,
        &d.layer_blob_data,
        &d.layer_blob_content_length,
        &d.layer_blob_digest,
        "",
    )
    .await?;
    let req = client
        .request(
            "PUT",
            "/v2/<name>/manifests/<reference>",
            with_reference(TEST_TAG_NAME),
        )
        .header("Content-Type", MEDIA_TYPE_MANIFEST)
        .body(&d.manifests[4].content);
    let resp = client.send(req).await?;
    expect_2xx(&resp)?;
    // j, k, l. Reference blob B and referrers pushed after the subject.
    upload_blob(
        client,
        &d.test_ref_blob_b,
        &d.test_ref_blob_b_length,
        &d.test_ref_blob_b_digest,
        "",
    )
    .await?;
    put_referrer(
        client,
        &d.refs_manifest_b_config_artifact_digest,
        MEDIA_TYPE_MANIFEST,
        &d.refs_manifest_b_config_artifact_content,
        subject4,
    )
    .await?;
    put_referrer(
        client,
        &d.refs_manifest_b_layer_artifact_digest,
        MEDIA_TYPE_MANIFEST,
        &d.refs_manifest_b_layer_artifact_content,
        subject4,
    )
    .await?;
    // m. A referrer of manifests[3], which is never pushed in this workflow.
    put_referrer(
        client,
        &d.refs_manifest_c_layer_artifact_digest,
        MEDIA_TYPE_MANIFEST,
        &d.refs_manifest_c_layer_artifact_content,
        &d.manifests[3].digest,
    )
    .await
}

/// `PUT /v2/<name>/manifests/<digest>` of a manifest with a subject: 2xx and `OCI-Subject`.
async fn put_referrer(
    client: &mut Client,
    digest: &str,
    media_type: &str,
    content: &[u8],
    subject: &str,
) -> SpecResult {
    let req = client
        .request(
            "PUT",
            "/v2/<name>/manifests/<reference>",
            with_reference(digest),
        )
        .header("Content-Type", media_type)
        .body(content);
    let resp = client.send(req).await?;
    expect_2xx(&resp)?;
    expect_eq(
        &resp.header("OCI-Subject"),
        subject,
        "the OCI-Subject header",
    )
}

/// Every descriptor has exactly one annotation, the expected one for its digest.
fn check_annotations(d: &TestData, index: &[Referrer]) -> SpecResult {
    for (digest, annotations) in index {
        expect(annotations.len() == 1, || {
            format!(
                "Expected descriptor {digest} to have exactly 1 annotation, got {}: {annotations:?}",
                annotations.len()
            )
        })?;
        let actual = annotations
            .iter()
            .find(|(k, _)| k == TEST_ANNOTATION_KEY)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        expect_eq(
            &actual,
            &d.annotation_for(digest),
            &format!("annotation {TEST_ANNOTATION_KEY:?} of {digest}"),
        )?;
    }
    Ok(())
}

fn digests(index: &[Referrer]) -> String {
    let list: Vec<&str> = index.iter().map(|(digest, _)| digest.as_str()).collect();
    format!("{list:?}")
}

/// A teardown delete: 2xx, 404 or 405.
async fn delete(client: &mut Client, path: &str, opts: Opts) -> SpecResult {
    let req = client.request("DELETE", path, opts);
    let resp = client.send(req).await?;
    expect_2xx_or(&resp, &[404, 405])
}

/// "Delete created manifest & associated tags".
async fn delete_created_manifests(s: &mut Suite) {
    spec!(s, "Delete created manifest & associated tags", {
        s.skip_if_disabled(CONTENT_DISCOVERY)?;
        run_only_if(s.config.run_content_discovery_setup())?;
        let d = &s.data;
        let references = [
            &d.refs_index_artifact_digest,
            &d.manifests[2].digest,
            &d.manifests[4].digest,
            &d.refs_manifest_a_config_artifact_digest,
            &d.refs_manifest_a_layer_artifact_digest,
            &d.refs_manifest_b_config_artifact_digest,
            &d.refs_manifest_b_layer_artifact_digest,
            &d.refs_manifest_c_layer_artifact_digest,
        ];
        for reference in references {
            delete(
                &mut s.client,
                "/v2/<name>/manifests/<digest>",
                with_digest(reference),
            )
            .await?;
        }
        Ok(())
    });
}

/// The manifest deletes of "References teardown" (again; 404 is accepted).
async fn delete_reference_manifests(client: &mut Client, d: &TestData) -> SpecResult {
    let by_reference = "/v2/<name>/manifests/<reference>";
    delete(
        client,
        by_reference,
        with_reference(&d.refs_index_artifact_digest),
    )
    .await?;
    delete(
        client,
        by_reference,
        with_reference(&d.refs_manifest_a_config_artifact_digest),
    )
    .await?;
    delete(
        client,
        by_reference,
        with_reference(&d.refs_manifest_a_layer_artifact_digest),
    )
    .await?;
    delete(
        client,
        "/v2/<name>/manifests/<digest>",
        with_digest(&d.manifests[4].digest),
    )
    .await?;
    delete(
        client,
        by_reference,
        with_reference(&d.refs_manifest_b_config_artifact_digest),
    )
    .await?;
    delete(
        client,
        by_reference,
        with_reference(&d.refs_manifest_b_layer_artifact_digest),
    )
    .await
}
