//! A generator reference made real: the object read from the API server (one
//! GET per run), validated, then run.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::{Generated, Generator, GeneratorError};
use crate::api::{
    AwsAuth, AwsProvider, AwsService, ClusterGeneratorSpec, EcrAuthorizationTokenSpec, FieldErrors,
    GENERATOR_VERSION, GeneratorRef, PasswordSpec, StsSessionTokenSpec, UuidSpec, from_json,
};
use crate::provider::Providers;

/// A generator read and validated, with the object it came from (`Password
/// team-a/db`), which every error names.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedGenerator {
    pub object: String,
    pub generator: Generator,
}

/// Why a generator reference made nothing, naming the object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {error}")]
pub struct GeneratorFailure {
    pub object: String,
    #[source]
    pub error: GeneratorError,
}

/// Reads the generator `reference` names, as seen from `namespace`; an unset
/// `apiVersion` means `default_group` (the generator group of the caller's
/// flavor).
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    reference: &GeneratorRef,
    default_group: &str,
) -> Result<ResolvedGenerator, GeneratorFailure> {
    let cluster = reference.kind == "ClusterGenerator";
    let object = if cluster {
        format!("ClusterGenerator {}", reference.name)
    } else {
        format!("{} {namespace}/{}", reference.kind, reference.name)
    };
    let fail = |error| GeneratorFailure {
        object: object.clone(),
        error,
    };
    let api_version = reference
        .api_version
        .clone()
        .unwrap_or_else(|| format!("{default_group}/{GENERATOR_VERSION}"));
    let Some((group, version)) = api_version.split_once('/') else {
        return Err(fail(GeneratorError::Unsupported(format!(
            "apiVersion {api_version:?} is not group/version"
        ))));
    };
    if !super::super::api::GENERATOR_KINDS.contains(&reference.kind.as_str()) {
        return Err(fail(GeneratorError::Unsupported(format!(
            "kind {:?} is not a generator kind secretsync runs",
            reference.kind
        ))));
    }
    let plural = format!("{}s", reference.kind.to_ascii_lowercase());
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, &reference.kind),
        &plural,
    );
    let api: Api<DynamicObject> = if cluster {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    };
    let found = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| fail(GeneratorError::Kubernetes(kube_error(&e))))?
        .ok_or_else(|| fail(GeneratorError::NotFound))?;
    let spec = found
        .data
        .get("spec")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let generator = decode(&reference.kind, spec, namespace).map_err(fail)?;
    Ok(ResolvedGenerator { object, generator })
}

/// A generator's spec as its kind says, checked.
fn decode(kind: &str, spec: Value, namespace: &str) -> Result<Generator, GeneratorError> {
    let invalid = |message: String| {
        let mut errors = FieldErrors::default();
        errors.push("spec", message);
        GeneratorError::Invalid(errors)
    };
    let mut errors = FieldErrors::default();
    let generator = match kind {
        "Password" => {
            let spec: PasswordSpec = from_json(spec).map_err(invalid)?;
            if let Err(problems) = spec.rules("spec") {
                errors.0.extend(problems.0);
            }
            Generator::Password(spec)
        }
        "UUID" => {
            let _: UuidSpec = from_json(spec).map_err(invalid)?;
            Generator::Uuid
        }
        "ECRAuthorizationToken" => {
            let spec: EcrAuthorizationTokenSpec = from_json(spec).map_err(invalid)?;
            spec.validate_at("spec", Some(namespace), &mut errors);
            Generator::EcrAuthorizationToken(spec)
        }
        "STSSessionToken" => {
            let spec: StsSessionTokenSpec = from_json(spec).map_err(invalid)?;
            spec.validate_at("spec", Some(namespace), &mut errors);
            Generator::StsSessionToken(spec)
        }
        "ClusterGenerator" => {
            let spec: ClusterGeneratorSpec = from_json(spec).map_err(invalid)?;
            spec.validate(Some(namespace))
                .map_err(GeneratorError::Invalid)?;
            let given = spec.generator;
            match spec.kind.as_str() {
                "Password" => Generator::Password(given.password_spec.unwrap_or_default()),
                "UUID" => Generator::Uuid,
                "ECRAuthorizationToken" => match given.ecr_authorization_token_spec {
                    Some(ecr) => Generator::EcrAuthorizationToken(ecr),
                    None => return Err(invalid("no ecrAuthorizationTokenSpec".into())),
                },
                "STSSessionToken" => match given.sts_session_token_spec {
                    Some(sts) => Generator::StsSessionToken(sts),
                    None => return Err(invalid("no stsSessionTokenSpec".into())),
                },
                other => {
                    return Err(GeneratorError::Unsupported(format!(
                        "kind {other:?} is not a generator kind secretsync runs"
                    )));
                }
            }
        }
        other => {
            return Err(GeneratorError::Unsupported(format!(
                "kind {other:?} is not a generator kind secretsync runs"
            )));
        }
    };
    errors.into_result().map_err(GeneratorError::Invalid)?;
    Ok(generator)
}

