//! Malformed and hostile NARs: each must be rejected with its own error kind, the byte
//! offset of the problem, and (through `restore`) no trace left on disk: the target is
//! gone and a sentinel directory beside it is untouched. Ends with randomly damaged
//! archives, which must be rejected or else be canonical.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use kiln_nar::{
    cat, copy_nar, dump_path, list, restore, Error, NarReader, NarWriter, MAX_DEPTH, MAX_NAME_LEN,
    MAX_TARGET_LEN,
};
use proptest::prelude::*;

type Toks = Vec<Vec<u8>>;

fn t(parts: &[&[u8]]) -> Toks {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn file(contents: &[u8]) -> Toks {
    t(&[b"(", b"type", b"regular", b"contents", contents, b")"])
}

fn link(target: &[u8]) -> Toks {
    t(&[b"(", b"type", b"symlink", b"target", target, b")"])
}

fn dir(entries: Vec<(&[u8], Toks)>) -> Toks {
    let mut out = t(&[b"(", b"type", b"directory"]);
    for (name, node) in entries {
        out.extend(t(&[b"entry", b"(", b"name", name, b"node"]));
        out.extend(node);
        out.push(b")".to_vec());
    }
    out.push(b")".to_vec());
    out
}

fn archive(node: Toks) -> Nar {
    let mut nar = Nar::default();
    nar.push(b"nix-archive-1");
    for tok in &node {
        nar.push(tok);
    }
    nar
}

/// Offset of the `nth` (0-based) token equal to `tok`.
fn offset_of(nar: &Nar, tok: &[u8], nth: usize) -> u64 {
    let toks = decode_tokens(&nar.bytes);
    toks.iter()
        .filter(|(_, t)| t == tok)
        .nth(nth)
        .unwrap_or_else(|| panic!("no token {:?} #{nth}", String::from_utf8_lossy(tok)))
        .0
}

/// Offset of the `nth` (0-based) entry name.
fn name_offset(nar: &Nar, nth: usize) -> u64 {
    // A name is the token after the 16-byte `name` keyword.
    offset_of(nar, b"name", nth) + 16
}

/// A temporary directory holding a sentinel tree, and a target path beside it.
struct Scene {
    dir: tempfile::TempDir,
    target: PathBuf,
    sentinel: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let sentinel = dir.path().join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("keep"), "precious").unwrap();
        fs::create_dir(sentinel.join("inner")).unwrap();
        let target = dir.path().join("target");
        Scene {
            dir,
            target,
            sentinel,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Restores `nar` expecting failure; checks the error's offset and message, that
/// nothing is left behind, and that `list` and `cat` report the same error.
fn rejected(nar: &[u8], offset: u64, message: &str) -> Error {
    let scene = Scene::new();
    let before = snapshot(scene.root()).unwrap();
    let err = restore(nar, &scene.target).expect_err("hostile NAR was accepted");
    assert_eq!(err.offset(), Some(offset), "wrong offset in: {err}");
    let text = err.to_string();
    assert!(text.contains(message), "message {text:?} lacks {message:?}");
    assert!(
        text.contains(&format!("byte {offset}")),
        "message {text:?} lacks the offset"
    );
    assert!(
        fs::symlink_metadata(&scene.target).is_err(),
        "partial restore left behind"
    );
    assert_eq!(
        snapshot(scene.root()).unwrap(),
        before,
        "something outside the target changed"
    );

    let listed = list(nar).expect_err("list accepted a hostile NAR");
    assert_eq!(listed.to_string(), text);
    let mut sink = Vec::new();
    match cat(nar, "/no/such/member", &mut sink) {
        Err(e) => assert_eq!(e.to_string(), text),
        Ok(_) => panic!("cat accepted a hostile NAR"),
    }
    err
}

fn restores(nar: &[u8]) -> Scene {
    let scene = Scene::new();
    let before = snapshot(&scene.sentinel).unwrap();
    restore(nar, &scene.target).unwrap();
    assert_eq!(snapshot(&scene.sentinel).unwrap(), before);
    scene
}

#[test]
fn bad_magic() {
    let mut nar = archive(file(b"x"));
    nar.bytes[8] = b'N';
    assert!(matches!(
        rejected(&nar.bytes, 0, "bad magic"),
        Error::BadMagic { .. }
    ));

    let mut nar = Nar::from_tokens(&[b"nix-archive-2"]);
    nar.bytes.extend(archive(file(b"x")).bytes[24..].iter());
    rejected(&nar.bytes, 0, "not a Nix archive");

    // A huge length in the magic position is refused without reading or allocating.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend([0u8; 64]);
    assert!(matches!(
        rejected(&huge, 0, "bad magic"),
        Error::BadMagic { .. }
    ));

    rejected(b"\x1f\x8b\x08\0\0\0\0\0\0\x03garbage", 0, "bad magic");
}

#[test]
fn non_zero_padding() {
    let good = archive(file(b"hi\n"));
    // In the contents' padding, the magic's padding, and a keyword's padding.
    let contents = offset_of(&good, b"hi\n", 0) + 8 + 3;
    for at in [contents + 4, 21, offset_of(&good, b"type", 0) + 12] {
        let mut nar = good.bytes.clone();
        nar[at as usize] = 1;
        let err = rejected(&nar, at, "non-zero padding");
        assert!(matches!(err, Error::NonZeroPadding { .. }), "{err}");
    }
}

#[test]
fn unsorted_entries() {
    let nar = archive(dir(vec![(b"b", file(b"1")), (b"a", file(b"2"))]));
    let err = rejected(
        &nar.bytes,
        offset_of(&nar, b"a", 0),
        "not sorted: 'a' comes after 'b'",
    );
    assert!(matches!(err, Error::UnsortedEntry { .. }), "{err}");
}

#[test]
fn duplicate_entries() {
    let nar = archive(dir(vec![(
        b"sub",
        dir(vec![(b"x", file(b"1")), (b"x", file(b"2"))]),
    )]));
    let err = rejected(
        &nar.bytes,
        offset_of(&nar, b"x", 1),
        "duplicate directory entry 'x'",
    );
    assert!(matches!(err, Error::DuplicateEntry { .. }), "{err}");
    assert!(err.to_string().contains("in '/sub'"), "{err}");
}

#[test]
fn invalid_names() {
    for (name, reason) in [
        (&b""[..], "name is empty"),
        (b".", "'.' and '..' are not allowed"),
        (b"..", "'.' and '..' are not allowed"),
        (b"a/b", "name contains '/'"),
        (b"a\0b", "name contains a NUL byte"),
    ] {
        let nar = archive(dir(vec![(b"a", file(b"ok")), (name, file(b"1"))]));
        let at = name_offset(&nar, 1);
        let err = rejected(&nar.bytes, at, reason);
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    }
}

#[test]
fn name_length_limit() {
    let long = vec![b'n'; MAX_NAME_LEN + 1];
    let nar = archive(dir(vec![(&long, file(b"1"))]));
    let at = offset_of(&nar, &long, 0);
    let err = rejected(
        &nar.bytes,
        at,
        "entry name of 256 bytes exceeds the limit of 255",
    );
    assert!(matches!(err, Error::NameTooLong { .. }), "{err}");

    let ok = vec![b'n'; MAX_NAME_LEN];
    let scene = restores(&archive(dir(vec![(&ok, file(b"1"))])).bytes);
    assert!(scene.target.join(String::from_utf8(ok).unwrap()).is_file());
}

#[test]
fn unknown_node_type() {
    let nar = archive(t(&[b"(", b"type", b"fifo", b")"]));
    let err = rejected(&nar.bytes, 56, "unknown node type 'fifo'");
    assert!(matches!(err, Error::UnknownNodeType { .. }), "{err}");

    let nar = archive(dir(vec![(b"p", t(&[b"(", b"type", b"socket", b")"]))]));
    let err = rejected(&nar.bytes, offset_of(&nar, b"socket", 0), "in '/p'");
    assert!(matches!(err, Error::UnknownNodeType { .. }), "{err}");
}

#[test]
fn unknown_field() {
    let nar = archive(t(&[
        b"(",
        b"type",
        b"regular",
        b"foo",
        b"",
        b"contents",
        b"x",
        b")",
    ]));
    let err = rejected(
        &nar.bytes,
        72,
        "expected 'executable' or 'contents', found 'foo'",
    );
    assert!(matches!(err, Error::UnexpectedToken { .. }), "{err}");
}

#[test]
fn contents_before_type() {
    let nar = archive(t(&[b"(", b"contents", b"x", b"type", b"regular", b")"]));
    let err = rejected(&nar.bytes, 40, "expected 'type', found 'contents'");
    assert!(matches!(err, Error::UnexpectedToken { .. }), "{err}");
}

#[test]
fn executable_after_contents() {
    let nar = archive(t(&[
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"x",
        b"executable",
        b"",
        b")",
    ]));
    let at = offset_of(&nar, b"executable", 0);
    let err = rejected(&nar.bytes, at, "'executable' after 'contents'");
    assert!(
        matches!(err, Error::ExecutableAfterContents { .. }),
        "{err}"
    );
}

#[test]
fn repeated_contents() {
    let nar = archive(t(&[
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"A",
        b"contents",
        b"B",
        b")",
    ]));
    let at = offset_of(&nar, b"contents", 1);
    let err = rejected(&nar.bytes, at, "second 'contents'");
    assert!(matches!(err, Error::RepeatedContents { .. }), "{err}");
}

#[test]
fn missing_contents() {
    let nar = archive(t(&[b"(", b"type", b"regular", b")"]));
    let err = rejected(&nar.bytes, 72, "no 'contents'");
    assert!(matches!(err, Error::MissingContents { .. }), "{err}");

    let nar = archive(dir(vec![(
        b"f",
        t(&[b"(", b"type", b"regular", b"executable", b"", b")"]),
    )]));
    let err = rejected(&nar.bytes, offset_of(&nar, b")", 0), "in '/f'");
    assert!(matches!(err, Error::MissingContents { .. }), "{err}");
}

#[test]
fn missing_symlink_target() {
    let nar = archive(dir(vec![(b"l", t(&[b"(", b"type", b"symlink", b")"]))]));
    let err = rejected(&nar.bytes, offset_of(&nar, b")", 0), "no 'target'");
    assert!(matches!(err, Error::MissingTarget { .. }), "{err}");
}

#[test]
fn node_before_name() {
    let mut toks = t(&[b"(", b"type", b"directory", b"entry", b"(", b"node"]);
    toks.extend(file(b"x"));
    toks.extend(t(&[b"name", b"f", b")", b")"]));
    let nar = archive(toks);
    let err = rejected(
        &nar.bytes,
        offset_of(&nar, b"node", 0),
        "'node' before 'name'",
    );
    assert!(matches!(err, Error::NodeBeforeName { .. }), "{err}");
}

#[test]
fn two_type_fields() {
    let nar = archive(t(&[
        b"(",
        b"type",
        b"regular",
        b"type",
        b"regular",
        b"contents",
        b"x",
        b")",
    ]));
    let err = rejected(&nar.bytes, 72, "two 'type' fields");
    assert!(matches!(err, Error::DuplicateType { .. }), "{err}");

    let nar = archive(t(&[
        b"(",
        b"type",
        b"directory",
        b"type",
        b"directory",
        b")",
    ]));
    let err = rejected(&nar.bytes, 80, "two 'type' fields");
    assert!(matches!(err, Error::DuplicateType { .. }), "{err}");
}

#[test]
fn executable_with_non_empty_value() {
    let nar = archive(t(&[
        b"(",
        b"type",
        b"regular",
        b"executable",
        b"1",
        b"contents",
        b"x",
        b")",
    ]));
    let at = offset_of(&nar, b"1", 0);
    let err = rejected(&nar.bytes, at, "followed by an empty string");
    assert!(matches!(err, Error::ExecutableNotEmpty { .. }), "{err}");
}

#[test]
fn bad_symlink_targets() {
    let nar = archive(dir(vec![(b"l", link(b""))]));
    let at = offset_of(&nar, b"target", 0) + 16;
    let err = rejected(&nar.bytes, at, "symlink target is empty");
    assert!(matches!(err, Error::EmptyTarget { .. }), "{err}");

    let nar = archive(dir(vec![(b"l", link(b"/etc\0/passwd"))]));
    let at = offset_of(&nar, b"/etc\0/passwd", 0);
    let err = rejected(&nar.bytes, at, "contains a NUL byte");
    assert!(matches!(err, Error::TargetContainsNul { .. }), "{err}");

    let long = vec![b'x'; MAX_TARGET_LEN + 1];
    let nar = archive(dir(vec![(b"l", link(&long))]));
    let err = rejected(
        &nar.bytes,
        offset_of(&nar, &long, 0),
        "exceeds the limit of 4095",
    );
    assert!(matches!(err, Error::TargetTooLong { .. }), "{err}");

    let longest = vec![b'x'; MAX_TARGET_LEN];
    let scene = restores(&archive(dir(vec![(b"l", link(&longest))])).bytes);
    assert_eq!(
        fs::read_link(scene.target.join("l"))
            .unwrap()
            .as_os_str()
            .len(),
        MAX_TARGET_LEN
    );
}

fn nested(levels: usize) -> Nar {
    let mut node = dir(vec![]);
    for _ in 1..levels {
        node = dir(vec![(b"d", node)]);
    }
    archive(node)
}

/// Regression: the limit was 256 levels, so a 300-level tree that the store accepted
/// (and `nix-store --restore` restores) could not be restored from its own NAR.
#[test]
fn nesting_depth_limit_admits_what_a_path_can_reach() {
    let scene = restores(&nested(300).bytes);
    let deepest: PathBuf = std::iter::repeat_n("d", 299).collect();
    assert!(scene.target.join(deepest).is_dir());

    // At the limit itself, paths outgrow PATH_MAX: the reader alone is exercised.
    let entries = list(&nested(MAX_DEPTH).bytes[..]).expect("the deepest admitted tree");
    assert_eq!(entries.len(), MAX_DEPTH);

    let nar = nested(MAX_DEPTH + 1);
    let at = offset_of(&nar, b"directory", MAX_DEPTH);
    let err = list(&nar.bytes[..]).expect_err("one level too deep");
    assert!(matches!(err, Error::TooDeep { .. }), "{err}");
    assert_eq!(err.offset(), Some(at), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "nested deeper than {MAX_DEPTH} levels at byte {at}"
        )),
        "{text}"
    );
}

