//! The pure core: ExternalSecret + fetched values -> desired Secret. No network,
//! no Kubernetes client, no files: the controller, the agent and `render` all
//! drive this same code, so one ExternalSecret yields the same bytes everywhere.
//!
//! A refresh goes: [`remote_requests`] for every ExternalSecret due, one
//! de-duplicated [`Provider::fetch_batch`](crate::provider::Provider::fetch_batch)
//! per store, then [`desired_secret`] for each.

pub mod admission;
mod check;
pub mod cluster_external_secret;
mod decoding;
mod desired;
mod error;
mod hash;
mod property;
pub mod push_secret;
mod requests;
mod rewrite;
mod store_access;
mod templating;

#[cfg(test)]
mod tests;

pub use check::check;
pub use desired::{DesiredSecret, GeneratedData, desired_secret, desired_secret_with_generated};
pub use error::SyncError;
pub use property::{PropertyError, json_property};
pub use requests::{data_from_request, data_request, remote_requests};
pub use store_access::cluster_store_admits;
pub use templating::{TemplateSources, template_source_names};

/// Label on every Secret secretsync writes; the controller watches only these.
pub const MANAGED_LABEL: &str = "secretsync.io/managed";
/// Annotation holding the Secret's content hash.
pub const CONTENT_HASH_ANNOTATION: &str = "secretsync.io/content-hash";
/// Annotation on an ExternalSecret whose every new value forces a refresh.
pub const FORCE_SYNC_ANNOTATION: &str = "secretsync.io/force-sync";
/// ESO's name for it, which runbooks and GitOps tools already set; any
/// changed annotation forces a refresh, and neither is copied to the Secret.
pub const ESO_FORCE_SYNC_ANNOTATION: &str = "external-secrets.io/force-sync";
