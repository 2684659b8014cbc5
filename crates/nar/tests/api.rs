//! The writer's checks, listing and `cat`, partial reads, copying, and restore details.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;

use common::*;
use kiln_nar::{
    cat, copy_nar, dump_path, list, member_path, restore, EntryKind, Error, Event, NarReader,
    NarWriter,
};

fn tree_nar() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(&tmp.path().join("tree"));
    let mut nar = Vec::new();
    dump_path(&tmp.path().join("tree"), &mut nar).unwrap();
    nar
}

#[test]
fn writer_rejects_misuse() {
    let mut w = NarWriter::new(Vec::new());
    let err = w.entry(b"a").unwrap_err();
    assert!(matches!(err, Error::WriterMisuse { .. }), "{err}");

    let mut w = NarWriter::new(Vec::new());
    w.begin_directory().unwrap();
    let err = w.begin_directory().unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot begin a directory inside a directory"),
        "{err}"
    );

    let w = NarWriter::new(Vec::new());
    assert!(matches!(w.finish(), Err(Error::WriterMisuse { .. })));

    let mut w = NarWriter::new(Vec::new());
    w.file(false, b"x").unwrap();
    let err = w.symlink(b"again").unwrap_err();
    assert!(
        err.to_string().contains("after the archive is complete"),
        "{err}"
    );

    let mut w = NarWriter::new(Vec::new());
    w.begin_file(false, 3).unwrap();
    w.write_contents(b"ab").unwrap();
    let err = w.end_file().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContentsLength {
                declared: 3,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );

    let mut w = NarWriter::new(Vec::new());
    w.begin_file(false, 1).unwrap();
    let err = w.write_contents(b"ab").unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContentsLength {
                declared: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn writer_enforces_names_order_and_targets() {
    let dir = |names: &[&[u8]]| -> Result<(), Error> {
        let mut w = NarWriter::new(Vec::new());
        w.begin_directory()?;
        for name in names {
            w.entry(name)?;
            w.file(false, b"")?;
        }
        w.end_directory()?;
        w.finish().map(|_| ())
    };
    assert!(dir(&[b"a", b"b", "é".as_bytes()]).is_ok());
    assert!(matches!(
        dir(&[b"b", b"a"]),
        Err(Error::UnsortedEntry { .. })
    ));
    assert!(matches!(
        dir(&[b"a", b"a"]),
        Err(Error::DuplicateEntry { .. })
    ));
    for bad in [&b""[..], b".", b"..", b"x/y", b"x\0"] {
        assert!(
            matches!(dir(&[bad]), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        dir(&[&[b'n'; 256]]),
        Err(Error::NameTooLong { .. })
    ));

    let link = |target: &[u8]| NarWriter::new(Vec::new()).symlink(target);
    assert!(matches!(link(b""), Err(Error::EmptyTarget { .. })));
    assert!(matches!(
        link(b"a\0b"),
        Err(Error::TargetContainsNul { .. })
    ));
    assert!(matches!(
        link(&[b'x'; 4096]),
        Err(Error::TargetTooLong { .. })
    ));

    // Errors inside a nested directory name its path.
    let mut w = NarWriter::new(Vec::new());
    w.begin_directory().unwrap();
    w.entry(b"sub").unwrap();
    w.begin_directory().unwrap();
    w.entry(b"z").unwrap();
    w.file(false, b"").unwrap();
    let err = w.entry(b"y").unwrap_err();
    assert!(err.to_string().contains("in '/sub'"), "{err}");
}

struct FailingSink;

impl Write for FailingSink {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn sink_errors_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(&tmp.path().join("tree"));
    let err = dump_path(&tmp.path().join("tree"), &mut FailingSink).unwrap_err();
    // The sink's error is the cause (printed once, by whoever prints the chain).
    let Error::Write(cause) = &err else {
        panic!("{err}")
    };
    assert_eq!(cause.to_string(), "disk on fire");
    assert!(!err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn large_files_stream_through_in_chunks() {
    // Big enough to need several chunks and to bypass the writer's small-token buffer.
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    fs::write(&path, &data).unwrap();
    let mut nar = Vec::new();
    let len = dump_path(&path, &mut nar).unwrap();
    assert_eq!(len, 24 + 16 * 4 + 8 + 3_000_008 + 16);

    let mut writer = NarWriter::new(Vec::new());
    writer.file(false, &data).unwrap();
    assert_eq!(writer.finish().unwrap(), nar);

    let mut out = Vec::new();
    assert_eq!(cat(&nar[..], "/", &mut out).unwrap(), data.len() as u64);
    assert!(out == data);

    let restored = tmp.path().join("restored");
    restore(&nar[..], &restored).unwrap();
    assert!(fs::read(&restored).unwrap() == data);
}

#[test]
fn list_reports_every_node() {
    let entries = list(&tree_nar()[..]).unwrap();
    let paths: Vec<&[u8]> = entries.iter().map(|e| &e.path[..]).collect();
    assert_eq!(paths, [&b""[..], b"README", b"link", b"sub", b"sub/run"]);
    assert_eq!(
        entries[4].kind,
        EntryKind::Regular {
            executable: true,
            size: 10,
            offset: 784
        }
    );
}

#[test]
fn cat_finds_members_by_normalised_path() {
    let nar = tree_nar();
    for member in ["README", "/README", "./README", "//README/"] {
        let mut out = Vec::new();
        assert_eq!(cat(&nar[..], member, &mut out).unwrap(), 3);
        assert_eq!(out, b"hi\n");
    }
    let mut out = Vec::new();
    cat(&nar[..], "/sub/./run", &mut out).unwrap();
    assert_eq!(out, b"#!/bin/sh\n");

    for (member, expected) in [
        ("sub", "path '/sub' is not a regular file in the archive"),
        ("/link", "path '/link' is not a regular file in the archive"),
        ("/", "path '/' is not a regular file in the archive"),
        ("nope", "path '/nope' does not exist in the archive"),
        ("README/x", "path '/README/x' does not exist in the archive"),
        (
            "sub/../README",
            "path '/sub/../README' does not exist in the archive",
        ),
    ] {
        let err = cat(&nar[..], member, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
    assert_eq!(member_path(b"/a//./b/"), b"a/b");
    assert_eq!(member_path(b"/"), b"");
}

#[test]
fn unread_contents_are_skipped_and_still_checked() {
    let nar = tree_nar();
    let mut reader = NarReader::new(&nar[..]);
    let mut files = 0;
    while let Some(event) = reader.next().unwrap() {
        if let Event::Regular { mut contents, .. } = event {
            let mut one = [0u8; 1];
            assert_eq!(contents.read(&mut one).unwrap(), 1);
            files += 1;
        }
    }
    assert_eq!(files, 2);

    // Corrupt README's padding: skipping its contents must still notice.
    let mut bad = nar.clone();
    bad[235] = 1;
    let mut reader = NarReader::new(&bad[..]);
    let err = loop {
        match reader.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("accepted"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::NonZeroPadding { offset: 235, .. }),
        "{err}"
    );
}

#[test]
fn contents_reader_reports_truncation_as_unexpected_eof() {
    let nar = tree_nar();
    let cut = &nar[..233]; // one byte into README's contents
    let mut reader = NarReader::new(cut);
    reader.next().unwrap(); // root directory
    let Some(Event::Regular { mut contents, .. }) = reader.next().unwrap() else {
        panic!("expected README")
    };
    let mut buf = Vec::new();
    let err = contents.read_to_end(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(buf, b"h");
}

#[test]
fn copy_nar_reproduces_the_input() {
    let nar = tree_nar();
    let mut reader = NarReader::new(&nar[..]);
    let mut writer = NarWriter::new(Vec::new());
    copy_nar(&mut reader, &mut writer).unwrap();
    assert_eq!(writer.finish().unwrap(), nar);
}

#[test]
fn restore_roots_of_every_kind() {
    let tmp = tempfile::tempdir().unwrap();

    let mut w = NarWriter::new(Vec::new());
    w.file(true, b"#!/bin/sh\n").unwrap();
    let exe = tmp.path().join("exe");
    restore(&w.finish().unwrap()[..], &exe).unwrap();
    assert_eq!(fs::read(&exe).unwrap(), b"#!/bin/sh\n");
    let mode = fs::metadata(&exe).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "executables get +x for everyone: {mode:o}"
    );

    let mut w = NarWriter::new(Vec::new());
    w.file(false, b"").unwrap();
    let plain = tmp.path().join("plain");
    restore(&w.finish().unwrap()[..], &plain).unwrap();
    assert_eq!(
        fs::metadata(&plain).unwrap().permissions().mode() & 0o111,
        0
    );

    let mut w = NarWriter::new(Vec::new());
    w.symlink(b"elsewhere").unwrap();
    let link = tmp.path().join("link");
    restore(&w.finish().unwrap()[..], &link).unwrap();
    assert_eq!(fs::read_link(&link).unwrap().to_str(), Some("elsewhere"));
}

#[test]
fn failed_restore_of_a_root_file_removes_it() {
    let mut w = NarWriter::new(Vec::new());
    w.file(false, &[7u8; 100_000]).unwrap();
    let nar = w.finish().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("f");
    let err = restore(&nar[..50_000], &target).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { offset: 50_000, .. }),
        "{err}"
    );
    assert!(fs::symlink_metadata(&target).is_err());
}

#[test]
fn restore_into_a_missing_parent_is_an_fs_error() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("no/such/parent/x");
    let err = restore(&tree_nar()[..], &target).unwrap_err();
    assert!(matches!(err, Error::Fs { .. }), "{err}");
    assert!(err.to_string().contains("cannot create directory"), "{err}");
}
