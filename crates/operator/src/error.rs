//! The reconciler's one error type: what went wrong, in a line a status condition or a log can
//! carry. A registry that does not answer is not an error here (the status says so and the
//! reconciler looks again); these are failures to talk to Kubernetes or to read what is needed.

use crate::registry_api::RegistryApiError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The admin credential could not be read or made.
    #[error("admin credential: {0}")]
    Credentials(String),
    /// The registry refused to release the operator's hold at deletion, or did not answer.
    #[error("releasing the read-only hold: {0}")]
    Release(#[source] RegistryApiError),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The registry's TLS Secret cannot be used to reach it.
    #[error("TLS: {0}")]
    Tls(String),
    /// This replica stopped leading (or never could).
    #[error("leader election: {0}")]
    Leadership(String),
    /// A JSON document could not be built (a bug, were it to happen).
    #[error("cannot build {0}: {1}")]
    Json(&'static str, serde_json::Error),
}
