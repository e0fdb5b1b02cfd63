//! Workflow 2: Push (`02_push_test.go`), 29 specs.

use crate::client::{Opts, Response, with_digest, with_name, with_reference};
use crate::data::{
    ChunkedBlob, EMPTY_LAYER_TEST_TAG, MEDIA_TYPE_MANIFEST, NONEXISTENT_MANIFEST, PUSH,
};
use crate::harness::{
    Stop, Suite, expect, expect_2xx_or, expect_eq, expect_not_empty, expect_status,
    expect_status_in, fail, panic_fail, run_only_if, run_only_if_not, spec,
};

const OCTET_STREAM: &str = "application/octet-stream";

/// Dereferences a workflow-level `*reggie.Response` the way Go would: a nil one panics.
fn deref<'a>(resp: &'a Option<Response>, name: &str) -> Result<&'a Response, Stop> {
    match resp {
        Some(resp) => Ok(resp),
        None => panic_fail(&format!(
            "runtime error: invalid memory address or nil pointer dereference ({name} is nil)"
        )),
    }
}

/// `Expect(resp).ToNot(BeNil())`.
fn expect_not_nil<'a>(resp: &'a Option<Response>, name: &str) -> Result<&'a Response, Stop> {
    match resp {
        Some(resp) => Ok(resp),
        None => fail(format!("Expected {name} not to be nil")),
    }
}

