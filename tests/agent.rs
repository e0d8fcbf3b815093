//! `secretsync agent` (the built binary) against moto: files and modes, the
//! kubelet's atomic-write layout, rotation with exactly one signal and one
//! command per change, a reader that never sees a partial or missing file, and
//! `--once` failures. The agent authenticates as a pod with IRSA does
//! (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, the default chain).

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::moto::{Moto, REGION, count, sdk_config};

const WAIT: Duration = Duration::from_secs(90);

struct Bed {
    moto: Moto,
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    dir: tempfile::TempDir,
}

impl Bed {
    async fn start() -> Bed {
        let moto = Moto::start();
        let config = sdk_config(&moto.endpoint).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("token"),
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2ln",
        )
        .unwrap();
        Bed {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            moto,
            dir,
        }
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

    async fn rotate(&self, name: &str, value: &str) {
        self.sm
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
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

    fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn target(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// The agent's command with only the environment a pod with IRSA has.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_secretsync"));
        command
            .arg("agent")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/agent")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", self.dir.path().join("token"));
        command
    }

    fn once(&self, config: &Path) -> Output {
        let target = self.target();
        self.command(&[
            "--once",
            "--config",
            config.to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
        ])
        .output()
        .expect("the agent runs")
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn mode(dir: &Path, name: &str) -> u32 {
    std::fs::metadata(dir.join(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The generation `..data` points at.
fn data_target(dir: &Path) -> PathBuf {
    std::fs::read_link(dir.join("..data")).expect("..data is a symlink")
}

/// Timestamped generation directories present.
fn generations(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect()
}

fn assert_not_in(text: &str, values: &[&str]) {
    for value in values {
        assert!(
            !text.contains(value),
            "a secret value reached the output: {value}\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_ascp_objects_with_their_modes_through_irsa() {
    let bed = Bed::start().await;
    bed.secret(
        "prod/db",
        r#"{"username":"app","password":"s3cr3t-pw","pass-word":"dash"}"#,
    )
    .await;
    let arn = bed.secret("api-token", "tok-123").await;
    bed.parameter("/app/flag", "on", aws_sdk_ssm::types::ParameterType::String)
        .await;
    bed.parameter(
        "/app/key",
        "k-old",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    bed.parameter(
        "/app/key",
        "k-new",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    let config = bed.config(&format!(
        r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {{name: app}}
spec:
  provider: aws
  parameters:
    region: {REGION}
    objects: |
      - objectName: prod/db
        objectType: secretsmanager
        filePermission: "0400"
        jmesPath:
          - {{path: username, objectAlias: db-user}}
          - {{path: password, objectAlias: db-password, filePermission: "0440"}}
          - {{path: '"pass-word"', objectAlias: dashed}}
      - objectName: "{arn}"
        objectAlias: api
      - {{objectName: /app/flag, objectType: ssmparameter}}
      - {{objectName: /app/key, objectType: ssmparameter, objectVersion: "1", objectAlias: key-v1}}
"#
    ));
    bed.moto.start_recording();
    let output = bed.once(&config);
    let recorded = bed.moto.stop_recording();
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = bed.target();

    assert_eq!(
        read(&dir, "prod_db"),
        r#"{"username":"app","password":"s3cr3t-pw","pass-word":"dash"}"#
    );
    assert_eq!(read(&dir, "db-user"), "app");
    assert_eq!(read(&dir, "db-password"), "s3cr3t-pw");
    assert_eq!(read(&dir, "dashed"), "dash");
    assert_eq!(read(&dir, "api"), "tok-123");
    assert_eq!(read(&dir, "_app_flag"), "on");
    assert_eq!(read(&dir, "key-v1"), "k-old");
    assert_eq!(mode(&dir, "prod_db"), 0o400);
    assert_eq!(mode(&dir, "db-user"), 0o400);
    assert_eq!(mode(&dir, "db-password"), 0o440);
    assert_eq!(mode(&dir, "api"), 0o644);

    // The kubelet's layout: visible names are symlinks through ..data.
    let generation = data_target(&dir);
    assert!(
        generation.to_str().unwrap().starts_with(".."),
        "{generation:?}"
    );
    for name in ["prod_db", "db-user", "api", "_app_flag"] {
        assert_eq!(
            std::fs::read_link(dir.join(name)).unwrap(),
            Path::new("..data").join(name)
        );
    }
    assert_eq!(
        generations(&dir),
        vec![generation.to_str().unwrap().to_string()]
    );

    // As the pod: IRSA's web identity, then calls signed with the role's keys;
    // the two current Secrets Manager values in one batch.
    assert_eq!(
        count(&recorded, "sts.AssumeRoleWithWebIdentity"),
        1,
        "{recorded:?}"
    );
    assert_eq!(count(&recorded, "secretsmanager.BatchGetSecretValue"), 1);
    let signed: Vec<_> = recorded
        .iter()
        .filter(|r| r.call.starts_with("secretsmanager."))
        .collect();
    assert!(
        signed
            .iter()
            .all(|r| r.authorization.contains("Credential=ASIA")),
        "{signed:?}"
    );
    assert_not_in(
        &stderr(&output),
        &["s3cr3t-pw", "tok-123", "k-old", "k-new"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_secret_files_hold_the_bytes_the_controller_writes() {
    let bed = Bed::start().await;
    bed.secret("prod/db", r#"{"user":"app","password":"pw-9","port":5432}"#)
        .await;
    let config = bed.config(&format!(
        r#"apiVersion: secretsync.io/v1
kind: SecretStore
metadata: {{name: aws, namespace: team}}
spec:
  provider:
    aws: {{service: SecretsManager, region: {REGION}}}
---
apiVersion: secretsync.io/v1
kind: ExternalSecret
metadata: {{name: db, namespace: team}}
spec:
  secretStoreRef: {{name: aws}}
  target:
    template:
      data:
        url: "postgres://{{{{ .user }}}}:{{{{ .password }}}}@db:{{{{ .port }}}}/app"
  data:
    - {{secretKey: user, remoteRef: {{key: prod/db, property: user}}}}
    - {{secretKey: password, remoteRef: {{key: prod/db, property: password}}}}
    - {{secretKey: port, remoteRef: {{key: prod/db, property: port}}}}
"#
    ));
    let output = bed.once(&config);
    assert!(output.status.success(), "{}", stderr(&output));

    // What `render` (the controller's sync core) puts in the Secret.
    let rendered = Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(["render", "-o", "json", "-f", config.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", &bed.moto.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let list: serde_json::Value = serde_json::from_slice(&rendered.stdout).unwrap();
    let data = list["items"][0]["data"].as_object().unwrap();
    use base64::Engine;
    let dir = bed.target();
    assert_eq!(data.len(), 1, "the template keeps only url: {data:?}");
    for (key, value) in data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap();
        assert_eq!(std::fs::read(dir.join(key)).unwrap(), bytes, "{key}");
    }
    assert_eq!(read(&dir, "url"), "postgres://app:pw-9@db:5432/app");
    assert_not_in(&stderr(&output), &["pw-9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_clearly_and_writes_nothing() {
    let bed = Bed::start().await;
    bed.secret("present", "here-is-a-value").await;
    bed.secret("not-json", "plain-text-value").await;
    let dir = bed.target();
    let cases = [
        (
            "region: eu-west-1\nobjects:\n  - {objectName: present, objectType: secretsmanager}\n  - {objectName: missing, objectType: secretsmanager}\n",
            "objects[1] (\"missing\"): remote key \"missing\" not found",
        ),
        (
            "region: eu-west-1\nobjects:\n  - {objectName: not-json, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a}]}\n",
            "not JSON",
        ),
        (
            "region: eu-west-1\npathTranslation: \"False\"\nobjects:\n  - {objectName: present, objectType: secretsmanager, objectAlias: ../../escape}\n",
            "objectAlias",
        ),
        (
            "region: eu-west-1\nobjects:\n  - {objectName: present, objectType: vault}\n",
            "objectType \"vault\"",
        ),
        ("region: eu-west-1\nobjects: []\n", "lists no object"),
        ("kind: [\n", "invalid YAML"),
    ];
    for (config, expected) in cases {
        let path = bed.config(config);
        let output = bed.once(&path);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{config}\n{text}");
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        assert_not_in(&text, &["here-is-a-value", "plain-text-value"]);
        assert!(
            !dir.join("..data").exists(),
            "nothing is written on failure: {config}"
        );
        assert!(!dir.join("escape").exists() && !bed.dir.path().join("escape").exists());
    }
    // Usage errors name the flag.
    let output = bed
        .command(&[
            "--once",
            "--config",
            "x",
            "--target-dir",
            "y",
            "--file-mode",
            "999",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--file-mode"),
        "{}",
        stderr(&output)
    );
}

/// The agent running as a sidecar, its log lines kept.
struct Running {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        support::keep_lines(child.stderr.take().unwrap(), &logs);
        Running { child, logs }
    }

    fn lines_with(&self, text: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Waits until `done`; if it never is, the panic shows this agent's log.
    fn wait_until(&self, what: &str, done: impl FnMut() -> bool) {
        assert!(
            done_within_wait(done),
            "timed out waiting for {what}; the agent logged:\n{}",
            self.text()
        );
    }

    /// Waits until `text` has been logged `n` times in all.
    fn wait_for_lines(&self, text: &str, n: usize) {
        self.wait_until(&format!("{n} log lines with {text:?}"), || {
            self.lines_with(text) >= n
        });
    }

    fn text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A helper process, killed however the test ends.
struct App(Child);

impl App {
    /// Runs `script` in bash with SIGHUP and SIGUSR1 handled by default: a
    /// test run under `nohup` hands its children SIGHUP ignored, and bash
    /// cannot trap a signal ignored when it started.
    fn start(script: &str) -> App {
        let mut command = Command::new("bash");
        command.arg("-c").arg(script);
        // SAFETY: between fork and exec this only calls signal(2), which is
        // async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                libc::signal(libc::SIGUSR1, libc::SIG_DFL);
                Ok(())
            });
        }
        App(command.spawn().unwrap())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(done_within_wait(done), "timed out waiting for {what}");
}

/// Polls `done` until it holds (true) or `WAIT` has passed (false).
fn done_within_wait(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_swaps_data_and_notifies_exactly_once() {
    let bed = Bed::start().await;
    bed.secret("app/password", "first-value").await;
    let config = bed.config(
        "region: eu-west-1\nobjects:\n  - {objectName: app/password, objectType: secretsmanager, objectAlias: password}\n",
    );
    let dir = bed.target();
    let runs = bed.dir.path().join("runs");
    let hups = bed.dir.path().join("hups");
    let pid_file = bed.dir.path().join("app.pid");
    // The "application": counts the HUPs it receives.
    let _app = App::start(&format!(
        "trap 'echo hup >> {}' HUP; echo $$ > {}; while true; do sleep 0.05; done",
        hups.display(),
        pid_file.display()
    ));
    wait_until("the app's pid file", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });

    let agent = Running::start(bed.command(&[
        "--config",
        config.to_str().unwrap(),
        "--target-dir",
        dir.to_str().unwrap(),
        "--refresh-interval",
        "1s",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--signal",
        "HUP",
        "--exec",
        &format!("echo run >> {}", runs.display()),
    ]));
    agent.wait_for_lines("refresh: files written", 1);
    assert_eq!(read(&dir, "password"), "first-value");
    let first = data_target(&dir);

    // No change: nothing happens, however many refreshes.
    agent.wait_for_lines("refresh: no change", 3);
    assert_eq!(data_target(&dir), first);
    assert_eq!(
        (lines(&runs), lines(&hups)),
        (0, 0),
        "no change, no signal, no command"
    );

    bed.rotate("app/password", "second-value").await;
    wait_until("the new value on disk", || {
        read(&dir, "password") == "second-value"
    });
    let second = data_target(&dir);
    assert_ne!(second, first, "a new generation behind ..data");
    agent.wait_for_lines("refresh: files changed", 1);
    let after = agent.lines_with("refresh: no change");
    agent.wait_for_lines("refresh: no change", after + 3);
    wait_until("the old generation removed", || {
        generations(&dir) == vec![second.to_str().unwrap().to_string()]
    });
    agent.wait_until("the signal handled", || lines(&hups) >= 1);
    assert_eq!(lines(&runs), 1, "one command run per change");
    assert_eq!(lines(&hups), 1, "one signal per change");

    // A fetch error keeps the current files and logs no value.
    bed.sm
        .delete_secret()
        .secret_id("app/password")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    agent.wait_for_lines("refresh failed", 2);
    assert_eq!(read(&dir, "password"), "second-value");
    assert_eq!(data_target(&dir), second);
    assert_eq!((lines(&runs), lines(&hups)), (1, 1));
    assert!(agent.text().contains("not found"), "{}", agent.text());
    assert_not_in(&agent.text(), &["first-value", "second-value"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_in_a_tight_loop_never_sees_a_partial_or_missing_file() {
    let bed = Bed::start().await;
    // Large values, so a partly written file would show.
    let value =
        |generation: usize, name: &str| format!("{name}-{generation}-{}", "x".repeat(30_000));
    bed.secret("a", &value(0, "a")).await;
    bed.secret("b", &value(0, "b")).await;
    let config = bed.config(
        "region: eu-west-1\nobjects:\n  - {objectName: a, objectType: secretsmanager}\n  - {objectName: b, objectType: secretsmanager}\n",
    );
    let dir = bed.target();
    let agent = Running::start(bed.command(&[
        "--config",
        config.to_str().unwrap(),
        "--target-dir",
        dir.to_str().unwrap(),
        "--refresh-interval",
        "1s",
    ]));
    agent.wait_for_lines("refresh: files written", 1);

    let rotations = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let stop = stop.clone();
        let dir = dir.clone();
        let known: Vec<Vec<String>> = ["a", "b"]
            .iter()
            .map(|n| (0..=rotations).map(|g| value(g, n)).collect())
            .collect();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (i, name) in ["a", "b"].iter().enumerate() {
                    let text = std::fs::read_to_string(dir.join(name))
                        .unwrap_or_else(|e| panic!("{name} was missing during an update: {e}"));
                    assert!(
                        known[i].contains(&text),
                        "{name} was partial: {} bytes",
                        text.len()
                    );
                    reads += 1;
                }
            }
            reads
        })
    };
    for generation in 1..=rotations {
        bed.rotate("a", &value(generation, "a")).await;
        bed.rotate("b", &value(generation, "b")).await;
        wait_until("both files updated", || {
            std::fs::read_to_string(dir.join("a")).is_ok_and(|t| t == value(generation, "a"))
                && std::fs::read_to_string(dir.join("b")).is_ok_and(|t| t == value(generation, "b"))
        });
    }
    stop.store(true, Ordering::SeqCst);
    let reads = observer.join().expect("the observer saw only whole files");
    assert!(reads > 100, "the observer read {reads} times");
    agent.wait_for_lines("refresh: files changed", rotations);
}

/// EKS Pod Identity as the default chain sees it: a credentials endpoint
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) that wants the pod's token
/// (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) as its Authorization header.
/// A stand-in agent on 127.0.0.1 hands out keys only for that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_uses_eks_pod_identity_when_the_pod_has_it() {
    use std::io::{Read, Write};
    let bed = Bed::start().await;
    bed.secret("pi/secret", "pod-identity-value").await;
    let token_file = bed.dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-jwt").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = vec![0u8; 8192];
            let n = stream.read(&mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]).to_string();
            let authorized = request
                .lines()
                .any(|l| l.eq_ignore_ascii_case("authorization: pod-identity-jwt"));
            log.lock().unwrap().push(authorized);
            let (status, body) = if authorized {
                (
                    "200 OK",
                    r#"{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"s","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#,
                )
            } else {
                ("403 Forbidden", "{}")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let config = bed.config("region: eu-west-1\nobjects:\n  - {objectName: pi/secret, objectType: secretsmanager, objectAlias: value}\n");
    let target = bed.target();
    bed.moto.start_recording();
    let output = bed
        .command(&[
            "--once",
            "--config",
            config.to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
        ])
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{address}/v1/credentials"),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file)
        .output()
        .unwrap();
    let recorded = bed.moto.stop_recording();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read(&target, "value"), "pod-identity-value");
    assert_eq!(
        *served.lock().unwrap(),
        vec![true],
        "one credentials request, with the pod's token"
    );
    let reads: Vec<_> = recorded
        .iter()
        .filter(|r| r.call.starts_with("secretsmanager."))
        .collect();
    assert!(
        !reads.is_empty()
            && reads
                .iter()
                .all(|r| r.authorization.contains("Credential=ASIAPODIDENTITY")),
        "{reads:?}"
    );
}

/// `--process-name` finds the application by name (as a sidecar does with
/// `shareProcessNamespace`), and the signal is configurable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_signals_the_process_found_by_name() {
    let bed = Bed::start().await;
    bed.secret("app/key", "key-one").await;
    let config = bed.config(
        "region: eu-west-1\nobjects:\n  - {objectName: app/key, objectType: secretsmanager, objectAlias: key}\n",
    );
    let dir = bed.target();
    let usr1 = bed.dir.path().join("usr1");
    let ready = bed.dir.path().join("ready");
    // A name no other process on the machine has.
    let name = format!("secretsync-test-app-{}", std::process::id());
    let _app = App::start(&format!(
        "exec -a {name} bash -c \"trap 'echo usr1 >> {}' USR1; touch {}; while true; do sleep 0.05; done\"",
        usr1.display(),
        ready.display()
    ));
    wait_until("the app started", || ready.exists());
    let agent = Running::start(bed.command(&[
        "--config",
        config.to_str().unwrap(),
        "--target-dir",
        dir.to_str().unwrap(),
        "--refresh-interval",
        "1s",
        "--process-name",
        &name,
        "--signal",
        "USR1",
    ]));
    agent.wait_for_lines("refresh: files written", 1);
    bed.rotate("app/key", "key-two").await;
    agent.wait_for_lines("refresh: files changed", 1);
    wait_until("USR1 handled", || lines(&usr1) >= 1);
    let after = agent.lines_with("refresh: no change");
    agent.wait_for_lines("refresh: no change", after + 2);
    assert_eq!(lines(&usr1), 1);
    assert_eq!(read(&dir, "key"), "key-two");
    assert!(agent.text().contains("signalled"), "{}", agent.text());
}

/// Refreshes keep what they fetched: an unchanged ExternalSecret costs one
/// listing call a refresh, no value fetched again; a changed value is
/// fetched, alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_refreshes_fetch_no_value_again() {
    let bed = Bed::start().await;
    bed.secret("team/db", r#"{"password":"refresh-pw-1"}"#)
        .await;
    bed.secret("team/api", "api-token-1").await;
    let config = bed.config(&format!(
        r#"apiVersion: secretsync.io/v1
kind: SecretStore
metadata: {{name: aws, namespace: team}}
spec:
  provider:
    aws: {{service: SecretsManager, region: {REGION}}}
---
apiVersion: secretsync.io/v1
kind: ExternalSecret
metadata: {{name: app, namespace: team}}
spec:
  secretStoreRef: {{name: aws}}
  data:
    - {{secretKey: password, remoteRef: {{key: team/db, property: password}}}}
    - {{secretKey: token, remoteRef: {{key: team/api}}}}
"#
    ));
    let dir = bed.target();
    let agent = Running::start(bed.command(&[
        "--config",
        config.to_str().unwrap(),
        "--target-dir",
        dir.to_str().unwrap(),
        "--refresh-interval",
        "1s",
    ]));
    agent.wait_for_lines("refresh: files written", 1);
    bed.moto.start_recording();
    let seen = agent.lines_with("refresh: no change");
    agent.wait_for_lines("refresh: no change", seen + 2);
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        count(&recorded, "secretsmanager.BatchGetSecretValue"),
        0,
        "{recorded:?}"
    );
    assert!(
        count(&recorded, "secretsmanager.ListSecrets") >= 2,
        "{recorded:?}"
    );

    bed.rotate("team/api", "api-token-2").await;
    bed.moto.start_recording();
    wait_until("the new token on disk", || {
        read(&dir, "token") == "api-token-2"
    });
    let recorded = bed.moto.stop_recording();
    let asked: Vec<String> = recorded
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
        .collect();
    assert_eq!(asked, ["team/api"], "only the changed value: {recorded:?}");
    assert_eq!(read(&dir, "password"), "refresh-pw-1");
}

// ---- `--serve`: the AWS Secrets Manager Agent's HTTP API ----

/// The SSRF token the served agent reads from its environment.
const TOKEN: &str = "ssrf-token-4b1f";
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

/// An HTTP client that hands back every status instead of failing on 4xx/5xx.
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// GET `url` with these headers: (status, body).
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = http().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

/// The served agent and where it answers.
struct Served {
    agent: Running,
    base: String,
}

impl Served {
    /// `secretsync agent --serve` on a free loopback port with `command`'s
    /// other flags, `AWS_TOKEN` set; returns once `/ping` answers.
    fn start(mut command: Command) -> Served {
        let port = support::free_port();
        command
            .args(["--serve", &format!("127.0.0.1:{port}")])
            .env("AWS_TOKEN", TOKEN);
        Served::started(command, port)
    }

    fn started(command: Command, port: u16) -> Served {
        let served = Served {
            agent: Running::start(command),
            base: format!("http://127.0.0.1:{port}"),
        };
        served.agent.wait_until("the endpoint to answer /ping", || {
            http()
                .get(&format!("{}/ping", served.base))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        served
    }

    /// GET with the right token.
    fn get(&self, path: &str) -> (u16, String) {
        get(&format!("{}{path}", self.base), &[(TOKEN_HEADER, TOKEN)])
    }

    /// GET with the right token, expecting 200 and JSON.
    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}\n{}", self.agent.text());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    fn secret_string(&self, path: &str) -> String {
        self.json(path)["SecretString"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn calls_of(recorded: &[support::moto::Recorded], service: &str) -> Vec<String> {
    recorded
        .iter()
        .filter(|r| r.call.starts_with(service))
        .map(|r| r.call.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_like_the_secrets_manager_agent_beside_the_files() {
    let bed = Bed::start().await;
    bed.secret("app/db", r#"{"password":"served-pw-1"}"#).await;
    bed.sm
        .create_secret()
        .name("app/blob")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![
            0u8, 1, 2, 0xfe, 0xff,
        ]))
        .send()
        .await
        .unwrap();
    let config = bed.config(
        "region: eu-west-1\nobjects:\n  - {objectName: app/db, objectType: secretsmanager, objectAlias: db}\n",
    );
    let dir = bed.target();
    let served = Served::start(bed.command(&[
        "--config",
        config.to_str().unwrap(),
        "--target-dir",
        dir.to_str().unwrap(),
    ]));
    served.agent.wait_for_lines("refresh: files written", 1);
    assert_eq!(read(&dir, "db"), r#"{"password":"served-pw-1"}"#);

    // The SSRF checks, in the AWS agent's order and words: token before
    // method and path; /ping needs none.
    let url = |path: &str| format!("{}{path}", served.base);
    let db = "/secretsmanager/get?secretId=app%2Fdb";
    assert_eq!(get(&url(db), &[]), (403, "Bad Token".into()));
    assert_eq!(
        get(&url(db), &[(TOKEN_HEADER, "not-the-token")]),
        (403, "Bad Token".into())
    );
    assert_eq!(
        get(
            &url(db),
            &[(TOKEN_HEADER, TOKEN), ("X-Forwarded-For", "10.0.0.1")]
        ),
        (400, "Forwarded".into())
    );
    assert_eq!(get(&url("/nowhere"), &[]), (403, "Bad Token".into()));
    assert_eq!(served.get("/nowhere"), (404, "Not found".into()));
    assert_eq!(get(&url("/ping"), &[]), (200, "healthy".into()));
    let posted = http()
        .post(&url(db))
        .header(TOKEN_HEADER, TOKEN)
        .send_empty()
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(
        served.get("/secretsmanager/get?versionStage=AWSCURRENT"),
        (400, "missing parameter secretId".into())
    );
    assert_eq!(
        served.get("/secretsmanager/get?secretId=app%2Fdb&abc=1"),
        (400, "unknown parameter: abc".into())
    );
    let (status, body) = served.get("/secretsmanager/get?secretId=no%2Fsuch");
    let aws_status = bed
        .sm
        .get_secret_value()
        .secret_id("no/such")
        .send()
        .await
        .unwrap_err()
        .raw_response()
        .map(|r| r.status().as_u16());
    assert_eq!(Some(status), aws_status, "AWS's own status: {body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["__type"], "ResourceNotFoundException", "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );

    // GetSecretValue's JSON, as AWS's own answer has it.
    let (status, body) = served.get(db);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"{"ARN":""#), "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        6,
        "ARN, Name, VersionId, SecretString, VersionStages, CreatedDate: {body}"
    );
    let aws = bed
        .sm
        .get_secret_value()
        .secret_id("app/db")
        .send()
        .await
        .unwrap();
    assert_eq!(answer["ARN"].as_str(), aws.arn());
    assert_eq!(answer["Name"], "app/db");
    assert_eq!(answer["VersionId"].as_str(), aws.version_id());
    assert_eq!(answer["SecretString"], r#"{"password":"served-pw-1"}"#);
    assert_eq!(answer["VersionStages"], serde_json::json!(["AWSCURRENT"]));
    let created: f64 = answer["CreatedDate"].as_str().unwrap().parse().unwrap();
    let aws_created = aws.created_date().unwrap();
    assert!(
        (created - aws_created.as_secs_f64()).abs() < 0.001,
        "{created} vs {aws_created}"
    );
    let first_version = aws.version_id().unwrap().to_string();

    // A binary secret: SecretBinary in base64, no SecretString.
    let blob = served.json("/secretsmanager/get?secretId=app/blob");
    assert_eq!(blob["SecretBinary"], "AAEC/v8=");
    assert!(blob.get("SecretString").is_none(), "{blob}");

    // Cached: the query form, the path form and a stage of the same secret
    // cost no AWS call.
    bed.moto.start_recording();
    for _ in 0..3 {
        assert_eq!(served.get(db).1, body);
    }
    assert_eq!(served.get("/v1/app/db").1, body);
    let recorded = bed.moto.stop_recording();
    assert_eq!(calls_of(&recorded, "secretsmanager."), Vec::<String>::new());

    // A rotation: the cache answers the old value until refreshNow.
    bed.rotate("app/db", r#"{"password":"served-pw-2"}"#).await;
    assert_eq!(served.secret_string(db), r#"{"password":"served-pw-1"}"#);
    bed.moto.start_recording();
    assert_eq!(
        served.secret_string(&format!("{db}&refreshNow=true")),
        r#"{"password":"served-pw-2"}"#
    );
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        calls_of(&recorded, "secretsmanager."),
        ["secretsmanager.GetSecretValue"]
    );
    assert_eq!(
        served.secret_string(&format!("{db}&versionStage=AWSPREVIOUS")),
        r#"{"password":"served-pw-1"}"#
    );
    let pinned = served.json(&format!("/v1/app/db?versionId={first_version}"));
    assert_eq!(pinned["SecretString"], r#"{"password":"served-pw-1"}"#);
    assert_eq!(pinned["VersionStages"], serde_json::json!(["AWSPREVIOUS"]));

    // The debug log (one line a request) was read, and holds no value.
    assert!(
        served.agent.lines_with("answered") >= 20,
        "{}",
        served.agent.text()
    );
    assert_not_in(
        &served.agent.text(),
        &["served-pw-1", "served-pw-2", "AAEC/v8=", TOKEN],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_checks_the_version_once_the_ttl_is_over() {
    let bed = Bed::start().await;
    bed.secret("ttl/key", "ttl-value-1").await;
    // The token from a file, as AWS_TOKEN=file://... ; no files written.
    let token_file = bed.dir.path().join("ssrf-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = support::free_port();
    let mut command = bed.command(&["--serve", &format!("localhost:{port}"), "--serve-ttl", "0"]);
    command.env("AWS_TOKEN", format!("file://{}", token_file.display()));
    let served = Served::started(command, port);
    let key = "/secretsmanager/get?secretId=ttl/key";

    bed.moto.start_recording();
    assert_eq!(served.secret_string(key), "ttl-value-1");
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        calls_of(&recorded, "secretsmanager."),
        ["secretsmanager.GetSecretValue"]
    );

    // Expired, same version: one DescribeSecret, no GetSecretValue.
    bed.moto.start_recording();
    assert_eq!(served.secret_string(key), "ttl-value-1");
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        calls_of(&recorded, "secretsmanager."),
        ["secretsmanager.DescribeSecret"]
    );

    // Expired, version moved: DescribeSecret, then the new value.
    bed.rotate("ttl/key", "ttl-value-2").await;
    bed.moto.start_recording();
    assert_eq!(served.secret_string(key), "ttl-value-2");
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        calls_of(&recorded, "secretsmanager."),
        [
            "secretsmanager.DescribeSecret",
            "secretsmanager.GetSecretValue"
        ]
    );

    // The AWS agent's README example, word for word but the port: curl with
    // the token read from its file.
    let curl = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "curl -sS -H \"X-Aws-Parameters-Secrets-Token: $(<{})\" \
             'http://localhost:{port}/secretsmanager/get?secretId=ttl/key&refreshNow=true'",
            token_file.display()
        ))
        .output()
        .unwrap();
    assert!(curl.status.success(), "{}", stderr(&curl));
    let answer: serde_json::Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(answer["SecretString"], "ttl-value-2");
    assert_not_in(&served.agent.text(), &["ttl-value-1", "ttl-value-2", TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_serves_the_cached_value_when_aws_throttles_or_fails() {
    use support::fault_proxy::{Fault, FaultProxy};
    let bed = Bed::start().await;
    bed.secret("stale/key", "stale-value-1").await;
    bed.parameter(
        "/stale/param",
        "stale-param-1",
        aws_sdk_ssm::types::ParameterType::String,
    )
    .await;
    let proxy = FaultProxy::start(&bed.moto.endpoint, Fault::Throttling, 0, 1).await;
    let mut command = bed.command(&["--serve-ttl", "0"]);
    command.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    let served = Served::start(command);
    let key = "/secretsmanager/get?secretId=stale/key";
    let param = "/systemsmanager/parameters/get?name=/stale/param";
    assert_eq!(served.secret_string(key), "stale-value-1");
    assert_eq!(served.json(param)["Parameter"]["Value"], "stale-param-1");

    // Every call throttled: the expired answers are served, not an error.
    proxy.set(Some(Fault::Throttling), 1, 1);
    let failed = proxy.failed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(served.secret_string(key), "stale-value-1");
    assert_eq!(served.json(param)["Parameter"]["Value"], "stale-param-1");
    assert!(proxy.failed.load(std::sync::atomic::Ordering::SeqCst) > failed);
    // Nothing cached to fall back on: AWS's throttling error, as the AWS agent passes it on.
    let (status, body) = served.get("/secretsmanager/get?secretId=never/fetched");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""__type":"ThrottlingException""#), "{body}");

    // AWS failing with a 500: the same.
    proxy.set(Some(Fault::ServerError), 1, 1);
    assert_eq!(served.secret_string(key), "stale-value-1");

    // The version moved but GetSecretValue fails: the old value, until AWS is back.
    bed.rotate("stale/key", "stale-value-2").await;
    proxy.set(
        Some(Fault::ServerErrorFor("secretsmanager.GetSecretValue")),
        1,
        1,
    );
    assert_eq!(served.secret_string(key), "stale-value-1");
    served
        .agent
        .wait_for_lines("GetSecretValue failed; serving the cached value", 1);
    // refreshNow asks for AWS's answer, and gets its error.
    assert_eq!(
        served.get(&format!("{key}&refreshNow=true")),
        (500, r#"{"__type":"InternalFailure"}"#.into())
    );
    proxy.set(None, 0, 1);
    assert_eq!(served.secret_string(key), "stale-value-2");
    assert_not_in(
        &served.agent.text(),
        &["stale-value-1", "stale-value-2", "stale-param-1", TOKEN],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_parameter_requests_like_the_lambda_extension() {
    use aws_sdk_ssm::types::ParameterType;
    let bed = Bed::start().await;
    bed.parameter("/app/flag", "flag-value-on", ParameterType::String)
        .await;
    bed.parameter("/app/key", "key-value-1", ParameterType::SecureString)
        .await;
    bed.parameter("/app/key", "key-value-2", ParameterType::SecureString)
        .await;
    bed.ssm
        .label_parameter_version()
        .name("/app/key")
        .parameter_version(1)
        .labels("blue")
        .send()
        .await
        .unwrap();
    let served = Served::start(bed.command(&[]));
    let flag = "/systemsmanager/parameters/get?name=%2Fapp%2Fflag";
    assert_eq!(
        get(&format!("{}{flag}", served.base), &[]),
        (403, "Bad Token".into())
    );

    // GetParameter's JSON, beside AWS's own answer.
    let (status, body) = served.get(flag);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ResultMetadata"], serde_json::json!({}), "{body}");
    let parameter = &answer["Parameter"];
    let aws = bed
        .ssm
        .get_parameter()
        .name("/app/flag")
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(parameter["Name"], "/app/flag");
    assert_eq!(parameter["Type"], "String");
    assert_eq!(parameter["Value"], "flag-value-on");
    assert_eq!(parameter["Version"], 1);
    assert_eq!(parameter["ARN"].as_str(), aws.arn());
    assert_eq!(parameter["DataType"].as_str(), aws.data_type());
    let modified = parameter["LastModifiedDate"].as_str().unwrap();
    assert!(modified.ends_with('Z'), "{modified}");
    let modified: jiff::Timestamp = modified.parse().unwrap();
    assert_eq!(
        modified.as_second(),
        aws.last_modified_date().unwrap().secs()
    );
    for field in ["Selector", "SourceResult"] {
        assert!(parameter.get(field).is_some(), "{field} in {body}");
    }

    // withDecryption, version, label.
    let value = |path: &str| served.json(path)["Parameter"]["Value"].clone();
    let key = "/systemsmanager/parameters/get?name=/app/key";
    assert_eq!(value(&format!("{key}&withDecryption=true")), "key-value-2");
    assert_eq!(
        served.json(&format!("{key}&withDecryption=true"))["Parameter"]["Version"],
        2
    );
    assert_eq!(
        value(&format!("{key}&withDecryption=true&version=1")),
        "key-value-1"
    );
    assert_eq!(
        value(&format!("{key}&withDecryption=true&label=blue")),
        "key-value-1"
    );
    let encrypted = bed
        .ssm
        .get_parameter()
        .name("/app/key")
        .with_decryption(false)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(
        value(key).as_str(),
        encrypted.value(),
        "without withDecryption, what GetParameter gives"
    );
    assert_eq!(
        served.get(&format!("{key}&version=1&label=blue")),
        (400, "version and label cannot both be given".into())
    );
    let (status, body) = served.get("/systemsmanager/parameters/get?name=/no/such");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""__type":"ParameterNotFound""#), "{body}");

    // Cached: no call; refreshNow: one GetParameter.
    bed.moto.start_recording();
    for _ in 0..3 {
        assert_eq!(value(flag), "flag-value-on");
    }
    assert_eq!(
        value(&format!("{key}&withDecryption=true&label=blue")),
        "key-value-1"
    );
    let recorded = bed.moto.stop_recording();
    assert_eq!(calls_of(&recorded, "AmazonSSM."), Vec::<String>::new());
    bed.parameter("/app/flag", "flag-value-off", ParameterType::String)
        .await;
    assert_eq!(value(flag), "flag-value-on");
    bed.moto.start_recording();
    assert_eq!(value(&format!("{flag}&refreshNow=true")), "flag-value-off");
    let recorded = bed.moto.stop_recording();
    assert_eq!(
        calls_of(&recorded, "AmazonSSM."),
        ["AmazonSSM.GetParameter"]
    );
    assert_not_in(
        &served.agent.text(),
        &[
            "flag-value-on",
            "flag-value-off",
            "key-value-1",
            "key-value-2",
            TOKEN,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_open_or_without_a_token() {
    let bed = Bed::start().await;
    let port = support::free_port().to_string();
    let open = format!("0.0.0.0:{port}");
    let output = bed
        .command(&["--serve", &open])
        .env("AWS_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--serve-non-loopback"),
        "{}",
        stderr(&output)
    );
    let output = bed
        .command(&["--serve", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("AWS_TOKEN"), "{}", stderr(&output));
    // Usage errors: --once with --serve; no files and no --serve.
    for args in [
        vec!["--serve", "2773", "--once"],
        vec!["--serve-ttl", "10"],
        vec!["--serve", "2773", "--serve-ttl", "2h"],
    ] {
        let output = bed.command(&args).env("AWS_TOKEN", TOKEN).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Told to, it listens on every address.
    let mut command = bed.command(&["--serve", &open, "--serve-non-loopback"]);
    command.env("AWS_TOKEN", TOKEN);
    let served = Served::started(command, port.parse().unwrap());
    assert_eq!(served.get("/ping"), (200, "healthy".into()));
}
