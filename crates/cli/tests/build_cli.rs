//! `kiln build` against `nix-build --option sandbox true`: the same `.drv`s (written by
//! nix-instantiate) give outputs with the same NAR hashes and references, the sandbox
//! isolates as Nix's does, concurrent builders never build an output twice, and
//! failures leave nothing behind.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn hash_of(args: &[&str], tmp: &Path, contents: impl FnOnce(&Path)) -> String {
    let p = tmp.join(format!("hash-input-{}", args.len()));
    contents(&p);
    let mut full = args.to_vec();
    full.push(s(&p));
    nix_ok("nix-hash", &full).trim().to_string()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    nix_store: PathBuf,
    kiln_store: PathBuf,
    expr: PathBuf,
    args: Vec<String>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let busybox = busybox_dir(tmp.path());
    let fod_flat = hash_of(&["--type", "sha256", "--flat"], tmp.path(), |p| {
        std::fs::write(p, "fixed\n").unwrap()
    });
    let fod_rec = hash_of(&["--type", "sha256"], tmp.path(), |p| {
        std::fs::create_dir(p).unwrap();
        std::fs::write(p.join("f"), "fixed\n").unwrap();
        std::os::unix::fs::symlink("f", p.join("l")).unwrap();
    });
    let expr = tmp.path().join("builds.nix");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/builds.nix"),
        &expr,
    )
    .unwrap();
    Fixture {
        nix_store: tmp.path().join("nix"),
        kiln_store: tmp.path().join("kiln"),
        expr,
        args: vec![
            "--arg".into(),
            "busybox".into(),
            s(&busybox).to_string(),
            "--argstr".into(),
            "fodFlat".into(),
            fod_flat,
            "--argstr".into(),
            "fodRec".into(),
            fod_rec,
        ],
        _tmp: tmp,
    }
}

impl Fixture {
    /// `.drv` paths of `attrs`, instantiated by Nix into `store`.
    fn instantiate(&self, store: &Path, attrs: &[&str]) -> Vec<String> {
        let mut args: Vec<&str> = vec!["--store", s(store), s(&self.expr)];
        args.extend(self.args.iter().map(String::as_str));
        for a in attrs {
            args.extend(["-A", a]);
        }
        nix_ok("nix-instantiate", &args)
            .lines()
            .map(String::from)
            .collect()
    }

    fn nix_build(&self, drvs: &[String]) {
        let drvs: Vec<&str> = drvs.iter().map(String::as_str).collect();
        nix_ok("nix-store", &nix_realise_args(&self.nix_store, &drvs));
    }
}

/// path → (narHash, references) of every valid path in `store`, as Nix reports them.
fn path_infos(store: &Path, paths: &[String]) -> BTreeMap<String, (String, Vec<String>)> {
    let mut args = vec!["path-info", "--store", s(store), "--json"];
    args.extend(paths.iter().map(String::as_str));
    let v: serde_json::Value = serde_json::from_str(&nix_ok("nix", &args)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let refs = o["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            (
                o["path"].as_str().unwrap().to_string(),
                (o["narHash"].as_str().unwrap().to_string(), refs),
            )
        })
        .collect()
}

const ALL: &[&str] = &[
    "leaf1",
    "leaf2",
    "leaf3",
    "chain4",
    "multi",
    "usesMulti",
    "fodFlatDrv",
    "fodRecDrv",
    "usesFod",
    "dump",
    "passAsFile",
    "structured",
    "exportGraph",
    "structuredGraph",
];

