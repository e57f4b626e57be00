//! Builds the sandbox (pause) program, `pause/pause.c`, as a static executable that
//! `image::pause_archive` puts into the locally built sandbox image: pods start without any
//! registry. C because it must be a tiny static binary, which the Rust toolchain here cannot
//! make without a musl target.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("pause/pause.c");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("pause");
    let compiler = cc::Build::new().get_compiler();
    let status = Command::new(compiler.path())
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", compiler.path().display()));
    assert!(
        status.success(),
        "building {} failed: {status}",
        src.display()
    );
}
