//! PushSecret scenarios: the real controller binary against the test bed
//! (fake API server, or a real cluster with `SECRETSYNC_E2E_KUBECONFIG`),
//! AWS served by moto and read back with the SDK. Each scenario ends by
//! scanning the controller's logs for the values it pushed.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::types::Tag;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, condition, eventually, gone};
use support::controller::RunningController;
use support::moto::{Moto, count, sdk_config};

const WAIT: Duration = Duration::from_secs(30);

struct Bed {
    cluster: Cluster,
    moto: Moto,
    controller: RunningController,
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    group: &'static str,
}

impl Bed {
    async fn start(scenario: &str, eso: bool) -> Bed {
        let moto = Moto::start();
        let cluster = Cluster::start(scenario).await;
        cluster.apply_crds().await;
        let mut args = vec!["--lease-namespace".to_string(), cluster.namespace.clone()];
        let group = if eso {
            cluster
                .apply_these_crds(
                    secretsync::api::eso_compat_crds()
                        .into_iter()
                        .chain(secretsync::api::eso_compat_push_crds())
                        .collect(),
                )
                .await;
            args.push("--eso-compat".into());
            "external-secrets.io"
        } else {
            "secretsync.io"
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let controller = RunningController::start(
            &cluster.kubeconfig,
            &args,
            &[
                ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDSCENARIO"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        );
        let config = sdk_config(&moto.endpoint).await;
        Bed {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            cluster,
            moto,
            controller,
            group,
        }
    }

    fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    fn api(&self, kind: &str, plural: &str, version: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, version, kind),
            plural,
        );
        Api::namespaced_with(self.cluster.client.clone(), self.namespace(), &resource)
    }

    fn push_secrets(&self) -> Api<DynamicObject> {
        self.api("PushSecret", "pushsecrets", "v1alpha1")
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), self.namespace())
    }

    async fn apply(
        &self,
        api: &Api<DynamicObject>,
        kind: &str,
        version: &str,
        mut manifest: Value,
    ) {
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        manifest["apiVersion"] = json!(format!("{}/{version}", self.group));
        manifest["kind"] = json!(kind);
        api.patch(
            &name,
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// A SecretStore of this namespace for `service`.
    async fn store(&self, name: &str, service: &str, extra: Value) {
        let mut aws = json!({"service": service, "region": "eu-west-1"});
        if let (Some(aws), Some(extra)) = (aws.as_object_mut(), extra.as_object()) {
            aws.extend(extra.clone());
        }
        self.apply(
            &self.api("SecretStore", "secretstores", "v1"),
            "SecretStore",
            "v1",
            json!({"metadata": {"name": name}, "spec": {"provider": {"aws": aws}}}),
        )
        .await;
    }

    async fn push_secret(&self, name: &str, spec: Value) {
        self.apply(
            &self.push_secrets(),
            "PushSecret",
            "v1alpha1",
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    async fn source(&self, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": data,
        }))
        .unwrap();
        self.secrets()
            .patch(
                name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
    }

    /// Waits for the PushSecret's Ready condition with `reason` and a message
    /// holding `says`; gives the status.
    async fn ready(&self, name: &str, reason: &str, says: &str) -> Value {
        match condition(&self.push_secrets(), name, "Ready", reason, says, WAIT).await {
            Some(status) => status,
            None => {
                let object = self.push_secrets().get(name).await.ok();
                panic!(
                    "PushSecret {name}: no Ready {reason} {says:?}; its status: {}",
                    object
                        .map(|o| o.data["status"].to_string())
                        .unwrap_or_default()
                )
            }
        }
    }

    /// A Secrets Manager value as text (string or binary), once it is `want`.
    async fn remote_becomes(&self, key: &str, want: &str) {
        let found = eventually(WAIT, || async {
            let value = self.sm_value(key).await?;
            (value == want).then_some(())
        })
        .await;
        assert!(
            found.is_some(),
            "{key} never became the pushed value; it is {:?}",
            self.sm_value(key).await.is_some()
        );
    }

    async fn sm_value(&self, key: &str) -> Option<String> {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(key)
            .send()
            .await
            .ok()?;
        match (out.secret_string(), out.secret_binary()) {
            (Some(text), _) => Some(text.to_string()),
            (None, Some(blob)) => Some(String::from_utf8_lossy(blob.as_ref()).into_owned()),
            _ => None,
        }
    }

    async fn sm_tags(&self, key: &str) -> BTreeMap<String, String> {
        let out = self
            .sm
            .describe_secret()
            .secret_id(key)
            .send()
            .await
            .unwrap();
        out.tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    async fn sm_gone(&self, key: &str) -> bool {
        eventually(WAIT, || async {
            match self.sm.describe_secret().secret_id(key).send().await {
                Err(_) => Some(()),
                Ok(out) => out.deleted_date().map(|_| ()),
            }
        })
        .await
        .is_some()
    }

    async fn finish(self, values: &[&str]) {
        self.controller.assert_never_logged(values);
        self.cluster.finish().await;
    }
}

const PASSWORD: &str = "Push-pw-Alpha-4471";
const ROTATED: &str = "Push-pw-Bravo-9120";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_pushed_and_a_rotation_writes_each_remote_key_once() {
    let bed = Bed::start("push-rotation", false).await;
    bed.store("aws", "SecretsManager", json!({})).await;
    bed.store("ssm", "ParameterStore", json!({})).await;
    bed.source("db-creds", &[("username", "app"), ("password", PASSWORD)])
        .await;
    bed.push_secret(
        "db",
        json!({
            "refreshInterval": "1h",
            "secretStoreRefs": [{"name": "aws"}, {"name": "ssm"}],
            "selector": {"secret": {"name": "db-creds"}},
            "data": [
                {"match": {"secretKey": "password", "remoteRef": {"remoteKey": "/app/db-password"}}},
                {"match": {"remoteRef": {"remoteKey": "/app/db-all"}}},
                {"match": {"secretKey": "password", "remoteRef": {"remoteKey": "/app/config", "property": "db.password"}}},
            ],
        }),
    )
    .await;
    let status = bed.ready("db", "Synced", "").await;
    let synced = &status["syncedPushSecrets"];
    for store in ["SecretStore/aws", "SecretStore/ssm"] {
        for key in ["/app/db-password", "/app/db-all", "/app/config/db.password"] {
            assert!(synced[store][key].is_object(), "{store} {key} in {synced}");
        }
    }
    assert_eq!(
        bed.sm_value("/app/db-password").await.as_deref(),
        Some(PASSWORD)
    );
    assert_eq!(
        bed.sm_value("/app/db-all").await.as_deref(),
        Some(format!(r#"{{"password":"{PASSWORD}","username":"app"}}"#).as_str())
    );
    assert_eq!(
        bed.sm_value("/app/config").await.as_deref(),
        Some(format!(r#"{{"db":{{"password":"{PASSWORD}"}}}}"#).as_str())
    );
    let tags = bed.sm_tags("/app/db-password").await;
    assert_eq!(
        tags.get("managed-by").map(String::as_str),
        Some("secretsync")
    );
    assert_eq!(
        tags.get("secretsync.io/owner"),
        Some(&format!("{}/db", bed.namespace()))
    );
    let parameter = bed
        .ssm
        .get_parameter()
        .name("/app/db-password")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        parameter.parameter().and_then(|p| p.value()),
        Some(PASSWORD)
    );

    // The source changes: pushed from the watch (the interval is an hour),
    // one write per remote key whose value changed.
    bed.moto.start_recording();
    bed.source("db-creds", &[("username", "app"), ("password", ROTATED)])
        .await;
    bed.remote_becomes("/app/db-password", ROTATED).await;
    bed.remote_becomes(
        "/app/config",
        &format!(r#"{{"db":{{"password":"{ROTATED}"}}}}"#),
    )
    .await;
    let rotated = eventually(WAIT, || async {
        let p = bed
            .ssm
            .get_parameter()
            .name("/app/db-all")
            .send()
            .await
            .ok()?;
        let value = p.parameter()?.value()?.to_string();
        value.contains("UHVzaC1wdy1CcmF2by05MTIw").then_some(())
    })
    .await;
    assert!(
        rotated.is_some(),
        "the SSM copy (values base64, as ESO) follows"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.PutSecretValue"),
        3,
        "one write per changed SM key"
    );
    assert_eq!(
        count(&recorded, "AmazonSSM.PutParameter"),
        3,
        "one write per changed parameter"
    );
    assert_eq!(count(&recorded, "secretsmanager.CreateSecret"), 0);

    // The same spec again, forced: everything is read, nothing written.
    bed.moto.start_recording();
    bed.push_secrets()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recorded = bed.moto.stop_recording();
    assert!(
        count(&recorded, "secretsmanager.DescribeSecret") >= 1,
        "the forced push looked"
    );
    assert_eq!(
        count(&recorded, "secretsmanager.PutSecretValue"),
        0,
        "an unchanged value is not written"
    );
    assert_eq!(count(&recorded, "AmazonSSM.PutParameter"), 0);
    assert_eq!(
        count(&recorded, "secretsmanager.GetSecretValue"),
        0,
        "a steady push compares versions only"
    );

    // Someone changes the remote value: the next push puts it back.
    bed.sm
        .put_secret_value()
        .secret_id("/app/db-password")
        .secret_string("tampered")
        .send()
        .await
        .unwrap();
    bed.push_secrets()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "2"}}})),
        )
        .await
        .unwrap();
    bed.remote_becomes("/app/db-password", ROTATED).await;
    bed.finish(&[PASSWORD, ROTATED]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_secret_it_does_not_own_is_never_written() {
    let bed = Bed::start("push-ownership", false).await;
    bed.store("aws", "SecretsManager", json!({})).await;
    bed.source("creds", &[("password", PASSWORD)]).await;
    bed.sm
        .create_secret()
        .name("shared/unmanaged")
        .secret_string("someone-elses")
        .send()
        .await
        .unwrap();
    bed.sm
        .create_secret()
        .name("shared/other-owner")
        .secret_string("another-tenants")
        .tags(Tag::builder().key("managed-by").value("secretsync").build())
        .tags(
            Tag::builder()
                .key("secretsync.io/owner")
                .value("team-b/db")
                .build(),
        )
        .send()
        .await
        .unwrap();
    bed.sm
        .create_secret()
        .name("shared/from-eso")
        .secret_string("old")
        .tags(
            Tag::builder()
                .key("managed-by")
                .value("external-secrets")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let one = |key: &str| {
        json!({
            "secretStoreRefs": [{"name": "aws"}],
            "selector": {"secret": {"name": "creds"}},
            "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": key}}}],
        })
    };
    bed.push_secret("unmanaged", one("shared/unmanaged")).await;
    bed.push_secret("taken", one("shared/other-owner")).await;
    bed.push_secret("migrated", one("shared/from-eso")).await;
    bed.ready("unmanaged", "Errored", "not managed by secretsync")
        .await;
    bed.ready("taken", "Errored", "is pushed by PushSecret team-b/db")
        .await;
    bed.ready("migrated", "Synced", "").await;
    assert_eq!(
        bed.sm_value("shared/unmanaged").await.as_deref(),
        Some("someone-elses")
    );
    assert_eq!(
        bed.sm_value("shared/other-owner").await.as_deref(),
        Some("another-tenants")
    );
    assert_eq!(
        bed.sm_value("shared/from-eso").await.as_deref(),
        Some(PASSWORD)
    );
    let tags = bed.sm_tags("shared/from-eso").await;
    assert_eq!(
        tags.get("secretsync.io/owner"),
        Some(&format!("{}/migrated", bed.namespace()))
    );
    bed.finish(&[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_removes_only_what_it_created() {
    let bed = Bed::start("push-deletion", true).await;
    bed.store(
        "aws",
        "SecretsManager",
        json!({"secretsManager": {"forceDeleteWithoutRecovery": true}}),
    )
    .await;
    bed.store("ssm", "ParameterStore", json!({})).await;
    bed.source("creds", &[("a", PASSWORD), ("b", ROTATED)])
        .await;
    bed.sm
        .create_secret()
        .name("keep/unrelated")
        .secret_string("x")
        .send()
        .await
        .unwrap();
    let spec = |keys: &[&str]| {
        let data: Vec<Value> = keys
            .iter()
            .map(|k| json!({"match": {"secretKey": k, "remoteRef": {"remoteKey": format!("/del/{k}")}}}))
            .collect();
        json!({
            "deletionPolicy": "Delete",
            "secretStoreRefs": [{"name": "aws"}, {"name": "ssm"}],
            "selector": {"secret": {"name": "creds"}},
            "data": data,
        })
    };
    bed.push_secret("pusher", spec(&["a", "b"])).await;
    bed.ready("pusher", "Synced", "").await;
    let object = bed.push_secrets().get("pusher").await.unwrap();
    assert!(
        object
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "pushsecret.externalsecrets.io/finalizer"),
        "ESO's finalizer on ESO's object"
    );
    assert_eq!(bed.sm_value("/del/b").await.as_deref(), Some(ROTATED));

    // b leaves the spec: its remote secret and parameter go, a stays.
    bed.push_secret("pusher", spec(&["a"])).await;
    assert!(
        bed.sm_gone("/del/b").await,
        "a dropped entry's secret is deleted"
    );
    let parameter_gone = eventually(WAIT, || async {
        bed.ssm
            .get_parameter()
            .name("/del/b")
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(parameter_gone.is_some(), "and its parameter");
    assert_eq!(bed.sm_value("/del/a").await.as_deref(), Some(PASSWORD));
    let listed = eventually(WAIT, || async {
        let status = bed.push_secrets().get("pusher").await.ok()?.data["status"].clone();
        let aws = status["syncedPushSecrets"]["SecretStore/aws"]
            .as_object()?
            .clone();
        (!aws.contains_key("/del/b") && aws.contains_key("/del/a")).then_some(())
    })
    .await;
    assert!(
        listed.is_some(),
        "the status no longer lists the dropped entry"
    );

    // The PushSecret goes: what it pushed goes, nothing else.
    bed.push_secrets()
        .delete("pusher", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        gone(&bed.push_secrets(), "pusher", WAIT).await,
        "the finalizer is removed"
    );
    assert!(bed.sm_gone("/del/a").await);
    assert!(bed.ssm.get_parameter().name("/del/a").send().await.is_err());
    assert_eq!(bed.sm_value("keep/unrelated").await.as_deref(), Some("x"));
    bed.finish(&[PASSWORD, ROTATED]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_secrets_fail_alone_naming_the_field() {
    let bed = Bed::start("push-bad-input", false).await;
    bed.store("aws", "SecretsManager", json!({})).await;
    bed.store("ssm", "ParameterStore", json!({})).await;
    let big = "B".repeat(70 * 1024);
    let eight = "E".repeat(8 * 1024);
    bed.source(
        "creds",
        &[("password", PASSWORD), ("big", &big), ("eight", &eight)],
    )
    .await;
    let entry = |store: &str, key: &str, remote: &str, metadata: Value| {
        let mut data = json!({"match": {"secretKey": key, "remoteRef": {"remoteKey": remote}}});
        if !metadata.is_null() {
            data["metadata"] = metadata;
        }
        json!({
            "secretStoreRefs": [{"name": store}],
            "selector": {"secret": {"name": "creds"}},
            "data": [data],
        })
    };
    bed.push_secret(
        "good",
        entry("aws", "password", "bad-input/good", Value::Null),
    )
    .await;
    let mut other_namespace = entry("aws", "password", "bad-input/x", Value::Null);
    other_namespace["selector"]["secret"]["name"] = json!("team-b/creds");
    bed.push_secret("other-namespace", other_namespace).await;
    bed.push_secret("bad-key", entry("aws", "password", "bad key!", Value::Null))
        .await;
    bed.push_secret("too-big", entry("aws", "big", "bad-input/big", Value::Null))
        .await;
    bed.push_secret(
        "too-big-ssm",
        entry("ssm", "eight", "/bad-input/eight", Value::Null),
    )
    .await;
    bed.push_secret(
        "wrong-metadata",
        entry(
            "aws",
            "password",
            "bad-input/meta",
            json!({"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata",
                   "spec": {"secretType": "SecureString"}}),
        ),
    )
    .await;
    bed.ready("good", "Synced", "").await;
    bed.ready("other-namespace", "Errored", "spec.selector.secret.name")
        .await;
    bed.ready(
        "bad-key",
        "Errored",
        "spec.data[0].match.remoteRef.remoteKey",
    )
    .await;
    bed.ready("too-big", "Errored", "65536").await;
    bed.ready("too-big-ssm", "Errored", "4096").await;
    bed.ready(
        "wrong-metadata",
        "Errored",
        "spec.data[0].metadata.spec.secretType",
    )
    .await;
    for key in ["bad-input/x", "bad-input/big", "bad-input/meta"] {
        assert_eq!(bed.sm_value(key).await, None, "{key} was never written");
    }
    assert!(
        bed.ssm
            .get_parameter()
            .name("/bad-input/eight")
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        bed.sm_value("bad-input/good").await.as_deref(),
        Some(PASSWORD)
    );
    let statuses = bed.push_secrets().list(&Default::default()).await.unwrap();
    let text = serde_json::to_string(
        &statuses
            .items
            .iter()
            .map(|o| &o.data["status"])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains(&big[..64]),
        "no value in any status"
    );
    bed.finish(&[PASSWORD, &big[..64], &eight[..64]]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_push_secret_follows_the_namespaces_it_picks() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;
    let bed = Bed::start("push-cluster", false).await;
    let client = bed.cluster.client.clone();
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("secretsync.io", "v1alpha1", kind),
            plural,
        )
    };
    let stores: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("secretsync.io", "v1", "ClusterSecretStore"),
            "clustersecretstores",
        ),
    );
    bed.apply(
        &stores,
        "ClusterSecretStore",
        "v1",
        json!({"metadata": {"name": format!("{}-aws", bed.namespace())},
               "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let base: String = bed.namespace().chars().take(50).collect();
    let names: Vec<String> = ["a", "b"].iter().map(|s| format!("{base}-{s}")).collect();
    let label = format!("{base}-push");
    for name in &names {
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"push": label}}}))
                .unwrap();
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), name);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "app-creds"}, "stringData": {"password": format!("{PASSWORD}-{name}")},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    // b already has a PushSecret of that name, not written by the cluster one.
    let in_b: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &names[1],
        &resource("PushSecret", "pushsecrets"),
    );
    bed.apply(
        &in_b,
        "PushSecret",
        "v1alpha1",
        json!({"metadata": {"name": "per-namespace"}, "spec": {
            "secretStoreRefs": [{"name": "none"}], "selector": {"secret": {"name": "app-creds"}}}}),
    )
    .await;
    let cluster_push: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("ClusterPushSecret", "clusterpushsecrets"),
    );
    let cps_name = format!("{base}-cps");
    bed.apply(
        &cluster_push,
        "ClusterPushSecret",
        "v1alpha1",
        json!({"metadata": {"name": cps_name}, "spec": {
            "pushSecretName": "per-namespace",
            "namespaceSelectors": [{"matchLabels": {"push": label}}],
            "pushSecretSpec": {
                "secretStoreRefs": [{"name": format!("{}-aws", bed.namespace()), "kind": "ClusterSecretStore"}],
                "selector": {"secret": {"name": "app-creds"}},
                "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": format!("cps/{base}")}}}],
            }}}),
    )
    .await;
    let status = eventually(WAIT, || async {
        let status = cluster_push.get(&cps_name).await.ok()?.data["status"].clone();
        (status["provisionedNamespaces"] == json!([names[0]])
            && status["failedNamespaces"][0]["namespace"] == json!(names[1]))
        .then_some(status)
    })
    .await
    .expect("a provisioned, b failed");
    assert!(
        status["failedNamespaces"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("push secret already exists in namespace"))
    );
    assert_eq!(status["conditions"][0]["status"], "False");
    bed.remote_becomes(&format!("cps/{base}"), &format!("{PASSWORD}-{}", names[0]))
        .await;

    // a leaves the selection: its PushSecret goes.
    namespaces
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"push": "no"}}})),
        )
        .await
        .unwrap();
    let in_a: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &names[0],
        &resource("PushSecret", "pushsecrets"),
    );
    assert!(
        gone(&in_a, "per-namespace", WAIT).await,
        "a's child is deleted"
    );
    let _ = cluster_push
        .delete(&cps_name, &DeleteParams::default())
        .await;
    let _ = stores
        .delete(
            &format!("{}-aws", bed.namespace()),
            &DeleteParams::default(),
        )
        .await;
    for name in &names {
        let _ = namespaces.delete(name, &DeleteParams::background()).await;
    }
    bed.finish(&[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_password_is_pushed_and_read_back_in_another_namespace() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;
    let bed = Bed::start("push-generated", false).await;
    let client = bed.cluster.client.clone();
    bed.store("aws", "SecretsManager", json!({})).await;
    let generators = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        bed.namespace(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("generators.secretsync.io", "v1alpha1", "Password"),
            "passwords",
        ),
    );
    let mut password = json!({"apiVersion": "generators.secretsync.io/v1alpha1", "kind": "Password",
        "metadata": {"name": "db-password"}, "spec": {"length": 32, "symbols": 0}});
    generators
        .patch(
            "db-password",
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&password),
        )
        .await
        .unwrap();
    // (a) generator -> ExternalSecret -> Secret -> PushSecret -> Secrets Manager
    bed.apply(
        &bed.api("ExternalSecret", "externalsecrets", "v1"),
        "ExternalSecret",
        "v1",
        json!({"metadata": {"name": "db"}, "spec": {
            "refreshInterval": "0",
            "secretStoreRef": {"name": "aws"},
            "dataFrom": [{"sourceRef": {"generatorRef": {
                "apiVersion": "generators.secretsync.io/v1alpha1", "kind": "Password", "name": "db-password"}}}],
        }}),
    )
    .await;
    bed.push_secret(
        "db",
        json!({
            "secretStoreRefs": [{"name": "aws"}],
            "selector": {"secret": {"name": "db"}},
            "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": "/shared/db-password"}}}],
        }),
    )
    .await;
    let generated = eventually(WAIT, || async {
        let secret = bed.secrets().get_opt("db").await.ok()??;
        let value = secret.data?.get("password")?.0.clone();
        String::from_utf8(value).ok()
    })
    .await
    .expect("the ExternalSecret writes the generated password");
    assert_eq!(generated.len(), 32);
    bed.ready("db", "Synced", "").await;
    bed.remote_becomes("/shared/db-password", &generated).await;

    // Another namespace reads it back through its own store.
    let other = format!(
        "{}-reader",
        bed.namespace().chars().take(50).collect::<String>()
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": other}})).unwrap();
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("secretsync.io", "v1", kind),
            plural,
        )
    };
    let stores: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &other,
        &resource("SecretStore", "secretstores"),
    );
    bed.apply(
        &stores,
        "SecretStore",
        "v1",
        json!({"metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}}}),
    )
    .await;
    let readers: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &other,
        &resource("ExternalSecret", "externalsecrets"),
    );
    bed.apply(
        &readers,
        "ExternalSecret",
        "v1",
        json!({"metadata": {"name": "db"}, "spec": {
            "secretStoreRef": {"name": "aws"},
            "data": [{"secretKey": "password", "remoteRef": {"key": "/shared/db-password"}}],
        }}),
    )
    .await;
    let theirs: Api<Secret> = Api::namespaced(client.clone(), &other);
    let read_back = eventually(WAIT, || async {
        let secret = theirs.get_opt("db").await.ok()??;
        String::from_utf8(secret.data?.get("password")?.0.clone()).ok()
    })
    .await;
    assert_eq!(
        read_back.as_deref(),
        Some(generated.as_str()),
        "the same password, read back"
    );

    // A PushSecret may push a generator's value itself; IfNotExists keeps the
    // first one whatever later runs make.
    bed.push_secret(
        "direct",
        json!({
            "updatePolicy": "IfNotExists",
            "secretStoreRefs": [{"name": "aws"}],
            "selector": {"generatorRef": {"kind": "Password", "name": "db-password"}},
            "data": [{"match": {"secretKey": "password", "remoteRef": {"remoteKey": "/gen/direct"}}}],
        }),
    )
    .await;
    bed.ready(
        "direct",
        "Synced",
        "Existing secrets in providers unchanged",
    )
    .await;
    let first = bed.sm_value("/gen/direct").await.expect("pushed");
    assert_eq!(first.len(), 32);
    bed.push_secrets()
        .patch(
            "direct",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.sm_value("/gen/direct").await.as_deref(),
        Some(first.as_str())
    );
    password["spec"]["length"] = json!(0);
    generators
        .patch(
            "db-password",
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&password),
        )
        .await
        .unwrap();
    bed.push_secrets()
        .patch(
            "direct",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "2"}}})),
        )
        .await
        .unwrap();
    bed.ready("direct", "Errored", "spec.selector.generatorRef: Password")
        .await;
    let _ = namespaces.delete(&other, &DeleteParams::background()).await;
    bed.finish(&[&generated, &first]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_sources_picked_by_label_with_each_services_metadata() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let bed = Bed::start("push-selectors", false).await;
    for (name, service) in [("sm", "SecretsManager"), ("ps", "ParameterStore")] {
        bed.apply(
            &bed.api("SecretStore", "secretstores", "v1"),
            "SecretStore",
            "v1",
            json!({"metadata": {"name": name, "labels": {"push-to": "yes"}},
                   "spec": {"provider": {"aws": {"service": service, "region": "eu-west-1"}}}}),
        )
        .await;
    }
    bed.store("not-picked", "SecretsManager", json!({})).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "labelled", "labels": {"app": "api"}},
        "stringData": {"token": PASSWORD},
    }))
    .unwrap();
    bed.secrets()
        .patch(
            "labelled",
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:DeleteSecret","Resource":"*"}]}"#;
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "policies"}, "data": {"policy.json": policy},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(bed.cluster.client.clone(), bed.namespace())
        .patch(
            "policies",
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&map),
        )
        .await
        .unwrap();
    let envelope = |spec: Value| json!({"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata", "spec": spec});
    // Each store takes the entry whose metadata is of its service.
    bed.push_secret(
        "by-label-sm",
        json!({
            "secretStoreRefs": [{"labelSelector": {"matchLabels": {"push-to": "yes"}}}],
            "selector": {"secret": {"selector": {"matchLabels": {"app": "api"}}}},
            "data": [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "/labels/token"}}}],
        }),
    )
    .await;
    bed.push_secret(
        "with-metadata",
        json!({
            "secretStoreRefs": [{"name": "sm"}],
            "selector": {"secret": {"name": "labelled"}},
            "data": [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "/meta/token"}},
                      "metadata": envelope(json!({
                          "secretPushFormat": "string", "description": "api token",
                          "tags": {"team": "api"},
                          "resourcePolicy": {"policySourceRef": {"kind": "ConfigMap", "name": "policies", "key": "policy.json"}},
                      }))}],
        }),
    )
    .await;
    bed.push_secret(
        "secure-parameter",
        json!({
            "secretStoreRefs": [{"name": "ps"}],
            "selector": {"secret": {"name": "labelled"}},
            "data": [{"match": {"secretKey": "token", "remoteRef": {"remoteKey": "/meta/token"}},
                      "metadata": envelope(json!({"secretType": "SecureString", "tags": {"team": "api"}}))}],
        }),
    )
    .await;
    let status = bed.ready("by-label-sm", "Synced", "").await;
    let stores: Vec<&String> = status["syncedPushSecrets"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        stores,
        ["SecretStore/ps", "SecretStore/sm"],
        "the two labelled stores only"
    );
    assert_eq!(
        bed.sm_value("/labels/token").await.as_deref(),
        Some(PASSWORD)
    );
    let parameter = bed
        .ssm
        .get_parameter()
        .name("/labels/token")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        parameter.parameter().and_then(|p| p.value()),
        Some(PASSWORD)
    );

    bed.ready("with-metadata", "Synced", "").await;
    let described = bed
        .sm
        .describe_secret()
        .secret_id("/meta/token")
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some("api token"));
    let tags = bed.sm_tags("/meta/token").await;
    assert_eq!(tags.get("team").map(String::as_str), Some("api"));
    let value = bed
        .sm
        .get_secret_value()
        .secret_id("/meta/token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        value.secret_string(),
        Some(PASSWORD),
        "secretPushFormat: string"
    );
    let put = bed
        .sm
        .get_resource_policy()
        .secret_id("/meta/token")
        .send()
        .await
        .unwrap();
    assert!(
        put.resource_policy()
            .is_some_and(|p| p.contains("DeleteSecret")),
        "the ConfigMap's policy"
    );

    bed.ready("secure-parameter", "Synced", "").await;
    let parameter = bed
        .ssm
        .get_parameter()
        .name("/meta/token")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let parameter = parameter.parameter().unwrap();
    assert_eq!(parameter.r#type().map(|t| t.as_str()), Some("SecureString"));
    assert_eq!(parameter.value(), Some(PASSWORD));
    bed.finish(&[PASSWORD]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_shapes_the_push_and_a_deleted_source_deletes_what_was_pushed() {
    let bed = Bed::start("push-template", false).await;
    bed.store(
        "aws",
        "SecretsManager",
        json!({"secretsManager": {"forceDeleteWithoutRecovery": true}}),
    )
    .await;
    bed.source("db-creds", &[("user", "app"), ("password", PASSWORD)])
        .await;
    bed.push_secret(
        "url",
        json!({
            "deletionPolicy": "Delete",
            "secretStoreRefs": [{"name": "aws"}],
            "selector": {"secret": {"name": "db-creds"}},
            "template": {"data": {"url": "postgres://{{ .user }}:{{ .password }}@db:5432/app"}},
            "data": [{"match": {"secretKey": "url", "remoteRef": {"remoteKey": "/tpl/url"}}}],
        }),
    )
    .await;
    bed.ready("url", "Synced", "").await;
    let url = format!("postgres://app:{PASSWORD}@db:5432/app");
    assert_eq!(
        bed.sm_value("/tpl/url").await.as_deref(),
        Some(url.as_str())
    );

    // The source goes: what was pushed goes with it (deletionPolicy Delete).
    bed.secrets()
        .delete("db-creds", &DeleteParams::default())
        .await
        .unwrap();
    let status = bed
        .ready("url", "SourceDeleted", "provider secrets cleaned up")
        .await;
    assert!(
        bed.sm_gone("/tpl/url").await,
        "the pushed secret is deleted"
    );
    assert_eq!(status["conditions"][0]["status"], "False");
    assert!(
        status["syncedPushSecrets"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "nothing listed as pushed any more: {status}"
    );
    bed.finish(&[PASSWORD, &url]).await;
}
