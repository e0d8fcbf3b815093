//! Memory freed after a burst goes back to the system. glibc's malloc keeps
//! what the first sync's lists and writes freed in its arenas, so without this
//! a controller's RSS stays at that burst's peak for the life of the process;
//! `malloc_trim` returns the free pages. With another allocator there is
//! nothing to do.

use std::time::Duration;

/// How often free memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Hands free memory back every [`TRIM_EVERY`], as long as the process runs.
pub async fn trim_periodically() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // It walks every arena: not on an async thread.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases memory malloc holds free; it takes
    // the allocator's own locks and touches nothing the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
