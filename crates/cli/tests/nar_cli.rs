//! `kiln nar dump|restore|ls|cat` end to end, against Nix 2.8 as the oracle, and with
//! hostile archives: clean refusals naming the problem and its byte offset, no panics,
//! nothing left behind and nothing written outside the target.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::*;

/// Runs kiln with `stdin` fed to it.
fn kiln_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = kiln()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln");
    // kiln may stop reading early on bad input; a broken pipe here is expected then.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn kiln_bytes(args: &[&str]) -> Vec<u8> {
    let out = kiln().args(args).output().expect("run kiln");
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn nix_bytes(program: &str, args: &[&str]) -> Vec<u8> {
    let out = nix(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A small tree (a file, a symlink, an executable in a subdirectory) plus some awkward names and an empty file and directory.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("README"), "hi\n").unwrap();
    symlink("README", dir.join("link")).unwrap();
    fs::write(dir.join("sub/run"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("sub/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join(" spaced é"), "").unwrap();
    fs::create_dir(dir.join(".empty")).unwrap();
    fs::write(dir.join("sub/-dash"), vec![0u8; 17]).unwrap();
}

fn tree_nar(tmp: &Path) -> (PathBuf, PathBuf) {
    let tree = tmp.join("tree");
    make_tree(&tree);
    let nar = tmp.join("tree.nar");
    fs::write(&nar, nix_bytes("nix-store", &["--dump", s(&tree)])).unwrap();
    (tree, nar)
}

/// Every object under `root` with its type, contents or target, and mode: all of it
/// with `exact_modes`, otherwise only what does not depend on the umask (a file's
/// owner-execute bit).
fn snapshot(root: &Path, exact_modes: bool) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode();
        let desc = if meta.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            format!("dir {:o}", if exact_modes { mode } else { 0 })
        } else {
            let mode = if exact_modes { mode } else { mode & 0o100 };
            format!("file {mode:o} {:?}", fs::read(&path).unwrap())
        };
        out.push((path.strip_prefix(root).unwrap().to_path_buf(), desc));
    }
    out.sort();
    out
}

/// This process's umask, which kiln inherits (Linux: from /proc/self/status).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(value.trim(), 8).unwrap()
}

#[test]
fn dump_is_byte_identical_to_nix_store_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, nar) = tree_nar(tmp.path());
    assert!(kiln_bytes(&["nar", "dump", s(&tree)]) == fs::read(&nar).unwrap());
    let file = tree.join("sub/run");
    assert!(
        kiln_bytes(&["nar", "dump", s(&file)]) == nix_bytes("nix-store", &["--dump", s(&file)])
    );
    let link = tree.join("link");
    assert!(
        kiln_bytes(&["nar", "dump", s(&link)]) == nix_bytes("nix-store", &["--dump", s(&link)])
    );
}

#[test]
fn restore_then_dump_round_trips_and_matches_nix_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, nar) = tree_nar(tmp.path());
    let bytes = fs::read(&nar).unwrap();
    let ours = tmp.path().join("ours");
    let out = kiln_with_stdin(&["nar", "restore", s(&ours)], &bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(kiln_bytes(&["nar", "dump", s(&ours)]) == bytes);

    let theirs = tmp.path().join("theirs");
    let mut child = nix_command("nix-store")
        .args(["--restore", s(&theirs)])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(child.wait().unwrap().success());
    // Nix 2.8 forces umask 022; modes can only agree exactly under that umask.
    let exact = umask() == 0o022;
    assert_eq!(snapshot(&ours, exact), snapshot(&theirs, exact));
}

#[test]
fn ls_matches_nix_nar_ls_long_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, nar) = tree_nar(tmp.path());
    let nar = s(&nar);
    for (ours, theirs) in [
        (vec!["nar", "ls", nar], vec!["nar", "ls", "-l", nar, "/"]),
        (
            vec!["nar", "ls", nar, "-R"],
            vec!["nar", "ls", "-lR", nar, "/"],
        ),
        (
            vec!["nar", "ls", nar, "/", "--recursive"],
            vec!["nar", "ls", "-lR", nar, "/"],
        ),
    ] {
        assert_eq!(kiln_ok(&ours), nix_ok("nix", &theirs), "{ours:?}");
    }
    // Paths stay relative to the archive root when listing a member.
    assert_eq!(
        kiln_ok(&["nar", "ls", nar, "sub"]),
        "-r--r--r--                   17 ./sub/-dash\n-r-xr-xr-x                   10 ./sub/run\n"
    );
    assert_eq!(
        kiln_ok(&["nar", "ls", nar, "/sub/run"]),
        "-r-xr-xr-x                   10 ./sub/run\n"
    );
    assert_eq!(
        kiln_ok(&["nar", "ls", nar, "link"]),
        "lrwxrwxrwx                    0 ./link -> README\n"
    );
}

