//! Derivations written the way others write them (placeholders in every place Nix
//! rewrites them, foreign systems, required features, option values with special
//! meanings) built by kiln and by `nix-store --realise --option sandbox true` in stores of
//! their own: the same outcome, the same output paths, NAR hashes and references, and on
//! failure the same reason.

mod common;

use std::path::Path;

use common::*;

const CORPUS: &str = r#"{ busybox }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bb}/sh"; } // attrs);
  sh = script: [ "-c" script ];
in {
  placeholder-in-env = mk {
    name = "placeholder-in-env"; outputs = [ "out" "dev" ];
    self = placeholder "out"; sibling = placeholder "dev";
    "name-${placeholder "dev"}" = "in a name";
    args = sh "echo $self $sibling > $out; env | grep 'in a name' >> $out; echo dev > $dev";
  };
  placeholder-in-args = mk {
    name = "placeholder-in-args";
    args = sh "echo ${placeholder "out"} > ${placeholder "out"}";
  };
  placeholder-in-pass-as-file = mk {
    name = "placeholder-in-pass-as-file"; passAsFile = [ "text" ];
    text = "out is ${placeholder "out"}";
    args = sh "cp $textPath $out";
  };
  placeholder-in-structured-attrs = mk {
    name = "placeholder-in-structured-attrs"; __structuredAttrs = true;
    outputs = [ "out" "bin" ];
    self = placeholder "out"; nested = { list = [ (placeholder "bin") 1 ]; };
    args = sh "cat .attrs.json .attrs.sh > ${placeholder "out"}; echo > ${placeholder "bin"}";
  };
  placeholder-as-builder = derivation {
    name = "placeholder-as-builder"; system = "x86_64-linux"; builder = placeholder "out";
  };
  foreign-system = mk { name = "foreign-system"; system = "i086-msdos"; args = sh "echo > $out"; };
  extra-platform = mk { name = "extra-platform"; system = "i686-linux"; args = sh "uname -m > $out"; };
  needs-gpu = mk {
    name = "needs-gpu"; requiredSystemFeatures = [ "gpu" ]; args = sh "echo gpu > $out";
  };
  needs-gpu-structured = mk {
    name = "needs-gpu-structured"; __structuredAttrs = true;
    requiredSystemFeatures = [ "gpu" "big-parallel" ];
    args = sh "echo gpu > ${placeholder "out"}";
  };
  needs-default-feature = mk {
    name = "needs-default-feature"; requiredSystemFeatures = [ "big-parallel" "nixos-test" ];
    args = sh "echo ok > $out";
  };
  sleeps = mk { name = "sleeps"; args = sh "sleep 2; echo slept > $out"; };
}
"#;

/// `builtins.placeholder "out"`, as Nix 2.8 prints it.
const OUT_PLACEHOLDER: &str = "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9";

struct Stores {
    _tmp: tempfile::TempDir,
    nix: std::path::PathBuf,
    kiln: std::path::PathBuf,
    expr: std::path::PathBuf,
    busybox: std::path::PathBuf,
}

fn stores() -> Stores {
    let (tmp, busybox, kiln) = scratch();
    let nix = tmp.path().join("nix");
    let expr = tmp.path().join("corpus.nix");
    std::fs::write(&expr, CORPUS).unwrap();
    Stores {
        nix,
        kiln,
        expr,
        busybox,
        _tmp: tmp,
    }
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Instantiates `attr` into both stores (the same `.drv` path), builds it with Nix and
/// with kiln, each given `options` as `--option NAME VALUE` plus its own `extra` flags.
fn build_both(
    st: &Stores,
    attr: &str,
    options: &[(&str, &str)],
    extra: &[&str],
) -> (String, Outcome, Outcome) {
    let drv = instantiate(&st.nix, &st.expr, &st.busybox, Some(attr));
    assert_eq!(
        instantiate(&st.kiln, &st.expr, &st.busybox, Some(attr)),
        drv
    );
    let mut nix_args = nix_realise_args(&st.nix, &[]);
    nix_args.pop(); // `--realise`, put back after the options
    for (name, value) in options {
        nix_args.extend(["--option", name, value]);
    }
    nix_args.extend(extra);
    nix_args.extend(["--realise", &drv]);
    let out = nix("nix-store", &nix_args);
    let theirs = Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let build_tmp = tempfile::tempdir().unwrap();
    let mut kiln = kiln_build(&st.kiln, build_tmp.path());
    for (name, value) in options {
        kiln.args(["--option", name, value]);
    }
    let out = kiln.args(extra).arg(&drv).output().unwrap();
    let ours = Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!ours.stderr.contains("panicked"), "{}", ours.stderr);
    (drv, theirs, ours)
}

fn query(store: &Path, what: &str, path: &str) -> String {
    nix_ok("nix-store", &["--store", s(store), "--query", what, path])
}

/// Both succeeded with the same outputs, byte for byte, with the same references.
fn assert_same_outputs(st: &Stores, attr: &str, theirs: &Outcome, ours: &Outcome) {
    assert!(theirs.ok, "{attr}: Nix failed: {}", theirs.stderr);
    assert!(ours.ok, "{attr}: kiln failed: {}", ours.stderr);
    let mut nix_paths: Vec<&str> = theirs.stdout.lines().collect();
    let mut kiln_paths: Vec<&str> = ours.stdout.lines().collect();
    nix_paths.sort();
    kiln_paths.sort();
    assert_eq!(kiln_paths, nix_paths, "{attr}: output paths");
    for path in nix_paths {
        assert_eq!(
            query(&st.kiln, "--hash", path),
            query(&st.nix, "--hash", path),
            "{attr}: NAR hash of {path}"
        );
        assert_eq!(
            query(&st.kiln, "--references", path),
            query(&st.nix, "--references", path),
            "{attr}: references of {path}"
        );
    }
}

