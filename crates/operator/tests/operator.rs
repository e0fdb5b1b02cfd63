//! The operator against a real Kubernetes API server and a real `wharf serve` (see
//! `support/mod.rs`): the CRD's schema, what reconciling creates, that reconciling again changes
//! nothing, and read-only toggled from the resource on the running registry without touching the
//! Deployment.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;

use support::{Operator, Registry, condition, eventually, namespace, status_where};
use wharf_operator::crd::WharfRegistry;
use wharf_operator::reconcile::{self, Context};
use wharf_operator::render::{CONFIG_HASH_ANNOTATION, Names};

const READ_ONLY_MESSAGE: &str = "System is currently read-only. Pulls will succeed but all write operations are currently suspended.";

fn resource(name: &str, spec: serde_json::Value) -> WharfRegistry {
    serde_json::from_value(json!({
        "apiVersion": "wharf.dev/v1alpha1",
        "kind": "WharfRegistry",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// The committed CRD is the one the types generate (`wharf-operator crd > deploy/crd.yaml`).
#[test]
fn the_committed_crd_is_generated_from_the_types() {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_wharf-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/crd.yaml"
    ))
    .unwrap();
    assert_eq!(
        String::from_utf8(printed.stdout).unwrap(),
        committed,
        "deploy/crd.yaml is stale: run `cargo run -p wharf-operator -- crd > deploy/crd.yaml`"
    );
    assert_eq!(WharfRegistry::crd_name(), "wharfregistries.wharf.dev");
}

/// The API server validates the spec against the generated schema and names the bad field.
#[tokio::test]
async fn the_schema_rejects_a_bad_spec() {
    let (client, ns) = namespace("schema").await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &ns, &ApiResource::erase::<WharfRegistry>(&()));
    let create = |spec: serde_json::Value| {
        let api = api.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "wharf.dev/v1alpha1",
                "kind": "WharfRegistry",
                "metadata": {"name": "bad"},
                "spec": spec,
            }))
            .unwrap();
            api.create(&PostParams::default(), &object).await
        }
    };
    let cases = [
        (json!({"replicas": 1}), "spec.image"),
        (json!({"image": "wharf", "replicas": -1}), "spec.replicas"),
        (
            json!({"image": "wharf", "readOnly": {"enabled": "yes"}}),
            "spec.readOnly.enabled",
        ),
        (
            json!({"image": "wharf", "metadata": {"sqlite": {}, "postgres": {"urlSecret": {"name": "a", "key": "b"}}}}),
            "spec.metadata",
        ),
        (
            json!({"image": "wharf", "drain": {"timeout": "a minute"}}),
            "spec.drain.timeout",
        ),
    ];
    for (spec, field) in cases {
        let error = create(spec.clone())
            .await
            .expect_err(&format!("{spec} was accepted"));
        let kube::Error::Api(status) = error else {
            panic!("{spec}: not refused by the API server: {error}");
        };
        assert_eq!(status.code, 422, "{spec}: {status:?}");
        assert!(status.message.contains(field), "{spec}: {}", status.message);
    }
    // And a good one is accepted, as is the sample as it is committed.
    create(json!({"image": "wharf"})).await.unwrap();
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/samples/wharfregistry.yaml"
    );
    support::cluster()
        .kubectl(&["apply", "--dry-run=server", "-f", sample])
        .unwrap();
}

/// Everything a running registry needs: the resource, the operator, and the registry started
/// from what the operator rendered.
struct Running {
    client: kube::Client,
    ns: String,
    name: String,
    api: Api<WharfRegistry>,
    registry: Registry,
    operator: Option<Operator>,
    urls: BTreeMap<String, String>,
}

