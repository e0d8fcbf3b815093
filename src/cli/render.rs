//! `secretsync render`: manifests in, Secret manifests out, no cluster.

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
    let duration: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("{e} (a Go duration such as 5s or 1m30s)"))?;
    if duration.is_negative() {
        return Err("must not be negative".into());
    }
    let duration = std::time::Duration::from(duration);
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
    #[arg(short, long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    templates: TemplateLimitArgs,
}

pub async fn run(args: Args) -> ExitCode {
    let rendered = render::render(
        &args.files,
        &args.namespace,
        Default::default(),
        &args.templates.limits(),
    )
    .await;
    let mut ok = rendered.errors.is_empty();
    match &args.out_dir {
        None => {
            let text = render::to_stdout_text(&rendered.secrets, args.output);
            if std::io::stdout().write_all(text.as_bytes()).is_err() {
                ok = false;
            }
        }
        Some(dir) => match render::write_out_dir(dir, &rendered.secrets, args.output) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => {
                eprintln!("error: writing into {}: {e}", dir.display());
                ok = false;
            }
        },
    }
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    for error in &rendered.errors {
        eprintln!("error: {error}");
    }
    if !rendered.errors.is_empty() {
        eprintln!(
            "{} Secret(s) rendered, {} error(s)",
            rendered.secrets.len(),
            rendered.errors.len()
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
