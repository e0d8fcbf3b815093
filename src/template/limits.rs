//! How much one object's templates may spend: a deadline and an output cap,
//! enforced inside the engine (checked before every function call, every few
//! loop iterations and on every write), so a runaway template stops itself
//! rather than holding a thread.

use std::time::{Duration, Instant};

/// Limits for rendering every template of one object (an ExternalSecret's data,
/// labels, annotations, `templateFrom` and key rewrites, or a SealedSecret's
/// template), shared by all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderLimits {
    /// Wall-clock time all of one object's templates may take together.
    ///
    /// Default 5 s. Real templates render in microseconds; the slowest legitimate
    /// functions (`genPrivateKey "rsa"`, `bcrypt`/`htpasswd`) take well under a
    /// second each, so a handful of them fits with room for a loaded node, while a
    /// template that loops over expensive calls stops after 5 s of one thread.
    pub timeout: Duration,
    /// Bytes all of one object's templates may write together.
    ///
    /// Default 2 MiB: twice the 1 MiB the API server allows a Secret's data, so no
    /// Secret that could be written is refused (a `KeysAndValues` template writes
    /// YAML around its values), while a template that multiplies its input stops
    /// there instead of growing until memory runs out.
    pub max_output: usize,
}

impl RenderLimits {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_OUTPUT: usize = 2 * 1024 * 1024;

    /// Starts the clock for one object.
    pub fn start(&self) -> Budget {
        Budget {
            limits: *self,
            deadline: Instant::now().checked_add(self.timeout),
            output_left: self.max_output,
        }
    }
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            max_output: Self::DEFAULT_MAX_OUTPUT,
        }
    }
}

/// What is left of one object's [`RenderLimits`] while its templates render.
#[derive(Clone, Debug)]
pub struct Budget {
    limits: RenderLimits,
    /// `None` when the timeout is too far off for the clock to represent.
    deadline: Option<Instant>,
    output_left: usize,
}

impl Budget {
    /// No deadline, and only the engine's own output cap (64 MiB), which keeps
    /// memory bounded: for templates the program wrote itself, and tests.
    pub fn unlimited() -> Self {
        RenderLimits {
            timeout: Duration::MAX,
            max_output: 64 * 1024 * 1024,
        }
        .start()
    }

    pub fn limits(&self) -> RenderLimits {
        self.limits
    }

    /// Time left before the deadline; `None` when there is no deadline.
    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn output_left(&self) -> usize {
        self.output_left
    }

    pub(crate) fn spend_output(&mut self, bytes: usize) {
        self.output_left = self.output_left.saturating_sub(bytes);
    }
}
