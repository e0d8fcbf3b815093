//! `secretsync controller` scenarios: the real binary against the test bed
//! (fake API server by default, or a real cluster), AWS served by moto. Every
//! scenario ends by scanning the controller's logs for the values it used.

use crate::support;

use support::controller::cli;

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, condition, eventually, gone};
use support::controller::RunningController;

const WAIT: Duration = Duration::from_secs(30);

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("secretsync.io", "v1", kind), plural)
}

struct Scenario {
    cluster: Cluster,
    controller: Option<RunningController>,
}

impl Scenario {
    async fn start(name: &str) -> Scenario {
        let cluster = Cluster::start(name).await;
        cluster.apply_crds().await;
        Scenario {
            cluster,
            controller: None,
        }
    }

    fn run_controller(&mut self, env: &[(&str, &str)]) {
        let lease_namespace = self.cluster.namespace.clone();
        self.controller = Some(RunningController::start(
            &self.cluster.kubeconfig,
            &[
                "--lease-namespace",
                &lease_namespace,
                "--identity",
                "scenario",
            ],
            env,
        ));
    }

    fn api(&self, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.cluster.client.clone(),
            &self.cluster.namespace,
            &resource(kind, plural),
        )
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }

    async fn apply(&self, kind: &str, plural: &str, manifest: Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        let mut manifest = manifest;
        manifest["apiVersion"] = json!("secretsync.io/v1");
        manifest["kind"] = json!(kind);
        self.api(kind, plural)
            .patch(
                &name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// The Secret's data once `check` holds for it.
    async fn secret_where(&self, name: &str, check: impl Fn(&Secret) -> bool) -> Secret {
        let secrets = self.secrets();
        let found = eventually(WAIT, || {
            let secrets = secrets.clone();
            let check = &check;
            async move { secrets.get_opt(name).await.unwrap().filter(|s| check(s)) }
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "Secret {name} never got there; controller log:\n{}",
                self.logs()
            )
        })
    }

    /// The ExternalSecret's status once its Ready condition has `reason`.
    async fn ready_reason(&self, name: &str, reason: &str) -> Value {
        let api = self.api("ExternalSecret", "externalsecrets");
        condition(&api, name, "Ready", reason, "", WAIT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "ExternalSecret {name} never became {reason}; controller log:\n{}",
                    self.logs()
                )
            })
    }

    /// `secret` has no owner, and stays when the ExternalSecret `writer` goes.
    async fn owned_by_no_one_and_left_behind(&self, secret: Secret, writer: &str) {
        assert!(
            secret
                .metadata
                .owner_references
                .unwrap_or_default()
                .is_empty()
        );
        self.api("ExternalSecret", "externalsecrets")
            .delete(writer, &DeleteParams::background())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = secret.metadata.name.unwrap_or_default();
        assert!(
            self.secrets().get_opt(&name).await.unwrap().is_some(),
            "{name} stays after ExternalSecret {writer} is deleted"
        );
    }

    /// The running controller's Prometheus exposition.
    fn metrics(&self) -> String {
        let health = &self
            .controller
            .as_ref()
            .expect("a running controller")
            .health;
        ureq::get(&format!("{health}/metrics"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    }

    fn logs(&self) -> String {
        self.controller
            .as_ref()
            .map(|c| c.log_text())
            .unwrap_or_default()
    }

    async fn finish(mut self, values: &[&str]) {
        if let Some(mut controller) = self.controller.take() {
            let status = controller.terminate();
            assert!(
                status.success(),
                "the controller exits cleanly on SIGTERM: {status:?}\n{}",
                controller.log_text()
            );
            controller.assert_never_logged(values);
        }
        self.cluster.finish().await;
    }
}

fn text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default()
}

fn fake_store(name: &str, entries: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = entries
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    json!({"metadata": {"name": name}, "spec": {"provider": {"fake": {"data": data}}}})
}

const DB_JSON: &str = r#"{"user":"app","password":"Sc3nario-pw-1"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_secret_becomes_a_secret_that_is_repaired_and_follows_its_spec() {
    let mut scenario = Scenario::start("basic").await;
    scenario.run_controller(&[]);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", DB_JSON), ("token", "tok-Sc3nario-2")]),
        )
        .await;
    scenario
        .apply(
            "ExternalSecret",
            "externalsecrets",
            json!({"metadata": {"name": "app"}, "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "fake"},
                "target": {"name": "app-secret"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]}}),
        )
        .await;

    let secret = scenario
        .secret_where("app-secret", |s| s.data.is_some())
        .await;
    assert_eq!(text(&secret, "password"), "Sc3nario-pw-1");
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["secretsync.io/managed"], "true");
    assert!(
        secret
            .metadata
            .annotations
            .clone()
            .unwrap()
            .contains_key("secretsync.io/content-hash")
    );
    let owner = &secret.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ExternalSecret", "app", Some(true))
    );
    let managers: Vec<String> = secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"secretsync".to_string()),
        "written by server-side apply as secretsync: {managers:?}"
    );

    let status = scenario.ready_reason("app", "SecretSynced").await;
    assert!(status["refreshTime"].is_string());
    assert_eq!(
        status["syncedResourceVersion"],
        json!(secret.metadata.resource_version)
    );
    assert_eq!(status["observedGeneration"], 1);
    let events: Api<Event> =
        Api::namespaced(scenario.cluster.client.clone(), &scenario.cluster.namespace);
    let reasons = || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect::<Vec<_>>()
    };
    assert!(reasons().await.contains(&"Created".to_string()));

    // Drift: a hand edit is undone, a deleted Secret comes back.
    let secrets = scenario.secrets();
    secrets
        .patch(
            "app-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"password": "aGFja2Vk"}})),
        )
        .await
        .unwrap();
    let repaired = scenario
        .secret_where("app-secret", |s| text(s, "password") == "Sc3nario-pw-1")
        .await;
    assert_eq!(text(&repaired, "password"), "Sc3nario-pw-1");
    secrets
        .delete("app-secret", &DeleteParams::default())
        .await
        .unwrap();
    scenario
        .secret_where("app-secret", |s| text(s, "password") == "Sc3nario-pw-1")
        .await;

    // A spec change is followed: a new key, an Updated event.
    scenario
        .apply(
            "ExternalSecret",
            "externalsecrets",
            json!({"metadata": {"name": "app"}, "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "fake"},
                "target": {"name": "app-secret"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
                         {"secretKey": "token", "remoteRef": {"key": "token"}}]}}),
        )
        .await;
    let updated = scenario
        .secret_where("app-secret", |s| text(s, "token") == "tok-Sc3nario-2")
        .await;
    assert_eq!(text(&updated, "password"), "Sc3nario-pw-1");
    let found = eventually(WAIT, || async {
        reasons()
            .await
            .contains(&"Updated".to_string())
            .then_some(())
    })
    .await;
    assert!(found.is_some(), "an Updated event");

    // Labels and annotations of an ExternalSecret without a template go to
    // its Secret; changing them asks for a sync.
    scenario
        .apply(
            "ExternalSecret",
            "externalsecrets",
            json!({"metadata": {"name": "app", "labels": {"team": "payments"},
                    "annotations": {"owner": "pay@example.org"}},
                "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "fake"},
                "target": {"name": "app-secret"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
                         {"secretKey": "token", "remoteRef": {"key": "token"}}]}}),
        )
        .await;
    let labelled = scenario
        .secret_where("app-secret", |s| {
            s.metadata.labels.as_ref().and_then(|l| l.get("team")) == Some(&"payments".into())
        })
        .await;
    assert_eq!(
        labelled.metadata.annotations.unwrap()["owner"],
        "pay@example.org"
    );

    // A refresh that finds the same content writes nothing.
    let before = scenario.secrets().get("app-secret").await.unwrap();
    let api = scenario.api("ExternalSecret", "externalsecrets");
    let hash_before = api.get("app").await.unwrap().data["status"]["specHash"].clone();
    scenario.force_sync("app", "same-content").await;
    let refreshed = eventually(WAIT, || {
        let api = api.clone();
        let hash_before = hash_before.clone();
        async move {
            let es = api.get("app").await.ok()?;
            (es.data["status"]["specHash"] != hash_before).then_some(())
        }
    })
    .await;
    assert!(refreshed.is_some(), "the forced refresh was handled");
    let after = scenario.secrets().get("app-secret").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "same content: no write"
    );

    // The Secret goes with its ExternalSecret (creationPolicy Owner).
    scenario
        .api("ExternalSecret", "externalsecrets")
        .delete("app", &DeleteParams::background())
        .await
        .unwrap();
    assert!(gone(&secrets, "app-secret", WAIT).await);
    scenario
        .finish(&["Sc3nario-pw-1", "tok-Sc3nario-2", DB_JSON])
        .await;
}

impl Scenario {
    async fn force_sync(&self, name: &str, value: &str) {
        self.api("ExternalSecret", "externalsecrets")
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"secretsync.io/force-sync": value}}}),
                ),
            )
            .await
            .unwrap();
    }

    async fn external_secret(&self, name: &str, spec: Value) {
        self.apply(
            "ExternalSecret",
            "externalsecrets",
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    /// Waits until the Ready condition has `reason` and says `expected`.
    async fn message(&self, name: &str, reason: &str, expected: &str) {
        let api = self.api("ExternalSecret", "externalsecrets");
        if condition(&api, name, "Ready", reason, expected, WAIT)
            .await
            .is_none()
        {
            panic!(
                "ExternalSecret {name} never said {reason}: {expected}; controller log:\n{}",
                self.logs()
            );
        }
    }
}

fn data(key: &str, remote: &str) -> Value {
    json!([{"secretKey": key, "remoteRef": {"key": remote}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_policies_orphan_merge_create_or_merge_and_none() {
    let mut scenario = Scenario::start("policies").await;
    scenario.run_controller(&[]);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("k", "Po1icy-value")]),
        )
        .await;
    let spec = |policy: &str, target: &str| json!({"secretStoreRef": {"name": "fake"}, "target": {"name": target, "creationPolicy": policy}, "data": data("k", "k")});

    scenario
        .external_secret("orphan", spec("Orphan", "orphan"))
        .await;
    let secret = scenario
        .secret_where("orphan", |s| text(s, "k") == "Po1icy-value")
        .await;
    scenario
        .owned_by_no_one_and_left_behind(secret, "orphan")
        .await;

    scenario
        .external_secret("merge", spec("Merge", "shared"))
        .await;
    scenario
        .message("merge", "SecretMissing", "does not exist")
        .await;
    let theirs = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared"}, "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "kept", "password": "also-kept"}});
    scenario
        .secrets()
        .patch(
            "shared",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&theirs),
        )
        .await
        .unwrap();
    scenario.force_sync("merge", "1").await;
    let merged = scenario
        .secret_where("shared", |s| text(s, "k") == "Po1icy-value")
        .await;
    assert_eq!(
        text(&merged, "username"),
        "kept",
        "Merge writes only its own keys"
    );
    assert_eq!(merged.type_.as_deref(), Some("kubernetes.io/basic-auth"));

    // CreateOrMerge (ESO v1): a missing Secret is created, owned by no one;
    // an existing one keeps the keys others wrote.
    scenario
        .external_secret("create-or-merge", spec("CreateOrMerge", "made"))
        .await;
    let made = scenario
        .secret_where("made", |s| text(s, "k") == "Po1icy-value")
        .await;
    scenario
        .owned_by_no_one_and_left_behind(made, "create-or-merge")
        .await;
    let existing = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "existing"},
        "stringData": {"username": "kept"}});
    scenario
        .secrets()
        .patch(
            "existing",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&existing),
        )
        .await
        .unwrap();
    scenario
        .external_secret("merges-in", spec("CreateOrMerge", "existing"))
        .await;
    let merged = scenario
        .secret_where("existing", |s| text(s, "k") == "Po1icy-value")
        .await;
    assert_eq!(
        text(&merged, "username"),
        "kept",
        "CreateOrMerge keeps other keys"
    );
    scenario
        .owned_by_no_one_and_left_behind(merged, "merges-in")
        .await;

    // An immutable Secret is written once; new content is refused, not forced.
    let mut immutable = spec("Owner", "frozen");
    immutable["target"]["immutable"] = json!(true);
    immutable["refreshInterval"] = json!("1s");
    scenario.external_secret("frozen", immutable).await;
    let frozen = scenario
        .secret_where("frozen", |s| text(s, "k") == "Po1icy-value")
        .await;
    assert_eq!(frozen.immutable, Some(true));
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("k", "Po1icy-changed")]),
        )
        .await;
    scenario
        .message("frozen", "SecretSyncedError", "is immutable")
        .await;
    assert_eq!(
        text(&scenario.secrets().get("frozen").await.unwrap(), "k"),
        "Po1icy-value"
    );
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("k", "Po1icy-value")]),
        )
        .await;

    // A Secret that exists without the managed label is not read first but
    // applied to: the apply's answer shows its keys, so one the ExternalSecret
    // does not produce still goes, and it is reported updated, not created.
    // An immutable one is refused with the reason, its content kept.
    scenario
        .secrets()
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "unlabelled"},
                "stringData": {"k": "before", "stray": "left-by-hand"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    scenario
        .secrets()
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "unlabelled-frozen"},
                "immutable": true, "stringData": {"k": "before"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    scenario
        .external_secret("takes-over", spec("Owner", "unlabelled"))
        .await;
    scenario
        .external_secret("takes-frozen", spec("Owner", "unlabelled-frozen"))
        .await;
    let taken = scenario
        .secret_where("unlabelled", |s| {
            text(s, "k") == "Po1icy-value"
                && s.data.as_ref().is_some_and(|d| !d.contains_key("stray"))
        })
        .await;
    assert_eq!(
        taken
            .labels()
            .get("secretsync.io/managed")
            .map(String::as_str),
        Some("true")
    );
    scenario
        .message("takes-frozen", "SecretSyncedError", "is immutable")
        .await;
    assert_eq!(
        text(
            &scenario.secrets().get("unlabelled-frozen").await.unwrap(),
            "k"
        ),
        "before"
    );
    let events: Api<Event> =
        Api::namespaced(scenario.cluster.client.clone(), &scenario.cluster.namespace);
    // The Event follows the Secret's write.
    let reasons = eventually(WAIT, || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("takes-over"))
            .filter_map(|e| e.reason)
            .collect();
        reasons.contains(&"Updated".to_string()).then_some(reasons)
    })
    .await
    .expect("an Updated Event for takes-over");
    assert!(!reasons.contains(&"Created".to_string()), "{reasons:?}");

    scenario
        .external_secret("none", spec("None", "never"))
        .await;
    scenario.ready_reason("none", "SecretSynced").await;
    assert!(
        scenario.secrets().get_opt("never").await.unwrap().is_none(),
        "None writes no Secret"
    );
    scenario.finish(&["Po1icy-value", "Po1icy-changed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_leave_the_secret_as_it_was_and_say_why() {
    let mut scenario = Scenario::start("failures").await;
    scenario.run_controller(&[]);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", DB_JSON)]),
        )
        .await;
    let good = json!({"secretStoreRef": {"name": "fake"}, "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]});
    scenario.external_secret("app", good).await;
    let before = scenario
        .secret_where("app", |s| text(s, "password") == "Sc3nario-pw-1")
        .await;

    // The remote key disappears (deletionPolicy Retain): the Secret stays.
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("other", "x")]),
        )
        .await;
    scenario.force_sync("app", "1").await;
    scenario
        .message(
            "app",
            "SecretSyncedError",
            "spec.data[0].remoteRef (remote key \"db\"): remote key \"db\" not found",
        )
        .await;
    let after = scenario.secrets().get("app").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "not written at all"
    );

    // A template error names the key and the position, never the value.
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", DB_JSON)]),
        )
        .await;
    let templated = json!({"secretStoreRef": {"name": "fake"}, "target": {"template": {"data": {"url": "x\n{{ .password | mustFromJson }}"}}},
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]});
    scenario.external_secret("app", templated).await;
    scenario
        .message(
            "app",
            "SecretSyncedError",
            "spec.target.template.data.url: line 2, column",
        )
        .await;
    assert_eq!(
        scenario.secrets().get("app").await.unwrap().data,
        before.data
    );

    // An invalid spec and a missing or foreign store are reported as such.
    scenario
        .external_secret("bad", json!({"secretStoreRef": {"name": "fake"}, "data": [{"secretKey": "a b", "remoteRef": {"key": "db"}}]}))
        .await;
    scenario
        .message("bad", "InvalidSpec", "spec.data[0].secretKey")
        .await;
    scenario
        .external_secret(
            "lost",
            json!({"secretStoreRef": {"name": "nowhere"}, "data": data("a", "db")}),
        )
        .await;
    scenario
        .message(
            "lost",
            "StoreNotReady",
            "SecretStore \"nowhere\" not found in namespace",
        )
        .await;

    let events: Api<Event> =
        Api::namespaced(scenario.cluster.client.clone(), &scenario.cluster.namespace);
    // The Event follows the status write.
    let failed = eventually(WAIT, || async {
        let failed = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("UpdateFailed"))
            .count();
        (failed > 0).then_some(failed)
    })
    .await;
    assert!(
        failed.is_some(),
        "failures are published as UpdateFailed events"
    );
    let status = scenario.ready_reason("app", "SecretSyncedError").await;
    for value in ["Sc3nario-pw-1", DB_JSON] {
        assert!(
            !status.to_string().contains(value),
            "a value in the status: {status}"
        );
    }
    scenario.finish(&["Sc3nario-pw-1", DB_JSON]).await;
}

