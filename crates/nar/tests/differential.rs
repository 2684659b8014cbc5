//! Differential tests against Nix 2.8: random trees are dumped by us and by
//! `nix-store --dump`, hashed by us and by `nix-hash`, and restored by us and by
//! `nix-store --restore`; everything must agree byte for byte and mode for mode.
//! These fail (never skip) when Nix's tools are missing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use kiln_nar::{dump_path, restore, Error};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File { mode: u32, data: Vec<u8> },
    Link(String),
    Dir(BTreeMap<String, Node>),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            ".hidden", "-", "--flag", " spaced name ", "é", "日本語", "a.b", "a-b", "A", "a",
            "_", "~", "...", ".a", "new\nline", "tab\there", "#", "0",
        ])
        .prop_map(String::from),
        2 => "[a-zA-Z0-9._~ -]{1,12}".prop_filter("reserved", |s| s != "." && s != ".."),
    ]
}

fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => (0usize..=17).prop_flat_map(|n| vec(any::<u8>(), n)),
        3 => (4090usize..=4100).prop_flat_map(|n| vec(any::<u8>(), n)),
        // Crosses the dump and restore chunk size (256 KiB) at an odd length.
        1 => (0u8..4).prop_map(|seed| (0..300_007u32).map(|i| (i * 7 + u32::from(seed)) as u8).collect()),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/nix/store/00000000000000000000000000000000-foo",
            "/etc/passwd",
            "../up",
            "dangling",
            ".",
            "a/b/c",
            "é x",
            "./self",
        ])
        .prop_map(String::from),
        "[a-z./]{1,20}",
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        // Only the owner-x bit decides `executable`; group/other x bits must not.
        3 => (prop::sample::select(vec![0o644, 0o755, 0o744, 0o655, 0o611, 0o700, 0o600, 0o444]), contents())
            .prop_map(|(mode, data)| Node::File { mode, data }),
        1 => target().prop_map(Node::Link),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        btree_map(name(), inner, 0..6).prop_map(Node::Dir)
    })
}

fn root() -> impl Strategy<Value = Node> {
    prop_oneof![
        1 => leaf(),
        6 => btree_map(name(), tree(), 0..7).prop_map(Node::Dir),
    ]
}

fn materialize(path: &Path, node: &Node) {
    match node {
        Node::File { mode, data } => {
            fs::write(path, data).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        Node::Link(target) => symlink(target, path).unwrap(),
        Node::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                materialize(&path.join(name), child);
            }
        }
    }
}

/// Checks a restored tree against the model: contents, owner-x bits, targets, names.
fn matches_model(path: &Path, node: &Node) -> Result<(), TestCaseError> {
    let meta = fs::symlink_metadata(path).unwrap();
    match node {
        Node::File { mode, data } => {
            prop_assert!(meta.is_file());
            prop_assert_eq!(meta.permissions().mode() & 0o100, mode & 0o100);
            prop_assert_eq!(&fs::read(path).unwrap(), data);
        }
        Node::Link(target) => {
            prop_assert!(meta.file_type().is_symlink());
            let actual = fs::read_link(path).unwrap();
            prop_assert_eq!(actual.as_os_str().as_bytes(), target.as_bytes());
        }
        Node::Dir(entries) => {
            prop_assert!(meta.is_dir());
            let mut names: Vec<String> = fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            prop_assert_eq!(names, entries.keys().cloned().collect::<Vec<_>>());
            for (name, child) in entries {
                matches_model(&path.join(name), child)?;
            }
        }
    }
    Ok(())
}

fn our_dump(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    dump_path(path, &mut out).unwrap();
    out
}

