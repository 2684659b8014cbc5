//! NAR vectors observed from `nix-store --dump`, byte for byte and token by token, through every
//! producer (filesystem dump, event writer) and back through the reader.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use kiln_nar::{dump_path, list, EntryKind, Event, NarReader, NarWriter};

const HI_NAR: &str = concat!(
    "0d00000000000000",
    "6e69782d61726368",
    "6976652d31000000",
    "0100000000000000",
    "2800000000000000",
    "0400000000000000",
    "7479706500000000",
    "0700000000000000",
    "726567756c617200",
    "0800000000000000",
    "636f6e74656e7473",
    "0300000000000000",
    "68690a0000000000",
    "0100000000000000",
    "2900000000000000",
);

const EMPTY_DIR_NAR: &str = "0d000000000000006e69782d617263686976652d31000000010000000000000028000000000000000400000000000000747970650000000009000000000000006469726563746f72790000000000000001000000000000002900000000000000";

const SYMLINK_NAR: &str = "0d000000000000006e69782d617263686976652d310000000100000000000000280000000000000004000000000000007479706500000000070000000000000073796d6c696e6b00060000000000000074617267657400000c000000000000002f736f6d652f7461726765740000000001000000000000002900000000000000";

const TREE_TOKENS: &[(u64, &str)] = &[
    (0, "nix-archive-1"),
    (24, "("),
    (40, "type"),
    (56, "directory"),
    (80, "entry"),
    (96, "("),
    (112, "name"),
    (128, "README"),
    (144, "node"),
    (160, "("),
    (176, "type"),
    (192, "regular"),
    (208, "contents"),
    (224, "hi\n"),
    (240, ")"),
    (256, ")"),
    (272, "entry"),
    (288, "("),
    (304, "name"),
    (320, "link"),
    (336, "node"),
    (352, "("),
    (368, "type"),
    (384, "symlink"),
    (400, "target"),
    (416, "README"),
    (432, ")"),
    (448, ")"),
    (464, "entry"),
    (480, "("),
    (496, "name"),
    (512, "sub"),
    (528, "node"),
    (544, "("),
    (560, "type"),
    (576, "directory"),
    (600, "entry"),
    (616, "("),
    (632, "name"),
    (648, "run"),
    (664, "node"),
    (680, "("),
    (696, "type"),
    (712, "regular"),
    (728, "executable"),
    (752, ""),
    (760, "contents"),
    (776, "#!/bin/sh\n"),
    (800, ")"),
    (816, ")"),
    (832, ")"),
    (848, ")"),
    (864, ")"),
];

fn dump(path: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let len = dump_path(path, &mut out).unwrap();
    assert_eq!(
        len,
        out.len() as u64,
        "dump_path must return the NAR length"
    );
    out
}

#[test]
fn hi_txt_bytes_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hi.txt");
    fs::write(&file, "hi\n").unwrap();
    let nar = dump(&file);
    assert_eq!(nar.len(), 120);
    assert_eq!(hex(&nar), HI_NAR);
    assert_eq!(
        hex(&sha256(&nar)),
        "10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6"
    );
    assert_eq!(
        nix32(&sha256(&nar)),
        "1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h"
    );

    let mut w = NarWriter::new(Vec::new());
    w.file(false, b"hi\n").unwrap();
    assert_eq!(hex(&w.finish().unwrap()), HI_NAR);
}

#[test]
fn empty_directory_bytes_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let nar = dump(&empty);
    assert_eq!(nar.len(), 96);
    assert_eq!(hex(&nar), EMPTY_DIR_NAR);
    assert_eq!(
        nix32(&sha256(&nar)),
        "0sjjj9z1dhilhpc8pq4154czrb79z9cm044jvn75kxcjv6v5l2m5"
    );

    let mut w = NarWriter::new(Vec::new());
    w.begin_directory().unwrap();
    w.end_directory().unwrap();
    assert_eq!(hex(&w.finish().unwrap()), EMPTY_DIR_NAR);
}

#[test]
fn symlink_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("link");
    symlink("/some/target", &link).unwrap();
    let nar = dump(&link);
    assert_eq!(nar.len(), 128);
    assert_eq!(hex(&nar), SYMLINK_NAR);

    let mut w = NarWriter::new(Vec::new());
    w.symlink(b"/some/target").unwrap();
    assert_eq!(hex(&w.finish().unwrap()), SYMLINK_NAR);
}