/// A Secret as a broken API server (or a proxy) might answer it: its value
/// in `stringData`, in `data` (base64 of "Garbled-s3cret-41"), and quoted by
/// the field that does not decode (`immutable` must be a boolean).
const GARBLED_SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"app","resourceVersion":"1"},"immutable":"Garbled-s3cret-41","stringData":{"password":"Garbled-s3cret-41"},"data":{"password":"R2FyYmxlZC1zM2NyZXQtNDE="}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_secret_answer_reaches_no_log_nor_status() {
    let mut scenario = Scenario::start("garbled").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", "Garble-v1")]),
        )
        .await;
    scenario.run_controller(&[]);
    scenario
        .external_secret(
            "app",
            json!({"refreshInterval": "1h", "secretStoreRef": {"name": "fake"}, "data": data("password", "db")}),
        )
        .await;
    scenario
        .secret_where("app", |s| text(s, "password") == "Garble-v1")
        .await;
    let path = format!("/namespaces/{}/secrets/app", scenario.cluster.namespace);
    let Some(faults) = scenario.cluster.faults_for("an undecodable Secret") else {
        return scenario.finish(&[]).await;
    };
    // Every read of the Secret by name now gets an answer kube-client cannot
    // decode: it would log the whole text (warn), and serde's message quotes
    // the field that does not fit.
    faults.answer_next(1000, Some("GET"), &path, GARBLED_SECRET);
    // A new value: the Secret in the cache is ours but stale, so it is read.
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", "Garble-v2")]),
        )
        .await;
    scenario.force_sync("app", "1").await;
    scenario
        .message(
            "app",
            "SecretSyncedError",
            "the API server's answer did not decode",
        )
        .await;
    let status = scenario.ready_reason("app", "SecretSyncedError").await;
    assert!(!status.to_string().contains("Garbled"), "{status}");
    assert!(!status.to_string().contains("R2FyYmxlZC"), "{status}");
    scenario
        .finish(&["Garbled-s3cret-41", "R2FyYmxlZC1zM2NyZXQtNDE"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_and_deletion_policies() {
    let mut scenario = Scenario::start("refresh").await;
    scenario.run_controller(&[]);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Refresh-v1"), ("b", "Keep-b")]),
        )
        .await;
    let spec = |policy: &str, interval: &str| {
        json!({"refreshPolicy": policy, "refreshInterval": interval,
        "secretStoreRef": {"name": "fake"}, "data": data("a", "a")})
    };
    scenario
        .external_secret("periodic", spec("Periodic", "1s"))
        .await;
    scenario
        .external_secret("onchange", spec("OnChange", "1s"))
        .await;
    scenario
        .external_secret("once", spec("CreatedOnce", "1s"))
        .await;
    for name in ["periodic", "onchange", "once"] {
        scenario
            .secret_where(name, |s| text(s, "a") == "Refresh-v1")
            .await;
    }

    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Refresh-v2"), ("b", "Keep-b")]),
        )
        .await;
    scenario
        .secret_where("periodic", |s| text(s, "a") == "Refresh-v2")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        text(&scenario.secrets().get("onchange").await.unwrap(), "a"),
        "Refresh-v1",
        "OnChange waits for a change"
    );
    scenario.force_sync("onchange", "now").await;
    scenario
        .secret_where("onchange", |s| text(s, "a") == "Refresh-v2")
        .await;
    scenario.force_sync("once", "now").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        text(&scenario.secrets().get("once").await.unwrap(), "a"),
        "Refresh-v1",
        "CreatedOnce never updates"
    );

    // deletionPolicy when remote values disappear.
    let spec = |policy: &str| {
        json!({"refreshInterval": "1s", "secretStoreRef": {"name": "fake"},
        "target": {"deletionPolicy": policy}, "data": [{"secretKey": "a", "remoteRef": {"key": "a"}}, {"secretKey": "b", "remoteRef": {"key": "b"}}]})
    };
    for policy in ["Retain", "Delete", "Merge"] {
        scenario
            .external_secret(&policy.to_lowercase(), spec(policy))
            .await;
        scenario
            .secret_where(&policy.to_lowercase(), |s| text(s, "b") == "Keep-b")
            .await;
    }
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Refresh-v3")]),
        )
        .await;
    let merged = scenario
        .secret_where("merge", |s| {
            text(s, "a") == "Refresh-v3" && !s.data.as_ref().unwrap().contains_key("b")
        })
        .await;
    assert_eq!(
        merged.data.unwrap().len(),
        1,
        "Merge drops the key whose remote value is gone"
    );
    scenario
        .apply("SecretStore", "secretstores", fake_store("fake", &[]))
        .await;
    let secrets = scenario.secrets();
    assert!(
        gone(&secrets, "delete", WAIT).await,
        "Delete removes the Secret once every remote value is gone"
    );
    scenario.ready_reason("retain", "SecretSyncedError").await;
    assert_eq!(
        text(&scenario.secrets().get("retain").await.unwrap(), "b"),
        "Keep-b",
        "Retain keeps it"
    );
    scenario
        .finish(&["Refresh-v1", "Refresh-v2", "Refresh-v3", "Keep-b"])
        .await;
}

/// ESO's `syncWindows`: a deny window that is open holds periodic refreshes
/// back, an allow window that is open lets them through; neither holds back
/// the first sync or a force-sync (ESO's annotation as much as ours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_windows_gate_periodic_refreshes_only() {
    let mut scenario = Scenario::start("windows").await;
    scenario.run_controller(&[]);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Window-v1")]),
        )
        .await;
    // Every minute a window opens for an hour: always open.
    let spec = |windows: Value| {
        json!({"refreshInterval": "1s", "syncWindows": windows,
        "secretStoreRef": {"name": "fake"}, "data": data("a", "a")})
    };
    let always = json!([{"schedule": "* * * * *", "duration": "1h"}]);
    scenario
        .external_secret("denied", spec(json!({"kind": "deny", "windows": always})))
        .await;
    scenario
        .external_secret("allowed", spec(json!({"kind": "allow", "windows": always})))
        .await;
    scenario
        .external_secret(
            "closed",
            spec(
                json!({"kind": "allow", "windows": [{"schedule": "0 0 31 2 *", "duration": "1h"}]}),
            ),
        )
        .await;
    for name in ["denied", "allowed", "closed"] {
        scenario
            .secret_where(name, |s| text(s, "a") == "Window-v1")
            .await;
    }

    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Window-v2")]),
        )
        .await;
    scenario
        .secret_where("allowed", |s| text(s, "a") == "Window-v2")
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["denied", "closed"] {
        assert_eq!(
            text(&scenario.secrets().get(name).await.unwrap(), "a"),
            "Window-v1",
            "{name}: its windows hold periodic refreshes back"
        );
    }
    scenario.ready_reason("denied", "SecretSynced").await;

    // A force-sync goes through, by either annotation.
    scenario.force_sync("denied", "now").await;
    scenario
        .secret_where("denied", |s| text(s, "a") == "Window-v2")
        .await;
    scenario
        .api("ExternalSecret", "externalsecrets")
        .patch(
            "closed",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"external-secrets.io/force-sync": "1"}}}),
            ),
        )
        .await
        .unwrap();
    scenario
        .secret_where("closed", |s| text(s, "a") == "Window-v2")
        .await;

    // A schedule that is not one is named by its field.
    scenario
        .external_secret(
            "typo",
            spec(json!({"kind": "deny", "windows": [{"schedule": "0 22 * *", "duration": "1h"}]})),
        )
        .await;
    let status = scenario.ready_reason("typo", "InvalidSpec").await;
    assert!(
        status
            .to_string()
            .contains("spec.syncWindows.windows[0].schedule"),
        "{status}"
    );
    scenario.finish(&["Window-v1", "Window-v2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_decide_who_may_use_them() {
    let mut scenario = Scenario::start("access").await;
    scenario.run_controller(&[]);
    let namespace = scenario.cluster.namespace.clone();
    let cluster_stores = Api::<DynamicObject>::all_with(
        scenario.cluster.client.clone(),
        &resource("ClusterSecretStore", "clustersecretstores"),
    );
    let store = |name: &str, conditions: Value| {
        json!({"apiVersion": "secretsync.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": name},
            "spec": {"provider": {"fake": {"data": [{"key": "k", "value": "Cluster-value"}]}}, "conditions": conditions}})
    };
    let open = format!("open-{namespace}");
    let closed = format!("closed-{namespace}");
    let apply = PatchParams::apply("scenario").force();
    cluster_stores
        .patch(
            &open,
            &apply,
            &Patch::Apply(store(&open, json!([{"namespaces": [namespace]}]))),
        )
        .await
        .unwrap();
    cluster_stores
        .patch(
            &closed,
            &apply,
            &Patch::Apply(store(&closed, json!([{"namespaceRegexes": ["^kube-"]}]))),
        )
        .await
        .unwrap();
    scenario
        .external_secret("ok", json!({"secretStoreRef": {"name": open, "kind": "ClusterSecretStore"}, "data": data("k", "k")}))
        .await;
    scenario
        .secret_where("ok", |s| text(s, "k") == "Cluster-value")
        .await;
    scenario
        .external_secret("refused", json!({"secretStoreRef": {"name": closed, "kind": "ClusterSecretStore"}, "data": data("k", "k")}))
        .await;
    scenario
        .message("refused", "StoreNotReady", "does not admit namespace")
        .await;

    // A namespace selector matches the namespace's labels (the API server's own included).
    let selected = format!("selected-{namespace}");
    let by_label =
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}]);
    cluster_stores
        .patch(&selected, &apply, &Patch::Apply(store(&selected, by_label)))
        .await
        .unwrap();
    scenario
        .external_secret("by-label", json!({"secretStoreRef": {"name": selected, "kind": "ClusterSecretStore"}, "data": data("k", "k")}))
        .await;
    scenario
        .secret_where("by-label", |s| text(s, "k") == "Cluster-value")
        .await;

    // A namespaced store may not reach into another namespace; the store says so.
    let foreign = json!({"metadata": {"name": "foreign"}, "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1",
        "auth": {"secretRef": {"accessKeyIDSecretRef": {"name": "keys", "key": "id", "namespace": "kube-system"},
            "secretAccessKeySecretRef": {"name": "keys", "key": "secret"}}}}}}});
    scenario.apply("SecretStore", "secretstores", foreign).await;
    let stores = scenario.api("SecretStore", "secretstores");
    let status = condition(
        &stores,
        "foreign",
        "Ready",
        "InvalidProviderConfig",
        "cannot reference namespace \"kube-system\"",
        WAIT,
    )
    .await
    .expect("the store says it may not reference kube-system");
    assert_eq!(status["conditions"][0]["status"], "False");
    for name in [open, closed, selected] {
        cluster_stores
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
    }
    scenario.finish(&["Cluster-value"]).await;
}

