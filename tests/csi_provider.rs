//! `secretsync csi-provider` (the built binary) driven by a gRPC client that
//! sends what the Secrets Store CSI driver sends, against moto for AWS and the
//! fake API server for ServiceAccounts. The client is generated from the
//! driver's own proto (`proto/`, the same messages and field numbers as the
//! driver's 1.5 and 1.6 releases) and the requests are built as those
//! releases build them (`pkg/secrets-store/nodeserver.go`, `provider_client.go`
//! and 1.5's `pkg/rotation/reconciler.go`): `secrets` as Go's JSON of a nil
//! map (`null`), of an empty one, or of nodePublishSecretRef data; the tokens
//! in the attributes, in `secrets`, or in both; `currentObjectVersion` empty
//! (first mounts, and every mount of 1.6) or filled, in any order (1.5's
//! rotation). Each Mount acts as its pod: two pods whose ServiceAccounts name
//! roles in different AWS accounts read different values (moto keeps each
//! account's secrets apart, and credentials from an assumed role act in that
//! role's account), and neither reads what the provider's own identity could.
//! With moto's IAM checks on, a role holding ASCP's documented policy mounts,
//! and the calls each policy costs are counted.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use secretsync::csi::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use secretsync::csi::v1alpha1::{MountRequest, MountResponse, VersionRequest};
use support::apiserver::FakeApiServer;
use support::moto::{Moto, REGION, sdk_config};
use tonic::transport::{Channel, Endpoint, Uri};

const NAMESPACE: &str = "team";
const ROLE_A: &str = "arn:aws:iam::111111111111:role/a";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/b";
/// In role a's account, so its secrets exist for it; what it may read is set per test.
const ROLE_C: &str = "arn:aws:iam::111111111111:role/c";

struct Bed {
    moto: Moto,
    _api: FakeApiServer,
    provider: Provider,
    client: CsiDriverProviderClient<Channel>,
    dir: tempfile::TempDir,
}