#[test]
fn ls_of_a_single_file_nar_shows_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    fs::write(&file, "abc").unwrap();
    let nar = tmp.path().join("f.nar");
    fs::write(&nar, kiln_bytes(&["nar", "dump", s(&file)])).unwrap();
    assert_eq!(
        kiln_ok(&["nar", "ls", s(&nar)]),
        "-r--r--r--                    3 .\n"
    );
}

#[test]
fn cat_matches_nix_nar_cat() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, nar) = tree_nar(tmp.path());
    for member in ["/README", "/sub/run", "/sub/-dash", "/ spaced é"] {
        assert_eq!(
            kiln_bytes(&["nar", "cat", s(&nar), member]),
            nix_bytes("nix", &["nar", "cat", s(&nar), member]),
            "{member}"
        );
    }
}

fn assert_clean_failure(out: &Output, expected: &[impl AsRef<str>]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in expected {
        let part = part.as_ref();
        assert!(stderr.contains(part), "{stderr:?} lacks {part:?}");
    }
}

#[test]
fn member_errors_name_the_problem_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, nar) = tree_nar(tmp.path());
    let nar = s(&nar);
    let out = kiln().args(["nar", "cat", nar, "/sub"]).output().unwrap();
    assert_clean_failure(&out, &["'/sub' is not a regular file", "tree.nar"]);
    let out = kiln().args(["nar", "cat", nar, "/link"]).output().unwrap();
    assert_clean_failure(&out, &["'/link' is not a regular file"]);
    let out = kiln().args(["nar", "cat", nar, "/nope"]).output().unwrap();
    assert_clean_failure(&out, &["'/nope' does not exist", "tree.nar"]);
    let out = kiln().args(["nar", "ls", nar, "/nope"]).output().unwrap();
    assert_clean_failure(&out, &["'/nope' does not exist", "tree.nar"]);
    let missing = tmp.path().join("missing.nar");
    let out = kiln().args(["nar", "ls", s(&missing)]).output().unwrap();
    assert_clean_failure(&out, &["missing.nar", "No such file"]);
}

#[test]
fn dump_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    fs::create_dir(&dir).unwrap();
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = kiln().args(["nar", "dump", s(&dir)]).output().unwrap();
    assert_clean_failure(
        &out,
        &[&format!("file '{}' has an unsupported type", s(&fifo))],
    );
    let out = kiln()
        .args(["nar", "dump", s(&tmp.path().join("nope"))])
        .output()
        .unwrap();
    assert_clean_failure(&out, &["nope", "No such file"]);
}

fn token(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len() + (8 - bytes.len() % 8) % 8, 0);
    out
}

fn tokens(toks: &[&[u8]]) -> Vec<u8> {
    toks.iter().flat_map(|t| token(t)).collect()
}

/// Directory NAR with the given (name, node tokens) entries, in the given order.
fn dir_nar(entries: &[(&[u8], &[&[u8]])]) -> Vec<u8> {
    let mut out = tokens(&[b"nix-archive-1", b"(", b"type", b"directory"]);
    for (name, node) in entries {
        out.extend(tokens(&[b"entry", b"(", b"name", name, b"node"]));
        out.extend(tokens(node));
        out.extend(token(b")"));
    }
    out.extend(token(b")"));
    out
}

/// Directories nested `depth` levels, each holding the next as entry `d`.
fn deep_nar(depth: usize) -> Vec<u8> {
    let mut out = tokens(&[b"nix-archive-1"]);
    for _ in 0..depth {
        out.extend(tokens(&[
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"d",
            b"node",
        ]));
    }
    out.extend(tokens(&[b"(", b"type", b"directory", b")"]));
    for _ in 0..depth {
        out.extend(tokens(&[b")", b")"]));
    }
    out
}