async fn running(prefix: &str, spec: serde_json::Value) -> Running {
    let (client, ns) = namespace(prefix).await;
    let name = "registry".to_owned();
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &resource(&name, spec))
        .await
        .unwrap();
    let address = Registry::address();
    let urls = BTreeMap::from([(format!("{ns}/{name}"), format!("http://{address}"))]);
    // The operator runs with the permissions deploy/rbac.yaml gives it, and no more.
    let operator_client = support::cluster().operator_client().await;
    let operator = Operator::start(&operator_client, &ns, urls.clone()).await;
    // Before the registry runs, the operator says it cannot reach it.
    status_where(
        &api,
        &name,
        "Available=False before the registry runs",
        |_, s| {
            condition(s, "Available")
                .is_some_and(|c| c.status == "False" && c.reason == "RegistryUnreachable")
        },
    )
    .await;
    let registry = Registry::start(&client, &ns, &name, &address).await;
    status_where(
        &api,
        &name,
        "Available=True once the registry runs",
        |_, s| {
            condition(s, "Available").is_some_and(|c| c.status == "True")
                && condition(s, "ReadOnly")
                    .is_some_and(|c| c.status == "False" && c.reason == "Writable")
        },
    )
    .await;
    Running {
        client,
        ns,
        name,
        api,
        registry,
        operator: Some(operator),
        urls,
    }
}

/// The resourceVersion of every object the operator writes, the resource's own included.
async fn resource_versions(run: &Running) -> BTreeMap<String, String> {
    let names = Names::of(&run.name);
    let ns = &run.ns;
    let client = &run.client;
    let mut versions = BTreeMap::new();
    let rv = |kind: &str, version: Option<String>| (kind.to_owned(), version.unwrap());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource {
            group: "policy".into(),
            version: "v1beta1".into(),
            api_version: "policy/v1beta1".into(),
            kind: "PodDisruptionBudget".into(),
            plural: "poddisruptionbudgets".into(),
        },
    );
    for (kind, version) in [
        rv(
            "Deployment",
            deployments
                .get(&names.registry)
                .await
                .unwrap()
                .resource_version(),
        ),
        rv(
            "ConfigMap",
            config_maps
                .get(&names.config)
                .await
                .unwrap()
                .resource_version(),
        ),
        rv(
            "Service",
            services
                .get(&names.registry)
                .await
                .unwrap()
                .resource_version(),
        ),
        rv(
            "ServiceAccount",
            accounts
                .get(&names.registry)
                .await
                .unwrap()
                .resource_version(),
        ),
        rv(
            "Secret",
            secrets
                .get(&names.credentials)
                .await
                .unwrap()
                .resource_version(),
        ),
        rv(
            "PodDisruptionBudget",
            pdbs.get(&names.registry).await.unwrap().resource_version(),
        ),
        rv(
            "WharfRegistry",
            run.api.get(&run.name).await.unwrap().resource_version(),
        ),
    ] {
        versions.insert(kind, version);
    }
    versions
}

/// Reconciling creates every owned object, owned by the resource; reconciling the same spec
/// twice more changes none of them (nor the resource's status).
#[tokio::test]
async fn reconciling_the_same_spec_again_changes_nothing() {
    let run = running(
        "idempotent",
        json!({"image": "wharf:1", "drain": {"pushGrace": "1s"}}),
    )
    .await;
    let names = Names::of(&run.name);
    let deployments: Api<Deployment> = Api::namespaced(run.client.clone(), &run.ns);
    let deployment = deployments.get(&names.registry).await.unwrap();
    let owner = &deployment.owner_references()[0];
    assert_eq!(owner.kind, "WharfRegistry");
    assert_eq!(owner.controller, Some(true));
    let before = resource_versions(&run).await;
    // Two reconciles by hand, besides the running controller's.
    let context = Context::new(
        run.client.clone(),
        reqwest::Client::new(),
        BTreeMap::from([(format!("{}/{}", run.ns, run.name), run.registry.url.clone())]),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let resource = run.api.get(&run.name).await.unwrap();
        reconcile::apply(&resource, &context).await.unwrap();
    }
    assert_eq!(resource_versions(&run).await, before);
}

fn template_of(deployment: &Deployment) -> serde_json::Value {
    serde_json::to_value(&deployment.spec.as_ref().unwrap().template).unwrap()
}

