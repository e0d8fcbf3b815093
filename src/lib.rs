//! secretsync: keeps Kubernetes Secrets in step with AWS Secrets Manager, SSM
//! Parameter Store and age-sealed secrets. See DESIGN.md for the layers:
//! `api` at the bottom, then `template`, `provider`, the pure `sync` core, and
//! the drivers (`render`) on top.

pub mod agent;
pub mod api;
pub mod controller;
pub mod csi;
#[doc(hidden)]
pub mod fuzzing;
pub mod provider;
pub mod render;
pub mod sealed;
pub mod secret_value;
pub mod sync;
pub mod template;

pub use secret_value::SecretValue;
