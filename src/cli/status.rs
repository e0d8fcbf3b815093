//! `secretsync status`: one line per ExternalSecret, SealedSecret, PushSecret
//! and ClusterExternalSecret (secretsync's, ESO's and Bitnami's, whichever are
//! served) from what the controller wrote in their status and metadata. It
//! never reads a Secret's data, and calls AWS only with `--check-remote`
//! (metadata calls, never a value): on call, the question is which objects
//! are failing or stale and why, and the answer must be safe to paste.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use secretsync::api::{AwsProvider, AwsService, ExternalSecretSpec, GoDuration, StoreKind};
use secretsync::controller::reload::{ObjKind, RESTARTED_AT_ANNOTATION, uses::uses};
use secretsync::provider::RemoteRequest;

#[derive(clap::Args)]
pub struct Args {
    /// Only objects of this namespace (default: the kubeconfig context's,
    /// else `default`); cluster-scoped ClusterExternalSecrets are always listed.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Objects of every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Show only objects whose last successful sync is older than this
    /// (`2h`, `90m`); it is also the staleness the exit code judges by
    /// (default: twice the object's refresh interval).
    #[arg(long, value_name = "DURATION", value_parser = super::go_duration)]
    stale: Option<Duration>,
    /// Show only objects whose Ready condition is not True (with --stale: the
    /// objects that are failing or stale).
    #[arg(long)]
    failing: bool,
    /// `wide` adds the target Secret, the versions status holds and the
    /// workloads restarted; `json` and `yaml` give every field.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// Keep listing and print each object again when its state changes
    /// (until Ctrl-C); the exit code is the last listing's.
    #[arg(short = 'w', long)]
    watch: bool,
    /// How often --watch lists again.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = super::go_duration)]
    watch_interval: Duration,
    /// Also ask AWS, with your own credentials (the store's role is assumed,
    /// its auth is not used), whether the keys each ExternalSecret shown
    /// reads from an AWS store changed since its last sync: Secrets Manager
    /// DescribeSecret, Parameter Store DescribeParameters (metadata only,
    /// never a value), one call per distinct key (50 parameters a call), 8
    /// at once. Adds REMOTE: `current`, `changed since last sync (key ...)`,
    /// `missing (key ...)`, `unreadable: ...` or `not checked: ...`; changed,
    /// missing and unreadable count as not fresh for the exit code. With
    /// --watch, AWS is asked again at most once a minute.
    #[arg(long)]
    check_remote: bool,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Wide,
    Json,
    Yaml,
}

/// One kind in one API group, and the versions to try, newest first.
struct Kind {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
}

/// Every kind the command reports on; a group the cluster does not serve is
/// skipped without a word.
const KINDS: &[Kind] = &[
    Kind {
        group: "secretsync.io",
        versions: &["v1"],
        kind: "ExternalSecret",
        plural: "externalsecrets",
        namespaced: true,
    },
    Kind {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        kind: "ExternalSecret",
        plural: "externalsecrets",
        namespaced: true,
    },
    Kind {
        group: "secretsync.io",
        versions: &["v1"],
        kind: "SealedSecret",
        plural: "sealedsecrets",
        namespaced: true,
    },
    Kind {
        group: "bitnami.com",
        versions: &["v1alpha1"],
        kind: "SealedSecret",
        plural: "sealedsecrets",
        namespaced: true,
    },
    Kind {
        group: "secretsync.io",
        versions: &["v1alpha1"],
        kind: "PushSecret",
        plural: "pushsecrets",
        namespaced: true,
    },
    Kind {
        group: "external-secrets.io",
        versions: &["v1alpha1"],
        kind: "PushSecret",
        plural: "pushsecrets",
        namespaced: true,
    },
    Kind {
        group: "secretsync.io",
        versions: &["v1"],
        kind: "ClusterExternalSecret",
        plural: "clusterexternalsecrets",
        namespaced: false,
    },
    Kind {
        group: "external-secrets.io",
        versions: &["v1", "v1beta1"],
        kind: "ClusterExternalSecret",
        plural: "clusterexternalsecrets",
        namespaced: false,
    },
];