/// Secrets `{prefix}0..n` holding `{"password":"{value}N"}`.
async fn create_passwords(
    sm: &aws_sdk_secretsmanager::Client,
    prefix: &str,
    value: &str,
    n: usize,
) {
    for i in 0..n {
        sm.create_secret()
            .name(format!("{prefix}{i}"))
            .secret_string(format!(r#"{{"password":"{value}{i}"}}"#))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_external_secrets_over_ten_aws_secrets_cost_one_batch() {
    use support::moto::{Moto, count};
    let moto = Moto::start();
    let config = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    create_passwords(&sm, "fleet/s", "Fleet-pw-", 10).await;
    let mut scenario = Scenario::start("fleet").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            json!({"metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
        )
        .await;
    for i in 0..100 {
        let spec = json!({"secretStoreRef": {"name": "aws"},
            "data": [{"secretKey": "password", "remoteRef": {"key": format!("fleet/s{}", i % 10), "property": "password"}}]});
        scenario.external_secret(&format!("es-{i:03}"), spec).await;
    }
    moto.start_recording();
    scenario.run_controller(&[
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    for i in 0..100 {
        let expected = format!("Fleet-pw-{}", i % 10);
        scenario
            .secret_where(&format!("es-{i:03}"), |s| text(s, "password") == expected)
            .await;
    }
    let recorded = moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue"),
        1,
        "one de-duplicated batch for the whole fleet"
    );
    if let Some(fake) = scenario.cluster.fake() {
        // One status write per sync: the Secret's own watch event re-runs the
        // reconcile while the ExternalSecret's cached copy may still lag.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status_writes = fake
            .requests()
            .iter()
            .filter(|r| {
                // only the controller writes statuses here
                r.verb == "patch" && r.resource == "externalsecrets/status"
            })
            .count();
        assert_eq!(status_writes, 100, "one status write per ExternalSecret");
        // A Secret not yet in the managed cache is applied, not read first.
        let reads = fake
            .requests()
            .iter()
            .filter(|r| r.agent == "secretsync" && r.verb == "get" && r.resource == "secrets")
            .count();
        assert_eq!(
            reads,
            0,
            "no Secret read before its first write: {:?}",
            fake.requests()
                .iter()
                .filter(|r| r.verb == "get")
                .map(|r| r.agent.clone())
                .collect::<std::collections::BTreeSet<_>>()
        );
    }

    let stores = scenario.api("SecretStore", "secretstores");
    let status = condition(&stores, "aws", "Ready", "Valid", "", WAIT)
        .await
        .expect("the store's credentials are checked");
    assert_eq!(status["conditions"][0]["status"], "True");

    // A Secret deleted by hand comes back from the values already fetched.
    moto.start_recording();
    scenario
        .secrets()
        .delete("es-007", &DeleteParams::default())
        .await
        .unwrap();
    scenario
        .secret_where("es-007", |s| text(s, "password") == "Fleet-pw-7")
        .await;
    let recorded = moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue"),
        0,
        "drift is repaired without calling AWS: {recorded:?}\n{}",
        scenario
            .logs()
            .lines()
            .filter(|l| l.contains("es-007") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The value changes in AWS; a forced refresh brings it in.
    sm.put_secret_value()
        .secret_id("fleet/s3")
        .secret_string(r#"{"password":"Fleet-pw-rotated"}"#)
        .send()
        .await
        .unwrap();
    scenario.force_sync("es-003", "rotate").await;
    scenario
        .secret_where("es-003", |s| text(s, "password") == "Fleet-pw-rotated")
        .await;

    let metrics = scenario.metrics();
    // Names exactly as the README documents them, line by line; ESO's only
    // with --eso-compat.
    assert!(!metrics.contains("externalsecret_"), "{metrics}");
    let lines: Vec<&str> = metrics.lines().collect();
    for exact in [
        "# TYPE secretsync_provider_api_calls counter",
        "# TYPE secretsync_syncs counter",
        "# TYPE secretsync_reconcile_duration_seconds histogram",
        "# TYPE secretsync_secret_writes counter",
        "# TYPE secretsync_managed_secrets gauge",
        "# TYPE secretsync_store_ready gauge",
        "# TYPE secretsync_workload_restarts counter",
        "secretsync_provider_api_calls_total{service=\"secretsmanager\",call=\"BatchGetSecretValue\",outcome=\"success\"} 2",
        "secretsync_managed_secrets 100",
        // 100, and es-007 again after it was deleted; es-003 rotated.
        "secretsync_secret_writes_total{outcome=\"created\"} 101",
        "secretsync_secret_writes_total{outcome=\"updated\"} 1",
    ] {
        assert!(lines.contains(&exact), "no line {exact:?}:\n{metrics}");
    }
    let series = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse::<f64>().ok())
    };
    for name in [
        "secretsync_syncs_total{outcome=\"success\"}",
        "secretsync_reconcile_duration_seconds_count",
        "secretsync_store_ready{kind=\"SecretStore\",namespace=\"NS\",name=\"aws\"}",
        "secretsync_provider_api_calls_total{service=\"secretsmanager\",call=\"ListSecrets\",outcome=\"success\"}",
    ] {
        let name = name.replace("NS", &scenario.cluster.namespace);
        assert!(
            series(&name).is_some_and(|v| v >= 1.0),
            "no sample of {name}:\n{metrics}"
        );
    }
    let health = &scenario.controller.as_ref().unwrap().health;
    assert_eq!(
        ureq::get(&format!("{health}/healthz"))
            .call()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        ureq::get(&format!("{health}/readyz"))
            .call()
            .unwrap()
            .status(),
        200
    );
    let mut values: Vec<String> = (0..10).map(|i| format!("Fleet-pw-{i}")).collect();
    values.push("Fleet-pw-rotated".into());
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    scenario.finish(&values).await;
}

/// ESO's documented IAM policies, as a team moving off ESO has them.
const ESO_SECRETS_MANAGER_POLICY: &[&str] = &[
    "secretsmanager:GetResourcePolicy",
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
];
const ESO_PARAMETER_STORE_POLICY: &[&str] = &["ssm:GetParameter*"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_esos_iam_policy_keeps_syncing() {
    use support::moto::{Moto, count};
    let moto = Moto::start();
    let admin = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&admin);
    create_passwords(&sm, "eso/s", "Eso-pw-", 4).await;
    sm.tag_resource()
        .secret_id("eso/s0")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("owner")
                .value("team-eso")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&admin);
    for i in 0..3 {
        ssm.put_parameter()
            .name(format!("/eso/p{i}"))
            .value(format!("Eso-param-{i}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    }
    // The controller's own role (IRSA) holds ESO's policies and nothing else;
    // an operator's role may write.
    let reader = "arn:aws:iam::123456789012:role/eso-reader";
    let operator = "arn:aws:iam::123456789012:role/operator";
    let mut policy = ESO_SECRETS_MANAGER_POLICY.to_vec();
    policy.extend(ESO_PARAMETER_STORE_POLICY);
    moto.grant(reader, &policy);
    moto.grant(operator, &["secretsmanager:*"]);
    let operator = aws_sdk_secretsmanager::Client::new(
        &support::moto::sdk_config_as(&moto.endpoint, operator).await,
    );
    moto.enforce_iam();

    let mut scenario = Scenario::start("esoiam").await;
    for (name, service) in [("sm", "SecretsManager"), ("ssm", "ParameterStore")] {
        scenario
            .apply(
                "SecretStore",
                "secretstores",
                json!({"metadata": {"name": name},
                    "spec": {"provider": {"aws": {"service": service, "region": "eu-west-1"}}}}),
            )
            .await;
    }
    for i in 0..8 {
        let spec = json!({"secretStoreRef": {"name": "sm"}, "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": format!("eso/s{}", i % 4), "property": "password"}}]});
        scenario.external_secret(&format!("sm-{i}"), spec).await;
        let spec = json!({"secretStoreRef": {"name": "ssm"}, "refreshInterval": "1h",
            "data": [{"secretKey": "value", "remoteRef": {"key": format!("/eso/p{}", i % 3)}}]});
        scenario.external_secret(&format!("ssm-{i}"), spec).await;
    }
    // Tags (metadataPolicy: Fetch): ESO's policy has no ListSecrets, so
    // DescribeSecret, as ESO reads them.
    scenario
        .external_secret(
            "sm-tags",
            json!({"secretStoreRef": {"name": "sm"}, "refreshInterval": "1h",
                "data": [{"secretKey": "owner", "remoteRef": {"key": "eso/s0", "metadataPolicy": "Fetch", "property": "owner"}}]}),
        )
        .await;
    let token = scenario.cluster.kubeconfig.with_file_name("irsa-token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZXNvOnJlYWRlciJ9.c2ln",
    )
    .unwrap();
    moto.start_recording();
    scenario.run_controller(&[
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ROLE_ARN", reader),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
    ]);
    for i in 0..8 {
        let expected = format!("Eso-pw-{}", i % 4);
        scenario
            .secret_where(&format!("sm-{i}"), |s| text(s, "password") == expected)
            .await;
        let expected = format!("Eso-param-{}", i % 3);
        scenario
            .secret_where(&format!("ssm-{i}"), |s| text(s, "value") == expected)
            .await;
    }
    scenario
        .secret_where("sm-tags", |s| text(s, "owner") == "team-eso")
        .await;
    let recorded = moto.stop_recording();
    // Each distinct secret read once, no batch after the store check found
    // it refused; parameters in one GetParameters.
    assert_eq!(
        count(&recorded, "secretsmanager.GetSecretValue"),
        4,
        "{recorded:?}"
    );
    assert!(
        count(&recorded, "secretsmanager.BatchGetSecretValue") <= 1,
        "{recorded:?}"
    );
    assert_eq!(
        count(&recorded, "AmazonSSM.GetParameters"),
        1,
        "{recorded:?}"
    );

    // Each store says what it works around, once, and stays Ready.
    let stores = scenario.api("SecretStore", "secretstores");
    for (store, type_, reason, says) in [
        (
            "sm",
            "ChangeDetection",
            "CannotList",
            "ListSecrets is denied",
        ),
        (
            "sm",
            "BatchReads",
            "BatchDenied",
            "each secret is read with GetSecretValue",
        ),
        (
            "ssm",
            "ChangeDetection",
            "CannotList",
            "DescribeParameters is denied",
        ),
    ] {
        let status = condition(&stores, store, type_, reason, says, WAIT)
            .await
            .unwrap_or_else(|| panic!("store {store}: no {type_} {reason}\n{}", scenario.logs()));
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True", "store {store}: {status}");
    }
    let metrics = scenario.metrics();
    let namespace = scenario.cluster.namespace.clone();
    for (store, reason, value) in [
        ("sm", "BatchDenied", 1),
        ("sm", "CannotList", 1),
        ("ssm", "BatchDenied", 0),
        ("ssm", "CannotList", 1),
    ] {
        let line = format!(
            "secretsync_store_fallback{{kind=\"SecretStore\",namespace=\"{namespace}\",name=\"{store}\",reason=\"{reason}\"}} {value}"
        );
        assert!(
            metrics.lines().any(|l| l == line),
            "no line {line}:\n{metrics}"
        );
    }

    // A rotation reaches the Secret on a forced refresh, read on its own:
    // the refused batch and listing are not tried again.
    operator
        .put_secret_value()
        .secret_id("eso/s1")
        .secret_string(r#"{"password":"Eso-pw-rotated"}"#)
        .send()
        .await
        .unwrap();
    moto.start_recording();
    scenario.force_sync("sm-1", "rotate").await;
    scenario
        .secret_where("sm-1", |s| text(s, "password") == "Eso-pw-rotated")
        .await;
    let recorded = moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue"),
        0,
        "{recorded:?}"
    );
    assert_eq!(
        count(&recorded, "secretsmanager.ListSecrets"),
        0,
        "{recorded:?}"
    );
    assert!(
        count(&recorded, "secretsmanager.GetSecretValue") >= 1,
        "{recorded:?}"
    );

    let mut values: Vec<String> = (0..4).map(|i| format!("Eso-pw-{i}")).collect();
    values.extend((0..3).map(|i| format!("Eso-param-{i}")));
    values.push("Eso-pw-rotated".into());
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    scenario.finish(&values).await;
}

/// ESO's `sessionTagsPolicy`: a ClusterSecretStore's role is assumed with
/// `esoNamespace` (the ExternalSecret's namespace), `esoStoreName` and
/// `esoStoreKind` (plus `customSessionTags` under `Custom`), so IAM policies
/// can tell tenants apart: each namespace gets its own session, and two
/// namespaces never share a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tags_policy_gives_each_namespace_its_own_tagged_session() {
    use support::moto::{Moto, count};
    let moto = Moto::start();
    let admin = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&admin);
    create_passwords(&sm, "tenant/s", "Tenant-pw-", 1).await;

    let mut scenario = Scenario::start("tags").await;
    let first = scenario.cluster.namespace.clone();
    let second = format!("{}-b", first.chars().take(55).collect::<String>());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(scenario.cluster.client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": second}})).unwrap(),
        )
        .await
        .unwrap();
    let store = format!("{first}-tagged");
    Api::<DynamicObject>::all_with(
        scenario.cluster.client.clone(),
        &resource("ClusterSecretStore", "clustersecretstores"),
    )
    .patch(
        &store,
        &PatchParams::apply("scenario").force(),
        &Patch::Apply(
            json!({"apiVersion": "secretsync.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": store},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1",
                "role": "arn:aws:iam::123456789012:role/tenant-reader",
                "sessionTags": [{"key": "replaced", "value": "by-the-policy"}],
                "sessionTagsPolicy": "Custom",
                "customSessionTags": {"team": "platform"}}}}}),
        ),
    )
    .await
    .unwrap();
    let spec = json!({"secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": "tenant/s0", "property": "password"}}]});
    for namespace in [&first, &second] {
        Api::<DynamicObject>::namespaced_with(
            scenario.cluster.client.clone(),
            namespace,
            &resource("ExternalSecret", "externalsecrets"),
        )
        .patch(
            "db",
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(
                json!({"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "db"}, "spec": spec}),
            ),
        )
        .await
        .unwrap();
    }
    moto.start_recording();
    scenario.run_controller(&[
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    for namespace in [&first, &second] {
        let secrets: Api<Secret> = Api::namespaced(scenario.cluster.client.clone(), namespace);
        let synced = eventually(WAIT, || async {
            let secret = secrets.get_opt("db").await.ok()??;
            (text(&secret, "password") == "Tenant-pw-0").then_some(())
        })
        .await;
        assert!(synced.is_some(), "{namespace}: {}", scenario.logs());
    }
    let recorded = moto.stop_recording();
    let assumed: Vec<&String> = recorded
        .iter()
        .filter(|r| r.call == "sts.AssumeRole")
        .map(|r| &r.body)
        .collect();
    // Tags are sent in key order; the store check's session serves no namespace.
    let tags_for = |namespace: &str| {
        format!(
            "Tags.member.1.Key=esoNamespace&Tags.member.1.Value={namespace}&Tags.member.2.Key=esoStoreKind&Tags.member.2.Value=ClusterSecretStore&Tags.member.3.Key=esoStoreName&Tags.member.3.Value={store}&Tags.member.4.Key=team&Tags.member.4.Value=platform"
        )
    };
    for namespace in [first.as_str(), second.as_str()] {
        assert!(
            assumed
                .iter()
                .any(|body| body.contains(&tags_for(namespace))),
            "no session for {namespace}: {assumed:#?}"
        );
    }
    assert!(assumed.iter().all(|body| !body.contains("replaced")));
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue")
            + count(&recorded, "secretsmanager.GetSecretValue"),
        2,
        "one fetch per namespace: their sessions differ"
    );
    let _ = namespaces
        .delete(&second, &DeleteParams::background())
        .await;
    scenario.finish(&["Tenant-pw-0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_instance_takes_over_when_the_leader_stops() {
    let scenario = Scenario::start("leader").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("k", "Leader-value")]),
        )
        .await;
    let namespace = scenario.cluster.namespace.clone();
    let args = |identity: &'static str| -> Vec<String> {
        vec![
            "--lease-namespace".into(),
            namespace.clone(),
            "--identity".into(),
            identity.into(),
            "--lease-duration".into(),
            "3".into(),
        ]
    };
    let first_args = args("first");
    let first = RunningController::start(
        &scenario.cluster.kubeconfig,
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(scenario.cluster.client.clone(), &namespace);
    let holder = || async {
        leases
            .get_opt("secretsync-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    let led = eventually(WAIT, || async {
        (holder().await.as_deref() == Some("first")).then_some(())
    })
    .await;
    assert!(led.is_some(), "the first instance leads");
    let mut second_args = args("second");
    second_args.push("--log-format".into());
    second_args.push("json".into());
    let mut second = RunningController::start(
        &scenario.cluster.kubeconfig,
        &second_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    );
    scenario
        .external_secret(
            "one",
            json!({"secretStoreRef": {"name": "fake"}, "data": data("k", "k")}),
        )
        .await;
    scenario
        .secret_where("one", |s| text(s, "k") == "Leader-value")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        second.log_text().contains("waiting to lead")
            && !second.log_text().contains("\"leading\"")
            && !second.log_text().contains(" leading"),
        "the standby waits:\n{}",
        second.log_text()
    );

    // The leader dies without a word (SIGKILL): the standby takes over within the lease.
    unsafe {
        libc::kill(first.pid() as i32, libc::SIGKILL);
    }
    let started = std::time::Instant::now();
    let taken = eventually(Duration::from_secs(15), || async {
        (holder().await.as_deref() == Some("second")).then_some(())
    })
    .await;
    assert!(
        taken.is_some(),
        "the standby took the lease:\n{}",
        second.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within about the lease duration"
    );
    scenario
        .external_secret(
            "two",
            json!({"secretStoreRef": {"name": "fake"}, "data": data("k", "k")}),
        )
        .await;
    scenario
        .secret_where("two", |s| text(s, "k") == "Leader-value")
        .await;
    assert!(second.terminate().success());
    let lines = second.logs.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object())),
        "--log-format json: one JSON object per line"
    );
    first.assert_never_logged(&["Leader-value"]);
    second.assert_never_logged(&["Leader-value"]);
    scenario.finish(&[]).await;
}