fn nix_restore(nar: &[u8], target: &Path) {
    let mut child = Command::new(nix_tool("nix-store"))
        .arg("--restore")
        .arg(target)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run nix-store");
    child.stdin.take().unwrap().write_all(nar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nix-store --restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} vs {}, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_nix(node in root()) {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        materialize(&tree, &node);

        // (a) dump bytes
        let ours = our_dump(&tree);
        let theirs = nix("nix-store", &[os("--dump"), tree.as_os_str()]);
        prop_assert!(ours == theirs, "dump differs: {}", first_difference(&ours, &theirs));

        // (b) hashes
        let nix_sha256 = nix("nix-hash", &[os("--type"), os("sha256"), os("--base32"), tree.as_os_str()]);
        let nix_sha256 = String::from_utf8(nix_sha256).unwrap();
        prop_assert_eq!(nix_sha256.trim(), nix32(&sha256(&ours)));
        let nix_sha512 = nix("nix-hash", &[os("--type"), os("sha512"), tree.as_os_str()]);
        let nix_sha512 = String::from_utf8(nix_sha512).unwrap();
        prop_assert_eq!(nix_sha512.trim(), hex(&sha512(&ours)));

        // (c) restoring Nix's dump: same tree as Nix's own restore, and the same dump again
        let restored = tmp.path().join("restored");
        restore(&theirs[..], &restored).unwrap();
        let by_nix = tmp.path().join("by-nix");
        nix_restore(&theirs, &by_nix);
        prop_assert_eq!(shape(&restored), shape(&by_nix));
        assert_restore_modes(&restored, umask());
        assert_restore_modes(&by_nix, NIX_UMASK);
        matches_model(&restored, &node)?;
        let again = our_dump(&restored);
        prop_assert!(again == theirs, "re-dump differs: {}", first_difference(&again, &theirs));
    }
}

#[test]
fn spec_tree_fixture_matches_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let theirs = nix("nix-store", &[os("--dump"), tree.as_os_str()]);
    assert_eq!(our_dump(&tree), theirs);
}

/// Paths are used as given, like Nix: a trailing slash follows a symlink to a directory.
#[test]
fn path_spelling_is_respected_like_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let via = tmp.path().join("via");
    symlink("tree", &via).unwrap();
    let with_slash = tmp.path().join("via/");
    for path in [&via, &with_slash, &tree.join("sub/..")] {
        let theirs = nix("nix-store", &[os("--dump"), path.as_os_str()]);
        assert_eq!(our_dump(path), theirs, "{}", path.display());
    }
}

#[test]
fn unsupported_file_types_are_errors_like_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let fifo = dir.join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());

    let nix_status = Command::new(nix_tool("nix-store"))
        .arg("--dump")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!nix_status.success());

    let err = dump_path(&dir, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFileType { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("file '{}' has an unsupported type", fifo.display())
    );
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = dump_path(&missing, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Fs { .. }), "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

/// Nix 2.8 sets its umask to 022 at startup (so `nix-store --restore` always yields
/// 0644/0755), while `restore` applies the caller's umask to the same 0666/0777 modes.
const NIX_UMASK: u32 = 0o022;

#[test]
fn restore_modes_match_nix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let nar = our_dump(&tree);
    let ours = tmp.path().join("ours");
    restore(&nar[..], &ours).unwrap();
    let theirs = tmp.path().join("theirs");
    nix_restore(&nar, &theirs);
    assert_eq!(shape(&ours), shape(&theirs));
    assert_restore_modes(&ours, umask());
    assert_restore_modes(&theirs, NIX_UMASK);
    if umask() == NIX_UMASK {
        assert_eq!(snapshot(&ours), snapshot(&theirs));
    }
}

/// Nix ignores the caller's umask; checked by running it under a strict one.
#[test]
fn nix_restore_ignores_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let nar = tmp.path().join("tree.nar");
    fs::write(&nar, our_dump(&tree)).unwrap();
    let theirs = tmp.path().join("theirs");
    let script = format!(
        "umask 077 && exec '{}' --restore '{}' < '{}'",
        nix_tool("nix-store").display(),
        theirs.display(),
        nar.display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap()
        .success());
    assert_restore_modes(&theirs, NIX_UMASK);
}
