//! `keygen`, `seal`, `unseal` and `reseal`: files and flags in, the library's
//! sealing (`secretsync::sealed::manifest`) out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use secretsync::SecretValue;
use secretsync::api::SealedScope;
use secretsync::render::OutputFormat;
use secretsync::sealed::keys::BoxedIdentity;
use secretsync::sealed::manifest::{self as sealing, SealTarget};
use secretsync::sealed::{self, Binding};

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl From<ScopeArg> for SealedScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Strict => Self::Strict,
            ScopeArg::NamespaceWide => Self::NamespaceWide,
            ScopeArg::ClusterWide => Self::ClusterWide,
        }
    }
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct SealArgs {
    /// The Secret manifest (default: stdin); with --raw, the value.
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// A recipient: age1..., ssh-ed25519 ..., ssh-rsa ... (repeatable).
    #[arg(short = 'r', long = "recipient")]
    recipients: Vec<String>,
    /// A file of recipients, one a line (repeatable).
    #[arg(short = 'R', long = "recipients-file")]
    recipients_files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ScopeArg::Strict)]
    scope: ScopeArg,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
    /// Seal one value (from -f or stdin) and print only its envelope.
    #[arg(long, requires = "key")]
    raw: bool,
    /// With --raw: the SealedSecret's name (strict scope).
    #[arg(long)]
    name: Option<String>,
    /// With --raw: its namespace (strict and namespace-wide scopes).
    #[arg(long)]
    namespace: Option<String>,
    /// With --raw: the Secret key.
    #[arg(long)]
    key: Option<String>,
    /// Add or replace these keys in an existing SealedSecret file, in place.
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    merge_into: Option<PathBuf>,
    /// With --merge-into: identities that show which values are unchanged
    /// (their ciphertext is then kept byte for byte).
    #[arg(short = 'i', long = "identity")]
    identities: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct UnsealArgs {
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// An identity file: age (AGE-SECRET-KEY-1...) or SSH private key (repeatable).
    #[arg(short = 'i', long = "identity", required = true)]
    identities: Vec<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

#[derive(clap::Args)]
pub struct ResealArgs {
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    #[arg(short = 'i', long = "identity", required = true)]
    identities: Vec<PathBuf>,
    #[arg(short = 'r', long = "recipient")]
    recipients: Vec<String>,
    #[arg(short = 'R', long = "recipients-file")]
    recipients_files: Vec<PathBuf>,
    /// Write the result back to the file instead of stdout.
    #[arg(long)]
    in_place: bool,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>, String> {
    match file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .map_err(|e| format!("stdin: {e}"))?;
            Ok(input)
        }
    }
}

fn text(bytes: Vec<u8>, source: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{source}: not UTF-8 text"))
}

fn recipients(given: Vec<String>, files: &[PathBuf]) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    for recipient in given {
        sealed::parse_recipient(&recipient).map_err(|e| e.to_string())?;
        all.push(recipient.trim().to_string());
    }
    for file in files {
        let contents =
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed =
            sealed::parse_recipients(&contents).map_err(|e| format!("{}: {e}", file.display()))?;
        all.extend(parsed.into_iter().map(|(text, _)| text));
    }
    if all.is_empty() {
        return Err("no recipients: give --recipient or --recipients-file".into());
    }
    Ok(all)
}

fn identities(files: &[PathBuf]) -> Result<Vec<BoxedIdentity>, String> {
    let mut all = Vec::new();
    for file in files {
        let contents =
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        all.extend(
            sealed::parse_identities(&contents, &file.display().to_string())
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(all)
}

fn print(value: &impl serde::Serialize, format: OutputFormat) -> String {
    match format {
        OutputFormat::Yaml => serde_yaml_ng::to_string(value).expect("serializes"),
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(value).expect("serializes")
        ),
    }
}

fn write_stdout(text: &str) -> Result<(), String> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("stdout: {e}"))
}

/// Writes `text` with mode 0600 (an identity is a secret).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn keygen(args: KeygenArgs) -> Result<(), String> {
    let (identity, recipient) = sealed::generate_identity();
    write_private(&args.output, &identity)?;
    write_stdout(&format!("{recipient}\n"))
}

