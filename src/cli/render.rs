//! `secretsync render`: manifests in, Secret manifests out, no cluster.
//!
//! Exit codes: 0 when every ExternalSecret rendered (or deliberately wrote
//! nothing) and no input was bad; 1 when anything was bad or failed, or there
//! was nothing to render (the Secrets that could be built are still printed
//! or written); 2 for a usage error (flags).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use secretsync::render::{self, OutputFormat};
use secretsync::template::RenderLimits;

/// `--template-timeout` and `--template-max-output`, shared by `render` and
/// `controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct TemplateLimitArgs {
    /// Time all templates of one object may take together, as a Go duration
    /// (`5s`, `1m30s`); a template still running then fails its object alone.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    template_timeout: std::time::Duration,
    /// Bytes all templates of one object may write together.
    #[arg(long, value_name = "BYTES", default_value_t = RenderLimits::DEFAULT_MAX_OUTPUT)]
    template_max_output: usize,
}

impl TemplateLimitArgs {
    pub fn limits(&self) -> RenderLimits {
        RenderLimits {
            timeout: self.template_timeout,
            max_output: self.template_max_output,
        }
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration = super::go_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

#[derive(clap::Args)]
pub struct Args {
    /// A manifest file or a directory (read recursively); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
    /// Write one file per Secret (DIR/NAMESPACE/NAME.yaml, mode 0600) instead of stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Namespace for objects that do not name one.
    #[arg(short, long, default_value = "default", value_parser = namespace)]
    namespace: String,
    #[command(flatten)]
    templates: TemplateLimitArgs,
}

fn namespace(text: &str) -> Result<String, String> {
    match secretsync::api::dns_label_problem(text) {
        None => Ok(text.to_string()),
        Some(problem) => Err(format!("not a valid namespace: it {problem}")),
    }
}

pub async fn run(args: Args) -> ExitCode {
    let rendered = render::render(
        &args.files,
        &args.namespace,
        Default::default(),
        &args.templates.limits(),
    )
    .await;
    let mut failures = Vec::new();
    let delivered = match &args.out_dir {
        None => match render::to_stdout_text(&rendered.secrets, args.output) {
            Ok(text) => match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) => rendered.secrets.len(),
                Err(e) => {
                    failures.push(format!("writing to stdout: {e}"));
                    0
                }
            },
            Err(message) => {
                failures.push(message);
                0
            }
        },
        Some(dir) => {
            let (paths, errors) = render::write_out_dir(dir, &rendered.secrets, args.output);
            paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display()));
            failures.extend(errors);
            paths.len()
        }
    };
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    for error in &rendered.errors {
        eprintln!("error: {error}");
    }
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    let error_count = rendered.errors.len() + failures.len();
    if error_count > 0 {
        eprintln!("{delivered} Secret(s) rendered, {error_count} error(s)");
        ExitCode::FAILURE
    } else {
        if delivered == 0 {
            eprintln!("note: no Secret rendered");
        }
        ExitCode::SUCCESS
    }
}
