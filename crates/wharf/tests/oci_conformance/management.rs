//! Workflow 4: Content Management (`04_management_test.go`), 10 specs.

use crate::client::{Opts, with_digest, with_reference};
use crate::data::{CONTENT_MANAGEMENT, MEDIA_TYPE_MANIFEST, TEST_TAG_NAME, UNSUPPORTED};
use crate::harness::{
    Suite, expect, expect_2xx, expect_eq, expect_status, expect_status_in, run_only_if, spec,
};
use crate::steps::{error_codes, parse_tag_list, upload_blob};

pub async fn run(s: &mut Suite) {
    s.workflow("Content Management");
    let mut tag_to_delete = String::new();
    let mut num_tags: usize = 0;
    let mut blob_delete_allowed = true;

    s.context("Setup");
    spec!(s, "Populate registry with test config blob", {
        s.skip_if_disabled(CONTENT_MANAGEMENT)?;
        run_only_if(s.config.run_content_management_setup())?;
        let blob = &s.data.configs[3];
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
        s.skip_if_disabled(CONTENT_MANAGEMENT)?;
        run_only_if(s.config.run_content_management_setup())?;
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
    spec!(s, "Populate registry with test tag", {
        s.skip_if_disabled(CONTENT_MANAGEMENT)?;
        run_only_if(s.config.run_content_management_setup())?;
        tag_to_delete = TEST_TAG_NAME.to_owned();
        let req = s
            .client
            .request(
                "PUT",
                "/v2/<name>/manifests/<reference>",
                with_reference(&tag_to_delete),
            )
            .header("Content-Type", MEDIA_TYPE_MANIFEST)
            .body(&s.data.manifests[3].content);
        let resp = s.client.send(req).await?;
        expect_2xx(&resp)
    });
    spec!(
        s,
        "Check how many tags there are before anything gets deleted",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            run_only_if(s.config.run_content_management_setup())?;
            let req = s
                .client
                .request("GET", "/v2/<name>/tags/list", Opts::default());
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            num_tags = parse_tag_list(&resp)?.len();
            Ok(())
        }
    );

    s.context("Manifest delete");
    spec!(
        s,
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            let req = s.client.request(
                "DELETE",
                "/v2/<name>/manifests/<reference>",
                with_reference(&tag_to_delete),
            );
            let resp = s.client.send(req).await?;
            expect_status_in(&resp, &[400, 202, 405])?;
            if resp.status == 400 {
                let codes = error_codes(&resp)?;
                expect(!codes.is_empty(), || {
                    "Expected error responses not to be empty".to_owned()
                })?;
                expect_eq(&codes[0], UNSUPPORTED, "the first error's code")?;
            }
            Ok(())
        }
    );
    spec!(
        s,
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            let req = s.client.request(
                "DELETE",
                "/v2/<name>/manifests/<digest>",
                with_digest(&s.data.manifests[3].digest),
            );
            let resp = s.client.send(req).await?;
            // If the tag delete was accepted, this may or may not find the manifest (either is fine).
            expect_status_in(&resp, &[202, 404])
        }
    );
    spec!(
        s,
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            let req = s.client.request(
                "GET",
                "/v2/<name>/manifests/<digest>",
                with_digest(&s.data.manifests[3].digest),
            );
            let resp = s.client.send(req).await?;
            expect_status_in(&resp, &[404, 200])
        }
    );
    spec!(
        s,
        "GET request to tags list should reflect manifest deletion",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            let req = s
                .client
                .request("GET", "/v2/<name>/tags/list", Opts::default());
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)?;
            let tags = parse_tag_list(&resp)?;
            expect(tags.len() < num_tags, || {
                format!(
                    "Expected fewer than {num_tags} tags after the deletes, got {}: {tags:?}",
                    tags.len()
                )
            })
        }
    );

    s.context("Blob delete");
    spec!(s, "DELETE request to blob URL should yield 202 response", {
        s.skip_if_disabled(CONTENT_MANAGEMENT)?;
        run_only_if(s.config.run_content_management_setup())?;
        // config blob
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[3].digest),
        );
        let resp = s.client.send(req).await?;
        expect_status_in(&resp, &[202, 404, 405])?;
        // layer blob
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.layer_blob_digest),
        );
        let resp = s.client.send(req).await?;
        expect_status_in(&resp, &[202, 404, 405])?;
        if resp.status == 405 {
            blob_delete_allowed = false;
        }
        Ok(())
    });
    spec!(
        s,
        "GET request to deleted blob URL should yield 404 response",
        {
            s.skip_if_disabled(CONTENT_MANAGEMENT)?;
            run_only_if(s.config.run_content_management_setup())?;
            run_only_if(blob_delete_allowed)?;
            let req = s.client.request(
                "GET",
                "/v2/<name>/blobs/<digest>",
                with_digest(&s.data.configs[3].digest),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 404)
        }
    );

    // The "Teardown" context has no specs.
}