/// `readOnly.enabled` takes the `operator` hold on the running registry: a push is refused with
/// the read-only message, the status says so with the spec's generation, and the Deployment is
/// untouched; disabling it releases the hold and pushes work again; a new image changes the pod
/// template; deleting the resource while read-only releases the hold.
#[tokio::test]
async fn read_only_is_toggled_on_the_running_registry_without_touching_the_deployment() {
    let run = running(
        "readonly",
        json!({"image": "wharf:1", "drain": {"pushGrace": "1s"}}),
    )
    .await;
    let names = Names::of(&run.name);
    let deployments: Api<Deployment> = Api::namespaced(run.client.clone(), &run.ns);
    let before = deployments.get(&names.registry).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(run.client.clone(), &run.ns);
    let config_before = config_maps
        .get(&names.config)
        .await
        .unwrap()
        .resource_version();
    let (status, _) = run.registry.start_upload("team/app").await;
    assert_eq!(status, 202, "a push works while writable");

    let patch = |spec: serde_json::Value| {
        let api = run.api.clone();
        let name = run.name.clone();
        async move {
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap()
        }
    };
    let changed = patch(json!({"readOnly": {"enabled": true, "reason": "nightly backup"}})).await;
    let generation = changed.metadata.generation;
    let held = status_where(&run.api, &run.name, "ReadOnly=True", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| {
            c.status == "True" && c.reason == "InEffect" && c.observed_generation == generation
        }) && s.observed_generation == generation
    })
    .await;
    // What a user (or a pipeline) waits with.
    let (ns, name) = (run.ns.clone(), format!("wharfregistry/{}", run.name));
    tokio::task::spawn_blocking(move || {
        support::cluster().kubectl(&[
            "wait",
            "-n",
            &ns,
            "--for=condition=ReadOnly",
            "--timeout=60s",
            &name,
        ])
    })
    .await
    .unwrap()
    .unwrap();
    let listed = support::cluster()
        .kubectl(&["get", "-n", &run.ns, "wharfregistries"])
        .unwrap();
    let columns: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        columns[..4],
        ["registry", "read-only", "1/1", "True"],
        "{listed}"
    );
    let events = support::cluster()
        .kubectl(&[
            "get",
            "-n",
            &run.ns,
            "events.v1.events.k8s.io",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .unwrap();
    assert!(events.contains("ReadOnlyInEffect"), "{events}");
    let read_only = held.status.unwrap().read_only.unwrap();
    assert_eq!(
        (read_only.state.as_str(), read_only.replicas.as_str()),
        ("read-only", "1/1")
    );

    let state = run.registry.state().await;
    assert_eq!(state["effective"], "read-only");
    let hold = state["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "operator")
        .expect("the operator's hold");
    let reason = hold["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("nightly backup (WharfRegistry "),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("{}/{}", run.ns, run.name)),
        "{reason}"
    );
    assert!(reason.contains(&changed.uid().unwrap()), "{reason}");

    let (status, body) = run.registry.start_upload("team/app").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(body["errors"][0]["message"], READ_ONLY_MESSAGE);

    let after = deployments.get(&names.registry).await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(template_of(&after), template_of(&before));

    // Writable again.
    let changed = patch(json!({"readOnly": {"enabled": false}})).await;
    let generation = changed.metadata.generation;
    status_where(&run.api, &run.name, "ReadOnly=False", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| {
            c.status == "False" && c.reason == "Writable" && c.observed_generation == generation
        })
    })
    .await;
    let (status, body) = run.registry.start_upload("team/app").await;
    assert_eq!(status, 202, "{body}");
    assert!(
        run.registry.state().await["holds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let after = deployments.get(&names.registry).await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(template_of(&after), template_of(&before));
    assert_eq!(
        config_maps
            .get(&names.config)
            .await
            .unwrap()
            .resource_version(),
        config_before,
        "toggling read-only does not touch the ConfigMap"
    );

    // A new image is a new pod template (a rollout), and nothing about read-only.
    patch(json!({"image": "wharf:2"})).await;
    let rolled = eventually("the new image in the template", || async {
        let d = deployments.get(&names.registry).await.ok()?;
        let image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone();
        (image.as_deref() == Some("wharf:2")).then_some(d)
    })
    .await;
    assert!(rolled.metadata.generation > before.metadata.generation);
    assert_eq!(
        rolled
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_HASH_ANNOTATION],
        before
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_HASH_ANNOTATION],
        "the configuration did not change"
    );

    // Deleted while read-only: the finalizer releases the hold before the resource goes.
    patch(json!({"readOnly": {"enabled": true}})).await;
    status_where(&run.api, &run.name, "ReadOnly=True again", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| c.status == "True")
    })
    .await;
    run.api
        .delete(&run.name, &Default::default())
        .await
        .unwrap();
    eventually("the resource to be gone", || async {
        run.api
            .get_opt(&run.name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let state = run.registry.state().await;
    assert_eq!(state["effective"], "read-write", "{state}");
    let (status, body) = run.registry.start_upload("team/app").await;
    assert_eq!(status, 202, "{body}");
}

/// A drain change is hot: it changes the ConfigMap, not the pod template. (The real
/// `wharf-operator run` binary reconciles here, with no registry to reach.)
#[tokio::test]
async fn a_drain_setting_changes_the_config_map_but_not_the_pod_template() {
    let (client, ns) = namespace("hot").await;
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource("registry", json!({"image": "wharf:1"})),
    )
    .await
    .unwrap();
    let _operator = support::OperatorProcess::start(&ns, &BTreeMap::new());
    let names = Names::of("registry");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let before = eventually("the Deployment", || async {
        deployments.get_opt(&names.registry).await.ok().flatten()
    })
    .await;
    api.patch(
        "registry",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"drain": {"timeout": "5m"}}})),
    )
    .await
    .unwrap();
    eventually("the new drain timeout in wharf.yaml", || async {
        let cm = config_maps.get_opt(&names.config).await.ok().flatten()?;
        cm.data?["wharf.yaml"].contains("timeout: 5m").then_some(())
    })
    .await;
    let after = deployments.get(&names.registry).await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(template_of(&after), template_of(&before));
}

