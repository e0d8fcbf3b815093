//! Rendering: each ExternalSecret of the manifests against its store (read
//! from the same manifests), each store asked once for all it is asked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::manifests::{self, InputError, Inputs, Loaded, Located, Source};
use crate::SecretValue;
use crate::api::{CreationPolicy, ExternalSecret, StoreKind, StoreProvider};
use crate::provider::aws::{KubernetesAuth, ServiceAccountToken};
use crate::provider::{ProviderContext, Providers, StoreIdentity};
use crate::sync::{self, DesiredSecret, TemplateSources};
use crate::template::RenderLimits;

/// What `render` produced: every Secret that could be built, every problem,
/// warnings (an empty file) and notes (objects that deliberately yield no
/// Secret here).
#[derive(Default)]
pub struct Rendered {
    pub secrets: Vec<DesiredSecret>,
    pub errors: Vec<InputError>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// Reads `paths` and renders every ExternalSecret found there. `context`
/// supplies AWS settings; its Kubernetes side is replaced by the manifests read.
/// Each ExternalSecret's templates stay within `template_limits`.
pub async fn render(
    paths: &[PathBuf],
    default_namespace: &str,
    context: ProviderContext,
    template_limits: &RenderLimits,
) -> Rendered {
    Renderer::new(context)
        .render(paths, default_namespace, template_limits)
        .await
}

/// Renders round after round (the agent does), keeping the stores' providers
/// between rounds: their clients, credentials and the answers kept for
/// change detection, so an unchanged round costs a few listing calls. They are
/// made anew only when the Secrets among the manifests (static keys for
/// `auth.secretRef`) change.
pub struct Renderer {
    aws_base: Option<aws_config::SdkConfig>,
    retry: crate::provider::aws::RetrySettings,
    providers: Option<(String, Providers)>,
}

impl Renderer {
    pub fn new(context: ProviderContext) -> Self {
        Self {
            aws_base: context.aws_base,
            retry: context.retry,
            providers: None,
        }
    }

    /// The providers for these manifests: the last round's, unless the
    /// Secrets among them changed.
    fn providers_for(&mut self, inputs: &manifests::Inputs) -> &Providers {
        let secrets = ManifestSecrets::from(inputs);
        let fingerprint = secrets.fingerprint();
        let reuse = self
            .providers
            .as_ref()
            .is_some_and(|(kept, _)| *kept == fingerprint);
        if !reuse {
            let providers = Providers::new(ProviderContext {
                kube: Arc::new(secrets),
                aws_base: self.aws_base.clone(),
                retry: self.retry.clone(),
                batch_permission: None,
            });
            self.providers = Some((fingerprint, providers));
        }
        &self.providers.as_ref().expect("just made").1
    }

