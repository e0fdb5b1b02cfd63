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
    let dir = tempfile::tempdir().unwrap();
    let server = support::WharfServer::start(&dir.path().join("data"), "");

    let mut rng = Rng::from_time();
    let config = Config::defaults(&mut rng);
    let data = TestData::generate(&config, &mut rng);
    println!("OCI Distribution Conformance Tests against {}", server.url);
    println!(
        "  OCI_NAMESPACE={}  OCI_CROSSMOUNT_NAMESPACE={}",
        config.namespace, config.crossmount_namespace
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
}