/// Read-only switched on while an upload's body is still arriving: the condition says
/// `Draining` (with the write in flight) and not `True` while the body is held; once it ends
/// (and the push, paused past `pushGrace`, is cut off), `True`.
#[tokio::test]
async fn the_status_says_draining_until_the_write_under_way_ends() {
    let run = running(
        "drain",
        json!({"image": "wharf:1", "drain": {"pushGrace": "1s", "timeout": "1m"}}),
    )
    .await;
    let http = reqwest::Client::new();
    let opened = http
        .post(format!("{}/v2/team/app/blobs/uploads/", run.registry.url))
        .basic_auth("admin", Some(&run.registry.password))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 202);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("{}{location}", run.registry.url)
    } else {
        location
    };
    // A chunk whose body is held open: the write stays in flight until the sender goes.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    sender.send(Ok(vec![7; 4096])).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(receiver, |mut r| async {
        r.recv().await.map(|chunk| (chunk, r))
    }));
    let password = run.registry.password.clone();
    let patch = tokio::spawn(async move {
        reqwest::Client::new()
            .patch(&location)
            .basic_auth("admin", Some(&password))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    eventually("the held chunk in flight", || async {
        (run.registry.state().await["writes_in_flight"] == 1).then_some(())
    })
    .await;

    run.api
        .patch(
            &run.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"readOnly": {"enabled": true}}})),
        )
        .await
        .unwrap();
    let draining = status_where(&run.api, &run.name, "ReadOnly=Unknown/Draining", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| c.status == "Unknown" && c.reason == "Draining")
    })
    .await;
    let message = &condition(draining.status.as_ref().unwrap(), "ReadOnly")
        .unwrap()
        .message;
    assert!(
        message.starts_with("draining: 1 write in flight"),
        "{message}"
    );
    // The body is still held: the registry still drains, and a new push is already refused.
    assert_eq!(run.registry.state().await["effective"], "draining");
    let (status, body) = run.registry.start_upload("other/app").await;
    assert_eq!(status, 405, "{body}");
    assert!(!patch.is_finished());

    // The operator stops mid-drain and another starts: it picks up from the registry's state,
    // and does not take the hold again (the hold's last update stays the first one).
    let mut run = run;
    let hold_updated = |state: serde_json::Value| state["holds"][0]["updated_at"].clone();
    let updated = hold_updated(run.registry.state().await);
    drop(run.operator.take());
    let operator_client = support::cluster().operator_client().await;
    run.operator = Some(Operator::start(&operator_client, &run.ns, run.urls.clone()).await);

    drop(sender);
    assert_eq!(patch.await.unwrap(), 202, "the write under way finishes");
    let held = status_where(
        &run.api,
        &run.name,
        "ReadOnly=True after the drain",
        |_, s| {
            condition(s, "ReadOnly").is_some_and(|c| c.status == "True" && c.reason == "InEffect")
        },
    )
    .await;
    let last = held
        .status
        .unwrap()
        .read_only
        .unwrap()
        .last_transition
        .unwrap();
    assert_eq!(
        (last.from.as_str(), last.to.as_str()),
        ("draining", "read-only")
    );
    assert_eq!(hold_updated(run.registry.state().await), updated);

    // The registry stops answering: the status says so, and keeps what it last reported.
    run.registry.stop();
    let lost = status_where(
        &run.api,
        &run.name,
        "ReadOnly=Unknown/RegistryUnreachable",
        |_, s| {
            condition(s, "ReadOnly")
                .is_some_and(|c| c.status == "Unknown" && c.reason == "RegistryUnreachable")
                && condition(s, "Available").is_some_and(|c| c.status == "False")
        },
    )
    .await;
    assert_eq!(lost.status.unwrap().read_only.unwrap().state, "read-only");
}

