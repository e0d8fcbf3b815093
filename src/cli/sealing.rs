//! `keygen`, `seal`, `unseal` and `reseal`: files and flags in, the library's
//! sealing (`secretsync::sealed::manifest`) out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use secretsync::SecretValue;
use secretsync::api::BitnamiSealedSecret;
use secretsync::api::SealedScope;
use secretsync::render::OutputFormat;
use secretsync::sealed::bitnami;
use secretsync::sealed::keys::BoxedIdentity;
use secretsync::sealed::manifest::{self as sealing, SealTarget};
use secretsync::sealed::{self, Binding};
use secretsync::template::RenderLimits;

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Strict,
    NamespaceWide,
    ClusterWide,
}

/// How the sealing commands print what they make: the same formats as
/// `render`, worded for one object or several.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// YAML, documents separated by `---`.
    Yaml,
    /// JSON: one object, or a `v1` `List` when there are several.
    Json,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Yaml => Self::Yaml,
            Format::Json => Self::Json,
        }
    }
}

/// Sealing is synchronous work on one thread: the global `--worker-threads`
/// (sized for the controller's watches and requests) means nothing here. It
/// is still accepted, for scripts and environments that give it to every
/// command, but kept out of these commands' help, which it would only muddle.
#[derive(clap::Args)]
struct NoWorkerThreads {
    #[arg(
        long = "worker-threads",
        id = "worker_threads",
        hide = true,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    _worker_threads: Option<u16>,
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
    /// Where to write the new identity (mode 0600; an existing file is never
    /// overwritten). Its recipient goes to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    _threads: NoWorkerThreads,
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
    /// What the sealed values are bound to: strict (namespace and name),
    /// namespace-wide (namespace only) or cluster-wide (anywhere).
    #[arg(long, value_enum, default_value_t = ScopeArg::Strict)]
    scope: ScopeArg,
    /// How to print the SealedSecret.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    output: Format,
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
    #[command(flatten)]
    _threads: NoWorkerThreads,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("keys").required(true).args(["identities", "bitnami_keys"]))]
pub struct UnsealArgs {
    /// The SealedSecret manifest (default: stdin).
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// An identity file: age (AGE-SECRET-KEY-1...) or SSH private key (repeatable).
    #[arg(short = 'i', long = "identity")]
    identities: Vec<PathBuf>,
    /// Decrypt Bitnami SealedSecrets (`bitnami.com/v1alpha1`) instead, as
    /// `kubeseal --recovery-unseal --recovery-private-key` does, with the old
    /// controller's keys: what `kubectl get secret -n kube-system -l
    /// sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` exports, a Secret,
    /// or PEM (repeatable). Prints the Secret of every Bitnami SealedSecret in
    /// the input (values base64 in `data`).
    #[arg(long = "bitnami-key", value_name = "KEYFILE")]
    bitnami_keys: Vec<PathBuf>,
    /// How to print the decrypted Secret(s).
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    output: Format,
    #[command(flatten)]
    _threads: NoWorkerThreads,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("keys").required(true).args(["identities", "from_bitnami"]))]
pub struct ResealArgs {
    /// The SealedSecret manifest to re-encrypt.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// An identity file that decrypts the current values: age
    /// (AGE-SECRET-KEY-1...) or SSH private key (repeatable).
    #[arg(short = 'i', long = "identity")]
    identities: Vec<PathBuf>,
    /// Move off Bitnami Sealed Secrets: turn every `bitnami.com/v1alpha1`
    /// SealedSecret of FILE into secretsync's age SealedSecret for the given
    /// recipients, decrypting with the old controller's keys (the exported
    /// List of Secrets, a Secret or PEM; repeatable). Other documents of FILE
    /// are passed through unchanged. Nothing is written unless every value of
    /// every document decrypts.
    #[arg(long = "from-bitnami", value_name = "KEYFILE")]
    from_bitnami: Vec<PathBuf>,
    /// A new recipient: age1..., ssh-ed25519 ..., ssh-rsa ... (repeatable).
    /// The values are sealed to exactly the recipients given.
    #[arg(short = 'r', long = "recipient")]
    recipients: Vec<String>,
    /// A file of new recipients, one a line (repeatable).
    #[arg(short = 'R', long = "recipients-file")]
    recipients_files: Vec<PathBuf>,
    /// Write the result back to the file instead of stdout.
    #[arg(long)]
    in_place: bool,
    /// How to print (or, with --in-place, write) the SealedSecret(s).
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    output: Format,
    #[command(flatten)]
    _threads: NoWorkerThreads,
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
    let text = print(&result, args.output.into());
    match &args.merge_into {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => write_stdout(&text),
    }
}

