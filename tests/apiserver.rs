//! The fake API server's own tests: each semantic secretsync relies on, checked
//! through the kube client (and kubectl), so what is built on the fake stands on
//! something checked.

use crate::support::{apiserver, peers};

use std::collections::BTreeMap;
use std::time::Duration;

use apiserver::FakeApiServer;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};

fn code(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => panic!("not an API error: {other}"),
    }
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

fn version(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version.as_deref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn stale_writes_conflict_and_no_op_writes_change_nothing() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("c", &[("a", "1")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let mut changed = created.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("a".into(), "2".into());
    let updated = api
        .replace("c", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert!(version(&updated.metadata) > version(&created.metadata));

    // Writing with the old resourceVersion is a 409, as Kubernetes' optimistic concurrency.
    let (status, reason, message) = code(
        api.replace("c", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );

    let same = api
        .replace("c", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        version(&same.metadata),
        version(&updated.metadata),
        "a no-op write keeps the resourceVersion"
    );

    let (status, reason, _) = code(api.get("missing").await.unwrap_err());
    assert_eq!((status, reason.as_str()), (404, "NotFound"));
    let (status, reason, _) = code(
        api.create(&PostParams::default(), &config_map("c", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, reason.as_str()), (409, "AlreadyExists"));
    let other: Api<ConfigMap> = Api::namespaced(server.client(), "nowhere");
    let (status, _, message) = code(
        other
            .create(&PostParams::default(), &config_map("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404, "{message}");
    let nameless: ConfigMap = serde_json::from_value(json!({"metadata": {}})).unwrap();
    let (status, reason, _) = code(
        api.create(&PostParams::default(), &nameless)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, reason.as_str()), (422, "Invalid"));
}

#[tokio::test]
async fn watches_resume_from_history_and_too_old_versions_are_gone() {
    let server = FakeApiServer::start_with_history(5).await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let first = api
        .create(&PostParams::default(), &config_map("w0", &[]))
        .await
        .unwrap();
    let from = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &config_map("w1", &[]))
        .await
        .unwrap();
    api.patch(
        "w0",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();

    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &from)
        .await
        .unwrap()
        .take(3)
        .try_collect()
        .await
        .unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.as_deref().unwrap()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.as_deref().unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.as_deref().unwrap()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ADDED w1", "MODIFIED w0", "DELETED w1"]);

    for i in 0..6 {
        api.create(&PostParams::default(), &config_map(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &from)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410, "{status:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // Bookmarks come when asked for.
    let current = server.resource_version().to_string();
    let mut params = WatchParams::default().timeout(3);
    params.bookmarks = true;
    let mut stream = api.watch(&params, &current).await.unwrap().boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert!(!bookmark.metadata.resource_version.is_empty())
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_tracks_owners_and_refuses_conflicts() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let apply = |manager: &'static str, data: Value, force: bool| {
        let api = api.clone();
        async move {
            let mut params = PatchParams::apply(manager);
            params.force = force;
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
            api.patch("ssa", &params, &Patch::Apply(&body)).await
        }
    };
    apply("alpha", json!({"shared": "a", "alpha-only": "1"}), false)
        .await
        .unwrap();
    let (status, reason, message) = code(
        apply("beta", json!({"shared": "b"}), false)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("conflict with \"alpha\": .data.shared"),
        "{message}"
    );

    // The same value is no conflict: both own it.
    apply("beta", json!({"shared": "a", "beta-only": "2"}), false)
        .await
        .unwrap();
    let forced = apply("beta", json!({"shared": "b", "beta-only": "2"}), true)
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["shared"], "b");
    let managers: BTreeMap<String, String> = forced
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone().unwrap(), m.operation.clone().unwrap()))
        .collect();
    assert_eq!(
        managers,
        [
            ("alpha".into(), "Apply".into()),
            ("beta".into(), "Apply".into())
        ]
        .into()
    );

    // alpha stops applying its own key: it goes; the key beta took stays.
    let after = apply("alpha", json!({"shared": "b"}), false).await.unwrap();
    let data = after.data.unwrap();
    assert!(!data.contains_key("alpha-only"));
    assert_eq!(data["beta-only"], "2");

    // A plain update by another manager then conflicts with an apply too.
    api.patch(
        "ssa",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"beta-only": "edited"}})),
    )
    .await
    .unwrap();
    let (status, _, message) = code(
        apply("beta", json!({"shared": "b", "beta-only": "2"}), false)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(message.contains(".data.beta-only"), "{message}");

    // An apply body in YAML proper, not the JSON kube sends, is read as YAML.
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps/ssa?fieldManager=gamma",
        server.url
    );
    let yaml =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  gamma-only: '3'\n";
    let code = tokio::task::spawn_blocking(move || {
        ureq::patch(&url)
            .header("Content-Type", "application/apply-patch+yaml")
            .send(yaml)
            .map(|response| response.status().as_u16())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code, 200);
    let applied = api.get("ssa").await.unwrap().data.unwrap();
    assert_eq!(applied["gamma-only"], "3");
    assert_eq!(applied["beta-only"], "edited");
}

#[tokio::test]
async fn generation_follows_spec_and_status_has_its_own_subresource() {
    let server = FakeApiServer::start().await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
        "status": {"replicas": 9}
    }))
    .unwrap();
    let created = api
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is not set through the object"
    );

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes leave generation alone"
    );
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    assert!(
        scaled.status.is_none(),
        "writes to the object ignore status"
    );

    let with_status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 3}, "spec": {"replicas": 50}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.status.unwrap().replicas, Some(3));
    assert_eq!(
        with_status.spec.replicas,
        Some(3),
        "writes to /status change only status"
    );
    assert_eq!(with_status.metadata.generation, Some(2));
}

