//! ESO's metrics, under ESO's names, labels and types, beside our own with
//! `--eso-compat`: a team's dashboards and alerts written for External
//! Secrets Operator keep reading what they read. Names as ESO (v2.9)
//! exposes them: where ESO's client library exposes a counter without the
//! `_total` suffix (`externalsecret_sync_calls_error`,
//! `externalsecret_provider_api_calls_count`), the series is typed gauge
//! here so that its name stays exactly ESO's; `increase()` and `rate()` read
//! it alike. Per-object series cost memory (five per ExternalSecret), which
//! is why they come only with `--eso-compat`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::provider::CallCounts;

// Labels in the order ESO's client library writes them: sorted by name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Object {
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Condition {
    condition: String,
    name: String,
    namespace: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCall {
    call: String,
    provider: String,
    status: String,
}

pub struct EsoMetrics {
    registry: Registry,
    sync_calls: Family<Object, Counter>,
    sync_errors: Family<Object, Gauge>,
    condition: Family<Condition, Gauge>,
    reconcile_duration: Family<Object, Gauge<f64, AtomicU64>>,
    secret_store_condition: Family<Condition, Gauge>,
    cluster_secret_store_condition: Family<Condition, Gauge>,
    cluster_external_secret_condition: Family<Condition, Gauge>,
    cluster_external_secret_duration: Family<Object, Gauge<f64, AtomicU64>>,
    push_secret_condition: Family<Condition, Gauge>,
    push_secret_duration: Family<Object, Gauge<f64, AtomicU64>>,
}

/// ESO's `externalsecret_provider_api_calls_count`, from the providers' own
/// counters at scrape time: provider `AWS/SecretsManager` or
/// `AWS/ParameterStore`, the AWS call, status `success` or `error`.
#[derive(Debug)]
struct ProviderCalls(Arc<CallCounts>);

impl prometheus_client::collector::Collector for ProviderCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "externalsecret_provider_api_calls_count",
            "Number of API calls towards the secret provider",
            None,
            MetricType::Gauge,
        )?;
        for (key, count) in self.0.snapshot() {
            let provider = match key.service {
                crate::provider::aws::SECRETS_MANAGER_SERVICE => "AWS/SecretsManager",
                crate::provider::aws::SSM_SERVICE => "AWS/ParameterStore",
                other => other,
            };
            let labels = ProviderCall {
                provider: provider.into(),
                call: key.call.into(),
                status: key.outcome.into(),
            };
            ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                .encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl EsoMetrics {
    pub fn new(calls: Arc<CallCounts>) -> Self {
        let mut registry = Registry::default();
        let sync_calls = Family::<Object, Counter>::default();
        registry.register(
            "externalsecret_sync_calls",
            "Total number of the External Secret sync calls",
            sync_calls.clone(),
        );
        let sync_errors = Family::<Object, Gauge>::default();
        registry.register(
            "externalsecret_sync_calls_error",
            "Total number of the External Secret sync errors",
            sync_errors.clone(),
        );
        let condition = Family::<Condition, Gauge>::default();
        registry.register(
            "externalsecret_status_condition",
            "The status condition of a specific External Secret",
            condition.clone(),
        );
        let reconcile_duration = Family::<Object, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "externalsecret_reconcile_duration",
            "The duration time to reconcile the External Secret",
            reconcile_duration.clone(),
        );
        let secret_store_condition = Family::<Condition, Gauge>::default();
        registry.register(
            "secretstore_status_condition",
            "The status condition of a specific Secret Store",
            secret_store_condition.clone(),
        );
        let cluster_secret_store_condition = Family::<Condition, Gauge>::default();
        registry.register(
            "clustersecretstore_status_condition",
            "The status condition of a specific Cluster Secret Store",
            cluster_secret_store_condition.clone(),
        );
        let cluster_external_secret_condition = Family::<Condition, Gauge>::default();
        registry.register(
            "clusterexternalsecret_status_condition",
            "The status condition of a specific Cluster External Secret",
            cluster_external_secret_condition.clone(),
        );
        let cluster_external_secret_duration = Family::<Object, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "clusterexternalsecret_reconcile_duration",
            "The duration time to reconcile the Cluster External Secret",
            cluster_external_secret_duration.clone(),
        );
        let push_secret_condition = Family::<Condition, Gauge>::default();
        registry.register(
            "pushsecret_status_condition",
            "The status condition of a specific Push Secret",
            push_secret_condition.clone(),
        );
        let push_secret_duration = Family::<Object, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "pushsecret_reconcile_duration",
            "The duration time to reconcile the Push Secret",
            push_secret_duration.clone(),
        );
        registry.register_collector(Box::new(ProviderCalls(calls)));
        Self {
            registry,
            sync_calls,
            sync_errors,
            condition,
            reconcile_duration,
            secret_store_condition,
            cluster_secret_store_condition,
            cluster_external_secret_condition,
            cluster_external_secret_duration,
            push_secret_condition,
            push_secret_duration,
        }
    }

    /// One reconcile of an ExternalSecret, as ESO counts it: a sync call, an
    /// error if it failed, how long it took (ESO's gauge holds nanoseconds),
    /// and its Ready condition (the other status of it set to 0).
    pub fn reconciled(&self, namespace: &str, name: &str, ready: bool, took: Duration) {
        let object = Object {
            name: name.into(),
            namespace: namespace.into(),
        };
        self.sync_calls.get_or_create(&object).inc();
        let errors = self.sync_errors.get_or_create(&object);
        if !ready {
            errors.inc();
        }
        self.reconcile_duration
            .get_or_create(&object)
            .set(took.as_nanos() as f64);
        set_ready(&self.condition, namespace, name, ready);
    }

    /// An ExternalSecret deleted: its series go, as ESO drops them.
    pub fn forget(&self, namespace: &str, name: &str) {
        let object = Object {
            name: name.into(),
            namespace: namespace.into(),
        };
        self.sync_calls.remove(&object);
        self.sync_errors.remove(&object);
        self.reconcile_duration.remove(&object);
        for status in ["True", "False"] {
            self.condition
                .remove(&condition(namespace, name, "Ready", status));
        }
    }

    /// A store's Ready condition; `namespace` empty for a ClusterSecretStore.
    pub fn store_ready(&self, cluster: bool, namespace: &str, name: &str, ready: bool) {
        let family = if cluster {
            &self.cluster_secret_store_condition
        } else {
            &self.secret_store_condition
        };
        set_ready(family, namespace, name, ready);
    }

    /// A ClusterExternalSecret reconciled: its Ready condition and how long
    /// it took (nanoseconds), with `namespace=""` as ESO labels them.
    pub fn cluster_external_secret_reconciled(&self, name: &str, ready: bool, took: Duration) {
        set_ready(&self.cluster_external_secret_condition, "", name, ready);
        self.cluster_external_secret_duration
            .get_or_create(&Object {
                name: name.into(),
                namespace: String::new(),
            })
            .set(took.as_nanos() as f64);
    }

    /// A ClusterExternalSecret deleted: its series go.
    pub fn cluster_external_secret_forget(&self, name: &str) {
        for status in ["True", "False"] {
            self.cluster_external_secret_condition
                .remove(&condition("", name, "Ready", status));
        }
        self.cluster_external_secret_duration.remove(&Object {
            name: name.into(),
            namespace: String::new(),
        });
    }

    /// A PushSecret reconciled: its Ready condition and how long it took
    /// (nanoseconds), as ESO's `pushsecret_*` series.
    pub fn push_secret_reconciled(&self, namespace: &str, name: &str, ready: bool, took: Duration) {
        set_ready(&self.push_secret_condition, namespace, name, ready);
        self.push_secret_duration
            .get_or_create(&Object {
                name: name.into(),
                namespace: namespace.into(),
            })
            .set(took.as_nanos() as f64);
    }

    /// A PushSecret deleted: its series go.
    pub fn push_secret_forget(&self, namespace: &str, name: &str) {
        for status in ["True", "False"] {
            self.push_secret_condition
                .remove(&condition(namespace, name, "Ready", status));
        }
        self.push_secret_duration.remove(&Object {
            name: name.into(),
            namespace: namespace.into(),
        });
    }

    /// Appends the exposition of these metrics.
    pub fn encode(&self, text: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode(text, &self.registry)
    }
}

