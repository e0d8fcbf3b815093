//! `secretsync doctor`: checks a running installation and says, in words,
//! what is wrong. Each check prints one line (`ok`, `PROBLEM` or `skipped`)
//! and what to do, or with `-o json` one document of findings (`name`,
//! `outcome`: `ok`, `fail` or `skipped`, `message`); exit 0 when nothing is
//! wrong, 1 otherwise, whatever the format.
//!
//! Checks: the CRDs are installed and are this binary's (`crdgen`'s); the
//! controller's ServiceAccount may do every verb `deploy/rbac.yaml` grants it
//! (one SelfSubjectAccessReview each, impersonating the account); the leader
//! Lease is held and renewed in time; the Secrets Store CSI driver, when
//! installed, requests the `sts.amazonaws.com` token the CSI provider needs.
//! With `--check-remote`, each AWS store: STS GetCallerIdentity in its region
//! with your own credentials, the clock against STS's `Date`, and a read of
//! one key an ExternalSecret of the store names.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::Value;

/// The controller's RBAC as shipped: what it needs, verb by verb.
const RBAC: &str = include_str!("../../deploy/rbac.yaml");
/// The driver the CSI provider plugs into, and the token audience it needs.
const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Clock skew beyond which SigV4 requests start failing (AWS allows 5 minutes).
const MAX_SKEW_SECONDS: i64 = 60;

#[derive(clap::Args)]
pub struct Args {
    /// The controller's namespace: where its ServiceAccount, Role and leader
    /// Lease are.
    #[arg(short, long, default_value = "secretsync")]
    namespace: String,
    /// The controller's ServiceAccount, impersonated for the RBAC checks
    /// (you need the `impersonate` permission).
    #[arg(long, default_value = "secretsync")]
    service_account: String,
    /// Check RBAC as yourself instead (run inside the controller's pod).
    #[arg(long)]
    as_self: bool,
    /// Name of the leader Lease (the controller's --lease-name).
    #[arg(long, default_value = "secretsync-controller")]
    lease_name: String,
    /// Also call AWS for each store (STS GetCallerIdentity, clock skew) with
    /// your own credentials.
    #[arg(long)]
    check_remote: bool,
    /// How to print the findings. `json`: `{"findings": [{"name", "outcome",
    /// "message"}], "problems"}`, outcomes `ok`, `fail` or `skipped`; the
    /// exit code is the same in both.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One line per finding, printed as it is made.
    Text,
    /// One JSON document of every finding, at the end.
    Json,
}

/// One finding, as `-o json` gives it.
#[derive(serde::Serialize)]
struct Finding {
    /// The check: `crds`, `rbac`, `leader`, `csi`, `stores`, `clock`.
    #[serde(rename = "name")]
    check: &'static str,
    #[serde(rename = "outcome")]
    state: State,
    /// What was found and, for a problem, what to do. Never a value.
    message: String,
}

#[derive(PartialEq, serde::Serialize)]
enum State {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "fail")]
    Problem,
    #[serde(rename = "skipped")]
    Skipped,
}

/// The findings so far; in text, each is printed as it is made.
struct Findings {
    all: Vec<Finding>,
    text: bool,
}

impl Findings {
    fn ok(&mut self, check: &'static str, text: impl Into<String>) {
        self.push(check, State::Ok, text.into());
    }
    fn problem(&mut self, check: &'static str, text: impl Into<String>) {
        self.push(check, State::Problem, text.into());
    }
    fn skipped(&mut self, check: &'static str, text: impl Into<String>) {
        self.push(check, State::Skipped, text.into());
    }
    fn push(&mut self, check: &'static str, state: State, text: String) {
        let tag = match state {
            State::Ok => "ok      ",
            State::Problem => "PROBLEM ",
            State::Skipped => "skipped ",
        };
        if self.text {
            println!("{tag}{check}: {text}");
        }
        self.all.push(Finding {
            check,
            state,
            message: text,
        });
    }
}

