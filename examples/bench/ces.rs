//! The `cluster-external-secret` phase: one ClusterExternalSecret picks
//! `--ces-namespaces` namespaces by label and writes an ExternalSecret into
//! each; the time until every one of them holds its Secret (checked value by
//! value against moto) and the object's status lists every namespace, what
//! that cost (AWS calls, memory, API requests), then its deletion: every
//! ExternalSecret it wrote must go.
//!
//! Its ExternalSecret spec reads 3 Secrets Manager secrets of its own
//! (created for the phase, so no answer the controller kept for the fleet
//! hides a fetch) through the fleet's ClusterSecretStore (one of that name is
//! created when the fleet has per-namespace stores). A fetch per distinct key
//! costs about one BatchGetSecretValue; a fetch per namespace, thousands.
//! Calls naming those keys are told apart from the fleet's own refreshes
//! that fall in the phase.
//!
//! The namespaces (and the keys) are set up before the phase and deleted
//! after it, so later phases see the fleet alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use super::fleet::{self, EsoModel, ExternalSecretPlan, Ref, RemoteKey, Service, StoreKind};
use super::report::{CesDeletion, CesFigures};
use super::{Bench, Check, Outcome, Phase, align_to_second, aws, create, measure, resource};
use crate::support::moto::Recorded;

/// The ClusterExternalSecret's name.
pub const NAME: &str = "bench-ces";
/// The ExternalSecrets it writes, and their Secrets.
pub const CHILD: &str = "bench-shared";
/// Its namespaces carry `bench-ces=yes`; its ExternalSecrets `bench-ces=bench-ces`.
pub const LABEL: &str = "bench-ces";
/// The target: 1,000 namespaces provisioned in under 10 s.
pub const TARGET_SECONDS: f64 = 10.0;
/// The distinct remote keys its ExternalSecret spec reads.
const KEYS: usize = 3;
/// How often the bench reads the object's status while it waits.
const STATUS_POLL: Duration = Duration::from_millis(100);
/// How often the bench lists the ExternalSecrets left while it is deleted.
const DELETION_POLL: Duration = Duration::from_millis(100);

/// What one run of the phase creates and checks.
pub struct CesPlan {
    pub namespaces: Vec<String>,
    pub keys: Vec<RemoteKey>,
    /// One per namespace: the ExternalSecret written there and what its Secret holds.
    pub children: Vec<ExternalSecretPlan>,
}

impl CesPlan {
    /// `run` (1, 2, ...) names the keys, so a second run reads new ones too.
    pub fn new(namespaces: usize, run: u32) -> CesPlan {
        let namespaces: Vec<String> = (0..namespaces)
            .map(|n| format!("bench-ces-{n:04}"))
            .collect();
        let keys: Vec<RemoteKey> = (0..KEYS)
            .map(|i| {
                RemoteKey::new(
                    Service::SecretsManager,
                    format!("bench-ces-{run}-secret-{i}"),
                    1_000_000 * run as usize + i,
                )
            })
            .collect();
        // Two read by property, one whole: the shapes the fleet uses.
        let refs = vec![
            Ref {
                secret_key: "username".into(),
                remote: keys[0].clone(),
                property: Some("username"),
            },
            Ref {
                secret_key: "password".into(),
                remote: keys[1].clone(),
                property: Some("password"),
            },
            Ref {
                secret_key: "config".into(),
                remote: keys[2].clone(),
                property: None,
            },
        ];
        let children = namespaces
            .iter()
            .map(|namespace| ExternalSecretPlan {
                namespace: namespace.clone(),
                name: CHILD.into(),
                service: Service::SecretsManager,
                refs: refs.clone(),
            })
            .collect();
        CesPlan {
            namespaces,
            keys,
            children,
        }
    }

    pub fn manifest(&self) -> Value {
        let data = fleet::data_of(&self.children[0].refs);
        json!({
            "apiVersion": "secretsync.io/v1",
            "kind": "ClusterExternalSecret",
            "metadata": {"name": NAME},
            "spec": {
                "refreshTime": "1h",
                "externalSecretName": CHILD,
                "externalSecretMetadata": {"labels": {LABEL: NAME}},
                "namespaceSelectors": [{"matchLabels": {LABEL: "yes"}}],
                "externalSecretSpec": {
                    "refreshInterval": "1h",
                    "secretStoreRef": {
                        "name": fleet::Fleet::store_name(Service::SecretsManager),
                        "kind": "ClusterSecretStore",
                    },
                    "target": {"name": CHILD},
                    "data": data,
                },
            },
        })
    }

