//! The `secretsync` command: one binary, one subcommand per mode (see `cli/`).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before the runtime starts its threads.
    secretsync::controller::memory::use_one_arena();
    // A panic's message may hold a value: only compile-time text is shown.
    secretsync::panic_hook::install();
    let cli = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.worker_threads.into())
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("secretsync: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        cli::init_logging(cli.log_format);
        // On a worker, not on this thread: a future polled by `block_on` here
        // runs apart from the workers that drive its sockets and timers, so
        // every request and answer would cost a wake-up across threads.
        match tokio::spawn(cli.command.run()).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!(
                    "secretsync: {}",
                    if e.is_panic() {
                        "panicked"
                    } else {
                        "cancelled"
                    }
                );
                ExitCode::FAILURE
            }
        }
    })
}