pub fn seal(args: SealArgs) -> Result<(), String> {
    let scope = SealedScope::from(args.scope);
    let recipients = recipients(args.recipients, &args.recipients_files)?;
    let input = read_input(args.file.as_deref())?;
    let source = args
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    if args.raw {
        let key = args.key.expect("clap requires --key with --raw");
        let need = |flag: &str, value: &Option<String>| {
            value
                .clone()
                .ok_or_else(|| format!("--raw with --scope {} needs --{flag}", scope.as_str()))
        };
        let namespace = match scope {
            SealedScope::ClusterWide => String::new(),
            _ => need("namespace", &args.namespace)?,
        };
        let name = match scope {
            SealedScope::Strict => need("name", &args.name)?,
            _ => String::new(),
        };
        let parsed: Vec<_> = recipients
            .iter()
            .map(|r| sealed::parse_recipient(r).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let binding = Binding {
            scope,
            namespace,
            name,
            key,
        };
        let envelope =
            sealed::seal(&SecretValue::new(input), &binding, &parsed).map_err(|e| e.to_string())?;
        return write_stdout(&envelope);
    }
    let secret = sealing::parse_secret(&text(input, &source)?, &source).map_err(|e| e.0)?;
    let existing = match &args.merge_into {
        Some(path) => {
            let contents =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(sealing::parse_sealed(&contents, &path.display().to_string()).map_err(|e| e.0)?)
        }
        None => None,
    };
    let name = existing
        .as_ref()
        .and_then(|s| s.metadata.name.clone())
        .or(secret.metadata.name.clone())
        .ok_or_else(|| format!("{source}: metadata.name is required"))?;
    let namespace = existing
        .as_ref()
        .and_then(|s| s.metadata.namespace.clone())
        .or(secret.metadata.namespace.clone())
        .or(args.namespace.clone())
        .ok_or_else(|| format!("{source}: metadata.namespace is required (or give --namespace)"))?;
    let target = SealTarget {
        name,
        namespace,
        scope,
        recipients,
    };
    let identities = identities(&args.identities)?;
    let values = sealing::secret_values(&secret);
    let result = sealing::seal_values(
        &values,
        &target,
        sealing::template_of(&secret),
        existing,
        &identities,
    )
    .map_err(|e| e.0)?;
    let text = print(&result, args.output);
    match &args.merge_into {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => write_stdout(&text),
    }
}

pub fn unseal(args: UnsealArgs) -> Result<(), String> {
    let UnsealArgs {
        file,
        identities: identity_files,
        output,
    } = args;
    let source = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    let contents = text(read_input(file.as_deref())?, &source)?;
    let sealed = sealing::parse_sealed(&contents, &source).map_err(|e| e.0)?;
    let secret = sealing::unseal_all(&sealed, &identities(&identity_files)?).map_err(|e| e.0)?;
    write_stdout(&print(&secret, output))
}

pub fn reseal(args: ResealArgs) -> Result<(), String> {
    let ResealArgs {
        file,
        identities: identity_files,
        recipients: recipients_given,
        recipients_files,
        in_place,
        output,
    } = args;
    let file = file.as_path();
    let source = file.display().to_string();
    let contents = std::fs::read_to_string(file).map_err(|e| format!("{source}: {e}"))?;
    let sealed = sealing::parse_sealed(&contents, &source).map_err(|e| e.0)?;
    let identities = identities(&identity_files)?;
    let recipients = recipients(recipients_given, &recipients_files)?;
    // Every value must decrypt, whatever happens next: a reseal never loses one.
    let plain = sealing::unseal_all(&sealed, &identities).map_err(|e| e.0)?;
    let result = if sealed.spec.recipients == recipients {
        sealed
    } else {
        let target = SealTarget {
            name: sealed.metadata.name.clone().unwrap_or_default(),
            namespace: sealed.metadata.namespace.clone().unwrap_or_default(),
            scope: sealed.spec.scope,
            recipients,
        };
        let mut fresh = sealed.clone();
        fresh.spec.encrypted_data.clear();
        fresh.spec.recipients.clear();
        sealing::seal_values(
            &sealing::secret_values(&plain),
            &target,
            None,
            Some(fresh),
            &[],
        )
        .map_err(|e| e.0)?
    };
    let text = print(&result, output);
    if in_place {
        std::fs::write(file, text).map_err(|e| format!("{source}: {e}"))
    } else {
        write_stdout(&text)
    }
}
