//! Helpers for end-to-end tests of the `kiln` binary, with real Nix 2.8 as the oracle.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// Run kiln; returns (success, stdout, stderr).
pub fn run_kiln(args: &[&str]) -> (bool, String, String) {
    let out = kiln().args(args).output().expect("run kiln");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn kiln_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_kiln(args);
    assert!(ok, "kiln {args:?} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
}

/// A Nix command that never tries the network. Panics when Nix is missing: the
/// differential tests must not pass without their oracle.
pub fn nix_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(
        "NIX_CONFIG",
        "substituters =\nexperimental-features = nix-command\n",
    );
    cmd
}

pub fn nix(program: &str, args: &[&str]) -> Output {
    nix_command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install Nix 2.8 by running scripts/test.sh")
        })
}

pub fn nix_ok(program: &str, args: &[&str]) -> String {
    let out = nix(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Both verifiers must find nothing wrong with the store at `root`.
pub fn assert_store_verifies(root: &Path) {
    let out = nix(
        "nix-store",
        &["--store", s(root), "--verify", "--check-contents"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nix-store --verify: {stderr}");
    assert!(
        !stderr.contains("error")
            && !stderr.contains("modified")
            && !stderr.contains("disappeared"),
        "nix-store --verify complained: {stderr}"
    );
    kiln_ok(&["--store", s(root), "store", "verify", "--check-contents"]);
}

/// `count` small distinct source trees under `dir`, returned in order.
pub fn make_sources(dir: &Path, count: usize) -> Vec<std::path::PathBuf> {
    (0..count)
        .map(|i| {
            let p = dir.join(format!("src{i:03}"));
            std::fs::create_dir_all(p.join("sub")).unwrap();
            std::fs::write(p.join("a"), format!("tree {i}\n")).unwrap();
            std::fs::write(p.join("sub/b"), vec![b'x'; i * 7]).unwrap();
            p
        })
        .collect()
}

/// A directory holding a static busybox named `sh` (a builder without nixpkgs).
pub fn busybox_dir(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("busybox");
    std::fs::create_dir_all(&dir).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox not found; run scripts/test.sh to install busybox-static");
    std::fs::copy(busybox, dir.join("sh")).unwrap();
    dir
}

/// `nix-store` arguments that realise `drvs` in `store` with the sandbox on.
pub fn nix_realise_args<'a>(store: &'a Path, drvs: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--store",
        s(store),
        "--option",
        "sandbox",
        "true",
        "--realise",
    ];
    args.extend_from_slice(drvs);
    args
}

/// A scratch directory with a busybox builder directory and the path of a kiln store
/// in it (not created yet).
pub fn scratch() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let busybox = busybox_dir(tmp.path());
    let store = tmp.path().join("kiln");
    (tmp, busybox, store)
}

/// `nix-instantiate` of `expr` (a function of `busybox`) into `store`; the `.drv` path
/// of `attr`, or of the whole expression.
pub fn instantiate(store: &Path, expr: &Path, busybox: &Path, attr: Option<&str>) -> String {
    let mut args = vec!["--store", s(store), s(expr), "--arg", "busybox", s(busybox)];
    if let Some(attr) = attr {
        args.extend(["-A", attr]);
    }
    nix_ok("nix-instantiate", &args).trim().to_string()
}

/// `expr` (a function of `busybox`) written to `tmp/<file>` and instantiated into
/// `store`; the `.drv` path.
pub fn instantiate_text(
    tmp: &Path,
    file: &str,
    expr: &str,
    store: &Path,
    busybox: &Path,
) -> String {
    let path = tmp.join(file);
    std::fs::write(&path, expr).unwrap();
    instantiate(store, &path, busybox, None)
}

/// A fresh `tmp/buildtmp`, to be the builds' `$TMPDIR`, so that a test sees every
/// build directory its builds leave.
pub fn build_tmp(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("buildtmp");
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// `kiln --store STORE build --no-link` with its build directories in `build_tmp`.
pub fn kiln_build(store: &Path, build_tmp: &Path) -> Command {
    let mut command = kiln();
    command
        .env("TMPDIR", build_tmp)
        .args(["--store", s(store), "build", "--no-link"]);
    command
}

/// No store entry matching `leftover` and no build directory remain after a build.
pub fn assert_nothing_left(store: &Path, build_tmp: &Path, leftover: impl Fn(&str) -> bool) {
    let left: Vec<String> = std::fs::read_dir(store.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| leftover(n))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read_dir(build_tmp).unwrap().count(),
        0,
        "build directory left behind"
    );
}

/// How many build chroots the store holds now.
pub fn chroots_in(store: &Path) -> usize {
    std::fs::read_dir(store.join("nix/store"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".chroot")
        })
        .count()
}

/// Waits (at most 20 s, failing with `what`) until `ready`, lets the builds run a
/// moment longer, then sends SIGINT to `child`; its output, and how long it took to
/// exit after the signal.
pub fn interrupt_when(
    child: std::process::Child,
    ready: impl Fn() -> bool,
    settle: std::time::Duration,
    what: &str,
) -> (Output, std::time::Duration) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(settle);
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    (out, signalled.elapsed())
}

/// The pids of the processes whose command line (NUL-separated arguments) satisfies
/// `matches`; zombies have an empty one.
pub fn processes_where(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if matches(&cmdline) {
            found.push(pid);
        }
    }
    found
}
