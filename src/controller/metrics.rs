//! Prometheus metrics, served as text on `/metrics`. Provider API calls come
//! from the providers' own counters at scrape time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kube::runtime::reflector::Store;

use super::bitnami_metrics::BitnamiMetrics;
use super::eso_metrics::EsoMetrics;
use crate::provider::CallCounts;

/// What a message of a change-event queue can turn out to be.
pub const CHANGE_EVENT_OUTCOMES: [&str; 5] = [
    "applied",
    "unmatched",
    "duplicate",
    "unrelated",
    "malformed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    kind: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    kind: String,
    namespace: String,
    name: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    call: String,
    outcome: String,
}

pub struct Metrics {
    registry: Registry,
    /// Managed Secrets, counted from the controller's own cache at scrape time.
    managed: std::sync::OnceLock<Vec<Store<super::managed::ManagedSecret>>>,
    syncs: Family<Outcome, Counter>,
    reconcile_seconds: Histogram,
    writes: Family<Outcome, Counter>,
    managed_secrets: Gauge,
    store_ready: Family<StoreLabels, Gauge>,
    store_fallback: Family<FallbackLabels, Gauge>,
    workload_restarts: Family<KindLabel, Counter>,
    bitnami_unseals: Counter,
    change_events: Family<Outcome, Counter>,
    change_event_seconds: Histogram,
    /// ESO's names too, with `--eso-compat`.
    eso: Option<EsoMetrics>,
    /// Bitnami's names too, with `--bitnami-compat`.
    bitnami: Option<BitnamiMetrics>,
}

#[derive(Debug)]
struct ProviderCalls(Arc<CallCounts>);

