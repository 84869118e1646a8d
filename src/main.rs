fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    folio::cli::main()
}

/// glibc gives each thread that allocates under contention an arena of its own and
/// keeps what they held: under 512 connections that was a third of the peak RSS. Two
/// arenas serve the two workers as fast (measured with `cargo make bench`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
