//! Workload restarts (`secretsync controller --reload`): the real binary against
//! the test bed (fake API server, moto for AWS). A restart is seen as a new
//! `secretsync.io/secret-hash` on the pod template (or `spec.restartAt` on a
//! Rollout) and a `metadata.generation` one higher; "no restart" is asserted
//! after a condition that settles it (the controller's own decision in its
//! log, or a later change restarting another workload first in line), never
//! after a sleep. Every scenario ends by scanning the logs for the values used.

use crate::support;

use support::controller::cli;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, condition, eventually};
use support::controller::RunningController;

const WAIT: Duration = Duration::from_secs(60);
const HASH: &str = "secretsync.io/secret-hash";
const RESTARTED_AT: &str = "secretsync.io/restarted-at";

fn kind_resource(kind: &str) -> ApiResource {
    let (group, version, plural) = match kind {
        "Deployment" => ("apps", "v1", "deployments"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        "Rollout" => ("argoproj.io", "v1alpha1", "rollouts"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        "Job" => ("batch", "v1", "jobs"),
        "SecretProviderClass" => ("secrets-store.csi.x-k8s.io", "v1", "secretproviderclasses"),
        "SecretProviderClassPodStatus" => (
            "secrets-store.csi.x-k8s.io",
            "v1",
            "secretproviderclasspodstatuses",
        ),
        "ExternalSecret" => ("secretsync.io", "v1", "externalsecrets"),
        "SecretStore" => ("secretsync.io", "v1", "secretstores"),
        "SealedSecret" => ("secretsync.io", "v1", "sealedsecrets"),
        other => panic!("no resource for {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

struct Bed {
    cluster: Cluster,
    controller: Option<RunningController>,
    /// Every controller this scenario ran, for the final log scan.
    stopped: Vec<RunningController>,
}

impl Bed {
    async fn start(name: &str) -> Bed {
        let cluster = Cluster::start(name).await;
        cluster.apply_crds().await;
        Bed {
            cluster,
            controller: None,
            stopped: Vec::new(),
        }
    }

    fn ns(&self) -> &str {
        &self.cluster.namespace
    }

    /// The controller with `--reload` and `args` (debounce and rate default
    /// to 1s and 20/s here).
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let mut all: Vec<String> = [
            "--lease-namespace",
            self.ns(),
            "--identity",
            "scenario",
            "--reload",
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !args.contains(&"--reload-debounce") {
            all.extend(["--reload-debounce".into(), "1s".into()]);
        }
        if !args.contains(&"--reload-rate") {
            all.extend(["--reload-rate".into(), "20".into()]);
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.controller = Some(RunningController::start(
            &self.cluster.kubeconfig,
            &all,
            env,
        ));
    }

    /// SIGTERM, as Kubernetes stops a pod; the controller must exit cleanly.
    fn stop(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            let status = controller.terminate();
            assert!(
                status.success(),
                "the controller exits cleanly: {status:?}\n{}",
                controller.log_text()
            );
            self.stopped.push(controller);
        }
    }

    fn logs(&self) -> String {
        self.controller
            .as_ref()
            .map(|c| c.log_text())
            .unwrap_or_default()
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.cluster.client.clone(), self.ns(), &kind_resource(kind))
    }

    async fn apply(&self, kind: &str, manifest: Value) {
        let resource = kind_resource(kind);
        let mut manifest = manifest;
        manifest["apiVersion"] = json!(resource.api_version);
        manifest["kind"] = json!(kind);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        self.api(kind)
            .patch(
                &name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// Creates or replaces a Secret's data (and annotations), as a user or
    /// another controller would.
    async fn secret(&self, name: &str, data: &[(&str, &str)], annotations: Value) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let manifest = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "annotations": annotations}, "stringData": data});
        Api::<Secret>::namespaced(self.cluster.client.clone(), self.ns())
            .patch(
                name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply Secret {name}: {e}"));
    }

    async fn config_map(&self, name: &str, data: &[(&str, &str)], annotations: Value) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "annotations": annotations}, "data": data});
        Api::<ConfigMap>::namespaced(self.cluster.client.clone(), self.ns())
            .patch(
                name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply ConfigMap {name}: {e}"));
    }

    /// A workload of `kind` with these annotations and pod spec; `template`
    /// annotations go on the pod template.
    async fn workload(
        &self,
        kind: &str,
        name: &str,
        annotations: Value,
        template: Value,
        pod: Value,
    ) {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": template}, "spec": pod},
        });
        if kind != "DaemonSet" {
            spec["replicas"] = json!(1);
        }
        if kind == "StatefulSet" {
            spec["serviceName"] = json!(name);
        }
        self.apply(
            kind,
            json!({"metadata": {"name": name, "annotations": annotations}, "spec": spec}),
        )
        .await;
    }

    async fn deployment(&self, name: &str, annotations: Value, pod: Value) {
        self.workload("Deployment", name, annotations, json!({}), pod)
            .await;
    }

    async fn get(&self, kind: &str, name: &str) -> DynamicObject {
        self.api(kind).get(name).await.unwrap()
    }

    /// (hash on the pod template, hash on the metadata, generation).
    async fn state(&self, kind: &str, name: &str) -> (Option<String>, Option<String>, i64) {
        let object = self.get(kind, name).await;
        let template = object.data["spec"]["template"]["metadata"]["annotations"][HASH]
            .as_str()
            .map(str::to_string);
        let recorded = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH))
            .cloned();
        (template, recorded, object.metadata.generation.unwrap_or(0))
    }

    /// Waits until the controller recorded a hash on the workload's metadata;
    /// returns its generation then.
    async fn recorded(&self, kind: &str, name: &str) -> i64 {
        let found = eventually(WAIT, || async {
            let (_, recorded, generation) = self.state(kind, name).await;
            recorded.map(|_| generation)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "{kind} {name} never got its hash recorded; log:\n{}",
                self.logs()
            )
        })
    }

    /// Waits until the pod template's hash is set and differs from `before`;
    /// returns it.
    async fn restarted(&self, kind: &str, name: &str, before: Option<&str>) -> String {
        let found = eventually(WAIT, || async {
            let (template, _, _) = self.state(kind, name).await;
            template.filter(|t| Some(t.as_str()) != before)
        })
        .await;
        found.unwrap_or_else(|| panic!("{kind} {name} was never restarted; log:\n{}", self.logs()))
    }

    /// `secretsync.io/restarted-at` on the workload.
    async fn restarted_at(&self, kind: &str, name: &str) -> jiff::Timestamp {
        let object = self.get(kind, name).await;
        let text = object
            .metadata
            .annotations
            .and_then(|a| a.get(RESTARTED_AT).cloned())
            .unwrap_or_else(|| panic!("{kind} {name} has no {RESTARTED_AT}"));
        text.parse()
            .unwrap_or_else(|e| panic!("{RESTARTED_AT} {text:?}: {e}"))
    }

    /// The notes of the `Restarted` events about the workload.
    async fn restart_notes(&self, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), self.ns());
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some("Restarted")
            })
            .filter_map(|e| e.note)
            .collect()
    }

    /// Waits for a `Restarted` event note about `name` containing `expected`.
    async fn restart_note(&self, name: &str, expected: &str) -> String {
        let found = eventually(WAIT, || async {
            self.restart_notes(name)
                .await
                .into_iter()
                .find(|n| n.contains(expected))
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no Restarted event about {name} saying {expected:?}: {:?}",
                futures::executor::block_on(self.restart_notes(name))
            )
        })
    }

    /// The running controller's log entries (it logs JSON here).
    fn entries(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }

    /// Waits for a log entry with this message and these field values.
    async fn logged(&self, message: &str, fields: &[(&str, &str)]) -> Value {
        let found = eventually(WAIT, || async {
            self.entries().into_iter().find(|entry| {
                let f = &entry["fields"];
                f["message"] == message && fields.iter().all(|(k, v)| f[*k] == *v)
            })
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "never logged {message:?} with {fields:?}; log:\n{}",
                self.logs()
            )
        })
    }

    /// The fields of a log entry of the last controller stopped.
    fn stopped_entry(&self, message: &str) -> Value {
        let controller = self.stopped.last().expect("a stopped controller");
        controller
            .log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|entry| entry["fields"]["message"] == message)
            .map(|entry| entry["fields"].clone())
            .unwrap_or_else(|| panic!("never logged {message:?}"))
    }

    fn object(&self, kind: &str, name: &str) -> String {
        format!("{kind} {}/{name}", self.ns())
    }

    /// The workloads (names) the controller said a change of this object restarts.
    async fn restarts_on(&self, kind: &str, name: &str) -> BTreeSet<String> {
        let object = self.object(kind, name);
        let entry = self
            .logged("reload: data changed", &[("object", &object)])
            .await;
        entry["fields"]["workloads"]
            .as_str()
            .unwrap_or_default()
            .split(", ")
            .filter_map(|w| w.rsplit_once('/').map(|(_, name)| name.to_string()))
            .collect()
    }

    async fn metric(&self, kind: &str) -> u64 {
        let url = format!(
            "{}/metrics",
            self.controller.as_ref().expect("a controller").health
        );
        let text = tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default()
        })
        .await
        .unwrap();
        let series = format!("secretsync_workload_restarts_total{{kind=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn finish(mut self, values: &[&str]) {
        self.stop();
        for controller in &self.stopped {
            controller.assert_never_logged(values);
            let encoded: Vec<String> = values
                .iter()
                .map(|v| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v))
                .collect();
            let encoded: Vec<&str> = encoded.iter().map(String::as_str).collect();
            controller.assert_never_logged(&encoded);
        }
        self.cluster.finish().await;
    }
}