/// The provider process, its log lines kept.
struct Provider {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    fn text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// An unsigned JWT for `system:serviceaccount:NAMESPACE:ACCOUNT`, as the
/// kubelet's token looks to anyone not checking the signature (moto does not).
fn token(account: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({
        "aud": ["sts.amazonaws.com"],
        "sub": format!("system:serviceaccount:{NAMESPACE}:{account}"),
        "kubernetes.io": {"namespace": NAMESPACE, "serviceaccount": {"name": account}},
    });
    format!(
        "{}.{}.c2lnbmF0dXJl",
        engine.encode(r#"{"alg":"RS256","kid":"k"}"#),
        engine.encode(claims.to_string())
    )
}

async fn secrets_manager_as(endpoint: &str, role: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&support::moto::sdk_config_as(endpoint, role).await)
}

async fn parameter_as(endpoint: &str, role: &str, name: &str, value: &str) {
    aws_sdk_ssm::Client::new(&support::moto::sdk_config_as(endpoint, role).await)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

async fn create(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

impl Bed {
    async fn start() -> Bed {
        Bed::start_on(Moto::start(), None).await
    }

    /// The provider reaches AWS at `aws` (a proxy in front of moto) when given.
    async fn start_on(moto: Moto, aws: Option<&str>) -> Bed {
        let api = FakeApiServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig);

        let kube = api.client();
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let accounts: Api<ServiceAccount> = Api::namespaced(kube, NAMESPACE);
        for (name, role) in [
            ("a", Some(ROLE_A)),
            ("b", Some(ROLE_B)),
            ("c", Some(ROLE_C)),
            ("plain", None),
        ] {
            let mut metadata = serde_json::json!({"name": name});
            if let Some(role) = role {
                metadata["annotations"] = serde_json::json!({"eks.amazonaws.com/role-arn": role});
            }
            let account: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": metadata})).unwrap();
            accounts
                .create(&PostParams::default(), &account)
                .await
                .unwrap();
        }

        // The same name in three accounts: role a's, role b's, and the
        // provider's own (moto's default account, for the static test keys).
        create(
            &secrets_manager_as(&moto.endpoint, ROLE_A).await,
            "app/db",
            r#"{"password":"value-of-a"}"#,
        )
        .await;
        create(
            &secrets_manager_as(&moto.endpoint, ROLE_B).await,
            "app/db",
            r#"{"password":"value-of-b"}"#,
        )
        .await;
        let own = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.endpoint).await);
        create(&own, "app/db", r#"{"password":"value-of-the-provider"}"#).await;
        parameter_as(&moto.endpoint, ROLE_A, "/app/config", "config-of-a").await;
        parameter_as(&moto.endpoint, ROLE_B, "/app/config", "config-of-b").await;

        let socket = dir.path().join("providers").join("secretsync.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["csi-provider", "--socket", socket.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "debug")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", aws.unwrap_or(&moto.endpoint))
            .env("AWS_REGION", REGION)
            // The provider's own identity, which a mount must never use.
            .env("AWS_ACCESS_KEY_ID", support::moto::TEST_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        support::keep_lines(child.stderr.take().unwrap(), &logs);
        let provider = Provider { child, logs };
        let client = connect(&socket, &provider).await;
        Bed {
            moto,
            _api: api,
            provider,
            client,
            dir,
        }
    }

    fn target_path(&self) -> PathBuf {
        let path = self
            .dir
            .path()
            .join("pods/uid-1/volumes/kubernetes.io~csi/secrets/mount");
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// What the driver sends for a pod using ServiceAccount `account`.
    fn request(
        &self,
        pod: &str,
        account: &str,
        tokens: Option<String>,
        objects: &str,
    ) -> MountRequest {
        let mut attributes = serde_json::json!({
            "secretProviderClass": "app-secrets",
            "csi.storage.k8s.io/pod.name": pod,
            "csi.storage.k8s.io/pod.namespace": NAMESPACE,
            "csi.storage.k8s.io/pod.uid": format!("uid-{pod}"),
            "csi.storage.k8s.io/serviceAccount.name": account,
            "csi.storage.k8s.io/ephemeral": "false",
            "region": REGION,
            "objects": objects,
        });
        if let Some(tokens) = tokens {
            attributes["csi.storage.k8s.io/serviceAccount.tokens"] =
                serde_json::Value::String(tokens);
        }
        MountRequest {
            attributes: attributes.to_string(),
            // Go's json.Marshal of the nil map the driver holds when the
            // volume has no nodePublishSecretRef.
            secrets: "null".into(),
            target_path: self.target_path().display().to_string(),
            permission: "420".into(),
            current_object_version: Vec::new(),
        }
    }

    async fn mount(&self, request: MountRequest) -> Result<MountResponse, tonic::Status> {
        self.client
            .clone()
            .mount(request)
            .await
            .map(|r| r.into_inner())
    }
}

/// The tokens attribute the kubelet fills in for `tokenRequests: [{audience: sts.amazonaws.com}]`.
fn tokens_for(account: &str) -> Option<String> {
    Some(tokens_json(&token(account)))
}

fn tokens_json(token: &str) -> String {
    serde_json::json!({"sts.amazonaws.com": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}})
        .to_string()
}

/// A pod's own token, as the kubelet mints it: bound to the pod, so no two
/// pods share one.
fn pod_token(account: &str, pod: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({
        "aud": ["sts.amazonaws.com"],
        "sub": format!("system:serviceaccount:{NAMESPACE}:{account}"),
        "kubernetes.io": {
            "namespace": NAMESPACE,
            "serviceaccount": {"name": account},
            "pod": {"name": pod, "uid": format!("uid-{pod}")},
        },
    });
    format!(
        "{}.{}.c2lnbmF0dXJl",
        engine.encode(r#"{"alg":"RS256","kid":"k"}"#),
        engine.encode(claims.to_string())
    )
}

async fn connect(socket: &Path, provider: &Provider) -> CsiDriverProviderClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the provider did not listen on {}:\n{}",
            socket.display(),
            provider.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = socket.to_path_buf();
    // The URI is not used: every connection goes to the socket, as the driver's.
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to the provider's socket");
    CsiDriverProviderClient::new(channel)
}

const OBJECTS: &str = r#"
- objectName: app/db
  objectType: secretsmanager
  jmesPath:
    - {path: password, objectAlias: password, filePermission: "0400"}
"#;

fn file<'a>(response: &'a MountResponse, path: &str) -> &'a secretsync::csi::v1alpha1::File {
    response
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path}: {:?}", paths(response)))
}

