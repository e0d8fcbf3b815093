//! ClusterExternalSecret scenarios: the real controller binary against the
//! test bed (fake API server, or a real cluster with
//! `SECRETSYNC_E2E_KUBECONFIG`). Namespaces are cluster-wide, so each
//! scenario names its own after its scenario namespace and removes them.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, eventually, gone};
use support::controller::RunningController;

const WAIT: Duration = Duration::from_secs(30);
/// Far longer than any scenario: whatever happens in one happens because a
/// change was watched, not because this recheck came round.
const REFRESH_TIME: &str = "1h";

const PASSWORD: &str = "Ces-shared-pw-7731";

struct Bed {
    cluster: Cluster,
    controller: RunningController,
    group: &'static str,
    /// Namespaces this scenario made (besides the cluster's own).
    made: Vec<String>,
}

impl Bed {
    async fn start(scenario: &str, eso: bool) -> Bed {
        let cluster = Cluster::start(scenario).await;
        cluster.apply_crds().await;
        let mut args = vec!["--lease-namespace".to_string(), cluster.namespace.clone()];
        let group = if eso {
            cluster
                .apply_these_crds(secretsync::api::eso_compat_crds())
                .await;
            args.push("--eso-compat".into());
            "external-secrets.io"
        } else {
            "secretsync.io"
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let controller = RunningController::start(&cluster.kubeconfig, &args, &[]);
        Bed {
            cluster,
            controller,
            group,
            made: Vec::new(),
        }
    }

    fn resource(&self, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(self.group, "v1", kind), plural)
    }

    fn cluster_external_secrets(&self) -> Api<DynamicObject> {
        Api::all_with(
            self.cluster.client.clone(),
            &self.resource("ClusterExternalSecret", "clusterexternalsecrets"),
        )
    }

    fn external_secrets(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.cluster.client.clone(),
            namespace,
            &self.resource("ExternalSecret", "externalsecrets"),
        )
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.cluster.client.clone())
    }

    /// A namespace name of this scenario: `<scenario namespace>-<suffix>`.
    fn namespace_name(&self, suffix: &str) -> String {
        let base: String = self.cluster.namespace.chars().take(50).collect();
        format!("{}-{suffix}", base.trim_end_matches('-'))
    }

    async fn create_namespace(&mut self, suffix: &str, labels: Value) -> String {
        let name = self.namespace_name(suffix);
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        self.namespaces()
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        self.made.push(name.clone());
        name
    }

    async fn label(&self, namespace: &str, labels: Value) {
        self.namespaces()
            .patch(
                namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": labels}})),
            )
            .await
            .unwrap();
    }

    async fn apply(&self, api: &Api<DynamicObject>, kind: &str, mut manifest: Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        manifest["apiVersion"] = json!(format!("{}/v1", self.group));
        manifest["kind"] = json!(kind);
        api.patch(
            &name,
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// A ClusterSecretStore serving the shared password.
    async fn store(&self, name: &str) {
        let api = Api::all_with(
            self.cluster.client.clone(),
            &self.resource("ClusterSecretStore", "clustersecretstores"),
        );
        self.apply(
            &api,
            "ClusterSecretStore",
            json!({"metadata": {"name": name}, "spec": {"provider": {"fake": {"data": [
                {"key": "shared/db", "value": PASSWORD},
            ]}}}}),
        )
        .await;
    }

    /// The status once `check` holds for it.
    async fn status_where(&self, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        let api = self.cluster_external_secrets();
        let found = eventually(WAIT, || {
            let api = api.clone();
            let check = &check;
            async move {
                let object = api.get(name).await.ok()?;
                let status = object.data["status"].clone();
                check(&status).then_some(status)
            }
        })
        .await;
        match found {
            Some(status) => status,
            None => {
                let now = api.get(name).await.map(|o| o.data);
                panic!(
                    "ClusterExternalSecret {name} never got there: {now:#?}\ncontroller log:\n{}",
                    self.controller.log_text()
                )
            }
        }
    }

    /// The Secret `name` of `namespace`, once it holds the shared password.
    async fn secret_synced(&self, namespace: &str, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.cluster.client.clone(), namespace);
        let found = eventually(WAIT, || {
            let api = api.clone();
            async move {
                let secret = api.get_opt(name).await.ok()??;
                let value = secret.data.as_ref()?.get("password")?;
                (value.0 == PASSWORD.as_bytes()).then_some(secret)
            }
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "Secret {namespace}/{name} never synced; controller log:\n{}",
                self.controller.log_text()
            )
        })
    }

    async fn finish(mut self) {
        for namespace in &self.made {
            let _ = self
                .namespaces()
                .delete(namespace, &DeleteParams::background())
                .await;
        }
        let status = self.controller.terminate();
        assert!(status.success(), "{}", self.controller.log_text());
        self.controller.assert_never_logged(&[PASSWORD]);
        self.cluster.finish().await;
    }
}