/// What the schema cannot rule out (SQLite with three replicas) is reported in the status, with
/// what to do, and nothing is rendered.
#[tokio::test]
async fn a_combination_the_schema_cannot_refuse_is_reported_in_the_status() {
    let (client, ns) = namespace("invalid").await;
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource("registry", json!({"image": "wharf:1", "replicas": 3})),
    )
    .await
    .unwrap();
    let _operator = Operator::start(&client, &ns, BTreeMap::new()).await;
    let reported = status_where(&api, "registry", "Available=False/InvalidSpec", |_, s| {
        condition(s, "Available").is_some_and(|c| c.status == "False" && c.reason == "InvalidSpec")
    })
    .await;
    let message = &condition(reported.status.as_ref().unwrap(), "Available")
        .unwrap()
        .message;
    assert!(message.contains("spec.metadata.postgres"), "{message}");
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    assert!(deployments.get_opt("registry").await.unwrap().is_none());
}

/// A registry that refuses the operator's credential (its first superuser was made with another
/// password) is reported as refusing, naming the Secret the operator logs in with.
#[tokio::test]
async fn a_registry_that_refuses_the_operator_is_reported_with_the_secret_to_check() {
    let (client, ns) = namespace("refused").await;
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource("registry", json!({"image": "wharf:1"})),
    )
    .await
    .unwrap();
    let address = Registry::address();
    let urls = BTreeMap::from([(format!("{ns}/registry"), format!("http://{address}"))]);
    let _operator = Operator::start(&client, &ns, urls).await;
    let _registry = Registry::start_with(
        &client,
        &ns,
        "registry",
        &address,
        Some("another-password"),
        None,
    )
    .await;
    let refused = status_where(
        &api,
        "registry",
        "Available=False/RegistryRefused",
        |_, s| condition(s, "Available").is_some_and(|c| c.reason == "RegistryRefused"),
    )
    .await;
    let status = refused.status.unwrap();
    let message = &condition(&status, "Available").unwrap().message;
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("registry-operator"), "{message}");
    assert_eq!(condition(&status, "ReadOnly").unwrap().status, "Unknown");
}