const FILE: &[&[u8]] = &[b"(", b"type", b"regular", b"contents", b"gotcha", b")"];
const LINK_OUT: &[&[u8]] = &[b"(", b"type", b"symlink", b"target", b"../sentinel", b")"];

#[test]
fn hostile_nars_are_refused_cleanly() {
    let valid = dir_nar(&[(b"a", FILE)]);
    let mut padding = valid.clone();
    let pad_at = valid.len() - 17; // padding of the ')' closing the entry
    padding[pad_at] = 1;
    let cases: Vec<(&str, Vec<u8>, [String; 2])> = vec![
        (
            "unsorted",
            dir_nar(&[(b"b", FILE), (b"a", FILE)]),
            ["not sorted".into(), "byte 320".into()],
        ),
        (
            "symlink escape via duplicate",
            dir_nar(&[(b"a", LINK_OUT), (b"a", FILE)]),
            ["duplicate directory entry 'a'".into(), "byte 328".into()],
        ),
        (
            "name with slash",
            dir_nar(&[(b"a", LINK_OUT), (b"a/pwned", FILE)]),
            ["invalid entry name 'a/pwned'".into(), "byte 328".into()],
        ),
        (
            "dot-dot",
            dir_nar(&[(b"..", FILE)]),
            ["'.' and '..' are not allowed".into(), "byte 128".into()],
        ),
        (
            "truncated",
            valid[..100].to_vec(),
            ["truncated".into(), "byte 100".into()],
        ),
        (
            "trailing",
            [&valid[..], b"junk"].concat(),
            ["trailing data".into(), format!("byte {}", valid.len())],
        ),
        (
            "padding",
            padding,
            ["non-zero padding".into(), format!("byte {pad_at}")],
        ),
        (
            "not a nar",
            b"hello world, not a nar at all".to_vec(),
            ["bad magic".into(), "byte 0".into()],
        ),
        // The entry name token starts at byte 128 of a one-entry directory NAR.
        (
            "empty name",
            dir_nar(&[(b"", FILE)]),
            ["invalid entry name ''".into(), "byte 128".into()],
        ),
        (
            "NUL in name",
            dir_nar(&[(b"a\0b", FILE)]),
            ["invalid entry name".into(), "byte 128".into()],
        ),
        // Its node's type value starts at byte 192.
        (
            "unknown node type",
            dir_nar(&[(b"a", &[b"(", b"type", b"fifo", b")"])]),
            ["fifo".into(), "byte 192".into()],
        ),
        (
            "executable after contents",
            dir_nar(&[(
                b"a",
                &[
                    b"(",
                    b"type",
                    b"regular",
                    b"contents",
                    b"x",
                    b"executable",
                    b"",
                    b")",
                ],
            )]),
            ["executable".into(), "byte ".into()],
        ),
    ];
    for (what, nar, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let sentinel = tmp.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("keep"), "precious").unwrap();
        let before = snapshot(tmp.path(), true);
        let target = tmp.path().join("target");

        let out = kiln_with_stdin(&["nar", "restore", s(&target)], &nar);
        assert_clean_failure(&out, &expected);
        assert!(
            fs::symlink_metadata(&target).is_err(),
            "{what}: target left behind"
        );
        assert_eq!(
            snapshot(tmp.path(), true),
            before,
            "{what}: something outside the target changed"
        );

        let file = tmp.path().join("x.nar");
        fs::write(&file, &nar).unwrap();
        for out in ls_and_cat(&file) {
            assert_clean_failure(&out, &expected);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("x.nar"),
                "{what}"
            );
        }
    }
}

/// `kiln nar ls -R` and `kiln nar cat … /a` of the NAR file `file`.
fn ls_and_cat(file: &Path) -> [Output; 2] {
    [
        vec!["nar", "ls", s(file), "-R"],
        vec!["nar", "cat", s(file), "/a"],
    ]
    .map(|args| kiln().args(&args).output().unwrap())
}

