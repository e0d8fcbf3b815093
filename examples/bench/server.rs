//! The fake API server on a runtime and threads of its own (`apiserver-N`),
//! apart from the bench's tracker and clients: the bench process's CPU then
//! splits into the server's and the bench's own (`measure::threads_cpu_seconds`).

use crate::support::apiserver::FakeApiServer;

/// The name its threads start with.
pub const THREADS: &str = "apiserver";

/// The server's runtime; stopped without waiting when dropped (a runtime
/// cannot be dropped inside another's async context).
pub struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts the server, keeping `history` changes for watches, on two threads of its own.
pub async fn start(history: usize) -> Result<(FakeApiServer, ServerRuntime), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("the fake API server's runtime: {e}"))?;
    let server = runtime
        .spawn(FakeApiServer::start_with_history(history))
        .await
        .map_err(|e| format!("starting the fake API server: {e}"))?;
    Ok((server, ServerRuntime(Some(runtime))))
}
