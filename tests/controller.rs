//! `secretsync controller` scenarios: the real binary against the test bed
//! (fake API server by default, or a real cluster), AWS served by moto. Every
//! scenario ends by scanning the controller's logs for the values it used.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, eventually};
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

    /// The ExternalSecret's Ready condition once it has `reason`.
    async fn ready_reason(&self, name: &str, reason: &str) -> Value {
        let api = self.api("ExternalSecret", "externalsecrets");
        let found = eventually(WAIT, || {
            let api = api.clone();
            async move {
                let es = api.get(name).await.ok()?;
                let ready = es.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (ready["reason"] == reason).then_some(es.data["status"].clone())
            }
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "ExternalSecret {name} never became {reason}; controller log:\n{}",
                self.logs()
            )
        })
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

    // The Secret goes with its ExternalSecret (creationPolicy Owner).
    scenario
        .api("ExternalSecret", "externalsecrets")
        .delete("app", &DeleteParams::background())
        .await
        .unwrap();
    let gone = eventually(WAIT, || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("app-secret")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert!(gone.is_some());
    scenario
        .finish(&["Sc3nario-pw-1", "tok-Sc3nario-2", DB_JSON])
        .await;
}