/// Nesting beyond the reader's limit is refused with its offset by `ls` and `cat`;
/// `restore` refuses it too, by the limit or, earlier, because the paths outgrow
/// `PATH_MAX` under the target, and leaves nothing behind either way.
#[test]
fn over_deep_nesting_is_refused_cleanly() {
    let nar = deep_nar(kiln_nar::MAX_DEPTH + 50);
    // Each level is 136 bytes after the 24-byte magic; the type value of the first
    // directory beyond the limit is 32 bytes into its level.
    let at = format!("byte {}", 24 + kiln_nar::MAX_DEPTH * 136 + 32);
    let too_deep = format!("nested deeper than {} levels", kiln_nar::MAX_DEPTH);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.nar");
    fs::write(&file, &nar).unwrap();
    for out in ls_and_cat(&file) {
        assert_clean_failure(&out, &[&too_deep, &at]);
    }
    let target = tmp.path().join("target");
    let out = kiln_with_stdin(&["nar", "restore", s(&target)], &nar);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&too_deep) || stderr.contains("File name too long"),
        "{stderr}"
    );
    assert_clean_failure(&out, &["error: "]);
    assert!(fs::symlink_metadata(&target).is_err(), "target left behind");
}

#[test]
fn restore_refuses_an_existing_target() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, nar) = tree_nar(tmp.path());
    let target = tmp.path().join("existing");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "x").unwrap();
    let out = kiln_with_stdin(&["nar", "restore", s(&target)], &fs::read(&nar).unwrap());
    assert_clean_failure(&out, &["already exists"]);
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"x");
}

/// Regression: a 300-level tree was accepted by `store add-path` (and verified), but
/// `nar restore` of that very path's dump refused it as "nested deeper than 256 levels",
/// while `nix-store --restore` restores it.
#[test]
fn a_deep_tree_the_store_accepts_restores_from_its_own_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("deep");
    let deepest: PathBuf = std::iter::repeat_n("d", 299).collect();
    fs::create_dir_all(tree.join(&deepest)).unwrap();
    fs::write(tree.join(&deepest).join("leaf"), "bottom\n").unwrap();
    let store = tmp.path().join("store");
    let added = kiln_ok(&["--store", s(&store), "store", "add-path", s(&tree)]);
    let real = store.join(added.trim().trim_start_matches('/'));
    let nar = kiln_bytes(&["nar", "dump", s(&real)]);
    assert!(nar == nix_bytes("nix-store", &["--dump", s(&real)]));

    let ours = tmp.path().join("ours");
    let out = kiln_with_stdin(&["nar", "restore", s(&ours)], &nar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(ours.join(&deepest).join("leaf")).unwrap(),
        "bottom\n"
    );
    assert!(kiln_bytes(&["nar", "dump", s(&ours)]) == nar);
}

/// Every cause of an error used to be printed twice: library errors both named their
/// cause in their message and returned it as their `source`, and `{:#}` prints the
/// chain. Dumping a missing path is a two-level chain (kiln's context, the NAR
/// library's error, the system's error); each must appear once.
#[test]
fn an_error_chain_prints_each_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = kiln().args(["nar", "dump", s(&missing)]).output().unwrap();
    assert_clean_failure(&out, &["nope", "No such file"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(s(&missing)).count(),
        2,
        "kiln's context and the NAR library's error each name it once: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A reader that stops early (`| head -c 10`) closes the pipe: kiln used to report
/// "Broken pipe" as an error and exit 1. Like ripgrep, it now stops quietly with 0.
#[test]
fn a_closed_stdout_pipe_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    fs::create_dir(&dir).unwrap();
    // Far more than a pipe buffer, so kiln is still writing when the reader leaves.
    for i in 0..8 {
        fs::write(dir.join(format!("f{i}")), vec![b'x'; 1 << 20]).unwrap();
    }
    let nar = tmp.path().join("big.nar");
    let dumped = kiln().args(["nar", "dump", s(&dir)]).output().unwrap();
    assert!(dumped.status.success());
    fs::write(&nar, &dumped.stdout).unwrap();
    for (args, head) in [
        (
            vec!["nar", "dump", s(&dir)],
            &[13u8, 0, 0, 0, 0, 0, 0, 0, b'n', b'i'][..],
        ),
        (vec!["nar", "cat", s(&nar), "/f0"], &[b'x'; 10][..]),
    ] {
        let mut child = kiln()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 10];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert_eq!(&first[..], head, "{args:?}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
