//! Link-time setting for the `mandate` binary: its debug sections (line
//! tables, so backtraces name file:line) are zlib-compressed by the linker,
//! which keeps the release binary under 50 MB (`scripts/check-size.sh`).
//! Rust's backtrace symbolizer reads compressed sections.

fn main() {
    // GNU ld, gold, lld and mold all accept this flag on Linux.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