pub async fn run(args: Args) -> ExitCode {
    let Some(config) = super::kube_config().await else {
        return ExitCode::FAILURE;
    };
    let client = match kube::Client::try_from(config.clone()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: cluster client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut findings = Findings {
        all: Vec::new(),
        text: args.output == Format::Text,
    };
    check_crds(&client, &mut findings).await;
    check_rbac(config, &args, &mut findings).await;
    check_lease(&client, &args, &mut findings).await;
    check_csi(&client, &mut findings).await;
    if args.check_remote {
        check_stores(&client, &mut findings).await;
    } else {
        findings.skipped("stores", "AWS not called (add --check-remote)");
    }
    let problems = findings
        .all
        .iter()
        .filter(|f| f.state == State::Problem)
        .count();
    if args.output == Format::Json {
        let document = serde_json::json!({"findings": findings.all, "problems": problems});
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
        return if problems == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if problems == 0 {
        println!("no problem found");
        ExitCode::SUCCESS
    } else {
        let checks: std::collections::BTreeSet<_> = findings
            .all
            .iter()
            .filter(|f| f.state == State::Problem)
            .map(|f| f.check)
            .collect();
        println!(
            "{problems} problem(s) found ({})",
            checks.into_iter().collect::<Vec<_>>().join(", ")
        );
        ExitCode::FAILURE
    }
}

/// Every CRD of this binary is installed, with the same versions and schemas.
async fn check_crds(client: &kube::Client, findings: &mut Findings) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let expected = secretsync::api::crds();
    let mut good = 0;
    for crd in &expected {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Err(e) => findings.problem("crds", format!("cannot read CRD {name}: {e}")),
            Ok(None) => findings.problem(
                "crds",
                format!(
                    "CRD {name} is not installed: apply `secretsync crdgen` (kubectl apply --server-side -f -)"
                ),
            ),
            Ok(Some(installed)) => match crd_difference(crd, &installed) {
                Some(why) => findings.problem(
                    "crds",
                    format!(
                        "CRD {name} is not this secretsync's ({why}): apply `secretsync crdgen` of this version"
                    ),
                ),
                None => good += 1,
            },
        }
    }
    if good == expected.len() {
        findings.ok(
            "crds",
            format!("all {good} CRDs installed, as this version makes them"),
        );
    }
}

