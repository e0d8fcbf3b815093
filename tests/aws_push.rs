//! PushSecret's half of the AWS providers (read what is there, write, delete)
//! against a real AWS API (moto), each outcome read back with the SDK.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier, ParameterType};
use secretsync::SecretValue;
use secretsync::api::{
    AwsService, MANAGED_BY_TAG, MANAGED_BY_US, OWNER_TAG, PushMetadata, StoreKind, StoreProvider,
};
use secretsync::provider::aws::{NoKubernetes, RetrySettings};
use secretsync::provider::{
    Cached, ProviderContext, ProviderError, Providers, PushWrite, ReadParts, RemoteSecret,
    StoreIdentity,
};
use support::moto::{Moto, sdk_config};

const DEFAULT_DESCRIPTION: &str = "secret 'managed-by:secretsync'";
const ALL: ReadParts = ReadParts {
    value: true,
    tags: true,
};
const VERSION_ONLY: ReadParts = ReadParts {
    value: false,
    tags: false,
};

struct Aws {
    moto: Moto,
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    providers: Providers,
}

impl Aws {
    async fn start() -> Aws {
        let moto = Moto::start();
        let config = sdk_config(&moto.endpoint).await;
        let providers = Providers::new(ProviderContext {
            kube: Arc::new(NoKubernetes),
            aws_base: Some(config.clone()),
            retry: RetrySettings {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(50),
                fixed_delay: false,
            },
            ..Default::default()
        });
        Aws {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            moto,
            providers,
        }
    }

    /// The provider of the store `name` with this `provider:` spec.
    async fn store(&self, name: &str, yaml: &str) -> Arc<Cached> {
        let spec: StoreProvider =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let identity = StoreIdentity {
            kind: StoreKind::SecretStore,
            namespace: Some("team".into()),
            name: name.into(),
            tenant: None,
        };
        self.providers
            .for_store(&identity, &spec)
            .await
            .expect("a provider")
    }

    fn calls(&self, service: &str, call: &str) -> u64 {
        self.providers.calls().total(service, call)
    }

    async fn sm_tags(&self, name: &str) -> BTreeMap<String, String> {
        let described = self
            .sm
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap();
        described
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The version id AWSCURRENT points at.
    async fn sm_current_version(&self, name: &str) -> String {
        let described = self
            .sm
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap();
        described
            .version_ids_to_stages()
            .unwrap()
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .map(|(id, _)| id.clone())
            .unwrap()
    }

    async fn ssm_tags(&self, name: &str) -> BTreeMap<String, String> {
        self.ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .unwrap()
            .tag_list()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    async fn ssm_described(&self, name: &str) -> aws_sdk_ssm::types::ParameterMetadata {
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(name)
            .build()
            .unwrap();
        self.ssm
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .unwrap()
            .parameters()
            .first()
            .cloned()
            .unwrap()
    }
}

const SECRETS_MANAGER: &str = "aws: {service: SecretsManager, region: eu-west-1}";
const PARAMETER_STORE: &str = "aws: {service: ParameterStore, region: eu-west-1}";

/// The tags every push carries, and `extra`.
fn tags(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([
        (MANAGED_BY_TAG.to_string(), MANAGED_BY_US.to_string()),
        (OWNER_TAG.to_string(), "team/push".to_string()),
    ]);
    tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tags
}

fn metadata(spec: &str, service: AwsService) -> PushMetadata {
    let yaml = format!(
        "apiVersion: kubernetes.external-secrets.io/v1alpha1\nkind: PushSecretMetadata\nspec: {spec}\n"
    );
    let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    PushMetadata::parse(Some(&value), service).unwrap()
}

fn write<'a>(
    key: &'a str,
    value: &'a SecretValue,
    metadata: &'a PushMetadata,
    tags: &'a BTreeMap<String, String>,
    current: Option<&'a RemoteSecret>,
) -> PushWrite<'a> {
    PushWrite {
        key,
        value,
        metadata,
        tags,
        resource_policy: None,
        current,
    }
}

