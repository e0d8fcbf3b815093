//! `secretsync diff`: what applying the manifests would change in the target
//! Secrets, as a pull-request check reads it. Values never appear: a key that
//! changes shows the first 12 hex digits of the SHA-256 of each value.
//!
//! The new side is what `render` makes of the ExternalSecrets in `-f` (and,
//! with `--identity`, what the SealedSecrets there decrypt to). The old side
//! is either `--against PATH` (Secret manifests, such as an earlier
//! `render`'s output, and ExternalSecrets, rendered the same way: a checkout
//! of the base branch works as it is) or, with `--live`, the cluster's Secrets.
//!
//! Exit codes, as `kubectl diff`: 0 no change, 1 changes, 2 errors (bad input,
//! a value that could not be fetched, no cluster), even when changes were found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{PodTemplateSpec, Secret};
use kube::api::ObjectMeta;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use secretsync::SecretValue;
use secretsync::api::SealedSecret;
use secretsync::controller::reload::ObjKind;
use secretsync::controller::reload::annotations::object_flags;
use secretsync::controller::reload::workload::{WorkloadInfo, WorkloadKind, derive};
use secretsync::render;
use secretsync::sync::{CONTENT_HASH_ANNOTATION, DesiredSecret};

use super::render::TemplateLimitArgs;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// One block per changed Secret.
    #[default]
    Text,
    /// One JSON document: every target, changed or not, and the errors.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The manifests as they would be applied: a file or a directory (read
    /// recursively); repeatable. ExternalSecrets and their stores, SealedSecrets,
    /// and the Deployments, StatefulSets and DaemonSets whose restarts to show.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Compare with these manifests instead of a cluster: Secret manifests
    /// (an earlier `secretsync render`) and ExternalSecrets, rendered as `-f`
    /// is (a checkout of the base branch); repeatable.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "live",
        conflicts_with = "live"
    )]
    against: Vec<PathBuf>,
    /// Compare with the cluster's Secrets (KUBECONFIG), fetching values with
    /// your own AWS credentials; workloads are read from the cluster too. Stores
    /// not among the manifests are read from the cluster.
    #[arg(long)]
    live: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = DiffFormat::Text)]
    output: DiffFormat,
    /// Namespace for objects that do not name one.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// age identity file that decrypts the SealedSecrets of `-f`; repeatable.
    /// Without one, their key names are compared, not their values.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
    #[command(flatten)]
    templates: TemplateLimitArgs,
}

/// Where one target Secret's new content comes from.
struct NewSecret {
    /// `ExternalSecret ns/name` or `SealedSecret ns/name`.
    owner: String,
    /// `None`: a SealedSecret not decrypted; only its key names are known.
    secret: Option<DesiredSecret>,
    sealed_keys: BTreeSet<String>,
    namespace: String,
    name: String,
}

/// The old side of one Secret.
struct OldSecret {
    type_: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, SecretValue>,
}

