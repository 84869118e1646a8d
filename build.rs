//! Release builds of the `folio` binary link its functions in the order of
//! `bench/symbol-order.txt`: the ones a server runs (start-up, then requests), hottest
//! first, then the rest (the other subcommands, code it never reaches).
//!
//! Why: a page of code stays in a process's RSS once touched, and the kernel maps a
//! 64 KiB window around each fault. Left in the compiler's order, the code a server
//! runs (4.8 of the 12 MiB of text) is spread so that 10.4 MiB ended up resident;
//! gathered, 5.3 MiB. See `bench/symbol-order.sh` for how the list is made.
//!
//! Only with the linker that reads the list: rust-lld, the default for
//! x86_64-unknown-linux-gnu since Rust 1.90. Names the list no longer matches are
//! skipped, so a stale list costs memory, never correctness.

use std::path::Path;
use std::process::Command;

fn main() {
    const LIST: &str = "bench/symbol-order.txt";
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
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
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
