//! secretsync: keeps Kubernetes Secrets in step with AWS Secrets Manager, SSM
//! Parameter Store and age-sealed secrets. See DESIGN.md for the layers:
//! `api` at the bottom, then `template`, `provider`, the pure `sync` core, and
//! the drivers (`render`) on top. The `clients` feature (default) adds the
//! AWS and Kubernetes side: `provider::aws`, the long-running drivers
//! (`controller`, `agent`, `csi`) and `render`'s rendering against stores.

#[cfg(feature = "clients")]
pub mod agent;
pub mod api;
#[cfg(feature = "clients")]
pub mod controller;
#[cfg(feature = "clients")]
pub mod csi;
#[doc(hidden)]
pub mod fuzzing;
pub mod generator;
#[cfg(feature = "clients")]
pub mod logging;
pub mod panic_hook;
pub mod provider;
pub mod render;
pub mod sealed;
pub mod secret_value;
pub mod sync;
pub mod template;

pub use secret_value::SecretValue;