/// Why an installed CRD is not the expected one: versions or a schema differ.
fn crd_difference(
    expected: &CustomResourceDefinition,
    installed: &CustomResourceDefinition,
) -> Option<String> {
    let versions = |crd: &CustomResourceDefinition| -> Vec<(String, bool, bool)> {
        crd.spec
            .versions
            .iter()
            .map(|v| (v.name.clone(), v.served, v.storage))
            .collect()
    };
    let (want, have) = (versions(expected), versions(installed));
    if want != have {
        let names = |v: &[(String, bool, bool)]| {
            v.iter()
                .map(|(n, _, s)| {
                    if *s {
                        format!("{n} (storage)")
                    } else {
                        n.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Some(format!(
            "versions {} where this version serves {}",
            names(&have),
            names(&want)
        ));
    }
    for (want, have) in expected.spec.versions.iter().zip(&installed.spec.versions) {
        let schema = |v: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion| {
            v.schema
                .as_ref()
                .and_then(|s| serde_json::to_value(&s.open_api_v3_schema).ok())
                .unwrap_or(Value::Null)
        };
        if schema(want) != schema(have) {
            return Some(format!("the schema of {} differs", want.name));
        }
    }
    None
}

/// One permission the shipped RBAC grants.
#[derive(Debug, PartialEq)]
struct Permission {
    group: String,
    resource: String,
    subresource: Option<String>,
    verb: String,
    /// `Some` for a Role's rules (the controller's namespace).
    namespaced: bool,
    name: Option<String>,
}

/// The permissions of the ClusterRoles and Roles in `deploy/rbac.yaml`.
fn shipped_permissions() -> Vec<Permission> {
    let mut found = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(RBAC) {
        let Ok(value) = <Value as serde::Deserialize>::deserialize(document) else {
            continue;
        };
        let namespaced = match value["kind"].as_str() {
            Some("ClusterRole") => false,
            Some("Role") => true,
            _ => continue,
        };
        for rule in value["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let names = strings("resourceNames");
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    let (resource, subresource) = match resource.split_once('/') {
                        Some((r, s)) => (r.to_string(), Some(s.to_string())),
                        None => (resource, None),
                    };
                    for verb in strings("verbs") {
                        let names: Vec<Option<String>> = if names.is_empty() {
                            vec![None]
                        } else {
                            names.iter().cloned().map(Some).collect()
                        };
                        for name in names {
                            found.push(Permission {
                                group: group.clone(),
                                resource: resource.clone(),
                                subresource: subresource.clone(),
                                verb: verb.clone(),
                                namespaced,
                                name,
                            });
                        }
                    }
                }
            }
        }
    }
    found
}

async fn check_rbac(mut config: kube::Config, args: &Args, findings: &mut Findings) {
    let who = if args.as_self {
        "you".to_string()
    } else {
        let user = format!(
            "system:serviceaccount:{}:{}",
            args.namespace, args.service_account
        );
        config.auth_info.impersonate = Some(user.clone());
        user
    };
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(e) => {
            findings.problem("rbac", format!("cluster client: {e}"));
            return;
        }
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client);
    let permissions = shipped_permissions();
    let mut denied = Vec::new();
    for p in &permissions {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(p.group.clone()),
                    resource: Some(p.resource.clone()),
                    subresource: p.subresource.clone(),
                    verb: Some(p.verb.clone()),
                    namespace: p.namespaced.then(|| args.namespace.clone()),
                    name: p.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&Default::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => denied.push(describe(p, &args.namespace)),
            Err(e) => {
                findings.problem(
                    "rbac",
                    format!("cannot ask the API server what {who} may do: {e}"),
                );
                return;
            }
        }
    }
    if denied.is_empty() {
        findings.ok(
            "rbac",
            format!(
                "{who} may do all {} things deploy/rbac.yaml grants",
                permissions.len()
            ),
        );
    } else {
        for what in denied {
            findings.problem(
                "rbac",
                format!("{who} may not {what} (see deploy/rbac.yaml)"),
            );
        }
    }
}

fn describe(p: &Permission, namespace: &str) -> String {
    let resource = match &p.subresource {
        Some(sub) => format!("{}/{sub}", p.resource),
        None => p.resource.clone(),
    };
    let group = if p.group.is_empty() {
        "core".to_string()
    } else {
        p.group.clone()
    };
    let mut text = format!("{} {resource} ({group})", p.verb);
    if let Some(name) = &p.name {
        text.push_str(&format!(" named {name}"));
    }
    if p.namespaced {
        text.push_str(&format!(" in namespace {namespace}"));
    } else {
        text.push_str(" cluster-wide");
    }
    text
}

async fn check_lease(client: &kube::Client, args: &Args, findings: &mut Findings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &args.namespace);
    let label = format!("Lease {}/{}", args.namespace, args.lease_name);
    let lease = match api.get_opt(&args.lease_name).await {
        Err(e) => return findings.problem("leader", format!("cannot read {label}: {e}")),
        Ok(None) => {
            return findings.problem(
                "leader",
                format!(
                    "no {label}: no controller has led (is it running, with --lease-namespace {}?)",
                    args.namespace
                ),
            );
        }
        Ok(Some(lease)) => lease,
    };
    let spec = lease.spec.unwrap_or_default();
    let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return findings.problem(
            "leader",
            format!("{label} is held by no one: no controller is leading"),
        );
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let Some(renewed) = spec.renew_time.map(|t| t.0) else {
        return findings.problem(
            "leader",
            format!("{label} (held by {holder}) was never renewed"),
        );
    };
    let age = jiff::Timestamp::now().duration_since(renewed).as_secs();
    if age > duration {
        findings.problem(
            "leader",
            format!(
                "{label} is held by {holder} but was last renewed {age}s ago (it lasts {duration}s): that controller is stuck or gone"
            ),
        );
    } else {
        findings.ok(
            "leader",
            format!("{holder} leads ({label} renewed {age}s ago, lasts {duration}s)"),
        );
    }
}

