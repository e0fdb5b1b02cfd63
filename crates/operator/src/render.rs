//! What runs a registry, rendered from a `WharfRegistry`: its configuration file, Deployment,
//! Service, ServiceAccount, PodDisruptionBudget and data volume claim.
//!
//! Rendering is a pure function of the resource and the same resource renders the same bytes
//! (maps are `BTreeMap`s, lists are built in a fixed order, nothing is timed or random), so
//! applying it again changes nothing. `spec.readOnly` is deliberately absent from everything
//! here: it is applied through the admin API, and toggling it must restart no pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::crd::WharfRegistry;

/// The port the registry listens on in its pod, and the Service's port.
pub const PORT: i32 = 5000;

/// The annotation on the pod template that changes when the configuration needs a restart.
pub const CONFIG_HASH_ANNOTATION: &str = "wharf.dev/config-hash";

/// The key of the rendered configuration file in its ConfigMap.
pub const CONFIG_KEY: &str = "wharf.yaml";

/// The first superuser Wharf creates at its first start, whose password the operator generates.
pub const ADMIN_USER: &str = "admin";

/// The key of the generated password in the operator's Secret.
pub const PASSWORD_KEY: &str = "password";

/// The key of the account name in the operator's Secret (and in a given `adminSecret`).
pub const USERNAME_KEY: &str = "username";

const CONFIG_DIR: &str = "/etc/wharf/config";
const DATA_DIR: &str = "/var/lib/wharf";
const TLS_DIR: &str = "/etc/wharf/tls";
const SIGNING_KEYS_DIR: &str = "/etc/wharf/signing-keys";

/// Keys Wharf applies when its configuration file changes (`wharf_config::HOT_KEYS`): a change
/// of only these must not change the pod template, or it would restart the pods for nothing.
const HOT_KEYS: &[(&str, &str)] = &[
    ("read_only", "enabled"),
    ("read_only", "reason"),
    ("drain", "timeout"),
    ("drain", "push_grace"),
    ("log", "level"),
];

/// The names of the objects rendered for a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The Deployment, Service, ServiceAccount and PodDisruptionBudget.
    pub registry: String,
    /// The ConfigMap with `wharf.yaml`.
    pub config: String,
    /// The Secret with the operator's admin credential.
    pub credentials: String,
    /// The data volume's claim, when the operator creates it.
    pub data: String,
}

impl Names {
    /// The names for the resource called `name`.
    pub fn of(name: &str) -> Names {
        Names {
            registry: name.to_owned(),
            config: format!("{name}-config"),
            credentials: format!("{name}-operator"),
            data: format!("{name}-data"),
        }
    }
}

/// Everything rendered for one resource, ready to apply.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `wharf.yaml`.
    pub config_map: ConfigMap,
    /// The registry's pods.
    pub deployment: Deployment,
    /// The registry's address in the cluster.
    pub service: Service,
    /// The pods' identity (with no API access).
    pub service_account: ServiceAccount,
    /// The PodDisruptionBudget as JSON: its API version depends on the cluster (`policy/v1`
    /// from Kubernetes 1.21, `policy/v1beta1` before), so the caller sets `apiVersion`.
    pub pod_disruption_budget: Value,
    /// The data volume's claim when the operator creates one (never owned: data outlives the
    /// resource).
    pub data_claim: Option<PersistentVolumeClaim>,
}

/// Why a resource cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The resource has no name or namespace (it was not read from the API).
    #[error("the resource has no {0}")]
    Incomplete(&'static str),
    /// A combination the schema cannot rule out.
    #[error("{0}")]
    Invalid(String),
}

