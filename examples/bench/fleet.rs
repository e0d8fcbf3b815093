//! The fleet: namespaces, stores, ExternalSecrets and the remote values they
//! read, what each Secret must hold, and what ESO's documented behaviour would
//! cost for the same fleet. Pure: no network.
//!
//! The mix, by ExternalSecret index `i % 5` (an ExternalSecret reads one store):
//! - 0, "database": one Secrets Manager JSON secret, read by `property`
//!   (`username`, `password`, `host`): several refs sharing one remote value.
//! - 1, "service": one JSON secret read twice by `property`, plus one whole
//!   secret (no `property`).
//! - 2, 3, 4, "config": SSM parameters, one each.
//!
//! Remote keys are handed out round-robin, so every secret and parameter is
//! read (when there are enough refs) and popular ones are shared across
//! namespaces, as configuration shared by many apps is.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

pub const SM_STORE: &str = "bench-secretsmanager";
pub const SSM_STORE: &str = "bench-parameterstore";
pub const REGION: &str = "eu-west-1";
const FIELDS: [&str; 3] = ["username", "password", "host"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One ClusterSecretStore per service, on the controller's own identity
    /// (IRSA): what a platform team serving many namespaces runs.
    Cluster,
    /// One SecretStore per service in every namespace.
    Namespaced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    SecretsManager,
    ParameterStore,
}

/// One remote value: a Secrets Manager secret or an SSM parameter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemoteKey {
    pub service: Service,
    pub name: String,
    index: usize,
}