#[tokio::test]
async fn strategic_merge_json_and_merge_patches() {
    let server = FakeApiServer::start().await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]}, {"name": "sidecar", "image": "busybox"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    // What the reload feature writes: one pod-template annotation.
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"metadata": {"annotations": {"secretsync.io/secret-hash": "abc"}},
            "spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}})))
        .await
        .unwrap();
    let template = patched.spec.template;
    assert_eq!(
        template.metadata.unwrap().annotations.unwrap()["secretsync.io/secret-hash"],
        "abc"
    );
    let containers = template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2, "containers merge by name");
    let env: Vec<String> = containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env, ["A", "B"]);

    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(json!([
            {"op": "replace", "path": "/spec/template/metadata/annotations/secretsync.io~1secret-hash", "value": "def"}
        ])).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        patched.spec.template.metadata.unwrap().annotations.unwrap()["secretsync.io/secret-hash"],
        "def"
    );
    let failed = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "test", "path": "/spec/replicas", "value": 99}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(failed).0, 422);

    let merged = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.annotations.unwrap()["a"], "b");
}

#[tokio::test]
async fn owned_objects_are_collected_and_finalizers_hold_deletion() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let owned = |name: &str, owner: &ConfigMap| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
            "stringData": {"k": "v"}}))
        .unwrap()
    };
    for (policy, params) in [
        ("background", DeleteParams::background()),
        ("foreground", DeleteParams::foreground()),
    ] {
        let owner = owners
            .create(
                &PostParams::default(),
                &config_map(&format!("owner-{policy}"), &[]),
            )
            .await
            .unwrap();
        secrets
            .create(
                &PostParams::default(),
                &owned(&format!("dep-{policy}"), &owner),
            )
            .await
            .unwrap();
        owners
            .delete(&format!("owner-{policy}"), &params)
            .await
            .unwrap();
        assert_eq!(
            code(secrets.get(&format!("dep-{policy}")).await.unwrap_err()).0,
            404,
            "{policy}"
        );
        assert_eq!(
            code(owners.get(&format!("owner-{policy}")).await.unwrap_err()).0,
            404,
            "{policy}"
        );
    }

    let owner = owners
        .create(&PostParams::default(), &config_map("owner-orphan", &[]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &owned("dep-orphan", &owner))
        .await
        .unwrap();
    owners
        .delete("owner-orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    let orphan = secrets.get("dep-orphan").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(
        orphan.data.unwrap()["k"].0,
        b"v",
        "stringData is stored as data"
    );

    let held: Secret = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &held).await.unwrap();
    secrets
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let held = secrets.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "deletion waits for the finalizer"
    );
    secrets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        code(secrets.get("held").await.unwrap_err()).0,
        404,
        "gone once the last finalizer is removed"
    );

    // Immutable Secrets refuse new data.
    let frozen: Secret = serde_json::from_value(
        json!({"metadata": {"name": "frozen"}, "immutable": true, "stringData": {"k": "v"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &frozen)
        .await
        .unwrap();
    let refused = secrets
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"k": "w"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(refused).0, 422);
}

#[tokio::test]
async fn selectors_and_pages() {
    let server = FakeApiServer::start().await;
    let api: Api<Secret> = Api::namespaced(server.client(), "default");
    for (name, tier) in [
        ("s1", Some("web")),
        ("s2", Some("db")),
        ("s3", Some("web")),
        ("s4", None),
        ("s5", Some("cache")),
    ] {
        let mut labels = json!({"secretsync.io/managed": "true"});
        if let Some(tier) = tier {
            labels["tier"] = json!(tier);
        }
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "type": "Opaque"}),
        )
        .unwrap();
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
    let names = |list: kube::api::ObjectList<Secret>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect()
    };
    let cases = [
        (ListParams::default().labels("tier=web"), vec!["s1", "s3"]),
        (
            ListParams::default().labels("tier in (web,db)"),
            vec!["s1", "s2", "s3"],
        ),
        (
            ListParams::default().labels("tier notin (web),secretsync.io/managed=true"),
            vec!["s2", "s4", "s5"],
        ),
        (ListParams::default().labels("!tier"), vec!["s4"]),
        (
            ListParams::default().labels("tier,tier!=db"),
            vec!["s1", "s3", "s5"],
        ),
        (ListParams::default().fields("metadata.name=s2"), vec!["s2"]),
        (
            ListParams::default()
                .fields("metadata.name!=s2,type=Opaque")
                .labels("tier"),
            vec!["s1", "s3", "s5"],
        ),
    ];
    for (params, expected) in cases {
        assert_eq!(
            names(api.list(&params).await.unwrap()),
            expected,
            "{:?} {:?}",
            params.label_selector,
            params.field_selector
        );
    }
    let mut pages = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = api.list(&params).await.unwrap();
        let token = page.metadata.continue_.clone();
        pages.push(names(page));
        match token {
            Some(token) if !token.is_empty() => {
                params = ListParams::default().limit(2).continue_token(&token)
            }
            _ => break,
        }
    }
    assert_eq!(pages, [vec!["s1", "s2"], vec!["s3", "s4"], vec!["s5"]]);
}

