//! The `secretsync controller` binary run against a test cluster, with every
//! log line kept so a scenario can check no secret value was ever logged.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct RunningController {
    child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub health: String,
}

impl RunningController {
    /// Starts the controller with only `env` (and PATH) in its environment.
    pub fn start(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> RunningController {
        let port = super::free_port();
        let health = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_secretsync"))
            .arg("controller")
            .args(["--health-address", &health])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "debug")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the controller starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            super::keep_lines(stdout, &logs);
        }
        if let Some(stderr) = child.stderr.take() {
            super::keep_lines(stderr, &logs);
        }
        RunningController {
            child,
            logs,
            health: format!("http://{health}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as Kubernetes stops a pod; waits for the exit. A controller
    /// still running a minute later is killed, as the kubelet would, and the
    /// status says so (killed by signal 9): a hang fails its test instead of
    /// stalling the suite.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the controller's status") {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().expect("the controller exits")
    }

    /// Panics if any log line holds any of `values`.
    pub fn assert_never_logged(&self, values: &[&str]) {
        let logs = self.logs.lock().unwrap();
        assert!(!logs.is_empty(), "the controller logged nothing at all");
        for line in logs.iter() {
            for value in values {
                assert!(
                    !line.contains(value),
                    "a secret value reached the logs: {line}"
                );
            }
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `secretsync` binary with `stdin` (keygen, seal, ...) and returns
/// its stdout; panics, with its stderr, if it fails.
pub fn cli(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_secretsync"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "secretsync {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