#[derive(Serialize, Default)]
struct Report {
    changed: bool,
    targets: Vec<TargetDiff>,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct TargetDiff {
    owner: String,
    namespace: String,
    name: String,
    /// `create`, `update`, `unchanged` or `delete`.
    action: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    added: Vec<KeyHash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<KeyHash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed: Vec<KeyChange>,
    /// Keys of a SealedSecret present on both sides, not decrypted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_compared: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_change: Option<FromTo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<MetaChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<MetaChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    restarts: Vec<String>,
}

#[derive(Serialize)]
struct KeyHash {
    key: String,
    sha256: String,
}

#[derive(Serialize)]
struct KeyChange {
    key: String,
    from: String,
    to: String,
}

#[derive(Serialize)]
struct FromTo {
    from: String,
    to: String,
}

/// A label or annotation: `from` absent when added, `to` absent when removed.
#[derive(Serialize)]
struct MetaChange {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
}

impl TargetDiff {
    fn has_changes(&self) -> bool {
        self.action != "unchanged"
    }
}

/// First 12 hex digits of the SHA-256 of a value: enough to tell values
/// apart in a review, not the value.
fn short_hash(value: &SecretValue) -> String {
    let digest = Sha256::digest(value.expose());
    hex::encode(&digest[..6])
}

pub async fn run(args: Args) -> ExitCode {
    let mut report = Report::default();
    let limits = args.templates.limits();

    // With --live, stores the manifests lack come from the cluster.
    let client = if args.live {
        match live_client().await {
            Ok(client) => Some(client),
            Err(e) => {
                report.errors.push(e);
                return finish(report, args.output);
            }
        }
    } else {
        None
    };
    let store_dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            report.errors.push(format!("a temporary directory: {e}"));
            return finish(report, args.output);
        }
    };
    let mut render_paths = args.files.clone();
    if let Some(client) = &client {
        match cluster_stores(client, &args.files, &args.namespace, store_dir.path()).await {
            Ok(Some(path)) => render_paths.push(path),
            Ok(None) => {}
            Err(e) => {
                report.errors.push(e);
                return finish(report, args.output);
            }
        }
    }

    // The new side.
    let rendered =
        render::render(&render_paths, &args.namespace, Default::default(), &limits).await;
    let documents = read_documents(&args.files, &mut report.errors);
    let sealed = sealed_secrets(&documents, &args.namespace, &mut report.errors);
    relay(&rendered, !sealed.is_empty(), &mut report.errors);
    let mut new = owned_targets(&args.files, &args.namespace, rendered.secrets);
    new.extend(unseal(
        sealed,
        &args.identities,
        &limits,
        &mut report.errors,
    ));
    let mut workloads = workloads_of(&documents, &args.namespace);

    // The old side.
    let (old, old_owned) = if let Some(client) = &client {
        match live_side(client, &new, &mut workloads).await {
            Ok(old) => (old, BTreeMap::new()),
            Err(e) => {
                report.errors.push(e);
                return finish(report, args.output);
            }
        }
    } else {
        against_side(&args.against, &args.namespace, &limits, &mut report.errors).await
    };

    for target in &new {
        let key = (target.namespace.clone(), target.name.clone());
        let mut diff = compare(target, old.get(&key), args.live);
        if diff.action == "update" && diff_touches_data(&diff) {
            diff.restarts = restarts(&workloads, target);
        }
        report.targets.push(diff);
    }
    // Secrets an ExternalSecret of the old side made, whose ExternalSecret is gone.
    let new_keys: BTreeSet<_> = new
        .iter()
        .map(|t| (t.namespace.clone(), t.name.clone()))
        .collect();
    for ((namespace, name), owner) in old_owned {
        if new_keys.contains(&(namespace.clone(), name.clone())) {
            continue;
        }
        let removed = old
            .get(&(namespace.clone(), name.clone()))
            .map(|o| {
                o.data
                    .iter()
                    .map(|(key, value)| KeyHash {
                        key: key.clone(),
                        sha256: short_hash(value),
                    })
                    .collect()
            })
            .unwrap_or_default();
        report.targets.push(TargetDiff {
            owner,
            namespace,
            name,
            action: "delete",
            removed,
            ..empty_diff()
        });
    }
    report.changed = report.targets.iter().any(TargetDiff::has_changes);
    finish(report, args.output)
}

fn empty_diff() -> TargetDiff {
    TargetDiff {
        owner: String::new(),
        namespace: String::new(),
        name: String::new(),
        action: "unchanged",
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        not_compared: Vec::new(),
        type_change: None,
        labels: Vec::new(),
        annotations: Vec::new(),
        restarts: Vec::new(),
    }
}

fn diff_touches_data(diff: &TargetDiff) -> bool {
    !diff.added.is_empty() || !diff.removed.is_empty() || !diff.changed.is_empty()
}

/// Render's problems become errors; its warnings and notes go to stderr.
/// "Nothing to render" is no error when SealedSecrets are there to compare.
fn relay(rendered: &render::Rendered, has_sealed: bool, errors: &mut Vec<String>) {
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    for error in &rendered.errors {
        let text = error.to_string();
        if has_sealed && error.source.is_none() && text.starts_with("nothing to render") {
            continue;
        }
        errors.push(text);
    }
}

