//! How the C allocator (glibc's malloc, which Rust's global allocator calls) keeps freed memory.
//!
//! A push arrives in hyper's read buffers, a few hundred KiB each, freshly allocated while the
//! previous ones are still being hashed and written. With glibc's defaults those allocations go
//! back to the kernel as soon as they are freed (allocations that size are mapped and unmapped,
//! or trimmed off the top of a thread's heap with `madvise`), so every buffer of every push was
//! page-faulted in and zeroed again: in profiles of a 1 GiB push on two cores that was 8% of all
//! CPU time, taken from the hashing a push waits on. Here, allocations up to 8 MiB come from the
//! heap, and up to 32 MiB of free memory at the top of a heap stays there for the next request.
//! Peak memory does not grow (what is kept was in use a moment before); idle memory may keep
//! that much after a burst of pushes.
//!
//! Every thread allocates from one arena. By default glibc gives threads arenas of their own,
//! and a push's buffers are allocated on whichever async worker runs the request at that moment
//! and freed on the threads hashing and writing them: each worker's arena grew to hold the
//! push's buffers in flight, so the push held that memory twice over. Measured on a two-core
//! machine, a 1 GiB push peaked at 22–24 MiB (chunked: 25–26) with an arena per thread and
//! 18–20 MiB (chunked: 20–21) with one. Small allocations come from each thread's own cache
//! (glibc's tcache) without taking the arena's lock; the larger ones that take it are few, and
//! pulls and small requests measured no slower with one arena (`docs/benchmarks.md`).

/// Sets the thresholds and the arena count. Call it first thing in `main`, before any thread
/// starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn tune() {
    /// Allocations at least this large are mapped on their own (and unmapped when freed).
    const MMAP_THRESHOLD: i32 = 8 * 1024 * 1024;
    /// Free memory at the top of a heap beyond this is given back to the kernel.
    const TRIM_THRESHOLD: i32 = 32 * 1024 * 1024;
    /// Arenas the threads share: one (see the module's documentation).
    const ARENAS: i32 = 1;
    // SAFETY: mallopt only changes allocator parameters; glibc serialises it against
    // allocations, and it is called before any other thread exists. A rejected value (0 is
    // returned) leaves glibc's default, which is still correct, just slower or larger.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Other C libraries have their own policies; nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
