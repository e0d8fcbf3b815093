//! `secretsync status --check-remote`: what AWS says of the keys each
//! ExternalSecret reads, from metadata calls only (DescribeSecret,
//! DescribeParameters), one call per distinct key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;

use secretsync::api::{AwsProvider, AwsService, StoreKind};
use secretsync::provider::RemoteRequest;

use super::Row;

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
    pub(super) fn fresh(&self) -> bool {
        matches!(self.state, RemoteState::Current | RemoteState::NotChecked)
    }

    /// The REMOTE column.
    pub(super) fn cell(&self) -> String {
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

/// How long `--watch` keeps AWS's answers before asking again.
pub(super) const REMOTE_RECHECK: Duration = Duration::from_secs(60);
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
pub(super) struct RemoteChecker {
    reuse: Option<Duration>,
    base: Option<aws_config::SdkConfig>,
    /// By the store's AWS spec without `auth` (JSON): stores alike share.
    clients: HashMap<String, Result<AwsClient, String>>,
    answers: HashMap<(String, String), (Instant, Answer)>,
}

impl RemoteChecker {
    pub(super) fn new(reuse: Option<Duration>) -> RemoteChecker {
        RemoteChecker {
            reuse,
            base: None,
            clients: HashMap::new(),
            answers: HashMap::new(),
        }
    }

    /// Sets `remote` on every ExternalSecret row whose store is an AWS one.
    pub(super) async fn check(&mut self, kube: &kube::Client, rows: &mut [Row]) {
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

#[cfg(test)]
mod tests {
    use super::super::row;
    use super::super::tests::external_secret;
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
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
}
