//! Bitnami SealedSecrets in the controller (`--bitnami-compat`): the real
//! controller binary against the test bed (fake API server, or a real cluster
//! with `SECRETSYNC_E2E_KUBECONFIG`), keys made by the `openssl` CLI as
//! Bitnami's controller stores them, values sealed by PyPI's `kubesealpy` and
//! npm's `@linode/kubeseal-encrypt`, implementations nobody here wrote. Each
//! scenario ends by scanning the controller's logs for the values.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::bitnami::{self, Key};
use support::cluster::{Cluster, eventually};
use support::controller::RunningController;
use support::peers;

const WAIT: Duration = Duration::from_secs(30);
const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";

/// A SealedSecret sealed by kubesealpy, as a JSON value.
fn kubesealpy(
    cert: &Path,
    name: &str,
    namespace: &str,
    scope: &str,
    data: &[(&str, &str)],
    labels: Value,
) -> Value {
    let yaml = bitnami::kubesealpy(cert, name, namespace, scope, data, labels);
    serde_yaml_ng::from_str(&yaml).expect("kubesealpy prints YAML")
}

struct Bed {
    cluster: Cluster,
    controller: Option<RunningController>,
    dir: tempfile::TempDir,
}

impl Bed {
    /// The compat CRD, the keys (`keys`, oldest first) in the scenario's
    /// namespace, then the controller with `--bitnami-compat`.
    async fn start(scenario: &str, keys: &[(&str, &Key)], dir: tempfile::TempDir) -> Bed {
        let mut bed = Bed::prepare(scenario, keys, dir).await;
        bed.start_controller();
        bed
    }

    /// All but the controller.
    async fn prepare(scenario: &str, keys: &[(&str, &Key)], dir: tempfile::TempDir) -> Bed {
        let cluster = Cluster::start(scenario).await;
        cluster.apply_crds().await;
        cluster
            .apply_these_crds(secretsync::api::bitnami_compat_crds())
            .await;
        let bed_secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        for (name, key) in keys {
            bed_secrets
                .create(&PostParams::default(), &key_secret(name, key))
                .await
                .unwrap();
            // Distinct creation times: the newest key is tried first.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        Bed {
            cluster,
            controller: None,
            dir,
        }
    }

    fn start_controller(&mut self) {
        self.controller = Some(RunningController::start(
            &self.cluster.kubeconfig,
            &[
                "--lease-namespace",
                &self.cluster.namespace,
                "--no-leader-election",
                "--bitnami-compat",
            ],
            &[],
        ));
    }

    fn controller(&self) -> &RunningController {
        self.controller.as_ref().expect("the controller runs")
    }

    fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    fn sealed_secrets(&self, namespace: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("bitnami.com", "v1alpha1", "SealedSecret"),
            "sealedsecrets",
        );
        Api::namespaced_with(self.cluster.client.clone(), namespace, &resource)
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), namespace)
    }

    async fn create_secret(&self, namespace: &str, manifest: Value) {
        let secret: Secret = serde_json::from_value(manifest).unwrap();
        self.secrets(namespace)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// `kubectl apply -f` of the manifest as a file, as a team applies it.
    fn kubectl_apply(&self, manifest: &Value) {
        let file = self.dir.path().join("sealed.yaml");
        std::fs::write(&file, serde_yaml_ng::to_string(manifest).unwrap()).unwrap();
        self.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// kubectl against the test bed: its stdout.
    fn kubectl(&self, args: &[&str]) -> String {
        let kubectl = peers::kubectl();
        let output = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}", peers::missing(&kubectl, e)));
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    async fn apply(&self, manifest: &Value) {
        let namespace = manifest["metadata"]["namespace"].as_str().unwrap();
        let name = manifest["metadata"]["name"].as_str().unwrap();
        self.sealed_secrets(namespace)
            .patch(
                name,
                &PatchParams::apply("scenario").force(),
                &Patch::Apply(manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply SealedSecret {namespace}/{name}: {e}"));
    }

    /// The Secret once `check` holds for it.
    async fn secret_where(
        &self,
        namespace: &str,
        name: &str,
        check: impl Fn(&Secret) -> bool,
    ) -> Secret {
        let api = self.secrets(namespace);
        eventually(WAIT, || async {
            api.get_opt(name).await.unwrap().filter(|s| check(s))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "Secret {namespace}/{name} never got as expected; now: {:?}\n{}",
                futures::executor::block_on(self.secrets(namespace).get_opt(name))
                    .ok()
                    .flatten()
                    .map(|s| (s.metadata.labels, s.metadata.owner_references, s.type_)),
                self.controller().log_text()
            )
        })
    }

    /// The `Synced` condition once its status is `value` and the status has
    /// seen the object's generation.
    async fn synced(&self, namespace: &str, name: &str, value: &str) -> Value {
        let api = self.sealed_secrets(namespace);
        eventually(WAIT, || async {
            let object = api.get(name).await.ok()?;
            let status = &object.data["status"];
            let condition = status["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Synced")?
                .clone();
            let seen = status["observedGeneration"].as_i64() == object.metadata.generation;
            (condition["status"] == value && seen).then_some(condition)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "SealedSecret {namespace}/{name} never Synced={value}\n{}",
                self.controller().log_text()
            )
        })
    }

    fn metrics(&self) -> String {
        ureq::get(&format!("{}/metrics", self.controller().health))
            .call()
            .expect("metrics are served")
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// `secretsync_bitnami_unseals_total`: SealedSecrets decrypted so far.
    fn unseals(&self) -> u64 {
        metric(&self.metrics(), "secretsync_bitnami_unseals_total")
    }

    async fn finish(mut self, values: &[&str]) {
        if let Some(controller) = self.controller.as_mut() {
            controller.terminate();
            controller.assert_never_logged(values);
        }
        self.cluster.finish().await;
    }
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}")) as u64
}

fn key_secret(name: &str, key: &Key) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {KEY_LABEL: "active"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.key": key.key_pem(), "tls.crt": key.cert_pem()},
    }))
    .unwrap()
}

fn text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default()
}