#[test]
fn outputs_equal_nix_sandboxed_builds() {
    let f = fixture();
    let nix_drvs = f.instantiate(&f.nix_store, ALL);
    let kiln_drvs = f.instantiate(&f.kiln_store, ALL);
    assert_eq!(
        nix_drvs, kiln_drvs,
        "the same expressions give the same .drv paths"
    );
    f.nix_build(&nix_drvs);
    let mut args = vec!["--store", s(&f.kiln_store), "build", "--no-link", "-j", "2"];
    args.extend(kiln_drvs.iter().map(String::as_str));
    let printed = kiln_ok(&args);
    // Every output of every derivation (and of their dependencies).
    let outputs: Vec<String> = nix_ok(
        "nix-store",
        &[
            &["--store", s(&f.nix_store), "-q", "--outputs"][..],
            &nix_drvs.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    )
    .lines()
    .map(String::from)
    .collect();
    for line in printed.lines() {
        assert!(
            outputs.contains(&line.to_string()),
            "kiln printed {line}, not an output"
        );
    }
    let closure: Vec<String> = nix_ok(
        "nix-store",
        &[
            &["--store", s(&f.nix_store), "-qR"][..],
            &outputs.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    )
    .lines()
    .map(String::from)
    .collect();
    let theirs = path_infos(&f.nix_store, &closure);
    let ours = path_infos(&f.kiln_store, &closure);
    for (path, info) in &theirs {
        assert_eq!(
            ours.get(path),
            Some(info),
            "{path} differs between kiln and nix-build"
        );
    }
    // The environment/filesystem dump is byte-identical.
    let dump = outputs.iter().find(|p| p.ends_with("-envdump")).unwrap();
    let a = std::fs::read(f.nix_store.join(dump.trim_start_matches('/'))).unwrap();
    let b = std::fs::read(f.kiln_store.join(dump.trim_start_matches('/'))).unwrap();
    assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(&a));
    assert_store_verifies(&f.kiln_store);
    // Logs are kept in Nix's layout, readable by `nix-store --read-log` and `kiln log`.
    let dump_drv = kiln_drvs
        .iter()
        .find(|d| d.ends_with("-envdump.drv"))
        .unwrap();
    let ours = kiln_ok(&["--store", s(&f.kiln_store), "log", dump_drv]);
    let theirs = nix_ok(
        "nix-store",
        &["--store", s(&f.kiln_store), "--read-log", dump_drv],
    );
    assert_eq!(ours, theirs);
    assert!(ours.contains("dumped"), "{ours}");
}

#[test]
fn failing_builder_reports_and_leaves_nothing() {
    let (tmp, busybox, store) = scratch();
    let drv = instantiate_text(
        tmp.path(),
        "fail.nix",
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; }; in
derivation { name = "fails"; system = "x86_64-linux"; builder = "${bb}/sh";
  args = [ "-c" "mkdir $out; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; exit 3" ]; }"#,
        &store,
        &busybox,
    );
    let build_tmp = build_tmp(tmp.path());
    let out = kiln_build(&store, &build_tmp)
        .arg(drv.trim())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "builder for '{}' failed with exit code 3",
            drv.trim()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 12") && !stderr.contains("line 2\n"),
        "last 10 lines: {stderr}"
    );
    assert!(!stderr.contains("panicked"));
    let valid = nix_ok("nix", &["path-info", "--store", s(&store), "--all"]);
    assert!(!valid.contains("-fails\n"), "{valid}");
    assert_nothing_left(&store, &build_tmp, |n| {
        n.ends_with(".chroot") || n.ends_with("-fails")
    });
    assert_store_verifies(&store);
}

#[test]
fn sandbox_isolates_network_store_and_filesystem() {
    let (tmp, busybox, store) = scratch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = (&conn).write_all(b"hello from the host\n");
        }
    });
    // A path that exists in the store but is not an input.
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "secret").unwrap();
    let secret_path = kiln_ok(&["--store", s(&store), "store", "add-path", s(&secret)]);
    let expr = tmp.path().join("iso.nix");
    std::fs::write(
        &expr,
        format!(
            r#"{{ busybox, hash }}: let bb = builtins.path {{ path = busybox; name = "busybox"; }};
  mk = name: script: attrs: derivation ({{ inherit name; system = "x86_64-linux"; builder = "${{bb}}/sh"; args = [ "-c" script ]; }} // attrs);
in {{
  noNet = mk "no-net" "(nc -w 2 127.0.0.1 {port} < /dev/null && echo REACHED || echo blocked; [ -e {secret} ] && echo SEES-SECRET || echo hidden; (echo x > /oops) 2>/dev/null && echo WROTE-ROOT || echo ro-root; (echo x > ${{bb}}/oops) 2>/dev/null && echo WROTE-INPUT || echo ro-input) > $out 2>&1; echo done" {{}};
  fodNet = mk "fod-net" "nc -w 2 127.0.0.1 {port} < /dev/null > $out" {{ outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = hash; }};
}}"#,
            secret = secret_path.trim(),
        ),
    )
    .unwrap();
    let hash = {
        let p = tmp.path().join("greeting");
        std::fs::write(&p, "hello from the host\n").unwrap();
        nix_ok("nix-hash", &["--type", "sha256", "--flat", s(&p)])
            .trim()
            .to_string()
    };
    let drvs = nix_ok(
        "nix-instantiate",
        &[
            "--store",
            s(&store),
            s(&expr),
            "--arg",
            "busybox",
            s(&busybox),
            "--argstr",
            "hash",
            &hash,
            "-A",
            "noNet",
            "-A",
            "fodNet",
        ],
    );
    let drvs: Vec<&str> = drvs.lines().collect();
    let out = kiln_ok(&["--store", s(&store), "build", "--no-link", drvs[0], drvs[1]]);
    let outs: Vec<&str> = out.lines().collect();
    let report = std::fs::read_to_string(store.join(outs[0].trim_start_matches('/'))).unwrap();
    let lines: Vec<&str> = report
        .lines()
        .filter(|l| !l.contains("nc:") && !l.contains("can't"))
        .collect();
    assert_eq!(
        lines,
        ["blocked", "hidden", "ro-root", "ro-input"],
        "{report}"
    );
    let fetched = std::fs::read_to_string(store.join(outs[1].trim_start_matches('/'))).unwrap();
    assert_eq!(fetched, "hello from the host\n");
}

