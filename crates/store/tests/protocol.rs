//! The write protocol's refusals and the on-disk traces it leaves for other processes
//! (temp roots, lock files), as Nix expects them.

mod common;

use std::collections::BTreeSet;

use kiln_hash::{Algorithm, Hash, Hasher};
use kiln_store::{Error, LocalStore, PathInfo};
use kiln_store_path::{FileIngestionMethod, StorePath};

fn nar_of(contents: &[u8]) -> Vec<u8> {
    let mut nar = Vec::new();
    let mut w = kiln_nar::NarWriter::new(&mut nar);
    w.file(false, contents).unwrap();
    w.finish().unwrap();
    nar
}

#[test]
fn a_reference_that_is_not_valid_is_refused_and_nothing_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let ghost = store
        .parse_path("/nix/store/00000000000000000000000000000000-ghost")
        .unwrap();
    let refs: BTreeSet<StorePath> = [ghost].into();
    let err = store.add_text("t", b"x", &refs).unwrap_err();
    assert!(matches!(err, Error::MissingReference { .. }), "{err}");
    assert!(store.query_all_valid_paths().unwrap().is_empty());
}

#[test]
fn reference_cycles_within_a_batch_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let a = store
        .parse_path("/nix/store/00000000000000000000000000000000-a")
        .unwrap();
    let b = store
        .parse_path("/nix/store/11111111111111111111111111111111-b")
        .unwrap();
    let mut ia = PathInfo::new(a.clone(), Hash::sha256("a"), 1);
    let mut ib = PathInfo::new(b.clone(), Hash::sha256("b"), 1);
    ia.references = [b.clone(), a.clone()].into();
    ib.references = [a.clone()].into();
    let err = store.register_valid_paths(&[ia.clone(), ib]).unwrap_err();
    assert!(matches!(err, Error::ReferenceCycle(_)), "{err}");
    // A self-reference alone is fine.
    ia.references = [a.clone()].into();
    std::fs::write(store.layout().real_path(&a), "a").unwrap();
    store.register_valid_paths(&[ia]).unwrap();
    assert!(store.is_valid(&a).unwrap());
}

#[test]
fn importing_a_nar_that_does_not_match_its_hash_registers_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let nar = nar_of(b"hello");
    let path = store
        .store_dir()
        .make_text_path("hello", &Hash::sha256("hello"), [])
        .unwrap();
    let wrong = PathInfo::new(
        path.clone(),
        Hash::sha256("something else"),
        nar.len() as u64,
    );
    let err = store.import_nar(&wrong, &mut nar.as_slice()).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(!store.is_valid(&path).unwrap());
    assert!(!store.layout().real_path(&path).exists());

    // The right metadata imports, and the CA claim is checked.
    let mut right = PathInfo::new(path.clone(), Hash::sha256(&nar), nar.len() as u64);
    right.ca = Some(kiln_store_path::ContentAddress::Text(Hash::sha256("hello")));
    // Framed: the NAR is followed by more of the stream, which must stay unread.
    let mut framed = nar.clone();
    framed.extend_from_slice(b"NEXT");
    let mut stream = framed.as_slice();
    store.import_nar(&right, &mut stream).unwrap();
    assert_eq!(stream, b"NEXT");
    assert!(store.is_valid(&path).unwrap());
    assert_eq!(
        std::fs::read(store.layout().real_path(&path)).unwrap(),
        b"hello"
    );

    // A CA claim that does not fit the contents is refused.
    let other = store
        .store_dir()
        .make_text_path("other", &Hash::sha256("hello!"), [])
        .unwrap();
    let mut lying = PathInfo::new(other.clone(), Hash::sha256(&nar), nar.len() as u64);
    lying.ca = Some(kiln_store_path::ContentAddress::Text(Hash::sha256(
        "hello!",
    )));
    let err = store.import_nar(&lying, &mut nar.as_slice()).unwrap_err();
    assert!(matches!(err, Error::ContentAddressMismatch { .. }), "{err}");
    assert!(!store.is_valid(&other).unwrap());
}

#[test]
fn a_derivation_with_a_wrong_output_path_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    // formats.md §4.10 `simple`, with its output path altered.
    let text = "Derive([(\"out\",\"/nix/store/00000000000000000000000000000000-simple\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[\"-c\",\"echo hi > $out\"],[(\"builder\",\"/bin/sh\"),(\"name\",\"simple\"),(\"out\",\"/nix/store/00000000000000000000000000000000-simple\"),(\"system\",\"x86_64-linux\")])";
    let err = store
        .add_text("simple.drv", text.as_bytes(), &BTreeSet::new())
        .unwrap_err();
    match err {
        Error::IncorrectDerivationOutput { expected, .. } => {
            assert_eq!(
                expected,
                "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple"
            )
        }
        other => panic!("{other}"),
    }
    assert!(store.query_all_valid_paths().unwrap().is_empty());
    let good = text.replace(
        "00000000000000000000000000000000",
        "i5xvchlm36jash0k9ndh3vya563ls965",
    );
    let path = store
        .add_text("simple.drv", good.as_bytes(), &BTreeSet::new())
        .unwrap();
    assert_eq!(
        path.base_name(),
        "cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv"
    );
}