/// ESO's and secretsync's default `refreshInterval` (ExternalSecret, PushSecret).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// What one object's status says, as printed and as `-o json|yaml` gives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub kind: String,
    pub api_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The Ready condition's status (`Synced` for SealedSecrets), `Unknown` if none.
    pub ready: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Kind/name` of the store(s) read or written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
    /// The Secret written (ExternalSecret, SealedSecret) or read (PushSecret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// `status.refreshTime`: the last successful sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<String>,
    /// `lastRefresh + refreshInterval`, when refreshes are periodic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    /// Now minus the last successful sync, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness_seconds: Option<i64>,
    /// Older than `--stale`, else than twice the refresh interval.
    pub stale: bool,
    /// Versions status holds: the target Secret's resourceVersion and content
    /// hash (ExternalSecret), the object's own resourceVersion when pushed and
    /// the remote keys written (PushSecret), the namespaces provisioned (CES).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
    /// Workloads reading the target Secret that secretsync restarted, newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<Restart>,
    /// `--check-remote`: whether the remote keys read changed since the last
    /// sync (ExternalSecrets of AWS stores only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
    #[serde(skip)]
    group: String,
    /// What an ExternalSecret reads, or why its spec does not say.
    #[serde(skip)]
    source: Option<Result<Source, String>>,
}

/// What an ExternalSecret reads: its store, the remote requests, and when
/// it last synced (`status.refreshTime`, whole seconds).
#[derive(Clone, Debug, PartialEq)]
struct Source {
    store_kind: StoreKind,
    store_name: String,
    requests: BTreeSet<RemoteRequest>,
    refreshed: Option<jiff::Timestamp>,
}

/// `--check-remote`'s verdict on one ExternalSecret. Keys are named as the
/// ExternalSecret names them (before the store's prefix), with `@version`
/// when one is pinned.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remote {
    /// The worst of: `unreadable`, `missing`, `changed`, `current`;
    /// `notChecked` when no key could be judged.
    pub state: RemoteState,
    /// Changed at or after the last sync (`status.refreshTime`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Not there (deleted, scheduled for deletion, or the version or stage read is gone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Unchanged since the last sync.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current: Vec<String>,
    /// What could not be judged, and why (`find`, never synced, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// Why AWS (or the store) could not be read: the first key's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RemoteState {
    Current,
    Changed,
    Missing,
    Unreadable,
    NotChecked,
}

impl Remote {
    fn empty(state: RemoteState) -> Remote {
        Remote {
            state,
            changed: Vec::new(),
            missing: Vec::new(),
            current: Vec::new(),
            not_checked: Vec::new(),
            error: None,
        }
    }

    fn not_checked(why: impl Into<String>) -> Remote {
        Remote {
            not_checked: vec![why.into()],
            ..Remote::empty(RemoteState::NotChecked)
        }
    }

    /// Nothing says the Secret is behind its source.
    fn fresh(&self) -> bool {
        matches!(self.state, RemoteState::Current | RemoteState::NotChecked)
    }

    /// The REMOTE column.
    fn cell(&self) -> String {
        let keys = |keys: &[String]| keys.join(", ");
        match self.state {
            RemoteState::Unreadable => {
                format!("unreadable: {}", self.error.as_deref().unwrap_or_default())
            }
            RemoteState::Missing if self.changed.is_empty() => {
                format!("missing (key {})", keys(&self.missing))
            }
            RemoteState::Missing => format!(
                "missing (key {}); changed since last sync (key {})",
                keys(&self.missing),
                keys(&self.changed)
            ),
            RemoteState::Changed => {
                format!("changed since last sync (key {})", keys(&self.changed))
            }
            RemoteState::Current => "current".into(),
            RemoteState::NotChecked => {
                format!("not checked: {}", self.not_checked.join("; "))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restart {
    pub kind: String,
    pub name: String,
    /// `secretsync.io/restarted-at` on the workload.
    pub at: String,
}

impl Row {
    /// Ready and not stale, and with `--check-remote` not behind its
    /// source: what the exit code asks of every row shown.
    pub fn healthy(&self) -> bool {
        self.ready == "True" && !self.stale && self.remote.as_ref().is_none_or(Remote::fresh)
    }

    fn key(&self) -> (String, String, Option<String>, String) {
        (
            self.api_version.clone(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    /// Everything but the ticking staleness: what `--watch` compares.
    fn state(&self) -> Row {
        Row {
            staleness_seconds: None,
            ..self.clone()
        }
    }

    fn kind_label(&self) -> String {
        if self.group == secretsync::api::GROUP {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// Turns one listed object into a row, as of `now`; `stale_after` is `--stale`.
pub fn row(kind: &str, object: &Value, now: jiff::Timestamp, stale_after: Option<Duration>) -> Row {
    let api_version = text(&object["apiVersion"]).unwrap_or_default();
    let group = api_version
        .split_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let metadata = &object["metadata"];
    let spec = &object["spec"];
    let status = &object["status"];
    // SealedSecrets (secretsync's and Bitnami's) say `Synced`, as Bitnami's do.
    let ready_type = if kind == "SealedSecret" {
        "Synced"
    } else {
        "Ready"
    };
    let condition = status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == ready_type));
    let mut row = Row {
        kind: kind.to_string(),
        api_version,
        namespace: text(&metadata["namespace"]),
        name: text(&metadata["name"]).unwrap_or_default(),
        ready: condition
            .and_then(|c| text(&c["status"]))
            .unwrap_or_else(|| "Unknown".into()),
        reason: condition.and_then(|c| text(&c["reason"])),
        message: condition.and_then(|c| text(&c["message"])),
        stores: Vec::new(),
        target: None,
        refresh_interval: None,
        last_refresh: None,
        next_due: None,
        staleness_seconds: None,
        stale: false,
        versions: BTreeMap::new(),
        restarted: Vec::new(),
        remote: None,
        group,
        source: None,
    };
    if let Some(observed) = status["observedGeneration"].as_i64()
        && let Some(generation) = metadata["generation"].as_i64()
        && observed < generation
    {
        row.versions.insert(
            "observedGeneration".into(),
            format!("{observed} (spec at {generation})"),
        );
    }
    let mut interval = None;
    match kind {
        "ExternalSecret" => {
            row.stores.extend(store_ref(&spec["secretStoreRef"]));
            row.target = text(&spec["target"]["name"]).or_else(|| Some(row.name.clone()));
            let periodic = matches!(
                spec["refreshPolicy"].as_str().unwrap_or("Periodic"),
                "Periodic"
            );
            interval = periodic.then(|| refresh_interval(&spec["refreshInterval"]));
            for (field, name) in [
                ("syncedResourceVersion", "secretResourceVersion"),
                ("contentHash", "contentHash"),
            ] {
                if let Some(value) = text(&status[field]) {
                    row.versions.insert(name.into(), value);
                }
            }
            row.source = Some(
                secretsync::api::from_json::<ExternalSecretSpec>(spec.clone()).map(|spec| Source {
                    store_kind: spec.secret_store_ref.kind,
                    store_name: spec.secret_store_ref.name.clone(),
                    requests: secretsync::sync::remote_requests(&spec),
                    refreshed: text(&status["refreshTime"])
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
                }),
            );
        }
        "SealedSecret" => {
            row.target =
                text(&spec["template"]["metadata"]["name"]).or_else(|| Some(row.name.clone()));
        }
        "PushSecret" => {
            for store in spec["secretStoreRefs"].as_array().into_iter().flatten() {
                match store_ref(store) {
                    Some(name) => row.stores.push(name),
                    None if store["labelSelector"].is_object() => {
                        row.stores.push("(label selector)".into())
                    }
                    None => {}
                }
            }
            row.target = text(&spec["selector"]["secret"]["name"]);
            interval = Some(refresh_interval(&spec["refreshInterval"]));
            if let Some(version) = text(&status["syncedResourceVersion"]) {
                row.versions.insert("pushedResourceVersion".into(), version);
            }
            if let Some(synced) = status["syncedPushSecrets"].as_object() {
                for (store, keys) in synced {
                    let keys: Vec<&str> = keys
                        .as_object()
                        .map(|k| k.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    row.versions
                        .insert(format!("pushed {store}"), keys.join(","));
                }
            }
        }
        "ClusterExternalSecret" => {
            row.stores
                .extend(store_ref(&spec["externalSecretSpec"]["secretStoreRef"]));
            let list = |field: &str, key: Option<&str>| -> String {
                status[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| text(key.map_or(v, |k| &v[k])))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let provisioned = list("provisionedNamespaces", None);
            if !provisioned.is_empty() {
                row.versions
                    .insert("provisionedNamespaces".into(), provisioned);
            }
            let failed = list("failedNamespaces", Some("namespace"));
            if !failed.is_empty() {
                row.versions.insert("failedNamespaces".into(), failed);
            }
        }
        _ => {}
    }
    row.refresh_interval = interval.map(|i| format_duration(i.as_secs()));
    let last = text(&status["refreshTime"]).and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if let Some(last) = last {
        row.last_refresh = Some(last.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        // A refresh time ahead of this clock (skew) counts as no age at all.
        let age = Duration::try_from(now.duration_since(last)).unwrap_or_default();
        row.staleness_seconds = i64::try_from(age.as_secs()).ok();
        if let Some(interval) = interval.filter(|i| !i.is_zero()) {
            row.next_due = jiff::SignedDuration::try_from(interval)
                .ok()
                .and_then(|i| last.checked_add(i).ok())
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        row.stale = match (stale_after, interval) {
            (Some(limit), _) => age > limit,
            (None, Some(interval)) if !interval.is_zero() => age > interval.saturating_mul(2),
            _ => false,
        };
    }
    row
}

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn store_ref(reference: &Value) -> Option<String> {
    let name = text(&reference["name"])?;
    let kind = text(&reference["kind"]).unwrap_or_else(|| "SecretStore".into());
    Some(format!("{kind}/{name}"))
}

/// A spec's `refreshInterval`; absent or unreadable, the default.
fn refresh_interval(value: &Value) -> Duration {
    value
        .as_str()
        .and_then(|s| s.parse::<GoDuration>().ok())
        .map(Duration::from)
        .unwrap_or(DEFAULT_INTERVAL)
}

/// `3d4h`, `2h5m`, `5m3s`, `42s`: the two largest units, as kubectl's ages.
pub fn format_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// Which rows `--failing` and `--stale` keep: with both, either problem.
fn wanted(row: &Row, failing: bool, stale: bool) -> bool {
    match (failing, stale) {
        (false, false) => true,
        (true, false) => row.ready != "True",
        (false, true) => row.stale,
        (true, true) => row.ready != "True" || row.stale,
    }
}

#[derive(Debug, thiserror::Error)]
enum ListError {
    #[error("listing {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Every row of the kinds served, in kind order then namespace and name.
async fn collect(
    client: &kube::Client,
    scope: Option<&str>,
    args: &Args,
    now: jiff::Timestamp,
    remote: Option<&mut RemoteChecker>,
) -> Result<Vec<Row>, ListError> {
    let mut rows = Vec::new();
    for kind in KINDS {
        for version in kind.versions {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(kind.group, version, kind.kind),
                kind.plural,
            );
            let api: Api<DynamicObject> = match (kind.namespaced, scope) {
                (true, Some(namespace)) => {
                    Api::namespaced_with(client.clone(), namespace, &resource)
                }
                _ => Api::all_with(client.clone(), &resource),
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for item in list.items {
                        let mut object = item.data;
                        object["apiVersion"] = Value::String(resource.api_version.clone());
                        object["metadata"] =
                            serde_json::to_value(&item.metadata).unwrap_or(Value::Null);
                        rows.push(row(kind.kind, &object, now, args.stale));
                    }
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(source) => {
                    return Err(ListError::Kube {
                        what: format!("{}.{}/{version}", kind.plural, kind.group),
                        source,
                    });
                }
            }
        }
    }
    rows.retain(|row| wanted(row, args.failing, args.stale.is_some()));
    if args.output.is_some() {
        add_restarts(client, scope, &mut rows).await;
    }
    if let Some(checker) = remote {
        checker.check(client, &mut rows).await;
    }
    Ok(rows)
}

/// The workloads reading each row's target Secret that carry secretsync's
/// restart time. Only metadata and pod templates are read; a listing denied
/// leaves the column empty, said once on stderr.
async fn add_restarts(client: &kube::Client, scope: Option<&str>, rows: &mut [Row]) {
    if !rows
        .iter()
        .any(|r| r.target.is_some() && r.kind != "PushSecret")
    {
        return;
    }
    let mut workloads: Vec<(String, Option<String>, String, String, PodTemplateSpec)> = Vec::new();
    macro_rules! gather {
        ($type:ty, $kind:literal) => {{
            let api: Api<$type> = match scope {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for item in list.items {
                        let at = item
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
                            .cloned();
                        if let Some(at) = at {
                            workloads.push((
                                $kind.to_string(),
                                item.metadata.namespace,
                                item.metadata.name.unwrap_or_default(),
                                at,
                                item.spec.template,
                            ));
                        }
                    }
                }
                Err(e) => eprintln!("warning: listing {}s for restarts: {e}", $kind),
            }
        }};
    }
    gather!(Deployment, "Deployment");
    gather!(StatefulSet, "StatefulSet");
    gather!(DaemonSet, "DaemonSet");
    for row in rows.iter_mut().filter(|r| r.kind != "PushSecret") {
        let Some(target) = row.target.clone() else {
            continue;
        };
        for (kind, namespace, name, at, template) in &workloads {
            let reads = template.spec.as_ref().is_some_and(|spec| {
                uses(spec)
                    .get(&(ObjKind::Secret, target.clone()))
                    .is_some_and(|u| u.counts)
            });
            if reads && *namespace == row.namespace {
                row.restarted.push(Restart {
                    kind: kind.clone(),
                    name: name.clone(),
                    at: at.clone(),
                });
            }
        }
        row.restarted.sort_by(|a, b| b.at.cmp(&a.at));
    }
}

fn print(rows: &[Row], args: &Args, all_namespaces: bool, header: bool) -> String {
    match args.output {
        Some(Output::Json) => {
            let value = serde_json::json!({"items": rows});
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
        Some(Output::Yaml) => {
            let value = serde_json::json!({"items": rows});
            serde_yaml_ng::to_string(&value).unwrap_or_default()
        }
        _ => table(
            rows,
            args.output == Some(Output::Wide),
            all_namespaces,
            header,
            args.check_remote,
        ),
    }
}

fn table(rows: &[Row], wide: bool, all_namespaces: bool, header: bool, remote: bool) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    if header {
        let mut head = vec![
            "KIND",
            "NAME",
            "READY",
            "REASON",
            "STORE",
            "LAST REFRESH",
            "NEXT DUE",
            "STALENESS",
        ];
        if all_namespaces {
            head.insert(0, "NAMESPACE");
        }
        if remote {
            head.push("REMOTE");
        }
        if wide {
            head.extend(["TARGET", "VERSIONS", "RESTARTED", "MESSAGE"]);
        }
        lines.push(head.into_iter().map(String::from).collect());
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for row in rows {
        let staleness = match row.staleness_seconds {
            Some(s) => {
                let age = format_duration(s.unsigned_abs());
                if row.stale {
                    format!("{age} (stale)")
                } else {
                    age
                }
            }
            None => "-".into(),
        };
        let mut line = vec![
            row.kind_label(),
            row.name.clone(),
            row.ready.clone(),
            dash(&row.reason),
            if row.stores.is_empty() {
                "-".into()
            } else {
                row.stores.join(",")
            },
            dash(&row.last_refresh),
            dash(&row.next_due),
            staleness,
        ];
        if all_namespaces {
            line.insert(0, dash(&row.namespace));
        }
        if remote {
            line.push(row.remote.as_ref().map_or_else(|| "-".into(), Remote::cell));
        }
        if wide {
            let versions = row
                .versions
                .iter()
                .map(|(k, v)| match k.as_str() {
                    // The full hash is in -o json; a prefix tells two apart.
                    "contentHash" => format!("{k}={}", v.get(..12).unwrap_or(v)),
                    _ => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(";");
            let restarted = row
                .restarted
                .iter()
                .map(|r| format!("{}/{}@{}", r.kind, r.name, r.at))
                .collect::<Vec<_>>()
                .join(",");
            line.extend([
                dash(&row.target),
                if versions.is_empty() {
                    "-".into()
                } else {
                    versions
                },
                if restarted.is_empty() {
                    "-".into()
                } else {
                    restarted
                },
                dash(&row.message),
            ]);
        }
        lines.push(line);
    }
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let last = line.len().saturating_sub(1);
        for (c, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if c < last {
                let pad = widths[c].saturating_sub(cell.chars().count()) + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

// --- `--check-remote`: what AWS says of the keys read, metadata only ---

/// How long `--watch` keeps AWS's answers before asking again.
const REMOTE_RECHECK: Duration = Duration::from_secs(60);
/// AWS calls in flight at once.
const REMOTE_CONCURRENCY: usize = 8;
/// Names per DescribeParameters call (AWS's most values in one filter, and
/// its largest page).
const PARAMETERS_PER_CALL: usize = 50;

/// The store an ExternalSecret names, in the ExternalSecret's API group and
/// version (ESO's ExternalSecrets name ESO's stores).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct StoreName {
    api_version: String,
    kind: StoreKind,
    /// A SecretStore's: the ExternalSecret's namespace.
    namespace: Option<String>,
    name: String,
}

impl StoreName {
    fn of(row: &Row) -> Option<StoreName> {
        let Some(Ok(source)) = &row.source else {
            return None;
        };
        if source.store_name.is_empty() {
            return None;
        }
        Some(StoreName {
            api_version: row.api_version.clone(),
            kind: source.store_kind,
            namespace: match source.store_kind {
                StoreKind::SecretStore => row.namespace.clone(),
                StoreKind::ClusterSecretStore => None,
            },
            name: source.store_name.clone(),
        })
    }

    fn label(&self) -> String {
        match (&self.namespace, self.kind) {
            (Some(ns), _) => format!("SecretStore {ns}/{}", self.name),
            (None, StoreKind::SecretStore) => format!("SecretStore {}", self.name),
            (None, StoreKind::ClusterSecretStore) => format!("ClusterSecretStore {}", self.name),
        }
    }
}

/// One AWS store's client, as the operator calls it.
#[derive(Clone)]
enum AwsClient {
    SecretsManager(aws_sdk_secretsmanager::Client),
    ParameterStore(aws_sdk_ssm::Client),
}

/// What AWS said of one key: metadata only, never a value.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    /// Secrets Manager DescribeSecret.
    Secret {
        changed: Option<jiff::Timestamp>,
        /// Scheduled for deletion: reads fail already.
        deleted: bool,
        /// Version id -> its staging labels.
        stages: BTreeMap<String, Vec<String>>,
    },
    /// Parameter Store DescribeParameters.
    Parameter {
        modified: Option<jiff::Timestamp>,
        version: i64,
    },
    Missing,
    Unreadable(String),
}

/// One key's verdict.
#[derive(Debug, PartialEq)]
enum Judged {
    Current,
    Changed,
    Missing,
    Unreadable(String),
    NotChecked(&'static str),
}

/// Whether a key changed since `refreshed` (`status.refreshTime`, whole
/// seconds, taken once the controller's fetch had answered): a change in that
/// same second counts as changed, so a change is never taken for none
/// because of the rounding.
fn judge(answer: &Answer, version: Option<&str>, refreshed: Option<jiff::Timestamp>) -> Judged {
    let since = |at: Option<jiff::Timestamp>| match (at, refreshed) {
        (_, None) => Judged::NotChecked("never synced"),
        (None, _) => Judged::NotChecked("AWS gave no change date"),
        (Some(at), Some(synced)) if at >= synced => Judged::Changed,
        _ => Judged::Current,
    };
    match answer {
        Answer::Unreadable(why) => Judged::Unreadable(why.clone()),
        Answer::Missing | Answer::Secret { deleted: true, .. } => Judged::Missing,
        Answer::Secret {
            changed, stages, ..
        } => {
            // `uuid/<id>` pins a version: its bytes never change.
            if let Some(id) = version.and_then(|v| v.strip_prefix("uuid/")) {
                return if stages.contains_key(id) {
                    Judged::Current
                } else {
                    Judged::NotChecked("version no longer staged")
                };
            }
            let stage = version.unwrap_or("AWSCURRENT");
            if stages.values().flatten().any(|s| s == stage) {
                since(*changed)
            } else {
                Judged::Missing
            }
        }
        Answer::Parameter {
            modified,
            version: latest,
        } => match version.map(str::parse::<i64>) {
            // A pinned number reads the same bytes while it exists.
            Some(Ok(number)) if number <= *latest => Judged::Current,
            Some(Ok(_)) => Judged::Missing,
            _ => since(*modified),
        },
    }
}

/// The key a request reads, as AWS names it (after the store's prefix);
/// `None` for a `find`, and for a parameter named by ARN, which
/// DescribeParameters cannot filter on.
fn aws_key(aws: &AwsProvider, request: &RemoteRequest) -> Option<String> {
    let key = match request {
        RemoteRequest::Value { key, .. } | RemoteRequest::Tags { key } => key,
        RemoteRequest::Find(_) => return None,
    };
    let full = format!("{}{key}", aws.prefix.as_deref().unwrap_or_default());
    (aws.service == AwsService::SecretsManager || !full.starts_with("arn:")).then_some(full)
}

/// `--check-remote`: clients built once per store spec, and AWS's answers by
/// (store spec, key), asked once per listing (kept for `reuse` with --watch).
struct RemoteChecker {
    reuse: Option<Duration>,
    base: Option<aws_config::SdkConfig>,
    /// By the store's AWS spec without `auth` (JSON): stores alike share.
    clients: HashMap<String, Result<AwsClient, String>>,
    answers: HashMap<(String, String), (Instant, Answer)>,
}

impl RemoteChecker {
    fn new(reuse: Option<Duration>) -> RemoteChecker {
        RemoteChecker {
            reuse,
            base: None,
            clients: HashMap::new(),
            answers: HashMap::new(),
        }
    }

    /// Sets `remote` on every ExternalSecret row whose store is an AWS one.
    async fn check(&mut self, kube: &kube::Client, rows: &mut [Row]) {
        use futures::{FutureExt, StreamExt};
        let names: std::collections::HashSet<StoreName> =
            rows.iter().filter_map(StoreName::of).collect();
        let mut stores: HashMap<StoreName, Result<Option<AwsProvider>, String>> = HashMap::new();
        for name in names {
            let found = read_store(kube, &name).await;
            stores.insert(name, found);
        }
        let mut spec_ids: HashMap<StoreName, (String, AwsProvider)> = HashMap::new();
        for (name, found) in &stores {
            let Ok(Some(aws)) = found else { continue };
            let mut spec = aws.clone();
            spec.auth = None;
            let id = serde_json::to_string(&spec).unwrap_or_default();
            if !self.clients.contains_key(&id) {
                let base = match &self.base {
                    Some(base) => base.clone(),
                    None => {
                        let base =
                            aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                        self.base = Some(base.clone());
                        base
                    }
                };
                let client = aws_client(&spec, &base).await;
                self.clients.insert(id.clone(), client);
            }
            spec_ids.insert(name.clone(), (id, spec));
        }
        // One call per distinct key (50 parameters a call), not per row.
        let kept = |at: &Instant| self.reuse.is_some_and(|reuse| at.elapsed() < reuse);
        let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for row in rows.iter() {
            let (Some(name), Some(Ok(source))) = (StoreName::of(row), &row.source) else {
                continue;
            };
            let Some((id, spec)) = spec_ids.get(&name) else {
                continue;
            };
            for key in source.requests.iter().filter_map(|r| aws_key(spec, r)) {
                let known = self
                    .answers
                    .get(&(id.clone(), key.clone()))
                    .is_some_and(|(at, _)| kept(at));
                if !known {
                    wanted.entry(id.as_str()).or_default().insert(key);
                }
            }
        }
        let mut calls = Vec::new();
        for (id, keys) in wanted {
            match self.clients.get(id) {
                Some(Ok(AwsClient::SecretsManager(client))) => {
                    for key in keys {
                        calls.push(describe_secret(client.clone(), id.to_string(), key).boxed());
                    }
                }
                Some(Ok(AwsClient::ParameterStore(client))) => {
                    let keys: Vec<String> = keys.into_iter().collect();
                    for chunk in keys.chunks(PARAMETERS_PER_CALL) {
                        calls.push(
                            describe_parameters(client.clone(), id.to_string(), chunk.to_vec())
                                .boxed(),
                        );
                    }
                }
                _ => {}
            }
        }
        let answered: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(REMOTE_CONCURRENCY)
            .collect()
            .await;
        let now = Instant::now();
        for (id, key, answer) in answered.into_iter().flatten() {
            self.answers.insert((id, key), (now, answer));
        }
        for row in rows.iter_mut() {
            row.remote = self.verdict(row, &stores, &spec_ids);
        }
    }

    fn verdict(
        &self,
        row: &Row,
        stores: &HashMap<StoreName, Result<Option<AwsProvider>, String>>,
        spec_ids: &HashMap<StoreName, (String, AwsProvider)>,
    ) -> Option<Remote> {
        let source = match row.source.as_ref()? {
            Ok(source) => source,
            Err(why) => return Some(Remote::not_checked(format!("spec: {why}"))),
        };
        let name = StoreName::of(row)?;
        let unreadable = |error: String| Remote {
            error: Some(error),
            ..Remote::empty(RemoteState::Unreadable)
        };
        match stores.get(&name)? {
            Err(why) => return Some(unreadable(why.clone())),
            Ok(None) => return None,
            Ok(Some(_)) => {}
        }
        let (id, spec) = spec_ids.get(&name)?;
        if let Some(Err(why)) = self.clients.get(id) {
            return Some(unreadable(format!("{}: {why}", name.label())));
        }
        let mut remote = Remote::empty(RemoteState::NotChecked);
        if source.requests.is_empty() {
            remote.not_checked.push("it reads no remote key".into());
        }
        for request in &source.requests {
            let (label, version) = match request {
                RemoteRequest::Value { key, version } => (
                    match version {
                        Some(v) => format!("{key}@{v}"),
                        None => key.clone(),
                    },
                    version.as_deref(),
                ),
                RemoteRequest::Tags { key } => (format!("{key} (tags)"), None),
                RemoteRequest::Find(_) => {
                    remote
                        .not_checked
                        .push("dataFrom.find is not checked".into());
                    continue;
                }
            };
            let Some(key) = aws_key(spec, request) else {
                remote
                    .not_checked
                    .push(format!("{label}: a parameter named by ARN is not checked"));
                continue;
            };
            let judged = match self.answers.get(&(id.clone(), key)) {
                Some((_, answer)) => judge(answer, version, source.refreshed),
                None => Judged::NotChecked("no answer"),
            };
            match judged {
                Judged::Current => remote.current.push(label),
                Judged::Changed => remote.changed.push(label),
                Judged::Missing => remote.missing.push(label),
                Judged::Unreadable(why) => {
                    if remote.error.is_none() {
                        remote.error = Some(format!("{label}: {why}"));
                    }
                }
                Judged::NotChecked(why) => remote.not_checked.push(format!("{label}: {why}")),
            }
        }
        remote.not_checked.dedup();
        remote.state = if remote.error.is_some() {
            RemoteState::Unreadable
        } else if !remote.missing.is_empty() {
            RemoteState::Missing
        } else if !remote.changed.is_empty() {
            RemoteState::Changed
        } else if !remote.current.is_empty() {
            RemoteState::Current
        } else {
            RemoteState::NotChecked
        };
        Some(remote)
    }
}

/// The store, in the ExternalSecret's group and version: its `aws` provider,
/// `None` for another provider.
async fn read_store(
    client: &kube::Client,
    store: &StoreName,
) -> Result<Option<AwsProvider>, String> {
    let (group, version) = store
        .api_version
        .split_once('/')
        .unwrap_or(("", store.api_version.as_str()));
    let (kind, plural) = match store.kind {
        StoreKind::SecretStore => ("SecretStore", "secretstores"),
        StoreKind::ClusterSecretStore => ("ClusterSecretStore", "clustersecretstores"),
    };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = match &store.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let label = store.label();
    match api.get_opt(&store.name).await {
        Err(e) => Err(format!("reading {label}: {e}")),
        Ok(None) => Err(format!("{label} not found")),
        Ok(Some(object)) => {
            let aws = &object.data["spec"]["provider"]["aws"];
            if aws.is_null() {
                return Ok(None);
            }
            secretsync::api::from_json::<AwsProvider>(aws.clone())
                .map(Some)
                .map_err(|e| format!("{label}: spec.provider.aws: {e}"))
        }
    }
}

/// A client for the store's service with your own credentials: the default
/// chain (environment, profile, SSO, instance role), then the store's
/// `additionalRoles` and `role` assumed from them, as `diff --live` reads;
/// `spec` comes without `auth` (the controller's ServiceAccount token or
/// keys in a Secret are not used). Makes no call yet.
async fn aws_client(spec: &AwsProvider, base: &aws_config::SdkConfig) -> Result<AwsClient, String> {
    let credentials = secretsync::provider::aws::auth::credentials_provider(
        spec,
        None,
        base,
        Arc::new(secretsync::provider::aws::NoKubernetes),
    )
    .await
    .map_err(|e| format!("credentials: {e}"))?;
    let config = base
        .to_builder()
        .region(aws_config::Region::new(spec.region.clone()))
        .credentials_provider(credentials)
        .build();
    Ok(match spec.service {
        AwsService::SecretsManager => {
            AwsClient::SecretsManager(aws_sdk_secretsmanager::Client::new(&config))
        }
        AwsService::ParameterStore => AwsClient::ParameterStore(aws_sdk_ssm::Client::new(&config)),
    })
}

/// An AWS time, to the nanosecond.
fn aws_time(at: &aws_smithy_types::DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(at.secs(), i32::try_from(at.subsec_nanos()).unwrap_or(0)).ok()
}

/// A failed call as AWS's error code and message (no request id), else the
/// SDK's chain of causes (a connection refused, no credentials).
fn aws_error<E>(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    let service = error.as_service_error();
    match (
        service.and_then(|e| e.code()),
        service.and_then(|e| e.message()),
    ) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(error).to_string(),
    }
}

/// DescribeSecret: when the secret last changed, its versions' stages, whether
/// it is scheduled for deletion. No value is asked for.
async fn describe_secret(
    client: aws_sdk_secretsmanager::Client,
    id: String,
    key: String,
) -> Vec<(String, String, Answer)> {
    let answer = match client.describe_secret().secret_id(&key).send().await {
        Ok(secret) => Answer::Secret {
            changed: secret.last_changed_date().and_then(aws_time),
            deleted: secret.deleted_date().is_some(),
            stages: secret
                .version_ids_to_stages()
                .map(|stages| {
                    stages
                        .iter()
                        .map(|(id, labels)| (id.clone(), labels.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        },
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Answer::Missing
        }
        Err(e) => Answer::Unreadable(format!("Secrets Manager DescribeSecret: {}", aws_error(&e))),
    };
    vec![(id, key, answer)]
}

/// DescribeParameters filtered on these exact names: each one's version and
/// modification date (GetParameter and GetParameterHistory answer values
/// too, so they are not used); a name not answered is missing.
async fn describe_parameters(
    client: aws_sdk_ssm::Client,
    id: String,
    names: Vec<String>,
) -> Vec<(String, String, Answer)> {
    let all = |answer: Answer| -> Vec<(String, String, Answer)> {
        names
            .iter()
            .map(|name| (id.clone(), name.clone(), answer.clone()))
            .collect()
    };
    let filter = match aws_sdk_ssm::types::ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .set_values(Some(names.clone()))
        .build()
    {
        Ok(filter) => filter,
        Err(e) => return all(Answer::Unreadable(format!("DescribeParameters: {e}"))),
    };
    let mut found: HashMap<String, Answer> = HashMap::new();
    let mut pages = client
        .describe_parameters()
        .parameter_filters(filter)
        .into_paginator()
        .page_size(PARAMETERS_PER_CALL as i32)
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for parameter in page.parameters() {
                    if let Some(name) = parameter.name() {
                        found.insert(
                            name.to_string(),
                            Answer::Parameter {
                                modified: parameter.last_modified_date().and_then(aws_time),
                                version: parameter.version(),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                return all(Answer::Unreadable(format!(
                    "Parameter Store DescribeParameters: {}",
                    aws_error(&e)
                )));
            }
        }
    }
    names
        .iter()
        .map(|name| {
            let answer = found.remove(name).unwrap_or(Answer::Missing);
            (id.clone(), name.clone(), answer)
        })
        .collect()
}

/// Writes `text` to stdout now; `false` once the reader is gone (`| head`).
fn emit(text: &str) -> bool {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// The cluster as kubectl would reach it: `KUBECONFIG` (or ~/.kube/config)
/// and its current context or `--context`, else the in-cluster account.
async fn client(context: Option<&str>) -> Option<kube::Client> {
    let config = match context {
        None => super::kube_config().await?,
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            };
            match kube::Config::from_kubeconfig(&options).await {
                Ok(mut config) => {
                    config.headers.push((
                        http::header::USER_AGENT,
                        http::HeaderValue::from_static(concat!(
                            "secretsync/",
                            env!("CARGO_PKG_VERSION")
                        )),
                    ));
                    config
                }
                Err(e) => {
                    eprintln!("error: kubeconfig context {context:?}: {e}");
                    return None;
                }
            }
        }
    };
    match kube::Client::try_from(config) {
        Ok(client) => Some(client),
        Err(e) => {
            eprintln!("error: a Kubernetes client: {e}");
            None
        }
    }
}

/// Exit 0: every row shown Ready and fresh; 1: some row not; 2: the cluster
/// could not be read.
pub async fn run(args: Args) -> ExitCode {
    let Some(client) = client(args.context.as_deref()).await else {
        return ExitCode::from(2);
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let scope = (!args.all_namespaces).then_some(namespace.as_str());
    let mut checker = args
        .check_remote
        .then(|| RemoteChecker::new(args.watch.then_some(REMOTE_RECHECK)));
    let code = |rows: &[Row]| {
        if rows.iter().all(Row::healthy) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    let rows = match collect(
        &client,
        scope,
        &args,
        jiff::Timestamp::now(),
        checker.as_mut(),
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if rows.is_empty() && !args.watch {
        eprintln!(
            "No resources found{}.",
            scope
                .map(|n| format!(" in {n} namespace"))
                .unwrap_or_default()
        );
    } else if !emit(&print(&rows, &args, args.all_namespaces, true)) {
        return code(&rows);
    }
    if !args.watch {
        return code(&rows);
    }
    let mut last = rows;
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return code(&last),
            _ = tokio::time::sleep(args.watch_interval) => {}
        }
        let rows = match collect(
            &client,
            scope,
            &args,
            jiff::Timestamp::now(),
            checker.as_mut(),
        )
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let before: BTreeMap<_, _> = last.iter().map(|r| (r.key(), r.state())).collect();
        let changed: Vec<Row> = rows
            .iter()
            .filter(|r| before.get(&r.key()) != Some(&r.state()))
            .cloned()
            .collect();
        let now_keys: Vec<_> = rows.iter().map(Row::key).collect();
        let gone: Vec<Row> = last
            .iter()
            .filter(|r| !now_keys.contains(&r.key()))
            .map(|r| Row {
                ready: "Deleted".into(),
                reason: None,
                ..r.clone()
            })
            .collect();
        let news: Vec<Row> = changed.into_iter().chain(gone).collect();
        if !news.is_empty() {
            let text = match args.output {
                Some(Output::Json) => news
                    .iter()
                    .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
                    .collect(),
                Some(Output::Yaml) => news
                    .iter()
                    .map(|r| format!("---\n{}", serde_yaml_ng::to_string(r).unwrap_or_default()))
                    .collect(),
                _ => table(
                    &news,
                    args.output == Some(Output::Wide),
                    args.all_namespaces,
                    false,
                    args.check_remote,
                ),
            };
            if !emit(&text) {
                return code(&rows);
            }
        }
        last = rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn external_secret(refresh: &str, interval: Option<&str>) -> Value {
        let mut spec = json!({"secretStoreRef": {"name": "aws"}, "target": {"name": "db-secret"}});
        if let Some(interval) = interval {
            spec["refreshInterval"] = json!(interval);
        }
        json!({"apiVersion": "secretsync.io/v1", "metadata": {"name": "db", "namespace": "demo", "generation": 2},
            "spec": spec,
            "status": {"refreshTime": refresh, "syncedResourceVersion": "41", "contentHash": "abc", "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}})
    }

    #[test]
    fn an_external_secret_is_due_an_interval_after_its_last_refresh_and_stale_after_two() {
        let object = external_secret("2026-01-01T10:00:00Z", Some("1h"));
        let fresh = row("ExternalSecret", &object, at("2026-01-01T11:30:00Z"), None);
        assert_eq!(fresh.next_due.as_deref(), Some("2026-01-01T11:00:00Z"));
        assert_eq!(fresh.staleness_seconds, Some(5400));
        assert!(!fresh.stale && fresh.healthy());
        assert_eq!(fresh.stores, ["SecretStore/aws"]);
        assert_eq!(fresh.target.as_deref(), Some("db-secret"));
        assert_eq!(fresh.versions["secretResourceVersion"], "41");
        let late = row("ExternalSecret", &object, at("2026-01-01T12:00:01Z"), None);
        assert!(late.stale && !late.healthy());
        let by_flag = row(
            "ExternalSecret",
            &object,
            at("2026-01-01T10:30:01Z"),
            Some(Duration::from_secs(1800)),
        );
        assert!(by_flag.stale);
    }

    #[test]
    fn the_default_interval_is_an_hour_and_once_only_is_never_stale() {
        let object = external_secret("2026-01-01T10:00:00Z", None);
        let r = row("ExternalSecret", &object, at("2026-01-01T12:00:01Z"), None);
        assert_eq!(r.refresh_interval.as_deref(), Some("1h"));
        assert!(r.stale);
        let once = external_secret("2026-01-01T10:00:00Z", Some("0"));
        let r = row("ExternalSecret", &once, at("2027-01-01T00:00:00Z"), None);
        assert!(!r.stale && r.next_due.is_none());
    }

    #[test]
    fn bitnami_sealed_secrets_are_ready_by_their_synced_condition() {
        let object = json!({"apiVersion": "bitnami.com/v1alpha1", "metadata": {"name": "s", "namespace": "n"},
            "spec": {}, "status": {"conditions": [{"type": "Synced", "status": "False", "reason": "ErrUnsealFailed"}]}});
        let r = row("SealedSecret", &object, jiff::Timestamp::now(), None);
        assert_eq!(
            (r.ready.as_str(), r.reason.as_deref()),
            ("False", Some("ErrUnsealFailed"))
        );
        assert_eq!(r.kind_label(), "SealedSecret.bitnami.com");
        assert!(!r.healthy());
    }

    #[test]
    fn filters_keep_the_failing_the_stale_or_either() {
        let mut ok = row(
            "ExternalSecret",
            &external_secret("2026-01-01T10:00:00Z", Some("1h")),
            at("2026-01-01T10:01:00Z"),
            None,
        );
        assert!(wanted(&ok, false, false) && !wanted(&ok, true, false));
        ok.stale = true;
        assert!(wanted(&ok, false, true) && wanted(&ok, true, true) && !wanted(&ok, true, false));
    }

    #[test]
    fn a_refresh_time_ahead_of_the_clock_is_no_age_and_push_secrets_list_their_keys() {
        let object = json!({"apiVersion": "external-secrets.io/v1alpha1", "metadata": {"name": "p", "namespace": "n"},
            "spec": {"secretStoreRefs": [{"name": "aws"}, {"labelSelector": {}}], "selector": {"secret": {"name": "src"}}},
            "status": {"refreshTime": "2026-01-01T10:00:05Z", "syncedResourceVersion": "7",
                "syncedPushSecrets": {"SecretStore/aws": {"a": {}, "b/c": {}}},
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]}});
        let r = row("PushSecret", &object, at("2026-01-01T10:00:00Z"), None);
        assert_eq!(r.staleness_seconds, Some(0));
        assert!(r.healthy());
        assert_eq!(r.stores, ["SecretStore/aws", "(label selector)"]);
        assert_eq!(r.versions["pushed SecretStore/aws"], "a,b/c");
        assert_eq!(r.next_due.as_deref(), Some("2026-01-01T11:00:05Z"));
        assert_eq!(r.kind_label(), "PushSecret.external-secrets.io");
    }

    #[test]
    fn a_remote_key_changed_at_or_after_the_last_sync_is_changed() {
        let synced = Some(at("2026-01-01T10:00:00Z"));
        let secret = |changed: &str| Answer::Secret {
            changed: Some(at(changed)),
            deleted: false,
            stages: BTreeMap::from([
                ("v2".to_string(), vec!["AWSCURRENT".to_string()]),
                ("v1".to_string(), vec!["AWSPREVIOUS".to_string()]),
            ]),
        };
        let before = secret("2026-01-01T09:59:59.999Z");
        assert_eq!(judge(&before, None, synced), Judged::Current);
        assert_eq!(judge(&before, Some("AWSPREVIOUS"), synced), Judged::Current);
        // The same second as the sync: counted as changed, never missed.
        let same = secret("2026-01-01T10:00:00.500Z");
        assert_eq!(judge(&same, None, synced), Judged::Changed);
        assert_eq!(judge(&same, Some("AWSPENDING"), synced), Judged::Missing);
        assert_eq!(judge(&same, Some("uuid/v1"), synced), Judged::Current);
        assert_eq!(
            judge(&same, Some("uuid/v0"), synced),
            Judged::NotChecked("version no longer staged")
        );
        assert_eq!(judge(&same, None, None), Judged::NotChecked("never synced"));
        let deleted = Answer::Secret {
            changed: None,
            deleted: true,
            stages: BTreeMap::new(),
        };
        assert_eq!(judge(&deleted, None, synced), Judged::Missing);
        let parameter = Answer::Parameter {
            modified: Some(at("2026-01-01T10:05:00Z")),
            version: 3,
        };
        assert_eq!(judge(&parameter, None, synced), Judged::Changed);
        assert_eq!(judge(&parameter, Some("label"), synced), Judged::Changed);
        assert_eq!(judge(&parameter, Some("3"), synced), Judged::Current);
        assert_eq!(judge(&parameter, Some("4"), synced), Judged::Missing);
        assert_eq!(
            judge(&parameter, None, Some(at("2026-01-01T10:05:01Z"))),
            Judged::Current
        );
    }

    #[test]
    fn a_remote_verdict_reads_as_one_cell_and_only_current_is_fresh() {
        let mut remote = Remote::empty(RemoteState::Changed);
        remote.changed = vec!["a".into(), "b@AWSPREVIOUS".into()];
        assert_eq!(
            remote.cell(),
            "changed since last sync (key a, b@AWSPREVIOUS)"
        );
        assert!(!remote.fresh());
        remote.state = RemoteState::Missing;
        remote.missing = vec!["c".into()];
        assert_eq!(
            remote.cell(),
            "missing (key c); changed since last sync (key a, b@AWSPREVIOUS)"
        );
        assert!(!remote.fresh());
        let current = Remote::empty(RemoteState::Current);
        assert_eq!(current.cell(), "current");
        assert!(current.fresh());
        let mut row = row(
            "ExternalSecret",
            &external_secret("2026-01-01T10:00:00Z", Some("1h")),
            at("2026-01-01T10:01:00Z"),
            None,
        );
        assert!(row.healthy());
        row.remote = Some(remote);
        assert!(!row.healthy());
        let source = row.source.clone().unwrap().unwrap();
        assert_eq!(source.store_name, "aws");
        assert_eq!(source.refreshed, Some(at("2026-01-01T10:00:00Z")));
    }

    #[test]
    fn keys_are_asked_after_the_prefix_and_parameters_by_arn_are_not() {
        let mut aws: AwsProvider = serde_json::from_value(
            json!({"service": "ParameterStore", "region": "eu-west-1", "prefix": "/prod/"}),
        )
        .unwrap();
        let value = |key: &str| RemoteRequest::Value {
            key: key.into(),
            version: None,
        };
        assert_eq!(aws_key(&aws, &value("db")).as_deref(), Some("/prod/db"));
        aws.prefix = None;
        assert_eq!(
            aws_key(&aws, &value("arn:aws:ssm:eu-west-1:1:parameter/db")),
            None
        );
        aws.service = AwsService::SecretsManager;
        assert!(aws_key(&aws, &value("arn:aws:secretsmanager:x")).is_some());
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(303), "5m3s");
        assert_eq!(format_duration(7500), "2h5m");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(273_600), "3d4h");
    }
}
