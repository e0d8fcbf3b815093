//! The bad-input corpus (`tests/bad-input/`, format in `tests/bad_input.rs`)
//! through the controller: every case that is an object an API server stores
//! is applied, all of them together into one namespace, beside the valid
//! objects of `good.yaml`; each gets its message in its condition, the good
//! ExternalSecret syncs meanwhile and again after a restart, and no value
//! reaches a log line, a status or an Event.
//!
//! The fake API server does not check CRD schemas' patterns, types and enums,
//! so on it the cases the schema would refuse up front are applied too, as
//! objects stored before the schema tightened: the controller must decode them
//! leniently and fail them alone. On a real cluster they are skipped.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;
use serde_json::{Value, json};
use support::cluster::{Cluster, eventually};
use support::controller::RunningController;
use support::corpus::{GOOD, IDENTITY, InController, assert_no_value, corpus};

const WAIT: Duration = Duration::from_secs(60);

fn resource(kind: &str) -> Option<(ApiResource, bool)> {
    let (plural, namespaced) = match kind {
        "ExternalSecret" => ("externalsecrets", true),
        "SecretStore" => ("secretstores", true),
        "ClusterSecretStore" => ("clustersecretstores", false),
        "SealedSecret" => ("sealedsecrets", true),
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk("secretsync.io", "v1", kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

/// The objects of a case file, as JSON (a `List`'s items one by one); `None`
/// for a file that is not objects.
fn objects(path: &str) -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).ok())
        .filter(|v| !matches!(v, Some(Value::Null)))
        .collect::<Option<_>>()?;
    Some(
        documents
            .into_iter()
            .flat_map(|document| match document["kind"].as_str() {
                Some("List") => document["items"].as_array().cloned().unwrap_or_default(),
                _ => vec![document],
            })
            .collect(),
    )
}

/// Every string `bad` (the corpus's namespace) becomes `namespace`.
fn retarget(value: &mut Value, namespace: &str) {
    match value {
        Value::String(s) if s == "bad" => *s = namespace.to_string(),
        Value::Array(items) => items.iter_mut().for_each(|v| retarget(v, namespace)),
        Value::Object(map) => map.values_mut().for_each(|v| retarget(v, namespace)),
        _ => {}
    }
}

struct Check {
    namespace: String,
    case: String,
    kind: String,
    name: String,
    condition: &'static str,
    says: String,
}