#[test]
fn temp_roots_file_holds_nul_terminated_logical_paths_and_goes_with_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp
        .path()
        .join(format!("nix/var/nix/temproots/{}", std::process::id()));
    {
        let store = LocalStore::open(tmp.path()).unwrap();
        let a = store
            .parse_path("/nix/store/00000000000000000000000000000000-a")
            .unwrap();
        let b = store
            .parse_path("/nix/store/11111111111111111111111111111111-b")
            .unwrap();
        store.add_temp_root(&a).unwrap();
        store.add_temp_root(&b).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"/nix/store/00000000000000000000000000000000-a\0/nix/store/11111111111111111111111111111111-b\0"
        );
        // Another process (or Nix's collector) cannot take the lock: it is alive.
        let other = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();
        assert!(other.try_lock().is_err());
    }
    assert!(
        !file.exists(),
        "the temp roots file is removed on orderly exit"
    );
}

#[test]
fn path_lock_release_unlinks_and_marks_the_inode_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let lock_path = tmp.path().join("x.lock");
    let lock = kiln_store::PathLock::acquire(&lock_path).unwrap();
    // A waiter that opened the same inode before the release.
    let waiter = std::fs::File::open(&lock_path).unwrap();
    assert!(kiln_store::PathLock::try_acquire(&lock_path)
        .unwrap()
        .is_none());
    lock.release_and_delete();
    assert!(!lock_path.exists());
    assert_eq!(
        waiter.metadata().unwrap().len(),
        1,
        "the deletion token tells waiters to retry"
    );
    // The next locker gets a fresh file.
    let again = kiln_store::PathLock::try_acquire(&lock_path).unwrap();
    assert!(again.is_some());
}

#[test]
fn adding_the_same_contents_twice_is_idempotent_and_canonical() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&tmp.path().join("s")).unwrap();
    let tree = tmp.path().join("tree");
    common::make_tree_fixture(&tree);
    let first = store
        .add_path(
            &tree,
            "tree",
            FileIngestionMethod::Recursive,
            Algorithm::Sha256,
        )
        .unwrap();
    let second = store
        .add_path(
            &tree,
            "tree",
            FileIngestionMethod::Recursive,
            Algorithm::Sha256,
        )
        .unwrap();
    assert_eq!(first, second);
    let real = store.layout().real_path(&first.path);
    for (rel, mode) in [
        ("", 0o555),
        ("README", 0o444),
        ("sub", 0o555),
        ("sub/run", 0o555),
    ] {
        let meta = std::fs::symlink_metadata(real.join(rel)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{rel}");
        assert_eq!(meta.mtime(), 1, "{rel}");
    }
    assert_eq!(
        std::fs::symlink_metadata(real.join("link"))
            .unwrap()
            .mtime(),
        1
    );
    // No scratch directories or lock files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&store.layout().real_store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".links" && *n != first.path.base_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mut h = Hasher::new(Algorithm::Sha256);
    kiln_nar::dump_path(&real, &mut h).unwrap();
    assert_eq!(h.finish(), first.nar_hash);
}

/// Completing a derivation whose input `.drv` is not in the store used to report the
/// store's error as a string inside a made-up I/O error, so callers could not tell
/// "not valid" from a real read failure. The store's own error is now in the chain.
#[test]
fn a_missing_input_derivation_keeps_the_store_error_in_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let text = "Derive([(\"out\",\"\",\"\",\"\")],[(\"/nix/store/00000000000000000000000000000000-input.drv\",[\"out\"])],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"),(\"name\",\"uses-input\"),(\"out\",\"\"),(\"system\",\"x86_64-linux\")])";
    let drv =
        kiln_derivation::Derivation::from_aterm(store.store_dir(), text.as_bytes(), "uses-input")
            .unwrap();
    let err = store.complete_derivation(drv).unwrap_err();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut store_error_below = None;
    let mut depth = 0;
    while let Some(c) = cause {
        if depth > 0 {
            if let Some(e) = c.downcast_ref::<Error>() {
                store_error_below = Some(e);
            }
            assert!(
                c.downcast_ref::<std::io::Error>().is_none(),
                "no I/O error stands in for the store's: {c}"
            );
        }
        depth += 1;
        cause = c.source();
    }
    match store_error_below {
        Some(Error::InvalidPath(p)) => {
            assert_eq!(p, "/nix/store/00000000000000000000000000000000-input.drv")
        }
        other => {
            panic!("expected the store's InvalidPath below the derivation error, got {other:?}")
        }
    }
}