/// Each rendered Secret with the ExternalSecret that makes it.
fn owned_targets(
    paths: &[PathBuf],
    namespace: &str,
    secrets: Vec<DesiredSecret>,
) -> Vec<NewSecret> {
    let owners = external_secret_targets(paths, namespace);
    secrets
        .into_iter()
        .map(|secret| {
            let key = (secret.namespace.clone(), secret.name.clone());
            NewSecret {
                owner: owners
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| "ExternalSecret".into()),
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                secret: Some(secret),
                sealed_keys: BTreeSet::new(),
            }
        })
        .collect()
}

/// Target Secret (namespace, name) -> `ExternalSecret ns/name`.
fn external_secret_targets(
    paths: &[PathBuf],
    namespace: &str,
) -> BTreeMap<(String, String), String> {
    let loaded = render::load(paths, namespace);
    loaded
        .inputs
        .external_secrets
        .iter()
        .map(|es| {
            let es = &es.object;
            let ns = es.metadata.namespace.clone().unwrap_or_default();
            let name = es.metadata.name.clone().unwrap_or_default();
            let target = es.spec.target.name.clone().unwrap_or_else(|| name.clone());
            ((ns.clone(), target), format!("ExternalSecret {ns}/{name}"))
        })
        .collect()
}

/// One YAML or JSON document of the manifests (List items flattened).
struct Document {
    value: Value,
}

fn manifest_files(path: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            let name = child
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if child.is_dir()
                || name.ends_with(".yaml")
                || name.ends_with(".yml")
                || name.ends_with(".json")
            {
                manifest_files(&child, out, errors);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// The documents of the manifests. Problems with the files themselves are
/// `render`'s to report: here an unreadable document is skipped.
fn read_documents(paths: &[PathBuf], errors: &mut Vec<String>) -> Vec<Document> {
    let mut files = Vec::new();
    for path in paths {
        manifest_files(path, &mut files, errors);
    }
    let mut documents = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let Ok(value) = <Value as serde::Deserialize>::deserialize(document) else {
                break;
            };
            match value.get("items").and_then(Value::as_array) {
                Some(items) if value["kind"] == "List" => {
                    documents.extend(items.iter().cloned().map(|value| Document { value }))
                }
                _ if value.is_object() => documents.push(Document { value }),
                _ => {}
            }
        }
    }
    documents
}

fn namespace_of(value: &Value, default: &str) -> String {
    value["metadata"]["namespace"]
        .as_str()
        .unwrap_or(default)
        .to_string()
}

fn sealed_secrets(
    documents: &[Document],
    namespace: &str,
    errors: &mut Vec<String>,
) -> Vec<SealedSecret> {
    let mut found = Vec::new();
    for document in documents {
        let value = &document.value;
        if value["kind"] != "SealedSecret" {
            continue;
        }
        if value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("bitnami.com/"))
        {
            eprintln!(
                "note: Bitnami SealedSecret {}/{}: not compared (decrypt it with `secretsync reseal --from-bitnami` first)",
                namespace_of(value, namespace),
                value["metadata"]["name"].as_str().unwrap_or_default()
            );
            continue;
        }
        match secretsync::api::from_json::<SealedSecret>(value.clone()) {
            Ok(mut sealed) => {
                sealed
                    .metadata
                    .namespace
                    .get_or_insert_with(|| namespace.to_string());
                found.push(sealed);
            }
            Err(e) => errors.push(format!(
                "SealedSecret {}: {e}",
                value["metadata"]["name"].as_str().unwrap_or_default()
            )),
        }
    }
    found
}

