//! Scenarios that run unchanged on the fake API server (default) and on a real
//! cluster (`SECRETSYNC_E2E_KUBECONFIG=path cargo test --test integration scenarios::`).
//! They use only the kube client; fault-injection steps skip on a real cluster.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use support::cluster::{Cluster, gone};

fn managed_secret(name: &str, password: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"secretsync.io/managed": "true"}},
        "stringData": {"password": password},
    })
}

/// What the controller does with a Secret: apply it as `secretsync`, find it by
/// its label, change it, and keep another manager from silently taking it.
#[tokio::test]
async fn managed_secrets_are_applied_listed_and_owned() {
    let cluster = Cluster::start("managed").await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let ours = PatchParams::apply("secretsync").force();
    secrets
        .patch("db", &ours, &Patch::Apply(managed_secret("db", "first")))
        .await
        .unwrap();
    let unmanaged = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other"}, "stringData": {"k": "v"}});
    secrets
        .patch("other", &ours, &Patch::Apply(unmanaged))
        .await
        .unwrap();

    let managed = secrets
        .list(&ListParams::default().labels("secretsync.io/managed=true"))
        .await
        .unwrap();
    let names: Vec<String> = managed
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["db"]);

    let updated = secrets
        .patch("db", &ours, &Patch::Apply(managed_secret("db", "second")))
        .await
        .unwrap();
    assert_eq!(updated.data.unwrap()["password"].0, b"second");

    let theirs = PatchParams::apply("someone-else");
    let error = secrets
        .patch("db", &theirs, &Patch::Apply(managed_secret("db", "hijack")))
        .await
        .unwrap_err();
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected a conflict, got {other}"),
    }
    cluster.finish().await;
}

/// An owned Secret goes away with its ExternalSecret (creationPolicy Owner).
#[tokio::test]
async fn an_owned_secret_goes_with_its_external_secret() {
    let cluster = Cluster::start("owner").await;
    cluster.apply_crds().await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("secretsync.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    let external_secrets: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource);
    let manifest = json!({
        "apiVersion": "secretsync.io/v1", "kind": "ExternalSecret", "metadata": {"name": "app"},
        "spec": {"secretStoreRef": {"name": "store"}, "data": [{"secretKey": "k", "remoteRef": {"key": "r"}}]}
    });
    let es = external_secrets
        .patch(
            "app",
            &PatchParams::apply("secretsync-e2e"),
            &Patch::Apply(manifest),
        )
        .await
        .unwrap();
    assert_eq!(
        es.data["spec"]["target"]["creationPolicy"], "Owner",
        "the CRD's default"
    );

    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut owned = managed_secret("app", "v");
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "secretsync.io/v1", "kind": "ExternalSecret",
        "name": "app", "uid": es.metadata.uid, "controller": true, "blockOwnerDeletion": true}]);
    secrets
        .patch(
            "app",
            &PatchParams::apply("secretsync"),
            &Patch::Apply(owned),
        )
        .await
        .unwrap();

    external_secrets
        .delete("app", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        gone(&secrets, "app", Duration::from_secs(60)).await,
        "the garbage collector removed the owned Secret"
    );
    cluster.finish().await;
}

/// A failing API call is an error the caller sees, and the next call works.
#[tokio::test]
async fn a_failing_api_call_is_reported_and_the_next_one_works() {
    let cluster = Cluster::start("faults").await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    // kube's client retries 429, 503 and 504 by itself; a 500 reaches the caller.
    if let Some(faults) = cluster.faults_for("fail the next list of Secrets with 500") {
        faults.fail_next(1, Some("GET"), "/secrets", 500);
        let error = secrets.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(error, kube::Error::Api(ref s) if s.code == 500),
            "{error}"
        );
    }
    secrets.list(&ListParams::default()).await.unwrap();
    cluster.finish().await;
}