fn provisioned(status: &Value) -> Vec<String> {
    status["provisionedNamespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

fn failed(status: &Value) -> BTreeMap<String, String> {
    status["failedNamespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["namespace"].as_str().unwrap_or_default().to_string(),
                f["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn ready(status: &Value) -> &str {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
}

fn external_secret_spec(store: &str) -> Value {
    json!({
        "refreshInterval": "1h",
        "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
        "target": {"name": "db-credentials"},
        "data": [{"secretKey": "password", "remoteRef": {"key": "shared/db"}}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_external_secret_follows_the_namespaces_it_picks() {
    let mut bed = Bed::start("ces", false).await;
    let store = format!("{}-store", bed.cluster.namespace);
    bed.store(&store).await;
    let picked = bed.create_namespace("a", json!({"ces-team": "web"})).await;
    let later = bed.create_namespace("b", json!({})).await;
    let taken = bed.create_namespace("c", json!({})).await;

    // In `taken`, someone's own ExternalSecret of the same name.
    let name = format!("{}-db", bed.cluster.namespace);
    let hand_made = json!({"metadata": {"name": name}, "spec": {
        "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
        "target": {"name": "hand-made"},
        "data": [{"secretKey": "password", "remoteRef": {"key": "shared/db"}}],
    }});
    bed.apply(&bed.external_secrets(&taken), "ExternalSecret", hand_made)
        .await;

    let ces = bed.cluster_external_secrets();
    let manifest = |names: Vec<String>| {
        json!({"metadata": {"name": name}, "spec": {
            "refreshTime": REFRESH_TIME,
            "namespaceSelectors": [{"matchLabels": {"ces-team": "web"}}],
            "namespaces": names,
            "externalSecretMetadata": {"labels": {"stamped": "yes"}, "annotations": {"owner": "platform"}},
            "externalSecretSpec": external_secret_spec(&store),
        }})
    };
    bed.apply(&ces, "ClusterExternalSecret", manifest(vec![]))
        .await;

    // The picked namespace gets the ExternalSecret and its Secret.
    bed.secret_synced(&picked, "db-credentials").await;
    let status = bed
        .status_where(&name, |s| provisioned(s).len() == 1 && ready(s) == "True")
        .await;
    assert_eq!(provisioned(&status), std::slice::from_ref(&picked));
    assert!(failed(&status).is_empty(), "{status}");
    assert_eq!(status["externalSecretName"], json!(name));
    let child = bed.external_secrets(&picked).get(&name).await.unwrap();
    assert_eq!(child.metadata.labels.as_ref().unwrap()["stamped"], "yes");
    assert_eq!(
        child.metadata.annotations.as_ref().unwrap()["owner"],
        "platform"
    );
    let owner = &child.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ClusterExternalSecret", name.as_str(), Some(true))
    );

    // A namespace labelled to match, and one created matching, are served
    // long before refreshTime comes round (and nothing failed, so no retry
    // comes either): namespaces are watched.
    bed.label(&later, json!({"ces-team": "web"})).await;
    let created = bed.create_namespace("d", json!({"ces-team": "web"})).await;
    bed.secret_synced(&later, "db-credentials").await;
    bed.secret_synced(&created, "db-credentials").await;

    // Relabelled back and forth five times within a second, ending outside
    // the selector: its ExternalSecret goes, and nothing is left behind.
    for _ in 0..5 {
        bed.label(&later, json!({"ces-team": null})).await;
        bed.label(&later, json!({"ces-team": "web"})).await;
    }
    bed.label(&later, json!({"ces-team": null})).await;
    let mut expected = vec![picked.clone(), created.clone()];
    expected.sort();
    bed.status_where(&name, |s| provisioned(s) == expected)
        .await;
    assert!(
        gone(&bed.external_secrets(&later), &name, WAIT).await,
        "{}",
        bed.controller.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        bed.external_secrets(&later)
            .get_opt(&name)
            .await
            .unwrap()
            .is_none(),
        "a late write left an orphan"
    );

    // Picking the namespace that holds someone else's ExternalSecret of the
    // same name: that namespace fails, and theirs stays theirs.
    bed.apply(&ces, "ClusterExternalSecret", manifest(vec![taken.clone()]))
        .await;
    let status = bed
        .status_where(&name, |s| failed(s).len() == 1 && ready(s) == "False")
        .await;
    assert_eq!(provisioned(&status), expected);
    let reason = &failed(&status)[&taken];
    assert!(
        reason.contains("already exists") && reason.contains("not owned"),
        "{reason}"
    );
    let theirs = bed.external_secrets(&taken).get(&name).await.unwrap();
    assert!(theirs.metadata.owner_references.is_none());
    assert_eq!(theirs.data["spec"]["target"]["name"], "hand-made");

    // Deleted: every ExternalSecret it wrote goes (and with them their
    // Secrets); the hand-made one stays.
    ces.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        gone(&ces, &name, WAIT).await,
        "{}",
        bed.controller.log_text()
    );
    for namespace in [&picked, &created] {
        assert!(
            gone(&bed.external_secrets(namespace), &name, WAIT).await,
            "{namespace}"
        );
        let secrets: Api<Secret> = Api::namespaced(bed.cluster.client.clone(), namespace);
        assert!(gone(&secrets, "db-credentials", WAIT).await, "{namespace}");
    }
    assert!(
        bed.external_secrets(&taken)
            .get_opt(&name)
            .await
            .unwrap()
            .is_some(),
        "the hand-made ExternalSecret stays"
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cluster_external_secret_says_which_field_and_changes_nothing() {
    let mut bed = Bed::start("ces-invalid", false).await;
    let store = format!("{}-store", bed.cluster.namespace);
    bed.store(&store).await;
    let namespace = bed.create_namespace("a", json!({"ces-bad": "yes"})).await;
    let name = format!("{}-db", bed.cluster.namespace);
    let ces = bed.cluster_external_secrets();
    bed.apply(
        &ces,
        "ClusterExternalSecret",
        json!({"metadata": {"name": name}, "spec": {
            "namespaceSelectors": [{"matchLabels": {"ces-bad": "yes"}}],
            "externalSecretSpec": external_secret_spec(&store),
        }}),
    )
    .await;
    bed.secret_synced(&namespace, "db-credentials").await;

    // Broken: a duplicated secretKey. Named by its path; the ExternalSecret
    // already written stays as it was.
    let mut spec = external_secret_spec(&store);
    spec["data"] = json!([
        {"secretKey": "password", "remoteRef": {"key": "shared/db"}},
        {"secretKey": "password", "remoteRef": {"key": "shared/db"}},
    ]);
    bed.apply(
        &ces,
        "ClusterExternalSecret",
        json!({"metadata": {"name": name}, "spec": {
            "namespaceSelectors": [{"matchLabels": {"ces-bad": "yes"}}],
            "externalSecretSpec": spec,
        }}),
    )
    .await;
    let status = bed.status_where(&name, |s| ready(s) == "False").await;
    let condition = &status["conditions"][0];
    assert_eq!(condition["reason"], "InvalidSpec");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("spec.externalSecretSpec.data[1].secretKey"),
        "{condition}"
    );
    let child = bed.external_secrets(&namespace).get(&name).await.unwrap();
    assert_eq!(child.data["spec"]["data"].as_array().unwrap().len(), 1);
    bed.finish().await;
}

/// ESO's own manifests: a ClusterExternalSecret left by ESO (its finalizer
/// on the object, ESO's per-namespace finalizers on namespaces) is served
/// as before, with ESO's metrics; deleted while one of its namespaces is
/// being deleted, nothing is left stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esos_cluster_external_secrets_keep_working_and_clean_up_after_eso() {
    let mut bed = Bed::start("ces-eso", true).await;
    let store = format!("{}-store", bed.cluster.namespace);
    bed.store(&store).await;
    let name = format!("{}-db", bed.cluster.namespace);
    let eso_namespace_finalizer = format!("externalsecrets.external-secrets.io/ces-{name}");
    let staying = bed.create_namespace("a", json!({"ces-eso": "yes"})).await;
    let going = bed.create_namespace("b", json!({"ces-eso": "yes"})).await;
    // What ESO leaves on the namespaces it provisioned.
    for namespace in [&staying, &going] {
        bed.namespaces()
            .patch(
                namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": [eso_namespace_finalizer]}})),
            )
            .await
            .unwrap();
    }
    let ces = bed.cluster_external_secrets();
    bed.apply(
        &ces,
        "ClusterExternalSecret",
        json!({"metadata": {
            "name": name,
            "finalizers": ["externalsecrets.external-secrets.io/clusterexternalsecret-cleanup"],
            "annotations": {"external-secrets.io/force-sync": "1"},
        },
        "spec": {
            "refreshTime": REFRESH_TIME,
            "namespaceSelector": {"matchLabels": {"ces-eso": "yes"}},
            "externalSecretSpec": external_secret_spec(&store),
        }}),
    )
    .await;
    bed.secret_synced(&staying, "db-credentials").await;
    bed.secret_synced(&going, "db-credentials").await;
    let status = bed
        .status_where(&name, |s| provisioned(s).len() == 2 && ready(s) == "True")
        .await;
    assert!(failed(&status).is_empty(), "{status}");
    let child = bed.external_secrets(&staying).get(&name).await.unwrap();
    assert_eq!(
        child.types.as_ref().unwrap().api_version,
        "external-secrets.io/v1"
    );
    assert_eq!(
        child.metadata.annotations.as_ref().unwrap()["external-secrets.io/force-sync"],
        "1",
        "the force-sync annotation is passed on, as ESO does"
    );

    // ESO's dashboards read this series.
    let line = format!(
        r#"clusterexternalsecret_status_condition{{condition="Ready",name="{name}",namespace="",status="True"}} 1"#
    );
    let scraped = eventually(WAIT, || async {
        let text = ureq::get(&format!("{}/metrics", bed.controller.health))
            .call()
            .ok()?
            .into_body()
            .read_to_string()
            .ok()?;
        text.lines().any(|l| l == line).then_some(())
    })
    .await;
    assert!(scraped.is_some(), "no {line}");

    // One namespace is being deleted (held by ESO's finalizer) as the
    // ClusterExternalSecret is deleted: both go, nothing stays stuck.
    bed.namespaces()
        .delete(&going, &DeleteParams::background())
        .await
        .unwrap();
    ces.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        gone(&ces, &name, WAIT).await,
        "{}",
        bed.controller.log_text()
    );
    assert!(
        gone(&bed.namespaces(), &going, WAIT).await,
        "a namespace stayed terminating; controller log:\n{}",
        bed.controller.log_text()
    );
    assert!(gone(&bed.external_secrets(&staying), &name, WAIT).await);
    let kept = bed.namespaces().get(&staying).await.unwrap();
    assert!(
        kept.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .all(|f| *f != eso_namespace_finalizer),
        "ESO's finalizer is taken off the namespaces it provisioned"
    );
    bed.finish().await;
}

/// A new `externalSecretName`: the ExternalSecrets under the old name go,
/// and ones under the new name take their place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_external_secret_name_replaces_the_old_ones() {
    let mut bed = Bed::start("ces-rename", false).await;
    let store = format!("{}-store", bed.cluster.namespace);
    bed.store(&store).await;
    let namespace = bed
        .create_namespace("a", json!({"ces-rename": "yes"}))
        .await;
    let name = format!("{}-db", bed.cluster.namespace);
    let ces = bed.cluster_external_secrets();
    let manifest = |child: &str| {
        json!({"metadata": {"name": name}, "spec": {
            "refreshTime": REFRESH_TIME,
            "externalSecretName": child,
            "namespaceSelectors": [{"matchLabels": {"ces-rename": "yes"}}],
            "externalSecretSpec": external_secret_spec(&store),
        }})
    };
    bed.apply(&ces, "ClusterExternalSecret", manifest("old-name"))
        .await;
    bed.secret_synced(&namespace, "db-credentials").await;
    assert!(
        bed.external_secrets(&namespace)
            .get_opt("old-name")
            .await
            .unwrap()
            .is_some()
    );
    bed.apply(&ces, "ClusterExternalSecret", manifest("new-name"))
        .await;
    bed.status_where(&name, |s| s["externalSecretName"] == "new-name")
        .await;
    assert!(
        gone(&bed.external_secrets(&namespace), "old-name", WAIT).await,
        "{}",
        bed.controller.log_text()
    );
    assert!(
        bed.external_secrets(&namespace)
            .get_opt("new-name")
            .await
            .unwrap()
            .is_some()
    );
    bed.secret_synced(&namespace, "db-credentials").await;
    bed.finish().await;
}
