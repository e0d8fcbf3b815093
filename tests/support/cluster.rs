//! The scenario harness: a scenario is written once against a kube `Client` and
//! runs against the fake API server, or against a real cluster when
//! `SECRETSYNC_E2E_KUBECONFIG` names a kubeconfig. Either way it gets a
//! namespace of its own, removed at the end; on a real cluster, steps that need
//! fault injection are skipped, saying so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use super::apiserver::FakeApiServer;

pub const E2E_KUBECONFIG: &str = "SECRETSYNC_E2E_KUBECONFIG";

pub struct Cluster {
    pub client: kube::Client,
    /// This scenario's own namespace.
    pub namespace: String,
    /// For kubectl and the controller binary.
    pub kubeconfig: PathBuf,
    fake: Option<FakeApiServer>,
    finished: bool,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The fake API server, when the scenario runs on one (not on a real cluster).
    #[allow(dead_code)] // not every test binary counts requests
    pub fn fake(&self) -> Option<&FakeApiServer> {
        self.fake.as_ref()
    }

    pub async fn start(scenario: &str) -> Cluster {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let suffix = format!(
            "{:x}{:x}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst) as u64 * 7919
                + jiff::Timestamp::now().subsec_nanosecond() as u64 % 4096
        );
        let (client, kubeconfig, fake) = match std::env::var(E2E_KUBECONFIG) {
            Ok(path) => {
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(&path).expect("a readable kubeconfig");
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .expect("a usable kubeconfig");
                (
                    kube::Client::try_from(config).unwrap(),
                    PathBuf::from(path),
                    None,
                )
            }
            Err(_) => {
                let fake = FakeApiServer::start().await;
                let kubeconfig = dir.path().join("kubeconfig");
                fake.write_kubeconfig(&kubeconfig);
                (fake.client(), kubeconfig, Some(fake))
            }
        };
        let namespace = format!("secretsync-e2e-{scenario}-{suffix}")
            .chars()
            .take(63)
            .collect::<String>();
        let namespace = namespace.trim_end_matches('-').to_string();
        let object: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &object)
            .await
            .expect("create the scenario's namespace");
        Cluster {
            client,
            namespace,
            kubeconfig,
            fake,
            finished: false,
            _dir: dir,
        }
    }

    pub fn is_real(&self) -> bool {
        self.fake.is_none()
    }

    /// The fake, for a fault-injection step; `None` (and a note) on a real cluster.
    pub fn faults_for(&self, step: &str) -> Option<&super::apiserver::Faults> {
        if self.fake.is_none() {
            eprintln!(
                "skipping fault-injection step {step:?}: a real cluster cannot inject faults"
            );
        }
        self.fake.as_ref().map(|f| f.faults())
    }

    /// Installs secretsync's CRDs (server-side apply: harmless if present).
    pub async fn apply_crds(&self) {
        self.apply_these_crds(secretsync::api::crds()).await;
    }

    /// Installs `crds` (server-side apply) and waits until they are served.
    pub async fn apply_these_crds(&self, crds: Vec<CustomResourceDefinition>) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = PatchParams::apply("secretsync-e2e").force();
        for crd in &crds {
            let name = crd.metadata.name.clone().unwrap();
            api.patch(&name, &params, &Patch::Apply(crd))
                .await
                .expect("apply a CRD");
        }
        // A real server needs a moment before the new resources are served.
        for crd in &crds {
            let name = crd.metadata.name.clone().unwrap();
            eventually(Duration::from_secs(30), || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            })
            .await
            .expect("the CRD is established");
        }
    }

    /// Removes the scenario's namespace (and with it everything in it).
    pub async fn finish(mut self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::background())
            .await;
        self.finished = true;
    }
}

impl Drop for Cluster {
    /// A scenario that failed before `finish` still leaves no namespace behind.
    fn drop(&mut self) {
        if !self.finished && self.is_real() {
            let _ = std::process::Command::new(super::peers::kubectl())
                .args(["delete", "namespace", &self.namespace, "--wait=false"])
                .env("KUBECONFIG", &self.kubeconfig)
                .output();
        }
    }
}

/// Polls `check` until it gives a value or `timeout` passes: what is immediate
/// on the fake takes a moment on a real cluster (garbage collection, say).
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the object is gone within `timeout` (garbage collection takes a
/// moment on a real cluster).
pub async fn gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> bool
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(timeout, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await
    .is_some()
}

/// The object's whole `status` once its condition `type_` has `reason` and a
/// message containing `expected`.
pub async fn condition(
    api: &Api<kube::api::DynamicObject>,
    name: &str,
    type_: &str,
    reason: &str,
    expected: &str,
    timeout: Duration,
) -> Option<serde_json::Value> {
    eventually(timeout, || async {
        let object = api.get(name).await.ok()?;
        let conditions = object.data["status"]["conditions"].as_array()?;
        let found = conditions.iter().find(|c| c["type"] == type_)?;
        let says = found["message"]
            .as_str()
            .unwrap_or_default()
            .contains(expected);
        (found["reason"] == reason && says).then(|| object.data["status"].clone())
    })
    .await
}
