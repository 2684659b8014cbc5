//! The `nix-store --export` framing (Nix's `LocalStore::exportPath`): byte-identical with Nix's exports,
//! accepted by Nix's import, and read back strictly.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use kiln_nar::export::{ExportInfo, ExportReader, ExportWriter, EXPORT_MAGIC};
use kiln_nar::{dump_path, Error, Event, NarWriter};

const TREE_PATH: &str = "/nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree";
const Q_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-q";
const Q_DERIVER: &str = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-q.drv";

fn store_cmd(store: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new(nix_tool("nix-store"))
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run nix-store");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nix-store {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tree_info() -> ExportInfo {
    ExportInfo {
        path: TREE_PATH.into(),
        references: vec![],
        deriver: None,
    }
}

fn q_info() -> ExportInfo {
    ExportInfo {
        path: Q_PATH.into(),
        references: vec![TREE_PATH.into()],
        deriver: Some(Q_DERIVER.into()),
    }
}

/// Our export of the tree fixture and a file `q` referring to it.
fn our_export(tmp: &Path) -> Vec<u8> {
    let tree = tmp.join("tree");
    make_tree(&tree);
    let mut w = ExportWriter::new(Vec::new());
    assert_eq!(w.add_path(&tree, &tree_info()).unwrap(), 880);
    w.add_with(&q_info(), |nar| nar.file(false, TREE_PATH.as_bytes()))
        .unwrap();
    w.finish().unwrap()
}

#[test]
fn single_path_matches_nix_export() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let added = store_cmd(&store, &["--add", tree.to_str().unwrap()], None);
    assert_eq!(String::from_utf8(added).unwrap().trim(), TREE_PATH);
    let theirs = store_cmd(&store, &["--export", TREE_PATH], None);

    let mut w = ExportWriter::new(Vec::new());
    w.add_path(&tree, &tree_info()).unwrap();
    assert_eq!(hex(&w.finish().unwrap()), hex(&theirs));
}

#[test]
fn nix_imports_ours_and_exports_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = our_export(tmp.path());
    let store = tmp.path().join("store");
    let imported = store_cmd(&store, &["--import"], Some(&ours));
    assert_eq!(
        String::from_utf8(imported).unwrap(),
        format!("{TREE_PATH}\n{Q_PATH}\n")
    );
    let refs = store_cmd(&store, &["-q", "--references", Q_PATH], None);
    assert_eq!(String::from_utf8(refs).unwrap().trim(), TREE_PATH);
    let theirs = store_cmd(&store, &["--export", TREE_PATH, Q_PATH], None);
    assert_eq!(hex(&theirs), hex(&ours));
}

#[test]
fn reads_back_with_tee_and_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let stream = our_export(tmp.path());
    let mut tree_nar = Vec::new();
    dump_path(&tmp.path().join("tree"), &mut tree_nar).unwrap();

    let mut reader = ExportReader::new(&stream[..]);
    let mut tee = Vec::new();
    let first = reader
        .next_path(&mut tee, |nar| {
            // Read only the first event; the rest is skipped and checked by the reader.
            Ok(matches!(nar.next()?, Some(Event::Directory { .. })))
        })
        .unwrap()
        .unwrap();
    assert!(first.value);
    assert_eq!(first.info, tree_info());
    assert_eq!(first.nar_size, 880);
    assert_eq!(tee, tree_nar);

    let second = reader
        .next_path(&mut std::io::sink(), |nar| {
            let mut data = Vec::new();
            if let Some(Event::Regular { mut contents, .. }) = nar.next()? {
                contents.copy_to(&mut data)?;
            }
            Ok(data)
        })
        .unwrap()
        .unwrap();
    assert_eq!(second.info, q_info());
    assert_eq!(second.value, TREE_PATH.as_bytes());

    assert!(reader
        .next_path(&mut std::io::sink(), |_| Ok(()))
        .unwrap()
        .is_none());
    assert_eq!(reader.offset(), stream.len() as u64);
}

