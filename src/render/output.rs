//! Writing rendered Secrets: kubectl-applicable YAML or JSON on stdout, or one
//! file per Secret under a directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::api::{dns_label_problem, dns_subdomain_problem};
use crate::sync::DesiredSecret;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Multi-document YAML.
    #[default]
    Yaml,
    /// A `v1` `List` of Secrets.
    Json,
}

/// All Secrets as one text: `---`-separated YAML documents, or a JSON List.
pub fn to_stdout_text(secrets: &[DesiredSecret], format: OutputFormat) -> Result<String, String> {
    match format {
        OutputFormat::Yaml => secrets
            .iter()
            .map(|s| Ok(format!("---\n{}", yaml(s)?)))
            .collect(),
        OutputFormat::Json => {
            let items: Vec<_> = secrets.iter().map(|s| s.to_secret()).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            serde_json::to_string_pretty(&list)
                .map(|text| format!("{text}\n"))
                .map_err(|e| format!("cannot print the Secrets as JSON: {e}"))
        }
    }
}

fn yaml(secret: &DesiredSecret) -> Result<String, String> {
    serde_yaml_ng::to_string(&secret.to_secret()).map_err(|e| {
        format!(
            "Secret {}/{}: cannot print as YAML: {e}",
            secret.namespace, secret.name
        )
    })
}

fn json(secret: &DesiredSecret) -> Result<String, String> {
    serde_json::to_string_pretty(&secret.to_secret())
        .map(|text| format!("{text}\n"))
        .map_err(|e| {
            format!(
                "Secret {}/{}: cannot print as JSON: {e}",
                secret.namespace, secret.name
            )
        })
}

/// Writes `DIR/NAMESPACE/NAME.yaml` (or `.json`) per Secret, readable by the
/// owner only, each replaced atomically. A namespace or name that is not a
/// valid Kubernetes name (`../x`, `/etc`) is refused, so nothing is written
/// outside `dir`. Returns the paths written and, per Secret not written, why.
pub fn write_out_dir(
    dir: &Path,
    secrets: &[DesiredSecret],
    format: OutputFormat,
) -> (Vec<PathBuf>, Vec<String>) {
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for secret in secrets {
        match write_one(dir, secret, format) {
            Ok(path) => written.push(path),
            Err(message) => errors.push(message),
        }
    }
    (written, errors)
}

fn write_one(dir: &Path, secret: &DesiredSecret, format: OutputFormat) -> Result<PathBuf, String> {
    let label = format!(
        "Secret {:?} in namespace {:?}",
        secret.name, secret.namespace
    );
    if let Some(problem) = dns_label_problem(&secret.namespace) {
        return Err(format!("{label}: not written: the namespace {problem}"));
    }
    if let Some(problem) = dns_subdomain_problem(&secret.name) {
        return Err(format!("{label}: not written: the name {problem}"));
    }
    let (extension, text) = match format {
        OutputFormat::Yaml => ("yaml", yaml(secret)?),
        OutputFormat::Json => ("json", json(secret)?),
    };
    // Both parts are DNS names now: no `/`, never `.` or `..`.
    let folder = dir.join(&secret.namespace);
    let path = folder.join(format!("{}.{extension}", secret.name));
    write_atomically(&folder, &path, text.as_bytes())
        .map_err(|e| format!("{label}: writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Writes to a temporary file in `folder` (mode 0600), then renames it over `path`.
fn write_atomically(folder: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let mut file = tempfile::Builder::new()
        .prefix(".secretsync-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(folder)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(namespace: &str, name: &str) -> DesiredSecret {
        DesiredSecret {
            name: name.into(),
            namespace: namespace.into(),
            type_: "Opaque".into(),
            immutable: false,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            data: BTreeMap::new(),
            content_hash: String::new(),
        }
    }

    #[test]
    fn never_writes_outside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let hostile = [
            secret("../../../x", "a"),
            secret("team", "../../../x"),
            secret("/tmp", "a"),
            secret("team", "/etc/passwd"),
            secret("..", "a"),
            secret("team", ".."),
            secret("team", "."),
        ];
        let (written, errors) = write_out_dir(&out, &hostile, OutputFormat::Yaml);
        assert!(written.is_empty());
        assert_eq!(errors.len(), hostile.len(), "{errors:?}");
        assert!(
            errors[0].contains("not written: the namespace must be a lowercase RFC 1123 label")
        );
        let entries: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(entries.is_empty(), "nothing was created: {entries:?}");

        let (written, errors) =
            write_out_dir(&out, &[secret("team", "app.v1")], OutputFormat::Json);
        assert!(errors.is_empty());
        assert_eq!(written, [out.join("team/app.v1.json")]);
    }
}
