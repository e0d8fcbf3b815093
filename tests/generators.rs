//! Generators used from ExternalSecrets: the real controller binary against
//! the test bed (fake API server, or a real cluster), AWS served by moto. A
//! generated value changes only when its ExternalSecret refreshes: not on a
//! repair, not across a restart, but on a force-sync.

use crate::support;

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::cluster::{Cluster, condition, eventually};
use support::controller::RunningController;
use support::moto::Moto;

const WAIT: Duration = Duration::from_secs(30);

struct Bed {
    cluster: Cluster,
    controller: Option<RunningController>,
    env: Vec<(String, String)>,
}

impl Bed {
    async fn start(name: &str, env: &[(&str, &str)]) -> Bed {
        let cluster = Cluster::start(name).await;
        cluster.apply_crds().await;
        let mut bed = Bed {
            cluster,
            controller: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        bed.run_controller();
        bed
    }

    fn run_controller(&mut self) {
        let lease_namespace = self.cluster.namespace.clone();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.controller = Some(RunningController::start(
            &self.cluster.kubeconfig,
            &[
                "--lease-namespace",
                &lease_namespace,
                "--identity",
                "generators",
            ],
            &env,
        ));
    }

    /// Stops the controller (SIGTERM) and starts a new one: nothing it kept
    /// in memory survives.
    fn restart_controller(&mut self) {
        let mut controller = self.controller.take().expect("a controller runs");
        let status = controller.terminate();
        assert!(status.success(), "{}", controller.log_text());
        self.run_controller();
    }

    fn logs(&self) -> String {
        self.controller
            .as_ref()
            .map(RunningController::log_text)
            .unwrap_or_default()
    }

    fn api(&self, group: &str, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        Api::namespaced_with(
            self.cluster.client.clone(),
            &self.cluster.namespace,
            &resource,
        )
    }

    fn external_secrets(&self) -> Api<DynamicObject> {
        self.api("secretsync.io", "v1", "ExternalSecret", "externalsecrets")
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }

    async fn apply(
        &self,
        api: &Api<DynamicObject>,
        api_version: &str,
        kind: &str,
        manifest: Value,
    ) {
        let mut manifest = manifest;
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        manifest["apiVersion"] = json!(api_version);
        manifest["kind"] = json!(kind);
        api.patch(
            &name,
            &PatchParams::apply("scenario").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    async fn generator(&self, kind: &str, name: &str, spec: Value) {
        let plural = format!("{}s", kind.to_ascii_lowercase());
        let api = self.api("generators.secretsync.io", "v1alpha1", kind, &plural);
        self.apply(
            &api,
            "generators.secretsync.io/v1alpha1",
            kind,
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    async fn external_secret(&self, name: &str, spec: Value) {
        self.apply(
            &self.external_secrets(),
            "secretsync.io/v1",
            "ExternalSecret",
            json!({"metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    async fn secret_where(&self, name: &str, check: impl Fn(&Secret) -> bool) -> Secret {
        let secrets = self.secrets();
        let found = eventually(WAIT, || {
            let secrets = secrets.clone();
            let check = &check;
            async move { secrets.get_opt(name).await.unwrap().filter(|s| check(s)) }
        })
        .await;
        found.unwrap_or_else(|| panic!("Secret {name} never got there; log:\n{}", self.logs()))
    }

    /// Waits until the Ready condition has `reason` and says `expected`.
    async fn ready(&self, name: &str, reason: &str, expected: &str) -> Value {
        let found = condition(
            &self.external_secrets(),
            name,
            "Ready",
            reason,
            expected,
            WAIT,
        )
        .await;
        match found {
            Some(status) => status,
            None => {
                let now = self.external_secrets().get(name).await.ok().map(|o| o.data);
                panic!(
                    "{name} never got {reason} saying {expected:?}: {now:?}\nlog:\n{}",
                    self.logs()
                )
            }
        }
    }

    /// Stops the controller, checks no value reached its logs, ends the scenario.
    async fn finish(mut self, values: &[&str]) {
        if let Some(mut controller) = self.controller.take() {
            let status = controller.terminate();
            assert!(status.success(), "{}", controller.log_text());
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

/// How many times the running controller logged a generator run.
fn generated_lines(bed: &Bed) -> usize {
    bed.logs()
        .lines()
        .filter(|l| l.contains("generated") && l.contains("keys"))
        .count()
}

async fn touch_label(bed: &Bed, name: &str, value: &str) {
    bed.secrets()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": value}}})),
        )
        .await
        .unwrap();
}

/// Password generator -> ExternalSecret -> Secret; kept on repair and
/// across a restart with `refreshInterval: 0`; new on force-sync. Bad
/// generators fail their own ExternalSecret only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_stable_until_a_refresh_asks_for_a_new_one() {
    let mut bed = Bed::start("gen-password", &[]).await;
    bed.generator("Password", "pw", json!({})).await;
    bed.generator("UUID", "id", json!({})).await;
    bed.generator("Password", "zero", json!({"length": 0}))
        .await;
    bed.external_secret(
        "app",
        json!({"refreshInterval": "0", "dataFrom": [
            {"sourceRef": {"generatorRef": {"apiVersion": "generators.secretsync.io/v1alpha1", "kind": "Password", "name": "pw"}}},
            {"sourceRef": {"generatorRef": {"kind": "UUID", "name": "id"}},
             "rewrite": [{"regexp": {"source": "uuid", "target": "instance-id"}}]}
        ]}),
    )
    .await;
    let secret = bed
        .secret_where("app", |s| text(s, "password").chars().count() == 24)
        .await;
    let password = text(&secret, "password");
    let instance = text(&secret, "instance-id");
    assert_eq!(instance.len(), 36, "a UUID, renamed by rewrite");
    assert_eq!(password.chars().filter(char::is_ascii_digit).count(), 6);
    bed.ready("app", "SecretSynced", "").await;

    // Bad generators: each fails its own ExternalSecret, naming what is wrong.
    bed.external_secret(
        "zero",
        json!({"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "Password", "name": "zero"}}}]}),
    )
    .await;
    bed.external_secret(
        "missing",
        json!({"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "Password", "name": "nowhere"}}}]}),
    )
    .await;
    bed.external_secret(
        "unknown",
        json!({"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "Webhook", "name": "pw"}}}]}),
    )
    .await;
    let namespace = bed.cluster.namespace.clone();
    let status = bed
        .ready("zero", "SecretSyncedError", "spec.length")
        .await
        .to_string();
    assert!(
        status.contains(&format!("Password {namespace}/zero")),
        "{status}"
    );
    bed.ready(
        "missing",
        "SecretSyncedError",
        &format!("Password {namespace}/nowhere: not found"),
    )
    .await;
    bed.ready(
        "unknown",
        "InvalidSpec",
        "spec.dataFrom[0].sourceRef.generatorRef.kind",
    )
    .await;
    for name in ["zero", "missing", "unknown"] {
        assert!(bed.secrets().get_opt(name).await.unwrap().is_none());
    }

    // A repair (the Secret changed by hand) keeps the values.
    touch_label(&bed, "app", "1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = bed.secrets().get("app").await.unwrap();
    assert_eq!(text(&secret, "password"), password);
    assert_eq!(text(&secret, "instance-id"), instance);
    assert_eq!(generated_lines(&bed), 2, "each generator ran once");

    // A new process knows nothing; the Secret is the memory.
    bed.restart_controller();
    bed.ready("app", "SecretSynced", "").await;
    touch_label(&bed, "app", "2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secret = bed.secrets().get("app").await.unwrap();
    assert_eq!(
        generated_lines(&bed),
        0,
        "nothing generated after the restart"
    );
    assert_eq!(text(&secret, "password"), password, "kept across a restart");
    assert_eq!(text(&secret, "instance-id"), instance);
    // Still failing, still its own.
    bed.ready("zero", "SecretSyncedError", "spec.length").await;

    // force-sync is a refresh: new values.
    bed.external_secrets()
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secretsync.io/force-sync": "1"}}})),
        )
        .await
        .unwrap();
    let secret = bed
        .secret_where("app", |s| {
            let new = text(s, "password");
            new.chars().count() == 24 && new != password
        })
        .await;
    let new_password = text(&secret, "password");
    assert!(generated_lines(&bed) >= 2, "both generators ran again");
    assert_ne!(text(&secret, "instance-id"), instance);

    // Status and events never hold a value.
    let objects = bed
        .external_secrets()
        .list(&Default::default())
        .await
        .unwrap();
    let shown =
        serde_json::to_string(&objects.items.iter().map(|o| &o.data).collect::<Vec<_>>()).unwrap();
    for value in [&password, &new_password, &instance] {
        assert!(!shown.contains(value.as_str()), "a value in a status");
    }
    bed.finish(&[&password, &new_password, &instance]).await;
}

/// ECRAuthorizationToken rendered into a dockerconfigjson Secret, and
/// STSSessionToken's keys, from moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_generators_make_registry_and_session_credentials() {
    let moto = Moto::start();
    let bed = Bed::start(
        "gen-aws",
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDGENERATORS"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    )
    .await;
    bed.generator(
        "ECRAuthorizationToken",
        "ecr",
        json!({"region": "eu-west-1"}),
    )
    .await;
    bed.generator(
        "STSSessionToken",
        "sts",
        json!({"region": "eu-west-1", "requestParameters": {"sessionDuration": 3600}}),
    )
    .await;
    let template = r#"{"auths":{"{{ .proxy_endpoint }}":{"username":"{{ .username }}","password":"{{ .password }}","auth":"{{ printf "%s:%s" .username .password | b64enc }}"}}}"#;
    bed.external_secret(
        "registry",
        json!({"refreshInterval": "1h",
            "dataFrom": [{"sourceRef": {"generatorRef": {"kind": "ECRAuthorizationToken", "name": "ecr"}}}],
            "target": {"template": {"type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": template}}}}),
    )
    .await;
    bed.external_secret(
        "session",
        json!({"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "STSSessionToken", "name": "sts"}}}]}),
    )
    .await;

    let registry = bed.secret_where("registry", |s| s.data.is_some()).await;
    assert_eq!(
        registry.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let config: Value = serde_json::from_str(&text(&registry, ".dockerconfigjson"))
        .unwrap_or_else(|e| panic!("{e}: not JSON"));
    let auths = config["auths"].as_object().unwrap();
    let (endpoint, auth) = auths.iter().next().unwrap();
    assert!(endpoint.starts_with("https://") && endpoint.contains(".dkr.ecr.eu-west-1."));
    assert_eq!(auth["username"], "AWS");
    let password = auth["password"].as_str().unwrap().to_string();
    assert!(!password.is_empty());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    assert_eq!(auth["auth"], basic.as_str());

    let session = bed.secret_where("session", |s| s.data.is_some()).await;
    let keys: Vec<&String> = session.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "access_key_id",
            "expiration",
            "secret_access_key",
            "session_token"
        ]
    );
    let expiration: i64 = text(&session, "expiration").parse().unwrap();
    assert!(expiration > jiff::Timestamp::now().as_second());
    assert!(!text(&session, "access_key_id").is_empty());
    let secret_key = text(&session, "secret_access_key");
    let session_token = text(&session, "session_token");
    bed.ready("session", "SecretSynced", "").await;
    bed.finish(&[&password, &secret_key, &session_token]).await;
}

/// `render` cannot keep generated values from one run to the next: it
/// refuses an ExternalSecret with a generator, naming the entry, and skips
/// the generator manifest itself.
#[test]
fn render_refuses_generators_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: generators.secretsync.io/v1alpha1\nkind: Password\nmetadata: {name: pw, namespace: team}\nspec: {length: 12}\n---\napiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {name: app, namespace: team}\nspec:\n  dataFrom:\n  - sourceRef: {generatorRef: {kind: Password, name: pw}}\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["render", "-f", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("ExternalSecret team/app: spec.dataFrom[0].sourceRef.generatorRef: generators run only in the controller"),
        "{said}"
    );
    assert!(
        !said.contains("Password"),
        "the generator itself is skipped: {said}"
    );
}
