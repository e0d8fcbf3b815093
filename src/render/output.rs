//! Writing rendered Secrets: kubectl-applicable YAML or JSON on stdout, or one
//! file per Secret under a directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

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
pub fn to_stdout_text(secrets: &[DesiredSecret], format: OutputFormat) -> String {
    match format {
        OutputFormat::Yaml => secrets
            .iter()
            .map(|s| format!("---\n{}", yaml(s)))
            .collect(),
        OutputFormat::Json => {
            let items: Vec<_> = secrets.iter().map(|s| s.to_secret()).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&list).expect("a Secret serializes")
            )
        }
    }
}

fn yaml(secret: &DesiredSecret) -> String {
    serde_yaml_ng::to_string(&secret.to_secret()).expect("a Secret serializes")
}

/// Writes `DIR/NAMESPACE/NAME.yaml` (or `.json`) per Secret, readable by the
/// owner only, each replaced atomically. Returns the paths written.
pub fn write_out_dir(
    dir: &Path,
    secrets: &[DesiredSecret],
    format: OutputFormat,
) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for secret in secrets {
        let (extension, text) = match format {
            OutputFormat::Yaml => ("yaml", yaml(secret)),
            OutputFormat::Json => (
                "json",
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&secret.to_secret()).expect("a Secret serializes")
                ),
            ),
        };
        let path = dir
            .join(&secret.namespace)
            .join(format!("{}.{extension}", secret.name));
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Writes to a temporary file beside `path` (mode 0600), then renames it over.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("an output path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(".secretsync-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