/// The ciphertext of `key` in a manifest with one byte of the sealed AES part changed.
fn tampered(manifest: &Value, key: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let text = manifest["spec"]["encryptedData"][key].as_str().unwrap();
    let mut bytes = engine.decode(text).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    engine.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn bitnami_sealed_secrets_unseal_as_bitnamis_controller_did() {
    let dir = tempfile::tempdir().unwrap();
    let old = bitnami::key(dir.path(), "old", true);
    let renewed = bitnami::key(dir.path(), "renewed", false);
    let bed = Bed::start(
        "bitnami",
        &[
            ("sealed-secrets-keyold01", &old),
            ("sealed-secrets-keynew02", &renewed),
        ],
        dir,
    )
    .await;
    let ns = bed.namespace().to_string();

    // Strict, sealed to the old key by kubesealpy, applied with kubectl as
    // the file stands (`creationTimestamp: null` in its template and all),
    // with a label, a type and a template over the values.
    let mut db = kubesealpy(
        &old.cert_file,
        "db",
        &ns,
        "strict",
        &[("user", "app-user-41"), ("password", "Bitnami-pw-1")],
        json!({"team": "payments"}),
    );
    db["spec"]["template"]["type"] = json!("kubernetes.io/basic-auth");
    db["spec"]["template"]["data"] =
        json!({"dsn": "postgres://{{ .user }}:{{ .password }}@db:5432/app"});
    db["spec"]["encryptedData"]["username"] = db["spec"]["encryptedData"]["user"].clone();
    // kubesealpy seals per key; a copied ciphertext of the same scope decrypts
    // under another key name, as with Bitnami (the label binds the place, not the key).
    bed.kubectl_apply(&db);
    let secret = bed
        .secret_where(&ns, "db", |s| text(s, "password") == "Bitnami-pw-1")
        .await;
    assert_eq!(text(&secret, "user"), "app-user-41");
    assert_eq!(text(&secret, "username"), "app-user-41");
    assert_eq!(
        text(&secret, "dsn"),
        "postgres://app-user-41:Bitnami-pw-1@db:5432/app"
    );
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["team"],
        "payments",
        "labels come from the template"
    );
    let sealed_db = bed.sealed_secrets(&ns).get("db").await.unwrap();
    assert_eq!(
        secret.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "bitnami.com/v1alpha1".into(),
            kind: "SealedSecret".into(),
            name: "db".into(),
            uid: sealed_db.metadata.uid.clone().unwrap(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        "the owner reference Bitnami's controller writes"
    );
    let synced = bed.synced(&ns, "db", "True").await;
    // kubectl's table, with Bitnami's printer columns (STATUS, SYNCED); the
    // list, since the test bed's table of one object has no printer columns
    // (issue 32).
    let table = bed.kubectl(&["get", "sealedsecrets.bitnami.com", "-n", &ns]);
    let row = table
        .lines()
        .find(|l| l.starts_with("db "))
        .unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(1), Some("True"), "{table}");
    assert!(synced["lastUpdateTime"].is_string() && synced["lastTransitionTime"].is_string());
    assert_eq!(
        synced.get("message"),
        None,
        "Bitnami's Synced=True has no message"
    );

    // Namespace-wide and cluster-wide, sealed to the renewed key: any name
    // in the namespace, any namespace.
    let mut wide = kubesealpy(
        &renewed.cert_file,
        "sealed-as-another-name",
        &ns,
        "namespace-wide",
        &[("token", "Wide-token-2")],
        json!({}),
    );
    wide["metadata"]["name"] = json!("api-token");
    bed.apply(&wide).await;
    let other = format!("{ns}-b");
    Api::<Namespace>::all(bed.cluster.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other}})).unwrap(),
        )
        .await
        .unwrap();
    let mut everywhere = kubesealpy(
        &renewed.cert_file,
        "anything",
        "anywhere",
        "cluster-wide",
        &[("license", "Cluster-lic-3")],
        json!({}),
    );
    everywhere["metadata"]["namespace"] = json!(other);
    everywhere["metadata"]["name"] = json!("license");
    bed.apply(&everywhere).await;
    // One value sealed by @linode/kubeseal-encrypt (namespace-wide, old key).
    let linode_value = bitnami::linode(&old.public_file, &ns, "Linode-val-4");
    bed.apply(&json!({
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "from-linode", "namespace": ns,
                     "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true"}},
        "spec": {"encryptedData": {"value": linode_value}},
    }))
    .await;
    bed.secret_where(&ns, "api-token", |s| text(s, "token") == "Wide-token-2")
        .await;
    bed.secret_where(&other, "license", |s| text(s, "license") == "Cluster-lic-3")
        .await;
    bed.secret_where(&ns, "from-linode", |s| text(s, "value") == "Linode-val-4")
        .await;

    // A deleted Secret is made again, as Bitnami's controller does.
    bed.secrets(&ns)
        .delete("api-token", &Default::default())
        .await
        .unwrap();
    bed.secret_where(&ns, "api-token", |s| text(s, "token") == "Wide-token-2")
        .await;

    // Sealed for namespace B (strict), applied in A: refused, naming the field;
    // no Secret is made.
    let mut misplaced = kubesealpy(
        &renewed.cert_file,
        "moved",
        &other,
        "strict",
        &[("password", "Moved-pw-5")],
        json!({}),
    );
    misplaced["metadata"]["namespace"] = json!(ns);
    bed.apply(&misplaced).await;
    let failed = bed.synced(&ns, "moved", "False").await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("spec.encryptedData.password") && message.contains("no key could decrypt"),
        "{message}"
    );
    assert!(bed.secrets(&ns).get_opt("moved").await.unwrap().is_none());

    // Tampered: the existing Secret stays as it was.
    let mut broken = db.clone();
    broken["spec"]["encryptedData"]["password"] = json!(tampered(&db, "password"));
    bed.apply(&broken).await;
    let failed = bed.synced(&ns, "db", "False").await;
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("spec.encryptedData.password") && message.contains("altered"),
        "{message}"
    );
    assert_eq!(
        text(&bed.secrets(&ns).get("db").await.unwrap(), "password"),
        "Bitnami-pw-1",
        "the last good Secret stays"
    );
    bed.apply(&db).await;
    bed.synced(&ns, "db", "True").await;

    // Decrypting is once per change: touching every SealedSecret (a label,
    // no spec change) decrypts nothing again.
    let before = bed.unseals();
    for name in ["db", "api-token", "from-linode"] {
        bed.sealed_secrets(&ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bed.unseals(), before, "a resync decrypts nothing again");

    // Someone else's Secret is not taken, until it is annotated `managed`.
    bed.create_secret(
        &ns,
        json!({"metadata": {"name": "taken"},
                "stringData": {"password": "Hand-made-6"}}),
    )
    .await;
    let mut taken = kubesealpy(
        &renewed.cert_file,
        "taken",
        &ns,
        "strict",
        &[("password", "Sealed-pw-7")],
        json!({}),
    );
    bed.apply(&taken).await;
    let failed = bed.synced(&ns, "taken", "False").await;
    assert_eq!(
        failed["message"],
        "Resource \"taken\" already exists and is not managed by SealedSecret"
    );
    assert_eq!(
        text(&bed.secrets(&ns).get("taken").await.unwrap(), "password"),
        "Hand-made-6"
    );
    bed.secrets(&ns)
        .patch(
            "taken",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"sealedsecrets.bitnami.com/managed": "true"}}}),
            ),
        )
        .await
        .unwrap();
    // Touching the SealedSecret (an annotation) asks again.
    taken["metadata"]["annotations"] = json!({"retry": "1"});
    bed.apply(&taken).await;
    let adopted = bed
        .secret_where(&ns, "taken", |s| text(s, "password") == "Sealed-pw-7")
        .await;
    assert_eq!(adopted.metadata.owner_references.unwrap().len(), 1);

    // `patch`: the unsealed keys go on top of the Secret's own; `skip-set-owner-references`.
    bed.create_secret(
        &ns,
        json!({"metadata": {"name": "patched",
                "annotations": {"sealedsecrets.bitnami.com/patch": "true"}},
                "stringData": {"kept": "Own-key-8"}}),
    )
    .await;
    let mut patched = kubesealpy(
        &renewed.cert_file,
        "patched",
        &ns,
        "strict",
        &[("added", "Patch-in-9")],
        json!({}),
    );
    patched["spec"]["template"]["metadata"]["annotations"] =
        json!({"sealedsecrets.bitnami.com/skip-set-owner-references": "true"});
    bed.apply(&patched).await;
    let secret = bed
        .secret_where(&ns, "patched", |s| text(s, "added") == "Patch-in-9")
        .await;
    assert_eq!(text(&secret, "kept"), "Own-key-8");
    assert_eq!(secret.metadata.owner_references, None);

    // An object the schema would refuse, stored before it tightened (only the
    // fake API server takes one): it fails alone, naming the field.
    if bed.cluster.fake().is_some() {
        bed.apply(&json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "garbled", "namespace": ns},
            "spec": {"encryptedData": {"password": 42}},
        }))
        .await;
        let failed = bed.synced(&ns, "garbled", "False").await;
        let message = failed["message"].as_str().unwrap();
        assert!(message.contains("spec.encryptedData.password"), "{message}");
    }

    // A file moved to age at the team's pace: `reseal --from-bitnami`, then
    // the age SealedSecret of the same name takes the Secret over, so that
    // pruning the Bitnami object deletes nothing.
    let identity = bed.dir.path().join("cluster.key");
    let recipient = support::controller::cli(&["keygen", "-o", identity.to_str().unwrap()], "");
    bed.create_secret(
        &ns,
        json!({"metadata": {"name": "secretsync-sealing-keys"},
                "stringData": {"cluster.key": std::fs::read_to_string(&identity).unwrap()}}),
    )
    .await;
    let bitnami_file = bed.dir.path().join("db.bitnami.yaml");
    std::fs::write(&bitnami_file, serde_yaml_ng::to_string(&db).unwrap()).unwrap();
    let old_key = bed.dir.path().join("old.pem");
    let age_manifest = support::controller::cli(
        &[
            "reseal",
            "--from-bitnami",
            old_key.to_str().unwrap(),
            "-f",
            bitnami_file.to_str().unwrap(),
            "-r",
            recipient.trim(),
        ],
        "",
    );
    assert!(!age_manifest.contains("Bitnami-pw-1") && !age_manifest.contains("app-user-41"));
    let age_manifest: Value = serde_yaml_ng::from_str(&age_manifest).unwrap();
    assert_eq!(age_manifest["apiVersion"], "secretsync.io/v1");
    bed.kubectl_apply(&age_manifest);
    let taken_over = bed
        .secret_where(&ns, "db", |s| {
            s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.api_version == "secretsync.io/v1")
        })
        .await;
    assert_eq!(text(&taken_over, "password"), "Bitnami-pw-1");
    assert_eq!(
        text(&taken_over, "dsn"),
        "postgres://app-user-41:Bitnami-pw-1@db:5432/app",
        "the template came along"
    );
    assert_eq!(taken_over.metadata.owner_references.unwrap().len(), 1);
    bed.sealed_secrets(&ns)
        .delete("db", &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        text(&bed.secrets(&ns).get("db").await.unwrap(), "password"),
        "Bitnami-pw-1",
        "pruning the Bitnami object left the Secret"
    );

    // Bitnami's metrics, under its names.
    let metrics = bed.metrics();
    let synced_line = format!(
        "sealed_secrets_controller_condition_info{{namespace=\"{ns}\",name=\"api-token\",condition=\"Synced\",instance=\"\"}} 1"
    );
    assert!(
        metrics.contains(&synced_line),
        "{synced_line} in:\n{metrics}"
    );
    assert!(
        !metrics.contains(&format!("namespace=\"{ns}\",name=\"db\"")),
        "a deleted SealedSecret's series goes with it"
    );
    let failing = format!(
        "sealed_secrets_controller_condition_info{{namespace=\"{ns}\",name=\"moved\",condition=\"Synced\",instance=\"\"}} -1"
    );
    assert!(metrics.contains(&failing), "{failing} in:\n{metrics}");
    assert!(metric(&metrics, "sealed_secrets_controller_unseal_requests_total") > 0);
    assert!(metrics.contains(&format!(
        "sealed_secrets_controller_unseal_errors_total{{reason=\"unseal\",namespace=\"{ns}\"}}"
    )));

    bed.finish(&[
        "app-user-41",
        "Bitnami-pw-1",
        "Wide-token-2",
        "Cluster-lic-3",
        "Linode-val-4",
        "Moved-pw-5",
        "Hand-made-6",
        "Sealed-pw-7",
        "Own-key-8",
        "Patch-in-9",
    ])
    .await;
}