#[test]
fn every_truncation_is_reported_where_input_ends() {
    let nar = archive(dir(vec![
        (b"README", file(b"hi\n")),
        (b"link", link(b"README")),
        (b"sub", dir(vec![(b"run", file(b"#!/bin/sh\n"))])),
    ]));
    for len in 0..nar.bytes.len() {
        let err = rejected(&nar.bytes[..len], len as u64, "unexpected end of input");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
    }
}

#[test]
fn absurd_contents_length_is_streamed_not_allocated() {
    let mut nar = archive(t(&[b"(", b"type", b"regular", b"contents"]));
    nar.bytes.extend(u64::MAX.to_le_bytes());
    nar.bytes.extend(b"only a few bytes");
    let len = nar.bytes.len() as u64;
    let err = rejected(&nar.bytes, len, "truncated");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

#[test]
fn absurd_token_lengths() {
    // In a keyword position.
    let mut nar = archive(t(&[b"("]));
    nar.bytes.extend(u64::MAX.to_le_bytes());
    nar.bytes.extend([0u8; 32]);
    let err = rejected(
        &nar.bytes,
        40,
        "expected 'type', found a 18446744073709551615-byte token",
    );
    assert!(matches!(err, Error::UnexpectedToken { .. }), "{err}");

    // As a name.
    let mut nar = archive(t(&[b"(", b"type", b"directory", b"entry", b"(", b"name"]));
    let at = nar.bytes.len() as u64;
    nar.bytes.extend((1u64 << 62).to_le_bytes());
    let err = rejected(&nar.bytes, at, "entry name of 4611686018427387904 bytes");
    assert!(matches!(err, Error::NameTooLong { .. }), "{err}");

    // As a symlink target.
    let mut nar = archive(t(&[b"(", b"type", b"symlink", b"target"]));
    let at = nar.bytes.len() as u64;
    nar.bytes.extend((1u64 << 40).to_le_bytes());
    let err = rejected(&nar.bytes, at, "exceeds the limit");
    assert!(matches!(err, Error::TargetTooLong { .. }), "{err}");

    // As a node type.
    let mut nar = archive(t(&[b"(", b"type"]));
    nar.bytes.extend(1000u64.to_le_bytes());
    nar.bytes.extend([b'z'; 1000]);
    let err = rejected(&nar.bytes, 56, "unknown node type a 1000-byte token");
    assert!(matches!(err, Error::UnknownNodeType { .. }), "{err}");
}

#[test]
fn trailing_data() {
    let good = archive(dir(vec![(b"a", file(b"1"))]));
    for extra in [&b"\0"[..], &[0u8; 8], b"nix-archive-1"] {
        let mut nar = good.bytes.clone();
        nar.extend_from_slice(extra);
        let err = rejected(&nar, good.bytes.len() as u64, "trailing data");
        assert!(matches!(err, Error::TrailingData { .. }), "{err}");
    }
}

#[test]
fn malformed_entry_structure() {
    let mut toks = t(&[
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"name",
        b"a",
        b"node",
    ]);
    toks.extend(file(b"x"));
    toks.extend(t(&[b")", b")"]));
    let nar = archive(toks);
    rejected(
        &nar.bytes,
        offset_of(&nar, b"name", 0),
        "expected '(' after 'entry'",
    );

    // An entry that is not closed before the next one starts.
    let mut toks = t(&[
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        b"a",
        b"node",
    ]);
    toks.extend(file(b"x"));
    toks.extend(t(&[b"entry"]));
    let nar = archive(toks);
    rejected(
        &nar.bytes,
        offset_of(&nar, b"entry", 1),
        "expected ')' closing the entry",
    );

    // Something else where an entry or the directory's end belongs.
    let nar = archive(t(&[b"(", b"type", b"directory", b"contents", b"x", b")"]));
    rejected(&nar.bytes, 80, "expected 'entry' or ')', found 'contents'");
}

// ---- attempts to write outside the target ----

#[test]
fn symlink_then_same_name_directory() {
    let nar = archive(dir(vec![
        (b"a", link(b"../sentinel")),
        (b"a", dir(vec![(b"pwned", file(b"gotcha"))])),
    ]));
    let err = rejected(&nar.bytes, offset_of(&nar, b"a", 1), "duplicate");
    assert!(matches!(err, Error::DuplicateEntry { .. }), "{err}");
}

#[test]
fn symlink_then_same_name_file() {
    let scene = Scene::new();
    let victim = scene.sentinel.join("keep");
    let nar = archive(dir(vec![
        (b"a", link(victim.to_str().unwrap().as_bytes())),
        (b"a", file(b"overwritten")),
    ]));
    let err = rejected(&nar.bytes, offset_of(&nar, b"a", 1), "duplicate");
    assert!(matches!(err, Error::DuplicateEntry { .. }), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn names_reaching_through_a_symlink() {
    for name in [&b"a/pwned"[..], b"../sentinel", b".."] {
        let nar = archive(dir(vec![
            (b"a", link(b"../sentinel")),
            (name, file(b"gotcha")),
        ]));
        let err = rejected(&nar.bytes, name_offset(&nar, 1), "invalid entry name");
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    }
}

#[test]
fn symlink_later_descended_as_unsorted_directory() {
    // "b" is a symlink out; a later "a" directory would be unsorted, and its contents
    // must never end up behind the symlink.
    let nar = archive(dir(vec![
        (b"b", link(b"../sentinel/inner")),
        (b"a", dir(vec![(b"pwned", file(b"gotcha"))])),
    ]));
    let err = rejected(&nar.bytes, offset_of(&nar, b"a", 0), "not sorted");
    assert!(matches!(err, Error::UnsortedEntry { .. }), "{err}");
}

#[test]
fn symlinks_pointing_outside_are_created_not_followed() {
    let nar = archive(dir(vec![
        (b"abs", link(b"/etc/passwd")),
        (b"dangling", link(b"no/such/thing")),
        (b"up", link(b"../sentinel")),
        (b"z", file(b"data")),
    ]));
    let scene = restores(&nar.bytes);
    assert_eq!(
        fs::read_link(scene.target.join("up")).unwrap(),
        Path::new("../sentinel")
    );
    assert_eq!(
        fs::read_link(scene.target.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(fs::read(scene.target.join("z")).unwrap(), b"data");
    assert_eq!(fs::read(scene.sentinel.join("keep")).unwrap(), b"precious");
}

#[test]
fn existing_target_is_refused_and_kept() {
    let scene = Scene::new();
    let nar = archive(file(b"x"));
    let before = snapshot(scene.root()).unwrap();
    let err = restore(&nar.bytes[..], &scene.sentinel).unwrap_err();
    assert!(matches!(err, Error::TargetExists { .. }), "{err}");
    assert!(err.to_string().contains("already exists"));
    assert_eq!(snapshot(scene.root()).unwrap(), before);

    // A dangling symlink counts as existing too, and is not followed.
    let trap = scene.root().join("trap");
    std::os::unix::fs::symlink(scene.root().join("elsewhere"), &trap).unwrap();
    let err = restore(&nar.bytes[..], &trap).unwrap_err();
    assert!(matches!(err, Error::TargetExists { .. }), "{err}");
    assert!(!scene.root().join("elsewhere").exists());
}

#[test]
fn reader_refuses_to_continue_after_an_error() {
    let nar = archive(dir(vec![(b"b", file(b"1")), (b"a", file(b"2"))]));
    let mut reader = NarReader::new(&nar.bytes[..]);
    let err = loop {
        match reader.next() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("accepted"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::UnsortedEntry { .. }));
    assert!(matches!(reader.next(), Err(Error::ReaderFailed)));
}

// ---- random damage ----

#[derive(Debug, Clone)]
enum Damage {
    SetByte(usize, u8),
    Truncate(usize),
    /// Insert a whole token at a token boundary (a multiple of 8).
    InsertToken(usize, Vec<u8>),
    /// Remove 8 bytes at a multiple of 8.
    RemoveWord(usize),
    /// Swap two 8-byte words.
    SwapWords(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let keyword = prop::sample::select(vec![
        &b"("[..],
        b")",
        b"type",
        b"regular",
        b"symlink",
        b"directory",
        b"executable",
        b"",
        b"contents",
        b"target",
        b"entry",
        b"name",
        b"node",
        b"a",
        b"..",
        b"nix-archive-1",
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::SetByte(i, v)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), keyword).prop_map(|(i, t)| Damage::InsertToken(i, token(t))),
        any::<usize>().prop_map(Damage::RemoveWord),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Damage::SwapWords(i, j)),
    ]
}

fn apply(mut nar: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        let words = nar.len() / 8;
        if words == 0 {
            break;
        }
        match d {
            Damage::SetByte(i, v) => {
                let i = i % nar.len();
                nar[i] = *v;
            }
            Damage::Truncate(i) => nar.truncate(i % nar.len()),
            Damage::InsertToken(i, t) => {
                let at = i % words * 8;
                nar.splice(at..at, t.iter().copied());
            }
            Damage::RemoveWord(i) => {
                let at = i % words * 8;
                nar.drain(at..at + 8);
            }
            Damage::SwapWords(i, j) => {
                let (a, b) = (i % words * 8, j % words * 8);
                for k in 0..8 {
                    nar.swap(a + k, b + k);
                }
            }
        }
    }
    nar
}

fn sample_nar() -> Vec<u8> {
    archive(dir(vec![
        (b"README", file(b"hi\n")),
        (b"a", dir(vec![])),
        (
            b"bin",
            dir(vec![(
                b"run",
                t(&[
                    b"(",
                    b"type",
                    b"regular",
                    b"executable",
                    b"",
                    b"contents",
                    b"#!/bin/sh\n",
                    b")",
                ]),
            )]),
        ),
        (b"link", link(b"README")),
    ]))
    .bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the damage: no panic; a rejection names an offset within the input; an
    /// acceptance means the input was canonical (it re-serialises to the same bytes),
    /// and restoring it reproduces it too.
    #[test]
    fn damaged_nars_are_rejected_or_canonical(damage in prop::collection::vec(damage(), 1..4)) {
        let nar = apply(sample_nar(), &damage);
        let mut reader = NarReader::new(&nar[..]);
        let mut writer = NarWriter::new(Vec::new());
        match copy_nar(&mut reader, &mut writer) {
            Ok(()) => prop_assert_eq!(writer.finish().unwrap(), nar.clone()),
            Err(e) => {
                let offset = e.offset();
                prop_assert!(offset.is_some_and(|o| o <= nar.len() as u64), "{}", e);
            }
        }

        let scene = Scene::new();
        match restore(&nar[..], &scene.target) {
            Ok(()) => {
                let mut again = Vec::new();
                dump_path(&scene.target, &mut again).unwrap();
                prop_assert_eq!(again, nar);
            }
            Err(_) => prop_assert!(fs::symlink_metadata(&scene.target).is_err()),
        }
        prop_assert_eq!(fs::read(scene.sentinel.join("keep")).unwrap(), b"precious");
    }
}