/// Renders everything for `registry`.
pub fn render(registry: &WharfRegistry) -> Result<Rendered, RenderError> {
    let name = registry
        .meta()
        .name
        .clone()
        .ok_or(RenderError::Incomplete("name"))?;
    let namespace = registry
        .meta()
        .namespace
        .clone()
        .ok_or(RenderError::Incomplete("namespace"))?;
    let owner = registry
        .controller_owner_ref(&())
        .ok_or(RenderError::Incomplete("uid"))?;
    let spec = &registry.spec;
    if spec.metadata.is_sqlite() && spec.replicas > 1 {
        return Err(RenderError::Invalid(format!(
            "SQLite metadata serves one replica, and spec.replicas is {}: use spec.metadata.postgres \
             (and spec.storage.s3) for more",
            spec.replicas
        )));
    }
    if spec.metadata.is_sqlite() && spec.storage.s3.is_some() {
        return Err(RenderError::Invalid(
            "SQLite metadata lives in the data volume, so it needs spec.storage.volume, not s3"
                .to_owned(),
        ));
    }
    let names = Names::of(&name);
    let labels = labels(&name);
    let meta = |object_name: &str| ObjectMeta {
        name: Some(object_name.to_owned()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };

    let config_text = config_yaml(registry)?;
    let config_map = ConfigMap {
        metadata: meta(&names.config),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            config_text.clone(),
        )])),
        ..ConfigMap::default()
    };
    let deployment = deployment(registry, &names, meta(&names.registry), &config_text)?;
    let service = Service {
        metadata: meta(&names.registry),
        spec: Some(ServiceSpec {
            selector: Some(labels.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let service_account = ServiceAccount {
        metadata: meta(&names.registry),
        // The registry never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    // One pod at a time may be evicted: with one replica a node drain still proceeds (the
    // registry is briefly down, as with any single pod), with several the rest keep serving.
    let pod_disruption_budget = json!({
        "kind": "PodDisruptionBudget",
        "metadata": serde_json::to_value(meta(&names.registry)).map_err(|e| RenderError::Invalid(e.to_string()))?,
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels},
        },
    });
    let data_claim = data_claim(registry, &names, &namespace, &labels);
    Ok(Rendered {
        config_map,
        deployment,
        service,
        service_account,
        pod_disruption_budget,
        data_claim,
    })
}

/// The labels of every object of the registry called `name` (and the pods' selector).
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "wharf".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "wharf-operator".to_owned(),
        ),
    ])
}

/// Whether the registry keeps a data volume (SQLite metadata or blobs on a volume).
fn uses_volume(registry: &WharfRegistry) -> bool {
    registry.spec.metadata.is_sqlite() || registry.spec.storage.s3.is_none()
}

/// The claim the data volume uses, and whether the operator creates it.
fn claim_name(registry: &WharfRegistry, names: &Names) -> (String, bool) {
    match registry
        .spec
        .storage
        .volume
        .as_ref()
        .and_then(|v| v.claim_name.clone())
    {
        Some(claim) => (claim, false),
        None => (names.data.clone(), true),
    }
}

