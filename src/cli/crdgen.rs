//! `secretsync crdgen`: prints the CRDs (what `crds/` holds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Write one file per CRD into DIR (ESO-compatible ones into DIR/compat) instead of stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let crds = secretsync::api::crds();
    let result = match args.out_dir {
        None => {
            let text: String = crds
                .iter()
                .map(|crd| {
                    format!(
                        "---\n{}",
                        serde_yaml_ng::to_string(crd).expect("a CRD serializes")
                    )
                })
                .collect();
            std::io::stdout().write_all(text.as_bytes())
        }
        Some(dir) => {
            let mut compat = secretsync::api::eso_compat_crds();
            compat.extend(secretsync::api::eso_compat_push_crds());
            compat.extend(secretsync::api::eso_compat_generator_crds());
            compat.extend(secretsync::api::bitnami_compat_crds());
            let files = crds
                .iter()
                .map(|crd| (dir.clone(), crd))
                .chain(compat.iter().map(|crd| (dir.join("compat"), crd)));
            files.into_iter().try_for_each(|(dir, crd)| {
                let name = crd.metadata.name.as_deref().expect("a CRD has a name");
                let text = serde_yaml_ng::to_string(crd).expect("a CRD serializes");
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join(format!("{name}.yaml")), text)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
