//! The AWS providers against a real AWS API (moto), through the official SDK.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::primitives::Blob;
use secretsync::SecretValue;
use secretsync::api::{ExternalSecret, StoreKind, StoreProvider};
use secretsync::provider::aws::{KubernetesAuth, NoKubernetes, RetrySettings, ServiceAccountToken};
use secretsync::provider::{
    FetchResults, Fetched, ProviderContext, ProviderError, Providers, RemoteRequest, StoreIdentity,
};
use secretsync::sync::{
    DesiredSecret, SyncError, TemplateSources, desired_secret, remote_requests,
};
use support::fault_proxy::{Fault, FaultProxy};
use support::moto::{Moto, REGION, Recorded, TEST_KEY_ID, count, sdk_config};

fn fast_retries(max_attempts: u32) -> RetrySettings {
    RetrySettings {
        max_attempts,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        fixed_delay: false,
    }
}

struct Aws {
    moto: Moto,
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

impl Aws {
    async fn start() -> Aws {
        let moto = Moto::start();
        let config = sdk_config(&moto.endpoint).await;
        Aws {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            moto,
        }
    }

    async fn providers(&self, kube: Arc<dyn KubernetesAuth>) -> Providers {
        providers_at(&self.moto.endpoint, kube, fast_retries(4)).await
    }

    async fn secret(&self, name: &str, value: &str) -> String {
        let out = self
            .sm
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
        out.arn.unwrap()
    }

