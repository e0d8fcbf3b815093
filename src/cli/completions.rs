//! How shells and kubectl reach the binary: `secretsync completions SHELL`
//! prints a completion script (clap_complete), and a `kubectl-secretsync`
//! name (a symlink or copy on PATH) makes it a kubectl plugin, `kubectl
//! secretsync status`, with the same commands and flags.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// The name kubectl looks for on PATH to run `kubectl secretsync ...`.
pub const PLUGIN_NAME: &str = "kubectl-secretsync";

#[derive(clap::Args)]
pub struct Args {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Prints the script on stdout, e.g. `secretsync completions bash >
/// ~/.local/share/bash-completion/completions/secretsync`.
pub fn run(args: Args) -> ExitCode {
    let mut command = super::Cli::command();
    // Into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "secretsync", &mut script);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the script: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line; run as `kubectl-secretsync`, help and errors
/// name the command as the user typed it (`kubectl secretsync`).
pub fn parse() -> super::Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked = args
        .first()
        .and_then(|first| Path::new(first).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_string();
    let mut command = super::Cli::command();
    if invoked == PLUGIN_NAME {
        command = command.bin_name("kubectl secretsync");
    }
    let matches = command.get_matches_from(args);
    super::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
