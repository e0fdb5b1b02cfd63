//! The reconciler: make what runs a registry match its `WharfRegistry`, apply `spec.readOnly`
//! through the registry's admin API, and write the status from what the registry reports.
//!
//! Every object is written with server-side apply under one field manager, so applying the same
//! rendering again is a no-op the API server does not even record. The read-only hold is the
//! registry's, not Kubernetes': the finalizer releases it when the resource is deleted, so a
//! deleted resource never leaves its registry read-only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::crd::{WharfRegistry, WharfRegistryStatus};
use crate::credentials;
use crate::error::Error;
use crate::registry_api::{RegistryApi, RegistryApiError, StateReport};
use crate::render::{self, Names, PORT};
use crate::status::{self, Observed};

/// The finalizer that releases the operator's hold before the resource goes.
pub const FINALIZER: &str = "wharf.dev/release-read-only-hold";

/// How soon to look again while the registry drains (status follows the drain closely).
const WHILE_DRAINING: Duration = Duration::from_secs(1);

/// How soon to look again when the registry does not answer.
const WHILE_UNREACHABLE: Duration = Duration::from_secs(5);

/// How soon to look again when all is settled: other actors (a backup, an administrator) take
/// holds too, and a registry may stop answering; the status reports both within this. One small
/// GET per registry is cheap.
const WHEN_SETTLED: Duration = Duration::from_secs(10);

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes API.
    pub client: Client,
    /// The client for the registries' admin APIs.
    pub http: reqwest::Client,
    /// Addresses of registries by `NAMESPACE/NAME`, for running outside the cluster (the API
    /// server refuses loopback Endpoints, so tests and development cannot go through Services).
    pub registry_urls: BTreeMap<String, String>,
    /// The PodDisruptionBudget's API (`policy/v1`, or `policy/v1beta1` before Kubernetes 1.21).
    pub pdb: ApiResource,
    /// Publishes Kubernetes Events about the resources.
    pub recorder: Recorder,
}

impl Context {
    /// A context for `client`, finding which PodDisruptionBudget API the cluster serves.
    pub async fn new(
        client: Client,
        http: reqwest::Client,
        registry_urls: BTreeMap<String, String>,
    ) -> Result<Context, Error> {
        let pdb = pod_disruption_budget_api(&client).await?;
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        Ok(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            http,
            registry_urls,
            pdb,
        })
    }
}

async fn pod_disruption_budget_api(client: &Client) -> Result<ApiResource, Error> {
    let version = match client.list_api_group_resources("policy/v1").await {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == "poddisruptionbudgets") =>
        {
            "v1"
        }
        Ok(_) | Err(kube::Error::Api(_)) => "v1beta1",
        Err(e) => return Err(e.into()),
    };
    Ok(ApiResource {
        group: "policy".to_owned(),
        version: version.to_owned(),
        api_version: format!("policy/{version}"),
        kind: "PodDisruptionBudget".to_owned(),
        plural: "poddisruptionbudgets".to_owned(),
    })
}

