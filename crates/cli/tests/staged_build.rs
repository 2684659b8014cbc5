//! Builds set up ahead: with a free job slot, the next step of a chain gets its
//! build directory, chroot and sandbox while the step it needs still runs (with
//! the inputs that exist by then). The builder must still see exactly its input
//! closure, as under Nix, and a staged build whose input fails must leave nothing.

mod common;

use std::path::Path;

use common::*;

/// `a` has an input source its output does not refer to (in `b`'s staged chroot
/// until `a` is done, then removed) and a directory output (bound late); `b`'s
/// output is a file (linked late into `c`'s chroot). `b` and `c` list the store.
const CHAIN: &str = r#"{ busybox, fail ? false }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  unused = builtins.toFile "only-for-a" "a reads this, its output does not refer to it";
  mk = name: script: derivation {
    inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ];
  };
  a = mk "a" ''
    read x < ${unused}; sleep 0.4; ${if fail then "exit 7" else ""}
    mkdir $out; echo from-a > $out/f
  '';
  b = mk "b" "sleep 0.3; ls /nix/store > $out; cat ${a}/f >> $out";
  c = mk "c" "ls /nix/store > $out; cat ${b} >> $out; ls ${a} >> $out";
in { inherit a b c; }
"#;

fn write_expr(dir: &Path) -> std::path::PathBuf {
    let expr = dir.join("chain.nix");
    std::fs::write(&expr, CHAIN).unwrap();
    expr
}

#[test]
fn staged_steps_see_exactly_their_input_closure() {
    let (tmp, busybox, kiln_store) = scratch();
    let nix_store = tmp.path().join("nix");
    let expr = write_expr(tmp.path());
    let c_drv = instantiate(&kiln_store, &expr, &busybox, Some("c"));
    assert_eq!(
        instantiate(&nix_store, &expr, &busybox, Some("c")),
        c_drv,
        "the same expression gives the same .drv"
    );
    nix_ok("nix-store", &nix_realise_args(&nix_store, &[&c_drv]));
    // Two slots: while `a` runs, the other worker stages `b`, then `c` while `b` runs.
    kiln_ok(&[
        "--store",
        s(&kiln_store),
        "build",
        "--no-link",
        "-j",
        "2",
        &c_drv,
    ]);
    for step in ["b", "c"] {
        let out = nix_ok(
            "nix-instantiate",
            &[
                "--store",
                s(&nix_store),
                "--eval",
                s(&expr),
                "--arg",
                "busybox",
                s(&busybox),
                "-A",
                &format!("{step}.outPath"),
            ],
        );
        let out = out.trim().trim_matches('"');
        let rel = out.trim_start_matches('/');
        let ours = std::fs::read_to_string(kiln_store.join(rel)).unwrap();
        let theirs = std::fs::read_to_string(nix_store.join(rel)).unwrap();
        assert_eq!(
            ours, theirs,
            "what the builder of {step} saw differs from Nix"
        );
        assert!(
            !ours.contains("only-for-a"),
            "{step} saw a path outside its closure:\n{ours}"
        );
    }
    assert_store_verifies(&kiln_store);
}

#[test]
fn staged_step_whose_input_fails_leaves_nothing() {
    let (tmp, busybox, store) = scratch();
    let expr = write_expr(tmp.path());
    let c_drv = nix_ok(
        "nix-instantiate",
        &[
            "--store",
            s(&store),
            s(&expr),
            "--arg",
            "busybox",
            s(&busybox),
            "--arg",
            "fail",
            "true",
            "-A",
            "c",
        ],
    );
    let build_tmp = build_tmp(tmp.path());
    let out = kiln_build(&store, &build_tmp)
        .args(["-j", "2", c_drv.trim()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("failed with exit code 7"), "{stderr}");
    assert!(
        !stderr.contains("building '") || !stderr.contains("-b.drv'..."),
        "b must not start: {stderr}"
    );
    assert_nothing_left(&store, &build_tmp, |n| {
        n.ends_with(".chroot") || n.contains("kiln-chroot-trash")
    });
    // No lock of `b` survived the first run: the second fails on `a` again.
    let again = kiln_build(&store, &build_tmp)
        .args(["-j", "2", c_drv.trim()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("failed with exit code 7"));
    assert_store_verifies(&store);
}

#[test]
fn interrupt_with_a_staged_step_leaves_nothing() {
    let (tmp, busybox, store) = scratch();
    let drv = instantiate_text(
        tmp.path(),
        "forever.nix",
        r#"{ busybox }: let
  bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: derivation {
    inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ];
  };
  a = mk "forever" "mkdir $out; sleep 3600";
in mk "after" "cat ${a} > $out"
"#,
        &store,
        &busybox,
    );
    let build_tmp = build_tmp(tmp.path());
    let child = kiln_build(&store, &build_tmp)
        .args(["-j", "2", &drv])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both chroots exist once `forever` runs and `after` is staged.
    let (out, _) = interrupt_when(
        child,
        || chroots_in(&store) >= 2,
        std::time::Duration::from_millis(200),
        "the second step was never staged",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("interrupted by the user"), "{stderr}");
    assert_nothing_left(&store, &build_tmp, |n| {
        n.ends_with(".chroot") || n.contains("chroot-trash")
    });
    assert_store_verifies(&store);
}

/// `b` is staged while `a` runs, so `a`'s directory output reaches `b`'s sandbox only
/// when `a` is done (after the sandbox pivoted, when the caller is root). It must be
/// mounted as the inputs bound at the start are: same parent (the store mount), same
/// options, same propagation (a peer group of its own, not the host's), same
/// filesystem.
#[test]
fn late_directory_input_is_mounted_like_the_others() {
    let (tmp, busybox, store) = scratch();
    let drv = instantiate_text(
        tmp.path(),
        "late-dir.nix",
        r#"{ busybox }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: derivation {
    inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ];
  };
  a = mk "a" "sleep 0.4; mkdir $out; echo from-a > $out/f";
in mk "b" ''
  cat ${a}/f > $out
  grep -F -e " ${bb} " /proc/self/mountinfo >> $out
  grep -F -e " ${a} " /proc/self/mountinfo >> $out
''
"#,
        &store,
        &busybox,
    );
    let out = kiln_ok(&["--store", s(&store), "build", "--no-link", "-j", "2", &drv]);
    let text = std::fs::read_to_string(store.join(out.trim().trim_start_matches('/'))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one mount each for busybox and a:\n{text}");
    assert_eq!(lines[0], "from-a");
    // Mount id, parent id, device, root, mount point, options, optional fields,
    // "-", filesystem type, source, superblock options.
    let shape = |line: &str| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-").expect("a separator");
        let optional: Vec<String> = fields[6..dash]
            .iter()
            .map(|f| f.split(':').next().unwrap().to_string())
            .collect();
        (
            fields[1].to_string(),
            fields[5].to_string(),
            optional,
            fields[dash + 1..].join(" "),
        )
    };
    let (early, late) = (shape(lines[1]), shape(lines[2]));
    assert_eq!(late, early, "a's mount differs from busybox's:\n{text}");
    assert_eq!(late.2, vec!["shared".to_string()], "{text}");
    let group = |line: &str| {
        line.split(' ')
            .find(|f| f.starts_with("shared:"))
            .map(str::to_string)
    };
    assert_ne!(
        group(lines[1]),
        group(lines[2]),
        "each input bind is a peer group of its own:\n{text}"
    );
    assert_store_verifies(&store);
}