/// Both failed, and kiln's error carries Nix's reason: its `error: ` line (the first
/// line of the message).
fn assert_same_refusal(attr: &str, theirs: &Outcome, ours: &Outcome) -> String {
    assert!(!theirs.ok, "{attr}: Nix built it: {}", theirs.stdout);
    assert!(!ours.ok, "{attr}: kiln built it: {}", ours.stdout);
    let reason = theirs
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or_else(|| panic!("{attr}: no error line from Nix: {}", theirs.stderr))
        .trim()
        .to_string();
    assert!(
        ours.stderr.contains(&reason),
        "{attr}: kiln's error lacks Nix's reason {reason:?}:\n{}",
        ours.stderr
    );
    reason
}

/// Regression: placeholders reached the builder raw, so it failed or wrote the
/// placeholder into its output. Nix rewrites them in the environment (names too), the
/// arguments, `passAsFile` files and both structured-attribute files.
#[test]
fn output_placeholders_are_rewritten_where_nix_rewrites_them() {
    let st = stores();
    for attr in [
        "placeholder-in-env",
        "placeholder-in-args",
        "placeholder-in-pass-as-file",
        "placeholder-in-structured-attrs",
    ] {
        let (_, theirs, ours) = build_both(&st, attr, &[], &[]);
        assert_same_outputs(&st, attr, &theirs, &ours);
        // The `out` output names itself where the placeholder was.
        let out = ours
            .stdout
            .lines()
            .find(|p| p.ends_with(&format!("-{attr}")))
            .unwrap();
        let text = std::fs::read_to_string(st.kiln.join(out.trim_start_matches('/'))).unwrap();
        assert!(text.contains(out), "{attr}: {text}");
        assert!(!text.contains(OUT_PLACEHOLDER), "{attr}: {text}");
    }
    // Nix does not rewrite the builder path itself: both fail to execute it.
    let (_, theirs, ours) = build_both(&st, "placeholder-as-builder", &[], &[]);
    assert!(!theirs.ok && !ours.ok);
    let exec = format!("executing '{OUT_PLACEHOLDER}'");
    assert!(theirs.stderr.contains(&exec), "{}", theirs.stderr);
    assert!(ours.stderr.contains(&exec), "{}", ours.stderr);
}

/// Regression: `system` and `requiredSystemFeatures` were not checked, so a derivation
/// for another platform or needing a missing feature was started and failed with "No
/// such file or directory"; Nix refuses it before building, naming both sides.
#[test]
fn systems_and_features_are_checked_as_nix_checks_them() {
    let st = stores();
    let reason = {
        let (drv, theirs, ours) = build_both(&st, "foreign-system", &[], &[]);
        let reason = assert_same_refusal("foreign-system", &theirs, &ours);
        assert!(reason.contains(&drv), "{reason}");
        reason
    };
    assert!(
        reason.starts_with("a 'i086-msdos' with features {}"),
        "{reason}"
    );
    for attr in ["needs-gpu", "needs-gpu-structured"] {
        let (_, theirs, ours) = build_both(&st, attr, &[], &[]);
        assert_same_refusal(attr, &theirs, &ours);
        // With the feature declared, both build it.
        let (_, theirs, ours) =
            build_both(&st, attr, &[("system-features", "gpu big-parallel")], &[]);
        assert_same_outputs(&st, attr, &theirs, &ours);
    }
    // Nix's default features and extra platforms (i686-linux runs under a 32-bit
    // personality).
    for attr in ["needs-default-feature", "extra-platform"] {
        let (_, theirs, ours) = build_both(&st, attr, &[], &[]);
        assert_same_outputs(&st, attr, &theirs, &ours);
    }
    // A platform declared extra is accepted (the static busybox runs whatever the label).
    let (_, theirs, ours) = build_both(
        &st,
        "foreign-system",
        &[("extra-platforms", "i086-msdos")],
        &[],
    );
    assert_same_outputs(&st, "foreign-system", &theirs, &ours);
    // Replacing the default features takes them away (in fresh stores, where the
    // output is not valid yet).
    let st = stores();
    let (_, theirs, ours) = build_both(
        &st,
        "needs-default-feature",
        &[("system-features", "kvm")],
        &[],
    );
    assert_same_refusal("needs-default-feature", &theirs, &ours);
}

/// Regression: `--timeout 0` and `--max-silent-time 0` killed every build at once; in
/// Nix 0 means no limit. `-j 0` built locally; Nix refuses to start any build.
#[test]
fn zero_limits_mean_none_and_zero_jobs_build_nothing() {
    let st = stores();
    let (_, theirs, ours) = build_both(
        &st,
        "sleeps",
        &[],
        &["--timeout", "0", "--max-silent-time", "0"],
    );
    assert_same_outputs(&st, "sleeps", &theirs, &ours);

    let (_, theirs, ours) = build_both(&st, "placeholder-in-args", &[], &["-j", "0"]);
    let reason = assert_same_refusal("placeholder-in-args", &theirs, &ours);
    assert!(reason.starts_with("unable to start any build"), "{reason}");
    // What is valid already needs no build slot.
    let (_, theirs, ours) = build_both(&st, "sleeps", &[], &["-j", "0"]);
    assert_same_outputs(&st, "sleeps", &theirs, &ours);
}