async fn check_csi(client: &kube::Client, findings: &mut Findings) {
    let api: Api<CSIDriver> = Api::all(client.clone());
    let driver = match api.get_opt(CSI_DRIVER).await {
        Err(e) => {
            return findings.problem("csi", format!("cannot read CSIDriver {CSI_DRIVER}: {e}"));
        }
        Ok(None) => {
            return findings.skipped(
                "csi",
                format!(
                    "the Secrets Store CSI driver is not installed (no CSIDriver {CSI_DRIVER})"
                ),
            );
        }
        Ok(Some(driver)) => driver,
    };
    let audiences: Vec<String> = driver
        .spec
        .token_requests
        .iter()
        .flatten()
        .map(|t| t.audience.clone())
        .collect();
    if audiences.iter().any(|a| a == STS_AUDIENCE) {
        findings.ok(
            "csi",
            format!(
                "CSIDriver {CSI_DRIVER} requests tokens for {}",
                audiences.join(", ")
            ),
        );
    } else {
        findings.problem(
            "csi",
            format!(
                "CSIDriver {CSI_DRIVER} requests no token for audience {STS_AUDIENCE} (it has: {}): mounts cannot act as their pod; install the driver with --set 'tokenRequests[0].audience={STS_AUDIENCE}'",
                if audiences.is_empty() { "none".to_string() } else { audiences.join(", ") }
            ),
        );
    }
}

/// Each AWS store's region: STS GetCallerIdentity with the operator's own
/// credentials, and the skew between this clock and STS's.
async fn check_stores(client: &kube::Client, findings: &mut Findings) {
    use secretsync::api::{ClusterSecretStore, ExternalSecret, SecretStore, StoreKind};
    let mut stores: Vec<AwsStore> = Vec::new();
    match Api::<SecretStore>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => stores.extend(list.items.into_iter().filter_map(|s| {
            let aws = s.spec.provider.aws.clone()?;
            let namespace = s.metadata.namespace.unwrap_or_default();
            let name = s.metadata.name.unwrap_or_default();
            Some(AwsStore {
                label: format!("SecretStore {namespace}/{name}"),
                kind: StoreKind::SecretStore,
                namespace,
                name,
                aws,
            })
        })),
        Err(e) => findings.problem("stores", format!("cannot list SecretStores: {e}")),
    }
    match Api::<ClusterSecretStore>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => stores.extend(list.items.into_iter().filter_map(|s| {
            let aws = s.spec.provider.aws.clone()?;
            let name = s.metadata.name.unwrap_or_default();
            Some(AwsStore {
                label: format!("ClusterSecretStore {name}"),
                kind: StoreKind::ClusterSecretStore,
                namespace: String::new(),
                name,
                aws,
            })
        })),
        Err(e) => findings.problem("stores", format!("cannot list ClusterSecretStores: {e}")),
    }
    if stores.is_empty() {
        return findings.skipped("stores", "no AWS store in the cluster");
    }
    let external_secrets = match Api::<ExternalSecret>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            findings.problem("stores", format!("cannot list ExternalSecrets: {e}"));
            Vec::new()
        }
    };
    let base = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    for store in stores {
        let (label, region) = (store.label.clone(), store.aws.region.clone());
        let config = base
            .to_builder()
            .region(aws_config::Region::new(region.clone()))
            .build();
        let date = Arc::new(Mutex::new(None));
        let sts = aws_sdk_sts::Client::new(&config);
        let answer = sts
            .get_caller_identity()
            .customize()
            .interceptor(DateHeader(date.clone()))
            .send()
            .await;
        match answer {
            Ok(identity) => {
                findings.ok(
                    "stores",
                    format!(
                        "{label}: STS in {region} answers, you are {}",
                        identity.arn().unwrap_or("(no ARN)")
                    ),
                );
                read_one_key(&store, &external_secrets, &config, findings).await;
            }
            Err(e) => findings.problem(
                "stores",
                format!(
                    "{label}: STS GetCallerIdentity in {region} failed: {}",
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                ),
            ),
        }
        let seen = date.lock().map(|d| d.clone()).unwrap_or_default();
        match seen.as_deref().map(jiff::fmt::rfc2822::parse) {
            Some(Ok(at)) => {
                let skew = jiff::Timestamp::now()
                    .duration_since(at.timestamp())
                    .as_secs();
                if skew.abs() > MAX_SKEW_SECONDS {
                    findings.problem(
                        "clock",
                        format!("this clock is {skew}s off AWS's (STS in {region}): requests are refused past 300s; fix NTP"),
                    );
                } else {
                    findings.ok(
                        "clock",
                        format!("within {}s of AWS's (STS in {region})", skew.abs()),
                    );
                }
            }
            Some(Err(e)) => {
                findings.problem("clock", format!("STS's Date header does not parse: {e}"))
            }
            None => findings.problem("clock", format!("STS in {region} gave no Date header")),
        }
    }
}

