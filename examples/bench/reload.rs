//! The `reload-memory` phase (issue 31): what `--reload` costs per Secret or
//! ConfigMap that no workload uses, the cost Reloader is known for (it keeps
//! every one it watches). Two controller runs with `--reload`, the fleet as it
//! is beside them: the first among no unrelated objects, the second after
//! `--reload-unrelated` Secrets and as many ConfigMaps (one key of 64 bytes
//! each, over 10 namespaces) were created. Each run is measured once a
//! Deployment opted in after its start has its hash recorded (which the
//! controller does only after both watches listed everything) and the
//! controller has gone quiet. The figure is the growth of VmRSS (and of
//! VmHWM) divided by the unrelated objects.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

use super::Bench;
use super::measure::{self, ProcessSample};

const NAMESPACES: usize = 10;
const HASH: &str = "secretsync.io/secret-hash";

impl Bench {
    pub(super) async fn reload_memory(&mut self) -> Result<(), String> {
        let unrelated = self.options.reload_unrelated;
        self.stop_controller()?;
        if !self.options.controller_args.iter().any(|a| a == "--reload") {
            self.options.controller_args.push("--reload".into());
        }
        for i in 0..NAMESPACES {
            create(
                &self.client,
                json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": format!("reload-bench-{i}")}}),
                None::<Namespace>,
            )
            .await?;
        }
        let ns = "reload-bench-0";
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let used: Secret = serde_json::from_value(json!({"metadata": {"name": "probe-input"},
            "stringData": {"k": "v"}}))
        .map_err(|e| e.to_string())?;
        secrets
            .create(&PostParams::default(), &used)
            .await
            .map_err(|e| format!("probe Secret: {e}"))?;

        let before = self.reload_run("probe-before").await?;
        self.stop_controller()?;

        let started = Instant::now();
        let client = self.client.clone();
        let value = "x".repeat(64);
        let writes = (0..unrelated)
            .flat_map(|i| [(i, true), (i, false)])
            .map(|(i, secret)| {
                let client = client.clone();
                let value = value.clone();
                async move {
                    let ns = format!("reload-bench-{}", i % NAMESPACES);
                    let name = format!("unrelated-{i:06}");
                    if secret {
                        let api: Api<Secret> = Api::namespaced(client, &ns);
                        let s: Secret = serde_json::from_value(
                            json!({"metadata": {"name": name}, "stringData": {"k": value}}),
                        )
                        .map_err(|e| e.to_string())?;
                        api.create(&PostParams::default(), &s)
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("Secret {ns}/{name}: {e}"))
                    } else {
                        let api: Api<ConfigMap> = Api::namespaced(client, &ns);
                        let c: ConfigMap = serde_json::from_value(
                            json!({"metadata": {"name": name}, "data": {"k": value}}),
                        )
                        .map_err(|e| e.to_string())?;
                        api.create(&PostParams::default(), &c)
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("ConfigMap {ns}/{name}: {e}"))
                    }
                }
            });
        let mut stream =
            futures::stream::iter(writes).buffer_unordered(self.options.concurrency.max(1));
        while let Some(result) = stream.next().await {
            result?;
        }
        if !self.options.json_only {
            eprintln!(
                "bench: reload-memory: {unrelated} Secrets and {unrelated} ConfigMaps created in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let after = self.reload_run("probe-after").await?;
        let objects = (2 * unrelated).max(1) as f64;
        let per = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / objects;
        let rss = per(before.rss_kib, after.rss_kib);
        let hwm = per(before.hwm_kib, after.hwm_kib);
        let anon = per(before.rss_anon_kib, after.rss_anon_kib);
        println!(
            "{}",
            json!({"phase": "reload-memory", "unrelated_secrets": unrelated, "unrelated_config_maps": unrelated,
                "before": before, "after": after,
                "bytes_per_unrelated_object_rss": rss.round(), "bytes_per_unrelated_object_hwm": hwm.round(),
                "bytes_per_unrelated_object_rss_anon": anon.round()})
        );
        if !self.options.json_only {
            println!(
                "reload-memory: controller with --reload, VmRSS {:.1} MiB among none -> {:.1} MiB among {unrelated} unrelated Secrets + {unrelated} ConfigMaps (VmHWM {:.1} -> {:.1} MiB)",
                before.rss_kib as f64 / 1024.0,
                after.rss_kib as f64 / 1024.0,
                before.hwm_kib as f64 / 1024.0,
                after.hwm_kib as f64 / 1024.0,
            );
            println!(
                "reload-memory: BYTES PER UNRELATED OBJECT: {rss:.0} (VmRSS), {hwm:.0} (VmHWM), {anon:.0} (anonymous RSS)"
            );
        }
        Ok(())
    }

    /// Starts the controller, opts a new Deployment in, waits until its hash
    /// is recorded and the controller is quiet; samples it.
    async fn reload_run(&mut self, probe: &str) -> Result<ProcessSample, String> {
        self.spawn_controller()?;
        let ns = "reload-bench-0";
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": probe, "annotations": {"secretsync.io/reload": "true"}},
            "spec": {"selector": {"matchLabels": {"app": probe}}, "template": {
                "metadata": {"labels": {"app": probe}},
                "spec": {"containers": [{"name": "c", "image": "x",
                    "envFrom": [{"secretRef": {"name": "probe-input"}}]}]}}}}))
        .map_err(|e| e.to_string())?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(|e| format!("{probe}: {e}"))?;
        let deadline = Instant::now() + self.options.timeout;
        loop {
            let recorded = deployments
                .get(probe)
                .await
                .ok()
                .and_then(|d| d.metadata.annotations)
                .is_some_and(|a| a.contains_key(HASH));
            if recorded {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "reload-memory: {probe} never got its hash recorded"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.wait_quiet(Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = self
            .controller
            .as_ref()
            .map(|c| c.id())
            .ok_or("no controller")?;
        measure::sample(pid).ok_or_else(|| "the controller is gone".to_string())
    }
}

async fn create<K>(
    client: &kube::Client,
    value: serde_json::Value,
    _: Option<K>,
) -> Result<(), String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let object: K = serde_json::from_value(value).map_err(|e| e.to_string())?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