fn paths(response: &MountResponse) -> Vec<&str> {
    response.files.iter().map(|f| f.path.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mount_acts_as_its_pod() {
    let bed = Bed::start().await;

    let version = bed
        .client
        .clone()
        .version(VersionRequest {
            version: "v1alpha1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "secretsync");
    assert_eq!(version.version, "v1alpha1");

    bed.moto.start_recording();
    let a = bed
        .mount(bed.request("pod-a", "a", tokens_for("a"), OBJECTS))
        .await
        .unwrap();
    let b = bed
        .mount(bed.request("pod-b", "b", tokens_for("b"), OBJECTS))
        .await
        .unwrap();
    let recorded = bed.moto.stop_recording();

    assert_eq!(file(&a, "password").contents, b"value-of-a");
    assert_eq!(file(&b, "password").contents, b"value-of-b");
    assert_eq!(file(&a, "app_db").contents, br#"{"password":"value-of-a"}"#);
    // Modes: filePermission, else the request's permission (420 = 0644).
    assert_eq!(file(&a, "password").mode, 0o400);
    assert_eq!(file(&a, "app_db").mode, 0o644);
    // One version per file, by file path.
    let ids: Vec<&str> = a.object_version.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, vec!["app_db", "password"]);
    assert!(a.error.is_none());
    // The provider writes nothing: the driver does.
    assert_eq!(std::fs::read_dir(bed.target_path()).unwrap().count(), 0);

    // Each pod's own token went to STS for its own role; nothing was read
    // with the provider's static keys.
    let exchanges: Vec<_> = recorded
        .iter()
        .filter(|r| r.call == "sts.AssumeRoleWithWebIdentity")
        .collect();
    assert_eq!(exchanges.len(), 2, "{recorded:?}");
    assert!(
        exchanges[0].body.contains("role%2Fa") && exchanges[1].body.contains("role%2Fb"),
        "{exchanges:?}"
    );
    let reads: Vec<_> = recorded
        .iter()
        .filter(|r| r.call.starts_with("secretsmanager."))
        .collect();
    assert!(!reads.is_empty());
    assert!(
        reads
            .iter()
            .all(|r| !r.authorization.contains(support::moto::TEST_KEY_ID)),
        "a mount used the provider's own credentials"
    );

    // The same content again: same versions; the driver's current versions are taken.
    let mut again = bed.request("pod-a", "a", tokens_for("a"), OBJECTS);
    again.current_object_version = a.object_version.clone();
    bed.moto.start_recording();
    let again = bed.mount(again).await.unwrap();
    let recorded = bed.moto.stop_recording();
    assert_eq!(again.object_version, a.object_version);
    // The pod's clients and credentials are kept for the same token: no new STS call.
    assert_eq!(
        support::moto::count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        0,
        "{recorded:?}"
    );
    // Versions of the same content differ between pods.
    let versions = |r: &MountResponse| {
        r.object_version
            .iter()
            .map(|v| v.version.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(versions(&a), versions(&b));

    let logs = bed.provider.text();
    assert!(logs.contains("mounted"), "{logs}");
    for value in [
        "value-of-a",
        "value-of-b",
        "value-of-the-provider",
        &token("a"),
    ] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_that_cannot_act_as_its_pod_fails_as_the_driver_expects() {
    let bed = Bed::start().await;
    let code = |r: Result<MountResponse, tonic::Status>| {
        let status = r.expect_err("the mount must fail");
        (status.code(), status.message().to_string())
    };

    // No role on the ServiceAccount.
    let (c, m) = code(
        bed.mount(bed.request("pod-p", "plain", tokens_for("plain"), OBJECTS))
            .await,
    );
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    assert!(
        m.contains("ServiceAccount team/plain") && m.contains("eks.amazonaws.com/role-arn"),
        "{m}"
    );

    // Another ServiceAccount's token, for this pod's role.
    let (c, m) = code(
        bed.mount(bed.request("pod-a", "a", tokens_for("b"), OBJECTS))
            .await,
    );
    assert_eq!(c, tonic::Code::PermissionDenied, "{m}");
    assert!(m.contains("system:serviceaccount:team:b"), "{m}");

    // No token: the CSIDriver lacks tokenRequests.
    let (c, m) = code(bed.mount(bed.request("pod-a", "a", None, OBJECTS)).await);
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    assert!(m.contains("tokenRequests"), "{m}");

    // Bad parameters name the field.
    let (c, m) = code(
        bed.mount(bed.request("pod-a", "a", tokens_for("a"), "- {objectName: app/db}"))
            .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("objects[0]") && m.contains("objectType"), "{m}");
    let mut bad = bed.request("pod-a", "a", tokens_for("a"), OBJECTS);
    bad.attributes = "not json".into();
    assert_eq!(code(bed.mount(bad).await).0, tonic::Code::InvalidArgument);

    // A secret the pod's role cannot see (it is in another account).
    let missing = "- {objectName: only-elsewhere, objectType: secretsmanager}";
    create(
        &secrets_manager_as(&bed.moto.endpoint, ROLE_B).await,
        "only-elsewhere",
        "value-of-b-only",
    )
    .await;
    let (c, m) = code(
        bed.mount(bed.request("pod-a", "a", tokens_for("a"), missing))
            .await,
    );
    // Final: the driver's gRPC client retries only UNAVAILABLE.
    assert_eq!(c, tonic::Code::NotFound, "{m}");
    assert!(
        m.contains("objects[0]") && m.contains("\"only-elsewhere\" not found"),
        "{m}"
    );

    let logs = bed.provider.text();
    assert!(logs.contains("mount failed"), "{logs}");
    for value in ["value-of-a", "value-of-b", "value-of-b-only", &token("a")] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

/// A Secrets Manager secret with a jmesPath file and an SSM parameter: one
/// mount reads both services.
const BOTH_SERVICES: &str = r#"
- objectName: app/db
  objectType: secretsmanager
  jmesPath:
    - {path: password, objectAlias: password}
- {objectName: /app/config, objectType: ssmparameter}
"#;

/// Three secrets and a parameter: what a policy costs per secret shows.
const THREE_SECRETS: &str = r#"
- {objectName: app/db, objectType: secretsmanager}
- {objectName: app/api, objectType: secretsmanager}
- {objectName: app/cache, objectType: secretsmanager}
- {objectName: /app/config, objectType: ssmparameter}
"#;

/// Calls of each kind in a recording.
fn calls(recorded: &[support::moto::Recorded]) -> [usize; 5] {
    use support::moto::count;
    [
        count(recorded, "sts.AssumeRoleWithWebIdentity"),
        count(recorded, "secretsmanager.BatchGetSecretValue"),
        count(recorded, "secretsmanager.GetSecretValue"),
        count(recorded, "secretsmanager.DescribeSecret"),
        count(recorded, "AmazonSSM.GetParameters"),
    ]
}

/// The attributes of `request` with `edit` applied.
fn edit_attributes(
    request: &MountRequest,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> String {
    let mut attributes: serde_json::Value = serde_json::from_str(&request.attributes).unwrap();
    edit(attributes.as_object_mut().unwrap());
    attributes.to_string()
}

const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_shape_the_driver_sends_mounts() {
    let bed = Bed::start().await;
    let tokens = tokens_json(&pod_token("a", "pod-a"));
    let first = bed.request("pod-a", "a", Some(tokens.clone()), BOTH_SERVICES);
    let answer = bed.mount(first.clone()).await.unwrap();
    assert_eq!(file(&answer, "password").contents, b"value-of-a");
    assert_eq!(file(&answer, "_app_config").contents, b"config-of-a");
    // The driver refuses an answer without versions.
    assert_eq!(answer.object_version.len(), answer.files.len());

    let node_publish =
        serde_json::json!({"username": "ci", "password": "node-publish-secret-value"});
    let mut tokens_and_secret = node_publish.clone();
    tokens_and_secret[TOKENS] = serde_json::Value::String(tokens.clone());
    let shapes: Vec<(&str, MountRequest)> = vec![
        // 1.5's rotation reconciler: the parameters and the pod's keys only
        // (no secretProviderClass, no ephemeral), an empty map, and the
        // versions it holds, in a Go map's order.
        ("1.5 rotation", {
            let mut r = first.clone();
            r.attributes = edit_attributes(&first, |a| {
                a.remove("secretProviderClass");
                a.remove("csi.storage.k8s.io/ephemeral");
            });
            r.secrets = "{}".into();
            r.current_object_version = answer.object_version.iter().rev().cloned().collect();
            r
        }),
        // 1.6 with serviceAccountTokenInSecrets: the kubelet puts the tokens
        // in secrets, the driver copies them into the attributes.
        ("1.6 tokens in secrets and attributes", {
            let mut r = first.clone();
            r.secrets = serde_json::json!({TOKENS: tokens}).to_string();
            r
        }),
        ("tokens in secrets only", {
            let mut r = first.clone();
            r.attributes = edit_attributes(&first, |a| {
                a.remove(TOKENS);
            });
            r.secrets = serde_json::json!({TOKENS: tokens}).to_string();
            r
        }),
        ("nodePublishSecretRef", {
            let mut r = first.clone();
            r.secrets = node_publish.to_string();
            r
        }),
        ("nodePublishSecretRef and tokens in secrets", {
            let mut r = first.clone();
            r.secrets = tokens_and_secret.to_string();
            r
        }),
        // Versions the provider never gave (a driver upgraded under a pod).
        ("unknown current versions", {
            let mut r = first.clone();
            r.current_object_version = vec![secretsync::csi::v1alpha1::ObjectVersion {
                id: "gone".into(),
                version: "v0".into(),
            }];
            r
        }),
    ];
    for (shape, request) in shapes {
        let got = bed
            .mount(request)
            .await
            .unwrap_or_else(|status| panic!("{shape}: {status:?}"));
        assert_eq!(got.files, answer.files, "{shape}");
        assert_eq!(got.object_version, answer.object_version, "{shape}");
    }

    let logs = bed.provider.text();
    for value in [
        "value-of-a",
        "config-of-a",
        "node-publish-secret-value",
        &pod_token("a", "pod-a"),
    ] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_cost_one_sts_call_per_pod_and_read_as_the_role_allows() {
    let bed = Bed::start().await;
    let endpoint = bed.moto.endpoint.clone();
    for role in [ROLE_A, ROLE_B] {
        let owner = role.rsplit('/').next().unwrap();
        let client = secrets_manager_as(&endpoint, role).await;
        for name in ["app/api", "app/cache"] {
            create(&client, name, &format!("{name}-of-{owner}")).await;
        }
    }
    // Role a: BatchGetSecretValue too. Role b: ASCP's documented policy.
    // Role c: Parameter Store only.
    bed.moto.grant(
        ROLE_A,
        &[
            "secretsmanager:BatchGetSecretValue",
            "secretsmanager:GetSecretValue",
            "ssm:GetParameters",
        ],
    );
    bed.moto.grant(
        ROLE_B,
        &[
            "secretsmanager:GetSecretValue",
            "secretsmanager:DescribeSecret",
            "ssm:GetParameters",
        ],
    );
    bed.moto.grant(ROLE_C, &["ssm:GetParameters"]);
    bed.moto.enforce_iam();

    let mount = |pod: &str, account: &str| {
        bed.request(
            pod,
            account,
            Some(tokens_json(&pod_token(account, pod))),
            THREE_SECRETS,
        )
    };
    let measured = |request: MountRequest| async {
        bed.moto.start_recording();
        let answer = bed.mount(request).await;
        (answer, calls(&bed.moto.stop_recording()))
    };

    // A fresh pod whose role may batch: [STS, Batch, Get, Describe, GetParameters].
    let (answer, cost) = measured(mount("a-1", "a")).await;
    let answer = answer.unwrap();
    assert_eq!(file(&answer, "app_cache").contents, b"app/cache-of-a");
    assert_eq!(cost, [1, 1, 0, 0, 1], "batch policy, fresh pod");

    // A fresh pod with ASCP's policy: the refused batch, then one read each.
    let (answer, cost) = measured(mount("b-1", "b")).await;
    let first = answer.unwrap();
    assert_eq!(file(&first, "app_api").contents, b"app/api-of-b");
    assert_eq!(file(&first, "_app_config").contents, b"config-of-b");
    assert_eq!(cost, [1, 1, 3, 0, 1], "ASCP policy, fresh pod");

    // Its rotation (1.5: the versions it holds): the credentials are kept,
    // the refusal remembered.
    let mut rotation = mount("b-1", "b");
    rotation.current_object_version = first.object_version.clone();
    let (answer, cost) = measured(rotation).await;
    assert_eq!(answer.unwrap().files, first.files);
    assert_eq!(cost, [0, 0, 3, 0, 1], "ASCP policy, rotation");

    // Another pod of that role: its own exchange, and no batch is tried.
    let (answer, cost) = measured(mount("b-2", "b")).await;
    answer.unwrap();
    assert_eq!(cost, [1, 0, 3, 0, 1], "ASCP policy, the role's next pod");

    // A role that may read no secret: a final answer naming every object.
    let (answer, cost) = measured(mount("c-1", "c")).await;
    let status = answer.expect_err("role c may not read secrets");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    for object in ["app/db", "app/api", "app/cache"] {
        assert!(status.message().contains(object), "{status:?}");
    }
    assert!(!status.message().contains("/app/config"), "{status:?}");
    assert_eq!(cost, [1, 1, 3, 0, 1], "denied role");

    // Twenty pods at once, each with its own token, reading both services:
    // one exchange each, shared by Secrets Manager and SSM.
    let pods: Vec<String> = (0..20).map(|i| format!("a-burst-{i}")).collect();
    for round in ["start", "rotation"] {
        bed.moto.start_recording();
        let mounts = pods.iter().map(|pod| {
            bed.mount(bed.request(
                pod,
                "a",
                Some(tokens_json(&pod_token("a", pod))),
                BOTH_SERVICES,
            ))
        });
        for answer in futures::future::join_all(mounts).await {
            assert_eq!(file(&answer.unwrap(), "password").contents, b"value-of-a");
        }
        let cost = calls(&bed.moto.stop_recording());
        let sts = if round == "start" { 20 } else { 0 };
        assert_eq!(cost, [sts, 20, 0, 0, 20], "20 pods, {round}");
    }

    let logs = bed.provider.text();
    assert!(
        logs.matches("BatchGetSecretValue is denied").count() == 2,
        "once per role (b and c):\n{logs}"
    );
    for value in ["value-of-a", "app/api-of-b", "config-of-b"] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_aws_failure_is_answered_as_retryable() {
    let moto = Moto::start();
    // Secrets Manager fails (500) while STS and SSM answer.
    let proxy = support::fault_proxy::FaultProxy::start(
        &moto.endpoint,
        support::fault_proxy::Fault::ServerErrorFor("secretsmanager.BatchGetSecretValue"),
        1,
        1,
    )
    .await;
    let bed = Bed::start_on(moto, Some(&proxy.endpoint)).await;
    let status = bed
        .mount(bed.request("pod-a", "a", tokens_for("a"), BOTH_SERVICES))
        .await
        .expect_err("Secrets Manager is down");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("app/db"), "{status:?}");
}
