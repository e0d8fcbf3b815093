//! What a panic prints. Rust's default hook writes the panic's message to
//! stderr as it is, and a message formatted at run time can carry anything
//! in reach of the code that panicked: `unwrap()` on an `Err` prints the
//! error's `Debug`, `assert_eq!` both sides, `expect` whatever text it was
//! given. A secret value must never reach stderr that way, so the hook
//! installed here applies the rule the logs follow by construction: only
//! text fixed at compile time is shown. A message built at run time is
//! withheld; where the panic happened (file, line, thread) is always said,
//! which is what finding the bug needs, and the backtrace (frames only, no
//! data) follows when `RUST_BACKTRACE` asks for it.

use std::io::Write;
use std::panic::PanicHookInfo;

/// Said in place of a message formatted at run time.
pub const WITHHELD: &str = "(message withheld: formatted at run time, it may hold a secret value)";

/// Replaces the default panic hook for the whole process. With a tracing
/// subscriber set (the binary sets one before any work), the report is one
/// `error` event of target `panic`, in the log's own format (a JSON log stays
/// JSON); without one, one line on stderr.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let report = report(info);
        if tracing::dispatcher::has_been_set() {
            tracing::error!(target: "panic", "{report}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "{report}");
        }
    }));
}

/// The one text said about a panic: thread, place, and the message only if
/// it was fixed at compile time.
pub fn report(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("<unnamed>");
    let place = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "an unknown place".to_string());
    // `panic!("text")` and `assert!(x, "text")` without arguments carry a
    // `&'static str`; everything formatted carries a `String`.
    let message = info
        .payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or(WITHHELD);
    let backtrace = std::backtrace::Backtrace::capture();
    match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => {
            format!("thread '{thread}' panicked at {place}: {message}\n{backtrace}")
        }
        _ => format!("thread '{thread}' panicked at {place}: {message}"),
    }
}
