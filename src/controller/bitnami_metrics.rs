//! Bitnami Sealed Secrets' controller metrics, under its names and labels,
//! with `--bitnami-compat`: dashboards and alerts written for
//! `sealed_secrets_controller_*` keep reading what they read.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    reason: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Condition {
    namespace: String,
    name: String,
    condition: String,
    instance: String,
}

pub struct BitnamiMetrics {
    registry: Registry,
    requests: Counter,
    errors: Family<Failure, Counter>,
    condition: Family<Condition, Gauge>,
}

impl BitnamiMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealed_secrets_controller");
        let requests = Counter::default();
        registry.register(
            "unseal_requests",
            "Total number of sealed secret unseal requests",
            requests.clone(),
        );
        let errors = Family::<Failure, Counter>::default();
        registry.register(
            "unseal_errors",
            "Total number of sealed secret unseal errors by reason",
            errors.clone(),
        );
        let condition = Family::<Condition, Gauge>::default();
        registry.register(
            "condition_info",
            "Current SealedSecret condition status. Values are -1 (false), 0 (unknown or absent), 1 (true)",
            condition.clone(),
        );
        Self {
            registry,
            requests,
            errors,
            condition,
        }
    }

    pub fn unseal_requested(&self) {
        self.requests.inc();
    }

    /// `reason`: Bitnami's (`unseal`, `unmanaged`, `update`, `status`).
    pub fn unseal_failed(&self, reason: &str, namespace: &str) {
        self.errors
            .get_or_create(&Failure {
                reason: reason.into(),
                namespace: namespace.into(),
            })
            .inc();
    }

    /// `instance` is the SealedSecret's `app.kubernetes.io/instance` label, as Bitnami's.
    pub fn synced(&self, namespace: &str, name: &str, instance: &str, synced: bool) {
        self.condition
            .get_or_create(&condition(namespace, name, instance))
            .set(if synced { 1 } else { -1 });
    }

    pub fn forget(&self, namespace: &str, name: &str, instance: &str) {
        self.condition.remove(&condition(namespace, name, instance));
    }

    pub fn encode(&self, text: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode(text, &self.registry)
    }
}

fn condition(namespace: &str, name: &str, instance: &str) -> Condition {
    Condition {
        namespace: namespace.into(),
        name: name.into(),
        condition: "Synced".into(),
        instance: instance.into(),
    }
}