#[tokio::test]
async fn token_requests_return_a_jwt_for_the_audiences() {
    let server = FakeApiServer::start().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "default");
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "reader",
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/reader"}}}))
    .unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["sts.amazonaws.com", "extra"], "expirationSeconds": 600}});
    let response: Value = accounts
        .create_subresource("token", "reader", &PostParams::default(), &request)
        .await
        .unwrap();
    let token = response["status"]["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT-shaped");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com", "extra"]));
    assert_eq!(claims["sub"], "system:serviceaccount:default:reader");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600);
    assert!(response["status"]["expirationTimestamp"].is_string());

    let missing = accounts
        .create_subresource::<_, Value>("token", "nobody", &PostParams::default(), &request)
        .await
        .unwrap_err();
    assert_eq!(code(missing).0, 404);
}

fn crd_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("secretsync.io", "v1", kind), plural)
}

async fn apply_crds(server: &FakeApiServer) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(server.client());
    for crd in secretsync::api::crds() {
        api.create(&PostParams::default(), &crd).await.unwrap();
    }
}

#[tokio::test]
async fn custom_resources_are_served_pruned_and_defaulted_per_their_crd() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let resource = crd_resource("ExternalSecret", "externalsecrets");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let body = |extra: Value| -> DynamicObject {
        let mut spec = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]});
        if let Value::Object(extra) = extra {
            spec.as_object_mut().unwrap().extend(extra);
        }
        serde_json::from_value(json!({"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret", "metadata": {"name": "es"}, "spec": spec})).unwrap()
    };
    assert_eq!(
        code(
            api.create(&PostParams::default(), &body(json!({})))
                .await
                .unwrap_err()
        )
        .0,
        404,
        "not served before its CRD"
    );

    apply_crds(&server).await;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let group = discovery
        .get("secretsync.io")
        .expect("the group is discovered");
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    assert!(
        kinds.contains(&"ExternalSecret".to_string())
            && kinds.contains(&"ClusterSecretStore".to_string()),
        "{kinds:?}"
    );

    let created = api
        .create(&PostParams::default(), &body(json!({"surprise": 1})))
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["refreshInterval"], "1h",
        "schema defaults are filled in"
    );
    assert_eq!(created.data["spec"]["target"]["creationPolicy"], "Owner");
    assert!(
        created.data["spec"].get("surprise").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let mut strict_body = body(json!({"surprise": 1}));
    strict_body.metadata.name = Some("strict".into());
    let params = PatchParams::apply("test").validation_strict();
    let refused = api
        .patch("strict", &params, &Patch::Apply(&strict_body))
        .await
        .unwrap_err();
    let (status, _, message) = code(refused);
    assert_eq!(status, 400);
    assert!(
        message.contains("unknown field \"spec.surprise\""),
        "{message}"
    );

    let status_patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}});
    let with_status = api
        .patch_status("es", &PatchParams::default(), &Patch::Merge(status_patch))
        .await
        .unwrap();
    assert_eq!(
        with_status.data["status"]["conditions"][0]["reason"],
        "SecretSynced"
    );
    assert_eq!(with_status.metadata.generation, Some(1));
}