    pub async fn render(
        &mut self,
        paths: &[PathBuf],
        default_namespace: &str,
        template_limits: &RenderLimits,
    ) -> Rendered {
        let Loaded {
            inputs,
            errors,
            warnings,
        } = manifests::load(paths, default_namespace);
        let providers = self.providers_for(&inputs);
        render_inputs(paths, inputs, errors, warnings, providers, template_limits).await
    }
}

async fn render_inputs(
    paths: &[PathBuf],
    inputs: manifests::Inputs,
    errors: Vec<InputError>,
    warnings: Vec<String>,
    providers: &Providers,
    template_limits: &RenderLimits,
) -> Rendered {
    let mut rendered = Rendered {
        errors,
        warnings,
        ..Default::default()
    };
    for label in &inputs.sealed_secrets {
        rendered.notes.push(format!(
            "{label}: not rendered (the controller decrypts SealedSecrets; `secretsync unseal` does it offline)"
        ));
    }
    if inputs.external_secrets.is_empty() && rendered.errors.is_empty() {
        rendered.errors.push(InputError {
            source: None,
            object: None,
            message: format!(
                "nothing to render: no ExternalSecret in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let stores = Stores::index(&inputs, &mut rendered.errors);

    // Group ExternalSecrets by store, so each store gets one batch.
    let mut by_store: BTreeMap<StoreIdentity, Vec<&Located<ExternalSecret>>> = BTreeMap::new();
    for es in &inputs.external_secrets {
        let fail = |message: String| error_for(es, message);
        if let Err(e) = sync::check(&es.object) {
            rendered.errors.push(fail(e.to_string()));
            continue;
        }
        // Generated values must outlive one run (the Secret is their memory),
        // which an offline render cannot give: refused, not made up anew.
        if let Some(i) = es
            .object
            .spec
            .data_from
            .iter()
            .position(|d| d.generator_ref().is_some())
        {
            let field = format!("spec.dataFrom[{i}].sourceRef.generatorRef");
            rendered
                .errors
                .push(fail(sync::SyncError::NotGenerated { field }.to_string()));
            continue;
        }
        match stores.resolve(&es.object, &inputs) {
            Ok(id) => by_store.entry(id).or_default().push(es),
            Err(message) => rendered.errors.push(fail(message)),
        }
    }

    let mut targets = BTreeMap::new();
    for (id, external_secrets) in by_store {
        let provider = match providers.for_store(&id, &stores.specs[&id]).await {
            Ok(provider) => provider,
            Err(e) => {
                for es in external_secrets {
                    let message = format!(
                        "spec.secretStoreRef: {} {} is not usable: {e}",
                        id.kind_name(),
                        id.name
                    );
                    rendered.errors.push(error_for(es, message));
                }
                continue;
            }
        };
        let requests: BTreeSet<_> = external_secrets
            .iter()
            .flat_map(|es| sync::remote_requests(&es.object.spec))
            .collect();
        let fetched = provider.fetch_batch(&requests).await;
        for es in external_secrets {
            let sources = template_sources(
                &inputs,
                es.object.metadata.namespace.as_deref().unwrap_or_default(),
            );
            match sync::desired_secret(&es.object, &fetched, &sources, template_limits) {
                Err(e) => rendered.errors.push(error_for(es, e.to_string())),
                Ok(_) if es.object.spec.target.creation_policy == CreationPolicy::None => {
                    rendered.notes.push(format!(
                        "{}: creationPolicy None, so no Secret is written",
                        object_label(&es.object)
                    ));
                }
                Ok(secret) => {
                    let target = (secret.namespace.clone(), secret.name.clone());
                    if let Some(first) = targets.insert(target, object_label(&es.object)) {
                        rendered.errors.push(error_for(
                            es,
                            format!(
                                "spec.target.name: Secret {}/{} is already the target of {first}",
                                secret.namespace, secret.name
                            ),
                        ));
                    } else {
                        rendered.secrets.push(secret);
                    }
                }
            }
        }
    }
    rendered
}

fn object_label(es: &ExternalSecret) -> String {
    format!(
        "ExternalSecret {}/{}",
        es.metadata.namespace.as_deref().unwrap_or_default(),
        es.metadata.name.as_deref().unwrap_or_default()
    )
}

fn error_for(es: &Located<ExternalSecret>, message: String) -> InputError {
    InputError {
        source: Some(es.source.clone()),
        object: Some(object_label(&es.object)),
        message,
    }
}

/// The valid stores of the input, by identity.
struct Stores {
    specs: BTreeMap<StoreIdentity, StoreProvider>,
    /// Stores present but invalid, with why.
    invalid: BTreeMap<StoreIdentity, String>,
    cluster_specs: BTreeMap<String, crate::api::ClusterSecretStoreSpec>,
}

impl Stores {
    fn index(inputs: &Inputs, errors: &mut Vec<InputError>) -> Self {
        let mut stores = Stores {
            specs: BTreeMap::new(),
            invalid: BTreeMap::new(),
            cluster_specs: BTreeMap::new(),
        };
        for store in &inputs.secret_stores {
            let namespace = store.object.metadata.namespace.clone().unwrap_or_default();
            let identity = StoreIdentity {
                kind: StoreKind::SecretStore,
                namespace: Some(namespace.clone()),
                name: store.object.metadata.name.clone().unwrap_or_default(),
                tenant: None,
            };
            let valid = store
                .object
                .spec
                .validate(Some(&namespace))
                .map_err(|e| e.to_string());
            stores.add(
                identity,
                &store.source,
                valid,
                &store.object.spec.provider_to_build(),
                errors,
            );
        }
        for store in &inputs.cluster_secret_stores {
            let name = store.object.metadata.name.clone().unwrap_or_default();
            let identity = StoreIdentity {
                kind: StoreKind::ClusterSecretStore,
                namespace: None,
                name: name.clone(),
                tenant: None,
            };
            let valid = store.object.spec.validate().map_err(|e| e.to_string());
            stores.cluster_specs.insert(name, store.object.spec.clone());
            stores.add(
                identity,
                &store.source,
                valid,
                &store.object.spec.provider_to_build(),
                errors,
            );
        }
        stores
    }

    fn add(
        &mut self,
        identity: StoreIdentity,
        source: &Source,
        valid: Result<(), String>,
        spec: &StoreProvider,
        errors: &mut Vec<InputError>,
    ) {
        let label = identity.to_string();
        let error = |message: String| InputError {
            source: Some(source.clone()),
            object: Some(label.clone()),
            message,
        };
        if self.specs.contains_key(&identity) || self.invalid.contains_key(&identity) {
            errors.push(error("defined more than once".into()));
            return;
        }
        match valid {
            Ok(()) => {
                self.specs.insert(identity, spec.clone());
            }
            Err(message) => {
                errors.push(error(message.clone()));
                self.invalid
                    .insert(identity, format!("{label} is not usable: {message}"));
            }
        }
    }

    /// The store an ExternalSecret may use, or why it may not.
    fn resolve(&self, es: &ExternalSecret, inputs: &Inputs) -> Result<StoreIdentity, String> {
        let reference = &es.spec.secret_store_ref;
        let namespace = es.metadata.namespace.clone().unwrap_or_default();
        let id = StoreIdentity {
            kind: reference.kind,
            namespace: (reference.kind == StoreKind::SecretStore).then(|| namespace.clone()),
            name: reference.name.clone(),
            tenant: None,
        };
        if let Some(why) = self.invalid.get(&id) {
            return Err(format!("spec.secretStoreRef: {why}"));
        }
        if inputs.duplicated.contains(&id.to_string()) {
            return Err(format!(
                "spec.secretStoreRef: {id} is defined more than once in the input, so it is not used"
            ));
        }
        if !self.specs.contains_key(&id) {
            return Err(match reference.kind {
                StoreKind::SecretStore => format!(
                    "spec.secretStoreRef: SecretStore {:?} not found in namespace {namespace:?} (an ExternalSecret can only use a SecretStore of its own namespace)",
                    reference.name
                ),
                StoreKind::ClusterSecretStore => {
                    format!(
                        "spec.secretStoreRef: ClusterSecretStore {:?} not found",
                        reference.name
                    )
                }
            });
        }
        if let Some(spec) = self.cluster_specs.get(&reference.name)
            && reference.kind == StoreKind::ClusterSecretStore
            && !sync::cluster_store_admits(spec, &namespace, &namespace_labels(inputs, &namespace))
        {
            return Err(format!(
                "spec.secretStoreRef: ClusterSecretStore {:?} does not admit namespace {namespace:?} (see its spec.conditions)",
                reference.name
            ));
        }
        Ok(id)
    }
}

/// Namespace labels as the API server sets them: the declared ones (if the
/// Namespace is in the input) plus `kubernetes.io/metadata.name`.
fn namespace_labels(inputs: &Inputs, namespace: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = inputs
        .namespaces
        .iter()
        .find(|n| n.object.metadata.name.as_deref() == Some(namespace))
        .and_then(|n| n.object.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
    labels
}

/// ConfigMaps and Secrets of `namespace` in the input, for `templateFrom`.
fn template_sources(inputs: &Inputs, namespace: &str) -> TemplateSources {
    let in_namespace = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.namespace.as_deref() == Some(namespace)
    };
    TemplateSources {
        config_maps: inputs
            .config_maps
            .iter()
            .filter(|c| in_namespace(&c.object.metadata))
            .map(|c| {
                let name = c.object.metadata.name.clone().unwrap_or_default();
                (name, c.object.data.clone().unwrap_or_default())
            })
            .collect(),
        secrets: inputs
            .secrets
            .iter()
            .filter(|s| in_namespace(&s.object.metadata))
            .map(|s| {
                let name = s.object.metadata.name.clone().unwrap_or_default();
                let mut data: BTreeMap<String, SecretValue> = s
                    .object
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), SecretValue::new(v.0.clone())))
                    .collect();
                for (k, v) in s.object.string_data.iter().flatten() {
                    data.insert(k.clone(), SecretValue::from(v.as_str()));
                }
                (name, data)
            })
            .collect(),
    }
}

/// `auth.secretRef` read from the Secrets among the manifests; `render` has no
/// cluster to ask for ServiceAccount tokens.
struct ManifestSecrets {
    secrets: BTreeMap<(String, String), BTreeMap<String, SecretValue>>,
}

impl ManifestSecrets {
    /// A digest of every key and value, to tell whether they changed.
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for ((namespace, name), data) in &self.secrets {
            for (key, value) in data {
                for part in [namespace.as_bytes(), name.as_bytes(), key.as_bytes()] {
                    hasher.update((part.len() as u64).to_le_bytes());
                    hasher.update(part);
                }
                hasher.update((value.len() as u64).to_le_bytes());
                hasher.update(value.expose());
            }
        }
        hex::encode(hasher.finalize())
    }
}

impl From<&Inputs> for ManifestSecrets {
    fn from(inputs: &Inputs) -> Self {
        let namespaces: BTreeSet<String> = inputs
            .secrets
            .iter()
            .filter_map(|s| s.object.metadata.namespace.clone())
            .collect();
        let secrets = namespaces
            .into_iter()
            .flat_map(|namespace| {
                template_sources(inputs, &namespace)
                    .secrets
                    .into_iter()
                    .map(move |(name, data)| ((namespace.clone(), name), data))
            })
            .collect();
        Self { secrets }
    }
}

#[async_trait]
impl KubernetesAuth for ManifestSecrets {
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        _: &[String],
    ) -> Result<ServiceAccountToken, String> {
        Err(format!(
            "render has no cluster to request a token for ServiceAccount {namespace}/{name}: use the default AWS credential chain (AWS_* variables, IRSA) or auth.secretRef"
        ))
    }

    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretValue, String> {
        let secret = self
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .ok_or_else(|| format!("Secret {namespace}/{name} is not among the manifests"))?;
        secret
            .get(key)
            .cloned()
            .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))
    }
}