fn data_claim(
    registry: &WharfRegistry,
    names: &Names,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<PersistentVolumeClaim> {
    if !uses_volume(registry) {
        return None;
    }
    let (claim, create) = claim_name(registry, names);
    if !create {
        return None;
    }
    let volume = registry.spec.storage.volume.clone().unwrap_or_default();
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: volume.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(volume.size.unwrap_or_else(|| "10Gi".to_owned())),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

/// `wharf.yaml`: the spec's extra configuration, then what the operator sets itself on top
/// (where the pod mounts things, authentication, the drain).
pub fn config_yaml(registry: &WharfRegistry) -> Result<String, RenderError> {
    let spec = &registry.spec;
    let mut config = match &spec.config {
        Some(Value::Object(extra)) => Value::Object(extra.clone()),
        Some(Value::Null) | None => json!({}),
        Some(_) => {
            return Err(RenderError::Invalid(
                "spec.config must be a mapping of Wharf configuration keys".to_owned(),
            ));
        }
    };
    let mut set = |section: &str, key: &str, value: Value| {
        if !config[section].is_object() {
            config[section] = json!({});
        }
        config[section][key] = value;
    };
    set("server", "listen", json!(format!("0.0.0.0:{PORT}")));
    set("storage", "data_dir", json!(DATA_DIR));
    // The operator logs in to the admin API from another pod: only token mode answers it.
    set("auth", "mode", json!("token"));
    if let Some(service) = &spec.auth.service {
        set("auth", "service", json!(service));
    }
    if let Some(realm) = &spec.auth.realm {
        set("auth", "realm", json!(realm));
    }
    if let Some(keys) = &spec.auth.signing_keys {
        let paths: Vec<String> = keys
            .keys
            .iter()
            .map(|key| format!("{SIGNING_KEYS_DIR}/{key}"))
            .collect();
        set("auth", "signing_keys", json!(paths));
    }
    if let Some(s3) = &spec.storage.s3 {
        // The S3 store's keys (the S3 backend's configuration, whose keys the operator must
        // follow; its credentials come from the environment).
        let mut bucket = json!({ "bucket": s3.bucket });
        if let Some(region) = &s3.region {
            bucket["region"] = json!(region);
        }
        if let Some(endpoint) = &s3.endpoint {
            bucket["endpoint"] = json!(endpoint);
        }
        set("storage", "s3", bucket);
    }
    if spec.tls.is_some() {
        set("tls", "cert", json!(format!("{TLS_DIR}/tls.crt")));
        set("tls", "key", json!(format!("{TLS_DIR}/tls.key")));
    }
    if let Some(timeout) = &spec.drain.timeout {
        set("drain", "timeout", json!(timeout));
    }
    if let Some(grace) = &spec.drain.push_grace {
        set("drain", "push_grace", json!(grace));
    }
    let sorted = sorted(config);
    let yaml = serde_saphyr::to_string(&sorted)
        .map_err(|e| RenderError::Invalid(format!("cannot write wharf.yaml: {e}")))?;
    Ok(format!(
        "# Rendered by wharf-operator from the WharfRegistry {}/{}; edit the resource, not this.\n{yaml}",
        registry.meta().namespace.as_deref().unwrap_or_default(),
        registry.name_any()
    ))
}

/// The same document with every mapping's keys in order, whatever order serde_json keeps.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The hash of what in `wharf.yaml` needs a restart: the file without its hot keys.
pub fn restart_hash(config_text: &str) -> Result<String, RenderError> {
    let mut config: Value = serde_saphyr::from_str(config_text)
        .map_err(|e| RenderError::Invalid(format!("cannot read back wharf.yaml: {e}")))?;
    if let Some(sections) = config.as_object_mut() {
        for (section, key) in HOT_KEYS {
            if let Some(keys) = sections.get_mut(*section).and_then(Value::as_object_mut) {
                keys.remove(*key);
                // A section left empty says what an absent one says.
                if keys.is_empty() {
                    sections.remove(*section);
                }
            }
        }
    }
    let canonical = serde_json::to_vec(&sorted(config))
        .map_err(|e| RenderError::Invalid(format!("cannot hash wharf.yaml: {e}")))?;
    let digest = Sha256::digest(&canonical);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn deployment(
    registry: &WharfRegistry,
    names: &Names,
    metadata: ObjectMeta,
    config_text: &str,
) -> Result<Deployment, RenderError> {
    let spec = &registry.spec;
    let labels = labels(&names.registry);
    let mut env = Vec::new();
    if spec.auth.admin_secret.is_none() {
        // The first superuser gets the password the operator generated (ignored once one exists).
        env.push(env_from_secret(
            "WHARF_ADMIN_PASSWORD",
            &names.credentials,
            PASSWORD_KEY,
        ));
    }
    // The PostgreSQL and S3 backends take their secrets from the environment, never from the
    // ConfigMap: a ConfigMap is readable by far more than a Secret.
    if let Some(postgres) = &spec.metadata.postgres {
        env.push(env_from_secret(
            "WHARF_METADATA_URL",
            &postgres.url_secret.name,
            &postgres.url_secret.key,
        ));
    }
    if let Some(s3) = &spec.storage.s3 {
        env.push(env_from_secret(
            "AWS_ACCESS_KEY_ID",
            &s3.credentials_secret,
            "AWS_ACCESS_KEY_ID",
        ));
        env.push(env_from_secret(
            "AWS_SECRET_ACCESS_KEY",
            &s3.credentials_secret,
            "AWS_SECRET_ACCESS_KEY",
        ));
    }

    let mut mounts = vec![
        VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "data".to_owned(),
            mount_path: DATA_DIR.to_owned(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "config".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config.clone(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if uses_volume(registry) {
        let (claim, _) = claim_name(registry, names);
        volumes.push(Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: None,
            }),
            ..Volume::default()
        });
    } else {
        // The data folder then holds only the lock file and a generated signing key.
        volumes.push(Volume {
            name: "data".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if let Some(tls) = &spec.tls {
        mounts.push(VolumeMount {
            name: "tls".to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(secret_volume("tls", &tls.secret_name));
    }
    if let Some(keys) = &spec.auth.signing_keys {
        mounts.push(VolumeMount {
            name: "signing-keys".to_owned(),
            mount_path: SIGNING_KEYS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(secret_volume("signing-keys", &keys.secret_name));
    }

    let scheme = if spec.tls.is_some() { "HTTPS" } else { "HTTP" };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            scheme: Some(scheme.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let resources = spec.resources.as_ref().map(|r| {
        let quantities = |m: &BTreeMap<String, String>| {
            (!m.is_empty()).then(|| {
                m.iter()
                    .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        ResourceRequirements {
            requests: quantities(&r.requests),
            limits: quantities(&r.limits),
            ..ResourceRequirements::default()
        }
    });
    let container = Container {
        name: "wharf".to_owned(),
        image: Some(spec.image.clone()),
        args: Some(vec![
            "serve".to_owned(),
            "--config".to_owned(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        volume_mounts: Some(mounts),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources,
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    // Only what needs a restart is hashed: drain settings follow the mounted file hot.
    let annotations = BTreeMap::from([(
        CONFIG_HASH_ANNOTATION.to_owned(),
        restart_hash(config_text)?,
    )]);
    Ok(Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            // A data folder serves one server at a time (Wharf locks it): the old pod must stop
            // before the new one starts.
            strategy: uses_volume(registry).then(|| DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.registry.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn registry(spec: Value) -> WharfRegistry {
        serde_json::from_value(json!({
            "apiVersion": "wharf.dev/v1alpha1",
            "kind": "WharfRegistry",
            "metadata": {"name": "reg", "namespace": "ns", "uid": "1234", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    fn everything(rendered: &Rendered) -> Value {
        json!([
            rendered.config_map,
            rendered.deployment,
            rendered.service,
            rendered.service_account,
            rendered.pod_disruption_budget,
            rendered.data_claim,
        ])
    }

    #[test]
    fn the_same_resource_renders_the_same_bytes() {
        let spec = json!({
            "image": "wharf:1",
            "config": {"limits": {"max_manifest_size": "8MiB"}, "gc": {"interval": "2h", "grace": "3h"}},
            "resources": {"requests": {"memory": "1Gi", "cpu": "1"}},
        });
        let first =
            serde_json::to_string(&everything(&render(&registry(spec.clone())).unwrap())).unwrap();
        for _ in 0..5 {
            let again =
                serde_json::to_string(&everything(&render(&registry(spec.clone())).unwrap()))
                    .unwrap();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn the_rendered_configuration_is_one_wharf_accepts() {
        let spec = json!({
            "image": "wharf:1",
            "config": {"limits": {"max_manifest_size": "8MiB"}, "auth": {"mode": "none"}},
            "auth": {"service": "registry.example", "signingKeys": {"secretName": "keys"}},
            "tls": {"secretName": "tls"},
            "drain": {"timeout": "2m", "pushGrace": "1s"},
        });
        let text = config_yaml(&registry(spec)).unwrap();
        let config = wharf_config::Config::from_yaml(&text).unwrap();
        assert_eq!(config.server.listen.port(), 5000);
        assert_eq!(
            config.auth.mode,
            wharf_config::AuthMode::Token,
            "the operator's keys win"
        );
        assert_eq!(config.auth.service, "registry.example");
        assert_eq!(config.limits.max_manifest_size.0, 8 << 20);
        assert_eq!(config.drain.timeout.0, std::time::Duration::from_secs(120));
        assert_eq!(config.drain.push_grace.0, std::time::Duration::from_secs(1));
        assert_eq!(config.auth.signing_keys.len(), 1);
        assert!(config.tls.cert.is_some());
        assert!(
            !config.read_only.enabled,
            "read-only never goes through the file"
        );
    }

    fn template(spec: Value) -> Value {
        serde_json::to_value(
            &render(&registry(spec))
                .unwrap()
                .deployment
                .spec
                .unwrap()
                .template,
        )
        .unwrap()
    }

    #[test]
    fn only_a_change_that_needs_a_restart_changes_the_pod_template() {
        let base = template(json!({"image": "wharf:1"}));
        // Read-only is the admin API's, and the drain settings are followed hot from the file.
        assert_eq!(
            template(json!({"image": "wharf:1", "readOnly": {"enabled": true, "reason": "x"}})),
            base
        );
        assert_eq!(
            template(json!({"image": "wharf:1", "drain": {"timeout": "5m"}})),
            base
        );
        assert_eq!(
            template(json!({"image": "wharf:1", "config": {"log": {"level": "debug"}}})),
            base
        );
        // These need a restart.
        assert_ne!(template(json!({"image": "wharf:2"})), base);
        assert_ne!(
            template(json!({"image": "wharf:1", "config": {"gc": {"interval": "2h"}}})),
            base
        );
        assert_ne!(
            template(json!({"image": "wharf:1", "tls": {"secretName": "tls"}})),
            base
        );
    }

    #[test]
    fn read_only_renders_nothing() {
        let off = render(&registry(json!({"image": "wharf:1"}))).unwrap();
        let on = render(&registry(
            json!({"image": "wharf:1", "readOnly": {"enabled": true}}),
        ))
        .unwrap();
        assert_eq!(everything(&on), everything(&off));
    }

    #[test]
    fn sqlite_with_several_replicas_is_refused_with_what_to_do() {
        let error = render(&registry(json!({"image": "wharf:1", "replicas": 3}))).unwrap_err();
        assert!(
            error.to_string().contains("spec.metadata.postgres"),
            "{error}"
        );
    }

    #[test]
    fn a_shared_data_volume_is_recreated_not_rolled() {
        let rendered = render(&registry(json!({"image": "wharf:1"}))).unwrap();
        let strategy = rendered.deployment.spec.unwrap().strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
        assert_eq!(
            rendered.data_claim.unwrap().metadata.name.as_deref(),
            Some("reg-data")
        );
        assert!(rendered.config_map.metadata.owner_references.unwrap()[0].controller == Some(true));
    }
}