#[tokio::test]
async fn injected_faults_fail_or_delay_the_next_matching_requests() {
    let server = FakeApiServer::start().await;
    let api: Api<Secret> = Api::namespaced(server.client(), "default");
    server.faults().fail_next(2, Some("GET"), "/secrets", 500);
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()).0,
        500
    );
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()).0,
        500
    );
    api.list(&ListParams::default()).await.unwrap();

    server.faults().fail_next(1, Some("POST"), "/secrets", 409);
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert_eq!(
        code(
            api.create(&PostParams::default(), &secret)
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    api.create(&PostParams::default(), &secret).await.unwrap();

    server
        .faults()
        .delay_next(1, None, "/secrets/x", Duration::from_millis(300));
    let started = std::time::Instant::now();
    api.get("x").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// The next event a watcher reports, as text.
async fn next_event(
    events: &mut futures::stream::BoxStream<
        'static,
        Result<watcher::Event<Secret>, watcher::Error>,
    >,
) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::Apply(s)))) | Ok(Some(Ok(watcher::Event::InitApply(s)))) => {
                return format!("apply {}", s.metadata.name.unwrap());
            }
            Ok(Some(Ok(watcher::Event::Delete(s)))) => {
                return format!("delete {}", s.metadata.name.unwrap());
            }
            Ok(Some(Ok(watcher::Event::Init))) => {}
            Ok(Some(Ok(watcher::Event::InitDone))) => return "init done".to_string(),
            other => panic!("watcher failed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn kube_runtime_watchers_see_only_what_their_selector_selects() {
    let server = FakeApiServer::start().await;
    let api: Api<Secret> = Api::namespaced(server.client(), "default");
    let secret = |name: &str, managed: bool| -> Secret {
        let labels = if managed {
            json!({"secretsync.io/managed": "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    };
    api.create(&PostParams::default(), &secret("before", true))
        .await
        .unwrap();
    api.create(&PostParams::default(), &secret("ignored", false))
        .await
        .unwrap();

    let config = watcher::Config::default().labels("secretsync.io/managed=true");
    let mut events = watcher(api.clone(), config).boxed();
    assert_eq!(
        next_event(&mut events).await,
        "apply before",
        "the initial list holds only selected objects"
    );
    assert_eq!(next_event(&mut events).await, "init done");

    api.create(&PostParams::default(), &secret("later", true))
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, "apply later");
    api.patch(
        "ignored",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"secretsync.io/managed": "true"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        "apply ignored",
        "labelled into the selection: an ADDED"
    );
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"secretsync.io/managed": null}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        "delete before",
        "labelled out of the selection: a DELETED"
    );
    api.delete("later", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_event(&mut events).await, "delete later");
}

#[tokio::test]
async fn metadata_only_reads_carry_metadata_and_never_data() {
    let server = FakeApiServer::start().await;
    let api: Api<Secret> = Api::namespaced(server.client(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "labels": {"app": "db"}, "annotations": {"note": "n"}},
        "stringData": {"password": "metadata-only-secret"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();

    let one = api.get_metadata("db").await.unwrap();
    assert_eq!(one.metadata.labels.unwrap()["app"], "db");
    assert_eq!(one.types.unwrap().kind, "PartialObjectMetadata");
    let listed = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("db"));

    // What the server sends, as text: no data at all.
    let raw = raw_metadata_list(&server, "/api/v1/namespaces/default/secrets").await;
    assert!(raw.contains("PartialObjectMetadataList"), "{raw}");
    let encoded = base64::engine::general_purpose::STANDARD.encode("metadata-only-secret");
    assert!(
        !raw.contains("metadata-only-secret") && !raw.contains(&encoded),
        "{raw}"
    );

    let metadata: Api<kube::core::PartialObjectMeta<Secret>> =
        Api::namespaced(server.client(), "default");
    let mut events = watcher(metadata, watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitApply(m)))) => seen.push(m.metadata.name.unwrap()),
            Ok(Some(Ok(watcher::Event::InitDone))) => {
                api.patch(
                    "db",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
                )
                .await
                .unwrap();
            }
            Ok(Some(Ok(watcher::Event::Apply(m)))) => {
                assert_eq!(m.metadata.labels.unwrap()["v"], "2");
                seen.push(m.metadata.name.unwrap());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("metadata watcher failed: {other:?}"),
        }
    }
    assert_eq!(seen, ["db", "db"]);
}