impl RemoteKey {
    /// A key of the bench's own beside the fleet's; `index` makes its values
    /// (see [`value_of`]) differ from every other key's.
    pub fn new(service: Service, name: String, index: usize) -> RemoteKey {
        RemoteKey {
            service,
            name,
            index,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ref {
    pub secret_key: String,
    pub remote: RemoteKey,
    pub property: Option<&'static str>,
}

/// An ExternalSecret's `data`, one entry per ref.
pub fn data_of(refs: &[Ref]) -> Vec<Value> {
    refs.iter()
        .map(|r| {
            let mut remote = json!({"key": r.remote.name});
            if let Some(property) = r.property {
                remote["property"] = json!(property);
            }
            json!({"secretKey": r.secret_key, "remoteRef": remote})
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct ExternalSecretPlan {
    pub namespace: String,
    pub name: String,
    pub service: Service,
    pub refs: Vec<Ref>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FleetSize {
    pub es: usize,
    pub namespaces: usize,
    pub refs: usize,
    pub sm_secrets: usize,
    pub ssm_parameters: usize,
    pub stores: StoreKind,
    pub interval_seconds: u64,
}

pub struct Fleet {
    pub size: FleetSize,
    pub namespaces: Vec<String>,
    pub external_secrets: Vec<ExternalSecretPlan>,
    pub remote_keys: Vec<RemoteKey>,
}

/// Calls per refresh of every ExternalSecret under ESO's documented
/// behaviour: one GetSecretValue / GetParameter per distinct key per
/// ExternalSecret per refresh.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EsoModel {
    pub calls: BTreeMap<String, u64>,
    pub total: u64,
}

impl Fleet {
    pub fn new(size: FleetSize) -> Result<Fleet, String> {
        if size.es == 0 || size.namespaces == 0 || size.refs == 0 {
            return Err("--es, --namespaces and --refs must be at least 1".into());
        }
        if size.sm_secrets == 0 || size.ssm_parameters == 0 {
            return Err("--sm-secrets and --ssm-parameters must be at least 1".into());
        }
        let namespaces: Vec<String> = (0..size.namespaces)
            .map(|n| format!("bench-{n:04}"))
            .collect();
        let sm = |i: usize| RemoteKey {
            service: Service::SecretsManager,
            name: format!("bench/secret-{i:05}"),
            index: i,
        };
        let ssm = |i: usize| RemoteKey {
            service: Service::ParameterStore,
            name: format!("/bench/parameter-{i:05}"),
            index: i,
        };
        let (mut next_sm, mut next_ssm) = (0usize, 0usize);
        let mut take_sm = || {
            let key = sm(next_sm % size.sm_secrets);
            next_sm += 1;
            key
        };
        let mut external_secrets = Vec::with_capacity(size.es);
        for i in 0..size.es {
            let (service, refs) = match i % 5 {
                0 => {
                    let key = take_sm();
                    let refs = (0..size.refs)
                        .map(|j| Ref {
                            secret_key: format!("{}-{j}", FIELDS[j % 3]),
                            remote: key.clone(),
                            property: Some(FIELDS[j % 3]),
                        })
                        .collect();
                    (Service::SecretsManager, refs)
                }
                1 => {
                    let shared = take_sm();
                    let refs = (0..size.refs)
                        .map(|j| {
                            if j % 3 == 2 {
                                Ref {
                                    secret_key: format!("config-{j}"),
                                    remote: take_sm(),
                                    property: None,
                                }
                            } else {
                                Ref {
                                    secret_key: format!("{}-{j}", FIELDS[j % 3]),
                                    remote: shared.clone(),
                                    property: Some(FIELDS[j % 3]),
                                }
                            }
                        })
                        .collect();
                    (Service::SecretsManager, refs)
                }
                _ => {
                    let refs = (0..size.refs)
                        .map(|j| {
                            let key = ssm(next_ssm % size.ssm_parameters);
                            next_ssm += 1;
                            Ref {
                                secret_key: format!("parameter-{j}"),
                                remote: key,
                                property: None,
                            }
                        })
                        .collect();
                    (Service::ParameterStore, refs)
                }
            };
            external_secrets.push(ExternalSecretPlan {
                namespace: namespaces[i % size.namespaces].clone(),
                name: format!("app-{i:05}"),
                service,
                refs,
            });
        }
        let remote_keys = (0..size.sm_secrets)
            .map(sm)
            .chain((0..size.ssm_parameters).map(ssm))
            .collect();
        Ok(Fleet {
            size,
            namespaces,
            external_secrets,
            remote_keys,
        })
    }

    /// How many remote values the fleet reads, per service.
    pub fn referenced(&self) -> (usize, usize) {
        let keys: BTreeSet<&RemoteKey> = self
            .external_secrets
            .iter()
            .flat_map(|es| es.refs.iter().map(|r| &r.remote))
            .collect();
        let sm = keys
            .iter()
            .filter(|k| k.service == Service::SecretsManager)
            .count();
        (sm, keys.len() - sm)
    }

    pub fn eso_model(&self) -> EsoModel {
        let mut model = EsoModel::default();
        for es in &self.external_secrets {
            let distinct: BTreeSet<&RemoteKey> = es.refs.iter().map(|r| &r.remote).collect();
            for key in distinct {
                let call = match key.service {
                    Service::SecretsManager => "secretsmanager.GetSecretValue",
                    Service::ParameterStore => "AmazonSSM.GetParameter",
                };
                *model.calls.entry(call.to_string()).or_default() += 1;
                model.total += 1;
            }
        }
        model
    }

    pub fn store_name(service: Service) -> &'static str {
        match service {
            Service::SecretsManager => SM_STORE,
            Service::ParameterStore => SSM_STORE,
        }
    }

    /// The stores, as (namespace or none, manifest).
    pub fn stores(&self) -> Vec<(Option<String>, Value)> {
        let spec =
            |service: &str| json!({"provider": {"aws": {"service": service, "region": REGION}}});
        let services = [(SM_STORE, "SecretsManager"), (SSM_STORE, "ParameterStore")];
        match self.size.stores {
            StoreKind::Cluster => services
                .iter()
                .map(|(name, service)| {
                    (
                        None,
                        json!({"apiVersion": "secretsync.io/v1", "kind": "ClusterSecretStore",
                            "metadata": {"name": name}, "spec": spec(service)}),
                    )
                })
                .collect(),
            StoreKind::Namespaced => self
                .namespaces
                .iter()
                .flat_map(|namespace| {
                    services.iter().map(move |(name, service)| {
                        (
                            Some(namespace.clone()),
                            json!({"apiVersion": "secretsync.io/v1", "kind": "SecretStore",
                                "metadata": {"name": name, "namespace": namespace}, "spec": spec(service)}),
                        )
                    })
                })
                .collect(),
        }
    }

    pub fn manifest(&self, es: &ExternalSecretPlan) -> Value {
        let kind = match self.size.stores {
            StoreKind::Cluster => "ClusterSecretStore",
            StoreKind::Namespaced => "SecretStore",
        };
        let data = data_of(&es.refs);
        json!({
            "apiVersion": "secretsync.io/v1",
            "kind": "ExternalSecret",
            "metadata": {"name": es.name, "namespace": es.namespace},
            "spec": {
                "refreshInterval": format!("{}s", self.size.interval_seconds),
                "secretStoreRef": {"name": Self::store_name(es.service), "kind": kind},
                "target": {"name": es.name},
                "data": data,
            }
        })
    }
}

/// The value a remote key holds at `version` (1 at creation, +1 per change).
/// Secrets Manager values are JSON objects; every field changes with the version.
pub fn value_of(key: &RemoteKey, version: u32) -> String {
    match key.service {
        Service::SecretsManager => json!({
            "username": format!("user-{}-v{version}", key.index),
            "password": format!("pw-{}-v{version}", key.index),
            "host": format!("db-{}-v{version}.bench.internal", key.index),
        })
        .to_string(),
        Service::ParameterStore => format!("parameter-{}-v{version}", key.index),
    }
}

/// What the Secret of `es` must hold given the remote values.
pub fn expected_data(
    es: &ExternalSecretPlan,
    values: &BTreeMap<RemoteKey, String>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    es.refs
        .iter()
        .map(|r| {
            let value = values
                .get(&r.remote)
                .ok_or_else(|| format!("no value for {}", r.remote.name))?;
            let bytes = match r.property {
                None => value.clone().into_bytes(),
                Some(property) => {
                    let parsed: Value = serde_json::from_str(value)
                        .map_err(|e| format!("{} is not JSON: {e}", r.remote.name))?;
                    parsed[property]
                        .as_str()
                        .ok_or_else(|| format!("{} has no string {property}", r.remote.name))?
                        .as_bytes()
                        .to_vec()
                }
            };
            Ok((r.secret_key.clone(), bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f1() -> Fleet {
        Fleet::new(FleetSize {
            es: 1000,
            namespaces: 100,
            refs: 3,
            sm_secrets: 200,
            ssm_parameters: 300,
            stores: StoreKind::Cluster,
            interval_seconds: 60,
        })
        .unwrap()
    }

    #[test]
    fn f1_reads_every_remote_value_and_the_eso_model_counts_distinct_keys_per_external_secret() {
        let fleet = f1();
        assert_eq!(fleet.referenced(), (200, 300));
        assert_eq!(
            fleet
                .external_secrets
                .iter()
                .map(|e| e.refs.len())
                .sum::<usize>(),
            3000
        );
        let model = fleet.eso_model();
        // 200 "database" (1 key) + 200 "service" (2 keys); 600 "config" (3 keys).
        assert_eq!(model.calls["secretsmanager.GetSecretValue"], 600);
        assert_eq!(model.calls["AmazonSSM.GetParameter"], 1800);
        assert_eq!(model.total, 2400);
    }
}