    /// ESO's documented behaviour: each ExternalSecret fetches each distinct
    /// key it reads.
    pub fn eso_model(&self) -> EsoModel {
        let mut model = EsoModel::default();
        for es in &self.children {
            let distinct: BTreeSet<&RemoteKey> = es.refs.iter().map(|r| &r.remote).collect();
            let calls = distinct.len() as u64;
            *model
                .calls
                .entry("secretsmanager.GetSecretValue".to_string())
                .or_default() += calls;
            model.total += calls;
        }
        model
    }

    /// Of recorded calls, the controller's that name one of the keys, by API.
    pub fn calls_naming_keys(&self, recorded: &[Recorded]) -> BTreeMap<String, u64> {
        let mine: Vec<&Recorded> = recorded
            .iter()
            .filter(|r| self.keys.iter().any(|k| r.body.contains(&k.name)))
            .collect();
        let mut calls = BTreeMap::new();
        for r in mine.into_iter().filter(|r| !aws::made_by_bench(r)) {
            *calls.entry(r.call.clone()).or_default() += 1;
        }
        calls
    }
}

/// What the object's status said, as the bench last read it.
#[derive(Default)]
struct StatusSeen {
    /// When it first listed every namespace, none failed, Ready True.
    complete_at: Option<Instant>,
    summary: String,
}

/// Whether a status lists exactly `namespaces` as provisioned, none failed,
/// Ready True; and a line saying what it holds.
fn judge_status(object: &DynamicObject, namespaces: &BTreeSet<String>) -> (bool, String) {
    let status = &object.data["status"];
    let names = |field: &str| -> Vec<String> {
        status[field]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        other => other["namespace"].as_str().map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let provisioned: BTreeSet<String> = names("provisionedNamespaces").into_iter().collect();
    let failed = status["failedNamespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            format!(
                "{} ({})",
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "not set".into());
    let missing = namespaces.difference(&provisioned).count();
    let extra = provisioned.difference(namespaces).count();
    let complete = missing == 0 && extra == 0 && failed.is_empty() && ready.starts_with("True");
    let mut summary = format!(
        "status: {}/{} namespaces provisioned ({missing} missing, {extra} not picked), {} failed, Ready {ready}",
        provisioned.len() - extra,
        namespaces.len(),
        failed.len()
    );
    if let Some(first) = failed.first() {
        summary.push_str(&format!("; first failure: {first}"));
    }
    (complete, summary)
}

/// Reads the object's status until it is complete or `deadline`.
async fn wait_status(
    api: Api<DynamicObject>,
    namespaces: BTreeSet<String>,
    deadline: Instant,
) -> StatusSeen {
    let mut seen = StatusSeen::default();
    loop {
        match api.get_opt(NAME).await {
            Ok(Some(object)) => {
                let (complete, summary) = judge_status(&object, &namespaces);
                seen.summary = summary;
                if complete {
                    seen.complete_at = Some(Instant::now());
                    return seen;
                }
            }
            Ok(None) => seen.summary = format!("ClusterExternalSecret {NAME} not found"),
            Err(e) => seen.summary = format!("reading ClusterExternalSecret {NAME}: {e}"),
        }
        if Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}

/// Creates (`delete` false) or deletes namespaces, `concurrency` at a time.
async fn namespaces(
    client: &kube::Client,
    names: &[String],
    delete: bool,
    concurrency: usize,
) -> Result<(), String> {
    let api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                if delete {
                    return match api.delete(name, &DeleteParams::default()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => Err(format!("deleting namespace {name}: {e}")),
                    };
                }
                let namespace: Namespace = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {LABEL: "yes"}}}),
                )
                .map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &namespace)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("creating namespace {name}: {e}"))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

impl Bench {
    fn ces_api(&self) -> Api<DynamicObject> {
        Api::all_with(
            self.client.clone(),
            &resource("ClusterExternalSecret", "clusterexternalsecrets"),
        )
    }

