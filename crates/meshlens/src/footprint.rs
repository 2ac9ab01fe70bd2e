//! Keeping a long-running collector's resident memory close to its live heap.
//!
//! The agent's live heap stays around 13 MiB, but with glibc's defaults its resident size
//! grew to four or five times that: every scrape body and forwarded batch is a large buffer,
//! glibc raises its mmap threshold after the first one is freed, so later ones are carved
//! from per-thread arenas, and the freed space stays resident in them.

use std::time::Duration;

/// Pins large allocations to mmap (returned to the kernel on free) and caps the number of
/// arenas. Call before any thread is started.
pub fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before other threads
    // exist, and both values are within glibc's documented ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands freed heap pages back to the kernel every `every`, for as long as the runtime runs.
pub fn spawn_trimmer(every: Duration) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim is thread-safe; it only releases free memory.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = every;
}