/// Runs the controller for the resources of `namespace` (or of every namespace) until
/// `shutdown` resolves.
pub async fn run(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let config = watcher::Config::default;
    // Owned objects wake their resource's reconcile, so a hand-edited Deployment is put back.
    Controller::new(api::<WharfRegistry>(&client, namespace), config())
        .owns(api::<Deployment>(&client, namespace), config())
        .owns(api::<ConfigMap>(&client, namespace), config())
        .owns(api::<Service>(&client, namespace), config())
        .owns(api::<ServiceAccount>(&client, namespace), config())
        .owns(api::<Secret>(&client, namespace), config())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(%object, ?action, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// One reconcile of `registry`: the finalizer first, then [`apply`] or [`cleanup`].
pub async fn reconcile(
    registry: Arc<WharfRegistry>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = registry
        .namespace()
        .ok_or_else(|| Error::Finalizer("the resource has no namespace".to_owned()))?;
    let api: Api<WharfRegistry> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, registry, |event| async {
        match event {
            Event::Apply(registry) => apply(&registry, &context).await,
            Event::Cleanup(registry) => cleanup(&registry, &context).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// On an error, try again soon (the error is in the log; the status says what is known).
pub fn error_policy(registry: Arc<WharfRegistry>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(
        registry = %registry.name_any(),
        namespace = registry.namespace().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(WHILE_UNREACHABLE)
}

/// Makes the owned objects match the spec, applies `spec.readOnly`, and writes the status.
pub async fn apply(registry: &WharfRegistry, context: &Context) -> Result<Action, Error> {
    let namespace = registry.namespace().unwrap_or_default();
    let name = registry.name_any();
    let rendered = match render::render(registry) {
        Ok(rendered) => rendered,
        Err(error) => {
            // Nothing the operator can do until the spec changes.
            write_status(
                registry,
                context,
                &status::invalid(&error.to_string()),
                None,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let names = Names::of(&name);
    let client = &context.client;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let credentials = credentials::ensure(&secrets, registry, &names).await?;

    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    service_accounts
        .patch(
            &names.registry,
            &params,
            &Patch::Apply(&rendered.service_account),
        )
        .await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    config_maps
        .patch(&names.config, &params, &Patch::Apply(&rendered.config_map))
        .await?;
    if let Some(claim) = &rendered.data_claim {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        claims
            .patch(&names.data, &params, &Patch::Apply(claim))
            .await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services
        .patch(&names.registry, &params, &Patch::Apply(&rendered.service))
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .patch(
            &names.registry,
            &params,
            &Patch::Apply(&rendered.deployment),
        )
        .await?;
    let mut pdb = rendered.pod_disruption_budget.clone();
    pdb["apiVersion"] = json!(context.pdb.api_version);
    let pdbs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &context.pdb);
    pdbs.patch(&names.registry, &params, &Patch::Apply(&pdb))
        .await?;

    let api = registry_api(registry, context, credentials).await?;
    let want = registry.spec.read_only.enabled;
    let before = current_read_only_reason(registry);
    let (observed, state) = match apply_read_only(registry, &api).await {
        Ok(state) => (status::from_state(api.base(), &state, want), Some(state)),
        Err(error) => (unanswered(registry, &names, &error), None),
    };
    write_status(registry, context, &observed, state.as_ref()).await?;
    publish_transition(registry, context, before.as_deref(), &observed).await;
    Ok(match &state {
        None => Action::requeue(WHILE_UNREACHABLE),
        Some(state) if state.effective == "draining" || (want && !state.read_only_in_effect) => {
            Action::requeue(WHILE_DRAINING)
        }
        Some(_) => Action::requeue(WHEN_SETTLED),
    })
}

/// The conditions for a registry that did not answer or refused, saying what to check.
fn unanswered(registry: &WharfRegistry, names: &Names, error: &RegistryApiError) -> Vec<Observed> {
    match error {
        RegistryApiError::Refused { status, .. }
            // 429: failed logins repeated every few seconds lock the account out for a while.
            if *status == reqwest::StatusCode::UNAUTHORIZED
                || *status == reqwest::StatusCode::FORBIDDEN
                || *status == reqwest::StatusCode::TOO_MANY_REQUESTS =>
        {
            let secret = registry
                .spec
                .auth
                .admin_secret
                .as_deref()
                .unwrap_or(&names.credentials);
            status::unanswered(
                &format!(
                    "{error} (the operator logs in with the Secret {secret}; a registry whose \
                     first superuser was made before needs spec.auth.adminSecret)"
                ),
                true,
            )
        }
        RegistryApiError::Refused { .. } => status::unanswered(&error.to_string(), true),
        RegistryApiError::Unreachable { .. } => status::unanswered(&error.to_string(), false),
    }
}

/// Where the registry of `registry` answers: the override given on the command line, or its
/// Service.
async fn registry_api(
    registry: &WharfRegistry,
    context: &Context,
    credentials: crate::registry_api::AdminCredentials,
) -> Result<RegistryApi, Error> {
    let namespace = registry.namespace().unwrap_or_default();
    let name = registry.name_any();
    let url = context
        .registry_urls
        .get(&format!("{namespace}/{name}"))
        .cloned()
        .unwrap_or_else(|| {
            let scheme = if registry.spec.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{name}.{namespace}.svc:{PORT}")
        });
    let http = match &registry.spec.tls {
        Some(tls) => tls_client(context, &namespace, &tls.secret_name).await?,
        None => context.http.clone(),
    };
    Ok(RegistryApi::new(http, &url, credentials))
}

/// The HTTP client for a registry served with the TLS Secret `secret`: it also trusts the
/// Secret's `ca.crt` when it has one (cert-manager's Secrets do), so a registry with a private
/// CA needs no `--registry-ca`.
async fn tls_client(
    context: &Context,
    namespace: &str,
    secret: &str,
) -> Result<reqwest::Client, Error> {
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    let ca = secrets
        .get_opt(secret)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove("ca.crt"));
    let Some(ca) = ca else {
        return Ok(context.http.clone());
    };
    let certificate = reqwest::Certificate::from_pem(&ca.0).map_err(|e| {
        Error::Tls(format!(
            "the ca.crt of the TLS Secret {secret} is not PEM: {e}"
        ))
    })?;
    reqwest::Client::builder()
        .add_root_certificate(certificate)
        .build()
        .map_err(|e| {
            Error::Tls(format!(
                "cannot build an HTTPS client with {secret}'s ca.crt: {e}"
            ))
        })
}

/// The hold's reason: the spec's, and which resource holds it (so `wharf read-only status`
/// says where to release it).
pub fn hold_reason(registry: &WharfRegistry) -> String {
    format!(
        "{} (WharfRegistry {}/{}, uid {})",
        registry.spec.read_only.reason.trim(),
        registry.namespace().unwrap_or_default(),
        registry.name_any(),
        registry.uid().unwrap_or_default()
    )
}

/// Takes or releases the operator's hold as the spec says, and answers the state after it.
/// The hold is written only when it must change: a reconcile that finds it as wanted sends no
/// write (and adds nothing to the registry's audit trail).
async fn apply_read_only(
    registry: &WharfRegistry,
    api: &RegistryApi,
) -> Result<StateReport, RegistryApiError> {
    let state = api.state().await?;
    let held = state.hold(crate::registry_api::HOLD_NAME);
    if registry.spec.read_only.enabled {
        let reason = hold_reason(registry);
        if held.is_some_and(|h| h.reason == reason) {
            return Ok(state);
        }
        api.take_hold(&reason).await
    } else {
        if held.is_none() {
            return Ok(state);
        }
        api.release_hold().await?;
        api.state().await
    }
}

/// Releases the operator's hold before the resource goes. If the registry does not answer
/// because nothing runs it any more (its Deployment is gone), there is no hold left to matter
/// to anyone running: the finalizer is removed all the same, with a warning.
pub async fn cleanup(registry: &WharfRegistry, context: &Context) -> Result<Action, Error> {
    let namespace = registry.namespace().unwrap_or_default();
    let names = Names::of(&registry.name_any());
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &namespace);
    let credentials = match credentials::read(&secrets, registry, &names).await {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::warn!(%error, "no credential to release the read-only hold with; the resource goes anyway");
            return Ok(Action::await_change());
        }
    };
    let api = registry_api(registry, context, credentials).await?;
    match api.release_hold().await {
        Ok(released) => {
            if released {
                publish(
                    registry,
                    context,
                    EventType::Normal,
                    "Released",
                    "the resource was deleted: read-only hold released".to_owned(),
                )
                .await;
            }
            Ok(Action::await_change())
        }
        Err(error @ RegistryApiError::Unreachable { .. }) => {
            let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
            let running = deployments
                .get_opt(&names.registry)
                .await?
                .is_some_and(|d| d.meta().deletion_timestamp.is_none());
            if running {
                return Err(Error::Release(error));
            }
            tracing::warn!(%error, "the registry is gone; the resource goes without releasing its hold");
            Ok(Action::await_change())
        }
        Err(error) => Err(Error::Release(error)),
    }
}

/// Writes the status with server-side apply on the status subresource.
async fn write_status(
    registry: &WharfRegistry,
    context: &Context,
    observed: &[Observed],
    state: Option<&StateReport>,
) -> Result<(), Error> {
    let previous = registry.status.clone().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let generation = registry.meta().generation;
    let status = WharfRegistryStatus {
        observed_generation: generation,
        conditions: status::merge(&previous.conditions, observed, generation, &now),
        // Unknown while the registry does not answer: keep what it last said.
        read_only: state.map(status::read_only_status).or(previous.read_only),
    };
    let api: Api<WharfRegistry> = Api::namespaced(
        context.client.clone(),
        &registry.namespace().unwrap_or_default(),
    );
    let patch = json!({
        "apiVersion": WharfRegistry::api_version(&()),
        "kind": WharfRegistry::kind(&()),
        "status": serde_json::to_value(&status).map_err(|e| Error::Json("the status", e))?,
    });
    api.patch_status(
        &registry.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn current_read_only_reason(registry: &WharfRegistry) -> Option<String> {
    registry
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == status::READ_ONLY)
        .map(|c| c.reason.clone())
}

/// An Event when the `ReadOnly` condition moves: the drain started, read-only is in effect,
/// writable again.
async fn publish_transition(
    registry: &WharfRegistry,
    context: &Context,
    before: Option<&str>,
    observed: &[Observed],
) {
    let Some(now) = observed.iter().find(|o| o.type_ == status::READ_ONLY) else {
        return;
    };
    if before == Some(now.reason) {
        return;
    }
    let (type_, reason) = match now.reason {
        "Draining" => (EventType::Normal, "DrainStarted"),
        "InEffect" => (EventType::Normal, "ReadOnlyInEffect"),
        "Writable" if before.is_some() => (EventType::Normal, "Released"),
        "RegistryUnreachable" => (EventType::Warning, "RegistryUnreachable"),
        "RegistryRefused" => (EventType::Warning, "RegistryRefused"),
        _ => return,
    };
    publish(registry, context, type_, reason, now.message.clone()).await;
}

async fn publish(
    registry: &WharfRegistry,
    context: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "ReadOnly".to_owned(),
        secondary: None,
    };
    // An Event is for people; failing to publish one must not fail the reconcile.
    if let Err(error) = context
        .recorder
        .publish(&event, &registry.object_ref(&()))
        .await
    {
        tracing::debug!(%error, "cannot publish an Event");
    }
}
