//! Templates that run away or fail, against the real controller on the test bed:
//! each fails its own ExternalSecret with a message naming the field and the
//! limit, while an unrelated ExternalSecret syncs and `/healthz` answers; no
//! status, Event or log line holds a value, in any form.

use crate::support;

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, condition, eventually};
use support::controller::RunningController;

/// Generous: the machine is shared, and nothing here is a timing assertion.
const WAIT: Duration = Duration::from_secs(90);

const PASSWORD: &str = "Heavy-Tmpl-Secret-7q";
const OTHER: &str = "Unrelated-Value-3x";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("secretsync.io", "v1", kind), plural)
}

/// Every form a value could leak in: as it is, lowercased, uppercased, base64,
/// JSON-quoted, hex, and a fragment.
fn forms(value: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        value.to_string(),
        value.to_lowercase(),
        value.to_uppercase(),
        b64(value),
        b64(&value.to_lowercase()),
        serde_json::to_string(value).unwrap(),
        hex::encode(value),
        value.chars().skip(2).take(9).collect(),
        value.to_lowercase().chars().skip(2).take(9).collect(),
    ]
}

async fn apply(api: &Api<DynamicObject>, kind: &str, mut manifest: Value) {
    let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
    manifest["apiVersion"] = json!("secretsync.io/v1");
    manifest["kind"] = json!(kind);
    api.patch(
        &name,
        &PatchParams::apply("scenario").force(),
        &Patch::Apply(&manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

fn external_secret(name: &str, templates: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "refreshInterval": "1h",
        "secretStoreRef": {"name": "fake"},
        "target": {"template": {"data": templates}},
        "data": [{"secretKey": "password", "remoteRef": {"key": "pw"}}]}})
}

