//! `secretsync status`: one line per ExternalSecret, SealedSecret, PushSecret
//! and ClusterExternalSecret (secretsync's, ESO's and Bitnami's, whichever are
//! served) from what the controller wrote in their status and metadata. It
//! never reads a Secret's data, and calls AWS only with `--check-remote`
//! (metadata calls, never a value): on call, the question is which objects
//! are failing or stale and why, and the answer must be safe to paste.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use secretsync::api::{ExternalSecretSpec, GoDuration, StoreKind};
use secretsync::controller::reload::{ObjKind, RESTARTED_AT_ANNOTATION, uses::uses};
use secretsync::provider::RemoteRequest;

mod remote;
use remote::{REMOTE_RECHECK, Remote, RemoteChecker};

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
    // Each listing is taken now, with the remote checker's cache (if any).
    let mut listing = async || {
        collect(
            &client,
            scope,
            &args,
            jiff::Timestamp::now(),
            checker.as_mut(),
        )
        .await
    };
    let rows = match listing().await {
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
        let rows = match listing().await {
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

    pub(super) fn external_secret(refresh: &str, interval: Option<&str>) -> Value {
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
    fn durations_read_like_kubectl_ages() {
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(303), "5m3s");
        assert_eq!(format_duration(7500), "2h5m");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(273_600), "3d4h");
    }
}