/// kiln lends network namespaces to one build after another; a builder that used the
/// network must not leave the next one a namespace with traffic counters or sockets.
#[test]
fn each_builder_gets_an_unused_network() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("net.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ]; };
  report = "grep lo: /proc/net/dev; grep '^TCP:' /proc/net/sockstat";
  # Retried until the listener is up (it may start late on a busy machine).
  talker = mk "talker" "(nc -l -p 5000 > got & for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 0.1; echo hi | nc 127.0.0.1 5000 && break; done; wait; cat got; ${report}) > $out 2>&1; echo done";
  # The pool may hand out a spare first, so the talker's namespace comes back
  # a build or two later.
  quiet = n: dep: mk "quiet-${toString n}" "(echo after ${dep}; ${report}) > $out; echo done";
  q1 = quiet 1 talker; q2 = quiet 2 q1; q3 = quiet 3 q2;
in [ talker q1 q2 q3 ]"#,
    )
    .unwrap();
    let drvs = instantiate(&store, &expr, &busybox, None);
    let drvs: Vec<&str> = drvs.lines().collect();
    let mut args = vec!["--store", s(&store), "build", "--no-link", "-j1"];
    args.extend(&drvs);
    let out = kiln_ok(&args);
    let outs: Vec<&str> = out.lines().collect();
    let read = |p: &str| std::fs::read_to_string(store.join(p.trim_start_matches('/'))).unwrap();
    let counters = |report: &str| -> Vec<u64> {
        let line = report.lines().find(|l| l.contains("lo:")).expect(report);
        line.split_once(':')
            .unwrap()
            .1
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect()
    };
    // Whether or not busybox's nc got "hi" across, the attempt itself is traffic.
    let talker = read(outs[0]);
    assert!(
        counters(&talker).iter().any(|&c| c > 0),
        "the first builder did not use its loopback: {talker}"
    );
    for out in &outs[1..] {
        let quiet = read(out);
        assert!(
            counters(&quiet).iter().all(|&c| c == 0),
            "a later builder saw traffic: {quiet}"
        );
        let tcp = quiet.lines().find(|l| l.starts_with("TCP:")).expect(&quiet);
        assert!(
            tcp.contains("inuse 0 ") && tcp.contains(" tw 0 "),
            "{quiet}"
        );
    }
}

/// Each builder sleeps, and kiln prints "building '<drv>'" when it starts one.
#[test]
fn concurrent_builders_build_each_output_once() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("slow.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: deps: derivation { inherit name; system = "x86_64-linux"; builder = "${bb}/sh";
    args = [ "-c" "sleep 0.3; echo ${name} ${toString deps} > $out" ]; };
  a = mk "a" []; b = mk "b" [ a ]; c = mk "c" [ a ]; d = mk "d" [ b c ]; e = mk "e" [ c ];