/// An AWS store of the cluster.
struct AwsStore {
    label: String,
    kind: secretsync::api::StoreKind,
    namespace: String,
    name: String,
    aws: secretsync::api::AwsProvider,
}

/// Reads the first key an ExternalSecret of the store names (`spec.data`),
/// as you: says whether the read worked; the value is dropped unseen.
async fn read_one_key(
    store: &AwsStore,
    external_secrets: &[secretsync::api::ExternalSecret],
    config: &aws_config::SdkConfig,
    findings: &mut Findings,
) {
    use secretsync::api::{AwsService, StoreKind};
    let key = external_secrets
        .iter()
        .filter(|es| {
            let reference = &es.spec.secret_store_ref;
            reference.kind == store.kind
                && reference.name == store.name
                && (store.kind == StoreKind::ClusterSecretStore
                    || es.metadata.namespace.as_deref() == Some(store.namespace.as_str()))
        })
        .find_map(|es| es.spec.data.first().map(|d| d.remote_ref.key.clone()));
    let Some(key) = key else {
        return findings.skipped(
            "stores",
            format!(
                "{}: no ExternalSecret names a key of it to read",
                store.label
            ),
        );
    };
    let key = format!("{}{key}", store.aws.prefix.as_deref().unwrap_or_default());
    let read = match store.aws.service {
        AwsService::SecretsManager => aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(&key)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string()),
        AwsService::ParameterStore => aws_sdk_ssm::Client::new(config)
            .get_parameter()
            .name(&key)
            .with_decryption(true)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_ssm::error::DisplayErrorContext(&e).to_string()),
    };
    match read {
        Ok(()) => findings.ok(
            "stores",
            format!("{}: read {key:?} as you (value not shown)", store.label),
        ),
        Err(e) => findings.problem(
            "stores",
            format!("{}: reading {key:?} as you failed: {e}", store.label),
        ),
    }
}

/// Keeps the `Date` header of the answer.
#[derive(Debug)]
struct DateHeader(Arc<Mutex<Option<String>>>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for DateHeader {
    fn name(&self) -> &'static str {
        "DateHeader"
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(date) = context.response().headers().get("date")
            && let Ok(mut kept) = self.0.lock()
        {
            *kept = Some(date.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rbac_reads_into_permissions() {
        let permissions = shipped_permissions();
        let has = |group: &str, resource: &str, sub: Option<&str>, verb: &str| {
            permissions.iter().any(|p| {
                p.group == group
                    && p.resource == resource
                    && p.subresource.as_deref() == sub
                    && p.verb == verb
            })
        };
        assert!(has("", "secrets", None, "patch"));
        assert!(has(
            "secretsync.io",
            "externalsecrets",
            Some("status"),
            "patch"
        ));
        assert!(has("coordination.k8s.io", "leases", None, "update"));
        let sealing = permissions
            .iter()
            .find(|p| p.name.is_some())
            .expect("the sealing-keys Secret is named");
        assert!(sealing.namespaced && sealing.verb == "get");
    }
}
