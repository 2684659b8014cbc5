//! Builtin builders (`builtin:fetchurl`, `builtin:buildenv`) against real Nix 2.8:
//! the same derivation realised by `nix-store --realise` (sandboxed) and by kiln, each
//! in its own scratch store, must end the same way: same output path and NAR hash, or
//! the same failure in the build log. Before kiln had builtins, every one of these
//! builds failed with "executing 'builtin:fetchurl': No such file or directory".

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// How one side's build ended.
#[derive(Debug, PartialEq, Eq)]
struct Ending {
    success: bool,
    /// Output path and NAR hash (from `nix-store -q --hash`) on success.
    output: Option<(String, String)>,
    /// The build log without `@nix` progress lines (whose ids and timing differ).
    log: String,
}

/// `expr(side)` is an expression of `busybox` whose derivation is realised; `side` is
/// `"nix"` or `"kiln"`, for expressions that must differ (a server's URL, say).
fn realise_both(
    tmp: &Path,
    busybox: &Path,
    expr: impl Fn(&str) -> String,
) -> [(Ending, String); 2] {
    ["nix", "kiln"].map(|side| {
        let store = tmp.join(format!("store-{side}"));
        let drv = instantiate_text(tmp, &format!("{side}.nix"), &expr(side), &store, busybox);
        let out = if side == "nix" {
            nix("nix-store", &nix_realise_args(&store, &[&drv]))
        } else {
            kiln_build(&store, &build_tmp_for(tmp))
                .arg(&drv)
                .output()
                .unwrap()
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let output = out.status.success().then(|| {
            let path = nix_ok(
                "nix-store",
                &["--store", s(&store), "-q", "--outputs", &drv],
            )
            .trim()
            .to_string();
            let hash = nix_ok("nix-store", &["--store", s(&store), "-q", "--hash", &path])
                .trim()
                .to_string();
            (path, hash)
        });
        let log = nix("nix-store", &["--store", s(&store), "--read-log", &drv]);
        let log: String = String::from_utf8_lossy(&log.stdout)
            .lines()
            .filter(|l| !l.starts_with("@nix "))
            .map(|l| format!("{l}\n"))
            .collect();
        (
            Ending {
                success: out.status.success(),
                output,
                log,
            },
            stderr,
        )
    })
}

fn build_tmp_for(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("buildtmp");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_same(tmp: &Path, busybox: &Path, expr: impl Fn(&str) -> String) -> Ending {
    let [(nix_end, nix_err), (kiln_end, kiln_err)] = realise_both(tmp, busybox, expr);
    assert_eq!(
        nix_end, kiln_end,
        "nix said: {nix_err}\nkiln said: {kiln_err}"
    );
    kiln_end
}

/// A file of the test directory as a store source, and its flat sha256 (base 32).
fn source_file(tmp: &Path, name: &str, contents: &[u8]) -> (std::path::PathBuf, String) {
    let path = tmp.join(name);
    std::fs::write(&path, contents).unwrap();
    let hash = nix_ok(
        "nix-hash",
        &["--type", "sha256", "--flat", "--base32", s(&path)],
    )
    .trim()
    .to_string();
    (path, hash)
}

fn fetchurl_expr(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"{{ busybox }}: derivation {{ name = "{name}"; system = "builtin"; builder = "builtin:fetchurl";
  url = {url}; {extra} }}"#
    )
}

