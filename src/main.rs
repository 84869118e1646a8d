fn main() -> std::process::ExitCode {
    tune_malloc();
    folio::cli::main()
}

/// glibc's allocator, set for a server that holds many connections at once (measured
/// with `cargo make bench`, 512 connections); `GLIBC_TUNABLES` wins where it sets the
/// same thing.
///
/// - Two arenas: glibc gives each thread that allocates under contention an arena of
///   its own and keeps what they held (a third of the peak RSS); two serve the two
///   workers as fast.
/// - Blocks of 8 KiB and more in mappings of their own: each connection's read and write
///   buffers go back to the system when it closes, instead of leaving holes in the heap
///   that smaller allocations made meanwhile pin, and only their touched pages count.
///   Peak RSS after five rounds of the benchmark's targets: 42.0 → 37.0 MiB. A
///   keep-alive request allocates nothing that large; a new connection costs two or
///   three `mmap`s more (5 to 10 µs of CPU): behind a proxy, keep the upstream
///   connections alive (see the README).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        if !tunables.contains("arena_max") {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if !tunables.contains("mmap_threshold") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 8192);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
