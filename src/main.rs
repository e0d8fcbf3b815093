//! The `secretsync` command: one binary, one subcommand per mode (see `cli/`).

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format);
    cli.command.run().await
}