    /// How many ExternalSecrets the object wrote (by the label it gives
    /// them) are there; with `any`, only whether there is one (a cheap list).
    async fn ces_children(&self, any: bool) -> Result<usize, String> {
        let api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &resource("ExternalSecret", "externalsecrets"),
        );
        let mut params = ListParams::default()
            .labels(&format!("{LABEL}={NAME}"))
            .limit(if any { 1 } else { 500 });
        let mut count = 0;
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| format!("listing the ClusterExternalSecret's ExternalSecrets: {e}"))?;
            count += page.items.len();
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) if !any => params = params.continue_token(&token),
                _ => return Ok(count),
            }
        }
    }

    pub(super) async fn cluster_external_secret(&mut self) -> Result<(), String> {
        self.ces_runs += 1;
        let plan = CesPlan::new(self.options.ces_namespaces, self.ces_runs);
        let wanted: BTreeSet<String> = plan.namespaces.iter().cloned().collect();
        let mut notes = Vec::new();

        // Setup, not measured.
        let setting_up = Instant::now();
        if self.options.stores == StoreKind::Namespaced {
            let store = json!({"apiVersion": "secretsync.io/v1", "kind": "ClusterSecretStore",
                "metadata": {"name": fleet::SM_STORE},
                "spec": {"provider": {"aws": {"service": "SecretsManager", "region": fleet::REGION}}}});
            match create(&self.client, None, &store).await {
                Ok(()) => notes.push(format!(
                    "the fleet has per-namespace stores: ClusterSecretStore {} created for this phase",
                    fleet::SM_STORE
                )),
                Err(e) if e.contains("already exists") => {}
                Err(e) => return Err(e),
            }
        }
        self.aws.write_all(&plan.keys, 1).await?;
        namespaces(
            &self.client,
            &plan.namespaces,
            false,
            self.options.concurrency,
        )
        .await?;
        let setup_seconds = setting_up.elapsed().as_secs_f64();
        notes.push(format!(
            "setup (not measured): {} namespaces labelled {LABEL}=yes and {} Secrets Manager secrets created in {setup_seconds:.2} s",
            plan.namespaces.len(),
            plan.keys.len()
        ));
        // The controller has seen the namespaces (and a fleet cycle under way ended).
        self.wait_quiet(Duration::from_secs(15)).await;

        // From now on the tracker checks the object's Secrets, not the fleet's.
        let values = aws::values_at(&plan.keys, 1);
        self.expect(super::expected_of(&plan.children, &values)?);
        align_to_second().await;
        let start = self.begin();
        let applying = Instant::now();
        create(&self.client, None, &plan.manifest()).await?;
        let trigger_seconds = applying.elapsed().as_secs_f64();
        let deadline = applying + self.options.timeout;
        let status = tokio::spawn(wait_status(self.ces_api(), wanted.clone(), deadline));
        let secrets = self.wait_done(start.wall, deadline).await;
        if secrets.is_err() {
            status.abort();
        }
        let secrets_done = secrets?;
        let seen = status
            .await
            .map_err(|e| format!("the bench's status reader: {e}"))?;
        let done = match (secrets_done, seen.complete_at) {
            (Some(secrets), Some(status)) => Some(secrets.max(status)),
            _ => None,
        };
        if seen.complete_at.is_none() {
            notes.push(format!(
                "the status did not list every namespace within {:.0} s; last {}",
                self.options.timeout.as_secs_f64(),
                seen.summary
            ));
        }
        self.wait_quiet(Duration::from_secs(15)).await;
        let calls = self.stop_recording();
        let aws_calls_naming_keys = plan.calls_naming_keys(&calls);

        // A fresh read of the status for the verification.
        let status_now = match self.ces_api().get_opt(NAME).await {
            Ok(Some(object)) => judge_status(&object, &wanted),
            Ok(None) => (false, format!("ClusterExternalSecret {NAME} not found")),
            Err(e) => (false, format!("reading ClusterExternalSecret {NAME}: {e}")),
        };
        if !status_now.0 {
            notes.push(format!("at the end, {}", status_now.1));
        }
        let seconds = done.map(|d| d.duration_since(applying).as_secs_f64());
        let figures = CesFigures {
            namespaces: plan.namespaces.len(),
            keys: plan.keys.len(),
            setup_seconds,
            seconds_to_status: seen
                .complete_at
                .map(|at| at.duration_since(applying).as_secs_f64()),
            target_seconds: TARGET_SECONDS,
            target_met: seconds.is_some_and(|s| s < TARGET_SECONDS),
            aws_calls_naming_keys,
            deletion: None,
        };
        let outcome = Outcome {
            done,
            clock: Some(applying),
            trigger_seconds,
            calls,
            notes,
            check: Some(Check {
                plans: plan.children.clone(),
                keys: plan.keys.clone(),
                version: 1,
                also_verified: status_now.0,
            }),
            eso_model: Some(plan.eso_model()),
            ces: Some(figures),
            ..Default::default()
        };
        let title = format!(
            "one ClusterExternalSecret over {} namespaces, then its deletion",
            plan.namespaces.len()
        );
        let mut report = self
            .measure(Phase::ClusterExternalSecret, &title, start, outcome)
            .await?;

        // Deletion: every ExternalSecret it wrote must go.
        let deletion = self.delete_ces().await;
        let failure = match &deletion {
            Ok(d) if d.seconds_to_gone.is_some() => None,
            Ok(d) => Some(format!(
                "cluster-external-secret: {} of its {} ExternalSecrets (or the object) still there {:.0} s after deleting ClusterExternalSecret {NAME}",
                d.external_secrets_left,
                d.external_secrets_before,
                self.options.timeout.as_secs_f64()
            )),
            Err(e) => Some(format!("cluster-external-secret: deleting {NAME}: {e}")),
        };
        if let Some(failure) = &failure {
            report.notes.push(failure.clone());
        }
        if let Ok(d) = &deletion
            && d.external_secrets_before != plan.children.len()
        {
            report.notes.push(format!(
                "before the delete, {} ExternalSecrets carried its label {LABEL}={NAME}, not {}: the deletion check covers those",
                d.external_secrets_before,
                plan.children.len()
            ));
        }
        if let Ok(d) = &deletion
            && d.secrets_left > 0
        {
            report.notes.push(format!(
                "{} of its Secrets were still there once every ExternalSecret was gone: written after their ExternalSecret was deleted (the fake API server collects dependents only when the owner goes; the controller's log shows such syncs as 'reconcile failed ... not found')",
                d.secrets_left
            ));
        }
        if let (Some(ces), Ok(d)) = (report.ces.as_mut(), deletion) {
            ces.deletion = Some(d);
        }
        self.publish(report);
        if let Some(failure) = failure {
            return Err(failure);
        }

        // Back to the fleet alone.
        namespaces(
            &self.client,
            &plan.namespaces,
            true,
            self.options.concurrency,
        )
        .await?;
        self.expect_current()?;
        Ok(())
    }

    /// Deletes the object, then waits until it and every ExternalSecret it
    /// wrote are gone (or `--timeout`).
    async fn delete_ces(&mut self) -> Result<CesDeletion, String> {
        let before = self.ces_children(false).await?;
        let stats = self.server.stats().snapshot();
        let pid = self.controller.as_ref().map(std::process::Child::id);
        let cpu = |pid: Option<u32>| {
            pid.and_then(measure::sample)
                .unwrap_or_default()
                .cpu_seconds()
        };
        let (controller_cpu, bench_cpu) = (cpu(pid), cpu(Some(std::process::id())));
        let deleting = Instant::now();
        self.ces_api()
            .delete(NAME, &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = deleting + self.options.timeout;
        let (seconds_to_gone, left) = loop {
            self.check_alive()?;
            let object_gone = self
                .ces_api()
                .get_opt(NAME)
                .await
                .map_err(|e| e.to_string())?
                .is_none();
            let some_left = self.ces_children(true).await? > 0;
            if object_gone && !some_left {
                break (Some(deleting.elapsed().as_secs_f64()), 0);
            }
            if Instant::now() >= deadline {
                break (None, self.ces_children(false).await?);
            }
            tokio::time::sleep(DELETION_POLL).await;
        };
        let api = measure::api_load(&stats, &self.server.stats().snapshot());
        let controller_cpu_seconds = cpu(pid) - controller_cpu;
        let bench_cpu_seconds = cpu(Some(std::process::id())) - bench_cpu;
        let secrets = super::tracker::list_secrets(&self.client).await?;
        let mut left_behind: Vec<String> = secrets
            .keys()
            .filter(|(namespace, name)| name == CHILD && namespace.starts_with("bench-ces-"))
            .map(|(namespace, name)| format!("{namespace}/{name}"))
            .collect();
        left_behind.sort();
        let secrets_left = left_behind.len();
        left_behind.truncate(5);
        Ok(CesDeletion {
            seconds_to_gone,
            external_secrets_before: before,
            external_secrets_left: left,
            secrets_left,
            secrets_left_first: left_behind,
            api,
            controller_cpu_seconds,
            bench_cpu_seconds,
        })
    }
}
