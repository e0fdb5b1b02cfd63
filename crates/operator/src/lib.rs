//! Wharf's Kubernetes operator: the `WharfRegistry` custom resource and its controller.
//!
//! The operator renders and owns what runs a registry (its configuration file, Deployment,
//! Service, ServiceAccount, PodDisruptionBudget and its own admin credential) and applies
//! `spec.readOnly` through the registry's admin API as the hold named `operator` — never
//! through the pod template or the configuration — so toggling it restarts nothing. The status
//! says read-only only once the registry reports it in effect.
//!
//! # Layout
//!
//! - [`crd`]: the resource's types; the CRD is generated from them.
//! - [`render`]: the owned objects, a pure and deterministic function of the resource.
//! - [`credentials`]: the admin password the operator generates once and logs in with.
//! - [`registry_api`]: the registry's admin API (state, the `operator` hold).
//! - [`status`]: conditions from what the registry reported.
//! - [`reconcile`]: the controller: finalizer, server-side apply, hold, status, Events.
//! - [`leader`]: leader election with a Lease, so one of several replicas reconciles.
//! - [`error`]: the reconciler's error type.

pub mod crd;
pub mod credentials;
pub mod error;
pub mod leader;
pub mod reconcile;
pub mod registry_api;
pub mod render;
pub mod status;

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "wharf-operator";
