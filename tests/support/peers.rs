//! Where the test peers are: `scripts/test` installs them into the project's
//! `.venv/` and exports `SECRETSYNC_PYTHON`, `SECRETSYNC_KUBECTL` and
//! `SECRETSYNC_HELM`; plain `cargo test` falls back to `.venv/` if it is
//! there, else to `PATH`. Tests that need what this platform lacks skip with
//! a message instead of failing.

#![allow(dead_code)] // each test binary uses its own share of this

use std::path::{Path, PathBuf};

/// The variable, else `.venv/bin/NAME` in the project, else `fallback` on PATH.
fn find(variable: &str, venv_name: &str, fallback: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv")
        .join("bin")
        .join(venv_name);
    if venv.is_file() {
        return venv;
    }
    PathBuf::from(fallback)
}

/// The Python that has moto (`moto[server]`).
pub fn python() -> PathBuf {
    find("SECRETSYNC_PYTHON", "python", "python3")
}

/// The pinned kubectl.
pub fn kubectl() -> PathBuf {
    find("SECRETSYNC_KUBECTL", "kubectl", "kubectl")
}

/// helm, if there is one: `scripts/test` sets `SECRETSYNC_HELM` empty where
/// it has none to offer (anything but Linux x86_64 without a helm on PATH).
pub fn helm() -> Option<PathBuf> {
    if std::env::var_os("SECRETSYNC_HELM").is_some_and(|p| p.is_empty()) {
        return None;
    }
    let helm = find("SECRETSYNC_HELM", "helm", "helm");
    std::process::Command::new(&helm)
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| helm)
}

/// node (the npm peers run on it): `SECRETSYNC_NODE`, else `node` on PATH.
pub fn node() -> PathBuf {
    std::env::var_os("SECRETSYNC_NODE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// Where `scripts/test` installs the npm peers (`npm install --prefix
/// .peers/node ...`): `SECRETSYNC_NODE_MODULES`, else the project's
/// `.peers/node/node_modules`.
pub fn node_modules() -> PathBuf {
    std::env::var_os("SECRETSYNC_NODE_MODULES")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".peers")
                .join("node")
                .join("node_modules")
        })
}

/// The message for a peer that is missing or would not start.
pub fn missing(peer: &Path, error: impl std::fmt::Display) -> String {
    format!(
        "test peer {}: {error}. Run scripts/test, which installs the test peers \
         into .venv/, or set SECRETSYNC_PYTHON / SECRETSYNC_KUBECTL / SECRETSYNC_HELM / \
         SECRETSYNC_NODE / SECRETSYNC_NODE_MODULES",
        peer.display()
    )
}

/// Whether a Linux-only test can run here; elsewhere it says it skips.
pub fn on_linux(test: &str, why: &str) -> bool {
    let linux = cfg!(target_os = "linux");
    if !linux {
        eprintln!("skipping {test}: it needs Linux ({why})");
    }
    linux
}