/// A metadata-only list as raw text, to see exactly what went over the wire.
async fn raw_metadata_list(server: &FakeApiServer, path: &str) -> String {
    let url = format!("{}{path}", server.url);
    tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .header(
                "Accept",
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            )
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_patches_and_deletes() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let kubectl = |args: &[&str]| {
        let kubeconfig = kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let output = tokio::process::Command::new(peers::kubectl())
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .await
                .unwrap_or_else(|e| panic!("{}", peers::missing(&peers::kubectl(), e)));
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "kubectl {args:?}: {stderr}");
            stdout
        }
    };
    let out = kubectl(&["apply", "-f", "crds/"]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/externalsecrets.secretsync.io created"
        ),
        "{out}"
    );
    let out = kubectl(&["apply", "-f", "examples/"]).await;
    assert!(
        out.contains("externalsecret.secretsync.io/database created"),
        "{out}"
    );

    let out = kubectl(&["get", "externalsecrets", "-n", "demo"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STORE", "REFRESH", "READY", "REASON", "AGE"],
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("database") && l.contains(" fake ") && l.contains(" 1h ")),
        "{out}"
    );
    // One object by name: the same printer columns as the list (issue 32),
    // not kubectl's NAME and AGE fallback.
    let out = kubectl(&["get", "externalsecret", "database", "-n", "demo"]).await;
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STORE", "REFRESH", "READY", "REASON", "AGE"],
        "{out}"
    );
    assert_eq!(lines.len(), 2, "one row: {out}");
    assert!(
        lines[1].starts_with("database ")
            && lines[1].contains(" fake ")
            && lines[1].contains(" 1h "),
        "{out}"
    );

    // kubectl's typed commands speak protobuf, which the fake does not; the
    // manifest they make offline applies as JSON.
    let manifest = kubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        "demo",
        "--from-literal=password=from-kubectl",
        "--dry-run=client",
        "-o",
        "yaml",
    ])
    .await;
    let file = dir.path().join("secret.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = kubectl(&["apply", "-f", file.to_str().unwrap()]).await;
    assert!(out.contains("secret/db created"), "{out}");
    let out = kubectl(&["get", "secret", "db", "-n", "demo", "-o", "yaml"]).await;
    let secret: Secret = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"from-kubectl");

    kubectl(&[
        "patch",
        "secret",
        "db",
        "-n",
        "demo",
        "-p",
        r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
    ])
    .await;
    kubectl(&[
        "patch",
        "externalsecret",
        "database",
        "-n",
        "demo",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"refreshInterval":"5m"}}"#,
    ])
    .await;
    let out = kubectl(&[
        "get",
        "externalsecret",
        "database",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.refreshInterval} {.metadata.generation}",
    ])
    .await;
    assert_eq!(out, "5m 2");
    let out = kubectl(&[
        "get",
        "secret",
        "db",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.patched}",
    ])
    .await;
    assert_eq!(out, "yes");

    let out = kubectl(&["delete", "externalsecret", "database", "-n", "demo"]).await;
    assert!(out.contains("deleted"), "{out}");
    let out = kubectl(&["get", "externalsecrets", "-n", "demo", "-o", "name"]).await;
    assert!(
        !out.contains("database") && out.contains("app-config"),
        "{out}"
    );
    kubectl(&["delete", "namespace", "demo"]).await;
    let out = kubectl(&["get", "secrets", "-A", "-o", "name"]).await;
    assert!(
        out.trim().is_empty(),
        "the namespace took its contents: {out}"
    );
}