/// `/healthz`, asked from a plain thread as a probe would.
async fn healthz(base: &str) -> u16 {
    let url = format!("{base}/healthz");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_and_failing_templates_fail_alone_and_leak_nothing() {
    let cluster = Cluster::start("template-limits").await;
    cluster.apply_crds().await;
    let mut controller = RunningController::start(
        &cluster.kubeconfig,
        &[
            "--lease-namespace",
            &cluster.namespace,
            "--identity",
            "scenario",
            "--template-timeout",
            "2s",
            "--template-max-output",
            "65536",
        ],
        &[],
    );
    let namespaced = |kind, plural| {
        Api::<DynamicObject>::namespaced_with(
            cluster.client.clone(),
            &cluster.namespace,
            &resource(kind, plural),
        )
    };
    let stores = namespaced("SecretStore", "secretstores");
    let external_secrets = namespaced("ExternalSecret", "externalsecrets");
    apply(
        &stores,
        "SecretStore",
        json!({"metadata": {"name": "fake"}, "spec": {"provider": {"fake": {"data": [
            {"key": "pw", "value": PASSWORD},
            {"key": "other", "value": OTHER}]}}}}),
    )
    .await;

    // Three ExternalSecrets that would hash for minutes, one that multiplies
    // its output, and failures that used to quote transformed values.
    let heavy = r#"{{ range 100 }}{{ htpasswd "u" $.password }}{{ end }}"#;
    for i in 0..3 {
        apply(
            &external_secrets,
            "ExternalSecret",
            external_secret(&format!("heavy-{i}"), json!({"hashes": heavy})),
        )
        .await;
    }
    apply(
        &external_secrets,
        "ExternalSecret",
        external_secret(
            "huge",
            json!({"blob": "{{ range 1000 }}{{ repeat 1000 $.password }}{{ end }}"}),
        ),
    )
    .await;
    let leaks = [
        "{{ fail (.password | lower) }}",
        "{{ fail (.password | b64enc) }}",
        "{{ fail (toJson .) }}",
        "{{ lt (.password | lower) 3 }}",
        "{{ .password | upper | quote | fail }}",
        "{{ range (.password | lower) }}{{ end }}",
        "{{ index . (.password | hexdec) }}",
    ];
    for (i, text) in leaks.iter().enumerate() {
        apply(
            &external_secrets,
            "ExternalSecret",
            external_secret(&format!("leak-{i}"), json!({"out": text})),
        )
        .await;
    }
    // A templateFrom literal whose key is made of the value.
    apply(
        &external_secrets,
        "ExternalSecret",
        json!({"metadata": {"name": "bad-key"}, "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": "fake"},
            "target": {"template": {"templateFrom": [{"literal": "{{ .password }}/x: v"}]}},
            "data": [{"secretKey": "password", "remoteRef": {"key": "pw"}}]}}),
    )
    .await;
    // And one that has nothing to do with any of them.
    apply(
        &external_secrets,
        "ExternalSecret",
        json!({"metadata": {"name": "unrelated"}, "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"name": "fake"},
            "target": {"template": {"data": {"v": "{{ .other | upper }}"}}},
            "data": [{"secretKey": "other", "remoteRef": {"key": "other"}}]}}),
    )
    .await;

    // The unrelated one syncs, and the health endpoint answers, while the heavy
    // ones run.
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let synced = eventually(WAIT, || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt("unrelated")
                .await
                .unwrap()
                .filter(|s| s.data.is_some())
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the unrelated Secret never synced:\n{}",
            controller.log_text()
        )
    });
    let data = synced.data.unwrap();
    assert_eq!(data["v"].0, OTHER.to_uppercase().as_bytes());
    assert_eq!(healthz(&controller.health).await, 200);

    // Each heavy one fails by itself, naming the field and the deadline.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let name = format!("heavy-{i}");
        let status = condition(
            &external_secrets,
            &name,
            "Ready",
            "SecretSyncedError",
            "spec.target.template.data.hashes",
            WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("{name} never failed:\n{}", controller.log_text()));
        assert!(status.to_string().contains("deadline"), "{status}");
        statuses.push(status);
    }
    assert_eq!(healthz(&controller.health).await, 200);
    let status = condition(
        &external_secrets,
        "huge",
        "Ready",
        "SecretSyncedError",
        "spec.target.template.data.blob",
        WAIT,
    )
    .await
    .unwrap_or_else(|| panic!("huge never failed:\n{}", controller.log_text()));
    assert!(
        status.to_string().contains("65536-byte output limit"),
        "{status}"
    );
    statuses.push(status);
    for i in 0..leaks.len() {
        let name = format!("leak-{i}");
        let status = condition(
            &external_secrets,
            &name,
            "Ready",
            "SecretSyncedError",
            "spec.target.template.data.out: line 1, column",
            WAIT,
        )
        .await
        .unwrap_or_else(|| panic!("{name} never failed:\n{}", controller.log_text()));
        statuses.push(status);
    }
    let status = condition(
        &external_secrets,
        "bad-key",
        "Ready",
        "SecretSyncedError",
        "spec.target.template.templateFrom[0].literal: the rendered map has a key that is not a valid Secret key",
        WAIT,
    )
    .await
    .unwrap_or_else(|| panic!("bad-key never failed:\n{}", controller.log_text()));
    statuses.push(status);
    for name in ["heavy-0", "huge", "leak-0", "bad-key"] {
        assert!(
            secrets.get_opt(name).await.unwrap().is_none(),
            "{name}: no Secret is written from a failed template"
        );
    }

    // Not a value anywhere: statuses, Events, logs.
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let events: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(!events.is_empty(), "failures are published as Events");
    let forms: Vec<String> = forms(PASSWORD).into_iter().chain(forms(OTHER)).collect();
    for text in statuses
        .iter()
        .map(Value::to_string)
        .chain(events.iter().cloned())
    {
        for form in &forms {
            assert!(!text.contains(form.as_str()), "{form:?} in {text}");
        }
    }
    let status = controller.terminate();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    let form_refs: Vec<&str> = forms.iter().map(String::as_str).collect();
    controller.assert_never_logged(&form_refs);
    cluster.finish().await;
}