pub fn unseal(args: UnsealArgs) -> Result<(), String> {
    let UnsealArgs {
        file,
        identities: identity_files,
        bitnami_keys,
        output,
        ..
    } = args;
    let output = OutputFormat::from(output);
    let source = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "stdin".into());
    let contents = text(read_input(file.as_deref())?, &source)?;
    if !bitnami_keys.is_empty() {
        return unseal_bitnami(&contents, &source, &bitnami_keys, output);
    }
    let sealed = sealing::parse_sealed(&contents, &source).map_err(|e| e.0)?;
    let secret = sealing::unseal_all(
        &sealed,
        &identities(&identity_files)?,
        &RenderLimits::default(),
    )
    .map_err(|e| e.0)?;
    admitted(&secret, &source)?;
    write_stdout(&print(&secret, output))
}

pub fn reseal(args: ResealArgs) -> Result<(), String> {
    let ResealArgs {
        file,
        identities: identity_files,
        from_bitnami,
        recipients: recipients_given,
        recipients_files,
        in_place,
        output,
        ..
    } = args;
    let output = OutputFormat::from(output);
    let file = file.as_path();
    let source = file.display().to_string();
    let contents = std::fs::read_to_string(file).map_err(|e| format!("{source}: {e}"))?;
    if !from_bitnami.is_empty() {
        let recipients = recipients(recipients_given, &recipients_files)?;
        let text = reseal_bitnami(&contents, &source, &from_bitnami, recipients, output)?;
        return if in_place {
            std::fs::write(file, text).map_err(|e| format!("{source}: {e}"))
        } else {
            write_stdout(&text)
        };
    }
    let sealed = sealing::parse_sealed(&contents, &source).map_err(|e| e.0)?;
    let identities = identities(&identity_files)?;
    let recipients = recipients(recipients_given, &recipients_files)?;
    // Every value must decrypt, whatever happens next: a reseal never loses one.
    let values = sealing::decrypt_all(&sealed, &identities).map_err(|e| e.0)?;
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
        sealing::seal_values(&values, &target, None, Some(fresh), &[]).map_err(|e| e.0)?
    };
    let text = print(&result, output);
    if in_place {
        std::fs::write(file, text).map_err(|e| format!("{source}: {e}"))
    } else {
        write_stdout(&text)
    }
}

// --- Bitnami Sealed Secrets ------------------------------------------------

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    _threads: NoWorkerThreads,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Bring the Bitnami Sealed Secrets controller's keys over, so that
    /// secretsync (`controller --bitnami-compat`) decrypts the
    /// `bitnami.com/v1alpha1` SealedSecrets already in Git.
    ///
    /// 1. Export the keys from the cluster the old controller runs in
    ///    (every key: the first one and each renewed one):
    ///    `kubectl get secret -n kube-system -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml > main.key`
    ///
    /// 2. Check them, and that they open your sealed manifests:
    ///    `secretsync keys import-bitnami -f main.key --check apps/*/sealed-secret.yaml > /dev/null`
    ///    (stderr shows each key: where it came from, its size, its
    ///    certificate's validity and its fingerprint; then each document OK
    ///    or the fields that do not decrypt).
    ///
    /// 3. Import them into secretsync's namespace:
    ///    `secretsync keys import-bitnami -f main.key | kubectl apply -f -`
    ///    (Secrets of type kubernetes.io/tls, same names, labelled
    ///    `sealedsecrets.bitnami.com/sealed-secrets-key: active`; uid,
    ///    resourceVersion, creationTimestamp, ownerReferences and
    ///    managedFields left out).
    ///
    /// 4. Delete main.key (`shred -u main.key`): it holds private keys.
    ///
    /// PEM files (`kubeseal --recovery-private-key` style) work too; a key
    /// that comes without a certificate gets a self-signed one. With
    /// `--check`, nothing is printed on stdout unless every document
    /// decrypts, so a failed check applies nothing; the exit code is 1.
    ImportBitnami(ImportBitnamiArgs),
}

#[derive(clap::Args)]
pub struct ImportBitnamiArgs {
    /// What was exported from the old controller: the List of Secrets
    /// (`kubectl get secret ... -o yaml`), a Secret, or PEM (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "EXPORTED_FILE"
    )]
    files: Vec<PathBuf>,
    /// The namespace the Secrets are written for: secretsync's.
    #[arg(long, default_value = "secretsync")]
    namespace: String,
    /// Bitnami SealedSecret files to try the keys on (repeatable).
    #[arg(long = "check", value_name = "SEALED_FILE", num_args = 1..)]
    check: Vec<PathBuf>,
    #[command(flatten)]
    _threads: NoWorkerThreads,
}

