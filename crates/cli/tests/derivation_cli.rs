//! `kiln --store DIR derivation show` against `nix show-derivation --store DIR`: the
//! stdout bytes must be identical. Needs Nix 2.8 (run scripts/test.sh).

mod common;

use std::path::Path;
use std::process::Command;

use common::{kiln, nix_command, s};

const EXPR: &str = r#"
let
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
in rec {
  simple = mk { name = "simple"; args = [ "-c" "echo hi > $out" ]; };
  multi = mk { name = "multi"; outputs = [ "out" "dev" "lib" ]; };
  dep = mk { name = "dep"; a = "${simple}"; b = multi.dev; c = "${multi.lib}/x"; };
  fod = mk { name = "fod"; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; };
  odd = mk { name = "odd"; args = [ "q\"q" "b\\s" "n\nl" "é€" "" ];
    "" = "x"; ctl = builtins.fromJSON ''"a\u0001b\u007f"''; v = builtins.readFile ./bin.dat; f = fod; };
  ca = mk { name = "ca"; __contentAddressed = true; outputs = [ "out" "dev" ]; };
  deferred = mk { name = "deferred"; a = ca.dev; b = dep; };
  impure = mk { name = "impure"; __impure = true; };
  sa = derivation { name = "sa"; system = "x86_64-linux"; builder = "/bin/sh"; __structuredAttrs = true;
    outputs = [ "out" "doc" ]; set = { a = "x\ny"; }; d = deferred; };
}
"#;

const FEATURES: &str = "nix-command ca-derivations impure-derivations";

/// Instantiate every attribute into a scratch store; returns the `.drv` paths by attribute.
fn instantiate(dir: &Path) -> Vec<(String, String)> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("bin.dat"), (1u8..=255).collect::<Vec<u8>>()).unwrap();
    std::fs::write(src.join("drvs.nix"), EXPR).unwrap();
    let attrs = [
        "simple", "multi", "dep", "fod", "odd", "ca", "deferred", "impure", "sa",
    ];
    let mut cmd = nix_command("nix-instantiate");
    cmd.args(["--extra-experimental-features", FEATURES, "--store"])
        .arg(dir.join("store"))
        .arg(src.join("drvs.nix"));
    for a in attrs {
        cmd.args(["-A", a]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run nix-instantiate ({e}); install Nix 2.8 by running scripts/test.sh")
    });
    assert!(
        out.status.success(),
        "nix-instantiate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(paths.len(), attrs.len(), "{paths:?}");
    attrs.iter().map(|a| a.to_string()).zip(paths).collect()
}

fn nix_show(store: &Path, args: &[&str]) -> Vec<u8> {
    let out = nix_command("nix")
        .args([
            "--extra-experimental-features",
            FEATURES,
            "show-derivation",
            "--store",
        ])
        .arg(store)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run nix ({e}); install Nix 2.8 by running scripts/test.sh")
        });
    assert!(
        out.status.success(),
        "nix show-derivation {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn kiln_show(store: &Path, args: &[&str]) -> Vec<u8> {
    let out = kiln()
        .args(["--store", s(store), "derivation", "show"])
        .args(args)
        .output()
        .expect("run kiln");
    assert!(
        out.status.success(),
        "kiln derivation show {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn assert_same(store: &Path, args: &[&str]) {
    let nix = nix_show(store, args);
    let kiln = kiln_show(store, args);
    assert!(
        nix == kiln,
        "derivation show {args:?} differs\n--- nix\n{}\n--- kiln\n{}",
        String::from_utf8_lossy(&nix),
        String::from_utf8_lossy(&kiln)
    );
}

#[test]
fn derivation_show_matches_nix_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let drvs = instantiate(tmp.path());
    let store = tmp.path().join("store");
    for (_, drv) in &drvs {
        assert_same(&store, &[drv]);
    }
    // Several at once (printed sorted by path, whatever the argument order), and the
    // recursive closure.
    let all: Vec<&str> = drvs.iter().rev().map(|(_, d)| d.as_str()).collect();
    assert_same(&store, &all);
    for attr in ["dep", "deferred", "sa", "odd"] {
        let drv = &drvs.iter().find(|(a, _)| a == attr).unwrap().1;
        assert_same(&store, &["--recursive", drv]);
    }
    make_writable(tmp.path());
}

#[test]
fn derivation_show_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let missing = "/nix/store/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv";
    for (arg, want) in [
        // Nix's words: only a valid `.drv` is shown (kiln used to read any file there).
        (missing, "is not valid"),
        (
            "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple",
            "is not a derivation",
        ),
        ("/tmp/x.drv", "is not a store path"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["--store", s(&store), "derivation", "show", arg])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arg}");
        assert!(
            stderr.contains(want) && !stderr.contains("panicked"),
            "{arg}: {stderr}"
        );
    }
}

/// Nix makes store objects read-only; give write access back so the temporary
/// directory can be removed when the test is not run as root.
fn make_writable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o700);
    let _ = std::fs::set_permissions(path, perms);
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}
