//! The `WharfRegistry` custom resource: what a user asks for (`spec`) and what the operator
//! reports (`status`). The CRD is generated from these types (`wharf-operator crd`), never
//! written by hand, so the schema the API server validates against is the one the code reads.
//!
//! The test API server is Kubernetes 1.20, before CEL rules: every check the schema can make is
//! an OpenAPI one (`minimum`, `pattern`, `enum`, `maxProperties`); what it cannot say (SQLite
//! with more than one replica) the reconciler reports in a condition.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group the operator's resources are published under.
pub const GROUP: &str = "wharf.dev";

/// A Wharf registry run by the operator.
// Each printer column repeats `type_ = ...`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "wharf.dev",
    version = "v1alpha1",
    kind = "WharfRegistry",
    namespaced,
    shortname = "wharf",
    status = "WharfRegistryStatus",
    doc = "A Wharf registry run by wharf-operator; spec.readOnly switches it read-only without a restart.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.readOnly.state"),
    printcolumn(
        name = "Read-only",
        type_ = "string",
        json_path = ".status.readOnly.replicas"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WharfRegistrySpec {
    /// The Wharf container image, such as `ghcr.io/wharf-registry/wharf:0.1.0`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// How many registry pods run (1 with SQLite metadata).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// CPU and memory for the registry container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Where the metadata (accounts, manifests, tags, holds) is kept.
    #[serde(default)]
    pub metadata: MetadataSpec,
    /// Where blob content is kept.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Authentication (always on: the operator itself logs in to the admin API).
    #[serde(default)]
    pub auth: AuthSpec,
    /// HTTPS with the certificate of a `kubernetes.io/tls` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Extra configuration merged into the rendered `wharf.yaml` (any key of Wharf's
    /// configuration; what the operator sets itself wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<serde_json::Value>,
    /// How a drain to read-only behaves.
    #[serde(default)]
    pub drain: DrainSpec,
    /// Hold the registry read-only: applied through the admin API, restarting nothing.
    #[serde(default)]
    pub read_only: ReadOnlySpec,
}

fn one() -> i32 {
    1
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// CPU and memory, as Kubernetes quantities (`100m`, `256Mi`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourcesSpec {
    /// What the container is guaranteed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    /// What the container may use at most.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Where the metadata is kept: SQLite on the data volume (the default), or PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("maxProperties" = 1))]
pub struct MetadataSpec {
    /// SQLite in the data volume: one replica only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
    /// PostgreSQL, its URL read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
}

impl MetadataSpec {
    /// Whether the metadata is SQLite (also when nothing is said).
    pub fn is_sqlite(&self) -> bool {
        self.postgres.is_none()
    }
}

/// SQLite in the data volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SqliteSpec {}

/// PostgreSQL metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// The Secret key holding the connection URL (`postgres://user:password@host/db`).
    pub url_secret: SecretKeyRef,
}

/// A key of a Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key in it.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Where blob content is kept: a volume (the default), or S3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("maxProperties" = 1))]
pub struct StorageSpec {
    /// A persistent volume mounted as the data folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSpec>,
    /// An S3-compatible bucket, its keys read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// The data volume: an existing claim, or one the operator creates (and never deletes: data
/// outlives the resource).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// An existing PersistentVolumeClaim to use; without it, the operator creates `<name>-data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The size of the claim the operator creates (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$"))]
    pub size: Option<String>,
    /// The storage class of the claim the operator creates (the cluster's default without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// The bucket.
    #[schemars(length(min = 1))]
    pub bucket: String,
    /// The region (`us-east-1` if the service does not care).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The endpoint of a service other than AWS, such as `https://minio.storage:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
}

/// Authentication: Wharf's token mode. The operator logs in to the admin API as the registry's
/// first superuser, whose password it generates (or with `adminSecret`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The service name tokens are issued for (Wharf's default: `wharf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The token endpoint's URL given to clients, when a proxy changes the scheme or host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// Token-signing keys shared by every replica (needed with more than one); without them each
    /// pod generates its own into its data folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<SigningKeysSpec>,
    /// A Secret with `username` and `password` of a registry administrator (a superuser or an
    /// admin robot) for the operator to log in with, for a database whose first superuser
    /// already exists. Without it, the operator generates the first superuser's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret: Option<String>,
}

/// Token-signing keys from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeysSpec {
    /// The Secret holding PEM keys (PKCS#8 Ed25519 or ECDSA P-256).
    #[schemars(length(min = 1))]
    pub secret_name: String,
    /// Its keys to use, in order: the first signs, all verify (for rotation).
    #[serde(default = "default_signing_keys")]
    #[schemars(length(min = 1))]
    pub keys: Vec<String>,
}

fn default_signing_keys() -> Vec<String> {
    vec!["signing-key.pem".to_owned()]
}

/// HTTPS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`), re-read by Wharf when it changes.
    #[schemars(length(min = 1))]
    pub secret_name: String,
}

/// How a drain to read-only behaves (hot: changing it restarts nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// How long pushes under way may take to finish (Wharf's default: `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub timeout: Option<String>,
    /// How long a push under way may pause between writes (Wharf's default: `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION))]
    pub push_grace: Option<String>,
}

/// A duration as Wharf writes it: `500ms`, `30s`, `5m`, `1h`, `7d`.
const DURATION: &str = r"^[0-9]+(ms|s|m|h|d)$";

/// Read-only from the resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadOnlySpec {
    /// Hold the registry read-only while true.
    #[serde(default)]
    pub enabled: bool,
    /// Why, as clients, `wharf read-only status` and the audit trail show it.
    #[serde(default = "default_reason")]
    #[schemars(length(min = 1, max = 900))]
    pub reason: String,
}

impl Default for ReadOnlySpec {
    fn default() -> Self {
        ReadOnlySpec {
            enabled: false,
            reason: default_reason(),
        }
    }
}

fn default_reason() -> String {
    "set read-only by the WharfRegistry resource".to_owned()
}

/// What the operator observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WharfRegistryStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available` and `ReadOnly`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The registry's mode as it reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<ReadOnlyStatus>,
}

/// A condition, as Kubernetes' own (`metav1.Condition`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Available` or `ReadOnly`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word.
    pub reason: String,
    /// Why, for people.
    pub message: String,
    /// The generation of the spec this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// The registry's mode as it reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadOnlyStatus {
    /// `read-write`, `draining` or `read-only`.
    pub state: String,
    /// Replicas read-only over replicas, such as `1/1`.
    pub replicas: String,
    /// Since when the registry has been in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The last change of state the registry recorded (a drain ending, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<TransitionStatus>,
}

/// A change of state the registry recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionStatus {
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// When.
    pub at: String,
    /// How long the drain took, for a drain that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<u64>,
    /// Pushes that finished during the drain.
    #[serde(default)]
    pub pushes_completed: u64,
    /// Pushes cut off (paused too long, or still going at the timeout).
    #[serde(default)]
    pub pushes_cut_off: u64,
    /// Writes cancelled at the drain timeout.
    #[serde(default)]
    pub cancelled_writes: u64,
}