/// A manifest in the style of ESO's docs syncs without a single edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eso_manifests_sync_unchanged_with_eso_compat() {
    use support::moto::{Moto, count};
    let moto = Moto::start();
    let config = support::moto::sdk_config(&moto.endpoint).await;
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("prod/app/db")
        .secret_string(r#"{"database_url":"postgres://app:Eso-db-pw@db:5432/app"}"#)
        .send()
        .await
        .unwrap();

    let mut scenario = Scenario::start("eso").await;
    scenario
        .cluster
        .apply_these_crds(secretsync::api::eso_compat_crds())
        .await;
    let namespace = scenario.cluster.namespace.clone();
    let account: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "external-secrets-sa",
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/app-secrets-reader"}}})).unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
        scenario.cluster.client.clone(),
        &namespace,
    )
    .create(&Default::default(), &account)
    .await
    .unwrap();
    let store_name = format!("aws-secretsmanager-{namespace}");
    let manifests = format!(
        r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {store_name}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      auth:
        jwt:
          serviceAccountRef:
            name: external-secrets-sa
            namespace: {namespace}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: app-db
  namespace: {namespace}
spec:
  refreshInterval: 1h
  secretStoreRef:
    name: {store_name}
    kind: ClusterSecretStore
  target:
    name: app-db
    creationPolicy: Owner
    template:
      engineVersion: v2
      data:
        DATABASE_URL: "{{{{ .database_url }}}}"
  data:
    - secretKey: database_url
      remoteRef:
        key: prod/app/db
        property: database_url
"#
    );
    let file = scenario.cluster.kubeconfig.with_file_name("eso.yaml");
    std::fs::write(&file, manifests).unwrap();
    let applied = std::process::Command::new("kubectl")
        .args(["apply", "-f", file.to_str().unwrap()])
        .env("KUBECONFIG", &scenario.cluster.kubeconfig)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    moto.start_recording();
    let lease_namespace = namespace.clone();
    scenario.controller = Some(RunningController::start(
        &scenario.cluster.kubeconfig,
        &[
            "--eso-compat",
            "--lease-namespace",
            &lease_namespace,
            "--identity",
            "scenario",
        ],
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", "eu-west-1"),
        ],
    ));
    let secret = scenario
        .secret_where("app-db", |s| {
            text(s, "DATABASE_URL") == "postgres://app:Eso-db-pw@db:5432/app"
        })
        .await;
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        owner.api_version, "external-secrets.io/v1",
        "owned by the ESO object"
    );
    let recorded = moto.stop_recording();
    assert_eq!(
        count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        1,
        "IRSA through the ServiceAccount"
    );

    let eso_es: Api<DynamicObject> = Api::namespaced_with(
        scenario.cluster.client.clone(),
        &namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
            "externalsecrets",
        ),
    );
    let status = condition(&eso_es, "app-db", "Ready", "SecretSynced", "", WAIT).await;
    assert!(
        status.is_some(),
        "the ESO object's status says SecretSynced"
    );

    // ESO's metrics, under ESO's names and labels, beside our own.
    let ready_metrics = eventually(WAIT, || async {
        let text = scenario.metrics();
        text.contains("externalsecret_status_condition{condition=\"Ready\"")
            .then_some(text)
    })
    .await
    .expect("ESO's metrics are exported");
    let lines: Vec<&str> = ready_metrics.lines().collect();
    for exact in [
        "# TYPE externalsecret_sync_calls counter".to_string(),
        "# TYPE externalsecret_sync_calls_error gauge".to_string(),
        "# TYPE externalsecret_status_condition gauge".to_string(),
        "# TYPE externalsecret_reconcile_duration gauge".to_string(),
        "# TYPE externalsecret_provider_api_calls_count gauge".to_string(),
        format!("externalsecret_status_condition{{condition=\"Ready\",name=\"app-db\",namespace=\"{namespace}\",status=\"True\"}} 1"),
        format!("externalsecret_status_condition{{condition=\"Ready\",name=\"app-db\",namespace=\"{namespace}\",status=\"False\"}} 0"),
        format!("externalsecret_sync_calls_error{{name=\"app-db\",namespace=\"{namespace}\"}} 0"),
        "externalsecret_provider_api_calls_count{call=\"BatchGetSecretValue\",provider=\"AWS/SecretsManager\",status=\"success\"} 1".to_string(),
        format!("clustersecretstore_status_condition{{condition=\"Ready\",name=\"{store_name}\",namespace=\"\",status=\"True\"}} 1"),
    ] {
        assert!(lines.contains(&exact.as_str()), "no line {exact:?}:\n{ready_metrics}");
    }
    let syncs =
        format!("externalsecret_sync_calls_total{{name=\"app-db\",namespace=\"{namespace}\"}} ");
    assert!(
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&syncs))
            .any(|n| n.parse::<f64>().is_ok_and(|n| n >= 1.0)),
        "{ready_metrics}"
    );
    assert_eq!(ready_metrics.matches("# EOF").count(), 1, "one exposition");

    // ESO's force-sync annotation, as runbooks set it, brings a rotation in
    // at once (the refresh interval is an hour) and stays off the Secret.
    aws_sdk_secretsmanager::Client::new(&config)
        .put_secret_value()
        .secret_id("prod/app/db")
        .secret_string(r#"{"database_url":"postgres://app:Eso-db-rotated@db:5432/app"}"#)
        .send()
        .await
        .unwrap();
    eso_es
        .patch(
            "app-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"external-secrets.io/force-sync": "1765000000"}}})),
        )
        .await
        .unwrap();
    let rotated = scenario
        .secret_where("app-db", |s| {
            text(s, "DATABASE_URL") == "postgres://app:Eso-db-rotated@db:5432/app"
        })
        .await;
    assert!(
        !rotated
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("external-secrets.io/force-sync")
    );
    Api::<DynamicObject>::all_with(
        scenario.cluster.client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("external-secrets.io", "v1", "ClusterSecretStore"),
            "clustersecretstores",
        ),
    )
    .delete(&store_name, &DeleteParams::default())
    .await
    .unwrap();
    scenario.finish(&["Eso-db-pw", "Eso-db-rotated"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_are_unsealed_rotated_merged_and_bound_to_their_place() {
    let mut scenario = Scenario::start("sealed").await;
    let namespace = scenario.cluster.namespace.clone();
    let dir = tempfile::tempdir().unwrap();
    let key_a = dir.path().join("a.key");
    let recipient_a = cli(&["keygen", "-o", key_a.to_str().unwrap()], "")
        .trim()
        .to_string();
    let keys = |files: &[&std::path::Path]| {
        let data: serde_json::Map<String, Value> = files
            .iter()
            .map(|f| {
                (
                    f.file_name().unwrap().to_string_lossy().into_owned(),
                    json!(std::fs::read_to_string(f).unwrap()),
                )
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secretsync-sealing-keys"}, "stringData": data})
    };
    let secrets = scenario.secrets();
    let put_keys = |files: Vec<std::path::PathBuf>| {
        let secrets = secrets.clone();
        let manifest = keys(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
        async move {
            let _ = secrets
                .delete("secretsync-sealing-keys", &DeleteParams::default())
                .await;
            secrets
                .create(
                    &Default::default(),
                    &serde_json::from_value(manifest).unwrap(),
                )
                .await
                .unwrap();
        }
    };
    put_keys(vec![key_a.clone()]).await;
    scenario.run_controller(&[]);

    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {namespace}}}\nstringData: {{user: app, password: Sealed-ctl-1}}\n"
    );
    let sealed_file = dir.path().join("db.sealed.yaml");
    std::fs::write(&sealed_file, cli(&["seal", "-r", &recipient_a], &manifest)).unwrap();
    let kubectl_apply = |file: &std::path::Path| {
        let output = std::process::Command::new("kubectl")
            .args(["apply", "-f", file.to_str().unwrap()])
            .env("KUBECONFIG", &scenario.cluster.kubeconfig)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    kubectl_apply(&sealed_file);
    let secret = scenario
        .secret_where("db", |s| text(s, "password") == "Sealed-ctl-1")
        .await;
    assert_eq!(text(&secret, "user"), "app");
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].kind,
        "SealedSecret"
    );
    let sealed_api = scenario.api("SealedSecret", "sealedsecrets");
    let synced = |reason: &'static str, expected: &'static str| {
        condition(&sealed_api, "db", "Synced", reason, expected, WAIT)
    };
    assert!(synced("Unsealed", "decrypted").await.is_some());

    // Rotation: a second identity joins; the SealedSecret is resealed to it; the
    // first identity leaves. New identities are read without a restart.
    let key_b = dir.path().join("b.key");
    let recipient_b = cli(&["keygen", "-o", key_b.to_str().unwrap()], "")
        .trim()
        .to_string();
    put_keys(vec![key_a.clone(), key_b.clone()]).await;
    cli(
        &[
            "reseal",
            "-f",
            sealed_file.to_str().unwrap(),
            "-i",
            key_a.to_str().unwrap(),
            "-r",
            &recipient_b,
            "--in-place",
        ],
        "",
    );
    kubectl_apply(&sealed_file);
    put_keys(vec![key_b.clone()]).await;
    // One key changes with --merge-into: only that key changes in the Secret.
    let update = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {namespace}}}\nstringData: {{password: Sealed-ctl-2}}\n"
    );
    cli(
        &[
            "seal",
            "-r",
            &recipient_b,
            "--merge-into",
            sealed_file.to_str().unwrap(),
        ],
        &update,
    );
    kubectl_apply(&sealed_file);
    let updated = scenario
        .secret_where("db", |s| text(s, "password") == "Sealed-ctl-2")
        .await;
    assert_eq!(text(&updated, "user"), "app");

    // Moved to another namespace: it does not decrypt there.
    let elsewhere = format!("{namespace}-moved");
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": elsewhere}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(scenario.cluster.client.clone())
        .create(&Default::default(), &ns)
        .await
        .unwrap();
    let moved = std::fs::read_to_string(&sealed_file).unwrap().replace(
        &format!("namespace: {namespace}"),
        &format!("namespace: {elsewhere}"),
    );
    let moved_file = dir.path().join("moved.yaml");
    std::fs::write(&moved_file, moved).unwrap();
    kubectl_apply(&moved_file);
    let moved_api = Api::<DynamicObject>::namespaced_with(
        scenario.cluster.client.clone(),
        &elsewhere,
        &resource("SealedSecret", "sealedsecrets"),
    );
    let refused = format!("sealed for namespace \"{namespace}\"");
    assert!(
        condition(
            &moved_api,
            "db",
            "Synced",
            "DecryptionFailed",
            &refused,
            WAIT
        )
        .await
        .is_some(),
        "the moved copy is refused: {refused}"
    );
    let moved_secret = Api::<Secret>::namespaced(scenario.cluster.client.clone(), &elsewhere)
        .get_opt("db")
        .await
        .unwrap();
    assert!(moved_secret.is_none(), "no Secret where it may not decrypt");

    // The template renders extra keys from the decrypted values.
    sealed_api
        .patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"type": "Opaque", "data": {"dsn": "postgres://{{ .user }}@db"}}}})))
        .await
        .unwrap();
    let templated = scenario
        .secret_where("db", |s| text(s, "dsn") == "postgres://app@db")
        .await;
    assert_eq!(text(&templated, "password"), "Sealed-ctl-2");

    // Only an identity it was not sealed to: said so, the Secret untouched.
    put_keys(vec![key_a.clone()]).await;
    sealed_api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": "0"}}})),
        )
        .await
        .unwrap();
    assert!(
        synced("DecryptionFailed", "no identity can decrypt it")
            .await
            .is_some()
    );
    assert_eq!(
        text(&scenario.secrets().get("db").await.unwrap(), "password"),
        "Sealed-ctl-2"
    );

    // No identity at all: said so; the existing Secret stays as it was.
    let empty = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secretsync-sealing-keys"}, "stringData": {"note": "rotating"}});
    let _ = scenario
        .secrets()
        .delete("secretsync-sealing-keys", &DeleteParams::default())
        .await;
    scenario
        .secrets()
        .create(&Default::default(), &serde_json::from_value(empty).unwrap())
        .await
        .unwrap();
    sealed_api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .unwrap();
    let update = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {namespace}}}\nstringData: {{password: Sealed-ctl-3}}\n"
    );
    cli(
        &[
            "seal",
            "-r",
            &recipient_b,
            "--merge-into",
            sealed_file.to_str().unwrap(),
        ],
        &update,
    );
    kubectl_apply(&sealed_file);
    assert!(
        synced("NoIdentities", "holds no age or SSH identity")
            .await
            .is_some()
    );
    assert_eq!(
        text(&scenario.secrets().get("db").await.unwrap(), "password"),
        "Sealed-ctl-2",
        "left as it was"
    );
    Api::<k8s_openapi::api::core::v1::Namespace>::all(scenario.cluster.client.clone())
        .delete(&elsewhere, &DeleteParams::default())
        .await
        .unwrap();
    scenario
        .finish(&[
            "Sealed-ctl-1",
            "Sealed-ctl-2",
            "Sealed-ctl-3",
            "AGE-SECRET-KEY",
        ])
        .await;
}

