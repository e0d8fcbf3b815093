//! The CRD types of `secretsync.io/v1`. Field names follow ESO v1, so moving an
//! ESO manifest over is a change of `apiVersion` only; `crds/` is generated from
//! these types by `secretsync crdgen`.

mod bitnami_sealed_secret;
mod cluster_external_secret;
mod condition;
mod duration;
mod external_secret;
mod generator;
mod push_metadata;
mod push_secret;
mod sealed_secret;
mod secret_store;
mod sync_windows;
mod validation;

pub use bitnami_sealed_secret::*;
pub use cluster_external_secret::*;
pub use condition::Condition;
pub use duration::{DURATION_PATTERN, DurationError, GoDuration};
pub use external_secret::*;
pub use generator::*;
pub use push_metadata::*;
pub use push_secret::*;
pub use sealed_secret::*;
pub use secret_store::*;
pub use sync_windows::{SyncWindow, SyncWindowKind, SyncWindowSchedule, SyncWindows};
pub use validation::{
    FieldError, FieldErrors, MAX_LABEL_LEN, MAX_SUBDOMAIN_LEN, dns_label_problem,
    dns_subdomain_problem, from_json, is_valid_secret_key, label_value_problem,
    qualified_name_problem, secret_key_problem, validate_label_selector,
};

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
        ClusterExternalSecret::crd(),
        SealedSecret::crd(),
        PushSecret::crd(),
        ClusterPushSecret::crd(),
        Password::crd(),
        Uuid::crd(),
        EcrAuthorizationToken::crd(),
        StsSessionToken::crd(),
        ClusterGenerator::crd(),
    ]
}

/// ESO's API group, served with `--eso-compat`.
pub const ESO_GROUP: &str = "external-secrets.io";
/// ESO versions served with `--eso-compat`; the first is stored.
pub const ESO_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The same CRDs in ESO's group and versions, so ESO manifests apply unchanged
/// on a cluster without ESO's own CRDs (`crds/compat/`).
pub fn eso_compat_crds() -> Vec<CustomResourceDefinition> {
    [
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
        ClusterExternalSecret::crd(),
    ]
    .into_iter()
    .map(|mut crd| {
        crd.spec.group = ESO_GROUP.to_string();
        crd.metadata.name = Some(format!("{}.{ESO_GROUP}", crd.spec.names.plural));
        crd.spec.names.categories = Some(vec!["external-secrets".into()]);
        let template = crd.spec.versions[0].clone();
        crd.spec.versions = ESO_VERSIONS
            .iter()
            .enumerate()
            .map(|(i, version)| {
                let mut v = template.clone();
                v.name = version.to_string();
                v.storage = i == 0;
                v
            })
            .collect();
        crd
    })
    .collect()
}

/// PushSecret and ClusterPushSecret in ESO's group, at `v1alpha1` as ESO
/// serves them (`crds/compat/`).
pub fn eso_compat_push_crds() -> Vec<CustomResourceDefinition> {
    [PushSecret::crd(), ClusterPushSecret::crd()]
        .into_iter()
        .map(|mut crd| {
            crd.spec.group = ESO_GROUP.to_string();
            crd.metadata.name = Some(format!("{}.{ESO_GROUP}", crd.spec.names.plural));
            crd.spec.names.categories = Some(vec!["external-secrets".into()]);
            crd
        })
        .collect()
}

/// The generator CRDs in ESO's generator group (`generators.external-secrets.io`,
/// `v1alpha1`, the version ESO serves them in), so ESO generator manifests
/// apply unchanged (`crds/compat/`).
pub fn eso_compat_generator_crds() -> Vec<CustomResourceDefinition> {
    [
        Password::crd(),
        Uuid::crd(),
        EcrAuthorizationToken::crd(),
        StsSessionToken::crd(),
        ClusterGenerator::crd(),
    ]
    .into_iter()
    .map(|mut crd| {
        crd.spec.group = ESO_GENERATOR_GROUP.to_string();
        crd.metadata.name = Some(format!("{}.{ESO_GENERATOR_GROUP}", crd.spec.names.plural));
        crd.spec.names.categories = Some(vec![
            "external-secrets".into(),
            "external-secrets-generators".into(),
        ]);
        crd
    })
    .collect()
}
