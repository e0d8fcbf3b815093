//! The container image: the Dockerfile's final stage built with buildah from
//! a statically linked binary (glibc, `+crt-static`), then run with podman as
//! the controller against the test bed. Linux x86_64 with buildah, podman and
//! runc; opt-in with SECRETSYNC_IMAGE_TEST=1 (scripts/test then installs
//! them), as it builds the binary a second time; otherwise it says why it skips.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use support::apiserver::FakeApiServer;
use support::peers;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `cargo build` of the binary as the Dockerfile's first stage builds it
/// (debug here, to share the test build's dependencies' sources and time).
fn static_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ok(
        "static build",
        Command::new(cargo)
            .args([
                "build",
                "--bin",
                "secretsync",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
                "-C target-feature=+crt-static",
            )
            .current_dir(root())
            .output()
            .unwrap(),
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    target.join("x86_64-unknown-linux-gnu/debug/secretsync")
}

/// Whether an ELF64 file has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> u64 {
        elf.get(at..at + len)
            .map(|b| {
                b.iter()
                    .rev()
                    .fold(0u64, |n, byte| n << 8 | u64::from(*byte))
            })
            .unwrap_or(0)
    };
    assert_eq!(elf.get(..4), Some(&b"\x7fELF"[..]), "not an ELF file");
    let (offset, size, count) = (
        read(0x20, 8) as usize,
        read(0x36, 2) as usize,
        read(0x38, 2) as usize,
    );
    (0..count).any(|i| read(offset + i * size, 4) == 3)
}

/// podman as it runs here: runc (crun refuses cgroup v1 and hybrid
/// hierarchies) and limits within the sandbox's own.
fn podman(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc"]).args(args);
    command
}

/// Removes the image and container, however the test ends.
struct Cleanup {
    image: String,
    container: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.container]).output();
        let _ = Command::new("buildah")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_builds_from_scratch_and_runs_the_controller_as_non_root() {
    if !peers::on_linux(
        "image_builds_from_scratch_and_runs_the_controller_as_non_root",
        "buildah and podman",
    ) {
        return;
    }
    if std::env::var("SECRETSYNC_IMAGE_TEST").as_deref() != Ok("1") {
        eprintln!(
            "skipping image_builds_from_scratch_and_runs_the_controller_as_non_root: it builds the binary again, statically; run it with SECRETSYNC_IMAGE_TEST=1 ./scripts/test --test integration image::"
        );
        return;
    }
    if std::env::consts::ARCH != "x86_64" || !["buildah", "podman", "runc"].iter().all(|p| have(p))
    {
        eprintln!(
            "skipping image_builds_from_scratch_and_runs_the_controller_as_non_root: needs x86_64 with buildah, podman and runc (scripts/test installs them)"
        );
        return;
    }
    let binary = static_binary();
    let elf = std::fs::read(&binary).unwrap();
    assert!(
        !has_interpreter(&elf),
        "the binary asks for a dynamic loader: not static"
    );

    // The first stage's output, /out/secretsync, given as the "build" context.
    let context = tempfile::tempdir().unwrap();
    std::fs::create_dir(context.path().join("out")).unwrap();
    std::fs::copy(&binary, context.path().join("out/secretsync")).unwrap();
    std::fs::create_dir_all(context.path().join("etc/ssl/certs")).unwrap();
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        context.path().join("etc/ssl/certs/ca-certificates.crt"),
    )
    .expect("the system's CA bundle (Debian ca-certificates)");
    let tag = format!("localhost/secretsync-test:{}", std::process::id());
    let cleanup = Cleanup {
        image: tag.clone(),
        container: format!("secretsync-test-{}", std::process::id()),
    };
    let build_context = format!("build={}", context.path().display());
    let dockerfile = root().join("Dockerfile");
    ok(
        "buildah bud",
        Command::new("buildah")
            .args(["bud", "--build-context", &build_context, "-t", &tag, "-f"])
            .arg(&dockerfile)
            .arg(context.path())
            .output()
            .unwrap(),
    );
    let config = ok(
        "inspect",
        podman(&[
            "image",
            "inspect",
            &tag,
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}} {{len .RootFS.Layers}}",
        ])
        .output()
        .unwrap(),
    );
    assert_eq!(
        config.trim(),
        r#"65532:65532 ["/secretsync"] 1"#,
        "non-root, one layer"
    );

    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    // No shell in it.
    let shell = podman(&["run", "--rm", "--network=none"])
        .args(limits)
        .args(["--entrypoint", "/bin/sh", &tag, "-c", "true"])
        .output()
        .unwrap();
    assert!(!shell.status.success(), "the image has a shell");
    let help = ok(
        "run --help",
        podman(&["run", "--rm", "--network=none"])
            .args(limits)
            .args([&tag, "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("controller"), "{help}");

    // The controller in the container, on the host's network, syncs the examples.
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    std::fs::set_permissions(
        &kubeconfig,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    for args in [
        vec!["apply", "-f", "crds/"],
        vec![
            "wait",
            "--for",
            "condition=Established",
            "--recursive=false",
            "-f",
            "crds/",
        ],
        vec!["apply", "-f", "examples/"],
    ] {
        ok(
            "kubectl",
            Command::new(peers::kubectl())
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .current_dir(root())
                .output()
                .unwrap(),
        );
    }
    let health = format!("127.0.0.1:{}", support::free_port());
    let mount = format!("{}:/kubeconfig:ro", kubeconfig.display());
    ok(
        "podman run -d",
        podman(&[
            "run",
            "-d",
            "--name",
            &cleanup.container,
            "--network=host",
            "--read-only",
        ])
        .args(limits)
        .args([
            "--cap-drop=ALL",
            "-v",
            &mount,
            "-e",
            "KUBECONFIG=/kubeconfig",
            &tag,
        ])
        .args([
            "controller",
            "--no-leader-election",
            "--health-address",
            &health,
        ])
        .output()
        .unwrap(),
    );
    let secrets: Api<Secret> = Api::namespaced(server.client(), "demo");
    let synced = support::cluster::eventually(Duration::from_secs(120), || async {
        secrets.get_opt("database-credentials").await.ok()?
    })
    .await;
    let logs = podman(&["logs", &cleanup.container]).output().unwrap();
    let synced =
        synced.unwrap_or_else(|| panic!("not synced: {}", String::from_utf8_lossy(&logs.stderr)));
    assert_eq!(synced.data.unwrap()["username"].0, b"app");
    let url = format!("http://{health}/metrics");
    let metrics = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(metrics.contains("secretsync_syncs_total"), "{metrics}");
    drop(cleanup);
}