#[tokio::test]
async fn events_of_both_apis_and_leases_are_served() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let server = FakeApiServer::start().await;
    let client = server.client();

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Updated", "action": "Sync", "reportingController": "secretsync", "reportingInstance": "secretsync-0",
        "regarding": {"kind": "ExternalSecret", "name": "app", "namespace": "default"}, "type": "Normal", "note": "Secret updated"}))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let listed = events
        .list(&ListParams::default().fields("regarding.name=app"))
        .await
        .unwrap();
    assert_eq!(listed.items[0].reason.as_deref(), Some("Updated"));

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let event: CoreEvent = serde_json::from_value(json!({"metadata": {"name": "c1"}, "reason": "Created",
        "involvedObject": {"kind": "ExternalSecret", "name": "app"}, "message": "m", "type": "Normal"}))
    .unwrap();
    core.create(&PostParams::default(), &event).await.unwrap();
    assert_eq!(
        core.get("c1").await.unwrap().reason.as_deref(),
        Some("Created")
    );

    let leases: Api<Lease> = Api::namespaced(client, "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "secretsync-leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("secretsync-leader", &PostParams::default(), &taken)
        .await
        .unwrap();
    // A second instance racing with a stale copy loses, which leader election relies on.
    let (status, _, _) = code(
        leases
            .replace("secretsync-leader", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert_eq!(
        leases
            .get("secretsync-leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
}

/// kubectl with this test's fake as its cluster; panics with kubectl's words
/// unless it succeeds.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn new(server: &FakeApiServer, dir: &std::path::Path) -> Kubectl {
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig);
        Kubectl { kubeconfig }
    }

    async fn output(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(peers::kubectl())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .await
            .unwrap_or_else(|e| panic!("{}", peers::missing(&peers::kubectl(), e)))
    }

    async fn run(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// kubectl's error text for a command that must fail.
    async fn fails(&self, args: &[&str]) -> String {
        let output = self.output(args).await;
        assert!(!output.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_commands_speak_protobuf() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(&server, dir.path());
    let client = server.client();

    let out = kubectl.run(&["create", "namespace", "team"]).await;
    assert!(out.contains("namespace/team created"), "{out}");
    kubectl
        .run(&[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team",
            "--type=example.com/db",
            "--from-literal=password=from-protobuf",
            "--from-literal=user=app",
        ])
        .await;
    kubectl
        .run(&["label", "secret", "db", "-n", "team", "tier=data"])
        .await;
    kubectl
        .run(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal=mode=fast",
        ])
        .await;
    kubectl
        .run(&["create", "serviceaccount", "app", "-n", "team"])
        .await;
    let token = kubectl
        .run(&[
            "create",
            "token",
            "app",
            "-n",
            "team",
            "--audience=sts.amazonaws.com",
        ])
        .await;

    let secret = Api::<Secret>::namespaced(client.clone(), "team")
        .get("db")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["password"].0, b"from-protobuf");
    assert_eq!(data["user"].0, b"app");
    assert_eq!(secret.type_.as_deref(), Some("example.com/db"));
    assert_eq!(secret.metadata.labels.unwrap()["tier"], "data");
    let settings = Api::<ConfigMap>::namespaced(client.clone(), "team")
        .get("settings")
        .await
        .unwrap();
    assert_eq!(settings.data.unwrap()["mode"], "fast");
    Api::<ServiceAccount>::namespaced(client.clone(), "team")
        .get("app")
        .await
        .unwrap();
    let claims = token.trim().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    assert_eq!(claims["sub"], "system:serviceaccount:team:app");

    // A kind the fake does not decode says so, rather than storing garbage.
    use k8s_pb::api::apps::v1::Deployment as PbDeployment;
    let body = apiserver::protobuf::encode("apps/v1", "Deployment", &PbDeployment::default());
    let url = format!("{}/apis/apps/v1/namespaces/team/deployments", server.url);
    let answer = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .header("Content-Type", apiserver::protobuf::CONTENT_TYPE)
            .config()
            .http_status_as_error(false)
            .build()
            .send(&body[..])
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        answer.contains("not apps/v1 Deployment: send JSON"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_to_either_api_are_read_from_both_and_by_kubectl() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(&server, dir.path());
    let client = server.client();

    // As kube's event recorder writes it.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event: Event = serde_json::from_value(json!({"metadata": {"name": "app.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Updated", "action": "Sync",
        "reportingController": "secretsync.io/controller", "reportingInstance": "secretsync-0",
        "regarding": {"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret", "name": "app", "namespace": "default"},
        "type": "Normal", "note": "Secret app updated"}))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let seen = core.get("app.1").await.unwrap();
    assert_eq!(seen.reason.as_deref(), Some("Updated"));
    assert_eq!(seen.message.as_deref(), Some("Secret app updated"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("app"));
    assert_eq!(
        seen.reporting_component.as_deref(),
        Some("secretsync.io/controller")
    );
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=app"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    // A series update through the events API is seen by both.
    events
        .patch(
            "app.1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        core.get("app.1").await.unwrap().series.unwrap().count,
        Some(2)
    );

    // And the other way round.
    let old: CoreEvent = serde_json::from_value(json!({"metadata": {"name": "pod.1"}, "reason": "Pulled",
        "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"}, "message": "image pulled",
        "type": "Normal", "lastTimestamp": "2026-01-01T00:00:00Z"}))
    .unwrap();
    core.create(&PostParams::default(), &old).await.unwrap();
    let new_view = events.get("pod.1").await.unwrap();
    assert_eq!(new_view.note.as_deref(), Some("image pulled"));
    assert_eq!(new_view.regarding.unwrap().name.as_deref(), Some("web-0"));
    let listed = events
        .list(&ListParams::default().fields("regarding.name=web-0"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    let out = kubectl.run(&["get", "events", "-n", "default"]).await;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("Updated")
            && l.contains("externalsecret/app")
            && l.contains("Secret app updated")),
        "{out}"
    );
    assert!(out.contains("pod/web-0"), "{out}");
    let out = kubectl
        .run(&["get", "events.events.k8s.io", "-n", "default", "-o", "name"])
        .await;
    assert!(out.contains("app.1") && out.contains("pod.1"), "{out}");
}