fn condition(namespace: &str, name: &str, condition: &str, status: &str) -> Condition {
    Condition {
        name: name.into(),
        namespace: namespace.into(),
        condition: condition.into(),
        status: status.into(),
    }
}

/// `condition="Ready"`: the status that holds is 1, the other 0.
fn set_ready(family: &Family<Condition, Gauge>, namespace: &str, name: &str, ready: bool) {
    family
        .get_or_create(&condition(namespace, name, "Ready", "True"))
        .set(i64::from(ready));
    family
        .get_or_create(&condition(namespace, name, "Ready", "False"))
        .set(i64::from(!ready));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &EsoMetrics) -> String {
        let mut text = String::new();
        metrics.encode(&mut text).unwrap();
        text
    }

    #[test]
    fn an_external_secret_has_esos_series_until_it_is_deleted() {
        let metrics = EsoMetrics::new(Arc::new(CallCounts::default()));
        metrics.reconciled("team", "db", false, Duration::from_millis(2));
        metrics.reconciled("team", "db", true, Duration::from_millis(3));
        let shown = text(&metrics);
        for line in [
            r#"externalsecret_sync_calls_total{name="db",namespace="team"} 2"#,
            r#"externalsecret_sync_calls_error{name="db",namespace="team"} 1"#,
            r#"externalsecret_status_condition{condition="Ready",name="db",namespace="team",status="True"} 1"#,
            r#"externalsecret_status_condition{condition="Ready",name="db",namespace="team",status="False"} 0"#,
            r#"externalsecret_reconcile_duration{name="db",namespace="team"} 3000000.0"#,
        ] {
            assert!(shown.lines().any(|l| l == line), "no {line}:\n{shown}");
        }
        metrics.forget("team", "db");
        assert!(!text(&metrics).contains(r#"name="db""#));
    }
}
