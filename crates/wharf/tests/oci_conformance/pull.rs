//! Workflow 1: Pull (`01_pull_test.go`), 24 specs.

use crate::client::{with_digest, with_reference};
use crate::data::{
    ERROR_CODES, INVALID_MANIFEST_CONTENT, MEDIA_TYPE_MANIFEST, NONEXISTENT_MANIFEST, PULL,
    TEST_TAG_NAME,
};
use crate::harness::{
    Suite, expect, expect_2xx, expect_2xx_or, expect_eq, expect_status, expect_status_in,
    run_only_if, run_only_if_not, spec,
};
use crate::steps::{error_codes, upload_blob};

pub async fn run(s: &mut Suite) {
    s.workflow("Pull");
    let mut tag = String::new();

    s.context("Setup");
    spec!(s, "Populate registry with test blob", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let blob = s.data.configs[0].clone();
        upload_blob(
            &mut s.client,
            &blob.content,
            &blob.content_length,
            &blob.digest,
            "",
        )
        .await
    });
    spec!(s, "Populate registry with test blob", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let blob = s.data.configs[1].clone();
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
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let (layer, length, digest) = (
            s.data.layer_blob_data.clone(),
            s.data.layer_blob_content_length.clone(),
            s.data.layer_blob_digest.clone(),
        );
        upload_blob(&mut s.client, &layer, &length, &digest, "").await
    });
    spec!(s, "Populate registry with test manifest", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        tag = TEST_TAG_NAME.to_owned();
        let req = s
            .client
            .request(
                "PUT",
                "/v2/<name>/manifests/<reference>",
                with_reference(&tag),
            )
            .header("Content-Type", MEDIA_TYPE_MANIFEST)
            .body(&s.data.manifests[0].content);
        let resp = s.client.send(req).await?;
        expect_2xx(&resp)
    });
    spec!(s, "Populate registry with test manifest", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s
            .client
            .request(
                "PUT",
                "/v2/<name>/manifests/<reference>",
                with_reference(&s.data.manifests[1].digest),
            )
            .header("Content-Type", MEDIA_TYPE_MANIFEST)
            .body(&s.data.manifests[1].content);
        let resp = s.client.send(req).await?;
        expect_2xx(&resp)
    });
    spec!(s, "Get tag name from environment", {
        s.skip_if_disabled(PULL)?;
        run_only_if_not(s.config.run_pull_setup())?;
        if !s.config.tag_name.is_empty() {
            tag = s.config.tag_name.clone();
        }
        Ok(())
    });

    s.context("Pull blobs");
    spec!(
        s,
        "HEAD request to nonexistent blob should result in 404 response",
        {
            s.skip_if_disabled(PULL)?;
            let req = s.client.request(
                "HEAD",
                "/v2/<name>/blobs/<digest>",
                with_digest(&s.data.dummy_digest),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 404)
        }
    );
    spec!(s, "HEAD request to existing blob should yield 200", {
        s.skip_if_disabled(PULL)?;
        let req = s.client.request(
            "HEAD",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[0].digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)?;
        let h = resp.header("Docker-Content-Digest");
        if !h.is_empty() {
            expect_eq(&h, &s.data.configs[0].digest, "Docker-Content-Digest")?;
        }
        Ok(())
    });
    spec!(s, "GET nonexistent blob should result in 404 response", {
        s.skip_if_disabled(PULL)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.dummy_digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 404)
    });
    spec!(s, "GET request to existing blob URL should yield 200", {
        s.skip_if_disabled(PULL)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[0].digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 200)
    });

    s.context("Pull manifests");
    spec!(
        s,
        "HEAD request to nonexistent manifest should return 404",
        {
            s.skip_if_disabled(PULL)?;
            let req = s.client.request(
                "HEAD",
                "/v2/<name>/manifests/<reference>",
                with_reference(NONEXISTENT_MANIFEST),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 404)
        }
    );
    spec!(
        s,
        "HEAD request to manifest[0] path (digest) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            let req = s
                .client
                .request(
                    "HEAD",
                    "/v2/<name>/manifests/<digest>",
                    with_digest(&s.data.manifests[0].digest),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            let h = resp.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect_eq(&h, &s.data.manifests[0].digest, "Docker-Content-Digest")?;
            }
            Ok(())
        }
    );
    spec!(
        s,
        "HEAD request to manifest[1] path (digest) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            let req = s
                .client
                .request(
                    "HEAD",
                    "/v2/<name>/manifests/<digest>",
                    with_digest(&s.data.manifests[1].digest),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            let h = resp.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect_eq(&h, &s.data.manifests[1].digest, "Docker-Content-Digest")?;
            }
            Ok(())
        }
    );
    spec!(
        s,
        "HEAD request to manifest path (tag) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            expect(!tag.is_empty(), || {
                "Expected tag not to be empty".to_owned()
            })?;
            let req = s
                .client
                .request(
                    "HEAD",
                    "/v2/<name>/manifests/<reference>",
                    with_reference(&tag),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            let h = resp.header("Docker-Content-Digest");
            if !h.is_empty() {
                expect_eq(&h, &s.data.manifests[0].digest, "Docker-Content-Digest")?;
            }
            Ok(())
        }
    );
    spec!(s, "GET nonexistent manifest should return 404", {
        s.skip_if_disabled(PULL)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/manifests/<reference>",
            with_reference(NONEXISTENT_MANIFEST),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 404)
    });
    spec!(
        s,
        "GET request to manifest[0] path (digest) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            let req = s
                .client
                .request(
                    "GET",
                    "/v2/<name>/manifests/<digest>",
                    with_digest(&s.data.manifests[0].digest),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );
    spec!(
        s,
        "GET request to manifest[1] path (digest) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            let req = s
                .client
                .request(
                    "GET",
                    "/v2/<name>/manifests/<digest>",
                    with_digest(&s.data.manifests[1].digest),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );
    spec!(
        s,
        "GET request to manifest path (tag) should yield 200 response",
        {
            s.skip_if_disabled(PULL)?;
            expect(!tag.is_empty(), || {
                "Expected tag not to be empty".to_owned()
            })?;
            let req = s
                .client
                .request(
                    "GET",
                    "/v2/<name>/manifests/<reference>",
                    with_reference(&tag),
                )
                .header("Accept", MEDIA_TYPE_MANIFEST);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );

    s.context("Error codes");
    spec!(
        s,
        "400 response body should contain OCI-conforming JSON message",
        {
            s.skip_if_disabled(PULL)?;
            // A GET with a body: resty v2.7 sends an io.Reader body whatever the method.
            let req = s
                .client
                .request(
                    "GET",
                    "/v2/<name>/manifests/<reference>",
                    with_reference("sha256:totallywrong"),
                )
                .header("Content-Type", MEDIA_TYPE_MANIFEST)
                .body(INVALID_MANIFEST_CONTENT);
            let resp = s.client.send(req).await?;
            expect_status_in(&resp, &[400, 404])?;
            if resp.status == 400 {
                let codes = error_codes(&resp)?;
                expect(!codes.is_empty(), || {
                    "Expected error responses not to be empty".to_owned()
                })?;
                expect(ERROR_CODES.contains(&codes[0].as_str()), || {
                    format!(
                        "Expected the error code list to contain the first error's code {:?}",
                        codes[0]
                    )
                })?;
            }
            Ok(())
        }
    );

    s.context("Teardown");
    if s.config.delete_manifest_before_blobs {
        delete_setup_manifests(s).await;
    }
    spec!(s, "Delete config[0] blob created in setup", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[0].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[404, 405])
    });
    spec!(s, "Delete config[1] blob created in setup", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[1].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[404, 405])
    });
    spec!(s, "Delete layer blob created in setup", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.layer_blob_digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[404, 405])
    });
    if !s.config.delete_manifest_before_blobs {
        delete_setup_manifests(s).await;
    }
}

/// The two manifest deletes of the teardown (2xx or 405; 404 is not accepted).
async fn delete_setup_manifests(s: &mut Suite) {
    spec!(s, "Delete manifest[0] created in setup", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/manifests/<digest>",
            with_digest(&s.data.manifests[0].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[405])
    });
    spec!(s, "Delete manifest[1] created in setup", {
        s.skip_if_disabled(PULL)?;
        run_only_if(s.config.run_pull_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/manifests/<digest>",
            with_digest(&s.data.manifests[1].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[405])
    });
}
