//! Memory freed after a burst goes back to the system. glibc's malloc keeps
//! what the first sync's lists and writes freed in its arenas, so without this
//! a controller's RSS stays at that burst's peak for the life of the process;
//! `malloc_trim` returns the free pages. With another allocator there is
//! nothing to do.
//!
//! glibc also gives threads arenas of their own (up to eight per core; the
//! controller had six). Cache entries replaced on every refresh then land in
//! whichever arena their thread uses, and every arena keeps its own partly
//! used pages: at 10,000 ExternalSecrets with every value changing each
//! interval, RSS settled near 67 MiB with the default and 59 MiB with one
//! arena (two: 62 and still rising). The controller's few threads allocate
//! small objects; its CPU was the same with one arena, within this machine's
//! noise.

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

/// Makes every thread share one malloc arena. Call it first thing in `main`,
/// before any thread starts; an operator's own `MALLOC_ARENA_MAX` (or glibc
/// tunables) wins.
pub fn use_one_arena() {
    let operator_chose = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if !operator_chose {
        set_arena_max(1);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: libc::c_int) {
    // SAFETY: mallopt only changes a malloc setting; M_ARENA_MAX limits how
    // many arenas later threads may create and frees nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}

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