impl prometheus_client::collector::Collector for ProviderCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The registry puts `secretsync_` in front.
        let mut metric = encoder.encode_descriptor(
            "provider_api_calls",
            "Calls made to secret providers, by service, call and outcome",
            None,
            MetricType::Counter,
        )?;
        for (key, count) in self.0.snapshot() {
            let labels = CallLabels {
                service: key.service.into(),
                call: key.call.into(),
                outcome: key.outcome.into(),
            };
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Our metrics; with `eso`, ESO's beside them; with `bitnami`, Bitnami's.
    pub fn new(calls: Arc<CallCounts>, eso: bool, bitnami: bool) -> Self {
        let eso = eso.then(|| EsoMetrics::new(calls.clone()));
        let bitnami = bitnami.then(BitnamiMetrics::new);
        let mut registry = Registry::with_prefix("secretsync");
        let syncs = Family::<Outcome, Counter>::default();
        registry.register(
            "syncs",
            "ExternalSecret syncs, by outcome (success, error)",
            syncs.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time one ExternalSecret reconcile takes",
            reconcile_seconds.clone(),
        );
        let writes = Family::<Outcome, Counter>::default();
        registry.register(
            "secret_writes",
            "Secrets written, by outcome (created, updated)",
            writes.clone(),
        );
        let managed_secrets = Gauge::default();
        registry.register(
            "managed_secrets",
            "Secrets labelled secretsync.io/managed=true",
            managed_secrets.clone(),
        );
        let store_ready = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "store_ready",
            "1 when a store's credentials check passed, else 0",
            store_ready.clone(),
        );
        let store_fallback = Family::<FallbackLabels, Gauge>::default();
        registry.register(
            "store_fallback",
            "1 while a store works around what its identity may not do (reason BatchDenied: one read per secret; CannotList: no change detection)",
            store_fallback.clone(),
        );
        let workload_restarts = Family::<KindLabel, Counter>::default();
        // Every kind from zero, so a dashboard's rate() has a series to read.
        for kind in ["Deployment", "StatefulSet", "DaemonSet", "Rollout"] {
            let _ = workload_restarts.get_or_create(&KindLabel { kind: kind.into() });
        }
        registry.register(
            "workload_restarts",
            "Workloads restarted because a Secret or ConfigMap they use changed, by kind",
            workload_restarts.clone(),
        );
        let bitnami_unseals = Counter::default();
        registry.register(
            "bitnami_unseals",
            "Bitnami SealedSecrets decrypted (one RSA decryption a value at least): once per change, not per reconcile",
            bitnami_unseals.clone(),
        );
        let change_events = Family::<Outcome, Counter>::default();
        // Every outcome from zero, so a dashboard's rate() has a series to read.
        for outcome in CHANGE_EVENT_OUTCOMES {
            let _ = change_events.get_or_create(&Outcome {
                outcome: outcome.to_string(),
            });
        }
        registry.register(
            "change_events",
            "Messages read from AWS change-event queues, by outcome (applied: Secrets refreshed; unmatched: a key nobody reads; duplicate; unrelated: not a change this controller reads; malformed: not an event)",
            change_events.clone(),
        );
        let change_event_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "change_event_duration_seconds",
            "From receiving change events until every Secret they concern is written",
            change_event_seconds.clone(),
        );
        registry.register_collector(Box::new(ProviderCalls(calls)));
        Self {
            registry,
            managed: std::sync::OnceLock::new(),
            syncs,
            reconcile_seconds,
            writes,
            managed_secrets,
            store_ready,
            store_fallback,
            workload_restarts,
            bitnami_unseals,
            change_events,
            change_event_seconds,
            eso,
            bitnami,
        }
    }

    /// One message of a change-event queue, by what it turned out to be
    /// (one of [`CHANGE_EVENT_OUTCOMES`]).
    pub fn change_event(&self, outcome: &str) {
        self.change_events
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Change events applied: from their receipt until their Secrets were written.
    pub fn observe_change_events(&self, took: Duration) {
        self.change_event_seconds.observe(took.as_secs_f64());
    }

    pub fn bitnami_unseal_requested(&self) {
        if let Some(bitnami) = &self.bitnami {
            bitnami.unseal_requested();
        }
    }

    /// One Bitnami SealedSecret decrypted (all its values).
    pub fn bitnami_unsealed(&self) {
        self.bitnami_unseals.inc();
    }

    pub fn bitnami_unseal_failed(&self, reason: &str, namespace: &str) {
        if let Some(bitnami) = &self.bitnami {
            bitnami.unseal_failed(reason, namespace);
        }
    }

    /// A Bitnami SealedSecret's `Synced` condition, as its status now says.
    pub fn bitnami_condition(&self, sealed: &crate::api::BitnamiSealedSecret, synced: bool) {
        if let Some(bitnami) = &self.bitnami {
            bitnami.synced(
                sealed.metadata.namespace.as_deref().unwrap_or_default(),
                sealed.metadata.name.as_deref().unwrap_or_default(),
                bitnami_instance(&sealed.metadata),
                synced,
            );
        }
    }

    pub fn bitnami_deleted(
        &self,
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) {
        if let Some(bitnami) = &self.bitnami {
            bitnami.forget(
                metadata.namespace.as_deref().unwrap_or_default(),
                metadata.name.as_deref().unwrap_or_default(),
                bitnami_instance(metadata),
            );
        }
    }

    pub fn count_sync(&self, success: bool) {
        let outcome = if success { "success" } else { "error" };
        self.syncs
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn secret_written(&self, created: bool) {
        let outcome = if created { "created" } else { "updated" };
        self.writes
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts managed Secrets from this cache from now on.
    pub fn track_managed_secrets(&self, stores: Vec<Store<super::managed::ManagedSecret>>) {
        let _ = self.managed.set(stores);
    }

    /// `name` is the store's identity (ESO's stores carry their group);
    /// `object_name` the object's own, as ESO's metrics name it.
    pub fn set_store_ready(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object_name: &str,
        ready: bool,
    ) {
        if let Some(eso) = &self.eso {
            eso.store_ready(kind == "ClusterSecretStore", namespace, object_name, ready);
        }
        let labels = StoreLabels {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        self.store_ready.get_or_create(&labels).set(ready as i64);
    }

    /// `secretsync_store_fallback{kind,namespace,name,reason}`: 1 for each
    /// reason that holds, 0 for the others.
    pub fn set_store_fallbacks(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        reasons: &[(&str, bool)],
    ) {
        for (reason, holds) in reasons {
            let labels = FallbackLabels {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                reason: (*reason).into(),
            };
            self.store_fallback
                .get_or_create(&labels)
                .set(*holds as i64);
        }
    }

    /// One ExternalSecret reconciled, for ESO's per-object series.
    pub fn external_secret_reconciled(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
        took: Duration,
    ) {
        if let Some(eso) = &self.eso {
            eso.reconciled(namespace, name, ready, took);
        }
    }

    /// An ExternalSecret gone: its per-object series go too.
    pub fn external_secret_deleted(&self, namespace: &str, name: &str) {
        if let Some(eso) = &self.eso {
            eso.forget(namespace, name);
        }
    }

    /// One ClusterExternalSecret reconciled (ESO's series only).
    pub fn cluster_external_secret_reconciled(&self, name: &str, ready: bool, took: Duration) {
        if let Some(eso) = &self.eso {
            eso.cluster_external_secret_reconciled(name, ready, took);
        }
    }

    pub fn cluster_external_secret_deleted(&self, name: &str) {
        if let Some(eso) = &self.eso {
            eso.cluster_external_secret_forget(name);
        }
    }

    /// One PushSecret reconciled (ESO's series only).
    pub fn push_secret_reconciled(&self, namespace: &str, name: &str, ready: bool, took: Duration) {
        if let Some(eso) = &self.eso {
            eso.push_secret_reconciled(namespace, name, ready, took);
        }
    }

    pub fn push_secret_deleted(&self, namespace: &str, name: &str) {
        if let Some(eso) = &self.eso {
            eso.push_secret_forget(namespace, name);
        }
    }

    /// `secretsync_workload_restarts_total{kind}`: one workload restarted.
    pub fn workload_restarted(&self, kind: &str) {
        self.workload_restarts
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(stores) = self.managed.get() {
            let count: usize = stores.iter().map(Store::len).sum();
            self.managed_secrets
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        if let Some(eso) = &self.eso {
            // One exposition: a single `# EOF`, at the end.
            if text.ends_with("# EOF\n") {
                text.truncate(text.len() - "# EOF\n".len());
            }
            eso.encode(&mut text).expect("metrics encode");
        }
        if let Some(bitnami) = &self.bitnami {
            if text.ends_with("# EOF\n") {
                text.truncate(text.len() - "# EOF\n".len());
            }
            bitnami.encode(&mut text).expect("metrics encode");
        }
        text
    }
}

fn bitnami_instance(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/instance"))
        .map(String::as_str)
        .unwrap_or_default()
}
