//! Helpers for tests that use real Nix 2.8 as the oracle.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Run a Nix command with a configuration that never touches the network and enables
/// the experimental commands the tests use. Panics (failing the test) when Nix is
/// missing: the differential tests must not silently pass without their oracle.
pub fn nix(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env(
            "NIX_CONFIG",
            "substituters =\nexperimental-features = nix-command\n",
        )
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install Nix 2.8 by running scripts/test.sh")
        });
    out
}

/// Like [`nix`], but the command must succeed; returns stdout.
pub fn nix_ok(program: &str, args: &[&str]) -> String {
    let out = nix(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The tree fixture of formats.md §3.8.
pub fn make_tree_fixture(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("README"), "hi\n").unwrap();
    std::os::unix::fs::symlink("README", dir.join("link")).unwrap();
    std::fs::write(dir.join("sub/run"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(dir.join("sub/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("README"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The derivation in ATerm `text` (with blank output paths and no input derivations)
/// with its output paths filled in, as the evaluator would write it.
pub fn derivation_without_input_drvs(
    store: &kiln_store::LocalStore,
    text: &[u8],
    name: &str,
) -> kiln_derivation::Derivation {
    let drv = kiln_derivation::Derivation::from_aterm(store.store_dir(), text, name).unwrap();
    kiln_derivation::fill_in_output_paths(
        store.store_dir(),
        drv,
        &mut kiln_derivation::DrvHashCache::new(),
        &mut |p| panic!("no input derivations, yet asked for {p}"),
    )
    .unwrap()
}