/// Status is written from this process's own record: a failed status write is
/// written again, `refreshTime` never goes back, and with `creationPolicy:
/// Owner` the ExternalSecret owns the whole data (a key added by hand goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_survives_failed_writes_and_owned_secrets_hold_only_their_keys() {
    let mut scenario = Scenario::start("status").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("a", "Status-v1")]),
        )
        .await;
    let status_path = format!(
        "/namespaces/{}/externalsecrets/flaky/status",
        scenario.cluster.namespace
    );
    if let Some(faults) = scenario.cluster.faults_for("failed status writes") {
        faults.fail_next(2, Some("PATCH"), &status_path, 500);
    }
    scenario.run_controller(&[]);
    scenario
        .external_secret(
            "flaky",
            json!({"refreshInterval": "1h", "secretStoreRef": {"name": "fake"}, "data": data("a", "a")}),
        )
        .await;
    scenario
        .secret_where("flaky", |s| text(s, "a") == "Status-v1")
        .await;
    let status = scenario.ready_reason("flaky", "SecretSynced").await;
    if !scenario.cluster.is_real() {
        assert!(
            scenario.logs().contains("reconcile failed"),
            "the injected status-write failures happened"
        );
    }
    let first = status["refreshTime"]
        .as_str()
        .expect("refreshTime written after the failed writes")
        .to_string();

    // Forced refreshes: every refreshTime seen is at or after the one before.
    let api = scenario.api("ExternalSecret", "externalsecrets");
    let mut last = jiff::Timestamp::from_str(&first).unwrap();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        scenario
            .force_sync("flaky", &format!("round-{round}"))
            .await;
        for _ in 0..10 {
            let object = api.get("flaky").await.unwrap();
            if let Some(time) = object.data["status"]["refreshTime"].as_str() {
                let time = jiff::Timestamp::from_str(time).unwrap();
                assert!(time >= last, "refreshTime went back: {time} after {last}");
                last = time;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        last > jiff::Timestamp::from_str(&first).unwrap(),
        "forced refreshes move refreshTime on"
    );

    // A key added by hand to an owned Secret is removed; ours stays.
    scenario
        .secrets()
        .patch(
            "flaky",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"added-by-hand": "aGFuZA=="}})),
        )
        .await
        .unwrap();
    let cleaned = scenario
        .secret_where("flaky", |s| {
            s.data
                .as_ref()
                .is_some_and(|d| !d.contains_key("added-by-hand"))
        })
        .await;
    assert_eq!(text(&cleaned, "a"), "Status-v1");
    scenario.finish(&["Status-v1"]).await;
}

/// `--namespaces`: only the namespaces named are watched; an ExternalSecret
/// elsewhere is left alone (no Secret, no status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_namespaces_named_are_watched() {
    let mut scenario = Scenario::start("scoped").await;
    let watched = scenario.cluster.namespace.clone();
    let other = format!("{watched}-x");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(scenario.cluster.client.clone());
    namespaces
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
        )
        .await
        .unwrap();
    let store = fake_store("fake", &[("a", "Scoped-v1")]);
    scenario
        .apply("SecretStore", "secretstores", store.clone())
        .await;
    let es = json!({"metadata": {"name": "app"}, "spec": {"secretStoreRef": {"name": "fake"}, "data": data("a", "a")}});
    let elsewhere = |kind: &str, plural: &str| -> Api<DynamicObject> {
        Api::namespaced_with(
            scenario.cluster.client.clone(),
            &other,
            &resource(kind, plural),
        )
    };
    for (kind, plural, mut manifest) in [
        ("SecretStore", "secretstores", store),
        ("ExternalSecret", "externalsecrets", es.clone()),
    ] {
        manifest["apiVersion"] = json!("secretsync.io/v1");
        manifest["kind"] = json!(kind);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        elsewhere(kind, plural)
            .patch(
                &name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap();
    }
    let lease_namespace = watched.clone();
    scenario.controller = Some(RunningController::start(
        &scenario.cluster.kubeconfig,
        &[
            "--lease-namespace",
            &lease_namespace,
            "--identity",
            "scenario",
            "--namespaces",
            &watched,
        ],
        &[],
    ));
    scenario.external_secret("app", es["spec"].clone()).await;
    scenario
        .secret_where("app", |s| text(s, "a") == "Scoped-v1")
        .await;
    // By now the other namespace's ExternalSecret would have synced too.
    let untouched = elsewhere("ExternalSecret", "externalsecrets")
        .get("app")
        .await
        .unwrap();
    assert!(
        untouched.data["status"].is_null(),
        "{:?}",
        untouched.data["status"]
    );
    let secrets: Api<Secret> = Api::namespaced(scenario.cluster.client.clone(), &other);
    assert!(secrets.get_opt("app").await.unwrap().is_none());
    let _ = namespaces.delete(&other, &DeleteParams::default()).await;
    scenario.finish(&["Scoped-v1"]).await;
}

/// glibc's malloc arenas other than the main one, in a process's memory map:
/// each is a 64 MiB-aligned reservation, its used part read-write and the
/// rest inaccessible.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_arenas_beside_the_main_one(pid: u32) -> usize {
    const HEAP_RESERVATION: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let regions: Vec<(u64, u64, &str)> = maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let permissions = fields.next()?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
                permissions,
            ))
        })
        .collect();
    regions
        .windows(2)
        .filter(|pair| {
            let ((start, end, used), (next_start, next_end, rest)) = (pair[0], pair[1]);
            start % HEAP_RESERVATION == 0
                && used == "rw-p"
                && rest == "---p"
                && next_start == end
                && next_end == start + HEAP_RESERVATION
        })
        .count()
}

/// SIGTERM early in start-up, before a cache is filled (here the first
/// listing of ExternalSecrets is held back for a minute), still stops the
/// controller within its grace: kube-runtime's graceful shutdown alone ends
/// the stream that fills the cache and then waits for that cache forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_the_caches_are_filled_still_stops_the_controller() {
    let mut scenario = Scenario::start("early-stop").await;
    let Some(faults) = scenario.cluster.faults_for("a listing held back") else {
        return scenario.finish(&[]).await;
    };
    faults.delay_next(1, Some("GET"), "/externalsecrets", Duration::from_secs(60));
    scenario.run_controller(&[]);
    let leading = eventually(WAIT, || async {
        scenario.logs().contains(" leading").then_some(())
    })
    .await;
    assert!(
        leading.is_some(),
        "the controller leads:\n{}",
        scenario.logs()
    );
    let mut controller = scenario.controller.take().unwrap();
    let stopping = std::time::Instant::now();
    let status = controller.terminate();
    let took = stopping.elapsed();
    assert!(
        status.success() && took < Duration::from_secs(30),
        "the controller stops on SIGTERM before its caches are filled, not after the \
         listing a minute later ({status:?} after {took:?}):\n{}",
        controller.log_text()
    );
    scenario.finish(&[]).await;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_allocates_from_one_malloc_arena_unless_the_operator_says_otherwise() {
    let mut scenario = Scenario::start("arenas").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("arena", "Arena-value-7")]),
        )
        .await;
    for i in 0..20 {
        let spec = json!({"secretStoreRef": {"name": "fake"}, "data": data("value", "arena")});
        scenario.external_secret(&format!("es-{i:02}"), spec).await;
    }
    // Its default: every thread (runtime workers, render threads) in the main arena.
    scenario.run_controller(&[]);
    for i in 0..20 {
        scenario
            .secret_where(&format!("es-{i:02}"), |s| {
                text(s, "value") == "Arena-value-7"
            })
            .await;
    }
    let mut first = scenario.controller.take().unwrap();
    assert_eq!(
        malloc_arenas_beside_the_main_one(first.pid()),
        0,
        "one arena"
    );
    assert!(first.terminate().success());
    first.assert_never_logged(&["Arena-value-7"]);

    // An operator's MALLOC_ARENA_MAX is glibc's to apply: threads get arenas again.
    scenario.run_controller(&[("MALLOC_ARENA_MAX", "4")]);
    let pid = scenario.controller.as_ref().unwrap().pid();
    let arenas = eventually(WAIT, || async {
        let arenas = malloc_arenas_beside_the_main_one(pid);
        (arenas >= 1).then_some(arenas)
    })
    .await;
    assert!(
        arenas.is_some(),
        "threads in arenas of their own with MALLOC_ARENA_MAX=4"
    );
    // Running, not just started, before it is told to stop.
    let running = eventually(WAIT, || async {
        let log = scenario.controller.as_ref()?.log_text();
        log.contains("serving /healthz").then_some(())
    })
    .await;
    assert!(running.is_some(), "the second controller starts");
    scenario.finish(&["Arena-value-7"]).await;
}

