//! The CRD types of `secretsync.io/v1`. Field names follow ESO v1, so moving an
//! ESO manifest over is a change of `apiVersion` only; `crds/` is generated from
//! these types by `secretsync crdgen`.

mod condition;
mod external_secret;
mod secret_store;
mod validation;

pub use condition::Condition;
pub use external_secret::*;
pub use secret_store::*;
pub use validation::{FieldError, FieldErrors, is_valid_secret_key};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group every secretsync CRD belongs to.
pub const GROUP: &str = "secretsync.io";

/// Every CRD secretsync serves, in the order `crdgen` prints them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
    ]
}
