//! Rendering is CPU work (bcrypt, RSA key generation, loops), so the controller
//! runs it on tokio's blocking threads, a bounded number at a time, never on the
//! async workers that serve watches and health checks.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Runs CPU-heavy work (a sync step that renders templates) off the async
/// runtime, at most `concurrency` at once.
#[derive(Clone, Debug)]
pub struct RenderPool {
    permits: Arc<Semaphore>,
}

/// The work did not finish: it panicked, or the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("rendering stopped unexpectedly")]
pub struct RenderPoolError;

impl RenderPool {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Sized to the machine: one render per core, at least two.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(cores.max(2))
    }

    /// Runs `work` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, work: F) -> Result<T, RenderPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RenderPoolError)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| RenderPoolError)
    }
}

impl Default for RenderPool {
    fn default() -> Self {
        Self::for_this_machine()
    }
}
