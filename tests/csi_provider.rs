//! `secretsync csi-provider` (the built binary) driven by a gRPC client that
//! sends what the Secrets Store CSI driver sends, against moto for AWS and the
//! fake API server for ServiceAccounts. Each Mount acts as its pod: two pods
//! whose ServiceAccounts name roles in different AWS accounts read different
//! values (moto keeps each account's secrets apart, and credentials from an
//! assumed role act in that role's account), and neither reads what the
//! provider's own identity could.

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

/// Credentials of a role, as moto hands them out, to put secrets in its account.
async fn secrets_manager_as(endpoint: &str, role: &str) -> aws_sdk_secretsmanager::Client {
    let base = sdk_config(endpoint).await;
    let sts = aws_sdk_sts::Client::new(&base);
    let issued = sts
        .assume_role_with_web_identity()
        .role_arn(role)
        .role_session_name("test-setup")
        .web_identity_token(token("setup"))
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let config = base
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    issued.access_key_id,
                    issued.secret_access_key,
                    Some(issued.session_token),
                    None,
                    "test",
                ),
            ),
        )
        .build();
    aws_sdk_secretsmanager::Client::new(&config)
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
        let moto = Moto::start();
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
        for (name, role) in [("a", Some(ROLE_A)), ("b", Some(ROLE_B)), ("plain", None)] {
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

        let socket = dir.path().join("providers").join("secretsync.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .args(["csi-provider", "--socket", socket.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "debug")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
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
            secrets: "{}".into(),
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
    Some(
        serde_json::json!({"sts.amazonaws.com": {"token": token(account), "expirationTimestamp": "2099-01-01T00:00:00Z"}})
            .to_string(),
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
    assert_eq!(c, tonic::Code::Unavailable, "{m}");
    assert!(m.contains("\"only-elsewhere\" not found"), "{m}");

    let logs = bed.provider.text();
    assert!(logs.contains("mount failed"), "{logs}");
    for value in ["value-of-a", "value-of-b", "value-of-b-only", &token("a")] {
        assert!(!logs.contains(value), "a secret reached the logs: {value}");
    }
}