in { inherit d e; nixSide = mk "nix-side" [ a c ]; }"#,
    )
    .unwrap();
    let inst = |attr: &str| instantiate(&store, &expr, &busybox, Some(attr));
    let (d, e, nix_side) = (inst("d"), inst("e"), inst("nixSide"));
    let spawn = |drv: &str| {
        kiln()
            .args(["--store", s(&store), "build", "--no-link", drv])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let k1 = spawn(&d);
    let k2 = spawn(&e);
    let n = nix_command("nix-store")
        .args(nix_realise_args(&store, &[&nix_side]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut built: Vec<String> = Vec::new();
    for child in [k1, k2] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        for line in BufReader::new(stderr.as_bytes()).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("building '") {
                built.push(rest.trim_end_matches("'...").to_string());
            }
        }
    }
    let nix_out = n.wait_with_output().unwrap();
    assert!(
        nix_out.status.success(),
        "{}",
        String::from_utf8_lossy(&nix_out.stderr)
    );
    for line in String::from_utf8_lossy(&nix_out.stderr).lines() {
        if let Some(rest) = line.strip_prefix("building '") {
            built.push(rest.trim_end_matches("'...").to_string());
        }
    }
    let mut sorted = built.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        built.len(),
        "some derivation was built twice: {built:?}"
    );
    assert_store_verifies(&store);
}

#[test]
fn timeouts_and_keep_going() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("t.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ]; };
in {
  slow = mk "slow" "sleep 30; echo late > $out";
  quiet = mk "quiet" "echo started; sleep 30; echo late > $out";
  bad = mk "bad" "exit 1";
  good = mk "good" "sleep 1; echo fine > $out";
}"#,
    )
    .unwrap();
    let inst = |attr: &str| instantiate(&store, &expr, &busybox, Some(attr));
    let started = std::time::Instant::now();
    let (ok, _, stderr) = run_kiln(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "--timeout",
        "1",
        &inst("slow"),
    ]);
    assert!(
        !ok && stderr.contains("timed out after 1 seconds"),
        "{stderr}"
    );
    let (ok, _, stderr) = run_kiln(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "--max-silent-time",
        "1",
        &inst("quiet"),
    ]);
    assert!(
        !ok && stderr.contains("timed out after 1 seconds of silence"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the builders were not killed"
    );

    // Without --keep-going the failure stops the run; with it, `good` is still built.
    let (bad, good) = (inst("bad"), inst("good"));
    let (ok, _, stderr) = run_kiln(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "-j",
        "1",
        &bad,
        &good,
    ]);
    assert!(
        !ok && stderr.contains("failed with exit code 1"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run_kiln(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "-k",
        &bad,
        &good,
    ]);
    assert!(!ok, "{stderr}");
    let good_out = nix_ok(
        "nix-store",
        &["--store", s(&store), "-q", "--outputs", &good],
    );
    assert!(
        nix(
            "nix-store",
            &["--store", s(&store), "-q", "--hash", good_out.trim()]
        )
        .status
        .success(),
        "with --keep-going the independent derivation is built: {stdout} {stderr}"
    );
}

/// As an ordinary user (user namespaces, no build users), kiln builds the same output.
#[test]
fn builds_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let busybox = busybox_dir(tmp.path());
    let store = tmp.path().join("user-store");
    let expr = tmp.path().join("u.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  a = derivation { name = "a"; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" "id > $out; hostname >> $out" ]; };
in derivation { name = "b"; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" "cat ${a} > $out" ]; }"#,
    )
    .unwrap();
    let drv = instantiate(&store, &expr, &busybox, None);
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534", s(tmp.path())])
        .status()
        .unwrap();
    assert!(chown.success());
    // The checkout may sit below a directory only root can enter (a `mktemp -d`), so
    // the unprivileged user runs a copy of kiln (its own sandbox helper) from here.
    let kiln_copy = tmp.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &kiln_copy).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("HOME={}", s(tmp.path())))
        .arg(format!("TMPDIR={}", s(tmp.path())))
        .arg(&kiln_copy)
        .args(["--store", s(&store), "build", "--no-link", drv.trim()])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let built = std::fs::read_to_string(store.join(path.trim_start_matches('/'))).unwrap();
    assert_eq!(built, "uid=1000(nixbld) gid=100(nixbld)\nlocalhost\n");
    assert_store_verifies(&store);
}

