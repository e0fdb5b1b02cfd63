//! A Rust port of the OCI distribution-spec conformance suite
//! (`github.com/opencontainers/distribution-spec/conformance`, the Ginkgo suite of spec v1.1),
//! run against the real `wharf serve`.
//!
//! The four workflows run in the suite's order (Pull, Push, Content Discovery, Content
//! Management) against one server and one repository, with the suite's default configuration:
//! every workflow enabled, `OCI_NAMESPACE=conformance/test`, a fresh `conformance-<uuid>`
//! cross-mount namespace, manifests deleted before blobs, `OCI_AUTOMATIC_CROSSMOUNT` unset. Each
//! spec keeps the suite's requests and assertions; a failure ends that spec only, and the test
//! fails at the end if any spec failed, listing each failure with its HTTP exchanges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod support;

#[path = "oci_conformance/client.rs"]
mod client;
#[path = "oci_conformance/data.rs"]
mod data;
#[path = "oci_conformance/discovery.rs"]
mod discovery;
#[path = "oci_conformance/gojson.rs"]
mod gojson;
#[path = "oci_conformance/harness.rs"]
mod harness;
#[path = "oci_conformance/management.rs"]
mod management;
#[path = "oci_conformance/pull.rs"]
mod pull;
#[path = "oci_conformance/push.rs"]
mod push;
#[path = "oci_conformance/steps.rs"]
mod steps;

use client::Client;
use data::{Config, Rng, TestData};
use harness::Suite;

#[tokio::test]
async fn oci_distribution_spec_conformance() {
    run(|_| {}).await;
}

/// The suite's other settings a registry that checks references meets: blobs deleted before the
/// manifests that use them (`OCI_DELETE_MANIFEST_BEFORE_BLOBS=0`: such a delete must answer 2xx,
/// 404 or 405, and Wharf's is 405), and a mount without `from`
/// (`OCI_AUTOMATIC_CROSSMOUNT=1`: automatic content discovery, 201).
#[tokio::test]
async fn oci_distribution_spec_conformance_blobs_first_and_automatic_crossmount() {
    let suite = run(|config| {
        config.delete_manifest_before_blobs = false;
        config.run_automatic_crossmount_test = true;
        config.automatic_crossmount_enabled = true;
    })
    .await;
    let discovery = suite
        .records
        .iter()
        .find(|r| r.title.contains("automatic content discovery enabled"))
        .expect("the automatic cross-mount spec is in the suite");
    assert_eq!(
        discovery.outcome,
        harness::Outcome::Passed,
        "the automatic cross-mount spec ran and passed"
    );
}

/// Runs the four workflows against a fresh `wharf serve` with the suite's default settings as
/// `adjust` changes them; panics listing the failed specs, else returns the suite's records.
async fn run(adjust: impl FnOnce(&mut Config)) -> Suite {
    let dir = tempfile::tempdir().unwrap();
    let server = support::WharfServer::start(&dir.path().join("data"), "");

    let mut rng = Rng::from_time();
    let mut config = Config::defaults(&mut rng);
    adjust(&mut config);
    let data = TestData::generate(&config, &mut rng);
    println!("OCI Distribution Conformance Tests against {}", server.url);
    println!(
        "  OCI_NAMESPACE={}  OCI_CROSSMOUNT_NAMESPACE={}  OCI_DELETE_MANIFEST_BEFORE_BLOBS={}  OCI_AUTOMATIC_CROSSMOUNT={}",
        config.namespace,
        config.crossmount_namespace,
        config.delete_manifest_before_blobs,
        if config.run_automatic_crossmount_test {
            config.automatic_crossmount_enabled.to_string()
        } else {
            "(unset)".to_owned()
        }
    );

    let client = Client::new(&server.url, &config.namespace);
    let mut suite = Suite::new(config, data, client);
    pull::run(&mut suite).await;
    push::run(&mut suite).await;
    discovery::run(&mut suite).await;
    management::run(&mut suite).await;

    let report = suite.report();
    match report {
        Ok(report) => println!("{report}"),
        Err(report) => {
            println!("{report}");
            let failed: Vec<String> = suite
                .records
                .iter()
                .filter(|r| r.outcome == harness::Outcome::Failed)
                .map(|r| {
                    format!(
                        "  {} / {} / {}: {}",
                        r.workflow, r.context, r.title, r.message
                    )
                })
                .collect();
            panic!(
                "{} of {} OCI conformance specs failed (requests and responses above):\n{}",
                failed.len(),
                suite.records.len(),
                failed.join("\n")
            );
        }
    }
    drop(server);
    suite
}
