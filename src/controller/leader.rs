//! Leader election through a coordination.k8s.io Lease: one instance
//! reconciles; the others wait and take over once the lease is not renewed
//! within its duration. Optimistic concurrency on the Lease (409 on a stale
//! write) makes the takeover safe.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub duration: Duration,
}

impl LeaderElection {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// Waits until this instance holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the lease until it is lost (or cannot be renewed in time).
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader lease");
                    if last_renewed.elapsed() >= self.duration {
                        return;
                    }
                }
            }
        }
    }

    /// Takes or renews the lease if it is ours, free or expired.
    async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration.as_secs(),
            "renewTime": MicroTime(now),
        });
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease: Lease = serde_json::from_value(json!({"metadata": {"name": self.name},
                "spec": {"acquireTime": MicroTime(now), "leaseTransitions": 0, "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.duration.as_secs(), "renewTime": MicroTime(now)}}))
            .expect("a Lease");
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let ours = current.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = current.renew_time.as_ref().is_none_or(|renewed| {
            let seconds = current.lease_duration_seconds.unwrap_or(0) as i64;
            renewed.0.as_second() + seconds < now.as_second()
        });
        if !ours && !expired {
            return Ok(false);
        }
        let mut spec: k8s_openapi::api::coordination::v1::LeaseSpec =
            serde_json::from_value(spec).expect("a LeaseSpec");
        spec.acquire_time = if ours {
            current.acquire_time
        } else {
            Some(MicroTime(now))
        };
        spec.lease_transitions = Some(current.lease_transitions.unwrap_or(0) + i32::from(!ours));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