/// Two operators: one leads (it holds the Lease) and reconciles; killed, the other takes over
/// once the Lease expires and goes on reconciling; stopped with SIGTERM, it gives the Lease up.
#[tokio::test]
async fn of_two_operators_one_leads_and_the_other_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (client, ns) = namespace("leader").await;
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource("registry", json!({"image": "wharf:1"})),
    )
    .await
    .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        let lease = leases.get_opt("wharf-operator").await.ok()??;
        let spec = lease.spec?;
        Some((
            spec.holder_identity.unwrap_or_default(),
            spec.lease_transitions.unwrap_or(0),
        ))
    };
    let args = |identity: &'static str| ["--identity", identity, "--lease-duration", "3"];
    let urls = BTreeMap::new();
    let mut first = support::OperatorProcess::start_with(&ns, &urls, &args("first"));
    eventually("the first operator to lead", || async {
        (holder().await?.0 == "first").then_some(())
    })
    .await;
    let mut second = support::OperatorProcess::start_with(&ns, &urls, &args("second"));
    let names = Names::of("registry");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    eventually("the leader to reconcile", || async {
        config_maps.get_opt(&names.config).await.ok().flatten()
    })
    .await;
    assert_eq!(
        holder().await.unwrap(),
        ("first".to_owned(), 0),
        "the second waits"
    );

    first.kill();
    let (_, transitions) = eventually("the second operator to take over", || async {
        holder().await.filter(|(h, _)| h == "second")
    })
    .await;
    assert_eq!(transitions, 1);
    api.patch(
        "registry",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"drain": {"timeout": "7m"}}})),
    )
    .await
    .unwrap();
    eventually("the new leader to reconcile", || async {
        let cm = config_maps.get_opt(&names.config).await.ok().flatten()?;
        cm.data?["wharf.yaml"].contains("timeout: 7m").then_some(())
    })
    .await;

    assert!(
        second.terminate().success(),
        "SIGTERM stops the operator cleanly"
    );
    assert_eq!(
        holder().await.unwrap().0,
        "",
        "the Lease is given up at shutdown"
    );
}

/// Another actor's hold (an administrator's, a backup's) is reported as such while the resource
/// asks for writable, and the operator leaves it alone.
#[tokio::test]
async fn another_actors_hold_is_reported_and_left_alone() {
    let run = running("others", json!({"image": "wharf:1"})).await;
    let http = reqwest::Client::new();
    let hold = format!("{}/api/v1/state/holds/admin?wait=5s", run.registry.url);
    let taken = http
        .put(&hold)
        .basic_auth("admin", Some(&run.registry.password))
        .json(&json!({"reason": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);
    let held = status_where(&run.api, &run.name, "ReadOnly=True/HeldByOthers", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| c.status == "True" && c.reason == "HeldByOthers")
    })
    .await;
    let message = &condition(held.status.as_ref().unwrap(), "ReadOnly")
        .unwrap()
        .message;
    assert_eq!(message, "read-only on 1/1 replicas, held by admin");
    let state = run.registry.state().await;
    assert_eq!(state["holds"].as_array().unwrap().len(), 1, "{state}");

    let released = http
        .delete(format!("{}/api/v1/state/holds/admin", run.registry.url))
        .basic_auth("admin", Some(&run.registry.password))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    status_where(&run.api, &run.name, "ReadOnly=False again", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| c.status == "False" && c.reason == "Writable")
    })
    .await;
}

/// With `spec.tls` the operator reaches the registry over HTTPS, trusting the TLS Secret's
/// `ca.crt` (no `--registry-ca` given), and read-only works as over HTTP.
#[tokio::test]
async fn a_registry_served_over_https_is_reached_with_the_tls_secrets_ca() {
    let (client, ns) = namespace("tls").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let data = support::tls_files()
        .into_iter()
        .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("registry-tls".to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api: Api<WharfRegistry> = Api::namespaced(client.clone(), &ns);
    let spec = json!({"image": "wharf:1", "tls": {"secretName": "registry-tls"}, "readOnly": {"enabled": true}});
    api.create(&PostParams::default(), &resource("registry", spec))
        .await
        .unwrap();
    let address = Registry::address();
    let urls = BTreeMap::from([(format!("{ns}/registry"), format!("https://{address}"))]);
    let _operator = Operator::start(&client, &ns, urls).await;
    let registry = Registry::start_with(
        &client,
        &ns,
        "registry",
        &address,
        None,
        Some("registry-tls"),
    )
    .await;
    let held = status_where(&api, "registry", "ReadOnly=True over HTTPS", |_, s| {
        condition(s, "ReadOnly").is_some_and(|c| c.status == "True" && c.reason == "InEffect")
    })
    .await;
    let available = condition(held.status.as_ref().unwrap(), "Available").unwrap();
    assert!(
        available.message.contains("https://"),
        "{}",
        available.message
    );
    let (status, body) = registry.start_upload("team/app").await;
    assert_eq!(status, 405, "{body}");
}