/// During a switch both controllers run. A stand-in for Bitnami's controller
/// (its update rule, from its controller.go: read the Secret, and if data,
/// labels, annotations, owner references or type differ from what it
/// unsealed, replace them) runs beside secretsync. They write the same
/// Secret, so whichever writes first, the other finds nothing to do; and
/// where they would differ, secretsync writes once per change of the
/// SealedSecret, so the last writer keeps it: they never fight.
#[tokio::test(flavor = "multi_thread")]
async fn both_controllers_running_never_fight_over_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = bitnami::key(dir.path(), "key", true);
    let mut bed = Bed::prepare("bitnami-switch", &[("sealed-secrets-keyabc12", &key)], dir).await;
    let ns2 = bed.namespace().to_string();
    let manifest = kubesealpy(
        &key.cert_file,
        "db",
        &ns2,
        "strict",
        &[("password", "Switch-pw-1")],
        json!({"team": "a"}),
    );
    bed.apply(&manifest).await;
    let uid = bed
        .sealed_secrets(&ns2)
        .get("db")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    // What Bitnami's controller makes of it (its Unseal, from its source).
    let bitnami_would_write = |password: &str| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": ns2, "labels": {"team": "a"},
                "ownerReferences": [{"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                    "name": "db", "uid": uid, "controller": true}]},
            "type": "Opaque",
            "data": {"password": ByteString(password.as_bytes().to_vec())},
        }))
        .unwrap()
    };
    let stand_in = StandIn {
        api: bed.secrets(&ns2),
    };
    // Before the switch, Bitnami's controller made the Secret; secretsync,
    // started beside it, finds it as it would make it and writes nothing.
    assert!(
        stand_in
            .reconcile(&bitnami_would_write("Switch-pw-1"))
            .await
    );
    let before_switch = bed.secrets(&ns2).get("db").await.unwrap();
    bed.start_controller();
    bed.synced(&ns2, "db", "True").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.secrets(&ns2)
            .get("db")
            .await
            .unwrap()
            .metadata
            .resource_version,
        before_switch.metadata.resource_version,
        "secretsync finds Bitnami's Secret exactly as it would write it"
    );

    // A new value: both reconcile it, in either order; one write, then quiet.
    let changed = kubesealpy(
        &key.cert_file,
        "db",
        &ns2,
        "strict",
        &[("password", "Switch-pw-2")],
        json!({"team": "a"}),
    );
    bed.apply(&changed).await;
    let mut stand_in_writes = 0;
    for _ in 0..10 {
        if stand_in
            .reconcile(&bitnami_would_write("Switch-pw-2"))
            .await
        {
            stand_in_writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let settled = bed
        .secret_where(&ns2, "db", |s| text(s, "password") == "Switch-pw-2")
        .await;
    assert!(
        stand_in_writes <= 1,
        "the stand-in wrote {stand_in_writes} times"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.secrets(&ns2)
            .get("db")
            .await
            .unwrap()
            .metadata
            .resource_version,
        settled.metadata.resource_version,
        "nobody writes once both agree"
    );
    assert_ne!(
        settled.metadata.resource_version,
        before_switch.metadata.resource_version
    );

    // Where they would differ (the stand-in adds a label of its own),
    // secretsync does not take the Secret back until the SealedSecret changes.
    let mut different = bitnami_would_write("Switch-pw-2");
    different
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("written-by".into(), "bitnami".into());
    assert!(stand_in.reconcile(&different).await);
    let theirs = bed.secrets(&ns2).get("db").await.unwrap();
    // A resync of the SealedSecret (a label touch) on secretsync's side.
    bed.sealed_secrets(&ns2)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"resync": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.secrets(&ns2)
            .get("db")
            .await
            .unwrap()
            .metadata
            .resource_version,
        theirs.metadata.resource_version,
        "secretsync leaves the other controller's write alone between changes"
    );
    bed.finish(&["Switch-pw-1", "Switch-pw-2"]).await;
}