/// Ctrl-C (SIGINT) stops the builders at once and leaves nothing behind.
#[test]
fn interrupt_kills_builders_and_cleans_up() {
    let (tmp, busybox, store) = scratch();
    let drv = instantiate_text(
        tmp.path(),
        "i.nix",
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; }; in
derivation { name = "forever"; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" "mkdir $out; echo started; sleep 3600" ]; }"#,
        &store,
        &busybox,
    );
    let build_tmp = build_tmp(tmp.path());
    let child = kiln_build(&store, &build_tmp)
        .args(["-L", drv.trim()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the builder runs (its chroot exists), then interrupt.
    let (out, took) = interrupt_when(
        child,
        || chroots_in(&store) > 0,
        std::time::Duration::from_millis(300),
        "the build never started",
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "interrupt took too long"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("interrupted by the user"), "{stderr}");
    assert_nothing_left(&store, &build_tmp, |n| {
        n.ends_with(".chroot") || n.ends_with("-forever") || n.contains("chroot-trash")
    });
    assert_store_verifies(&store);
}

/// `--sandbox-path /bin/sh=HOST` binds a host file where the builder expects it, as
/// Nix's `sandbox-paths` does; without it the builder is not found.
#[test]
fn sandbox_paths_bind_host_files() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("p.nix");
    std::fs::write(
        &expr,
        r#"derivation { name = "plain-sh"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo via bin sh > $out" ]; }"#,
    )
    .unwrap();
    let drv = nix_ok("nix-instantiate", &["--store", s(&store), s(&expr)]);
    let (ok, _, stderr) = run_kiln(&["--store", s(&store), "build", "--no-link", drv.trim()]);
    assert!(!ok && stderr.contains("/bin/sh"), "{stderr}");
    let bind = format!("/bin/sh={}", s(&busybox.join("sh")));
    let out = kiln_ok(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "--sandbox-path",
        &bind,
        drv.trim(),
    ]);
    let built = std::fs::read_to_string(store.join(out.trim().trim_start_matches('/'))).unwrap();
    assert_eq!(built, "via bin sh\n");
}