    async fn parameter(&self, name: &str, value: &str, kind: aws_sdk_ssm::types::ParameterType) {
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }
}

async fn providers_at(
    endpoint: &str,
    kube: Arc<dyn KubernetesAuth>,
    retry: RetrySettings,
) -> Providers {
    Providers::new(ProviderContext {
        kube,
        aws_base: Some(sdk_config(endpoint).await),
        retry,
        ..Default::default()
    })
}

fn store(yaml: &str) -> StoreProvider {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn identity() -> StoreIdentity {
    StoreIdentity {
        kind: StoreKind::SecretStore,
        namespace: Some("team".into()),
        name: "aws".into(),
        tenant: None,
    }
}

fn external_secret(spec: &str) -> ExternalSecret {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let manifest = format!(
        "apiVersion: secretsync.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: team}}\nspec:\n  secretStoreRef: {{name: aws}}\n{spec}"
    );
    serde_yaml_ng::from_str(&manifest).unwrap_or_else(|e| panic!("{e}\n{manifest}"))
}

async fn fetch(
    providers: &Providers,
    spec: &StoreProvider,
    requests: &BTreeSet<RemoteRequest>,
) -> FetchResults {
    let provider = providers
        .for_store(&identity(), spec)
        .await
        .expect("a provider");
    provider.fetch_batch(requests).await
}

async fn sync(
    providers: &Providers,
    spec: &StoreProvider,
    es: &ExternalSecret,
) -> Result<DesiredSecret, SyncError> {
    let fetched = fetch(providers, spec, &remote_requests(&es.spec)).await;
    desired_secret(
        es,
        &fetched,
        &TemplateSources::default(),
        &Default::default(),
    )
}

fn text(secret: &DesiredSecret, key: &str) -> String {
    String::from_utf8_lossy(secret.data[key].expose()).into_owned()
}

fn value_request(key: &str) -> RemoteRequest {
    RemoteRequest::Value {
        key: key.into(),
        version: None,
    }
}

const SECRETS_MANAGER: &str = "aws: {service: SecretsManager, region: eu-west-1}";
const PARAMETER_STORE: &str = "aws: {service: ParameterStore, region: eu-west-1}";

#[tokio::test]
async fn secrets_manager_stages_versions_binary_arn_property_and_prefix() {
    let aws = Aws::start().await;
    let arn = aws
        .secret("team/db", r#"{"password":"pw-1","nested":{"port":5432}}"#)
        .await;
    let first_version = aws
        .sm
        .describe_secret()
        .secret_id("team/db")
        .send()
        .await
        .unwrap()
        .version_ids_to_stages
        .unwrap()
        .into_keys()
        .next()
        .unwrap();
    aws.sm
        .put_secret_value()
        .secret_id("team/db")
        .secret_string(r#"{"password":"pw-2"}"#)
        .send()
        .await
        .unwrap();
    aws.sm
        .put_secret_value()
        .secret_id("team/db")
        .secret_string(r#"{"password":"pw-canary"}"#)
        .version_stages("CANARY")
        .send()
        .await
        .unwrap();
    aws.sm
        .create_secret()
        .name("team/keystore")
        .secret_binary(Blob::new(vec![0u8, 159, 146, 150, 255]))
        .send()
        .await
        .unwrap();

    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let es = external_secret(&format!(
        r#"
data:
  - {{secretKey: current, remoteRef: {{key: team/db, property: password}}}}
  - {{secretKey: explicit, remoteRef: {{key: team/db, property: password, version: AWSCURRENT}}}}
  - {{secretKey: previous, remoteRef: {{key: team/db, property: password, version: AWSPREVIOUS}}}}
  - {{secretKey: canary, remoteRef: {{key: team/db, property: password, version: CANARY}}}}
  - {{secretKey: first, remoteRef: {{key: team/db, property: nested.port, version: "uuid/{first_version}"}}}}
  - {{secretKey: by-arn, remoteRef: {{key: "{arn}", property: password}}}}
  - {{secretKey: keystore, remoteRef: {{key: team/keystore}}}}
"#
    ));
    let secret = sync(&providers, &store(SECRETS_MANAGER), &es)
        .await
        .unwrap();
    assert_eq!(text(&secret, "current"), "pw-2");
    assert_eq!(text(&secret, "explicit"), "pw-2");
    assert_eq!(text(&secret, "previous"), "pw-1");
    assert_eq!(text(&secret, "canary"), "pw-canary");
    assert_eq!(text(&secret, "first"), "5432");
    assert_eq!(text(&secret, "by-arn"), "pw-2");
    assert_eq!(secret.data["keystore"].expose(), [0u8, 159, 146, 150, 255]);

    // A store prefix goes before every key.
    let prefixed = store("aws: {service: SecretsManager, region: eu-west-1, prefix: team/}");
    let es = external_secret("data: [{secretKey: p, remoteRef: {key: db, property: password}}]");
    let secret = sync(&providers, &prefixed, &es).await.unwrap();
    assert_eq!(text(&secret, "p"), "pw-2");
}

#[tokio::test]
async fn forty_five_secrets_cost_three_batches_and_a_hundred_references_to_ten_cost_one() {
    let aws = Aws::start().await;
    for i in 0..45 {
        aws.secret(&format!("svc/s{i:02}"), &format!(r#"{{"n":"{i}"}}"#))
            .await;
    }
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(SECRETS_MANAGER);

    aws.moto.start_recording();
    let requests: BTreeSet<_> = (0..45)
        .map(|i| value_request(&format!("svc/s{i:02}")))
        .collect();
    let results = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert!(results.values().all(|r| matches!(r, Ok(Fetched::Value(_)))));
    assert_eq!(
        providers
            .calls()
            .total("secretsmanager", "BatchGetSecretValue"),
        3
    );
    assert_eq!(count(&recorded, "secretsmanager.BatchGetSecretValue"), 3);
    assert_eq!(recorded.len(), 3, "nothing else reached AWS: {recorded:?}");
    for request in &recorded {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert!(body["SecretIdList"].as_array().unwrap().len() <= 20);
    }

    // 100 ExternalSecrets over 10 secrets: one de-duplicated batch.
    let external_secrets: Vec<ExternalSecret> = (0..100)
        .map(|i| {
            external_secret(&format!(
                "data: [{{secretKey: n, remoteRef: {{key: svc/s{:02}, property: n}}}}]",
                i % 10
            ))
        })
        .collect();
    let requests: BTreeSet<_> = external_secrets
        .iter()
        .flat_map(|es| remote_requests(&es.spec))
        .collect();
    assert_eq!(requests.len(), 10);
    // A new process, with nothing kept from the fetch above.
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    aws.moto.start_recording();
    let fetched = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert_eq!(count(&recorded, "secretsmanager.BatchGetSecretValue"), 1);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    for (i, es) in external_secrets.iter().enumerate() {
        let secret = desired_secret(
            es,
            &fetched,
            &TemplateSources::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(text(&secret, "n"), (i % 10).to_string());
    }
}

#[tokio::test]
async fn parameter_store_types_versions_labels_and_batches_of_ten() {
    use aws_sdk_ssm::types::ParameterType;
    let aws = Aws::start().await;
    for i in 0..25 {
        aws.parameter(
            &format!("/svc/p{i:02}"),
            &format!("v{i}"),
            ParameterType::String,
        )
        .await;
    }
    aws.parameter("/app/list", "a,b,c", ParameterType::StringList)
        .await;
    aws.parameter("/app/secure", "s3cure-value", ParameterType::SecureString)
        .await;
    aws.parameter("/app/versioned", "one", ParameterType::String)
        .await;
    aws.parameter("/app/versioned", "two", ParameterType::String)
        .await;
    aws.ssm
        .label_parameter_version()
        .name("/app/versioned")
        .parameter_version(1)
        .labels("stable")
        .send()
        .await
        .unwrap();

    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(PARAMETER_STORE);
    aws.moto.start_recording();
    let requests: BTreeSet<_> = (0..25)
        .map(|i| value_request(&format!("/svc/p{i:02}")))
        .collect();
    let results = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    for i in 0..25 {
        let Ok(Fetched::Value(value)) = &results[&value_request(&format!("/svc/p{i:02}"))] else {
            panic!()
        };
        assert_eq!(value.expose(), format!("v{i}").as_bytes());
    }
    assert_eq!(providers.calls().total("ssm", "GetParameters"), 3);
    assert_eq!(count(&recorded, "AmazonSSM.GetParameters"), 3);
    assert_eq!(recorded.len(), 3, "{recorded:?}");

    let es = external_secret(
        r#"
data:
  - {secretKey: list, remoteRef: {key: /app/list}}
  - {secretKey: secure, remoteRef: {key: /app/secure}}
  - {secretKey: latest, remoteRef: {key: /app/versioned}}
  - {secretKey: v1, remoteRef: {key: /app/versioned, version: "1"}}
  - {secretKey: v2, remoteRef: {key: /app/versioned, version: "2"}}
  - {secretKey: stable, remoteRef: {key: /app/versioned, version: stable}}
"#,
    );
    let secret = sync(&providers, &spec, &es).await.unwrap();
    assert_eq!(text(&secret, "list"), "a,b,c");
    assert_eq!(text(&secret, "secure"), "s3cure-value");
    assert_eq!(text(&secret, "latest"), "two");
    assert_eq!(text(&secret, "v1"), "one");
    assert_eq!(text(&secret, "v2"), "two");
    assert_eq!(text(&secret, "stable"), "one");
}

#[tokio::test]
async fn find_secrets_by_path_tags_and_name() {
    let aws = Aws::start().await;
    for (name, team) in [
        ("apps/shop/db", "shop"),
        ("apps/shop/api", "shop"),
        ("apps/blog/db", "blog"),
        ("other/db", "shop"),
    ] {
        aws.sm
            .create_secret()
            .name(name)
            .secret_string(format!("value-of-{name}"))
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("team")
                    .value(team)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let es = external_secret(
        r#"
dataFrom:
  - find: {path: apps/shop/}
    rewrite: [{regexp: {source: "^apps/shop/", target: "path-"}}]
  - find: {tags: {team: blog}}
    rewrite: [{regexp: {source: "^", target: "tag-"}}]
  - find: {name: {regexp: "db$"}}
    rewrite: [{regexp: {source: "^", target: "name-"}}]
"#,
    );
    let secret = sync(&providers, &store(SECRETS_MANAGER), &es)
        .await
        .unwrap();
    let keys: Vec<&str> = secret.data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name-apps_blog_db",
            "name-apps_shop_db",
            "name-other_db",
            "path-api",
            "path-db",
            "tag-apps_blog_db"
        ]
    );
    assert_eq!(text(&secret, "path-api"), "value-of-apps/shop/api");
    assert!(providers.calls().total("secretsmanager", "ListSecrets") >= 3);
}

/// `metadataPolicy: Fetch` reads tags instead of values: Secrets Manager's
/// from one ListSecrets for many secrets (or DescribeSecret per distinct
/// secret where listing is not allowed), SSM's with ListTagsForResource per
/// distinct parameter; never one call per reference.
#[tokio::test]
async fn metadata_policy_fetch_reads_tags_batched() {
    let aws = Aws::start().await;
    for (name, owner) in [("apps/db", "team-a"), ("apps/api", "team-b")] {
        aws.sm
            .create_secret()
            .name(name)
            .secret_string("Tag-test-secret-value")
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("owner")
                    .value(owner)
                    .build(),
            )
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("tier")
                    .value("gold")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let es = external_secret(
        r#"
data:
  - {secretKey: db-owner, remoteRef: {key: apps/db, metadataPolicy: Fetch, property: owner}}
  - {secretKey: db-owner-again, remoteRef: {key: apps/db, metadataPolicy: Fetch, property: owner}}
  - {secretKey: api-tags, remoteRef: {key: apps/api, metadataPolicy: Fetch}}
  - {secretKey: db-value, remoteRef: {key: apps/db}}
dataFrom:
  - extract: {key: apps/api, metadataPolicy: Fetch}
    rewrite: [{regexp: {source: "^", target: "api-tag-"}}]
"#,
    );
    let secret = sync(&providers, &store(SECRETS_MANAGER), &es)
        .await
        .unwrap();
    assert_eq!(text(&secret, "db-owner"), "team-a");
    assert_eq!(text(&secret, "db-owner-again"), "team-a");
    assert_eq!(
        text(&secret, "api-tags"),
        r#"{"owner":"team-b","tier":"gold"}"#
    );
    assert_eq!(text(&secret, "api-tag-tier"), "gold");
    assert_eq!(text(&secret, "db-value"), "Tag-test-secret-value");
    let calls = providers.calls();
    assert_eq!(calls.total("secretsmanager", "ListSecrets"), 1);
    assert_eq!(calls.total("secretsmanager", "DescribeSecret"), 0);

    // A secret that does not exist is named.
    let missing = external_secret(
        "data: [{secretKey: x, remoteRef: {key: apps/none, metadataPolicy: Fetch}}]",
    );
    let error = sync(&providers, &store(SECRETS_MANAGER), &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("apps/none"), "{error}");

    // SSM: one ListTagsForResource per distinct parameter.
    aws.parameter(
        "/apps/db/url",
        "Tag-test-param",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    aws.ssm
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/apps/db/url")
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("owner")
                .value("team-c")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let es = external_secret(
        r#"
data:
  - {secretKey: owner, remoteRef: {key: /apps/db/url, metadataPolicy: Fetch, property: owner}}
  - {secretKey: tags, remoteRef: {key: /apps/db/url, metadataPolicy: Fetch}}
  - {secretKey: url, remoteRef: {key: /apps/db/url}}
"#,
    );
    let secret = sync(&providers, &store(PARAMETER_STORE), &es)
        .await
        .unwrap();
    assert_eq!(text(&secret, "owner"), "team-c");
    assert_eq!(text(&secret, "tags"), r#"{"owner":"team-c"}"#);
    assert_eq!(text(&secret, "url"), "Tag-test-param");
    assert_eq!(providers.calls().total("ssm", "ListTagsForResource"), 1);
}

#[tokio::test]
async fn find_parameters_by_path_across_pages_name_and_tags() {
    use aws_sdk_ssm::types::{ParameterType, Tag};
    let aws = Aws::start().await;
    for i in 0..15 {
        aws.parameter(
            &format!("/svc/a/p{i:02}"),
            &format!("v{i}"),
            ParameterType::String,
        )
        .await;
    }
    aws.parameter("/svc/b/deep/key", "deep", ParameterType::SecureString)
        .await;
    aws.parameter("/elsewhere/x", "x", ParameterType::String)
        .await;
    aws.ssm
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/elsewhere/x")
        .tags(Tag::builder().key("team").value("shop").build().unwrap())
        .send()
        .await
        .unwrap();
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let es = external_secret(
        r#"
dataFrom:
  - find: {path: /svc}
  - find: {path: /svc, name: {regexp: "p1[0-9]$"}}
    rewrite: [{regexp: {source: "^/svc/a/", target: "re-"}}]
  - find: {tags: {team: shop}}
    rewrite: [{regexp: {source: "^/", target: "tag-"}}]
"#,
    );
    let secret = sync(&providers, &store(PARAMETER_STORE), &es)
        .await
        .unwrap();
    assert_eq!(text(&secret, "_svc_a_p00"), "v0");
    assert_eq!(text(&secret, "_svc_a_p14"), "v14");
    assert_eq!(
        text(&secret, "_svc_b_deep_key"),
        "deep",
        "recursive and decrypted"
    );
    assert_eq!(
        secret.data.keys().filter(|k| k.starts_with("re-")).count(),
        5
    );
    assert_eq!(text(&secret, "tag-elsewhere_x"), "x");
    assert!(!secret.data.contains_key("_elsewhere_x"));
    assert!(
        providers.calls().total("ssm", "GetParametersByPath") >= 2,
        "16 parameters take more than one page"
    );
}

#[tokio::test]
async fn missing_secrets_and_parameters_are_errors_that_name_the_key() {
    let aws = Aws::start().await;
    aws.secret("present", r#"{"a":"secret-value-1"}"#).await;
    let providers = aws.providers(Arc::new(NoKubernetes)).await;

    let results = fetch(
        &providers,
        &store(SECRETS_MANAGER),
        &[value_request("absent"), value_request("present")].into(),
    )
    .await;
    assert_eq!(
        results[&value_request("absent")].as_ref().unwrap_err(),
        &ProviderError::NotFound {
            key: "absent".into()
        }
    );
    assert!(
        results[&value_request("present")].is_ok(),
        "one missing key fails only its own reference"
    );

    let cases = [
        (
            SECRETS_MANAGER,
            "data: [{secretKey: a, remoteRef: {key: absent}}]",
            "remote key \"absent\" not found",
        ),
        (
            SECRETS_MANAGER,
            "data: [{secretKey: a, remoteRef: {key: present, version: NOPE}}]",
            "version \"NOPE\" of remote key \"present\" not found",
        ),
        (
            SECRETS_MANAGER,
            "data: [{secretKey: a, remoteRef: {key: absent, version: AWSPREVIOUS}}]",
            "remote key \"absent\" not found",
        ),
        (
            SECRETS_MANAGER,
            "data: [{secretKey: a, remoteRef: {key: present, property: b}}]",
            "property \"b\" not found in remote key \"present\"",
        ),
        (
            PARAMETER_STORE,
            "data: [{secretKey: a, remoteRef: {key: /absent}}]",
            "remote key \"/absent\" not found",
        ),
        (
            PARAMETER_STORE,
            "data: [{secretKey: a, remoteRef: {key: /absent, version: \"3\"}}]",
            "version \"3\" of remote key \"/absent\" not found",
        ),
    ];
    for (spec, es, expected) in cases {
        let error = sync(&providers, &store(spec), &external_secret(es))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(expected),
            "{es}\n  got: {error}\n  want: {expected}"
        );
        assert!(!error.contains("secret-value-1"));
    }
}

/// A TokenRequest source standing in for the API server.
#[derive(Default)]
struct TestKubernetes {
    requested: Mutex<Vec<(String, String, Vec<String>)>>,
    secrets: BTreeMap<(String, String, String), String>,
}

#[async_trait]
impl KubernetesAuth for TestKubernetes {
    async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
    ) -> Result<ServiceAccountToken, String> {
        self.requested
            .lock()
            .unwrap()
            .push((namespace.into(), name.into(), audiences.to_vec()));
        Ok(ServiceAccountToken {
            token: SecretValue::from(
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl",
            ),
            role_arn: Some("arn:aws:iam::123456789012:role/team-reader".into()),
        })
    }

    async fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretValue, String> {
        self.secrets
            .get(&(namespace.into(), name.into(), key.into()))
            .map(|v| SecretValue::from(v.as_str()))
            .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))
    }
}

fn signing_key(request: &Recorded) -> &str {
    let credential = request
        .authorization
        .split("Credential=")
        .nth(1)
        .unwrap_or_default();
    credential.split('/').next().unwrap_or_default()
}

#[tokio::test]
async fn jwt_service_account_token_is_exchanged_once_for_many_fetches() {
    let aws = Aws::start().await;
    aws.secret("db", "jwt-path-value").await;
    let kube = Arc::new(TestKubernetes::default());
    let providers = aws.providers(kube.clone()).await;
    let spec = store(
        "aws: {service: SecretsManager, region: eu-west-1, auth: {jwt: {serviceAccountRef: {name: reader, audiences: [extra-aud]}}}}",
    );
    aws.moto.start_recording();
    for _ in 0..3 {
        let results = fetch(&providers, &spec, &[value_request("db")].into()).await;
        assert!(results[&value_request("db")].is_ok(), "{:?}", results);
    }
    let recorded = aws.moto.stop_recording();
    assert_eq!(
        count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        1,
        "credentials are cached: {recorded:?}"
    );
    let assume = recorded
        .iter()
        .find(|r| r.call == "sts.AssumeRoleWithWebIdentity")
        .unwrap();
    assert!(
        assume
            .body
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fteam-reader"),
        "{}",
        assume.body
    );
    assert!(
        assume.authorization.is_empty(),
        "AssumeRoleWithWebIdentity is unsigned"
    );
    for fetch in recorded
        .iter()
        .filter(|r| r.call.starts_with("secretsmanager."))
    {
        assert!(
            signing_key(fetch).starts_with("ASIA"),
            "signed with the assumed role: {}",
            fetch.authorization
        );
    }
    let requested = kube.requested.lock().unwrap().clone();
    assert_eq!(
        requested,
        [(
            "team".to_string(),
            "reader".to_string(),
            vec!["sts.amazonaws.com".to_string(), "extra-aud".to_string()]
        )]
    );
}

#[tokio::test]
async fn static_keys_from_a_secret_sign_the_requests() {
    let aws = Aws::start().await;
    aws.secret("db", "static-path-value").await;
    let kube = TestKubernetes {
        secrets: [
            (
                ("team".into(), "aws-keys".into(), "id".into()),
                "AKIASTATICKEY0001".into(),
            ),
            (
                ("team".into(), "aws-keys".into(), "secret".into()),
                "static-secret-access-key".into(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let providers = aws.providers(Arc::new(kube)).await;
    let spec = store(
        "aws: {service: SecretsManager, region: eu-west-1, auth: {secretRef: {accessKeyIDSecretRef: {name: aws-keys, key: id}, secretAccessKeySecretRef: {name: aws-keys, key: secret}}}}",
    );
    aws.moto.start_recording();
    let results = fetch(&providers, &spec, &[value_request("db")].into()).await;
    let recorded = aws.moto.stop_recording();
    let Ok(Fetched::Value(value)) = &results[&value_request("db")] else {
        panic!("{results:?}")
    };
    assert_eq!(value.expose(), b"static-path-value");
    assert_eq!(signing_key(&recorded[0]), "AKIASTATICKEY0001");

    // A missing key in the Secret is an error naming it.
    let broken = store(
        "aws: {service: SecretsManager, region: eu-west-1, auth: {secretRef: {accessKeyIDSecretRef: {name: aws-keys, key: nope}, secretAccessKeySecretRef: {name: aws-keys, key: secret}}}}",
    );
    let results = fetch(&providers, &broken, &[value_request("db")].into()).await;
    let error = results[&value_request("db")]
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Secret team/aws-keys has no key \"nope\""),
        "{error}"
    );
}

#[tokio::test]
async fn roles_are_chained_in_order_with_external_id_and_session_tags_on_the_last() {
    let aws = Aws::start().await;
    aws.secret("db", "chained-value").await;
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(
        r#"
aws:
  service: SecretsManager
  region: eu-west-1
  additionalRoles: ["arn:aws:iam::123456789012:role/hop-1", "arn:aws:iam::123456789012:role/hop-2"]
  role: arn:aws:iam::123456789012:role/reader
  externalID: ext-42
  sessionTags: [{key: team, value: shop}]
"#,
    );
    aws.moto.start_recording();
    let results = fetch(&providers, &spec, &[value_request("db")].into()).await;
    let recorded = aws.moto.stop_recording();
    assert!(results[&value_request("db")].is_ok(), "{results:?}");
    let assumed: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.call == "sts.AssumeRole")
        .collect();
    assert_eq!(assumed.len(), 3, "{recorded:?}");
    let roles: Vec<&str> = assumed
        .iter()
        .map(|r| {
            r.body
                .split('&')
                .find_map(|p| p.strip_prefix("RoleArn="))
                .unwrap()
        })
        .collect();
    assert_eq!(
        roles,
        [
            "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fhop-1",
            "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fhop-2",
            "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader"
        ]
    );
    assert_eq!(
        signing_key(assumed[0]),
        TEST_KEY_ID,
        "the first hop uses the base credentials"
    );
    assert!(
        signing_key(assumed[1]).starts_with("ASIA"),
        "each next hop uses the previous role"
    );
    assert!(!assumed[0].body.contains("ExternalId"));
    assert!(
        assumed[2].body.contains("ExternalId=ext-42"),
        "{}",
        assumed[2].body
    );
    assert!(
        assumed[2].body.contains("Tags.member.1.Key=team")
            && assumed[2].body.contains("Tags.member.1.Value=shop")
    );
    let fetch = recorded
        .iter()
        .find(|r| r.call == "secretsmanager.BatchGetSecretValue")
        .unwrap();
    assert!(signing_key(fetch).starts_with("ASIA"));
}

/// ESO's `transitiveTagKeys`: passed with the last role's session tags, so
/// that a role it chains to in turn keeps them; sent even without session
/// tags, as ESO sends them (AWS judges); an empty key is refused, naming it.
#[tokio::test]
async fn transitive_tag_keys_go_with_the_last_roles_session_tags() {
    let aws = Aws::start().await;
    aws.secret("db", "transitive-value").await;
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = |extra: &str| {
        store(&format!(
            r#"
aws:
  service: SecretsManager
  region: eu-west-1
  additionalRoles: ["arn:aws:iam::123456789012:role/hop-1"]
  role: arn:aws:iam::123456789012:role/reader
  externalID: ext-7
  transitiveTagKeys: [team, cost-centre]
{extra}"#
        ))
    };
    let assumed_with = |spec: StoreProvider| {
        let providers = &providers;
        let aws = &aws;
        async move {
            aws.moto.start_recording();
            let results = fetch(providers, &spec, &[value_request("db")].into()).await;
            let recorded = aws.moto.stop_recording();
            assert!(results[&value_request("db")].is_ok(), "{results:?}");
            let fetched = recorded
                .iter()
                .find(|r| r.call == "secretsmanager.BatchGetSecretValue")
                .unwrap();
            assert!(signing_key(fetched).starts_with("ASIA"), "read as the role");
            let assumed: Vec<Recorded> = recorded
                .into_iter()
                .filter(|r| r.call == "sts.AssumeRole")
                .collect();
            assert_eq!(assumed.len(), 2);
            assert!(!assumed[0].body.contains("TransitiveTagKeys"));
            assumed[1].body.clone()
        }
    };

    let body = assumed_with(spec(
        "  sessionTags: [{key: team, value: shop}, {key: cost-centre, value: \"42\"}]",
    ))
    .await;
    for part in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader",
        "ExternalId=ext-7",
        "Tags.member.1.Key=team",
        "Tags.member.1.Value=shop",
        "Tags.member.2.Key=cost-centre",
        "Tags.member.2.Value=42",
        "TransitiveTagKeys.member.1=team",
        "TransitiveTagKeys.member.2=cost-centre",
    ] {
        assert!(body.contains(part), "{part} not in {body}");
    }

    let body = assumed_with(spec("")).await;
    assert!(
        body.contains("TransitiveTagKeys.member.1=team") && !body.contains("Tags.member"),
        "{body}"
    );

    let empty = store(
        "aws: {service: SecretsManager, region: eu-west-1, sessionTags: [{key: a, value: b}], transitiveTagKeys: [a, \"\"]}",
    );
    let error = empty.validate(Some("team")).unwrap_err().to_string();
    assert!(
        error.contains("spec.provider.aws.transitiveTagKeys[1]: must not be empty"),
        "{error}"
    );
}

/// ESO's store `retrySettings`: `maxRetries` attempts in all, `retryInterval`
/// apart; the controller's own settings where a store gives none.
#[tokio::test]
async fn a_stores_retry_settings_decide_its_attempts() {
    let aws = Aws::start().await;
    aws.secret("db", r#"{"password":"retried-value"}"#).await;
    let es = external_secret("data: [{secretKey: p, remoteRef: {key: db, property: password}}]");
    let store_spec = |retry: &str| {
        let yaml = format!(
            "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: team}}\nspec:\n  provider: {{{SECRETS_MANAGER}}}\n{retry}"
        );
        let store: secretsync::api::SecretStore =
            serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        store.spec
    };
    for (retry, attempts) in [
        ("  retrySettings: {maxRetries: 2, retryInterval: 20ms}", 2),
        ("  retrySettings: {retryInterval: 10ms}", 3),
        ("", 4),
    ] {
        let spec = store_spec(retry);
        spec.validate(Some("team")).unwrap();
        // Every request fails.
        let proxy = FaultProxy::start(&aws.moto.endpoint, Fault::ServerError, 1, 1).await;
        let providers =
            providers_at(&proxy.endpoint, Arc::new(NoKubernetes), fast_retries(4)).await;
        let started = std::time::Instant::now();
        sync(&providers, &spec.provider_to_build(), &es)
            .await
            .unwrap_err();
        assert_eq!(
            proxy.seen.load(std::sync::atomic::Ordering::SeqCst),
            attempts,
            "{retry:?}"
        );
        if retry.contains("20ms") {
            assert!(
                started.elapsed() >= Duration::from_millis(20),
                "one wait of the interval"
            );
        }
    }
    let refused = store_spec("  retrySettings: {maxRetries: 0}")
        .validate(Some("team"))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("spec.retrySettings.maxRetries: 0 is not 1 to 20"),
        "{refused}"
    );
    let bad_interval = serde_yaml_ng::from_str::<secretsync::api::SecretStore>(
        "apiVersion: secretsync.io/v1\nkind: SecretStore\nmetadata: {name: aws}\nspec:\n  provider: {fake: {data: []}}\n  retrySettings: {retryInterval: soon}",
    )
    .unwrap_err()
    .to_string();
    assert!(bad_interval.contains("soon"), "{bad_interval}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_then_reported_without_blanking() {
    let aws = Aws::start().await;
    aws.secret("db", r#"{"password":"retried-value"}"#).await;
    let es = external_secret("data: [{secretKey: p, remoteRef: {key: db, property: password}}]");
    let spec = store(SECRETS_MANAGER);

    for fault in [Fault::Throttling, Fault::ServerError] {
        // Every other request fails: each call succeeds on a retry.
        let proxy = FaultProxy::start(&aws.moto.endpoint, fault, 1, 2).await;
        let mut calls = 0;
        for _ in 0..3 {
            // A new process each time, so each fetches (nothing is kept).
            let providers =
                providers_at(&proxy.endpoint, Arc::new(NoKubernetes), fast_retries(4)).await;
            let secret = sync(&providers, &spec, &es)
                .await
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(text(&secret, "p"), "retried-value");
            calls += providers
                .calls()
                .total("secretsmanager", "BatchGetSecretValue");
        }
        assert_eq!(
            proxy.failed.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{fault:?}"
        );
        assert_eq!(calls, 3, "retries are inside one call");

        // Every request fails: past the retries the reference gets the error.
        let proxy = FaultProxy::start(&aws.moto.endpoint, fault, 1, 1).await;
        let providers =
            providers_at(&proxy.endpoint, Arc::new(NoKubernetes), fast_retries(3)).await;
        let error = sync(&providers, &spec, &es).await.unwrap_err().to_string();
        assert_eq!(
            proxy.seen.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{fault:?}: exactly max_attempts tries"
        );
        assert!(error.starts_with("spec.data[0].remoteRef (remote key \"db\"): secretsmanager BatchGetSecretValue failed"), "{error}");
        let code = match fault {
            Fault::Throttling => "ThrottlingException",
            Fault::ServerError
            | Fault::Deny(_)
            | Fault::ServerErrorFor(_)
            | Fault::ServerErrorIn(_) => "InternalFailure",
        };
        assert!(error.contains(code), "{error}");
        assert!(!error.contains("retried-value"));
    }
}

/// `secretsync render` as a pod runs it: the only credentials are IRSA's
/// `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`.
#[tokio::test]
async fn render_uses_pod_irsa_from_the_environment() {
    let aws = Aws::start().await;
    aws.secret("prod/db", r#"{"password":"irsa-render-value"}"#)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln").unwrap();
    std::fs::write(
        dir.path().join("manifests.yaml"),
        r#"
apiVersion: secretsync.io/v1
kind: SecretStore
metadata: {name: aws, namespace: team}
spec:
  provider:
    aws: {service: SecretsManager, region: eu-west-1}
---
apiVersion: secretsync.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: team}
spec:
  secretStoreRef: {name: aws}
  data:
    - {secretKey: password, remoteRef: {key: prod/db, property: password}}
"#,
    )
    .unwrap();
    aws.moto.start_recording();
    let output = render_with_env(
        dir.path(),
        &[
            ("AWS_ENDPOINT_URL", aws.moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pod-role"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ],
    );
    let recorded = aws.moto.stop_recording();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("password: aXJzYS1yZW5kZXItdmFsdWU="));
    assert_eq!(
        count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        1,
        "{recorded:?}"
    );
    let fetch = recorded
        .iter()
        .find(|r| r.call == "secretsmanager.BatchGetSecretValue")
        .unwrap();
    assert!(
        signing_key(fetch).starts_with("ASIA"),
        "{}",
        fetch.authorization
    );
    assert!(
        !stderr.contains("irsa-render-value"),
        "a value reached the logs"
    );
}

/// `render` with `auth.secretRef`: the keys come from a Secret among the manifests.
#[tokio::test]
async fn render_reads_static_keys_from_a_secret_in_the_manifests() {
    let aws = Aws::start().await;
    aws.parameter(
        "/prod/token",
        "static-render-value",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifests.yaml"),
        r#"
apiVersion: v1
kind: Secret
metadata: {name: aws-keys, namespace: team}
stringData: {id: AKIARENDERKEY00001, secret: render-secret-access-key}
---
apiVersion: secretsync.io/v1
kind: SecretStore
metadata: {name: aws, namespace: team}
spec:
  provider:
    aws:
      service: ParameterStore
      region: eu-west-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws-keys, key: id}
          secretAccessKeySecretRef: {name: aws-keys, key: secret}
---
apiVersion: secretsync.io/v1
kind: ExternalSecret
metadata: {name: token, namespace: team}
spec:
  secretStoreRef: {name: aws}
  data:
    - {secretKey: token, remoteRef: {key: /prod/token}}
---
apiVersion: secretsync.io/v1
kind: ExternalSecret
metadata: {name: missing, namespace: team}
spec:
  secretStoreRef: {name: aws}
  data:
    - {secretKey: token, remoteRef: {key: /prod/nothing-here}}
"#,
    )
    .unwrap();
    aws.moto.start_recording();
    let output = render_with_env(
        dir.path(),
        &[
            ("AWS_ENDPOINT_URL", aws.moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
        ],
    );
    let recorded = aws.moto.stop_recording();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("token: c3RhdGljLXJlbmRlci12YWx1ZQ==")
    );
    assert!(
        stderr.contains("ExternalSecret team/missing: spec.data[0].remoteRef (remote key \"/prod/nothing-here\"): remote key \"/prod/nothing-here\" not found"),
        "{stderr}"
    );
    assert_eq!(
        count(&recorded, "AmazonSSM.GetParameters"),
        1,
        "both ExternalSecrets in one call"
    );
    assert_eq!(signing_key(&recorded[0]), "AKIARENDERKEY00001");
    assert!(
        !stderr.contains("static-render-value") && !stderr.contains("render-secret-access-key")
    );
}

/// Runs `secretsync render -f DIR` with only `vars` (and PATH) in its
/// environment, and every log line on.
fn render_with_env(dir: &std::path::Path, vars: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["render", "-f", dir.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "trace")
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

#[tokio::test]
async fn providers_live_while_the_store_is_unchanged_and_credentials_renew_before_expiry() {
    let aws = Aws::start().await;
    aws.secret("db", "renewed-value").await;
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(SECRETS_MANAGER);
    let first = providers.for_store(&identity(), &spec).await.unwrap();
    let again = providers.for_store(&identity(), &spec).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "same store, same client");
    let changed = store("aws: {service: SecretsManager, region: eu-west-1, prefix: x/}");
    let rebuilt = providers.for_store(&identity(), &changed).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first, &rebuilt),
        "a changed spec builds a new client"
    );

    // Assumed credentials last an hour; with a renewal margin longer than that,
    // every use finds them about to expire and fetches new ones.
    let kube = Arc::new(TestKubernetes::default());
    let base = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&aws.moto.endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            TEST_KEY_ID,
            "test-secret",
            None,
            None,
            "test",
        ))
        .identity_cache(
            aws_config::identity::IdentityCache::lazy()
                .buffer_time(Duration::from_secs(2 * 3600))
                .build(),
        )
        .load()
        .await;
    let providers = Providers::new(ProviderContext {
        kube: kube.clone(),
        aws_base: Some(base),
        retry: fast_retries(2),
        ..Default::default()
    });
    let jwt = store(
        "aws: {service: SecretsManager, region: eu-west-1, auth: {jwt: {serviceAccountRef: {name: reader}}}}",
    );
    aws.moto.start_recording();
    for _ in 0..3 {
        let results = fetch(&providers, &jwt, &[value_request("db")].into()).await;
        assert!(results[&value_request("db")].is_ok(), "{results:?}");
    }
    let recorded = aws.moto.stop_recording();
    assert_eq!(count(&recorded, "sts.AssumeRoleWithWebIdentity"), 3);
    assert_eq!(
        kube.requested.lock().unwrap().len(),
        3,
        "a fresh TokenRequest each renewal"
    );
}

fn versioned_request(key: &str, version: &str) -> RemoteRequest {
    RemoteRequest::Value {
        key: key.into(),
        version: Some(version.into()),
    }
}

fn value_of(results: &FetchResults, request: &RemoteRequest) -> String {
    match &results[request] {
        Ok(Fetched::Value(v)) => String::from_utf8_lossy(v.expose()).into_owned(),
        other => panic!("{request:?}: {other:?}"),
    }
}

/// Calls of a recording by `X-Amz-Target`, and the ids one BatchGetSecretValue asked for.
fn batch_ids(recorded: &[Recorded]) -> Vec<String> {
    recorded
        .iter()
        .filter(|r| r.call == "secretsmanager.BatchGetSecretValue")
        .flat_map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["SecretIdList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn secrets_manager_refreshes_fetch_only_what_changed() {
    let aws = Aws::start().await;
    for i in 0..45 {
        aws.secret(&format!("svc/s{i:02}"), &format!("v{i}-1"))
            .await;
    }
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(SECRETS_MANAGER);
    let mut requests: BTreeSet<_> = (0..45)
        .map(|i| value_request(&format!("svc/s{i:02}")))
        .collect();
    let previous = versioned_request("svc/s00", "AWSPREVIOUS");
    requests.insert(previous.clone());
    aws.sm
        .put_secret_value()
        .secret_id("svc/s00")
        .secret_string("v0-2")
        .send()
        .await
        .unwrap();
    let first = fetch(&providers, &spec, &requests).await;
    assert_eq!(value_of(&first, &value_request("svc/s00")), "v0-2");
    assert_eq!(value_of(&first, &previous), "v0-1");

    // Nothing changed: one listing page, no value fetched.
    aws.moto.start_recording();
    let again = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.ListSecrets"),
        1,
        "{recorded:?}"
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(value_of(&again, &value_request("svc/s07")), "v7-1");

    // A value changed twice, a secret deleted and created again with the
    // same value, and AWSPREVIOUS moving: exactly those are fetched again.
    for value in ["v3-2", "v3-3"] {
        aws.sm
            .put_secret_value()
            .secret_id("svc/s03")
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    aws.sm
        .delete_secret()
        .secret_id("svc/s05")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    aws.secret("svc/s05", "v5-1").await;
    aws.sm
        .put_secret_value()
        .secret_id("svc/s00")
        .secret_string("v0-3")
        .send()
        .await
        .unwrap();
    aws.moto.start_recording();
    let changed = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    let mut asked = batch_ids(&recorded);
    asked.sort();
    assert_eq!(asked, ["svc/s00", "svc/s03", "svc/s05"], "{recorded:?}");
    assert_eq!(
        count(&recorded, "secretsmanager.GetSecretValue"),
        1,
        "AWSPREVIOUS moved"
    );
    assert_eq!(value_of(&changed, &value_request("svc/s03")), "v3-3");
    assert_eq!(value_of(&changed, &value_request("svc/s05")), "v5-1");
    assert_eq!(value_of(&changed, &previous), "v0-2");
    assert_eq!(value_of(&changed, &value_request("svc/s00")), "v0-3");

    // Deleted: listed no more, fetched, and reported missing.
    aws.sm
        .delete_secret()
        .secret_id("svc/s09")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let gone = fetch(&providers, &spec, &requests).await;
    assert!(matches!(
        gone[&value_request("svc/s09")],
        Err(ProviderError::NotFound { .. })
    ));
}

#[tokio::test]
async fn when_most_values_changed_listing_stops_and_everything_is_fetched() {
    let aws = Aws::start().await;
    for i in 0..150 {
        aws.secret(&format!("fleet/s{i:03}"), "one").await;
    }
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(SECRETS_MANAGER);
    let requests: BTreeSet<_> = (0..150)
        .map(|i| value_request(&format!("fleet/s{i:03}")))
        .collect();
    fetch(&providers, &spec, &requests).await;
    for i in 0..150 {
        aws.sm
            .put_secret_value()
            .secret_id(format!("fleet/s{i:03}"))
            .secret_string("two")
            .send()
            .await
            .unwrap();
    }
    aws.moto.start_recording();
    let results = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert!(results.iter().all(|(r, _)| value_of(&results, r) == "two"));
    assert_eq!(
        count(&recorded, "secretsmanager.ListSecrets"),
        1,
        "the first page showed everything changing"
    );
    assert_eq!(count(&recorded, "secretsmanager.BatchGetSecretValue"), 8);
}

#[tokio::test]
async fn parameter_store_refreshes_fetch_only_what_changed_and_versions_share_calls() {
    let aws = Aws::start().await;
    use aws_sdk_ssm::types::ParameterType::String as Plain;
    for i in 0..25 {
        aws.parameter(&format!("/app/p{i:02}"), &format!("p{i}-1"), Plain)
            .await;
    }
    aws.parameter("/app/p00", "p0-2", Plain).await;
    aws.ssm
        .label_parameter_version()
        .name("/app/p00")
        .parameter_version(1)
        .labels("stable")
        .send()
        .await
        .unwrap();
    let providers = aws.providers(Arc::new(NoKubernetes)).await;
    let spec = store(PARAMETER_STORE);
    let mut requests: BTreeSet<_> = (0..25)
        .map(|i| value_request(&format!("/app/p{i:02}")))
        .collect();
    let pinned = versioned_request("/app/p00", "1");
    let labelled = versioned_request("/app/p00", "stable");
    requests.extend([pinned.clone(), labelled.clone()]);

    aws.moto.start_recording();
    let first = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert_eq!(value_of(&first, &value_request("/app/p00")), "p0-2");
    assert_eq!(value_of(&first, &pinned), "p0-1");
    assert_eq!(value_of(&first, &labelled), "p0-1");
    // 25 current values and a number fit three calls; the label needs a
    // call of its own (it shares its name with an unnumbered selector).
    assert_eq!(
        count(&recorded, "AmazonSSM.GetParameters"),
        4,
        "{recorded:?}"
    );

    // Nothing changed: a listing call, and the label (which may have moved).
    aws.moto.start_recording();
    fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    assert_eq!(
        count(&recorded, "AmazonSSM.DescribeParameters"),
        1,
        "{recorded:?}"
    );
    assert_eq!(
        count(&recorded, "AmazonSSM.GetParameters"),
        1,
        "{recorded:?}"
    );
    assert_eq!(recorded.len(), 2, "{recorded:?}");

    // A new value, a parameter deleted and created again with the same value,
    // and the label moved to version 2.
    aws.parameter("/app/p04", "p4-2", Plain).await;
    aws.ssm
        .delete_parameter()
        .name("/app/p06")
        .send()
        .await
        .unwrap();
    aws.parameter("/app/p06", "p6-1", Plain).await;
    aws.ssm
        .label_parameter_version()
        .name("/app/p00")
        .parameter_version(2)
        .labels("stable")
        .send()
        .await
        .unwrap();
    aws.moto.start_recording();
    let changed = fetch(&providers, &spec, &requests).await;
    let recorded = aws.moto.stop_recording();
    let asked: BTreeSet<String> = recorded
        .iter()
        .filter(|r| r.call == "AmazonSSM.GetParameters")
        .flat_map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["Names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        asked,
        ["/app/p00:stable", "/app/p04", "/app/p06"]
            .map(String::from)
            .into(),
        "{recorded:?}"
    );
    assert_eq!(value_of(&changed, &value_request("/app/p04")), "p4-2");
    assert_eq!(value_of(&changed, &labelled), "p0-2");
    assert_eq!(value_of(&changed, &pinned), "p0-1");
}

#[tokio::test]
async fn without_permission_to_list_every_value_is_fetched_and_the_store_says_why() {
    let aws = Aws::start().await;
    aws.secret("db", "first").await;
    let proxy = FaultProxy::start(
        &aws.moto.endpoint,
        Fault::Deny("secretsmanager.ListSecrets"),
        1,
        1,
    )
    .await;
    let providers = providers_at(&proxy.endpoint, Arc::new(NoKubernetes), fast_retries(2)).await;
    let spec = store(SECRETS_MANAGER);
    let requests: BTreeSet<_> = [value_request("db")].into();
    fetch(&providers, &spec, &requests).await;
    let provider = providers.for_store(&identity(), &spec).await.unwrap();
    assert!(provider.change_detection_problem().is_none());

    aws.sm
        .put_secret_value()
        .secret_id("db")
        .secret_string("second")
        .send()
        .await
        .unwrap();
    let results = fetch(&providers, &spec, &requests).await;
    assert_eq!(value_of(&results, &value_request("db")), "second");
    let problem = provider
        .change_detection_problem()
        .expect("the store is told");
    assert!(problem.contains("AccessDeniedException"), "{problem}");
    let listed = providers.calls().total("secretsmanager", "ListSecrets");
    fetch(&providers, &spec, &requests).await;
    assert_eq!(
        providers.calls().total("secretsmanager", "ListSecrets"),
        listed,
        "a denied listing is not tried again at every refresh"
    );
    assert_eq!(
        providers
            .calls()
            .total("secretsmanager", "BatchGetSecretValue"),
        3
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_in_words() {
    // A port nothing listens on: every call fails to connect.
    let port = support::free_port();
    let providers = providers_at(
        &format!("http://127.0.0.1:{port}"),
        Arc::new(NoKubernetes),
        fast_retries(1),
    )
    .await;
    let es = external_secret("data: [{secretKey: p, remoteRef: {key: db}}]");
    let error = sync(&providers, &store(SECRETS_MANAGER), &es)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("secretsmanager BatchGetSecretValue failed: could not connect to AWS"),
        "{error}"
    );
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    for dump in ["DispatchFailure", "{", "ConnectorError"] {
        assert!(
            !error.contains(dump),
            "a debug dump, not a sentence: {error}"
        );
    }
}
