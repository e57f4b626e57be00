//! Giving freed heap memory back to the system.
//!
//! glibc's malloc keeps what a program frees in its arenas for reuse and returns only the free
//! space at the top of the main heap. Start-up builds the OpenAPI documents and the schema graph
//! (a peak of ~30 MB of short-lived values) and a big request (a pod of 300k containers) can
//! take hundreds of MB: without a trim that memory stays resident after it is freed, so an idle
//! server would show the start-up peak as its RSS, and a server that once refused a big body
//! would keep its size forever. `malloc_trim(0)` releases every whole free page of every arena
//! (`madvise(MADV_DONTNEED)`); it costs well under a millisecond on a heap this size.
//!
//! Must not touch: anything but the allocator (no limits, no accounting).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the trimmer gives freed memory back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Returns free pages to the system: those of every glibc malloc arena, and those mimalloc
/// holds (the `rudder` binary allocates with mimalloc; tests and libraries may not). Each
/// call is cheap for an allocator that holds nothing.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
    // SAFETY: mi_collect only frees what this thread's heap and the abandoned ones hold free.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Builds what the server builds once on first use (the OpenAPI documents, the schema graph),
/// then trims; afterwards trims every [`TRIM_EVERY`]. Only the first call in a process starts
/// the trimmer (tests run several servers in one process). Call inside a Tokio runtime.
pub fn start_trimmer() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    tokio::spawn(async {
        // The documents take ~0.1 s of CPU each to build: off the request path and off the way
        // to ready, on a blocking thread.
        let _ = tokio::task::spawn_blocking(|| {
            rudder_api::openapi::prebuild();
            trim();
        })
        .await;
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            trim();
        }
    });
}