/// SealedSecrets as targets: decrypted with the identities given, else key
/// names only.
fn unseal(
    sealed: Vec<SealedSecret>,
    identity_files: &[PathBuf],
    limits: &secretsync::template::RenderLimits,
    errors: &mut Vec<String>,
) -> Vec<NewSecret> {
    let mut identities = Vec::new();
    for file in identity_files {
        let source = file.display().to_string();
        match std::fs::read_to_string(file)
            .map_err(|e| format!("{source}: {e}"))
            .and_then(|text| {
                secretsync::sealed::keys::parse_identities(&text, &source)
                    .map_err(|e| e.to_string())
            }) {
            Ok(found) => identities.extend(found),
            Err(e) => errors.push(e),
        }
    }
    let mut targets = Vec::new();
    for sealed in sealed {
        let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
        let name = sealed.metadata.name.clone().unwrap_or_default();
        let owner = format!("SealedSecret {namespace}/{name}");
        let secret = if identities.is_empty() {
            None
        } else {
            match secretsync::sealed::manifest::unseal_all(&sealed, &identities, limits) {
                Ok(secret) => Some(desired_from(&secret)),
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            }
        };
        targets.push(NewSecret {
            owner,
            secret,
            // Without identities: the Secret's keys, sealed or templated.
            sealed_keys: sealed
                .spec
                .encrypted_data
                .keys()
                .chain(sealed.spec.template.iter().flat_map(|t| t.data.keys()))
                .cloned()
                .collect(),
            namespace,
            name,
        });
    }
    targets
}

fn desired_from(secret: &Secret) -> DesiredSecret {
    DesiredSecret {
        name: secret.metadata.name.clone().unwrap_or_default(),
        namespace: secret.metadata.namespace.clone().unwrap_or_default(),
        type_: secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
        immutable: secret.immutable.unwrap_or(false),
        labels: secret.metadata.labels.clone().unwrap_or_default(),
        annotations: secret.metadata.annotations.clone().unwrap_or_default(),
        data: secretsync::sealed::manifest::secret_values(secret),
        content_hash: String::new(),
    }
}

fn old_from(secret: &Secret) -> OldSecret {
    OldSecret {
        type_: secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
        labels: secret.metadata.labels.clone().unwrap_or_default(),
        annotations: secret.metadata.annotations.clone().unwrap_or_default(),
        data: secretsync::sealed::manifest::secret_values(secret),
    }
}

type OldSide = (
    BTreeMap<(String, String), OldSecret>,
    BTreeMap<(String, String), String>,
);

/// `--against`: Secret manifests as they are, ExternalSecrets rendered. Also
/// returns the Secrets that ExternalSecrets of that side make, with their owner.
async fn against_side(
    paths: &[PathBuf],
    namespace: &str,
    limits: &secretsync::template::RenderLimits,
    errors: &mut Vec<String>,
) -> OldSide {
    let mut old = BTreeMap::new();
    for document in read_documents(paths, errors) {
        if document.value["kind"] != "Secret" || document.value["apiVersion"] != "v1" {
            continue;
        }
        let label = document.value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match secretsync::api::from_json::<Secret>(document.value) {
            Ok(secret) => {
                let ns = secret
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string());
                let name = secret.metadata.name.clone().unwrap_or_default();
                old.insert((ns, name), old_from(&secret));
            }
            Err(e) => errors.push(format!("--against: Secret {label}: {e}")),
        }
    }
    let owners = external_secret_targets(paths, namespace);
    if owners.is_empty() {
        return (old, BTreeMap::new());
    }
    let rendered = render::render(paths, namespace, Default::default(), limits).await;
    for error in &rendered.errors {
        errors.push(format!("--against: {error}"));
    }
    let mut owned = BTreeMap::new();
    for secret in rendered.secrets {
        let key = (secret.namespace.clone(), secret.name.clone());
        if let Some(owner) = owners.get(&key) {
            owned.insert(key.clone(), owner.clone());
        }
        old.insert(key, old_from(&secret.to_secret()));
    }
    (old, owned)
}