/// Creates the object in its own namespace (made first if missing).
async fn create(cluster: &Cluster, object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some((resource, namespaced)) = resource(kind) else {
        return Err(format!("kind {kind} is not applied"));
    };
    let api: Api<DynamicObject> = if namespaced {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&cluster.namespace);
        let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
        if namespaces.get_opt(namespace).await.ok().flatten().is_none() {
            let made: Namespace =
                serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
            let _ = namespaces.create(&PostParams::default(), &made).await;
        }
        Api::namespaced_with(cluster.client.clone(), namespace, &resource)
    } else {
        Api::all_with(cluster.client.clone(), &resource)
    };
    let object: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_fails_alone_in_the_controller() {
    let cluster = Cluster::start("corpus").await;
    cluster.apply_crds().await;
    let namespace = cluster.namespace.clone();
    let identity = std::fs::read_to_string(IDENTITY).unwrap();
    let keys: Secret = serde_json::from_value(json!({
        "metadata": {"name": "secretsync-sealing-keys"},
        "stringData": {"cluster.key": identity},
    }))
    .unwrap();
    Api::<Secret>::namespaced(cluster.client.clone(), &namespace)
        .create(&PostParams::default(), &keys)
        .await
        .unwrap();

    let mut checks = Vec::new();
    let mut values: Vec<String> = vec!["good-companion-pw".into()];
    let mut skipped = 0;
    for case in corpus() {
        // Values a schema pattern, type or enum would refuse are stored by
        // the fake, as by a server whose CRDs were looser when they came.
        let says = match &case.controller {
            InController::Skip(why)
                if cluster.is_real() || !why.starts_with("the CRD schema (") =>
            {
                skipped += 1;
                continue;
            }
            InController::Says(text) => text.clone(),
            InController::Same | InController::Skip(_) => case.expect.clone(),
        };
        let Some(mut objects) = objects(case.file.to_str().unwrap()) else {
            panic!("{}: not objects, but not skipped", case.file.display());
        };
        // Sealed values are bound to namespace `bad`: they stay there (made
        // on the fake; on a real cluster such a namespace is not ours to make).
        let sealed = objects.iter().any(|o| o["kind"] == "SealedSecret");
        if sealed && cluster.is_real() {
            skipped += 1;
            continue;
        }
        let says = if sealed {
            says
        } else {
            says.replace("\"bad\"", &format!("{namespace:?}"))
        };
        values.extend(case.values.iter().cloned());
        // The object the message is about: the case's ExternalSecret or
        // SealedSecret that should fail, else its store.
        let subject = objects
            .iter()
            .find(|o| {
                matches!(o["kind"].as_str(), Some("ExternalSecret" | "SealedSecret"))
                    && !case
                        .renders
                        .iter()
                        .any(|r| o["metadata"]["name"].as_str() == Some(r.as_str()))
            })
            .or_else(|| objects.first())
            .cloned()
            .unwrap();
        for object in &mut objects {
            if !sealed {
                retarget(object, &namespace);
            }
            if let Err(e) = create(&cluster, object).await {
                panic!("{}: the server refused it: {e}", case.file.display());
            }
        }
        let kind = subject["kind"].as_str().unwrap().to_string();
        let subject_namespace = if sealed {
            "bad".to_string()
        } else {
            namespace.clone()
        };
        checks.push(Check {
            namespace: subject_namespace,
            case: case
                .file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            condition: if kind == "SealedSecret" {
                "Synced"
            } else {
                "Ready"
            },
            name: subject["metadata"]["name"].as_str().unwrap().to_string(),
            kind,
            says,
        });
    }
    for mut object in objects(GOOD).unwrap() {
        retarget(&mut object, &namespace);
        create(&cluster, &object).await.unwrap();
    }
    assert!(
        checks.len() >= 40,
        "{} cases run, {skipped} skipped",
        checks.len()
    );

    let args = [
        "--lease-namespace",
        namespace.as_str(),
        "--identity",
        "corpus",
    ];
    let mut controller = RunningController::start(&cluster.kubeconfig, &args, &[]);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &namespace);
    let good = || async {
        let secret = secrets.get_opt("case-good").await.ok()??;
        let value = secret.data?.get("password")?.0.clone();
        (value == b"good-companion-pw").then_some(())
    };
    assert!(
        eventually(WAIT, good).await.is_some(),
        "the good ExternalSecret beside the corpus never synced:\n{}",
        controller.log_text()
    );

    let mut failures = Vec::new();
    for check in &checks {
        let (resource, namespaced) = resource(&check.kind).unwrap();
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(cluster.client.clone(), &check.namespace, &resource)
        } else {
            Api::all_with(cluster.client.clone(), &resource)
        };
        let said = eventually(WAIT, || async {
            let object = api.get(&check.name).await.ok()?;
            let conditions = object.data["status"]["conditions"].as_array()?;
            let found = conditions.iter().find(|c| c["type"] == check.condition)?;
            let message = found["message"].as_str().unwrap_or_default().to_string();
            (found["status"] == "False" && message.contains(&check.says)).then_some(message)
        })
        .await;
        if said.is_none() {
            let object = api.get(&check.name).await.ok();
            failures.push(format!(
                "{}: {} {} never said {:?}; status: {}",
                check.case,
                check.kind,
                check.name,
                check.says,
                object
                    .map(|o| o.data["status"].to_string())
                    .unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing stalled: a restart lists everything again (the bad objects too)
    // and the good ExternalSecret still follows its spec.
    assert!(controller.terminate().success(), "SIGTERM stops it");
    let logs_before = controller.log_text();
    let mut controller = RunningController::start(&cluster.kubeconfig, &args, &[]);
    let good_es: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        &namespace,
        &resource("ExternalSecret").unwrap().0,
    );
    good_es
        .patch(
            "case-good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"target": {"template": {"data": {"password": "{{ .password }}", "again": "yes"}}}}})),
        )
        .await
        .unwrap();
    let followed = eventually(WAIT, || async {
        let secret = secrets.get_opt("case-good").await.ok()??;
        secret.data?.contains_key("again").then_some(())
    })
    .await;
    assert!(
        followed.is_some(),
        "after a restart among bad objects, the good one no longer syncs:\n{}",
        controller.log_text()
    );
    assert!(controller.terminate().success());

    // No value in logs, statuses or Events.
    let mut seen = format!("{logs_before}\n{}", controller.log_text());
    for kind in [
        "ExternalSecret",
        "SecretStore",
        "SealedSecret",
        "ClusterSecretStore",
    ] {
        let (resource, _) = resource(kind).unwrap();
        let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
        for object in api.list(&ListParams::default()).await.unwrap().items {
            seen.push_str(&object.data["status"].to_string());
        }
    }
    let events: Api<Event> = Api::all(cluster.client.clone());
    let notes: BTreeMap<String, String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.metadata.name.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect();
    seen.push_str(&format!("{notes:?}"));
    assert_no_value("the controller", &seen, &values);
    cluster.finish().await;
}