#[test]
fn fetchurl_of_an_input_file_matches_nix_flat_and_executable() {
    let (tmp, busybox, _) = scratch();
    let (file, flat_hash) = source_file(tmp.path(), "hello.txt", b"hello from a source\n");
    // An executable output must be hashed as a NAR (as <nix/fetchurl.nix> does).
    let exec_copy = tmp.path().join("exec-copy");
    std::fs::write(&exec_copy, b"hello from a source\n").unwrap();
    std::fs::set_permissions(
        &exec_copy,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let nar_hash = nix_ok("nix-hash", &["--type", "sha256", "--base32", s(&exec_copy)])
        .trim()
        .to_string();
    let url = format!(r#""file://${{builtins.path {{ path = {}; }}}}""#, s(&file));
    for (name, extra) in [
        (
            "flat",
            format!(r#"outputHashMode = "flat"; outputHash = "{flat_hash}";"#),
        ),
        (
            "exec",
            format!(
                r#"executable = true; outputHashMode = "recursive"; outputHash = "{nar_hash}";"#
            ),
        ),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let expr = fetchurl_expr(
            name,
            &url,
            &format!(r#"{extra} outputHashAlgo = "sha256";"#),
        );
        let end = assert_same(&dir, &busybox, |_| expr.clone());
        assert!(end.success, "{end:?}");
    }
}

#[test]
fn fetchurl_unpacks_a_nar_and_an_xz_nar_like_nix() {
    let (tmp, busybox, _) = scratch();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/file"), "in a nar\n").unwrap();
    std::os::unix::fs::symlink("sub/file", tree.join("link")).unwrap();
    let nar = nix_command("nix-store")
        .args(["--dump", s(&tree)])
        .output()
        .unwrap();
    assert!(nar.status.success());
    std::fs::write(tmp.path().join("tree.nar"), &nar.stdout).unwrap();
    let xz = std::process::Command::new("xz")
        .args(["-k", s(&tmp.path().join("tree.nar"))])
        .status()
        .expect("xz (xz-utils) is needed");
    assert!(xz.success());
    let hash = nix_ok("nix-hash", &["--type", "sha256", "--base32", s(&tree)])
        .trim()
        .to_string();
    for file in ["tree.nar", "tree.nar.xz"] {
        let dir = tmp.path().join(file.replace('.', "-"));
        std::fs::create_dir(&dir).unwrap();
        let url = format!(
            r#""file://${{builtins.path {{ path = {}; }}}}""#,
            s(&tmp.path().join(file))
        );
        let expr = fetchurl_expr(
            "unpacked",
            &url,
            &format!(
                r#"unpack = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "{hash}";"#
            ),
        );
        let end = assert_same(&dir, &busybox, |_| expr.clone());
        assert!(end.success, "{end:?}");
    }
}

#[test]
fn fetchurl_hash_mismatch_fails_with_nix_words() {
    let (tmp, busybox, _) = scratch();
    let (file, _) = source_file(tmp.path(), "hello.txt", b"not what was promised\n");
    let expr = fetchurl_expr(
        "mismatch",
        &format!(r#""file://${{builtins.path {{ path = {}; }}}}""#, s(&file)),
        r#"outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0000000000000000000000000000000000000000000000000000";"#,
    );
    let [(nix_end, nix_err), (kiln_end, kiln_err)] =
        realise_both(tmp.path(), &busybox, |_| expr.clone());
    assert_eq!(nix_end, kiln_end);
    assert!(!kiln_end.success);
    let words = |stderr: &str| {
        let start = stderr.find("hash mismatch").expect("mismatch message");
        stderr[start..]
            .split_whitespace()
            .take(8)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(words(&nix_err), words(&kiln_err));
}

#[test]
fn unusable_builtin_derivations_fail_with_nix_messages() {
    let (tmp, busybox, _) = scratch();
    let (file, hash) = source_file(tmp.path(), "hello.txt", b"x\n");
    let url = format!(r#""file://${{builtins.path {{ path = {}; }}}}""#, s(&file));
    let cases = [
        (
            "nourl",
            format!(
                r#"{{ busybox }}: derivation {{ name = "nourl"; system = "builtin"; builder = "builtin:fetchurl";
  outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "{hash}"; }}"#
            ),
        ),
        // Not fixed-output and no outputHashMode: Nix fails before downloading.
        ("nomode", fetchurl_expr("nomode", &url, "")),
        (
            "unknown",
            r#"{ busybox }: derivation { name = "unknown"; system = "builtin"; builder = "builtin:frobnicate"; }"#
                .to_string(),
        ),
        ("missing", fetchurl_expr("missing", r#""file:///nonexistent/file""#,
            &format!(r#"outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "{hash}";"#))),
    ];
    for (name, expr) in cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let end = assert_same(&dir, &busybox, |_| expr.clone());
        assert!(!end.success, "{name}: {end:?}");
        assert!(end.log.contains("error:"), "{name}: {end:?}");
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `/file` is `body`, `/flaky/…` answers 503 the
/// first time each path is asked for, anything else 404. Returns its port.
fn serve(body: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let (status, content): (&str, &[u8]) =
                if path == "/file" || (path.starts_with("/flaky/") && !seen.insert(path.clone())) {
                    ("200 OK", body)
                } else if path.starts_with("/flaky/") {
                    ("503 Service Unavailable", b"")
                } else {
                    ("404 Not Found", b"")
                };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            let _ = stream.write_all(content);
        }
    });
    (port, requests)
}

const SERVED: &[u8] = b"served over loopback http\n";

#[test]
fn fetchurl_over_loopback_http_matches_nix_with_404_and_retry() {
    let (tmp, busybox, _) = scratch();
    let (port, requests) = serve(SERVED);
    let (_, hash) = source_file(tmp.path(), "served", SERVED);
    let fixed =
        format!(r#"outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "{hash}";"#);

    let dir = tmp.path().join("ok");
    std::fs::create_dir(&dir).unwrap();
    let end = assert_same(&dir, &busybox, |_| {
        fetchurl_expr(
            "served",
            &format!(r#""http://127.0.0.1:{port}/file""#),
            &fixed,
        )
    });
    assert!(end.success, "{end:?}");

    // Not found: no retry, the same message.
    let before = requests.load(Ordering::SeqCst);
    let dir = tmp.path().join("404");
    std::fs::create_dir(&dir).unwrap();
    let end = assert_same(&dir, &busybox, |_| {
        fetchurl_expr(
            "gone",
            &format!(r#""http://127.0.0.1:{port}/gone""#),
            &fixed,
        )
    });
    assert!(!end.success);
    assert!(end.log.contains("HTTP error 404 ('Not Found')"), "{end:?}");
    assert_eq!(
        requests.load(Ordering::SeqCst) - before,
        2,
        "one request per side"
    );

    // A 503 first, then the file: both retry and succeed (by name, through the
    // chroot's resolver).
    let dir = tmp.path().join("flaky");
    std::fs::create_dir(&dir).unwrap();
    let before = requests.load(Ordering::SeqCst);
    let end = assert_same(&dir, &busybox, |side| {
        fetchurl_expr(
            "flaky",
            &format!(r#""http://localhost:{port}/flaky/{side}""#),
            &fixed,
        )
    });
    assert!(end.success, "{end:?}");
    assert_eq!(
        requests.load(Ordering::SeqCst) - before,
        4,
        "two requests per side"
    );
}

#[test]
fn fetchurl_without_fixed_output_has_no_host_network() {
    let (tmp, busybox, _) = scratch();
    let (port, requests) = serve(SERVED);
    let end = assert_same(tmp.path(), &busybox, |_| {
        fetchurl_expr(
            "private",
            &format!(r#""http://127.0.0.1:{port}/file""#),
            r#"outputHashMode = "flat";"#,
        )
    });
    assert!(!end.success);
    assert!(end.log.contains("Couldn't connect to server"), "{end:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[test]
fn nix_corepkgs_fetchurl_builds_like_nix() {
    let (tmp, busybox, _) = scratch();
    let (file, hash) = source_file(tmp.path(), "payload", b"fetched by corepkgs\n");
    let expr = format!(
        r#"{{ busybox }}: import <nix/fetchurl.nix> {{
  url = "file://${{builtins.path {{ path = {}; }}}}"; name = "payload"; sha256 = "{hash}"; }}"#,
        s(&file)
    );
    let end = assert_same(tmp.path(), &busybox, |_| expr.clone());
    assert!(end.success, "{end:?}");
}

/// Packages built by busybox: `a` (priority 5) and `b` (priority 3) both have
/// `bin/tool` and their own `share/doc/*`; `b` propagates `c`, which has
/// `bin/extra`, a dot file and a `nix-support`; `d` has `share/doc/a/README` as `a` does,
/// at the same priority.
fn buildenv_expr(with_same_priority: bool) -> String {
    let d = if with_same_priority {
        r#" "true" "5" "1" d"#
    } else {
        ""
    };
    format!(
        r#"{{ busybox }}:
let
  bb = builtins.path {{ path = busybox; name = "busybox"; }};
  pkg = name: script: derivation {{ inherit name; system = builtins.currentSystem; builder = "${{bb}}/sh";
    args = [ "-c" script ]; PATH = bb; }};
  c = pkg "c" "mkdir -p $out/bin $out/nix-support $out/.hidden; echo c > $out/bin/extra; echo x > $out/nix-support/setup-hook";
  a = pkg "a" "mkdir -p $out/bin $out/share/doc/a; echo a > $out/bin/tool; echo a > $out/share/doc/a/README";
  b = pkg "b" "mkdir -p $out/bin $out/share/doc/b $out/nix-support; echo b > $out/bin/tool; echo b > $out/share/doc/b/README; echo ${{c}} > $out/nix-support/propagated-user-env-packages";
  d = pkg "d" "mkdir -p $out/share/doc/a; echo d > $out/share/doc/a/README";
in derivation {{
  name = "user-environment"; system = "builtin"; builder = "builtin:buildenv";
  manifest = builtins.toFile "manifest.nix" "[ ]";
  derivations = [ "true" "5" "1" a "true" "3" "1" b{d} ];
  inherit c;
}}"#
    )
}

#[test]
fn buildenv_merges_packages_like_nix() {
    let (tmp, busybox, _) = scratch();
    let end = assert_same(tmp.path(), &busybox, |_| buildenv_expr(false));
    assert!(end.success, "{end:?}");
}

#[test]
fn buildenv_same_priority_collision_fails_like_nix() {
    let (tmp, busybox, _) = scratch();
    let end = assert_same(tmp.path(), &busybox, |_| buildenv_expr(true));
    assert!(!end.success);
    assert!(end.log.contains("have the same priority"), "{end:?}");
}

#[test]
fn unpack_channel_matches_nix() {
    let (tmp, busybox, _) = scratch();
    let top = tmp.path().join("tree/nixexprs");
    std::fs::create_dir_all(top.join("lib")).unwrap();
    std::fs::write(top.join("default.nix"), "{ }\n").unwrap();
    std::fs::write(top.join("lib/x.nix"), "1\n").unwrap();
    let tarball = tmp.path().join("channel.tar.gz");
    let tar = std::process::Command::new("tar")
        .args([
            "-C",
            s(&tmp.path().join("tree")),
            "-czf",
            s(&tarball),
            "nixexprs",
        ])
        .status()
        .unwrap();
    assert!(tar.success());
    let expr = format!(
        r#"{{ busybox }}: derivation {{ name = "channel"; system = "builtin"; builder = "builtin:unpack-channel";
  src = builtins.path {{ path = {}; }}; channelName = "mine"; }}"#,
        s(&tarball)
    );
    let end = assert_same(tmp.path(), &busybox, |_| expr.clone());
    assert!(end.success, "{end:?}");
}