/// `--live`: the cluster's Secrets, and its workloads in the namespaces concerned.
async fn live_side(
    client: &kube::Client,
    new: &[NewSecret],
    workloads: &mut Vec<WorkloadInfo>,
) -> Result<BTreeMap<(String, String), OldSecret>, String> {
    let mut old = BTreeMap::new();
    let mut namespaces = BTreeSet::new();
    for target in new {
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &target.namespace);
        let found = api
            .get_opt(&target.name)
            .await
            .map_err(|e| format!("reading Secret {}/{}: {}", target.namespace, target.name, e))?;
        if let Some(secret) = found {
            old.insert(
                (target.namespace.clone(), target.name.clone()),
                old_from(&secret),
            );
        }
        namespaces.insert(target.namespace.clone());
    }
    let in_files: BTreeSet<_> = workloads.iter().map(|w| w.key.clone()).collect();
    for namespace in namespaces {
        for kind in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
        ] {
            let api: kube::Api<kube::api::DynamicObject> =
                kube::Api::namespaced_with(client.clone(), &namespace, &kind.api_resource());
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| format!("listing {}s in {namespace}: {}", kind.as_str(), e))?;
            for object in list.items {
                let template = object
                    .data
                    .get("spec")
                    .and_then(|s| s.get("template"))
                    .cloned()
                    .map(serde_json::from_value::<PodTemplateSpec>);
                let template = match template {
                    Some(Ok(t)) => Some(t),
                    _ => None,
                };
                if let Some(info) = derive(kind, &object.metadata, Ok(template.as_ref()))
                    && !in_files.contains(&info.key)
                {
                    workloads.push(info);
                }
            }
        }
    }
    Ok(old)
}

/// Opted-in Deployments, StatefulSets and DaemonSets among the manifests.
fn workloads_of(documents: &[Document], namespace: &str) -> Vec<WorkloadInfo> {
    let mut found = Vec::new();
    for document in documents {
        let value = &document.value;
        let kind = match value["kind"].as_str() {
            Some("Deployment") => WorkloadKind::Deployment,
            Some("StatefulSet") => WorkloadKind::StatefulSet,
            Some("DaemonSet") => WorkloadKind::DaemonSet,
            _ => continue,
        };
        let Ok(mut metadata) = serde_json::from_value::<ObjectMeta>(value["metadata"].clone())
        else {
            continue;
        };
        metadata
            .namespace
            .get_or_insert_with(|| namespace.to_string());
        let template = serde_json::from_value::<PodTemplateSpec>(value["spec"]["template"].clone());
        let template = template.map(Some).map_err(|e| e.to_string());
        if let Some(info) = derive(
            kind,
            &metadata,
            template.as_ref().map(Option::as_ref).map_err(Clone::clone),
        ) {
            found.push(info);
        }
    }
    found
}

/// The workloads a change of this Secret's data restarts: the controller's
/// own rule (`KindSelection::selects`) on one Secret.
fn restarts(workloads: &[WorkloadInfo], target: &NewSecret) -> Vec<String> {
    let (ignore, match_) = object_flags(target.secret.as_ref().map(|s| &s.annotations));
    if ignore {
        return Vec::new();
    }
    workloads
        .iter()
        .filter(|w| w.key.namespace == target.namespace)
        .filter(|w| {
            let used = w
                .uses
                .get(&(ObjKind::Secret, target.name.clone()))
                .is_some_and(|u| u.counts);
            w.selection
                .of(ObjKind::Secret)
                .selects(&target.name, used, match_)
        })
        .map(|w| w.key.to_string())
        .collect()
}

/// Annotations that say how a Secret was made, not what the manifests ask.
fn ignored_annotation(key: &str) -> bool {
    key == CONTENT_HASH_ANNOTATION
        || key == "kubectl.kubernetes.io/last-applied-configuration"
        || key == "secretsync.io/external-secret"
}