/// A fixed output with the wrong hash fails with Nix's message and, as in Nix, what was
/// produced is registered under its own content-addressed path.
#[test]
fn fixed_output_hash_mismatch_matches_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let busybox = busybox_dir(tmp.path());
    let expr = tmp.path().join("bad.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; }; in
derivation { name = "fodbad"; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" "echo actual > $out" ];
  outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000000000000000"; }"#,
    )
    .unwrap();
    let mut registered = Vec::new();
    let mut messages = Vec::new();
    for (who, store) in [
        ("nix", tmp.path().join("n")),
        ("kiln", tmp.path().join("k")),
    ] {
        let drv = instantiate(&store, &expr, &busybox, None);
        let out = if who == "nix" {
            nix("nix-store", &nix_realise_args(&store, &[drv.trim()]))
        } else {
            kiln()
                .args(["--store", s(&store), "build", "--no-link", drv.trim()])
                .output()
                .unwrap()
        };
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let start = stderr.find("hash mismatch").expect("mismatch message");
        // Nix's error printer indents continuation lines; compare the words.
        messages.push(
            stderr[start..]
                .split_whitespace()
                .take(8)
                .collect::<Vec<_>>()
                .join(" "),
        );
        let all = nix_ok(
            "nix",
            &["path-info", "--store", s(&store), "--all", "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&all).unwrap();
        let fod: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["path"].as_str().unwrap().ends_with("-fodbad"))
            .map(|o| {
                (
                    o["path"].as_str().unwrap().to_string(),
                    o["ca"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        registered.push(fod);
        assert_store_verifies_nix_only(&store);
    }
    assert_eq!(messages[0], messages[1]);
    assert_eq!(registered[0], registered[1]);
    assert_eq!(registered[0].len(), 1);
}

fn assert_store_verifies_nix_only(root: &Path) {
    let out = nix(
        "nix-store",
        &["--store", s(root), "--verify", "--check-contents"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `outputChecks.<output>` with structured attributes: every check passes or fails as
/// under Nix 2.8, with the same message (the closure includes the output itself here,
/// unlike the top-level attributes of legacy derivations).
#[test]
fn structured_output_checks_match_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let busybox = busybox_dir(tmp.path());
    let expr = tmp.path().join("checks.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: checks: derivation {
    inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; __structuredAttrs = true;
    args = [ "-c" ''out=$(sed -n 's/.*"outputs":{"out":"\([^"]*\)".*/\1/p' /build/.attrs.json); ${script}'' ];
    outputChecks.out = checks; };
in {
  selfOnly = mk "self-only" "echo hi > $out" { allowedRequisites = [ "out" ]; maxSize = 1000; };
  emptyRequisites = mk "empty-requisites" "echo hi > $out" { allowedRequisites = [ ]; };
  emptyReferences = mk "empty-references" "echo hi > $out" { allowedReferences = [ ]; };
  disallowed = mk "disallowed" "echo ${bb} > $out" { disallowedReferences = [ bb ]; };
  tooLarge = mk "too-large" "echo hi > $out" { maxSize = 10; };
  closureTooLarge = mk "closure-too-large" "echo ${bb} > $out" { maxClosureSize = 5000; };
  closureFine = mk "closure-fine" "echo ${bb} > $out" { maxClosureSize = 100000000; allowedReferences = [ bb ]; };
  badSpec = mk "bad-spec" "echo hi > $out" { allowedReferences = [ "nonsense" ]; };
  notStrings = mk "not-strings" "echo hi > $out" { allowedReferences = [ 1 ]; };
}"#,
    )
    .unwrap();
    // The error line and the paths listed under it, indentation aside; or the output.
    let verdict = |output: &std::process::Output| -> Vec<String> {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        match lines.iter().position(|l| l.starts_with("error: ")) {
            None => lines
                .iter()
                .filter(|l| l.starts_with("/nix/store/"))
                .map(|l| l.to_string())
                .collect(),
            Some(at) => std::iter::once(lines[at].to_string())
                .chain(
                    lines[at + 1..]
                        .iter()
                        .take_while(|l| l.starts_with("  "))
                        .map(|l| l.trim().to_string()),
                )
                .collect(),
        }
    };
    let (nix_store, kiln_store) = (tmp.path().join("nix"), tmp.path().join("kiln"));
    let mut failures = 0;
    for attr in [
        "selfOnly",
        "emptyRequisites",
        "emptyReferences",
        "disallowed",
        "tooLarge",
        "closureTooLarge",
        "closureFine",
        "badSpec",
        "notStrings",
    ] {
        let nix_drv = instantiate(&nix_store, &expr, &busybox, Some(attr));
        let kiln_drv = instantiate(&kiln_store, &expr, &busybox, Some(attr));
        assert_eq!(nix_drv, kiln_drv);
        let theirs = nix("nix-store", &nix_realise_args(&nix_store, &[&nix_drv]));
        let ours = kiln()
            .args(["--store", s(&kiln_store), "build", "--no-link", &kiln_drv])
            .output()
            .unwrap();
        assert_eq!(ours.status.success(), theirs.status.success(), "{attr}");
        assert_eq!(verdict(&ours), verdict(&theirs), "{attr}");
        failures += usize::from(!ours.status.success());
    }
    assert_eq!(failures, 6, "the fixture fails six checks");
    assert_store_verifies(&kiln_store);
}

/// Store paths among `sandbox-paths` sources bring their closure into the sandbox, as in
/// Nix (`/bin/sh=/nix/store/…-bash/bin/sh` needs bash's libraries), whether named by
/// their logical path or by their path on the host.
#[test]
fn sandbox_paths_bring_their_store_closure() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("c.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; }; in {
  dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" "echo ${bb}/sh > $out" ]; };
  plain = derivation { name = "plain"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "(ls /nix/store; cat /dep) > $out; echo done" ]; };
}"#,
    )
    .unwrap();
    let dep_drv = instantiate(&store, &expr, &busybox, Some("dep"));
    let plain_drv = instantiate(&store, &expr, &busybox, Some("plain"));
    let dep = kiln_ok(&["--store", s(&store), "build", "--no-link", &dep_drv]);
    let dep = dep.trim();
    let bb = std::fs::read_to_string(store.join(dep.trim_start_matches('/'))).unwrap();
    let bb_sh = bb.trim();
    // /bin/sh by its host path, /dep by its logical one.
    let sh_bind = format!("/bin/sh={}", s(&store.join(bb_sh.trim_start_matches('/'))));
    let dep_bind = format!("/dep={dep}");
    let out = kiln_ok(&[
        "--store",
        s(&store),
        "build",
        "--no-link",
        "--sandbox-path",
        &sh_bind,
        "--sandbox-path",
        &dep_bind,
        &plain_drv,
    ]);
    let seen = std::fs::read_to_string(store.join(out.trim().trim_start_matches('/'))).unwrap();
    let base = |p: &str| {
        p.trim_start_matches("/nix/store/")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    // The builder's own output exists by the time `ls` runs (the redirection made it).
    let mut listed: Vec<&str> = seen.lines().filter(|l| !l.ends_with("-plain")).collect();
    let last = listed.pop().unwrap();
    assert_eq!(last, bb_sh, "{seen}");
    let mut want = vec![base(bb_sh), base(dep)];
    want.sort();
    assert_eq!(listed, want, "{seen}");
}
