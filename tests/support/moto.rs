//! A moto server (PyPI `moto[server]`): AWS Secrets Manager, SSM and STS on
//! 127.0.0.1, one per test, killed when dropped. Its recorder tells what reached
//! "AWS". Started through `moto_server.py`, which makes DescribeParameters page
//! as AWS does, so call counts are AWS's. The Python that runs it is
//! `peers::python()`; one without moto fails the test at once, with Python's
//! own words ("No module named moto").

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

pub const REGION: &str = "eu-west-1";
/// The access key id of the fixed test credentials.
pub const TEST_KEY_ID: &str = "AKIDTESTADMIN";

/// SDK config aimed at `endpoint` (moto, or a proxy in front of it) with fixed
/// test keys: nothing read from the environment, nothing sent anywhere but 127.0.0.1.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            TEST_KEY_ID,
            "test-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await
}

/// SDK config acting as `role` (any account: moto keeps each apart), with
/// the credentials moto's AssumeRoleWithWebIdentity hands out for it.
pub async fn sdk_config_as(endpoint: &str, role: &str) -> aws_config::SdkConfig {
    let base = sdk_config(endpoint).await;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = format!(
        "{}.{}.c2lnbmF0dXJl",
        engine.encode(r#"{"alg":"RS256"}"#),
        engine.encode(r#"{"sub":"system:serviceaccount:test:setup"}"#)
    );
    let issued = aws_sdk_sts::Client::new(&base)
        .assume_role_with_web_identity()
        .role_arn(role)
        .role_session_name("test-setup")
        .web_identity_token(token)
        .send()
        .await
        .expect("moto's STS")
        .credentials
        .expect("credentials");
    base.to_builder()
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
        .build()
}

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// moto's recorder writes to a file; each server gets its own.
    _recording: tempfile::TempDir,
}

/// One request moto received.
#[derive(Debug)]
pub struct Recorded {
    /// `X-Amz-Target` for JSON protocols (`secretsmanager.BatchGetSecretValue`),
    /// `sts.<Action>` for STS.
    pub call: String,
    pub authorization: String,
    pub body: String,
    /// `X-Amz-Date` (`20261124T101500Z`): when the client signed it.
    pub date: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = super::free_port();
        let recording = tempfile::tempdir().expect("a directory for the recording");
        let log = recording.path().join("moto.log");
        let python = super::peers::python();
        let mut command = Command::new(&python);
        command
            .env("MOTO_RECORDER_FILEPATH", recording.path().join("recording"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/moto_server.py"
            ))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("moto's log file"));
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}", super::peers::missing(&python, e)));
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _recording: recording,
        };
        // Generous for a loaded machine; a Python that cannot start moto
        // exits, and that ends the wait at once.
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/moto-api/", moto.endpoint))
            .call()
            .is_err()
        {
            if let Some(status) = moto.child.try_wait().expect("moto's status") {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let last: Vec<&str> = said.lines().rev().take(5).collect();
                let last: Vec<&str> = last.into_iter().rev().collect();
                panic!(
                    "{}",
                    super::peers::missing(
                        &python,
                        format_args!("`-m moto.server` exited ({status}): {}", last.join("\n"))
                    )
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not start on {} within 60 s",
                moto.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whoever answered must be our own server, still running.
        assert!(
            moto.child.try_wait().expect("moto's status").is_none(),
            "moto exited; something else answers on {}",
            moto.endpoint
        );
        moto
    }

    /// The server's process id, to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn post(&self, path: &str) {
        ureq::post(&format!("{}{path}", self.endpoint))
            .send_empty()
            .unwrap_or_else(|e| panic!("moto {path}: {e}"));
    }

    /// Turns on moto's IAM checks (its own `reset-auth` switch): from now
    /// on every call must come from an identity moto knows, and its policies
    /// must allow the action. Setup that needs no permission comes first.
    pub fn enforce_iam(&self) {
        ureq::post(&format!("{}/moto-api/reset-auth", self.endpoint))
            .send("0")
            .unwrap_or_else(|e| panic!("moto reset-auth: {e}"));
    }

    /// Makes `role` in moto's IAM (in the role's own account, picked with
    /// moto's `x-moto-account-id` header) with an inline policy allowing
    /// exactly `actions`. moto checks nothing until [`Moto::enforce_iam`],
    /// so these setup calls need no signature.
    pub fn grant(&self, role: &str, actions: &[&str]) {
        let account = role.split(':').nth(4).expect("a role ARN");
        let name = role.rsplit('/').next().expect("a role ARN");
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        })
        .to_string();
        let trust = r#"{"Version":"2012-10-17","Statement":[]}"#;
        for form in [
            vec![
                ("Action", "CreateRole"),
                ("RoleName", name),
                ("AssumeRolePolicyDocument", trust),
            ],
            vec![
                ("Action", "PutRolePolicy"),
                ("RoleName", name),
                ("PolicyName", "granted"),
                ("PolicyDocument", &policy),
            ],
        ] {
            let mut form = form;
            form.push(("Version", "2010-05-08"));
            ureq::post(&format!("{}/", self.endpoint))
                .header("x-moto-account-id", account)
                .header(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDTESTADMIN/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
                )
                .send_form(form)
                .unwrap_or_else(|e| panic!("moto IAM {name}: {e}"));
        }
    }

    pub fn start_recording(&self) {
        self.post("/moto-api/recorder/reset-recording");
        self.post("/moto-api/recorder/start-recording");
    }

    /// Stops recording and returns what moto received since it started.
    pub fn stop_recording(&self) -> Vec<Recorded> {
        self.post("/moto-api/recorder/stop-recording");
        let text = ureq::get(&format!(
            "{}/moto-api/recorder/download-recording",
            self.endpoint
        ))
        .call()
        .expect("download recording")
        .into_body()
        .read_to_string()
        .unwrap();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("a recorded request");
                let header = |name: &str| {
                    entry["headers"][name]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                };
                let raw = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool() == Some(true) {
                    String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD
                            .decode(raw)
                            .unwrap_or_default(),
                    )
                    .into_owned()
                } else {
                    raw.to_string()
                };
                let call = match header("X-Amz-Target") {
                    target if !target.is_empty() => target,
                    _ => {
                        let action = body
                            .split('&')
                            .find_map(|pair| pair.strip_prefix("Action="))
                            .unwrap_or_default();
                        format!("sts.{action}")
                    }
                };
                Recorded {
                    call,
                    authorization: header("Authorization"),
                    body,
                    date: header("X-Amz-Date"),
                }
            })
            .collect()
    }
}

/// How many recorded requests were this call.
pub fn count(recorded: &[Recorded], call: &str) -> usize {
    recorded.iter().filter(|r| r.call == call).count()
}

/// On Linux, the server dies with the test process even if it is killed
/// before dropping us; elsewhere the drop is the only cleanup.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