fn compare(target: &NewSecret, old: Option<&OldSecret>, live: bool) -> TargetDiff {
    let mut diff = TargetDiff {
        owner: target.owner.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        ..empty_diff()
    };
    let Some(old) = old else {
        diff.action = "create";
        match &target.secret {
            Some(secret) => {
                diff.added = secret
                    .data
                    .iter()
                    .map(|(key, value)| KeyHash {
                        key: key.clone(),
                        sha256: short_hash(value),
                    })
                    .collect()
            }
            None => {
                diff.not_compared = target.sealed_keys.iter().cloned().collect();
            }
        }
        return diff;
    };
    let Some(secret) = &target.secret else {
        // A SealedSecret not decrypted: key names only.
        for key in &target.sealed_keys {
            if old.data.contains_key(key) {
                diff.not_compared.push(key.clone());
            } else {
                diff.added.push(KeyHash {
                    key: key.clone(),
                    sha256: "sealed".into(),
                });
            }
        }
        diff.removed = old
            .data
            .iter()
            .filter(|(k, _)| !target.sealed_keys.contains(*k))
            .map(|(key, value)| KeyHash {
                key: key.clone(),
                sha256: short_hash(value),
            })
            .collect();
        if diff_touches_data(&diff) {
            diff.action = "update";
        }
        return diff;
    };
    for (key, value) in &secret.data {
        match old.data.get(key) {
            None => diff.added.push(KeyHash {
                key: key.clone(),
                sha256: short_hash(value),
            }),
            Some(before) if before.expose() != value.expose() => diff.changed.push(KeyChange {
                key: key.clone(),
                from: short_hash(before),
                to: short_hash(value),
            }),
            Some(_) => {}
        }
    }
    diff.removed = old
        .data
        .iter()
        .filter(|(k, _)| !secret.data.contains_key(*k))
        .map(|(key, value)| KeyHash {
            key: key.clone(),
            sha256: short_hash(value),
        })
        .collect();
    if secret.type_ != old.type_ {
        diff.type_change = Some(FromTo {
            from: old.type_.clone(),
            to: secret.type_.clone(),
        });
    }
    // Live Secrets carry labels and annotations others set: only what the
    // manifests set is compared there; against manifests, removals show too.
    diff.labels = meta_changes(&old.labels, &secret.labels, !live, |_| false);
    diff.annotations = meta_changes(
        &old.annotations,
        &secret.annotations,
        !live,
        ignored_annotation,
    );
    if diff_touches_data(&diff)
        || diff.type_change.is_some()
        || !diff.labels.is_empty()
        || !diff.annotations.is_empty()
    {
        diff.action = "update";
    }
    diff
}

fn meta_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    removals: bool,
    ignored: fn(&str) -> bool,
) -> Vec<MetaChange> {
    let mut changes = Vec::new();
    for (key, value) in new {
        if ignored(key) {
            continue;
        }
        if old.get(key) != Some(value) {
            changes.push(MetaChange {
                key: key.clone(),
                from: old.get(key).cloned(),
                to: Some(value.clone()),
            });
        }
    }
    if removals {
        for (key, value) in old {
            if !ignored(key) && !new.contains_key(key) {
                changes.push(MetaChange {
                    key: key.clone(),
                    from: Some(value.clone()),
                    to: None,
                });
            }
        }
    }
    changes
}

fn finish(report: Report, format: DiffFormat) -> ExitCode {
    match format {
        DiffFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot print the diff as JSON: {e}"),
        },
        DiffFormat::Text => print!("{}", text(&report)),
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    if !report.errors.is_empty() {
        ExitCode::from(2)
    } else if report.changed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn quoted(value: &Option<String>) -> String {
    value
        .as_deref()
        .map_or_else(|| "(none)".into(), |v| format!("{v:?}"))
}

fn text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for target in report.targets.iter().filter(|t| t.has_changes()) {
        let _ = writeln!(
            out,
            "{} Secret {}/{} ({})",
            target.action, target.namespace, target.name, target.owner
        );
        for k in &target.added {
            let _ = writeln!(out, "  + {}  sha256:{}", k.key, k.sha256);
        }
        for k in &target.removed {
            let _ = writeln!(out, "  - {}  sha256:{}", k.key, k.sha256);
        }
        for k in &target.changed {
            let _ = writeln!(out, "  ~ {}  sha256:{} -> sha256:{}", k.key, k.from, k.to);
        }
        for key in &target.not_compared {
            let _ = writeln!(
                out,
                "  ? {key}  (sealed: value not compared without --identity)"
            );
        }
        if let Some(change) = &target.type_change {
            let _ = writeln!(out, "  type: {} -> {}", change.from, change.to);
        }
        for (what, changes) in [
            ("label", &target.labels),
            ("annotation", &target.annotations),
        ] {
            for c in changes {
                let _ = writeln!(
                    out,
                    "  {what} {}: {} -> {}",
                    c.key,
                    quoted(&c.from),
                    quoted(&c.to)
                );
            }
        }
        for workload in &target.restarts {
            let _ = writeln!(out, "  restarts {workload}");
        }
    }
    let changed = report.targets.iter().filter(|t| t.has_changes()).count();
    let _ = writeln!(
        out,
        "{changed} of {} Secret(s) would change",
        report.targets.len()
    );
    out
}