/// Runs a generator; `namespace` is where its credentials are read.
pub async fn run(
    generator: &Generator,
    providers: &Providers,
    namespace: &str,
) -> Result<Generated, GeneratorError> {
    if let Some(made) = generator.generate_offline() {
        return made;
    }
    match generator {
        Generator::EcrAuthorizationToken(spec) => {
            super::ecr::generate(spec, providers, namespace).await
        }
        Generator::StsSessionToken(spec) => super::sts::generate(spec, providers, namespace).await,
        Generator::Password(_) | Generator::Uuid => Err(GeneratorError::Failed(
            "an offline generator did not run".into(),
        )),
    }
}

/// The one entry point: reads the generator `reference` names (as seen from
/// `namespace`, where its credentials are read too) and runs it.
pub async fn generate(
    client: &kube::Client,
    providers: &Providers,
    namespace: &str,
    reference: &GeneratorRef,
    default_group: &str,
) -> Result<Generated, GeneratorFailure> {
    let resolved = resolve(client, namespace, reference, default_group).await?;
    run(&resolved.generator, providers, namespace)
        .await
        .map_err(|error| GeneratorFailure {
            object: resolved.object,
            error,
        })
}

/// An SDK config for an AWS generator: credentials got exactly as an AWS
/// store's (`auth.jwt`, `auth.secretRef` or the controller's own, then
/// `role`), read in `namespace`.
pub(super) async fn aws_config(
    region: &str,
    role: Option<&str>,
    auth: Option<&AwsAuth>,
    providers: &Providers,
    namespace: &str,
) -> Result<SdkConfig, GeneratorError> {
    let as_store = AwsProvider {
        service: AwsService::SecretsManager,
        region: region.to_string(),
        role: role.map(str::to_string),
        additional_roles: Vec::new(),
        external_id: None,
        session_tags: Vec::new(),
        session_tags_policy: None,
        custom_session_tags: BTreeMap::new(),
        transitive_tag_keys: Vec::new(),
        secrets_manager: None,
        prefix: None,
        auth: auth.cloned(),
    };
    let base = providers.aws_base(region).await;
    let credentials = crate::provider::aws::auth::credentials_provider(
        &as_store,
        Some(namespace),
        base,
        providers.kubernetes_auth(),
    )
    .await
    .map_err(GeneratorError::Aws)?;
    Ok(base
        .to_builder()
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credentials)
        .build())
}

/// A Kubernetes API error as a sentence.
fn kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        // serde_json's message can quote the value that did not fit, and the
        // answer may be a Secret: only where it failed is told.
        kube::Error::SerdeError(e) => format!(
            "the API server's answer did not decode (line {}, column {}; not shown, it may hold a value)",
            e.line(),
            e.column()
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_decode_by_kind_and_are_checked() {
        let password = decode("Password", json!({"length": 12}), "team").unwrap();
        assert!(matches!(password, Generator::Password(ref p) if p.length == 12));
        let error = decode("Password", json!({"length": 0}), "team").unwrap_err();
        assert!(error.to_string().contains("spec.length"), "{error}");
        let error = decode("Password", json!({"lenght": 3}), "team").unwrap_err();
        assert!(error.to_string().contains("lenght"), "{error}");
        assert_eq!(decode("UUID", json!({}), "team").unwrap(), Generator::Uuid);
        let cluster = decode(
            "ClusterGenerator",
            json!({"kind": "UUID", "generator": {"uuidSpec": {}}}),
            "team",
        )
        .unwrap();
        assert_eq!(cluster, Generator::Uuid);
        let error = decode("ECRAuthorizationToken", json!({"region": ""}), "team").unwrap_err();
        assert!(error.to_string().contains("spec.region"), "{error}");
        let error = decode("Webhook", json!({}), "team").unwrap_err();
        assert!(error.to_string().contains("Webhook"), "{error}");
    }
}