#[tokio::test]
async fn openapi_v2_is_served_in_protobuf_and_json_for_older_kubectl() {
    use prost::Message;
    let server = FakeApiServer::start().await;
    let url = format!("{}/openapi/v2", server.url);
    let (content_type, body, json_body) = tokio::task::spawn_blocking(move || {
        let mut answer = ureq::get(&url)
            .header(
                "Accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
            .call()
            .unwrap();
        let content_type = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let body = answer.body_mut().read_to_vec().unwrap();
        let json_body = ureq::get(&url)
            .header("Accept", "application/json")
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        (content_type, body, json_body)
    })
    .await
    .unwrap();
    // A media type Go's mime parser accepts, as the real server sends it.
    assert_eq!(
        content_type,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert!(!content_type.contains('@'));
    let document = apiserver::openapi_v2::Document::decode(&body[..]).unwrap();
    assert_eq!(document.swagger, "2.0");
    assert!(document.encoded_len() > 0);
    let json: Value = serde_json::from_str(&json_body).unwrap();
    assert_eq!(json["swagger"], "2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_runs_check_everything_and_store_nothing() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(&server, dir.path());
    let client = server.client();
    kubectl.run(&["apply", "-f", "crds/"]).await;
    kubectl
        .run(&[
            "wait",
            "--for",
            "condition=Established",
            "--recursive=false",
            "-f",
            "crds/",
        ])
        .await;
    kubectl.run(&["create", "namespace", "demo"]).await;
    let before = server.resource_version();

    let out = kubectl
        .run(&["apply", "--dry-run=server", "-f", "examples/"])
        .await;
    assert!(
        out.contains("externalsecret.secretsync.io/database created (server dry run)"),
        "{out}"
    );
    assert_eq!(
        server.resource_version(),
        before,
        "a dry run stored something"
    );
    let stores = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "demo",
        &crd_resource("SecretStore", "secretstores"),
    );
    assert!(stores.get_opt("fake").await.unwrap().is_none());

    // What a dry run answers is what a real write would store, defaults included.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "demo");
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
            .unwrap();
    let shown = secrets
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &secret,
        )
        .await
        .unwrap();
    assert_eq!(shown.data.unwrap()["k"].0, b"v");
    assert!(secrets.get_opt("s").await.unwrap().is_none());
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let version = server.resource_version();
    secrets
        .delete(
            "s",
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("s").await.unwrap().is_some());
    assert_eq!(server.resource_version(), version);

    // A dry run is checked as a write is: a typo in a built-in kind is refused.
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\nspec:\n  replica: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx, securityContex: {}}]\n",
    )
    .unwrap();
    let error = kubectl
        .fails(&["apply", "--dry-run=server", "-f", typo.to_str().unwrap()])
        .await;
    assert!(
        error.contains(r#"unknown field "spec.replica""#)
            && error.contains(r#"unknown field "spec.template.spec.containers[0].securityContex""#),
        "{error}"
    );
    // Without strict validation the unknown field is dropped, as the real server does.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "demo");
    let raw: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}))
    .unwrap();
    deployments
        .create(&PostParams::default(), &raw)
        .await
        .unwrap();
    let (status, _, message) = code(
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": "two"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400);
    assert!(message.contains("spec.replicas"), "{message}");

    let url = format!("{}/api/v1/namespaces/demo/secrets?dryRun=Maybe", server.url);
    let answer = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json")
            .send(r#"{"metadata": {"name": "x"}}"#)
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        answer.contains(r#"Unsupported value: \"Maybe\""#),
        "{answer}"
    );
}

/// The code block of README.md that follows `marker`.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has {marker:?}"));
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block's end");
    rest[open..open + close].to_string()
}

