//! Opt-in (`cargo make release-small`, which sets `FOLIO_SMALL_RSS=1`): a `folio` binary
//! linked for a small resident set — relative relocations packed (below), and functions
//! in the order of `bench/symbol-order.txt`:
//! the ones a server runs (start-up, then requests), hottest first, then the rest (the
//! other subcommands, code it never reaches).
//!
//! Why the order: a page of code stays in a process's RSS once touched, and the kernel
//! maps a 64 KiB window around each fault. Left in the compiler's order, the code a
//! server runs (4.8 of the 12 MiB of text) is spread so that 10.4 MiB ended up
//! resident; gathered, 5.3 MiB. See `bench/symbol-order.sh` for how the list is made.
//!
//! Only with the linker these were measured with: rust-lld, the default for
//! x86_64-unknown-linux-gnu since Rust 1.90. Names the list no longer matches are
//! skipped, so a stale list costs memory, never correctness.
//!
//! Not the default: the flags are chosen by probing the building machine (its glibc,
//! its rustc), so such a binary may not start on an older distribution, and the list
//! goes stale with every toolchain or dependency update — for a few MiB of RSS.

use std::path::Path;
use std::process::Command;

fn main() {
    const LIST: &str = "bench/symbol-order.txt";
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FOLIO_SMALL_RSS");
    if std::env::var("FOLIO_SMALL_RSS").as_deref() != Ok("1") {
        return;
    }
    let release = std::env::var("PROFILE").as_deref() != Ok("debug");
    let target = std::env::var("TARGET").unwrap_or_default();
    // A linker chosen in Cargo's config, or any link setting in RUSTFLAGS, may not be
    // lld: then the list is left out.
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .unwrap_or_default()
            .contains("link");
    if !release || target != "x86_64-unknown-linux-gnu" || own_linker || !rust_lld_default() {
        return;
    }
    // Relative relocations packed (RELR): `.rela.dyn` shrinks from 0.86 MiB, all of
    // it read and so resident from start-up, to a few KiB. glibc 2.36 reads them; a
    // binary linked with them does not start on an older one, so only when the glibc
    // here (where `cargo run --release` runs it) is new enough.
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=folio=-Wl,-z,pack-relative-relocs");
    }
    let list = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(LIST);
    if list.exists() {
        println!(
            "cargo:rustc-link-arg-bin=folio=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            list.display()
        );
    }
}

/// rustc 1.90 or later links with rust-lld on this target unless told otherwise.
fn rust_lld_default() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    version_of(&rustc, &["--version"], "rustc ") >= (1, 90)
}

/// The version of the glibc this build runs on, as `getconf` tells it ("glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    version_of("getconf", &["GNU_LIBC_VERSION"], "glibc ") >= (major, minor)
}

/// (major, minor) from what `program args` prints after `prefix`; (0, 0) if it can't say.
fn version_of(program: &str, args: &[&str], prefix: &str) -> (u32, u32) {
    let Ok(out) = Command::new(program).args(args).output() else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .trim()
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