pub async fn run(s: &mut Suite) {
    s.workflow("Push");
    let mut last_response: Option<Response> = None;
    let mut prev_response: Option<Response> = None;
    let mut empty_layer_manifest_ref = String::new();

    // The "Setup" context has no specs.

    s.context("Blob Upload Streamed");
    spec!(
        s,
        "PATCH request with blob in body should yield 202 response",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", Opts::default());
            let resp = s.client.send(req).await?;
            expect_not_empty(&resp.header("Location"), "Location header")?;
            // No Content-Range and no explicit length: a streamed upload.
            let req = s
                .client
                .request("PATCH", &resp.relative_location(), Opts::default())
                .header("Content-Type", OCTET_STREAM)
                .body(&s.data.test_blob_a);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 202)?;
            last_response = Some(resp);
            Ok(())
        }
    );
    spec!(
        s,
        "PUT request to session URL with digest should yield 201 response",
        {
            s.skip_if_disabled(PUSH)?;
            let last = expect_not_nil(&last_response, "lastResponse")?;
            // The Content-Length header is set but there is no body: Content-Length 0 on the wire.
            let req = s
                .client
                .request("PUT", &last.relative_location(), Opts::default())
                .query("digest", &s.data.test_blob_a_digest)
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &s.data.test_blob_a_length);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 201)?;
            expect_not_empty(&resp.header("Location"), "Location header")
        }
    );

    s.context("Blob Upload Monolithic");
    spec!(s, "GET nonexistent blob should result in 404 response", {
        s.skip_if_disabled(PUSH)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.dummy_digest),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 404)
    });
    spec!(
        s,
        "POST request with digest and blob should yield a 201 or 202",
        {
            s.skip_if_disabled(PUSH)?;
            let config = &s.data.configs[1];
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", Opts::default())
                .header("Content-Length", &config.content_length)
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &config.digest)
                .body(&config.content);
            let resp = s.client.send(req).await?;
            expect_not_empty(&resp.header("Location"), "Location header")?;
            expect_status_in(&resp, &[201, 202])?;
            last_response = Some(resp);
            Ok(())
        }
    );
    spec!(
        s,
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        {
            s.skip_if_disabled(PUSH)?;
            let last_status = expect_not_nil(&last_response, "lastResponse")?.status;
            let req = s.client.request(
                "GET",
                "/v2/<name>/blobs/<digest>",
                with_digest(&s.data.configs[1].digest),
            );
            let resp = s.client.send(req).await?;
            if last_status == 202 {
                expect_status(&resp, 404)
            } else {
                expect_status(&resp, 200)
            }
        }
    );
    spec!(s, "POST request should yield a session ID", {
        s.skip_if_disabled(PUSH)?;
        let req = s
            .client
            .request("POST", "/v2/<name>/blobs/uploads/", Opts::default());
        let resp = s.client.send(req).await?;
        expect_status(&resp, 202)?;
        last_response = Some(resp);
        Ok(())
    });
    spec!(s, "PUT upload of a blob should yield a 201 Response", {
        s.skip_if_disabled(PUSH)?;
        let location = deref(&last_response, "lastResponse")?.relative_location();
        let config = &s.data.configs[1];
        let req = s
            .client
            .request("PUT", &location, Opts::default())
            .header("Content-Length", &config.content_length)
            .header("Content-Type", OCTET_STREAM)
            .query("digest", &config.digest)
            .body(&config.content);
        let resp = s.client.send(req).await?;
        expect_not_empty(&resp.header("Location"), "Location header")?;
        expect_status(&resp, 201)
    });
    spec!(
        s,
        "GET request to existing blob should yield 200 response",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s.client.request(
                "GET",
                "/v2/<name>/blobs/<digest>",
                with_digest(&s.data.configs[1].digest),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );
    spec!(
        s,
        "PUT upload of a layer blob should yield a 201 Response",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", Opts::default());
            let resp = s.client.send(req).await?;
            let req = s
                .client
                .request("PUT", &resp.relative_location(), Opts::default())
                .header("Content-Length", &s.data.layer_blob_content_length)
                .header("Content-Type", OCTET_STREAM)
                .query("digest", &s.data.layer_blob_digest)
                .body(&s.data.layer_blob_data);
            let resp = s.client.send(req).await?;
            expect_not_empty(&resp.header("Location"), "Location header")?;
            expect_status(&resp, 201)
        }
    );
    spec!(
        s,
        "GET request to existing layer should yield 200 response",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s.client.request(
                "GET",
                "/v2/<name>/blobs/<digest>",
                with_digest(&s.data.layer_blob_digest),
            );
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );

    s.context("Blob Upload Chunked");
    spec!(s, "Out-of-order blob upload should return 416", {
        s.skip_if_disabled(PUSH)?;
        let req = s
            .client
            .request("POST", "/v2/<name>/blobs/uploads/", Opts::default())
            .header("Content-Length", "0");
        let resp = s.client.send(req).await?;
        expect_not_empty(&resp.header("Location"), "Location header")?;

        // Rebuild the chunked blob if the registry's minimum chunk size is above chunk 1.
        let min_size = resp.header("OCI-Chunk-Min-Length");
        if !min_size.is_empty() {
            let min_size: i64 = match go_atoi(&min_size) {
                Some(n) => n,
                None => {
                    return fail(format!(
                        "Expected err to be nil, got: strconv.Atoi: parsing {min_size:?}: invalid syntax"
                    ));
                }
            };
            if min_size > s.data.blob_b.chunk1.len() as i64 {
                let size = min_size * 2 - 2;
                if size > 1 << 30 {
                    return panic_fail(&format!("cannot allocate a {size}-byte test blob"));
                }
                s.data.blob_b = ChunkedBlob::new(size as usize, s.data.seed.wrapping_add(2));
            }
        }

        // Send the second chunk first.
        let b = &s.data.blob_b;
        let req = s
            .client
            .request("PATCH", &resp.relative_location(), Opts::default())
            .header("Content-Type", OCTET_STREAM)
            .header("Content-Length", &b.chunk2_length)
            .header("Content-Range", &b.chunk2_range)
            .body(&b.chunk2);
        let resp = s.client.send(req).await?;
        expect_status(&resp, 416)
    });
    spec!(s, "PATCH request with first chunk should return 202", {
        s.skip_if_disabled(PUSH)?;
        let req = s
            .client
            .request("POST", "/v2/<name>/blobs/uploads/", Opts::default())
            .header("Content-Length", "0");
        let resp = s.client.send(req).await?;
        expect_not_empty(&resp.header("Location"), "Location header")?;
        let location = resp.relative_location();
        prev_response = Some(resp);
        let b = &s.data.blob_b;
        let req = s
            .client
            .request("PATCH", &location, Opts::default())
            .header("Content-Type", OCTET_STREAM)
            .header("Content-Length", &b.chunk1_length)
            .header("Content-Range", &b.chunk1_range)
            .body(&b.chunk1);
        let resp = s.client.send(req).await?;
        expect_status(&resp, 202)?;
        expect_eq(
            &resp.header("Range"),
            &s.data.blob_b.chunk1_range,
            "the Range header",
        )?;
        last_response = Some(resp);
        Ok(())
    });
    spec!(s, "Retry previous blob chunk should return 416", {
        s.skip_if_disabled(PUSH)?;
        let location = deref(&prev_response, "prevResponse")?.relative_location();
        let b = &s.data.blob_b;
        let req = s
            .client
            .request("PATCH", &location, Opts::default())
            .header("Content-Type", OCTET_STREAM)
            .header("Content-Length", &b.chunk1_length)
            .header("Content-Range", &b.chunk1_range)
            .body(&b.chunk1);
        let resp = s.client.send(req).await?;
        expect_status(&resp, 416)
    });
    spec!(
        s,
        "Get on stale blob upload should return 204 with a range and location",
        {
            s.skip_if_disabled(PUSH)?;
            let location = deref(&prev_response, "prevResponse")?.relative_location();
            let req = s.client.request("GET", &location, Opts::default());
            let resp = s.client.send(req).await?;
            expect_status(&resp, 204)?;
            expect_not_empty(&resp.header("Location"), "Location header")?;
            expect_eq(
                &resp.header("Range"),
                &s.data.blob_b.chunk1_range,
                "the Range header",
            )?;
            last_response = Some(resp);
            Ok(())
        }
    );
    spec!(s, "PATCH request with second chunk should return 202", {
        s.skip_if_disabled(PUSH)?;
        let location = deref(&last_response, "lastResponse")?.relative_location();
        let b = &s.data.blob_b;
        let req = s
            .client
            .request("PATCH", &location, Opts::default())
            .header("Content-Length", &b.chunk2_length)
            .header("Content-Range", &b.chunk2_range)
            .header("Content-Type", OCTET_STREAM)
            .body(&b.chunk2);
        let resp = s.client.send(req).await?;
        let location = resp.header("Location");
        expect_status(&resp, 202)?;
        expect_not_empty(&location, "Location header")?;
        last_response = Some(resp);
        Ok(())
    });
    spec!(s, "PUT request with digest should return 201", {
        s.skip_if_disabled(PUSH)?;
        let location = deref(&last_response, "lastResponse")?.relative_location();
        let req = s
            .client
            .request("PUT", &location, Opts::default())
            .header("Content-Length", "0")
            .header("Content-Type", OCTET_STREAM)
            .query("digest", &s.data.blob_b.digest);
        let resp = s.client.send(req).await?;
        expect_status(&resp, 201)?;
        expect_not_empty(&resp.header("Location"), "Location header")
    });

    s.context("Cross-Repository Blob Mount");
    let crossmount = s.config.crossmount_namespace.clone();
    spec!(
        s,
        "Cross-mounting of a blob without the from argument should yield session id",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", with_name(&crossmount))
                .query("mount", &s.data.dummy_digest);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 202)?;
            expect_not_empty(&resp.absolute_location(), "Location header")
        }
    );
    spec!(
        s,
        "POST request to mount another repository's blob should return 201 or 202",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", with_name(&crossmount))
                .query("mount", &s.data.test_blob_a_digest)
                .query("from", &s.config.namespace);
            let resp = s.client.send(req).await?;
            expect_status_in(&resp, &[201, 202])?;
            last_response = Some(resp);
            Ok(())
        }
    );
    spec!(
        s,
        "GET request to test digest within cross-mount namespace should return 200",
        {
            s.skip_if_disabled(PUSH)?;
            let last = deref(&last_response, "lastResponse")?;
            run_only_if(last.status == 201)?;
            let location = last.relative_location();
            expect_eq(
                &location,
                &format!("/v2/{crossmount}/blobs/{}", s.data.test_blob_a_digest),
                "the relative Location",
            )?;
            let req = s.client.request("GET", &location, Opts::default());
            let resp = s.client.send(req).await?;
            expect_status(&resp, 200)
        }
    );
    spec!(
        s,
        "Cross-mounting of nonexistent blob should yield session id",
        {
            s.skip_if_disabled(PUSH)?;
            let last = deref(&last_response, "lastResponse")?;
            run_only_if(last.status == 202)?;
            let location = last.relative_location();
            let prefix = format!("/v2/{crossmount}/blobs/uploads/");
            expect(location.starts_with(&prefix), || {
                format!(
                    "Expected the relative Location\n    {location:?}\nto have prefix\n    {prefix:?}"
                )
            })
        }
    );
    spec!(
        s,
        "Cross-mounting without from, and automatic content discovery enabled should return a 201",
        {
            s.skip_if_disabled(PUSH)?;
            run_only_if(s.config.run_automatic_crossmount_test)?;
            run_only_if(deref(&last_response, "lastResponse")?.status == 201)?;
            run_only_if(s.config.automatic_crossmount_enabled)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", with_name(&crossmount))
                .query("mount", &s.data.test_blob_a_digest);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 201)
        }
    );
    spec!(
        s,
        "Cross-mounting without from, and automatic content discovery disabled should return a 202",
        {
            s.skip_if_disabled(PUSH)?;
            run_only_if(s.config.run_automatic_crossmount_test)?;
            run_only_if(deref(&last_response, "lastResponse")?.status == 201)?;
            run_only_if_not(s.config.automatic_crossmount_enabled)?;
            let req = s
                .client
                .request("POST", "/v2/<name>/blobs/uploads/", with_name(&crossmount))
                .query("mount", &s.data.test_blob_a_digest);
            let resp = s.client.send(req).await?;
            expect_status(&resp, 202)
        }
    );

    s.context("Manifest Upload");
    spec!(s, "GET nonexistent manifest should return 404", {
        s.skip_if_disabled(PUSH)?;
        let req = s.client.request(
            "GET",
            "/v2/<name>/manifests/<reference>",
            with_reference(NONEXISTENT_MANIFEST),
        );
        let resp = s.client.send(req).await?;
        expect_status(&resp, 404)
    });
    spec!(s, "PUT should accept a manifest upload", {
        s.skip_if_disabled(PUSH)?;
        for i in 0..4 {
            let tag = format!("test{i}");
            let req = s
                .client
                .request(
                    "PUT",
                    "/v2/<name>/manifests/<reference>",
                    with_reference(&tag),
                )
                .header("Content-Type", MEDIA_TYPE_MANIFEST)
                .body(&s.data.manifests[1].content);
            let resp = s.client.send(req).await?;
            expect_not_empty(&resp.header("Location"), "Location header")?;
            expect_status(&resp, 201)?;
        }
        Ok(())
    });
    spec!(
        s,
        "Registry should accept a manifest upload with no layers",
        {
            s.skip_if_disabled(PUSH)?;
            let req = s
                .client
                .request(
                    "PUT",
                    "/v2/<name>/manifests/<reference>",
                    with_reference(EMPTY_LAYER_TEST_TAG),
                )
                .header("Content-Type", MEDIA_TYPE_MANIFEST)
                .body(&s.data.empty_layer_manifest_content);
            let resp = s.client.send(req).await?;
            if resp.status == 201 {
                let location = resp.header("Location");
                empty_layer_manifest_ref = location.clone();
                expect_not_empty(&location, "Location header")?;
                expect_status(&resp, 201)?;
            } else {
                s.warn("image manifest with no layers is not supported");
            }
            Ok(())
        }
    );
    spec!(
        s,
        "GET request to manifest URL (digest) should yield 200 response",
        {
            s.skip_if_disabled(PUSH)?;
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

    s.context("Teardown");
    if s.config.delete_manifest_before_blobs {
        delete_manifests(s, &empty_layer_manifest_ref).await;
    }
    spec!(s, "Delete config blob created in tests", {
        s.skip_if_disabled(PUSH)?;
        run_only_if(s.config.run_push_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.configs[1].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[404, 405])
    });
    spec!(s, "Delete layer blob created in setup", {
        s.skip_if_disabled(PUSH)?;
        run_only_if(s.config.run_push_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/blobs/<digest>",
            with_digest(&s.data.layer_blob_digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[404, 405])
    });
    if !s.config.delete_manifest_before_blobs {
        delete_manifests(s, &empty_layer_manifest_ref).await;
    }
}

/// "Delete manifest created in tests" (2xx or 405; 404 is not accepted).
async fn delete_manifests(s: &mut Suite, empty_layer_manifest_ref: &str) {
    spec!(s, "Delete manifest created in tests", {
        s.skip_if_disabled(PUSH)?;
        run_only_if(s.config.run_push_setup())?;
        let req = s.client.request(
            "DELETE",
            "/v2/<name>/manifests/<digest>",
            with_digest(&s.data.manifests[1].digest),
        );
        let resp = s.client.send(req).await?;
        expect_2xx_or(&resp, &[405])?;
        if !empty_layer_manifest_ref.is_empty() {
            let req = s.client.request(
                "DELETE",
                "/v2/<name>/manifests/<reference>",
                with_reference(&s.data.empty_layer_manifest_digest),
            );
            let resp = s.client.send(req).await?;
            expect_2xx_or(&resp, &[405])?;
        }
        Ok(())
    });
}

/// Go's `strconv.Atoi`: optional sign, then decimal digits only.
fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
