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

use crate::support;

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
        Bed::start_with(moto, aws, &[]).await
    }

    /// With more `csi-provider` flags.
    async fn start_with(moto: Moto, aws: Option<&str>, args: &[&str]) -> Bed {
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

        let endpoint = aws.unwrap_or(&moto.endpoint).to_string();
        let (provider, client) = spawn_provider(dir.path(), &kubeconfig, &endpoint, args).await;
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

/// A `csi-provider` process on a socket of its own under `dir`, reaching AWS
/// at `aws`, with `args` added.
async fn spawn_provider(
    dir: &Path,
    kubeconfig: &Path,
    aws: &str,
    args: &[&str],
) -> (Provider, CsiDriverProviderClient<Channel>) {
    let socket = dir
        .join(format!("providers-{}", support::free_port()))
        .join("secretsync.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["csi-provider", "--socket", socket.to_str().unwrap()])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "debug")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", aws)
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
    (provider, client)
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

/// Connects once the provider listens. The socket's file appears at bind(),
/// a moment before listen(): a connection in between is refused, so a
/// refusal is tried again until the deadline, as the driver's gRPC client does.
async fn connect(socket: &Path, provider: &Provider) -> CsiDriverProviderClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let error = if socket.exists() {
            match channel_to(socket).await {
                Ok(channel) => return CsiDriverProviderClient::new(channel),
                Err(e) => e.to_string(),
            }
        } else {
            "no socket yet".to_string()
        };
        assert!(
            Instant::now() < deadline,
            "the provider did not listen on {} ({error}):\n{}",
            socket.display(),
            provider.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn channel_to(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    // The URI is not used: every connection goes to the socket, as the driver's.
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
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
    // Every mount reads for itself here: what each policy costs per mount.
    let bed = Bed::start_with(Moto::start(), None, &["--share-fetches-for", "0"]).await;
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
    // Tried again with backoff until the mount's deadline, then answered.
    let bed = Bed::start_with(moto, Some(&proxy.endpoint), &["--mount-timeout", "3"]).await;
    let status = bed
        .mount(bed.request("pod-a", "a", tokens_for("a"), BOTH_SERVICES))
        .await
        .expect_err("Secrets Manager is down");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("app/db"), "{status:?}");
}

/// `request` with these attributes set.
fn with(mut request: MountRequest, set: &[(&str, &str)]) -> MountRequest {
    request.attributes = edit_attributes(&request, |a| {
        for (key, value) in set {
            a.insert(
                key.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    });
    request
}

/// A Secrets Manager client of `role` in `region`.
async fn secrets_manager_in(
    endpoint: &str,
    role: &str,
    region: &str,
) -> aws_sdk_secretsmanager::Client {
    let config = support::moto::sdk_config_as(endpoint, role)
        .await
        .to_builder()
        .region(aws_config::Region::new(region.to_string()))
        .build();
    aws_sdk_secretsmanager::Client::new(&config)
}

/// The region of a recorded call, from its credential scope.
fn region_of(recorded: &support::moto::Recorded) -> &str {
    recorded
        .authorization
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or_default()
}

const FAILOVER: &str = "eu-west-2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_regions_behave_as_in_ascp() {
    let moto = Moto::start();
    let proxy = support::fault_proxy::FaultProxy::start(
        &moto.endpoint,
        support::fault_proxy::Fault::Throttling,
        0,
        1,
    )
    .await;
    let bed = Bed::start_with(
        moto,
        Some(&proxy.endpoint),
        &["--share-fetches-for", "0", "--mount-timeout", "3"],
    )
    .await;
    let endpoint = bed.moto.endpoint.clone();
    let replica = secrets_manager_in(&endpoint, ROLE_A, FAILOVER).await;
    create(&replica, "app/db", r#"{"password":"replica-of-a"}"#).await;
    create(&replica, "only-failover", "f").await;
    create(
        &secrets_manager_as(&endpoint, ROLE_A).await,
        "only-primary",
        "p",
    )
    .await;
    let mount = |objects: &str| {
        with(
            bed.request("pod-a", "a", tokens_for("a"), objects),
            &[("failoverRegion", FAILOVER)],
        )
    };

    // Both answer: both regions are asked, the primary's value wins.
    bed.moto.start_recording();
    let answer = bed.mount(mount(OBJECTS)).await.unwrap();
    let recorded = bed.moto.stop_recording();
    assert_eq!(file(&answer, "password").contents, b"value-of-a");
    let regions: std::collections::BTreeSet<&str> = recorded
        .iter()
        .filter(|r| r.call.starts_with("secretsmanager."))
        .map(region_of)
        .collect();
    assert_eq!(regions, [REGION, FAILOVER].into(), "{recorded:?}");

    // A 4xx from either region fails the mount, even when the other has it.
    let status = bed
        .mount(mount(
            "- {objectName: only-primary, objectType: secretsmanager}",
        ))
        .await
        .expect_err("not found in the failover region");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status
            .message()
            .contains("in the failover region eu-west-2")
            && status.message().contains("\"only-primary\" not found"),
        "{status:?}"
    );
    let status = bed
        .mount(mount(
            "- {objectName: only-failover, objectType: secretsmanager}",
        ))
        .await
        .expect_err("not found in the primary region");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // The primary region fails (5xx): the failover region's value.
    proxy.set(
        Some(support::fault_proxy::Fault::ServerErrorIn(REGION)),
        1,
        1,
    );
    let answer = bed.mount(mount(OBJECTS)).await.unwrap();
    assert_eq!(file(&answer, "password").contents, b"replica-of-a");
    // The failover region fails: the primary's.
    proxy.set(
        Some(support::fault_proxy::Fault::ServerErrorIn(FAILOVER)),
        1,
        1,
    );
    let answer = bed.mount(mount(OBJECTS)).await.unwrap();
    assert_eq!(file(&answer, "password").contents, b"value-of-a");

    let logs = bed.provider.text();
    for value in ["value-of-a", "replica-of-a"] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_provider_classes_mount_as_ascp_reads_them() {
    let bed = Bed::start().await;
    let mount = |objects: &str| bed.request("pod-a", "a", tokens_for("a"), objects);

    // Keys ASCP ignores are accepted and named in the log; an SSM parameter
    // named by ARN (answered under its bare name) mounts; four-digit modes.
    let objects = r#"
- objectName: app/db
  objectType: secretsmanager
  filePermission: "0640"
  someFutureKey: x
- objectName: arn:aws:ssm:eu-west-1:111111111111:parameter/app/config
  objectAlias: config
"#;
    let answer = bed
        .mount(with(mount(objects), &[("vaultAddress", "https://vault")]))
        .await
        .unwrap();
    assert_eq!(file(&answer, "app_db").mode, 0o640);
    assert_eq!(file(&answer, "config").contents, b"config-of-a");
    let logs = bed.provider.text();
    assert!(
        logs.contains("vaultAddress") && logs.contains("objects[0].someFutureKey"),
        "{logs}"
    );

    // Two objects on one file name: the later one is the file, as ASCP's
    // answer written by the driver.
    let objects = r#"
- {objectName: app/db, objectType: secretsmanager}
- {objectName: /app/config, objectType: ssmparameter, objectAlias: app_db}
"#;
    let answer = bed.mount(mount(objects)).await.unwrap();
    assert_eq!(paths(&answer), ["app_db"]);
    assert_eq!(file(&answer, "app_db").contents, b"config-of-a");
    assert_eq!(answer.object_version.len(), 1);

    // What ASCP refuses, refused in sentences.
    let refused = [
        (
            "- {objectName: app/db, objectType: secretsmanager, filePermission: '640'}",
            "filePermission \"640\" must be exactly four octal digits",
        ),
        ("- app/db", "objects[0]: must be a mapping with objectName"),
        (
            "- {objectName: app/db, objectType: secretsmanager, objectAlias: x}\n- {objectName: /app/config, objectType: ssmparameter, objectAlias: x}",
            "objectAlias \"x\" is already used by another object",
        ),
        (
            "- {objectName: app/db, objectType: secretsmanager}\n- {objectName: app/db, objectType: secretsmanager}",
            "objectName is listed more than once",
        ),
        (
            "- {objectName: app/db, objectType: secretsmanager, jmesPath: [{path: password}]}",
            "jmesPath[0].objectAlias is required",
        ),
    ];
    for (objects, said) in refused {
        let status = bed.mount(mount(objects)).await.expect_err(objects);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let message = status.message();
        assert!(message.contains(said), "{message}");
        for debug in [
            "FileName(",
            "struct ",
            "expected ",
            "`",
            "objects[0]: objects",
            ": :",
        ] {
            assert!(!message.contains(debug), "{debug:?} in {message}");
        }
    }
    let status = bed
        .mount(with(mount(OBJECTS), &[("usePodIdentity", "yes")]))
        .await
        .expect_err("not a boolean");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("usePodIdentity \"yes\" is not a boolean"),
        "{status:?}"
    );
    // "False" is IRSA, as in ASCP.
    bed.mount(with(mount(OBJECTS), &[("usePodIdentity", "False")]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_chained_after_the_pods_reads_as_that_role() {
    let bed = Bed::start().await;
    let request = with(
        bed.request("pod-a", "a", tokens_for("a"), OBJECTS),
        &[
            ("assumeRoleArn", ROLE_B),
            ("assumeRoleExternalId", "team-a"),
            ("assumeRoleDurationSeconds", "900"),
        ],
    );
    bed.moto.start_recording();
    let answer = bed.mount(request.clone()).await.unwrap();
    let recorded = bed.moto.stop_recording();
    // Role b's secret, in role b's account: the chain reached it.
    assert_eq!(file(&answer, "password").contents, b"value-of-b");
    let web = recorded
        .iter()
        .find(|r| r.call == "sts.AssumeRoleWithWebIdentity")
        .expect("the pod's own exchange");
    assert!(web.body.contains("role%2Fa"), "{web:?}");
    let chained = recorded
        .iter()
        .find(|r| r.call == "sts.AssumeRole")
        .expect("the chained role");
    for part in ["role%2Fb", "ExternalId=team-a", "DurationSeconds=900"] {
        assert!(chained.body.contains(part), "{part}: {chained:?}");
    }
    // Signed with the pod's credentials, never the provider's own.
    assert!(!chained.authorization.contains(support::moto::TEST_KEY_ID));
    // The same pod without the chain reads as its own role.
    let own = bed
        .mount(bed.request("pod-a", "a", tokens_for("a"), OBJECTS))
        .await
        .unwrap();
    assert_eq!(file(&own, "password").contents, b"value-of-a");

    let status = bed
        .mount(with(request, &[("assumeRoleDurationSeconds", "60")]))
        .await
        .expect_err("too short");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("assumeRoleDurationSeconds"),
        "{status:?}"
    );
}

/// A stand-in for the EKS Pod Identity agent: answers GET /v1/credentials
/// with the container credential provider's JSON when the `Authorization`
/// header is an accepted token, 400 otherwise; the next `throttle` requests
/// get a 429.
struct PodIdentityAgent {
    endpoint: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    accepted: Arc<Mutex<Vec<String>>>,
    throttle: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodIdentityAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodIdentityAgent {
    async fn start(credentials: serde_json::Value) -> PodIdentityAgent {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/v1/credentials", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
        let throttle = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (requests_in, accepted_in, throttle_in) =
            (requests.clone(), accepted.clone(), throttle.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                requests_in.fetch_add(1, Ordering::SeqCst);
                let mut stream = BufReader::new(stream);
                let (mut request_line, mut authorization) = (String::new(), String::new());
                stream.read_line(&mut request_line).await.unwrap();
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    // Header names are case-insensitive (ureq sends them lowercased).
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        authorization = value.trim().to_string();
                    }
                }
                let throttled = throttle_in
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let (status, body) = if throttled {
                    (
                        "429 Too Many Requests",
                        r#"{"code":"ThrottlingException","message":"slow down"}"#.to_string(),
                    )
                } else if !request_line.starts_with("GET /v1/credentials ") {
                    ("404 Not Found", "{}".to_string())
                } else if accepted_in.lock().unwrap().contains(&authorization) {
                    ("200 OK", credentials.to_string())
                } else {
                    (
                        "400 Bad Request",
                        r#"{"code":"InvalidTokenException","message":"the token is not valid"}"#
                            .to_string(),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.get_mut().write_all(answer.as_bytes()).await;
            }
        });
        PodIdentityAgent {
            endpoint,
            requests,
            accepted,
            throttle,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Credentials moto hands out for `role`, as the Pod Identity agent answers
/// them.
async fn agent_answer_for(endpoint: &str, role: &str) -> serde_json::Value {
    let issued = aws_sdk_sts::Client::new(&sdk_config(endpoint).await)
        .assume_role()
        .role_arn(role)
        .role_session_name("eks-pod-identity")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    serde_json::json!({
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "Token": issued.session_token,
        "AccountId": "111111111111",
        "Expiration": "2099-01-01T00:00:00Z",
    })
}

const POD_IDENTITY: &str = "pods.eks.amazonaws.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_reads_through_the_agent_with_the_pods_token() {
    let moto = Moto::start();
    let answer = agent_answer_for(&moto.endpoint, ROLE_A).await;
    let key_id = answer["AccessKeyId"].as_str().unwrap().to_string();
    let agent = PodIdentityAgent::start(answer).await;
    let bed = Bed::start_with(
        moto,
        None,
        &[
            "--pod-identity-endpoint",
            &agent.endpoint,
            "--mount-timeout",
            "5",
        ],
    )
    .await;
    // ServiceAccount "plain" has no IRSA annotation: Pod Identity needs none.
    let mount = |pod: &str, token: &str| {
        let tokens = serde_json::json!({POD_IDENTITY: {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"}});
        with(
            bed.request(pod, "plain", Some(tokens.to_string()), BOTH_SERVICES),
            &[("usePodIdentity", "true"), ("preferredAddressType", "ipv6")],
        )
    };
    let token = pod_token("plain", "pi-1");
    agent.accepted.lock().unwrap().push(token.clone());

    bed.moto.start_recording();
    let answer = bed.mount(mount("pi-1", &token)).await.unwrap();
    let recorded = bed.moto.stop_recording();
    // Role a's values (its account), read with the agent's credentials.
    assert_eq!(file(&answer, "password").contents, b"value-of-a");
    assert_eq!(file(&answer, "_app_config").contents, b"config-of-a");
    assert_eq!(agent.requests(), 1, "one agent call for both services");
    assert_eq!(
        support::moto::count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        0
    );
    assert!(
        recorded
            .iter()
            .filter(|r| !r.call.starts_with("sts."))
            .all(|r| r.authorization.contains(&key_id)),
        "{recorded:?}"
    );
    // The same token again: the credentials are kept.
    bed.mount(mount("pi-1", &token)).await.unwrap();
    assert_eq!(agent.requests(), 1);

    // A token the agent refuses: final, named, and the token is never said.
    let refused = pod_token("plain", "pi-2");
    let status = bed
        .mount(mount("pi-2", &refused))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("refused the pod's token with HTTP 400")
            && !status.message().contains(&refused),
        "{status:?}"
    );

    // The agent throttles a burst: retried with backoff, the mount passes.
    let busy = pod_token("plain", "pi-3");
    agent.accepted.lock().unwrap().push(busy.clone());
    agent.throttle.store(2, std::sync::atomic::Ordering::SeqCst);
    let before = agent.requests();
    let answer = bed.mount(mount("pi-3", &busy)).await.unwrap();
    assert_eq!(file(&answer, "password").contents, b"value-of-a");
    assert_eq!(agent.requests() - before, 3, "two 429s, then the answer");

    // No token of the Pod Identity audience: the CSIDriver lacks it.
    let status = bed
        .mount(with(
            bed.request("pi-4", "plain", tokens_for("plain"), BOTH_SERVICES),
            &[("usePodIdentity", "true")],
        ))
        .await
        .expect_err("no pods.eks.amazonaws.com token");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains(POD_IDENTITY), "{status:?}");

    let logs = bed.provider.text();
    for value in ["value-of-a", "config-of-a", &token, &refused, &busy] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_burst_of_mounts_all_succeed() {
    let moto = Moto::start();
    let proxy = support::fault_proxy::FaultProxy::start(
        &moto.endpoint,
        support::fault_proxy::Fault::Throttling,
        0,
        1,
    )
    .await;
    let bed = Bed::start_with(moto, Some(&proxy.endpoint), &["--share-fetches-for", "0"]).await;
    // Half of every call throttled: STS, Secrets Manager and SSM alike.
    proxy.throttle_percent(50);
    let pods: Vec<String> = (0..30).map(|i| format!("burst-{i}")).collect();
    let mounts = pods.iter().map(|pod| {
        bed.mount(bed.request(
            pod,
            "a",
            Some(tokens_json(&pod_token("a", pod))),
            BOTH_SERVICES,
        ))
    });
    for answer in futures::future::join_all(mounts).await {
        let answer = answer.expect("a throttled mount is tried again, not failed");
        assert_eq!(file(&answer, "password").contents, b"value-of-a");
    }
    assert!(
        proxy.failed.load(std::sync::atomic::Ordering::SeqCst) > 30,
        "the burst was throttled"
    );
}

/// [`calls`] of only these ServiceAccounts' mounts cannot be told apart by
/// moto; the test counts all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_mounting_the_same_objects_as_one_identity_share_one_fetch() {
    let bed = Bed::start().await;
    let kubeconfig = bed.dir.path().join("kubeconfig");
    let (unshared, unshared_client) = spawn_provider(
        bed.dir.path(),
        &kubeconfig,
        &bed.moto.endpoint,
        &["--share-fetches-for", "0"],
    )
    .await;
    let burst = |client: CsiDriverProviderClient<Channel>, round: &'static str| {
        let bed = &bed;
        async move {
            // 100 pods of ServiceAccount a and 10 of b, in one burst.
            let pods: Vec<(String, &str)> = (0..110)
                .map(|i| {
                    let account = if i % 11 == 10 { "b" } else { "a" };
                    (format!("{round}-{account}-{i}"), account)
                })
                .collect();
            bed.moto.start_recording();
            let mounts = pods.iter().map(|(pod, account)| {
                let request = bed.request(
                    pod,
                    account,
                    Some(tokens_json(&pod_token(account, pod))),
                    BOTH_SERVICES,
                );
                let mut client = client.clone();
                async move { (account, client.mount(request).await) }
            });
            for (account, answer) in futures::future::join_all(mounts).await {
                let answer = answer.unwrap().into_inner();
                // Never another identity's value.
                let expected = format!("value-of-{account}");
                assert_eq!(file(&answer, "password").contents, expected.as_bytes());
            }
            calls(&bed.moto.stop_recording())
        }
    };
    // [STS, Batch, Get, Describe, GetParameters]
    let before = burst(unshared_client, "unshared").await;
    assert_eq!(
        before,
        [110, 110, 0, 0, 110],
        "every mount reads for itself"
    );
    let after = burst(bed.client.clone(), "shared").await;
    // Every pod's token still goes to STS; each identity reads once.
    assert_eq!(after, [110, 2, 0, 0, 2], "one read per identity");
    let logs = plain(&bed.provider.text());
    assert!(logs.contains("shared=true"), "{logs}");
    for value in ["value-of-a", "value-of-b", "config-of-a"] {
        assert!(!logs.contains(value) && !unshared.text().contains(value));
    }
}

/// Log text without the terminal's colour codes.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