#[tokio::test]
async fn secrets_manager_creates_binary_or_string_with_tags_description_kms_and_policy() {
    let aws = Aws::start().await;
    let store = aws.store("sm", SECRETS_MANAGER).await;
    let provider = store.backend();

    // Defaults: SecretBinary, the default description, the tags asked for.
    let bytes = SecretValue::new(vec![0u8, 159, 146, 150, 255]);
    let wanted = tags(&[]);
    let version = provider
        .push(&write(
            "app/keystore",
            &bytes,
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    assert!(!version.is_empty());
    assert_eq!(aws.sm_current_version("app/keystore").await, version);
    let got = aws
        .sm
        .get_secret_value()
        .secret_id("app/keystore")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.secret_binary().map(|b| b.as_ref().to_vec()),
        Some(vec![0u8, 159, 146, 150, 255])
    );
    assert_eq!(got.secret_string(), None);
    let described = aws
        .sm
        .describe_secret()
        .secret_id("app/keystore")
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some(DEFAULT_DESCRIPTION));
    assert_eq!(aws.sm_tags("app/keystore").await, wanted);

    // secretPushFormat: string, with description, KMS key, own tags and a
    // resource policy.
    let meta = metadata(
        "{secretPushFormat: string, description: db password, kmsKeyId: alias/custom, tags: {team: a}, resourcePolicy: {blockPublicPolicy: true, policySourceRef: {kind: ConfigMap, name: p, key: policy.json}}}",
        AwsService::SecretsManager,
    );
    let wanted = tags(&[("team", "a")]);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:DeleteSecret","Resource":"*"}]}"#;
    let text = SecretValue::from("s3cr3t");
    aws.moto.start_recording();
    let version = provider
        .push(&PushWrite {
            resource_policy: Some(policy),
            ..write("app/db", &text, &meta, &wanted, None)
        })
        .await
        .unwrap();
    let recorded = aws.moto.stop_recording();
    assert_eq!(aws.sm_current_version("app/db").await, version);
    let got = aws
        .sm
        .get_secret_value()
        .secret_id("app/db")
        .send()
        .await
        .unwrap();
    assert_eq!(got.secret_string(), Some("s3cr3t"));
    assert!(got.secret_binary().is_none());
    let described = aws
        .sm
        .describe_secret()
        .secret_id("app/db")
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some("db password"));
    assert_eq!(described.kms_key_id(), Some("alias/custom"));
    assert_eq!(aws.sm_tags("app/db").await, wanted);
    let put = aws
        .sm
        .get_resource_policy()
        .secret_id("app/db")
        .send()
        .await
        .unwrap();
    assert_eq!(put.resource_policy(), Some(policy));
    // moto keeps no BlockPublicPolicy: what was sent is checked.
    let sent = recorded
        .iter()
        .find(|r| r.call == "secretsmanager.PutResourcePolicy")
        .expect("a PutResourcePolicy");
    let sent: serde_json::Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(sent["BlockPublicPolicy"], true);
    assert_eq!(aws.calls("secretsmanager", "PutResourcePolicy"), 1);

    // Text is required for SecretString: refused before any call.
    let binary = SecretValue::new(vec![0xffu8, 0xfe]);
    let created = aws.calls("secretsmanager", "CreateSecret");
    let error = provider
        .push(&write("app/not-text", &binary, &meta, &wanted, None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("UTF-8"), "{error}");
    assert!(error.to_string().contains("app/not-text"), "{error}");
    assert_eq!(aws.calls("secretsmanager", "CreateSecret"), created);

    // Creating over an existing secret is AWS's error, not an overwrite.
    let error = provider
        .push(&write("app/db", &text, &meta, &wanted, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Api {
                call: "CreateSecret",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn secrets_manager_reads_updates_with_a_new_version_keeps_tags_under_the_prefix() {
    let aws = Aws::start().await;
    let store = aws
        .store(
            "prefixed",
            "aws: {service: SecretsManager, region: eu-west-1, prefix: team/}",
        )
        .await;
    let provider = store.backend();

    // Missing: None, from one DescribeSecret.
    assert_eq!(provider.read_pushed("db", ALL).await.unwrap(), None);
    assert_eq!(aws.calls("secretsmanager", "DescribeSecret"), 1);

    let meta = metadata(
        "{secretPushFormat: string, tags: {team: a}}",
        AwsService::SecretsManager,
    );
    let wanted = tags(&[("team", "a")]);
    let first = provider
        .push(&write("db", &SecretValue::from("v1"), &meta, &wanted, None))
        .await
        .unwrap();
    // The prefix goes before the key, as it does for reads.
    assert_eq!(aws.sm_current_version("team/db").await, first);
    let unprefixed = aws.sm.describe_secret().secret_id("db").send().await;
    assert!(unprefixed.is_err(), "nothing without the prefix");

    // A read with every part.
    let read = provider.read_pushed("db", ALL).await.unwrap().unwrap();
    assert_eq!(read.version, first);
    assert_eq!(read.tags, wanted);
    assert_eq!(read.value.as_ref().map(|v| v.expose()), Some(&b"v1"[..]));
    assert_eq!(read.description.as_deref(), Some(DEFAULT_DESCRIPTION));

    // Only the version (and what DescribeSecret gives free): one call.
    let (described, fetched) = (
        aws.calls("secretsmanager", "DescribeSecret"),
        aws.calls("secretsmanager", "GetSecretValue"),
    );
    let cheap = provider
        .read_pushed("db", VERSION_ONLY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aws.calls("secretsmanager", "DescribeSecret"), described + 1);
    assert_eq!(aws.calls("secretsmanager", "GetSecretValue"), fetched);
    assert_eq!(cheap.version, first);
    assert_eq!(cheap.value, None);
    assert_eq!(cheap.tags, wanted, "tags come with the description");

    // Someone else tags the secret; an update adds a tag and a description.
    aws.sm
        .tag_resource()
        .secret_id("team/db")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("cost-center")
                .value("42")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let current = provider.read_pushed("db", ALL).await.unwrap().unwrap();
    let meta = metadata(
        "{secretPushFormat: string, description: rotated, tags: {team: a, env: prod}}",
        AwsService::SecretsManager,
    );
    let wanted = tags(&[("team", "a"), ("env", "prod")]);
    let second = provider
        .push(&write(
            "db",
            &SecretValue::from("v2"),
            &meta,
            &wanted,
            Some(&current),
        ))
        .await
        .unwrap();
    assert_ne!(second, first, "a new version");
    assert_eq!(aws.sm_current_version("team/db").await, second);
    let got = aws
        .sm
        .get_secret_value()
        .secret_id("team/db")
        .send()
        .await
        .unwrap();
    assert_eq!(got.secret_string(), Some("v2"));
    let mut expected = wanted.clone();
    expected.insert("cost-center".into(), "42".into());
    assert_eq!(aws.sm_tags("team/db").await, expected, "no tag removed");
    let described = aws
        .sm
        .describe_secret()
        .secret_id("team/db")
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some("rotated"));
    assert_eq!(aws.calls("secretsmanager", "TagResource"), 1);
    assert_eq!(aws.calls("secretsmanager", "UpdateSecret"), 1);
    assert_eq!(aws.calls("secretsmanager", "UntagResource"), 0);

    // The same tags and description again: only the value is written.
    let current = provider.read_pushed("db", ALL).await.unwrap().unwrap();
    let third = provider
        .push(&write(
            "db",
            &SecretValue::from("v3"),
            &meta,
            &wanted,
            Some(&current),
        ))
        .await
        .unwrap();
    assert_ne!(third, second);
    assert_eq!(aws.calls("secretsmanager", "TagResource"), 1);
    assert_eq!(aws.calls("secretsmanager", "UpdateSecret"), 1);
    assert_eq!(aws.calls("secretsmanager", "PutSecretValue"), 2);
    let read = provider.read_pushed("db", ALL).await.unwrap().unwrap();
    assert_eq!(read.version, third);
    assert_eq!(read.value.as_ref().map(|v| v.expose()), Some(&b"v3"[..]));
}

#[tokio::test]
async fn secrets_manager_deletes_forced_or_with_a_recovery_window() {
    let aws = Aws::start().await;
    let value = SecretValue::from("v");
    let wanted = tags(&[]);

    // forceDeleteWithoutRecovery: gone at once.
    let forced = aws
        .store(
            "forced",
            "aws: {service: SecretsManager, region: eu-west-1, secretsManager: {forceDeleteWithoutRecovery: true}}",
        )
        .await;
    let forced = forced.backend();
    forced
        .push(&write(
            "gone",
            &value,
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    forced.delete_pushed("gone").await.unwrap();
    let described = aws.sm.describe_secret().secret_id("gone").send().await;
    assert!(
        described
            .as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{described:?}"
    );
    assert_eq!(forced.read_pushed("gone", ALL).await.unwrap(), None);
    // A key already gone is no error.
    forced.delete_pushed("gone").await.unwrap();
    forced.delete_pushed("never-was").await.unwrap();

    // A recovery window: scheduled for deletion, still there.
    let windowed = aws
        .store(
            "windowed",
            "aws: {service: SecretsManager, region: eu-west-1, secretsManager: {recoveryWindowInDays: 7}}",
        )
        .await;
    let windowed = windowed.backend();
    windowed
        .push(&write(
            "kept",
            &value,
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    windowed.delete_pushed("kept").await.unwrap();
    let described = aws
        .sm
        .describe_secret()
        .secret_id("kept")
        .send()
        .await
        .unwrap();
    let deleted = described.deleted_date().expect("DeletedDate");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (deleted.secs() - now) as f64 / 86_400.0;
    assert!((6.9..7.1).contains(&days), "deleted in {days} days");

    // Read as existing, without its value; a push to it is refused, clearly.
    let read = windowed.read_pushed("kept", ALL).await.unwrap().unwrap();
    assert!(!read.version.is_empty());
    assert_eq!(read.value, None);
    assert_eq!(read.tags, wanted);
    let error = windowed
        .push(&write(
            "kept",
            &SecretValue::from("new"),
            &PushMetadata::Defaults,
            &wanted,
            Some(&read),
        ))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("remote secret \"kept\" is scheduled for deletion"),
        "{error}"
    );
    // Deleting it again: already scheduled, no error.
    windowed.delete_pushed("kept").await.unwrap();
    // Creating it anew while it waits: AWS refuses.
    let error = windowed
        .push(&write(
            "kept",
            &value,
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Api {
                call: "CreateSecret",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn parameter_store_creates_string_secure_string_and_advanced_with_policies() {
    let aws = Aws::start().await;
    let store = aws.store("ssm", PARAMETER_STORE).await;
    let provider = store.backend();
    let wanted = tags(&[]);

    // Defaults: a String, Standard tier, the default description, tagged.
    let version = provider
        .push(&write(
            "/app/plain",
            &SecretValue::from("plain-1"),
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(version, "1");
    let got = aws
        .ssm
        .get_parameter()
        .name("/app/plain")
        .send()
        .await
        .unwrap();
    let parameter = got.parameter().unwrap();
    assert_eq!(parameter.r#type(), Some(&ParameterType::String));
    assert_eq!(parameter.value(), Some("plain-1"));
    let described = aws.ssm_described("/app/plain").await;
    assert_eq!(described.description(), Some(DEFAULT_DESCRIPTION));
    assert_eq!(described.tier(), Some(&ParameterTier::Standard));
    assert_eq!(aws.ssm_tags("/app/plain").await, wanted);

    // A SecureString with its own KMS key, description and tags.
    let meta = metadata(
        "{secretType: SecureString, kmsKeyID: alias/params, description: api key, tags: {team: a}}",
        AwsService::ParameterStore,
    );
    let own = tags(&[("team", "a")]);
    provider
        .push(&write(
            "/app/secure",
            &SecretValue::from("hidden"),
            &meta,
            &own,
            None,
        ))
        .await
        .unwrap();
    let got = aws
        .ssm
        .get_parameter()
        .name("/app/secure")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let parameter = got.parameter().unwrap();
    assert_eq!(parameter.r#type(), Some(&ParameterType::SecureString));
    assert_eq!(parameter.value(), Some("hidden"));
    let described = aws.ssm_described("/app/secure").await;
    assert_eq!(described.key_id(), Some("alias/params"));
    assert_eq!(described.description(), Some("api key"));
    assert_eq!(aws.ssm_tags("/app/secure").await, own);

    // The Advanced tier with an expiration policy.
    let meta = metadata(
        "{tier: {type: Advanced, policies: [{Type: Expiration, Version: '1.0', Attributes: {Timestamp: '2030-01-01T00:00:00.000Z'}}]}}",
        AwsService::ParameterStore,
    );
    aws.moto.start_recording();
    provider
        .push(&write(
            "/app/advanced",
            &SecretValue::from("adv"),
            &meta,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    let recorded = aws.moto.stop_recording();
    let described = aws.ssm_described("/app/advanced").await;
    assert_eq!(described.tier(), Some(&ParameterTier::Advanced));
    assert_eq!(described.policies().len(), 1);
    // moto answers each policy's PolicyText as a JSON object where AWS has
    // the policy's text (the SDK then reads none): what was sent is checked.
    let sent = recorded
        .iter()
        .find(|r| r.call == "AmazonSSM.PutParameter")
        .expect("a PutParameter");
    let sent: serde_json::Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(sent["Tier"], "Advanced");
    let policies: serde_json::Value =
        serde_json::from_str(sent["Policies"].as_str().expect("policies as text")).unwrap();
    assert_eq!(policies[0]["Type"], "Expiration");
    assert_eq!(
        policies[0]["Attributes"]["Timestamp"],
        "2030-01-01T00:00:00.000Z"
    );

    // Parameter Store holds only text.
    let error = provider
        .push(&write(
            "/app/binary",
            &SecretValue::new(vec![0xffu8, 0xfe]),
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("/app/binary"), "{error}");
    assert!(error.to_string().contains("UTF-8"), "{error}");
    assert_eq!(aws.calls("ssm", "PutParameter"), 3);
}

#[tokio::test]
async fn parameter_store_overwrites_keeping_tags_reads_and_deletes() {
    let aws = Aws::start().await;
    let store = aws
        .store(
            "ssm-prefixed",
            "aws: {service: ParameterStore, region: eu-west-1, prefix: /team}",
        )
        .await;
    let provider = store.backend();

    // Missing: None, from one GetParameter.
    assert_eq!(provider.read_pushed("/x", ALL).await.unwrap(), None);
    assert_eq!(aws.calls("ssm", "GetParameter"), 1);
    assert_eq!(aws.calls("ssm", "ListTagsForResource"), 0);

    let wanted = tags(&[]);
    let first = provider
        .push(&write(
            "/x",
            &SecretValue::from("v1"),
            &PushMetadata::Defaults,
            &wanted,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(first, "1");
    assert_eq!(aws.ssm_tags("/team/x").await, wanted, "under the prefix");
    aws.ssm
        .add_tags_to_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/team/x")
        .tags(
            aws_sdk_ssm::types::Tag::builder()
                .key("other")
                .value("keep")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // Only the version (the value comes with it): one call.
    let (got, listed) = (
        aws.calls("ssm", "GetParameter"),
        aws.calls("ssm", "ListTagsForResource"),
    );
    let cheap = provider
        .read_pushed("/x", VERSION_ONLY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aws.calls("ssm", "GetParameter"), got + 1);
    assert_eq!(aws.calls("ssm", "ListTagsForResource"), listed);
    assert_eq!(cheap.version, "1");
    assert_eq!(cheap.value.as_ref().map(|v| v.expose()), Some(&b"v1"[..]));
    assert!(cheap.tags.is_empty());
    assert_eq!(cheap.description, None);

    // With tags: one more call.
    let current = provider.read_pushed("/x", ALL).await.unwrap().unwrap();
    assert_eq!(aws.calls("ssm", "ListTagsForResource"), listed + 1);
    let mut expected = wanted.clone();
    expected.insert("other".into(), "keep".into());
    assert_eq!(current.tags, expected);

    // Overwrite: a new version, tags kept, a new one added.
    let wanted = tags(&[("env", "prod")]);
    let meta = metadata(
        "{secretType: SecureString, tags: {env: prod}}",
        AwsService::ParameterStore,
    );
    let second = provider
        .push(&write(
            "/x",
            &SecretValue::from("v2"),
            &meta,
            &wanted,
            Some(&current),
        ))
        .await
        .unwrap();
    assert_eq!(second, "2");
    let got = aws
        .ssm
        .get_parameter()
        .name("/team/x")
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let parameter = got.parameter().unwrap();
    assert_eq!(parameter.value(), Some("v2"));
    assert_eq!(parameter.version(), 2);
    assert_eq!(parameter.r#type(), Some(&ParameterType::SecureString));
    expected.insert("env".into(), "prod".into());
    assert_eq!(aws.ssm_tags("/team/x").await, expected);
    assert_eq!(aws.calls("ssm", "AddTagsToResource"), 1);

    // Nothing new in the tags: only PutParameter.
    let current = provider.read_pushed("/x", ALL).await.unwrap().unwrap();
    let third = provider
        .push(&write(
            "/x",
            &SecretValue::from("v3"),
            &meta,
            &wanted,
            Some(&current),
        ))
        .await
        .unwrap();
    assert_eq!(third, "3");
    assert_eq!(aws.calls("ssm", "AddTagsToResource"), 1);

    // Creating over an existing parameter is AWS's error, not an overwrite.
    let error = provider
        .push(&write("/x", &SecretValue::from("v4"), &meta, &wanted, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Api {
                call: "PutParameter",
                ..
            }
        ),
        "{error}"
    );

    // Delete, then again: no error.
    provider.delete_pushed("/x").await.unwrap();
    let gone = aws.ssm.get_parameter().name("/team/x").send().await;
    assert!(
        gone.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_parameter_not_found()),
        "{gone:?}"
    );
    assert_eq!(provider.read_pushed("/x", ALL).await.unwrap(), None);
    provider.delete_pushed("/x").await.unwrap();
    assert_eq!(aws.calls("ssm", "DeleteParameter"), 2);
}

#[tokio::test]
async fn a_read_gives_binary_values_and_no_tags_or_description_when_there_are_none() {
    let aws = Aws::start().await;
    aws.sm
        .create_secret()
        .name("bin")
        .secret_binary(Blob::new(vec![1u8, 2, 3]))
        .send()
        .await
        .unwrap();
    let store = aws.store("sm", SECRETS_MANAGER).await;
    let read = store
        .backend()
        .read_pushed("bin", ALL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.value.as_ref().map(|v| v.expose()),
        Some(&[1u8, 2, 3][..])
    );
    assert_eq!(read.tags, BTreeMap::new());
    assert_eq!(read.description, None);
}