fn reload() -> Value {
    json!({"secretsync.io/reload": "true"})
}

fn container(extra: Value) -> Value {
    let mut container = json!({"name": "app", "image": "registry.example/app:1"});
    if let (Some(c), Some(e)) = (container.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    container
}

fn env_from(secrets: &[&str], config_maps: &[&str]) -> Value {
    let mut sources: Vec<Value> = secrets
        .iter()
        .map(|s| json!({"secretRef": {"name": s}}))
        .collect();
    sources.extend(
        config_maps
            .iter()
            .map(|c| json!({"configMapRef": {"name": c}})),
    );
    json!({"containers": [container(json!({"envFrom": sources}))]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_pod_template_uses_an_object_restarts_it_once() {
    let mut bed = Bed::start("reload-uses").await;
    for name in ["env-s", "from-s", "vol-s", "proj-s", "init-s", "pull-s"] {
        bed.secret(name, &[("k", &format!("{name}-1"))], json!({}))
            .await;
    }
    for name in ["env-c", "from-c", "vol-c", "proj-c"] {
        bed.config_map(name, &[("k", &format!("{name}-1"))], json!({}))
            .await;
    }
    let env = json!({"containers": [container(json!({"env": [
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "env-c", "key": "k"}}}]}))]});
    bed.workload("Deployment", "env", reload(), json!({}), env)
        .await;
    bed.workload(
        "Deployment",
        "from",
        reload(),
        json!({}),
        env_from(&["from-s"], &["from-c"]),
    )
    .await;
    let volumes = json!({"containers": [container(json!({"volumeMounts": [
        {"name": "s", "mountPath": "/s"}, {"name": "c", "mountPath": "/c"}]}))], "volumes": [
        {"name": "s", "secret": {"secretName": "vol-s"}}, {"name": "c", "configMap": {"name": "vol-c"}}]});
    bed.workload("StatefulSet", "vol", reload(), json!({}), volumes)
        .await;
    let projected = json!({"containers": [container(json!({"volumeMounts": [{"name": "p", "mountPath": "/p"}]}))],
        "volumes": [{"name": "p", "projected": {"sources": [
        {"secret": {"name": "proj-s"}}, {"configMap": {"name": "proj-c"}}, {"serviceAccountToken": {"path": "t"}}]}}]});
    bed.workload("DaemonSet", "proj", reload(), json!({}), projected)
        .await;
    let init = json!({"initContainers": [{"name": "init", "image": "busybox", "env": [
        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "init-s", "key": "k"}}}]}],
        "containers": [container(json!({}))]});
    bed.workload("Deployment", "init", reload(), json!({}), init)
        .await;
    // Secrets nobody uses: their metadata is kept, their data never read.
    for i in 0..20 {
        bed.secret(
            &format!("unrelated-{i}"),
            &[("k", "Unrelated-value")],
            json!({}),
        )
        .await;
    }
    let pull =
        json!({"imagePullSecrets": [{"name": "pull-s"}], "containers": [container(json!({}))]});
    bed.workload("Deployment", "pull", reload(), json!({}), pull)
        .await;
    bed.run(&["--reload-debounce", "3s"], &[]);

    let cases = [
        ("Deployment", "env", vec!["Secret env-s", "ConfigMap env-c"]),
        (
            "Deployment",
            "from",
            vec!["Secret from-s", "ConfigMap from-c"],
        ),
        (
            "StatefulSet",
            "vol",
            vec!["Secret vol-s", "ConfigMap vol-c"],
        ),
        (
            "DaemonSet",
            "proj",
            vec!["Secret proj-s", "ConfigMap proj-c"],
        ),
        ("Deployment", "init", vec!["Secret init-s"]),
    ];
    let mut generations = BTreeMap::new();
    for (kind, name, _) in &cases {
        generations.insert(*name, bed.recorded(kind, name).await);
    }
    let pull_generation = bed.recorded("Deployment", "pull").await;
    for (kind, name, _) in &cases {
        let (template, _, _) = bed.state(kind, name).await;
        assert_eq!(
            template, None,
            "first sight restarts nothing: {kind} {name}"
        );
    }

    // The pull secret first: were it counted, its restart would come first.
    bed.secret("pull-s", &[("k", "pull-s-2")], json!({})).await;
    for (_, _, objects) in &cases {
        for object in objects {
            let (kind, name) = object.split_once(' ').unwrap();
            let value = format!("{name}-2");
            match kind {
                "Secret" => bed.secret(name, &[("k", &value)], json!({})).await,
                _ => bed.config_map(name, &[("k", &value)], json!({})).await,
            }
        }
    }
    for (kind, name, objects) in &cases {
        bed.restarted(kind, name, None).await;
        let note = bed.restart_note(name, "changed").await;
        let listed = objects.join(", ");
        assert!(
            note.starts_with(&format!("{listed} changed")),
            "{kind} {name}: {note}"
        );
        let (_, _, generation) = bed.state(kind, name).await;
        assert_eq!(
            generation,
            generations[name] + 1,
            "{kind} {name}: one rollout"
        );
    }
    let (template, _, generation) = bed.state("Deployment", "pull").await;
    assert_eq!(
        (template, generation),
        (None, pull_generation),
        "imagePullSecrets are not inputs"
    );
    assert_eq!(bed.metric("Deployment").await, 3);
    assert_eq!(bed.metric("StatefulSet").await, 1);
    assert_eq!(bed.metric("DaemonSet").await, 1);
    bed.stop();
    let summary = bed.stopped_entry("reload: stopped");
    assert_eq!(
        (
            &summary["workloads"],
            &summary["objects"],
            &summary["digests"]
        ),
        (&json!(6), &json!(30), &json!(9)),
        "metadata of all 30 objects, a digest of the 9 counted ones only"
    );
    let values: Vec<String> = ["env-s", "from-s", "vol-s", "proj-s", "init-s", "pull-s"]
        .iter()
        .flat_map(|n| [format!("{n}-1"), format!("{n}-2")])
        .chain(["Unrelated-value".to_string()])
        .collect();
    bed.finish(&values.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_lists_restart_on_the_named_objects_only() {
    let mut bed = Bed::start("reload-named").await;
    bed.secret("used", &[("k", "Named-used-1")], json!({}))
        .await;
    bed.secret("a", &[("k", "Named-a-1")], json!({})).await;
    bed.config_map("c", &[("k", "Named-c-1")], json!({})).await;
    let named =
        json!({"secretsync.io/reload-secrets": "a, b", "secretsync.io/reload-configmaps": "c"});
    bed.deployment("named", named, env_from(&["used"], &[]))
        .await;
    bed.run(&[], &[]);
    let generation = bed.recorded("Deployment", "named").await;

    // Used by the template but not named: not counted. Named but not used: counted.
    bed.secret("used", &[("k", "Named-used-2")], json!({}))
        .await;
    bed.secret("a", &[("k", "Named-a-2")], json!({})).await;
    assert_eq!(
        bed.restarts_on("Secret", "a").await,
        BTreeSet::from(["named".to_string()])
    );
    let first = bed.restarted("Deployment", "named", None).await;
    let note = bed.restart_note("named", "changed").await;
    assert!(note.starts_with("Secret a changed:"), "{note}");

    // A named Secret that appears is counted from then on; its arrival only
    // records the new hash.
    bed.secret("b", &[("k", "Named-b-1")], json!({})).await;
    let recorded = eventually(WAIT, || async {
        let (template, recorded, _) = bed.state("Deployment", "named").await;
        recorded.filter(|r| Some(r) != template.as_ref())
    })
    .await;
    assert!(
        recorded.is_some(),
        "b's arrival is recorded; log:\n{}",
        bed.logs()
    );
    bed.config_map("c", &[("k", "Named-c-2")], json!({})).await;
    let second = bed.restarted("Deployment", "named", Some(&first)).await;
    bed.restart_note("named", "ConfigMap c changed").await;
    bed.secret("b", &[("k", "Named-b-2")], json!({})).await;
    bed.restarted("Deployment", "named", Some(&second)).await;
    bed.restart_note("named", "Secret b changed").await;
    let (_, _, now) = bed.state("Deployment", "named").await;
    assert_eq!(
        now,
        generation + 3,
        "a, c, b: three rollouts, nothing for used or b's arrival"
    );
    bed.finish(&[
        "Named-used-1",
        "Named-used-2",
        "Named-a-1",
        "Named-a-2",
        "Named-b-1",
        "Named-b-2",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_annotations_keep_their_meaning() {
    let mut bed = Bed::start("reload-reloader").await;
    for name in ["s1", "rotated-1", "p1"] {
        bed.secret(name, &[("k", &format!("Rl-{name}-1"))], json!({}))
            .await;
    }
    bed.secret(
        "m1",
        &[("k", "Rl-m1-1")],
        json!({"reloader.stakater.com/match": "true"}),
    )
    .await;
    for name in ["c1", "c2"] {
        bed.config_map(name, &[("k", "1")], json!({})).await;
    }
    let both = env_from(&["s1"], &["c1"]);
    let workloads = [
        (
            "auto",
            json!({"reloader.stakater.com/auto": "true"}),
            json!({}),
            both.clone(),
        ),
        (
            "secret-auto",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            json!({}),
            both.clone(),
        ),
        (
            "cm-auto",
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            json!({}),
            both.clone(),
        ),
        (
            "explicit",
            json!({"secret.reloader.stakater.com/reload": "rotated-.*", "configmap.reloader.stakater.com/reload": "c2"}),
            json!({}),
            both.clone(),
        ),
        (
            "search",
            json!({"reloader.stakater.com/search": "true"}),
            json!({}),
            env_from(&["s1", "m1"], &[]),
        ),
        (
            "template-auto",
            json!({}),
            json!({"reloader.stakater.com/auto": "true"}),
            env_from(&["s1"], &[]),
        ),
        (
            "excluded",
            json!({"reloader.stakater.com/auto": "true", "secrets.exclude.reloader.stakater.com/reload": "s1"}),
            json!({}),
            both.clone(),
        ),
        (
            "paused",
            json!({"reloader.stakater.com/auto": "true", "deployment.reloader.stakater.com/pause-period": "4s"}),
            json!({}),
            env_from(&["p1"], &[]),
        ),
    ];
    for (name, annotations, template, pod) in &workloads {
        bed.workload(
            "Deployment",
            name,
            annotations.clone(),
            template.clone(),
            pod.clone(),
        )
        .await;
    }
    bed.run(&[], &[]);
    for (name, ..) in &workloads {
        bed.recorded("Deployment", name).await;
    }
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    bed.secret("s1", &[("k", "Rl-s1-2")], json!({})).await;
    assert_eq!(
        bed.restarts_on("Secret", "s1").await,
        set(&["auto", "secret-auto", "template-auto"])
    );
    bed.config_map("c1", &[("k", "2")], json!({})).await;
    assert_eq!(
        bed.restarts_on("ConfigMap", "c1").await,
        set(&["auto", "cm-auto", "excluded"])
    );
    bed.secret("rotated-1", &[("k", "Rl-rotated-1-2")], json!({}))
        .await;
    assert_eq!(
        bed.restarts_on("Secret", "rotated-1").await,
        set(&["explicit"])
    );
    bed.config_map("c2", &[("k", "2")], json!({})).await;
    assert_eq!(bed.restarts_on("ConfigMap", "c2").await, set(&["explicit"]));
    bed.secret(
        "m1",
        &[("k", "Rl-m1-2")],
        json!({"reloader.stakater.com/match": "true"}),
    )
    .await;
    assert_eq!(bed.restarts_on("Secret", "m1").await, set(&["search"]));
    for (name, ..) in &workloads[..7] {
        bed.restarted("Deployment", name, None).await;
    }

    // pause-period: after a restart, the next waits that long; changes
    // meanwhile make one.
    bed.secret("p1", &[("k", "Rl-p1-2")], json!({})).await;
    let first = bed.restarted("Deployment", "paused", None).await;
    let (_, _, generation) = bed.state("Deployment", "paused").await;
    let first_at = bed.restarted_at("Deployment", "paused").await;
    bed.secret("p1", &[("k", "Rl-p1-3")], json!({})).await;
    bed.secret("p1", &[("k", "Rl-p1-4")], json!({})).await;
    bed.restarted("Deployment", "paused", Some(&first)).await;
    let second_at = bed.restarted_at("Deployment", "paused").await;
    let (_, _, after) = bed.state("Deployment", "paused").await;
    assert_eq!(
        after,
        generation + 1,
        "two changes in the pause: one rollout"
    );
    let gap = second_at.duration_since(first_at);
    assert!(
        gap >= jiff::SignedDuration::from_millis(3999),
        "the second restart waited the pause-period: {gap:?}"
    );
    let two = eventually(WAIT, || async {
        (bed.restart_notes("paused").await.len() == 2).then_some(())
    })
    .await;
    assert!(two.is_some(), "one Event per restart");
    bed.finish(&[
        "Rl-s1-1", "Rl-s1-2", "Rl-m1-1", "Rl-m1-2", "Rl-p1-2", "Rl-p1-3", "Rl-p1-4",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_workloads_and_ignored_objects_restart_nothing() {
    let mut bed = Bed::start("reload-optout").await;
    bed.secret("shared", &[("k", "Opt-shared-1")], json!({}))
        .await;
    bed.secret(
        "ig",
        &[("k", "Opt-ig-1")],
        json!({"reloader.stakater.com/ignore": "true"}),
    )
    .await;
    bed.secret("ig-ctl", &[("k", "Opt-ctl-1")], json!({})).await;
    let shared = env_from(&["shared"], &[]);
    bed.deployment("control", reload(), shared.clone()).await;
    bed.deployment(
        "opted-out",
        json!({"reloader.stakater.com/auto": "true", "secretsync.io/reload": "false"}),
        shared.clone(),
    )
    .await;
    bed.deployment(
        "auto-false",
        json!({"reloader.stakater.com/auto": "false"}),
        shared.clone(),
    )
    .await;
    bed.deployment("plain", json!({}), shared).await;
    bed.deployment("ignoring", reload(), env_from(&["ig", "ig-ctl"], &[]))
        .await;
    bed.run(&[], &[]);
    bed.recorded("Deployment", "control").await;
    let generation = bed.recorded("Deployment", "ignoring").await;

    bed.secret("shared", &[("k", "Opt-shared-2")], json!({}))
        .await;
    assert_eq!(
        bed.restarts_on("Secret", "shared").await,
        BTreeSet::from(["control".to_string()])
    );
    bed.restarted("Deployment", "control", None).await;
    for name in ["opted-out", "auto-false", "plain"] {
        assert_eq!(
            bed.state("Deployment", name).await,
            (None, None, 1),
            "{name} is never touched"
        );
    }

    // The ignored Secret changes first; the restart that follows is for the
    // other one alone.
    bed.secret(
        "ig",
        &[("k", "Opt-ig-2")],
        json!({"reloader.stakater.com/ignore": "true"}),
    )
    .await;
    bed.secret("ig-ctl", &[("k", "Opt-ctl-2")], json!({})).await;
    bed.restarted("Deployment", "ignoring", None).await;
    let note = bed.restart_note("ignoring", "changed").await;
    assert!(note.starts_with("Secret ig-ctl changed:"), "{note}");
    let (_, _, after) = bed.state("Deployment", "ignoring").await;
    assert_eq!(after, generation + 1);
    bed.finish(&[
        "Opt-shared-1",
        "Opt-shared-2",
        "Opt-ig-1",
        "Opt-ig-2",
        "Opt-ctl-1",
        "Opt-ctl-2",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_rewrite_restarts_nothing_and_two_changes_in_the_window_make_one() {
    let mut bed = Bed::start("reload-window").await;
    bed.secret("a", &[("k", "Win-a-1")], json!({})).await;
    bed.secret("b", &[("k", "Win-b-1")], json!({})).await;
    bed.deployment("app", reload(), env_from(&["a", "b"], &[]))
        .await;
    bed.run(&["--reload-debounce", "2s"], &[]);
    let generation = bed.recorded("Deployment", "app").await;

    // Same data, a new annotation: the resourceVersion moves, the data does not.
    bed.secret("a", &[("k", "Win-a-1")], json!({"touched": "yes"}))
        .await;
    let object = bed.object("Secret", "a");
    bed.logged("reload: data unchanged", &[("object", &object)])
        .await;
    assert_eq!(
        bed.state("Deployment", "app").await.2,
        generation,
        "no restart for a write that changes no data"
    );

    bed.secret("a", &[("k", "Win-a-2")], json!({"touched": "yes"}))
        .await;
    bed.secret("b", &[("k", "Win-b-2")], json!({})).await;
    bed.restarted("Deployment", "app", None).await;
    let note = bed.restart_note("app", "changed").await;
    assert!(note.starts_with("Secret a, Secret b changed:"), "{note}");
    assert_eq!(bed.state("Deployment", "app").await.2, generation + 1);
    assert_eq!(bed.metric("Deployment").await, 1);
    bed.finish(&["Win-a-1", "Win-a-2", "Win-b-1", "Win-b-2"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rotation_is_spread_at_the_configured_rate() {
    const FLEET: usize = 200;
    const RATE: usize = 25;
    let mut bed = Bed::start("reload-fleet").await;
    for i in 0..FLEET {
        bed.secret(
            &format!("f-{i:03}"),
            &[("k", &format!("Fleet-{i}-1"))],
            json!({}),
        )
        .await;
        bed.deployment(
            &format!("d-{i:03}"),
            reload(),
            env_from(&[&format!("f-{i:03}")], &[]),
        )
        .await;
    }
    bed.run(&["--reload-rate", &RATE.to_string()], &[]);
    let deployments = bed.api("Deployment");
    let all = |check: fn(&DynamicObject) -> bool| {
        let deployments = deployments.clone();
        async move {
            let listed = deployments.list(&ListParams::default()).await.ok()?;
            (listed.items.len() == FLEET && listed.items.iter().all(check)).then_some(listed.items)
        }
    };
    fn recorded_hash(object: &DynamicObject) -> bool {
        object
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(HASH))
    }
    fn template_hash(object: &DynamicObject) -> bool {
        object.data["spec"]["template"]["metadata"]["annotations"][HASH].is_string()
    }
    let recorded = eventually(Duration::from_secs(180), || all(recorded_hash)).await;
    assert!(
        recorded.is_some(),
        "every workload recorded; log:\n{}",
        bed.logs()
    );

    let rotation = Instant::now();
    for i in 0..FLEET {
        bed.secret(
            &format!("f-{i:03}"),
            &[("k", &format!("Fleet-{i}-2"))],
            json!({}),
        )
        .await;
    }
    let restarted = eventually(Duration::from_secs(180), || all(template_hash))
        .await
        .unwrap_or_else(|| panic!("the whole fleet restarts; log:\n{}", bed.logs()));
    let took = rotation.elapsed();

    let mut times: Vec<(jiff::Timestamp, String)> = restarted
        .iter()
        .map(|o| {
            assert_eq!(o.metadata.generation, Some(2), "one rollout each");
            let at = &o.metadata.annotations.as_ref().unwrap()[RESTARTED_AT];
            (at.parse().unwrap(), o.metadata.name.clone().unwrap())
        })
        .collect();
    times.sort();
    let order: Vec<&str> = times.iter().map(|(_, name)| name.as_str()).collect();
    let expected: Vec<String> = (0..FLEET).map(|i| format!("d-{i:03}")).collect();
    assert_eq!(order, expected, "in the order their Secrets changed");
    let interval = jiff::SignedDuration::from_millis((1000 / RATE) as i64 - 1);
    for pair in times.windows(2) {
        assert!(
            pair[1].0.duration_since(pair[0].0) >= interval,
            "at most {RATE} a second: {pair:?}"
        );
    }
    for window in times.windows(RATE + 1) {
        let span = window[RATE].0.duration_since(window[0].0);
        assert!(
            span >= jiff::SignedDuration::from_millis(999),
            "no more than {RATE} patches within a second: {span:?}"
        );
    }
    let least = Duration::from_millis((FLEET as u64 - 1) * 1000 / RATE as u64);
    assert!(
        took >= least.mul_f64(0.95),
        "{FLEET} restarts at {RATE}/s take at least {least:?}, took {took:?}"
    );
    assert_eq!(bed.metric("Deployment").await, FLEET as u64);
    bed.finish(&["Fleet-7-1", "Fleet-7-2", "Fleet-199-2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_restarts_nothing_unless_data_changed_meanwhile() {
    let mut bed = Bed::start("reload-restart").await;
    bed.secret("sa", &[("k", "Again-a-1")], json!({})).await;
    bed.secret("sb", &[("k", "Again-b-1")], json!({})).await;
    bed.deployment("a", reload(), env_from(&["sa"], &[])).await;
    bed.deployment("b", reload(), env_from(&["sb"], &[])).await;
    bed.run(&[], &[]);
    bed.recorded("Deployment", "b").await;
    bed.recorded("Deployment", "a").await;
    bed.secret("sa", &[("k", "Again-a-2")], json!({})).await;
    bed.restarted("Deployment", "a", None).await;
    let before_a = bed.state("Deployment", "a").await;
    let before_b = bed.state("Deployment", "b").await;

    bed.stop();
    bed.run(&[], &[]);
    for name in ["a", "b"] {
        let workload = format!("Deployment {}/{name}", bed.ns());
        bed.logged("reload: inputs unchanged", &[("workload", &workload)])
            .await;
    }
    assert_eq!(bed.state("Deployment", "a").await, before_a);
    assert_eq!(bed.state("Deployment", "b").await, before_b);
    assert_eq!(bed.metric("Deployment").await, 0);

    // A change while no controller runs: the next one restarts that workload, once.
    bed.stop();
    bed.secret("sb", &[("k", "Again-b-2")], json!({})).await;
    bed.run(&[], &[]);
    let workload_a = format!("Deployment {}/a", bed.ns());
    bed.logged("reload: inputs unchanged", &[("workload", &workload_a)])
        .await;
    bed.restarted("Deployment", "b", None).await;
    let note = bed
        .restart_note("b", "while no secretsync controller was watching")
        .await;
    assert!(note.contains("Secret sb"), "{note}");
    assert_eq!(bed.state("Deployment", "b").await.2, before_b.2 + 1);
    assert_eq!(bed.state("Deployment", "a").await, before_a);
    assert_eq!(bed.metric("Deployment").await, 1);
    bed.finish(&["Again-a-1", "Again-a-2", "Again-b-1", "Again-b-2"])
        .await;
}

/// The Argo Rollouts CRD, reduced to what the test needs.
async fn install_rollout_crd(bed: &Bed) {
    install_crd(bed, "argoproj.io", "v1alpha1", "Rollout", "rollouts", true).await;
}

/// A namespaced CRD that keeps any field.
async fn install_crd(
    bed: &Bed,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    status: bool,
) {
    let name = format!("{plural}.{group}");
    let mut crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    if status {
        crd["spec"]["versions"][0]["subresources"] = json!({"status": {}});
    }
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(bed.cluster.client.clone());
    api.patch(
        &name,
        &PatchParams::apply("scenario").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("install the {kind} CRD: {e}"));
    let established = eventually(WAIT, || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let crd = api.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    assert!(established.is_some(), "the {kind} CRD is established");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_rollout_is_restarted_by_restart_at() {
    let mut bed = Bed::start("reload-rollout").await;
    install_rollout_crd(&bed).await;
    bed.secret("r", &[("k", "Roll-1")], json!({})).await;
    let mut restart = reload();
    restart["reloader.stakater.com/rollout-strategy"] = json!("restart");
    bed.apply(
        "Rollout",
        json!({"metadata": {"name": "default", "annotations": {"reloader.stakater.com/auto": "1"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "default"}},
                "template": {"metadata": {"labels": {"app": "default"}}, "spec": env_from(&["r"], &[])},
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}}),
    )
    .await;
    bed.apply(
        "Rollout",
        json!({"metadata": {"name": "canary", "annotations": restart},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "canary"}},
                "template": {"metadata": {"labels": {"app": "canary"}}, "spec": env_from(&["r"], &[])},
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}}),
    )
    .await;
    bed.run(&[], &[]);
    bed.logged("reload: Argo Rollouts are served; watching them", &[])
        .await;
    let generation = bed.recorded("Rollout", "canary").await;
    bed.secret("r", &[("k", "Roll-2")], json!({})).await;
    let restart_at = eventually(WAIT, || async {
        let object = bed.get("Rollout", "canary").await;
        object.data["spec"]["restartAt"]
            .as_str()
            .map(str::to_string)
    })
    .await
    .unwrap_or_else(|| panic!("spec.restartAt is set; log:\n{}", bed.logs()));
    let at: jiff::Timestamp = restart_at.parse().expect("RFC 3339");
    assert!(restart_at.ends_with('Z'), "{restart_at}");
    assert!(at <= jiff::Timestamp::now());
    let (template, recorded, after) = bed.state("Rollout", "canary").await;
    assert_eq!(template, None, "the Rollout's template is left alone");
    assert!(recorded.is_some());
    assert_eq!(after, generation + 1);
    bed.restart_note("canary", "Secret r changed").await;
    // Without rollout-strategy: Reloader's default, a template update (the
    // Rollout runs its canary steps), and no restartAt.
    let before = bed.recorded("Rollout", "default").await;
    let template = bed.restarted("Rollout", "default", None).await;
    let object = bed.get("Rollout", "default").await;
    assert!(
        object.data["spec"].get("restartAt").is_none(),
        "{:?}",
        object.data["spec"]
    );
    let (_, recorded, after) = bed.state("Rollout", "default").await;
    assert_eq!(recorded.as_deref(), Some(template.as_str()));
    assert!(after > before || after >= 1);
    assert_eq!(bed.metric("Rollout").await, 2);
    bed.finish(&["Roll-1", "Roll-2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_rotated_in_aws_rolls_the_deployment_exactly_once() {
    use support::moto::Moto;
    let moto = Moto::start();
    let config = support::moto::sdk_config(&moto.endpoint).await;
    let sm = aws_sdk_secretsmanager::Client::new(&config);
    sm.create_secret()
        .name("reload/db")
        .secret_string(r#"{"password":"Aws-reload-pw-1"}"#)
        .send()
        .await
        .unwrap();
    let mut bed = Bed::start("reload-aws").await;
    bed.apply(
        "SecretStore",
        json!({"metadata": {"name": "aws"},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
    )
    .await;
    bed.apply(
        "ExternalSecret",
        json!({"metadata": {"name": "db"}, "spec": {"refreshInterval": "1h", "secretStoreRef": {"name": "aws"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "reload/db", "property": "password"}}]}}),
    )
    .await;
    bed.deployment("app", reload(), env_from(&["db"], &[]))
        .await;
    bed.run(
        &[],
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    let generation = bed.recorded("Deployment", "app").await;
    assert_eq!(bed.state("Deployment", "app").await.0, None);

    sm.put_secret_value()
        .secret_id("reload/db")
        .secret_string(r#"{"password":"Aws-reload-pw-2"}"#)
        .send()
        .await
        .unwrap();
    bed.api("ExternalSecret")
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    bed.restarted("Deployment", "app", None).await;
    bed.restart_note("app", "Secret db changed").await;
    let secrets: Api<Secret> = Api::namespaced(bed.cluster.client.clone(), bed.ns());
    let secret = secrets.get("db").await.unwrap();
    let password = secret.data.unwrap()["password"].0.clone();
    assert_eq!(password, b"Aws-reload-pw-2");
    // The ExternalSecret settles (status written, nothing else); the
    // Secret's later writes, if any, change no data.
    let es = bed.api("ExternalSecret");
    condition(&es, "db", "Ready", "SecretSynced", "", WAIT)
        .await
        .expect("the ExternalSecret is Ready");
    assert_eq!(bed.state("Deployment", "app").await.2, generation + 1);
    assert_eq!(bed.metric("Deployment").await, 1);
    bed.finish(&["Aws-reload-pw-1", "Aws-reload-pw-2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resealed_value_rolls_the_deployment_exactly_once() {
    let mut bed = Bed::start("reload-sealed").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let recipient = cli(&["keygen", "-o", key.to_str().unwrap()], "")
        .trim()
        .to_string();
    let identity = std::fs::read_to_string(&key).unwrap();
    bed.secret(
        "secretsync-sealing-keys",
        &[("cluster.key", &identity)],
        json!({}),
    )
    .await;
    let namespace = bed.ns().to_string();
    let seal = |password: &str| {
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {namespace}}}\nstringData: {{password: {password}}}\n"
        );
        let sealed = cli(&["seal", "-r", &recipient], &manifest);
        serde_yaml_ng::from_str::<Value>(&sealed).unwrap()
    };
    bed.apply("SealedSecret", seal("Sealed-reload-1")).await;
    bed.deployment("app", reload(), env_from(&["db"], &[]))
        .await;
    bed.run(&[], &[]);
    let generation = bed.recorded("Deployment", "app").await;
    assert_eq!(bed.state("Deployment", "app").await.0, None);

    bed.apply("SealedSecret", seal("Sealed-reload-2")).await;
    bed.restarted("Deployment", "app", None).await;
    bed.restart_note("app", "Secret db changed").await;
    let secrets: Api<Secret> = Api::namespaced(bed.cluster.client.clone(), bed.ns());
    let password = secrets.get("db").await.unwrap().data.unwrap()["password"]
        .0
        .clone();
    assert_eq!(password, b"Sealed-reload-2");
    let sealed = bed.api("SealedSecret");
    condition(&sealed, "db", "Synced", "Unsealed", "", WAIT)
        .await
        .expect("the SealedSecret is Synced");
    assert_eq!(bed.state("Deployment", "app").await.2, generation + 1);
    assert_eq!(bed.metric("Deployment").await, 1);
    bed.finish(&["Sealed-reload-1", "Sealed-reload-2"]).await;
}

/// A webhook receiver on 127.0.0.1: every request's content type and body.
struct Receiver {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/hooks/T000/B000/XXXX",
            listener.local_addr().unwrap()
        );
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut content_type) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("content-type:") {
                        content_type = v.trim().to_string();
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                sink.lock()
                    .unwrap()
                    .push((content_type, String::from_utf8_lossy(&body).into_owned()));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { url, received }
    }

    async fn wait(&self, count: usize) -> Vec<(String, String)> {
        let found = eventually(WAIT, || async {
            let all = self.received.lock().unwrap().clone();
            (all.len() >= count).then_some(all)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "fewer than {count} alerts: {:?}",
                self.received.lock().unwrap()
            )
        })
    }
}

/// Reloader's parsing: `auto: "True"` opts in (strconv.ParseBool), the
/// exclude list is read from the workload's metadata only, a volume no
/// container mounts does not count; and Reloader's alert variables post a
/// Slack-shaped alert naming the workload and the Secret, never a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloader_parsing_mounts_and_alerts_as_reloader() {
    let mut bed = Bed::start("reload-parity").await;
    for name in ["used", "idle", "kept"] {
        bed.secret(name, &[("k", &format!("Par-{name}-1"))], json!({}))
            .await;
    }
    let pod = json!({
        "containers": [container(json!({"envFrom": [{"secretRef": {"name": "used"}}, {"secretRef": {"name": "kept"}}],
            "volumeMounts": []}))],
        "volumes": [{"name": "idle", "secret": {"secretName": "idle"}}],
    });
    // The exclude list on the pod template is not Reloader's: "kept" counts.
    bed.workload(
        "Deployment",
        "parity",
        json!({"reloader.stakater.com/auto": "True"}),
        json!({"secrets.exclude.reloader.stakater.com/reload": "kept"}),
        pod.clone(),
    )
    .await;
    bed.workload(
        "Deployment",
        "excluding",
        json!({"reloader.stakater.com/auto": "t", "secrets.exclude.reloader.stakater.com/reload": "used, kept"}),
        json!({}),
        pod,
    )
    .await;
    let receiver = Receiver::start();
    bed.run(
        &[],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", &receiver.url),
            ("ALERT_SINK", "slack"),
            ("ALERT_ADDITIONAL_INFO", "test-cluster"),
        ],
    );
    bed.recorded("Deployment", "parity").await;
    bed.recorded("Deployment", "excluding").await;
    let (_, _, excluding_generation) = bed.state("Deployment", "excluding").await;
    // The unmounted volume's Secret first, then the used one: one restart,
    // naming only the used one.
    bed.secret("idle", &[("k", "Par-idle-2")], json!({})).await;
    bed.secret("kept", &[("k", "Par-kept-2")], json!({})).await;
    assert_eq!(
        bed.restarts_on("Secret", "kept").await,
        BTreeSet::from(["parity".to_string()]),
        "'excluding' excludes it on its metadata"
    );
    bed.restarted("Deployment", "parity", None).await;
    let note = bed.restart_note("parity", "Secret kept changed").await;
    assert!(!note.contains("idle"), "{note}");
    let alerts = receiver.wait(1).await;
    let (content_type, body) = &alerts[0];
    assert_eq!(content_type, "application/json");
    let body: Value = serde_json::from_str(body).expect("JSON");
    let text = body["attachments"][0]["text"].as_str().unwrap_or_default();
    assert_eq!(
        text,
        format!(
            "test-cluster : secretsync detected changes in *Secret kept* in namespace *{ns}*. Hence restarted *parity* of type *Deployment* in namespace *{ns}*",
            ns = bed.ns()
        )
    );
    assert_eq!(body["attachments"][0]["color"], "good");
    assert_eq!(
        bed.state("Deployment", "excluding").await.2,
        excluding_generation
    );
    assert_eq!(bed.metric("Deployment").await, 1);
    let logs = bed.logs();
    assert!(
        !logs.contains("hooks/T000"),
        "the webhook URL is never logged"
    );
    bed.finish(&[
        "Par-used-1",
        "Par-idle-1",
        "Par-idle-2",
        "Par-kept-1",
        "Par-kept-2",
    ])
    .await;
}

/// As in Reloader: a CronJob runs a Job from its template at once (and is
/// itself left as it was), a Job is deleted and created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_runs_a_job_and_a_job_is_created_again() {
    let mut bed = Bed::start("reload-jobs").await;
    bed.secret("batch", &[("k", "Job-1")], json!({})).await;
    let pod = json!({"restartPolicy": "Never", "containers": [container(json!({"envFrom": [{"secretRef": {"name": "batch"}}]}))]});
    bed.apply(
        "CronJob",
        json!({"metadata": {"name": "nightly", "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                "spec": {"template": {"spec": pod.clone()}}}}}),
    )
    .await;
    bed.apply(
        "Job",
        json!({"metadata": {"name": "migrate", "annotations": {"secret.reloader.stakater.com/reload": "batch"}},
            "spec": {"template": {"metadata": {"labels": {"app": "migrate"}}, "spec": pod}}}),
    )
    .await;
    bed.run(&[], &[]);
    bed.recorded("CronJob", "nightly").await;
    bed.recorded("Job", "migrate").await;
    let cron = bed.get("CronJob", "nightly").await;
    let cron_generation = cron.metadata.generation;
    let cron_uid = cron.metadata.uid.clone().unwrap();
    let job_uid = bed.get("Job", "migrate").await.metadata.uid.unwrap();
    bed.secret("batch", &[("k", "Job-2")], json!({})).await;
    let jobs = bed.api("Job");
    let made = eventually(WAIT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|j| {
                j.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == cron_uid && o.kind == "CronJob")
            })
    })
    .await
    .unwrap_or_else(|| panic!("no Job from the CronJob; log:\n{}", bed.logs()));
    assert!(
        made.metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("nightly-")
    );
    let annotations = made.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("cronjob.kubernetes.io/instantiate")
            .map(String::as_str),
        Some("manual")
    );
    assert_eq!(
        made.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a")
    );
    assert!(made.data["spec"]["template"]["metadata"]["annotations"][HASH].is_string());
    // The Job is created first, then the CronJob annotated.
    let cron = eventually(WAIT, || async {
        let cron = bed.get("CronJob", "nightly").await;
        cron.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(RESTARTED_AT))
            .then_some(cron)
    })
    .await
    .unwrap_or_else(|| panic!("the CronJob never said it restarted; log:\n{}", bed.logs()));
    assert_eq!(
        cron.metadata.generation, cron_generation,
        "the CronJob's spec is left alone"
    );
    let again = eventually(WAIT, || async {
        let job = bed.api("Job").get("migrate").await.ok()?;
        (job.metadata.uid.as_deref() != Some(job_uid.as_str())).then_some(job)
    })
    .await
    .unwrap_or_else(|| panic!("the Job was not created again; log:\n{}", bed.logs()));
    assert!(again.data["spec"]["template"]["metadata"]["annotations"][HASH].is_string());
    assert_eq!(
        again.data["spec"]["template"]["metadata"]["labels"]["app"],
        "migrate"
    );
    bed.restart_note("nightly", "Secret batch changed").await;
    bed.logged(
        "reload: inputs unchanged",
        &[("workload", &bed.object("Job", "migrate"))],
    )
    .await;
    assert_eq!(bed.metric("CronJob").await, 1);
    assert_eq!(bed.metric("Job").await, 1);
    bed.finish(&["Job-1", "Job-2"]).await;
}

/// Reloader's `secretproviderclass.reloader.stakater.com/*`: a Deployment
/// mounting a SecretProviderClass by CSI restarts when one of its pods'
/// `SecretProviderClassPodStatus` moves to new object versions; a new pod's
/// status restarts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_provider_class_whose_versions_move_restarts_its_workload() {
    let mut bed = Bed::start("reload-spc").await;
    let csi = "secrets-store.csi.x-k8s.io";
    install_crd(
        &bed,
        csi,
        "v1",
        "SecretProviderClass",
        "secretproviderclasses",
        false,
    )
    .await;
    install_crd(
        &bed,
        csi,
        "v1",
        "SecretProviderClassPodStatus",
        "secretproviderclasspodstatuses",
        false,
    )
    .await;
    bed.apply(
        "SecretProviderClass",
        json!({"metadata": {"name": "aws-spc"}, "spec": {"provider": "aws", "parameters": {"objects": "[]"}}}),
    )
    .await;
    let status = |pod: &str, version: &str| {
        json!({"metadata": {"name": format!("{pod}-{}-aws-spc", "ns")},
            "status": {"podName": pod, "secretProviderClassName": "aws-spc", "mounted": true,
                "targetPath": "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount",
                "objects": [{"id": "db-password", "version": version}]}})
    };
    bed.apply("SecretProviderClassPodStatus", status("web-1", "v1"))
        .await;
    let pod = json!({"containers": [container(json!({"volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets"}]}))],
        "volumes": [{"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
            "volumeAttributes": {"secretProviderClass": "aws-spc"}}}]});
    bed.workload(
        "Deployment",
        "web",
        json!({"secretproviderclass.reloader.stakater.com/reload": "aws-spc"}),
        json!({}),
        pod.clone(),
    )
    .await;
    bed.workload(
        "Deployment",
        "other",
        json!({"secretproviderclass.reloader.stakater.com/reload": "other-spc"}),
        json!({}),
        pod,
    )
    .await;
    bed.run(&[], &[]);
    bed.logged(
        "reload: the Secrets Store CSI driver's CRDs are served; watching SecretProviderClasses",
        &[],
    )
    .await;
    let generation = bed.recorded("Deployment", "web").await;
    bed.recorded("Deployment", "other").await;
    let (_, other_hash, other_generation) = bed.state("Deployment", "other").await;
    // A new pod's status (same versions): nothing.
    bed.apply("SecretProviderClassPodStatus", status("web-2", "v1"))
        .await;
    // The first pod's mount moves to v2: one restart.
    bed.apply("SecretProviderClassPodStatus", status("web-1", "v2"))
        .await;
    let hash = bed.restarted("Deployment", "web", None).await;
    assert_eq!(bed.state("Deployment", "web").await.2, generation + 1);
    bed.restart_note("web", "SecretProviderClass aws-spc changed")
        .await;
    // The second pod follows: same versions as already counted, nothing more.
    bed.apply("SecretProviderClassPodStatus", status("web-2", "v2"))
        .await;
    bed.secret("unrelated", &[("k", "x")], json!({})).await;
    assert_eq!(bed.restart_notes("web").await.len(), 1);
    assert_eq!(bed.state("Deployment", "web").await.0, Some(hash));
    assert_eq!(bed.state("Deployment", "other").await.1, other_hash);
    assert_eq!(bed.state("Deployment", "other").await.2, other_generation);
    assert_eq!(bed.metric("Deployment").await, 1);
    bed.finish(&[]).await;
}