/// Issue 30: throttling costs no more than it must. While every AWS call is
/// throttled the ExternalSecrets say so in a stable sentence (no request id),
/// each unchanged failure rewrites no status and publishes no Event, and
/// change detection does not pause; after recovery an unchanged refresh lists
/// instead of fetching every value; a failure repeated after a recovery
/// counts on its Event's series; a denied listing shows in the store's status
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_rewrites_nothing_and_pauses_nothing_but_a_denied_listing_shows_at_once() {
    use support::fault_proxy::{Fault, FaultProxy, REQUEST_ID_PREFIX};
    use support::moto::{Moto, count};
    const N: usize = 6;
    let moto = Moto::start();
    let config = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    create_passwords(&sm, "thr/s", "Thr-pw-", 3).await;
    // Passes everything until told otherwise.
    let proxy = FaultProxy::start(&moto.endpoint, Fault::Throttling, 0, 1).await;
    let mut scenario = Scenario::start("throttled").await;
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            json!({"metadata": {"name": "aws"},
                "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}},
                    "retrySettings": {"maxRetries": 2, "retryInterval": "10ms"}}}),
        )
        .await;
    let names: Vec<String> = (0..N).map(|i| format!("es-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let spec = json!({"secretStoreRef": {"name": "aws"}, "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": format!("thr/s{}", i % 3), "property": "password"}}]});
        scenario.external_secret(name, spec).await;
    }
    scenario.run_controller(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    for (i, name) in names.iter().enumerate() {
        let expected = format!("Thr-pw-{}", i % 3);
        scenario
            .secret_where(name, |s| text(s, "password") == expected)
            .await;
    }
    let stores = scenario.api("SecretStore", "secretstores");
    condition(&stores, "aws", "Ready", "Valid", "", WAIT)
        .await
        .expect("the store is checked");

    // Every call throttled; every value rotated; every ExternalSecret forced.
    proxy.set(Some(Fault::Throttling), 1, 1);
    for i in 0..3 {
        sm.put_secret_value()
            .secret_id(format!("thr/s{i}"))
            .secret_string(format!(r#"{{"password":"Thr-rotated-{i}"}}"#))
            .send()
            .await
            .unwrap();
    }
    for name in &names {
        scenario.force_sync(name, "throttled").await;
    }
    let throttled = "secretsmanager BatchGetSecretValue failed: ThrottlingException: Rate exceeded";
    for name in &names {
        scenario.message(name, "SecretSyncedError", throttled).await;
    }
    let ess = scenario.api("ExternalSecret", "externalsecrets");
    let ready_of = |object: &DynamicObject| {
        object.data["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .unwrap_or_default()
    };
    let mut transitions = Vec::new();
    for name in &names {
        let ready = ready_of(&ess.get(name).await.unwrap());
        let message = ready["message"].as_str().unwrap_or_default().to_string();
        for noise in [
            REQUEST_ID_PREFIX,
            "aws_request_id",
            "Unhandled",
            "unhandled error",
            "ErrorMetadata",
            "Error {",
            "extras",
        ] {
            assert!(!message.contains(noise), "{noise:?} in {message:?}");
        }
        transitions.push(ready["lastTransitionTime"].clone());
    }
    // Nothing blanked: the Secrets keep the last good values.
    for (i, name) in names.iter().enumerate() {
        let secret = scenario.secrets().get(name).await.unwrap();
        assert_eq!(text(&secret, "password"), format!("Thr-pw-{}", i % 3));
    }

    // The same failure, again and again: nothing written.
    let writes = |scenario: &Scenario| {
        scenario.cluster.fake().map(|fake| {
            let requests = fake.requests();
            let by = |verb: &str, resource: &str| {
                requests
                    .iter()
                    .filter(|r| r.agent == "secretsync" && r.verb == verb && r.resource == resource)
                    .count()
            };
            (
                by("patch", "externalsecrets/status"),
                by("create", "events"),
                by("patch", "events"),
            )
        })
    };
    let syncs = |scenario: &Scenario, outcome: &str| {
        let series = format!("secretsync_syncs_total{{outcome=\"{outcome}\"}} ");
        scenario
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    };
    let before = writes(&scenario);
    let failures = syncs(&scenario, "error");
    let throttled_calls = proxy.failed.load(std::sync::atomic::Ordering::SeqCst);
    let retried = eventually(WAIT, || async {
        (syncs(&scenario, "error") >= failures + 2 * N).then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "every ExternalSecret tried again (backoff); log:\n{}",
        scenario.logs()
    );
    assert!(proxy.failed.load(std::sync::atomic::Ordering::SeqCst) > throttled_calls);
    assert_eq!(
        writes(&scenario),
        before,
        "(status writes, Events created, Events counted): an unchanged failure writes nothing"
    );
    for (name, transition) in names.iter().zip(&transitions) {
        let ready = ready_of(&ess.get(name).await.unwrap());
        assert_eq!(&ready["lastTransitionTime"], transition, "{name}");
        assert_eq!(ready["status"], "False", "{name}");
    }
    // Throttling is not a missing permission: change detection goes on.
    let store = stores.get("aws").await.unwrap();
    let conditions = store.data["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions.iter().all(|c| c["type"] != "ChangeDetection"),
        "{conditions:?}"
    );
    assert!(
        scenario.metrics().contains("reason=\"CannotList\"} 0"),
        "secretsync_store_fallback says nothing paused"
    );

    // Recovery: everything converges.
    proxy.set(None, 0, 1);
    for (i, name) in names.iter().enumerate() {
        let expected = format!("Thr-rotated-{}", i % 3);
        scenario
            .secret_where(name, |s| text(s, "password") == expected)
            .await;
        scenario.ready_reason(name, "SecretSynced").await;
    }

    // An unchanged forced refresh asks what changed instead of fetching.
    let successes = syncs(&scenario, "success");
    moto.start_recording();
    for name in &names {
        scenario.force_sync(name, "unchanged").await;
    }
    let refreshed = eventually(WAIT, || async {
        (syncs(&scenario, "success") >= successes + N).then_some(())
    })
    .await;
    assert!(refreshed.is_some(), "{}", scenario.logs());
    let recorded = moto.stop_recording();
    assert!(
        count(&recorded, "secretsmanager.ListSecrets") >= 1,
        "{recorded:?}"
    );
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue"),
        0,
        "nothing changed, nothing fetched: {recorded:?}"
    );

    // Throttled again after the recovery: the same Warning counts on the
    // Event each ExternalSecret already has.
    let before = writes(&scenario);
    proxy.set(Some(Fault::Throttling), 1, 1);
    for name in &names {
        scenario.force_sync(name, "throttled-again").await;
    }
    for name in &names {
        scenario.message(name, "SecretSyncedError", throttled).await;
    }
    if let Some((_, created, counted)) = before {
        let counted_all = eventually(WAIT, || async {
            let (_, _, now) = writes(&scenario)?;
            (now >= counted + N).then_some(())
        })
        .await;
        assert!(
            counted_all.is_some(),
            "{:?} -> {:?}",
            before,
            writes(&scenario)
        );
        let (_, created_now, _) = writes(&scenario).unwrap();
        assert_eq!(created_now, created, "no new Event for a repeated failure");
    }

    // A denied listing pauses change detection, and the store says so at
    // once. (Values fetched first: a failed answer is fetched again
    // without asking.)
    proxy.set(Some(Fault::Deny("secretsmanager.ListSecrets")), 1, 1);
    for name in &names {
        scenario.force_sync(name, "recovered").await;
    }
    for name in &names {
        scenario.ready_reason(name, "SecretSynced").await;
    }
    scenario.force_sync("es-0", "denied").await;
    let status = condition(
        &stores,
        "aws",
        "ChangeDetection",
        "CannotList",
        "AccessDeniedException",
        WAIT,
    )
    .await
    .unwrap_or_else(|| panic!("the store never said so; log:\n{}", scenario.logs()));
    let says = status.to_string();
    assert!(!says.contains(REQUEST_ID_PREFIX), "{says}");

    let mut values: Vec<String> = (0..3).map(|i| format!("Thr-pw-{i}")).collect();
    values.extend((0..3).map(|i| format!("Thr-rotated-{i}")));
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    scenario.finish(&values).await;
}

/// An EventBridge event as it lands on an SQS queue: a Secrets Manager call
/// through CloudTrail.
fn secrets_manager_event(id: &str, call: &str, secret_id: &str) -> String {
    json!({
        "version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager", "account": "123456789012",
        "time": "2026-12-06T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventSource": "secretsmanager.amazonaws.com",
            "eventName": call, "awsRegion": "us-east-1",
            "requestParameters": {"secretId": secret_id},
            "responseElements": {"arn": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret_id}-AbCdEf")},
            "eventType": "AwsApiCall",
        },
    })
    .to_string()
}

/// Parameter Store's own change event.
fn parameter_event(id: &str, name: &str) -> String {
    json!({
        "version": "0", "id": id, "detail-type": "Parameter Store Change",
        "source": "aws.ssm", "account": "123456789012", "time": "2026-12-06T10:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}")],
        "detail": {"operation": "Update", "name": name, "type": "SecureString", "description": ""},
    })
    .to_string()
}

/// A counter of the controller's /metrics, by its whole series text.
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_change_events_refresh_just_the_readers_of_a_changed_key() {
    use support::moto::{Moto, count};
    let moto = Moto::start();
    let config = support::moto::sdk_config(&moto.endpoint).await;
    let config = config
        .to_builder()
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    let ssm = aws_sdk_ssm::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    create_passwords(&sm, "ev/s", "Ev-pw-", 2).await;
    ssm.put_parameter()
        .name("/ev/param")
        .value("Ev-param-1")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name("secretsync-changes")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let send = |body: String| {
        let sqs = sqs.clone();
        let queue = queue.clone();
        async move {
            sqs.send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };

    let mut scenario = Scenario::start("change-events").await;
    for (name, service) in [("sm", "SecretsManager"), ("ssm", "ParameterStore")] {
        scenario
            .apply(
                "SecretStore",
                "secretstores",
                json!({"metadata": {"name": name},
                    "spec": {"provider": {"aws": {"service": service, "region": "us-east-1"}}}}),
            )
            .await;
    }
    // An hour apart: only an event can bring a change in this test's time.
    for (name, store, key, property) in [
        ("db", "sm", "ev/s0", Some("password")),
        ("other", "sm", "ev/s1", Some("password")),
        ("param", "ssm", "/ev/param", None),
    ] {
        let mut remote = json!({"key": key});
        if let Some(property) = property {
            remote["property"] = json!(property);
        }
        scenario
            .external_secret(
                name,
                json!({"secretStoreRef": {"name": store}, "refreshInterval": "1h",
                    "data": [{"secretKey": "value", "remoteRef": remote}]}),
            )
            .await;
    }
    scenario.run_controller(&[
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("SECRETSYNC_CHANGE_EVENTS_QUEUES", queue.as_str()),
    ]);
    scenario
        .secret_where("db", |s| text(s, "value") == "Ev-pw-0")
        .await;
    let other = scenario
        .secret_where("other", |s| text(s, "value") == "Ev-pw-1")
        .await;
    scenario
        .secret_where("param", |s| text(s, "value") == "Ev-param-1")
        .await;
    let stores = scenario.api("SecretStore", "secretstores");
    condition(&stores, "sm", "ChangeEvents", "Receiving", &queue, WAIT)
        .await
        .expect("the store says where its changes come from");

    // A rotation, then its event: the one reader refreshes, with one fetch
    // and no listing; the other Secret of the store is left alone.
    moto.start_recording();
    sm.put_secret_value()
        .secret_id("ev/s0")
        .secret_string(r#"{"password":"Ev-rotated-0"}"#)
        .send()
        .await
        .unwrap();
    send(secrets_manager_event("event-1", "PutSecretValue", "ev/s0")).await;
    scenario
        .secret_where("db", |s| text(s, "value") == "Ev-rotated-0")
        .await;
    ssm.put_parameter()
        .name("/ev/param")
        .value("Ev-param-2")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    send(parameter_event("event-2", "/ev/param")).await;
    scenario
        .secret_where("param", |s| text(s, "value") == "Ev-param-2")
        .await;
    // Each message is deleted once its Secrets are written.
    let attributes = [
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ];
    let emptied = eventually(WAIT, || {
        let sqs = sqs.clone();
        let queue = queue.clone();
        let attributes = attributes.clone();
        async move {
            let answer = sqs
                .get_queue_attributes()
                .queue_url(queue)
                .set_attribute_names(Some(attributes.to_vec()))
                .send()
                .await
                .ok()?;
            let left: u64 = answer
                .attributes()?
                .values()
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
            (left == 0).then_some(())
        }
    })
    .await;
    assert!(emptied.is_some(), "every message deleted");
    let recorded = moto.stop_recording();
    let from_controller: Vec<_> = recorded
        .into_iter()
        .filter(|r| r.authorization.contains("AKIDSCENARIO"))
        .collect();
    let fetches = count(&from_controller, "secretsmanager.BatchGetSecretValue")
        + count(&from_controller, "secretsmanager.GetSecretValue");
    assert_eq!(fetches, 1, "one fetch for the rotated secret");
    assert_eq!(count(&from_controller, "AmazonSSM.GetParameters"), 1);
    for listing in ["secretsmanager.ListSecrets", "AmazonSSM.DescribeParameters"] {
        assert_eq!(count(&from_controller, listing), 0, "{listing}");
    }
    assert!(count(&from_controller, "AmazonSQS.DeleteMessageBatch") >= 2);
    let unchanged = scenario.secrets().get("other").await.unwrap();
    assert_eq!(
        unchanged.metadata.resource_version, other.metadata.resource_version,
        "a Secret that reads no changed key is not written"
    );

    // A duplicate, a malformed message, an unrelated event and a change of
    // a key nobody reads: counted, dropped, nothing breaks.
    send(secrets_manager_event("event-1", "PutSecretValue", "ev/s0")).await;
    send("{not an event".into()).await;
    send(secrets_manager_event("event-3", "GetSecretValue", "ev/s1")).await;
    send(secrets_manager_event(
        "event-4",
        "PutSecretValue",
        "nobody/reads",
    ))
    .await;
    let counted = eventually(WAIT, || async {
        let metrics = scenario.metrics();
        let all_counted = [
            ("duplicate", 1.0),
            ("malformed", 1.0),
            ("unrelated", 1.0),
            ("unmatched", 1.0),
            ("applied", 2.0),
        ]
        .iter()
        .all(|(outcome, at_least)| {
            counter(
                &metrics,
                &format!("secretsync_change_events_total{{outcome=\"{outcome}\"}}"),
            ) >= *at_least
        });
        all_counted.then_some(())
    })
    .await;
    assert!(counted.is_some(), "{}", scenario.metrics());
    // Still working after them.
    sm.put_secret_value()
        .secret_id("ev/s1")
        .secret_string(r#"{"password":"Ev-rotated-1"}"#)
        .send()
        .await
        .unwrap();
    send(secrets_manager_event("event-5", "UpdateSecret", "ev/s1")).await;
    scenario
        .secret_where("other", |s| text(s, "value") == "Ev-rotated-1")
        .await;

    // A queue that cannot be read: the store says so once, and again when
    // it can be read.
    sqs.delete_queue()
        .queue_url(queue.clone())
        .send()
        .await
        .unwrap();
    let unreadable = condition(
        &stores,
        "sm",
        "ChangeEvents",
        "QueueUnreadable",
        &queue,
        WAIT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "the store says the queue cannot be read\n{}",
            scenario.logs()
        )
    });
    let message = unreadable.to_string();
    assert!(message.contains("interval"), "{message}");
    sqs.create_queue()
        .queue_name("secretsync-changes")
        .send()
        .await
        .unwrap();
    // The retry after a failure is a short poll: readable again at once,
    // not a long poll (20 s) later.
    condition(&stores, "sm", "ChangeEvents", "Receiving", &queue, WAIT)
        .await
        .expect("readable again");

    scenario
        .finish(&[
            "Ev-pw-0",
            "Ev-pw-1",
            "Ev-rotated-0",
            "Ev-rotated-1",
            "Ev-param-1",
            "Ev-param-2",
        ])
        .await;
}

// --- `secretsync status` (issue 32): what the controller wrote, read back ---

/// `secretsync status ARGS` against `kubeconfig`: (exit code, stdout, stderr).
fn status_of(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    status_with(kubeconfig, args, &[])
}

/// `status_of`, with these environment variables (AWS's, for --check-remote).
fn status_with(
    kubeconfig: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .arg("status")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The `-o json` rows, by name.
fn status_rows(json_text: &str) -> std::collections::BTreeMap<String, Value> {
    let value: Value =
        serde_json::from_str(json_text).unwrap_or_else(|e| panic!("{e}: {json_text}"));
    value["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["name"].as_str().unwrap().to_string(), row.clone()))
        .collect()
}

fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp: {value}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_objects_sync_from_what_the_controller_wrote() {
    let moto = support::moto::Moto::start();
    let mut scenario = Scenario::start("status").await;
    scenario
        .cluster
        .apply_these_crds(secretsync::api::eso_compat_crds())
        .await;
    let namespace = scenario.cluster.namespace.clone();
    let kubeconfig = scenario.cluster.kubeconfig.clone();
    // A SealedSecret's identity, in place before the controller starts.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    let recipient = cli(&["keygen", "-o", key.to_str().unwrap()], "");
    let keys = json!({"metadata": {"name": "secretsync-sealing-keys"},
        "stringData": {"a.key": std::fs::read_to_string(&key).unwrap()}});
    scenario
        .secrets()
        .create(&Default::default(), &serde_json::from_value(keys).unwrap())
        .await
        .unwrap();
    scenario.controller = Some(RunningController::start(
        &kubeconfig,
        &[
            "--lease-namespace",
            &namespace,
            "--identity",
            "scenario",
            "--eso-compat",
            "--reload",
            "--reload-debounce",
            "100ms",
        ],
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    ));
    let db = |password: &str| format!(r#"{{"user":"app","password":"{password}"}}"#);
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", &db("St4tus-pw-1"))]),
        )
        .await;
    let reads_db =
        json!([{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}]);
    scenario
        .external_secret(
            "good",
            json!({"refreshInterval": "1h", "secretStoreRef": {"name": "fake"}, "target": {"name": "good-secret"}, "data": reads_db}),
        )
        .await;
    scenario
        .external_secret(
            "broken",
            json!({"secretStoreRef": {"name": "fake"}, "data": [{"secretKey": "x", "remoteRef": {"key": "missing"}}]}),
        )
        .await;
    // ESO's flavor, served with --eso-compat.
    let eso = |kind: &str, plural: &str| {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("external-secrets.io", "v1", kind),
            plural,
        );
        Api::<DynamicObject>::namespaced_with(
            scenario.cluster.client.clone(),
            &namespace,
            &resource,
        )
    };
    let params = PatchParams::apply("scenario").force();
    let mut store = fake_store("eso-fake", &[("token", "St4tus-eso-2")]);
    store["apiVersion"] = json!("external-secrets.io/v1");
    store["kind"] = json!("SecretStore");
    eso("SecretStore", "secretstores")
        .patch("eso-fake", &params, &Patch::Apply(&store))
        .await
        .unwrap();
    let eso_app = json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "eso-app"},
        "spec": {"refreshInterval": "30m", "secretStoreRef": {"name": "eso-fake"}, "data": [{"secretKey": "token", "remoteRef": {"key": "token"}}]}});
    eso("ExternalSecret", "externalsecrets")
        .patch("eso-app", &params, &Patch::Apply(&eso_app))
        .await
        .unwrap();
    // A SealedSecret, a PushSecret to Secrets Manager and a ClusterExternalSecret.
    let sealed = cli(
        &["seal", "-r", recipient.trim()],
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: vault, namespace: {namespace}}}\nstringData: {{key: St4tus-sealed-5}}\n"
        ),
    );
    let sealed: Value = serde_yaml_ng::from_str(&sealed).unwrap();
    scenario
        .api("SealedSecret", "sealedsecrets")
        .patch("vault", &params, &Patch::Apply(&sealed))
        .await
        .unwrap();
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            json!({"metadata": {"name": "aws"}, "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
        )
        .await;
    let source: Secret = serde_json::from_value(
        json!({"metadata": {"name": "push-src"}, "stringData": {"password": "St4tus-push-4"}}),
    )
    .unwrap();
    scenario
        .secrets()
        .patch("push-src", &params, &Patch::Apply(&source))
        .await
        .unwrap();
    let push = json!({"apiVersion": "secretsync.io/v1alpha1", "kind": "PushSecret", "metadata": {"name": "pushed"},
        "spec": {"refreshInterval": "10m", "secretStoreRefs": [{"name": "aws"}], "selector": {"secret": {"name": "push-src"}},
            "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": "status/push-pw"}}}]}});
    let push_api = Api::<DynamicObject>::namespaced_with(
        scenario.cluster.client.clone(),
        &namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("secretsync.io", "v1alpha1", "PushSecret"),
            "pushsecrets",
        ),
    );
    push_api
        .patch("pushed", &params, &Patch::Apply(&push))
        .await
        .unwrap();
    let ces_name = format!("{namespace}-ces");
    let ces_api = Api::<DynamicObject>::all_with(
        scenario.cluster.client.clone(),
        &resource("ClusterExternalSecret", "clusterexternalsecrets"),
    );
    let ces = json!({"apiVersion": "secretsync.io/v1", "kind": "ClusterExternalSecret", "metadata": {"name": ces_name},
        "spec": {"externalSecretName": "from-ces", "namespaces": [namespace],
            "externalSecretSpec": {"secretStoreRef": {"name": "fake"}, "data": reads_db}}});
    ces_api
        .patch(&ces_name, &params, &Patch::Apply(&ces))
        .await
        .unwrap();
    // A workload reading good's Secret, restarted by the controller when it changes.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"secretsync.io/reload": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1",
                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "good-secret", "key": "password"}}}]}]}}}});
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(scenario.cluster.client.clone(), &namespace);
    deployments
        .patch("web", &params, &Patch::Apply(&deployment))
        .await
        .unwrap();

    scenario.ready_reason("good", "SecretSynced").await;
    let broken = scenario.ready_reason("broken", "SecretSyncedError").await;
    let eso_status = condition(
        &eso("ExternalSecret", "externalsecrets"),
        "eso-app",
        "Ready",
        "SecretSynced",
        "",
        WAIT,
    )
    .await
    .unwrap_or_else(|| panic!("eso-app never synced: {}", scenario.logs()));
    // Once the workload's first hash is recorded, a new value restarts it.
    let recorded = eventually(WAIT, || async {
        let web = deployments.get("web").await.ok()?;
        web.metadata
            .annotations?
            .get("secretsync.io/secret-hash")
            .map(|_| ())
    })
    .await;
    assert!(
        recorded.is_some(),
        "web's hash never recorded: {}",
        scenario.logs()
    );
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store("fake", &[("db", &db("St4tus-pw-3"))]),
        )
        .await;
    scenario.force_sync("good", "1").await;
    let restarted_at = eventually(WAIT, || async {
        let web = deployments.get("web").await.ok()?;
        web.metadata
            .annotations?
            .get("secretsync.io/restarted-at")
            .cloned()
    })
    .await
    .unwrap_or_else(|| panic!("web never restarted: {}", scenario.logs()));
    let good = scenario.ready_reason("good", "SecretSynced").await;
    let good_secret = scenario
        .secret_where("good-secret", |s| text(s, "password") == "St4tus-pw-3")
        .await;
    let good = eventually(WAIT, || async {
        let object = scenario
            .api("ExternalSecret", "externalsecrets")
            .get("good")
            .await
            .ok()?;
        (object.data["status"]["syncedResourceVersion"]
            == json!(good_secret.metadata.resource_version))
        .then(|| object.data["status"].clone())
    })
    .await
    .unwrap_or(good);
    let values = [
        "St4tus-pw-1",
        "St4tus-pw-3",
        "St4tus-eso-2",
        "St4tus-push-4",
        "St4tus-sealed-5",
    ];
    let sealed_api = scenario.api("SealedSecret", "sealedsecrets");
    assert!(
        condition(&sealed_api, "vault", "Synced", "Unsealed", "", WAIT)
            .await
            .is_some(),
        "{}",
        scenario.logs()
    );
    let pushed = condition(&push_api, "pushed", "Ready", "Synced", "", WAIT)
        .await
        .unwrap_or_else(|| panic!("pushed never synced: {}", scenario.logs()));
    assert!(
        condition(&ces_api, &ces_name, "Ready", "Provisioned", "", WAIT)
            .await
            .is_some(),
        "{}",
        scenario.logs()
    );
    scenario.ready_reason("from-ces", "SecretSynced").await;

    // The table: one line each, both flavors; one failing, so exit 1.
    let (code, table, err) = status_of(&kubeconfig, &["-n", &namespace]);
    assert_eq!(code, 1, "{table}{err}");
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(table.starts_with("KIND "), "{table}");
    assert_eq!(
        line("good")[..5],
        [
            "ExternalSecret",
            "good",
            "True",
            "SecretSynced",
            "SecretStore/fake"
        ]
    );
    assert_eq!(
        line("broken")[..4],
        ["ExternalSecret", "broken", "False", "SecretSyncedError"]
    );
    assert_eq!(
        line("eso-app")[..5],
        [
            "ExternalSecret.external-secrets.io",
            "eso-app",
            "True",
            "SecretSynced",
            "SecretStore/eso-fake"
        ]
    );
    assert_eq!(
        line("vault")[..4],
        ["SealedSecret", "vault", "True", "Unsealed"]
    );
    assert_eq!(
        line("pushed")[..5],
        ["PushSecret", "pushed", "True", "Synced", "SecretStore/aws"]
    );
    assert_eq!(
        line(&ces_name)[..4],
        [
            "ClusterExternalSecret",
            ces_name.as_str(),
            "True",
            "Provisioned"
        ]
    );

    // -o json: every field, from status as written.
    let (code, json_text, _) = status_of(&kubeconfig, &["-n", &namespace, "-o", "json"]);
    assert_eq!(code, 1);
    let rows = status_rows(&json_text);
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "broken",
            "eso-app",
            "from-ces",
            "good",
            "pushed",
            ces_name.as_str(),
            "vault"
        ],
        "{json_text}"
    );
    let row = &rows["good"];
    // The refresh the status showed before the command, or a later one (the
    // store's change and the force-sync may each have refreshed it, the
    // second after the status was read above): never an older one, and
    // never one the object does not show now.
    let refreshed = timestamp(&good["refreshTime"]);
    let shown = timestamp(&row["lastRefresh"]);
    let now_shown = scenario
        .api("ExternalSecret", "externalsecrets")
        .get("good")
        .await
        .map(|object| timestamp(&object.data["status"]["refreshTime"]))
        .unwrap_or(refreshed);
    assert!(
        shown.duration_since(refreshed).as_secs_f64() > -1.0
            && now_shown.duration_since(shown).as_secs_f64() > -1.0,
        "{row}"
    );
    assert_eq!(
        timestamp(&row["nextDue"]).duration_since(shown).as_secs(),
        3600,
        "{row}"
    );
    assert_eq!(row["refreshInterval"], "1h");
    assert_eq!(row["stale"], false);
    assert!(row["stalenessSeconds"].as_i64().unwrap() >= 0);
    assert_eq!(row["target"], "good-secret");
    assert_eq!(
        row["versions"]["secretResourceVersion"],
        good["syncedResourceVersion"]
    );
    assert_eq!(row["versions"]["contentHash"], good["contentHash"]);
    assert_eq!(
        row["restarted"],
        json!([{"kind": "Deployment", "name": "web", "at": restarted_at}])
    );
    let ready = broken["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(rows["broken"]["message"], ready["message"]);
    assert_eq!(rows["eso-app"]["apiVersion"], "external-secrets.io/v1");
    let push_row = &rows["pushed"];
    assert_eq!(
        push_row["versions"]["pushed SecretStore/aws"],
        "status/push-pw"
    );
    assert_eq!(
        push_row["versions"]["pushedResourceVersion"],
        pushed["syncedResourceVersion"]
    );
    assert_eq!(
        timestamp(&push_row["nextDue"])
            .duration_since(timestamp(&push_row["lastRefresh"]))
            .as_secs(),
        600
    );
    assert_eq!(push_row["target"], "push-src");
    assert_eq!(
        rows[&ces_name]["versions"]["provisionedNamespaces"],
        json!(namespace)
    );
    assert!(rows[&ces_name].get("namespace").is_none());
    assert_eq!(rows["vault"]["target"], "vault");
    assert_eq!(
        timestamp(&rows["eso-app"]["lastRefresh"]).as_second(),
        timestamp(&eso_status["refreshTime"]).as_second()
    );

    // -o wide names the workload restarted; -o yaml holds the same rows.
    let (_, wide, _) = status_of(&kubeconfig, &["-n", &namespace, "-o", "wide"]);
    assert!(
        wide.contains(&format!("Deployment/web@{restarted_at}")),
        "{wide}"
    );
    let (_, yaml, _) = status_of(&kubeconfig, &["-n", &namespace, "-o", "yaml"]);
    let from_yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(from_yaml["items"].as_array().unwrap().len(), 7);

    // --failing keeps only broken; -A adds the namespace column.
    let (code, failing, _) = status_of(&kubeconfig, &["-n", &namespace, "--failing", "-o", "json"]);
    assert_eq!(code, 1);
    assert_eq!(status_rows(&failing).keys().collect::<Vec<_>>(), ["broken"]);
    let (_, all, _) = status_of(&kubeconfig, &["-A"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&namespace) && l.contains(" good ")),
        "{all}"
    );

    // --watch prints the changes: broken deleted, then the listing is all good.
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args([
            "status",
            "-n",
            &namespace,
            "--watch",
            "--watch-interval",
            "100ms",
            "-o",
            "json",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    support::keep_lines(watch.stdout.take().unwrap(), &lines);
    // The first listing is out before anything changes.
    let first = eventually(WAIT, || async {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.trim() == "}")
            .then_some(())
    })
    .await;
    assert!(first.is_some());
    scenario
        .api("ExternalSecret", "externalsecrets")
        .delete("broken", &DeleteParams::background())
        .await
        .unwrap();
    let deleted = eventually(WAIT, || async {
        lines.lock().unwrap().iter().find_map(|l| {
            let row: Value = serde_json::from_str(l).ok()?;
            (row["name"] == "broken" && row["ready"] == "Deleted").then_some(())
        })
    })
    .await;
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(deleted.is_some(), "{:?}", lines.lock().unwrap());

    // All Ready and fresh: exit 0. --stale judges by age instead of 2x the interval.
    let (code, _, err) = status_of(&kubeconfig, &["-n", &namespace]);
    assert_eq!(code, 0, "{err}");
    let (code, stale, _) = status_of(
        &kubeconfig,
        &["-n", &namespace, "--stale", "0s", "-o", "json"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        status_rows(&stale).keys().collect::<Vec<_>>(),
        ["eso-app", "from-ces", "good", "pushed"],
        "{stale}"
    );
    let (code, out, err) = status_of(&kubeconfig, &["-n", &namespace, "--stale", "1h"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("No resources found"), "{err}");

    // As a kubectl plugin: a `kubectl-secretsync` symlink on PATH.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_secretsync"),
        bin.path().join("kubectl-secretsync"),
    )
    .unwrap();
    let kubectl = support::peers::kubectl();
    let path = format!(
        "{}:{}:{}",
        bin.path().display(),
        kubectl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = |args: &[&str]| {
        std::process::Command::new(&kubectl)
            .args(["secretsync"])
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
    };
    let output = plugin(&["status", "-n", &namespace, "-o", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let via_kubectl = status_rows(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(via_kubectl.len(), 6);
    assert_eq!(
        via_kubectl["good"]["lastRefresh"],
        rows["good"]["lastRefresh"]
    );
    let help = plugin(&["status", "--help"]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Usage: kubectl secretsync status"), "{help}");
    assert!(help.contains("--failing"));
    for text in [&table, &json_text, &wide, &yaml] {
        for value in values {
            assert!(!text.contains(value), "status printed a value");
        }
    }
    // --check-remote: moto asked, with the operator's own keys, whether the
    // keys read changed since the last sync; metadata calls only.
    let aws = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&aws);
    let ssm = aws_sdk_ssm::Client::new(&aws);
    for (name, value) in [
        ("status/same", "St4tus-same-6"),
        ("status/changed", "St4tus-old-7"),
        ("status/gone", "St4tus-gone-8"),
    ] {
        sm.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    let parameter = |value: &'static str| {
        ssm.put_parameter()
            .name("/status/param")
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
    };
    parameter("St4tus-param-9").await.unwrap();
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            json!({"metadata": {"name": "ssm"}, "spec": {"provider": {"aws": {"service": "ParameterStore", "region": "eu-west-1"}}}}),
        )
        .await;
    // status keeps whole seconds: the sync comes a second after the writes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let remote_reads = [
        ("remote-same", "aws", "status/same"),
        ("remote-same-too", "aws", "status/same"),
        ("remote-changed", "aws", "status/changed"),
        ("remote-gone", "aws", "status/gone"),
        ("remote-param", "ssm", "/status/param"),
    ];
    for (name, store, key) in remote_reads {
        scenario
            .external_secret(
                name,
                json!({"refreshInterval": "1h", "secretStoreRef": {"name": store},
                    "data": [{"secretKey": "v", "remoteRef": {"key": key}}]}),
            )
            .await;
    }
    for (name, _, _) in remote_reads {
        scenario.ready_reason(name, "SecretSynced").await;
    }
    let operator = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDOPERATOR"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ];
    let remote_rows = |json_text: &str| {
        let rows = status_rows(json_text);
        let mut remote = std::collections::BTreeMap::new();
        for (name, row) in rows {
            remote.insert(name, row["remote"].clone());
        }
        remote
    };
    // Nothing changed yet: every key current, exit 0; the fake store's
    // objects are not checked. One call per distinct key, none reads a value.
    moto.start_recording();
    let (code, unchanged, err) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote", "-o", "json"],
        &operator,
    );
    let calls: Vec<_> = moto
        .stop_recording()
        .into_iter()
        .filter(|r| r.authorization.contains("AKIDOPERATOR"))
        .collect();
    assert_eq!(code, 0, "{unchanged}{err}");
    let remote = remote_rows(&unchanged);
    for (name, _, key) in remote_reads {
        assert_eq!(
            remote[name],
            json!({"state": "current", "current": [key]}),
            "{unchanged}"
        );
    }
    assert_eq!(remote["good"], Value::Null, "{unchanged}");
    assert_eq!(remote["pushed"], Value::Null, "{unchanged}");
    let names: Vec<&str> = calls.iter().map(|r| r.call.as_str()).collect();
    assert_eq!(
        support::moto::count(&calls, "secretsmanager.DescribeSecret"),
        3,
        "{names:?}"
    );
    assert_eq!(
        support::moto::count(&calls, "AmazonSSM.DescribeParameters"),
        1,
        "{names:?}"
    );
    assert_eq!(calls.len(), 4, "only metadata calls: {names:?}");

    // Changed, deleted and overwritten behind the controller's back (its next
    // refresh is an hour away): status alone cannot tell, --check-remote can.
    sm.put_secret_value()
        .secret_id("status/changed")
        .secret_string("St4tus-new-10")
        .send()
        .await
        .unwrap();
    sm.delete_secret()
        .secret_id("status/gone")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    parameter("St4tus-param-11").await.unwrap();
    let (code, _, err) = status_with(&kubeconfig, &["-n", &namespace], &operator);
    assert_eq!(code, 0, "{err}");
    let (code, changed, err) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote", "-o", "json"],
        &operator,
    );
    assert_eq!(code, 1, "{changed}{err}");
    let remote = remote_rows(&changed);
    assert_eq!(
        remote["remote-changed"],
        json!({"state": "changed", "changed": ["status/changed"]}),
        "{changed}"
    );
    assert_eq!(
        remote["remote-gone"],
        json!({"state": "missing", "missing": ["status/gone"]}),
        "{changed}"
    );
    assert_eq!(
        remote["remote-param"],
        json!({"state": "changed", "changed": ["/status/param"]}),
        "{changed}"
    );
    assert_eq!(remote["remote-same"]["state"], "current", "{changed}");
    assert_eq!(remote["remote-same-too"]["state"], "current", "{changed}");
    // The table gains REMOTE; -o wide and yaml carry it too.
    let (code, remote_table, err) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote"],
        &operator,
    );
    assert_eq!(code, 1, "{err}");
    let cell = |name: &str| {
        remote_table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{remote_table}"))
            .to_string()
    };
    assert!(
        remote_table.lines().next().unwrap().ends_with("REMOTE"),
        "{remote_table}"
    );
    assert!(
        cell("remote-changed").ends_with("changed since last sync (key status/changed)"),
        "{remote_table}"
    );
    assert!(
        cell("remote-gone").ends_with("missing (key status/gone)"),
        "{remote_table}"
    );
    assert!(cell("remote-same").ends_with(" current"), "{remote_table}");
    assert!(cell("good").ends_with(" -"), "{remote_table}");
    let (_, remote_wide, _) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote", "-o", "wide"],
        &operator,
    );
    assert!(
        remote_wide.contains("changed since last sync (key /status/param)"),
        "{remote_wide}"
    );
    let (_, remote_yaml, _) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote", "-o", "yaml"],
        &operator,
    );
    let from_yaml: Value = serde_yaml_ng::from_str(&remote_yaml).unwrap();
    assert!(
        from_yaml["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "remote-gone" && r["remote"]["state"] == "missing"),
        "{remote_yaml}"
    );
    // AWS out of reach: unreadable, said with the error, exit 1.
    let unreachable = format!("http://127.0.0.1:{}", support::free_port());
    let mut offline = operator;
    offline[0] = ("AWS_ENDPOINT_URL", unreachable.as_str());
    let (code, no_aws, err) = status_with(
        &kubeconfig,
        &["-n", &namespace, "--check-remote", "-o", "json"],
        &offline,
    );
    assert_eq!(code, 1, "{no_aws}{err}");
    let remote = remote_rows(&no_aws);
    assert_eq!(remote["remote-same"]["state"], "unreadable", "{no_aws}");
    assert!(
        remote["remote-same"]["error"]
            .as_str()
            .unwrap()
            .starts_with("status/same: Secrets Manager DescribeSecret: "),
        "{no_aws}"
    );
    let remote_values = [
        "St4tus-same-6",
        "St4tus-old-7",
        "St4tus-gone-8",
        "St4tus-param-9",
        "St4tus-new-10",
        "St4tus-param-11",
    ];
    for text in [
        &unchanged,
        &changed,
        &remote_table,
        &remote_wide,
        &remote_yaml,
        &no_aws,
    ] {
        for value in values.iter().chain(&remote_values) {
            assert!(!text.contains(value), "status printed a value");
        }
    }
    let values: Vec<&str> = values.iter().chain(&remote_values).copied().collect();
    let _ = ces_api.delete(&ces_name, &DeleteParams::background()).await;
    scenario.finish(&values).await;
}