pub fn keys(args: KeysArgs) -> Result<(), String> {
    match args.command {
        KeysCommand::ImportBitnami(args) => import_bitnami(args),
    }
}

/// Every key of every file, and the files' names for messages.
fn bitnami_ring(files: &[PathBuf]) -> Result<(bitnami::KeyRing, String), String> {
    let mut keys = Vec::new();
    for file in files {
        let contents = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        keys.extend(
            bitnami::parse_keys(&contents, &file.display().to_string())
                .map_err(|e| e.to_string())?,
        );
    }
    let names = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((bitnami::KeyRing::new(keys), names))
}

/// The documents of a (multi-document) YAML text, each as written.
fn documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            documents.push(String::new());
        } else {
            documents.last_mut().expect("one at least").push_str(line);
        }
    }
    documents
        .into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// One document of an input: its place, and what it is.
struct Document {
    label: String,
    text: String,
    bitnami: Option<BitnamiSealedSecret>,
}

fn read_documents(contents: &str, source: &str) -> Result<Vec<Document>, String> {
    documents(contents)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let place = format!("{source}, document {}", i + 1);
            // Read as `render` reads documents: a key twice is an error.
            let value =
                secretsync::render::yaml_document(&text).map_err(|e| format!("{place}: {e}"))?;
            let bitnami = if bitnami::is_bitnami_sealed_secret(&value) {
                let name = format!(
                    "{}/{}",
                    value["metadata"]["namespace"].as_str().unwrap_or(""),
                    value["metadata"]["name"].as_str().unwrap_or("")
                );
                let sealed: BitnamiSealedSecret = secretsync::api::from_json(value)
                    .map_err(|e| format!("{place} (SealedSecret {name}): {e}"))?;
                Some(sealed)
            } else {
                None
            };
            let label = match &bitnami {
                Some(s) => format!(
                    "{place} (SealedSecret {}/{})",
                    s.metadata.namespace.as_deref().unwrap_or(""),
                    s.metadata.name.as_deref().unwrap_or("")
                ),
                None => place,
            };
            Ok(Document {
                label,
                text,
                bitnami,
            })
        })
        .collect()
}

/// The failing fields of one document, one line each, with the key files.
fn field_errors(label: &str, failure: &bitnami::UnsealFailure, key_files: &str) -> Vec<String> {
    failure
        .fields()
        .iter()
        .map(|(field, message)| format!("{label}: {field}: {message} [keys from {key_files}]"))
        .collect()
}

fn print_all(objects: &[serde_json::Value], format: OutputFormat) -> String {
    match format {
        OutputFormat::Yaml => objects
            .iter()
            .map(|o| print(o, format))
            .collect::<Vec<_>>()
            .join("---\n"),
        OutputFormat::Json if objects.len() == 1 => print(&objects[0], format),
        OutputFormat::Json => print(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            format,
        ),
    }
}

