//! Which log events are let through, whatever `RUST_LOG` says.
//!
//! Our own code logs values only as [`crate::SecretValue`], which prints a
//! redaction. Two dependencies log text they received instead:
//! `kube_client::client` logs the whole answer of the API server when it
//! cannot decode it (`warn`), and answers it does decode at `trace`; for a
//! Secret that text is the Secret, values and all. `kube_runtime::watcher`
//! logs a failed watch's error with `debug`, and a decoding error's message
//! can quote the field that did not fit. Both are capped here whatever
//! `RUST_LOG` says: its directives are read first and the caps added after
//! (a module's own directive wins over a broader one), and a filter in front
//! of every layer vetoes the capped events even where a span-scoped
//! directive (`RUST_LOG=[reconcile]=trace`) would let them through. What is
//! lost is little: the client's `error` events (a failed connection, a status
//! code) still pass, the watcher's `warn` events (a 403) too, and every failed
//! request comes back to our code as an error, which says what failed without
//! quoting the answer (see `controller::external_secret::kube_error`).

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The capped modules, each with the most verbose level it may log at.
const CAPS: [(&str, Level); 2] = [
    ("kube_client::client", Level::ERROR),
    ("kube_runtime::watcher", Level::WARN),
];

/// `RUST_LOG` (default `info`), then the [`CAPS`]: a directive added last for
/// the same target replaces the one `RUST_LOG` gave, and a module's own
/// directive wins over a broader one (`RUST_LOG=trace`).
pub fn env_filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for (module, level) in CAPS {
        let directive: Directive = format!("{module}={level}")
            .parse()
            .expect("a fixed, valid directive");
        filter = filter.add_directive(directive);
    }
    filter
}

/// Whether an event or span may be logged at all (see the module's doc).
pub fn allowed(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    CAPS.iter().all(|(module, most)| {
        let within = target
            .strip_prefix(module)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        !within || metadata.level() <= most
    })
}

/// Sets the process's log: stderr, text or JSON lines, [`env_filter`] and
/// [`allowed`] in front of it.
pub fn init(json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr);
    let caps = tracing_subscriber::filter::filter_fn(allowed);
    if json {
        builder.json().finish().with(caps).init();
    } else {
        builder.finish().with(caps).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a subscriber built as [`init`] builds it, but with `directives`
    /// for `RUST_LOG`, writes for the events given.
    fn logged(directives: &str, emit: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let out = out.clone();
            move || Writer(out.clone())
        };
        let mut filter = EnvFilter::new(directives);
        for (module, level) in CAPS {
            filter = filter.add_directive(format!("{module}={level}").parse().unwrap());
        }
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .finish()
            .with(tracing_subscriber::filter::filter_fn(allowed));
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit_all() {
        let span = tracing::info_span!("reconcile");
        let _in = span.enter();
        tracing::warn!(target: "kube_client::client", "body-of-a-secret");
        tracing::trace!(target: "kube_client::client", "Status from body-of-a-secret");
        tracing::debug!(target: "kube_runtime::watcher", "watch list error: quoted-field");
        tracing::error!(target: "kube_client::client::builder", "failed with status 500");
        tracing::warn!(target: "kube_runtime::watcher", "watch list error with 403");
        tracing::debug!(target: "kube_client::config", "kept-config");
        tracing::trace!(target: "kube_client_other", "kept-other-crate");
        tracing::debug!(target: "secretsync::controller", "kept-ours");
    }

    #[test]
    fn no_directive_lets_the_clients_answers_through() {
        for directives in [
            "trace",
            "kube_client=trace,kube_runtime=trace",
            "kube_client::client=trace",
            "[reconcile]=trace",
            "info,[reconcile]=trace",
        ] {
            let text = logged(directives, emit_all);
            assert!(!text.contains("body-of-a-secret"), "{directives}: {text}");
            assert!(!text.contains("quoted-field"), "{directives}: {text}");
            assert!(
                text.contains("failed with status 500"),
                "{directives}: {text}"
            );
            assert!(
                text.contains("watch list error with 403"),
                "{directives}: {text}"
            );
        }
        let text = logged("trace", emit_all);
        for kept in ["kept-config", "kept-other-crate", "kept-ours"] {
            assert!(text.contains(kept), "{kept}: {text}");
        }
    }
}