#[test]
fn tree_token_stream_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let nar = dump(&tree);
    assert_eq!(nar.len(), 880);
    let tokens: Vec<(u64, String)> = decode_tokens(&nar)
        .into_iter()
        .map(|(o, t)| (o, String::from_utf8(t).unwrap()))
        .collect();
    let expected: Vec<(u64, String)> = TREE_TOKENS
        .iter()
        .map(|&(o, t)| (o, t.to_string()))
        .collect();
    assert_eq!(tokens, expected);

    let sha = sha256(&nar);
    assert_eq!(
        hex(&sha),
        "5fd7b1ceed90d1f1b332d7713a539cff3cb533dbefa0503ef2c61afdb1101858"
    );
    assert_eq!(
        nix32(&sha),
        "0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz"
    );
    use sha1::Digest as _;
    assert_eq!(
        hex(&sha1::Sha1::digest(&nar)),
        "96a9705f709f170d8cd852676df4eb9bccbc0971"
    );
    assert_eq!(
        hex(&md5::Md5::digest(&nar)),
        "1e61f7eac50ff4db6145b6af5974584e"
    );
}

#[test]
fn tree_through_the_event_writer() {
    let mut w = NarWriter::new(Vec::new());
    w.begin_directory().unwrap();
    w.entry(b"README").unwrap();
    w.file(false, b"hi\n").unwrap();
    w.entry(b"link").unwrap();
    w.symlink(b"README").unwrap();
    w.entry(b"sub").unwrap();
    w.begin_directory().unwrap();
    w.entry(b"run").unwrap();
    w.begin_file(true, 10).unwrap();
    w.write_contents(b"#!/bin/").unwrap();
    w.write_contents(b"sh\n").unwrap();
    w.end_file().unwrap();
    w.end_directory().unwrap();
    assert_eq!(w.position(), 864);
    w.end_directory().unwrap();
    assert_eq!(w.position(), 880);
    let nar = w.finish().unwrap();
    assert_eq!(
        hex(&sha256(&nar)),
        "5fd7b1ceed90d1f1b332d7713a539cff3cb533dbefa0503ef2c61afdb1101858"
    );
}

/// The reader's events and offsets for the tree, matching the token table.
#[test]
fn tree_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let nar = dump(&tree);

    let mut reader = NarReader::new(&nar[..]);
    let mut seen = Vec::new();
    while let Some(event) = reader.next().unwrap() {
        seen.push(match event {
            Event::Directory { path } => format!("dir {}", String::from_utf8_lossy(path)),
            Event::EndDirectory { path } => format!("end {}", String::from_utf8_lossy(path)),
            Event::Symlink { path, target } => format!(
                "link {} -> {}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(target)
            ),
            Event::Regular {
                path,
                executable,
                size,
                mut contents,
            } => {
                let at = contents.offset();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut contents, &mut data).unwrap();
                assert_eq!(data.len() as u64, size);
                format!(
                    "file {} x={executable} @{at} {:?}",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(&data)
                )
            }
        });
    }
    assert_eq!(reader.offset(), 880);
    assert_eq!(
        seen,
        [
            "dir ",
            "file README x=false @232 \"hi\\n\"",
            "link link -> README",
            "dir sub",
            "file sub/run x=true @784 \"#!/bin/sh\\n\"",
            "end sub",
            "end ",
        ]
    );

    let listed = list(&nar[..]).unwrap();
    let kinds: Vec<(String, EntryKind)> = listed
        .into_iter()
        .map(|e| (String::from_utf8(e.path).unwrap(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("".into(), EntryKind::Directory),
            (
                "README".into(),
                EntryKind::Regular {
                    executable: false,
                    size: 3,
                    offset: 232
                }
            ),
            (
                "link".into(),
                EntryKind::Symlink {
                    target: b"README".to_vec()
                }
            ),
            ("sub".into(), EntryKind::Directory),
            (
                "sub/run".into(),
                EntryKind::Regular {
                    executable: true,
                    size: 10,
                    offset: 784
                }
            ),
        ]
    );
}

#[test]
fn small_vectors_read_back() {
    for (hex_nar, expect) in [
        (HI_NAR, "file"),
        (EMPTY_DIR_NAR, "dir"),
        (SYMLINK_NAR, "link"),
    ] {
        let nar = unhex(hex_nar);
        let entries = list(&nar[..]).unwrap();
        assert_eq!(entries.len(), 1);
        let kind = match &entries[0].kind {
            EntryKind::Regular { .. } => "file",
            EntryKind::Directory => "dir",
            EntryKind::Symlink { target } => {
                assert_eq!(target, b"/some/target");
                "link"
            }
        };
        assert_eq!(kind, expect);
    }
}

/// The sort order of entries (bytes of the name), observed with Nix.
#[test]
fn entries_are_sorted_by_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("names");
    fs::create_dir(&root).unwrap();
    let names = [
        ".hidden", "0", "B", "Z", "_", "a", "a-b", "a.b", "ab", "emptydir", "~", "é",
    ];
    for name in names.iter().rev() {
        if *name == "emptydir" {
            fs::create_dir(root.join(name)).unwrap();
        } else {
            fs::write(root.join(name), name).unwrap();
        }
    }
    let listed: Vec<String> = list(&dump(&root)[..])
        .unwrap()
        .into_iter()
        .skip(1)
        .map(|e| String::from_utf8(e.path).unwrap())
        .collect();
    assert_eq!(listed, names);
}