#[test]
fn add_nar_copies_verbatim_and_rejects_bad_nars() {
    let mut nar = NarWriter::new(Vec::new());
    nar.file(true, b"#!/bin/sh\n").unwrap();
    let nar = nar.finish().unwrap();

    let mut w = ExportWriter::new(Vec::new());
    w.add_nar(&nar[..], &tree_info()).unwrap();
    let stream = w.finish().unwrap();
    assert_eq!(&stream[8..8 + nar.len()], &nar[..]);

    // Trailing data after a standalone NAR must be refused.
    let mut trailing = nar.clone();
    trailing.push(0);
    let err = ExportWriter::new(Vec::new())
        .add_nar(&trailing[..], &tree_info())
        .unwrap_err();
    assert!(matches!(err, Error::TrailingData { .. }), "{err}");

    // So must a non-canonical one (here: entries out of order).
    let mut unsorted = token(b"nix-archive-1");
    for t in [&b"("[..], b"type", b"directory"] {
        unsorted.extend(token(t));
    }
    for name in [b"b", b"a"] {
        for t in [
            &b"entry"[..],
            b"(",
            b"name",
            name,
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"x",
            b")",
            b")",
        ] {
            unsorted.extend(token(t));
        }
    }
    unsorted.extend(token(b")"));
    let err = ExportWriter::new(Vec::new())
        .add_nar(&unsorted[..], &tree_info())
        .unwrap_err();
    assert!(matches!(err, Error::UnsortedEntry { .. }), "{err}");
}

fn framing_error(stream: &[u8]) -> Error {
    let mut reader = ExportReader::new(stream);
    loop {
        match reader.next_path(&mut std::io::sink(), |_| Ok(())) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("accepted"),
            Err(e) => return e,
        }
    }
}

#[test]
fn malformed_framing_is_rejected_with_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let good = our_export(tmp.path());

    // Bad marker before the first NAR.
    let mut bad = good.clone();
    bad[0] = 2;
    let err = framing_error(&bad);
    assert_eq!(err.offset(), Some(0), "{err}");
    assert!(err.to_string().contains("found 2"), "{err}");

    // Bad magic after the first NAR.
    let magic_at = 8 + 880;
    assert_eq!(&good[magic_at..magic_at + 8], &EXPORT_MAGIC.to_le_bytes());
    let mut bad = good.clone();
    bad[magic_at] ^= 1;
    let err = framing_error(&bad);
    assert_eq!(err.offset(), Some(magic_at as u64), "{err}");
    assert!(err.to_string().contains("export magic"), "{err}");

    // A hostile NAR inside: offsets count from the start of the stream.
    let mut bad = good.clone();
    let pad = 8 + 235; // padding of README's contents
    bad[pad] = 7;
    let err = framing_error(&bad);
    assert!(
        matches!(err, Error::NonZeroPadding { offset, .. } if offset == pad as u64),
        "{err}"
    );

    // Truncation anywhere is an error, never a panic or a silent end.
    for len in 0..good.len() {
        let err = framing_error(&good[..len]);
        assert!(err.offset().is_some(), "{err}");
    }

    // An absurd reference count is refused before anything is allocated.
    let refs_at = magic_at + 8 + 8 + TREE_PATH.len().div_ceil(8) * 8;
    let mut bad = good.clone();
    bad[refs_at..refs_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = framing_error(&bad);
    assert_eq!(err.offset(), Some(refs_at as u64), "{err}");
    assert!(err.to_string().contains("references exceed"), "{err}");
}

#[test]
fn export_of_an_empty_list_is_just_the_end_marker() {
    let stream = ExportWriter::new(Vec::new()).finish().unwrap();
    assert_eq!(stream, [0u8; 8]);
    assert!(ExportReader::new(&stream[..])
        .next_path(&mut std::io::sink(), |_| Ok(()))
        .unwrap()
        .is_none());
}