/// README's "Try it by hand", run line by line as written (in one bash, so
/// `export` and `&` work as in a terminal): the fake is this test's, `cargo
/// run --` is the built binary, and the addresses are this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_hand_run_steps_work_as_written() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("fake.kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let block = readme_block("Try it by hand");
    let (first, rest) = block
        .split_once("# shell 2:\n")
        .expect("the block has a second shell");
    assert!(first.contains("cargo run --example apiserver -- --kubeconfig /tmp/fake.kubeconfig"));
    let health = format!("127.0.0.1:{}", free_port());
    let script = rest
        .replace("/tmp/fake.kubeconfig", kubeconfig.to_str().unwrap())
        .replace(
            "cargo run -- ",
            &format!("{} ", env!("CARGO_BIN_EXE_secretsync")),
        )
        .replace("127.0.0.1:8080", &health);
    let kubectl_dir = peers::kubectl()
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let path = match kubectl_dir {
        Some(dir) => format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .env("PATH", path)
        .env("RUST_LOG", "info")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}: {stdout}\n{stderr}",
        output.status
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("database "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        row.contains("True") && row.contains("SecretSynced"),
        "{row}"
    );
    // The list's row, then the same row again from the get by name.
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with("database ") && l.contains("True") && l.contains("SecretSynced"))
        .count();
    assert_eq!(rows, 2, "{stdout}");
    assert!(
        stdout.contains("\nappLAST SEEN"),
        "the username, then the events: {stdout}"
    );
    assert!(
        stdout.contains("externalsecret/database"),
        "an event names the ExternalSecret: {stdout}"
    );
    assert!(stdout.contains("secret/db created"), "{stdout}");
    let secret = Api::<Secret>::namespaced(server.client(), "scratch")
        .get("db")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");
}

/// A free port (the support module's, which apiserver.rs does not include).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