// --- `secretsync diff --live` (issue 32) ---

/// `diff --live` compares the manifests with the cluster's Secret, the store
/// read from the cluster (it is not in the manifests), and names the cluster's
/// Deployment that opts in to restarts; no value is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_live_compares_the_manifests_with_the_cluster() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::PostParams;
    let scenario = Scenario::start("diff-live").await;
    let ns = scenario.cluster.namespace.clone();
    scenario
        .apply(
            "SecretStore",
            "secretstores",
            fake_store(
                "fake",
                &[
                    ("kept", "Kept-v4lue-1"),
                    ("rotated", "New-v4lue-2"),
                    ("added", "Added-v4lue-3"),
                ],
            ),
        )
        .await;
    let old: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-secret", "namespace": ns, "labels": {"secretsync.io/managed": "true"}},
        "stringData": {"kept": "Kept-v4lue-1", "rotated": "Old-v4lue-4", "dropped": "Gone-v4lue-5"}
    }))
    .unwrap();
    scenario
        .secrets()
        .create(&PostParams::default(), &old)
        .await
        .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": ns, "annotations": {"secretsync.io/reload": "true"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web",
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "kept"}}}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(scenario.cluster.client.clone(), &ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("es.yaml");
    let refs: Vec<Value> = ["kept", "rotated", "added"]
        .iter()
        .map(|k| json!({"secretKey": k, "remoteRef": {"key": k}}))
        .collect();
    let es = json!({"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"secretStoreRef": {"name": "fake"}, "target": {"name": "app-secret"}, "data": refs}});
    std::fs::write(&manifest, es.to_string()).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args([
                "diff",
                "--live",
                "-o",
                "json",
                "-f",
                manifest.to_str().unwrap(),
            ])
            .env("KUBECONFIG", &scenario.cluster.kubeconfig)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    };
    let sha12 = |v: &str| {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(v.as_bytes())[..6])
    };

    let output = run();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let target = &report["targets"][0];
    assert_eq!(target["action"], "update", "{out}");
    assert_eq!(
        target["added"],
        json!([{"key": "added", "sha256": sha12("Added-v4lue-3")}])
    );
    assert_eq!(
        target["removed"],
        json!([{"key": "dropped", "sha256": sha12("Gone-v4lue-5")}])
    );
    assert_eq!(
        target["changed"],
        json!([{"key": "rotated", "from": sha12("Old-v4lue-4"), "to": sha12("New-v4lue-2")}])
    );
    assert_eq!(target["restarts"], json!([format!("Deployment {ns}/web")]));
    for value in [
        "Kept-v4lue-1",
        "New-v4lue-2",
        "Added-v4lue-3",
        "Old-v4lue-4",
        "Gone-v4lue-5",
    ] {
        assert!(
            !out.contains(value) && !err.contains(value),
            "{value} printed"
        );
    }

    // Once the cluster holds what the manifests make, nothing changes: exit 0.
    let now: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-secret", "namespace": ns, "labels": {"secretsync.io/managed": "true"}},
        "stringData": {"kept": "Kept-v4lue-1", "rotated": "New-v4lue-2", "added": "Added-v4lue-3"}
    }))
    .unwrap();
    scenario
        .secrets()
        .delete("app-secret", &DeleteParams::default())
        .await
        .unwrap();
    scenario
        .secrets()
        .create(&PostParams::default(), &now)
        .await
        .unwrap();
    let output = run();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    scenario.finish(&[]).await;
}