/// Bitnami's controller's update rule for a Secret it controls.
struct StandIn {
    api: Api<Secret>,
}

impl StandIn {
    /// Replaces data, labels, annotations, owner references and type when
    /// they differ from `wanted`; true when it wrote.
    async fn reconcile(&self, wanted: &Secret) -> bool {
        let name = wanted.metadata.name.clone().unwrap();
        let Some(live) = self.api.get_opt(&name).await.unwrap() else {
            self.api
                .create(&PostParams::default(), wanted)
                .await
                .unwrap();
            return true;
        };
        let mut next = live.clone();
        next.data = wanted.data.clone();
        next.metadata.labels = wanted.metadata.labels.clone();
        next.metadata.annotations = wanted.metadata.annotations.clone();
        next.metadata.owner_references = wanted.metadata.owner_references.clone();
        next.type_ = wanted.type_.clone();
        let empty = |m: &Option<BTreeMap<String, String>>| m.clone().unwrap_or_default();
        let same = live.data == next.data
            && empty(&live.metadata.labels) == empty(&next.metadata.labels)
            && empty(&live.metadata.annotations) == empty(&next.metadata.annotations)
            && live.metadata.owner_references == next.metadata.owner_references
            && live.type_ == next.type_;
        if same {
            return false;
        }
        match self.api.replace(&name, &PostParams::default(), &next).await {
            Ok(_) => true,
            // A write in between: Bitnami's controller retries later; so do we.
            Err(kube::Error::Api(e)) if e.code == 409 => false,
            Err(e) => panic!("stand-in update: {e}"),
        }
    }
}
