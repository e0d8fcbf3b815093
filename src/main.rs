//! The `secretsync` command: one binary, one subcommand per mode (see `cli/`).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before the runtime starts its threads.
    secretsync::controller::memory::use_one_arena();
    run()
}

#[tokio::main]
async fn run() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(cli.log_format);
    cli.command.run().await
}