/// The checks `render` applies to the Secrets it prints (the API server's
/// own rules): a printed Secret that `kubectl apply` would refuse helps no one.
fn admitted(secret: &k8s_openapi::api::core::v1::Secret, source: &str) -> Result<(), String> {
    secretsync::sync::admission::check_secret(secret).map_err(|errors| {
        format!(
            "{source}: the Secret {}/{} would be refused by the API server: {errors}",
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

fn unseal_bitnami(
    contents: &str,
    source: &str,
    key_files: &[PathBuf],
    output: OutputFormat,
) -> Result<(), String> {
    let (ring, key_names) = bitnami_ring(key_files)?;
    let mut secrets = Vec::new();
    let mut errors = Vec::new();
    for document in read_documents(contents, source)? {
        let Some(sealed) = &document.bitnami else {
            eprintln!(
                "{}: not a Bitnami SealedSecret (bitnami.com/v1alpha1): skipped",
                document.label
            );
            continue;
        };
        match bitnami::unseal(sealed, &ring, &RenderLimits::default()) {
            Ok(secret) => match admitted(&secret, &document.label) {
                Ok(()) => secrets.push(serde_json::to_value(&secret).expect("serializes")),
                Err(refused) => errors.push(refused),
            },
            Err(failure) => errors.extend(field_errors(&document.label, &failure, &key_names)),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if secrets.is_empty() {
        return Err(format!(
            "{source}: no Bitnami SealedSecret (bitnami.com/v1alpha1) in it"
        ));
    }
    let secrets: Vec<serde_json::Value> = secrets
        .into_iter()
        .map(|mut s| {
            if let Some(object) = s.as_object_mut() {
                object.insert("apiVersion".into(), "v1".into());
                object.insert("kind".into(), "Secret".into());
            }
            s
        })
        .collect();
    write_stdout(&print_all(&secrets, output))
}

fn reseal_bitnami(
    contents: &str,
    source: &str,
    key_files: &[PathBuf],
    recipients: Vec<String>,
    output: OutputFormat,
) -> Result<String, String> {
    let (ring, key_names) = bitnami_ring(key_files)?;
    let documents = read_documents(contents, source)?;
    let mut converted = Vec::new();
    let mut errors = Vec::new();
    for document in &documents {
        let Some(sealed) = &document.bitnami else {
            converted.push(None);
            continue;
        };
        match bitnami::to_age(sealed, &ring, recipients.clone()) {
            Ok(result) => {
                for warning in &result.warnings {
                    eprintln!("warning: {}: {warning}", document.label);
                }
                converted.push(Some(result.sealed));
            }
            Err(bitnami::ConvertError::Unseal(failure)) => {
                errors.extend(field_errors(&document.label, &failure, &key_names));
                converted.push(None);
            }
            Err(bitnami::ConvertError::Seal(e)) => {
                errors.push(format!("{}: {e}", document.label));
                converted.push(None);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if documents.iter().all(|d| d.bitnami.is_none()) {
        return Err(format!(
            "{source}: no Bitnami SealedSecret (bitnami.com/v1alpha1) in it"
        ));
    }
    Ok(match output {
        OutputFormat::Yaml => documents
            .iter()
            .zip(&converted)
            .map(|(document, sealed)| match sealed {
                Some(sealed) => print(sealed, output),
                None => document.text.clone(),
            })
            .collect::<Vec<_>>()
            .join("---\n"),
        OutputFormat::Json => {
            let objects = documents
                .iter()
                .zip(&converted)
                .map(|(document, sealed)| match sealed {
                    Some(sealed) => serde_json::to_value(sealed).expect("serializes"),
                    None => serde_yaml_ng::from_str(&document.text).expect("parsed before"),
                })
                .collect::<Vec<_>>();
            print_all(&objects, output)
        }
    })
}

fn import_bitnami(args: ImportBitnamiArgs) -> Result<(), String> {
    let (ring, key_names) = bitnami_ring(&args.files)?;
    let mut manifests = Vec::new();
    for key in ring.keys() {
        let validity = match key.certificate_pem().map(bitnami::certificate_validity) {
            Some(Some((from, to))) => format!("certificate valid {from} to {to}"),
            Some(None) => "tls.crt is not a readable certificate".to_string(),
            None => "no certificate (a self-signed one is made)".to_string(),
        };
        eprintln!(
            "{}: RSA {} bits, {validity}, {}",
            key.source,
            key.bits(),
            key.fingerprint()
        );
        let secret = bitnami::key_secret(key, &args.namespace).map_err(|e| e.to_string())?;
        let mut value = serde_json::to_value(&secret).expect("serializes");
        if let Some(object) = value.as_object_mut() {
            object.insert("apiVersion".into(), "v1".into());
            object.insert("kind".into(), "Secret".into());
        }
        manifests.push(value);
    }
    let mut failed = 0;
    for file in &args.check {
        let source = file.display().to_string();
        let contents = std::fs::read_to_string(file).map_err(|e| format!("{source}: {e}"))?;
        let documents = read_documents(&contents, &source)?;
        if documents.iter().all(|d| d.bitnami.is_none()) {
            eprintln!("{source}: FAILED: no Bitnami SealedSecret (bitnami.com/v1alpha1) in it");
            failed += 1;
        }
        for document in documents {
            let Some(sealed) = &document.bitnami else {
                continue;
            };
            match bitnami::unseal(sealed, &ring, &RenderLimits::default()) {
                Ok(_) => eprintln!("{}: OK", document.label),
                Err(failure) => {
                    failed += 1;
                    for line in field_errors(&document.label, &failure, &key_names) {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} sealed {} did not decrypt with the keys of {key_names}: nothing printed",
            if failed == 1 { "manifest" } else { "manifests" }
        ));
    }
    write_stdout(&print_all(&manifests, OutputFormat::Yaml))
}