async fn live_client() -> Result<kube::Client, String> {
    let config = super::kube_config()
        .await
        .ok_or_else(|| "--live needs a cluster".to_string())?;
    kube::Client::try_from(config).map_err(|e| format!("cluster client: {e}"))
}

/// The stores the ExternalSecrets of `paths` name that the manifests lack,
/// read from the cluster into one file under `dir` for `render` to read. Their
/// AWS `auth` is dropped: `--live` fetches with the operator's own
/// credentials (the store's `role` is still assumed).
async fn cluster_stores(
    client: &kube::Client,
    paths: &[PathBuf],
    namespace: &str,
    dir: &Path,
) -> Result<Option<PathBuf>, String> {
    use secretsync::api::{ClusterSecretStore, SecretStore, StoreKind};
    let loaded = render::load(paths, namespace);
    let inputs = &loaded.inputs;
    let present: BTreeSet<(StoreKind, String, String)> = inputs
        .secret_stores
        .iter()
        .map(|s| {
            let m = &s.object.metadata;
            (
                StoreKind::SecretStore,
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        })
        .chain(inputs.cluster_secret_stores.iter().map(|s| {
            (
                StoreKind::ClusterSecretStore,
                String::new(),
                s.object.metadata.name.clone().unwrap_or_default(),
            )
        }))
        .collect();
    let mut wanted = BTreeSet::new();
    for es in &inputs.external_secrets {
        let reference = &es.object.spec.secret_store_ref;
        if reference.name.is_empty() {
            continue;
        }
        let ns = match reference.kind {
            StoreKind::SecretStore => es.object.metadata.namespace.clone().unwrap_or_default(),
            StoreKind::ClusterSecretStore => String::new(),
        };
        let key = (reference.kind, ns, reference.name.clone());
        if !present.contains(&key) {
            wanted.insert(key);
        }
    }
    let mut documents = Vec::new();
    for (kind, ns, name) in wanted {
        let found = match kind {
            StoreKind::SecretStore => kube::Api::<SecretStore>::namespaced(client.clone(), &ns)
                .get_opt(&name)
                .await
                .map(|s| s.map(|s| serde_json::to_value(s).unwrap_or_default())),
            StoreKind::ClusterSecretStore => kube::Api::<ClusterSecretStore>::all(client.clone())
                .get_opt(&name)
                .await
                .map(|s| s.map(|s| serde_json::to_value(s).unwrap_or_default())),
        }
        .map_err(|e| format!("reading {kind:?} {name}: {e}"))?;
        // One missing is render's to report, with the ExternalSecret's name.
        let Some(mut store) = found else { continue };
        if let Some(metadata) = store.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.retain(|k, _| k == "name" || k == "namespace");
        }
        if let Some(object) = store.as_object_mut() {
            object.remove("status");
        }
        if let Some(aws) = store
            .pointer_mut("/spec/provider/aws")
            .and_then(Value::as_object_mut)
        {
            aws.remove("auth");
        }
        documents.push(store);
    }
    if documents.is_empty() {
        return Ok(None);
    }
    let path = dir.join("cluster-stores.json");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": documents});
    std::fs::write(&path, list.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_twelve_hex_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(short_hash(&SecretValue::from("abc")), "ba7816bf8f01");
    }
}