// --- `secretsync doctor` (issue 32) ---

/// `doctor` names what is wrong, check by check: CRDs missing, no leader,
/// a stale Lease, a denied verb, the CSI driver without the STS audience;
/// exit 0 once all is well; with `--check-remote`, STS (moto) and the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_what_is_wrong_with_an_installation() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::storage::v1::CSIDriver;
    use kube::api::PostParams;
    use support::moto::Moto;
    let cluster = Cluster::start("doctor").await;
    let Some(fake) = cluster.fake() else {
        eprintln!("skipping: doctor's scenario denies verbs, which only the fake server can");
        cluster.finish().await;
        return;
    };
    let ns = cluster.namespace.clone();
    let doctor = |extra: &[&str], env: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["doctor", "-n", &ns])
            .args(extra)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };

    // Nothing installed: no CRDs, no leader.
    let (code, out) = doctor(&[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("PROBLEM crds: CRD externalsecrets.secretsync.io is not installed"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "PROBLEM leader: no Lease {ns}/secretsync-controller"
        )),
        "{out}"
    );
    assert!(
        out.contains("ok      rbac: system:serviceaccount:"),
        "{out}"
    );
    assert!(
        out.contains("skipped csi: the Secrets Store CSI driver is not installed"),
        "{out}"
    );

    // Installed and leading, the CSI driver asking for STS tokens: all well.
    cluster.apply_crds().await;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &ns);
    let now = jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "secretsync-controller"},
        "spec": {"holderIdentity": "secretsync-abc", "leaseDurationSeconds": 15, "renewTime": now.to_string()}}))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let drivers: Api<CSIDriver> = Api::all(cluster.client.clone());
    let driver = |audiences: &[&str]| -> CSIDriver {
        let requests: Vec<Value> = audiences.iter().map(|a| json!({"audience": a})).collect();
        serde_json::from_value(json!({"metadata": {"name": "secrets-store.csi.k8s.io"},
            "spec": {"tokenRequests": requests}}))
        .unwrap()
    };
    drivers
        .create(&PostParams::default(), &driver(&["sts.amazonaws.com"]))
        .await
        .unwrap();
    let (code, out) = doctor(&[], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok      crds: all"), "{out}");
    assert!(
        out.contains("ok      leader: secretsync-abc leads"),
        "{out}"
    );
    assert!(out.contains("ok      csi:"), "{out}");
    let (code, json_out) = doctor(&["--output", "json"], &[]);
    assert_eq!(code, Some(0), "{json_out}");
    let report: Value =
        serde_json::from_str(&json_out).unwrap_or_else(|e| panic!("{e}: {json_out}"));
    assert_eq!(report["problems"], 0, "{json_out}");
    let outcomes: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("crds", "ok"),
            ("rbac", "ok"),
            ("leader", "ok"),
            ("csi", "ok"),
            ("stores", "skipped")
        ],
        "{json_out}"
    );

    // A stale Lease, a denied verb, a driver without the audience.
    let stale = (now - jiff::SignedDuration::from_secs(600)).to_string();
    leases
        .patch(
            "secretsync-controller",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": stale}})),
        )
        .await
        .unwrap();
    fake.faults().deny_access("", "secrets", "patch");
    fake.faults()
        .deny_access("secretsync.io", "externalsecrets/status", "patch");
    drivers
        .delete("secrets-store.csi.k8s.io", &DeleteParams::default())
        .await
        .unwrap();
    drivers
        .create(&PostParams::default(), &driver(&["vault"]))
        .await
        .unwrap();
    let (code, out) = doctor(&[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("was last renewed 6"), "{out}");
    assert!(
        out.contains("may not patch secrets (core) cluster-wide"),
        "{out}"
    );
    assert!(
        out.contains("may not patch externalsecrets/status (secretsync.io) cluster-wide"),
        "{out}"
    );
    assert!(
        out.contains("requests no token for audience sts.amazonaws.com (it has: vault)"),
        "{out}"
    );
    // -o json: the same findings, one document, the same exit code.
    let (code, json_out) = doctor(&["-o", "json"], &[]);
    assert_eq!(code, Some(1), "{json_out}");
    let report: Value =
        serde_json::from_str(&json_out).unwrap_or_else(|e| panic!("{e}: {json_out}"));
    let findings = report["findings"].as_array().unwrap();
    for finding in findings {
        let keys: Vec<&String> = finding.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["message", "name", "outcome"], "{finding}");
        assert!(
            ["ok", "fail", "skipped"].contains(&finding["outcome"].as_str().unwrap()),
            "{finding}"
        );
    }
    let has = |name: &str, outcome: &str, text: &str| {
        findings.iter().any(|f| {
            f["name"] == name
                && f["outcome"] == outcome
                && f["message"].as_str().unwrap().contains(text)
        })
    };
    assert!(has("crds", "ok", "CRDs installed"), "{json_out}");
    assert!(has("leader", "fail", "was last renewed 6"), "{json_out}");
    assert!(
        has("rbac", "fail", "may not patch secrets (core) cluster-wide"),
        "{json_out}"
    );
    assert!(has("csi", "fail", "(it has: vault)"), "{json_out}");
    assert!(
        has("stores", "skipped", "AWS not called (add --check-remote)"),
        "{json_out}"
    );
    let failed = findings.iter().filter(|f| f["outcome"] == "fail").count();
    assert_eq!(report["problems"], json!(failed), "{json_out}");
    assert_eq!(
        failed,
        out.lines().filter(|l| l.starts_with("PROBLEM ")).count(),
        "{out}"
    );

    // --check-remote: an AWS store's region answers STS, the clock agrees.
    let moto = Moto::start();
    let stores = Api::<DynamicObject>::namespaced_with(
        cluster.client.clone(),
        &ns,
        &resource("SecretStore", "secretstores"),
    );
    let store: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "secretsync.io/v1", "kind": "SecretStore",
        "metadata": {"name": "aws", "namespace": ns},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
    )
    .unwrap();
    stores.create(&PostParams::default(), &store).await.unwrap();
    let aws = support::moto::sdk_config(&moto.endpoint).await;
    aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name("doctor/db")
        .secret_string("Doct0r-pw-1")
        .send()
        .await
        .unwrap();
    let external_secrets = Api::<DynamicObject>::namespaced_with(
        cluster.client.clone(),
        &ns,
        &resource("ExternalSecret", "externalsecrets"),
    );
    let es = |name: &str, key: &str| -> DynamicObject {
        serde_json::from_value(
            json!({"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"secretStoreRef": {"name": "aws"},
                "data": [{"secretKey": "password", "remoteRef": {"key": key}}]}}),
        )
        .unwrap()
    };
    external_secrets
        .create(&PostParams::default(), &es("db", "doctor/db"))
        .await
        .unwrap();
    let endpoint = moto.endpoint.clone();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDDOCTOR"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        // The last step's unreachable STS fails at once.
        ("AWS_MAX_ATTEMPTS", "1"),
    ];
    let (_, out) = doctor(&["--check-remote"], &env);
    assert!(
        out.contains(&format!(
            "ok      stores: SecretStore {ns}/aws: STS in eu-west-1 answers, you are arn:aws:"
        )),
        "{out}"
    );
    assert!(out.contains("ok      clock: within"), "{out}");
    assert!(
        out.contains(&format!(
            "ok      stores: SecretStore {ns}/aws: read \"doctor/db\" as you (value not shown)"
        )),
        "{out}"
    );
    assert!(!out.contains("Doct0r-pw-1"));
    let (_, json_out) = doctor(&["--check-remote", "-o", "json"], &env);
    let report: Value =
        serde_json::from_str(&json_out).unwrap_or_else(|e| panic!("{e}: {json_out}"));
    let remote: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "stores" || f["name"] == "clock")
        .map(|f| (f["name"].as_str().unwrap(), f["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        remote,
        [("stores", "ok"), ("stores", "ok"), ("clock", "ok")],
        "{json_out}"
    );
    assert!(!json_out.contains("Doct0r-pw-1"));
    // A key that is not there: the read fails, and says so.
    external_secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    external_secrets
        .create(&PostParams::default(), &es("gone", "doctor/missing"))
        .await
        .unwrap();
    let (code, out) = doctor(&["--check-remote"], &env);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "PROBLEM stores: SecretStore {ns}/aws: reading \"doctor/missing\" as you failed:"
        )),
        "{out}"
    );
    // No AWS answer: said, not hidden.
    drop(moto);
    let (code, out) = doctor(&["--check-remote"], &env);
    assert_eq!(code, Some(1));
    assert!(out.contains("PROBLEM stores: SecretStore"), "{out}");
    cluster.finish().await;
}
