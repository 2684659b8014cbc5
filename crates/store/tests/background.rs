//! Registration handed to the store's background registrar: seen as valid by this
//! process at once, registered in order, locks released after the commit, failures
//! reported with what they were for.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use kiln_hash::Hash;
use kiln_store::{Error, LocalStore, PathInfo, PathLock};
use kiln_store_path::StorePath;

fn object(store: &LocalStore, hash_part: &str, name: &str, refs: &[&StorePath]) -> PathInfo {
    let path = store
        .parse_path(&format!("/nix/store/{hash_part}-{name}"))
        .unwrap();
    std::fs::write(store.layout().real_path(&path), name).unwrap();
    let mut info = PathInfo::new(path, Hash::sha256(name), 1);
    info.references = refs.iter().map(|r| (*r).clone()).collect();
    info
}

fn lock_of(store: &LocalStore, path: &StorePath) -> PathLock {
    PathLock::try_acquire(&store.layout().lock_path(path))
        .unwrap()
        .expect("nobody else holds it")
}

/// Another connection, as another process would see the database.
fn valid_elsewhere(root: &Path, path: &StorePath) -> bool {
    LocalStore::open(root).unwrap().is_valid(path).unwrap()
}

const A: &str = "0000000000000000000000000000000a";
const B: &str = "0000000000000000000000000000000b";

#[test]
fn handed_over_paths_are_valid_here_at_once_and_registered_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let a = object(&store, A, "a", &[]);
    let b = object(&store, B, "b", &[&a.path]);
    let (a_path, b_path) = (a.path.clone(), b.path.clone());

    // A writer elsewhere keeps the registrar from committing until it is done.
    let blocker = rusqlite::Connection::open(store.layout().db_dir().join("db.sqlite")).unwrap();
    blocker.execute_batch("begin immediate").unwrap();

    let lock_a = lock_of(&store, &a_path);
    store
        .register_valid_paths_later("a.drv".into(), vec![a], vec![lock_a], true)
        .unwrap();
    let lock_b = lock_of(&store, &b_path);
    store
        .register_valid_paths_later("b.drv".into(), vec![b], vec![lock_b], false)
        .unwrap();

    // Pending: valid to this process, with its references, and not to others yet.
    assert!(store.is_valid(&a_path).unwrap());
    assert_eq!(
        store.query_path_info(&b_path).unwrap().unwrap().references,
        BTreeSet::from([a_path.clone()])
    );
    assert_eq!(
        store.query_closure([&b_path]).unwrap(),
        BTreeSet::from([a_path.clone(), b_path.clone()])
    );
    assert!(!valid_elsewhere(tmp.path(), &a_path));
    // Still locked: another process wanting the output waits for it.
    assert!(PathLock::try_acquire(&store.layout().lock_path(&a_path))
        .unwrap()
        .is_none());

    blocker.execute_batch("commit").unwrap();
    let failures = store.finish_registrations();
    assert!(failures.is_empty(), "{failures:?}");

    let other = LocalStore::open(tmp.path()).unwrap();
    assert!(other.is_valid(&a_path).unwrap());
    assert_eq!(
        other.query_references(&b_path).unwrap(),
        BTreeSet::from([a_path.clone()])
    );
    for p in [&a_path, &b_path] {
        assert!(
            !store.layout().lock_path(p).exists(),
            "the lock file of a registered path is deleted"
        );
    }
}

#[test]
fn a_failed_registration_is_reported_and_fails_what_used_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let ghost = store
        .parse_path("/nix/store/00000000000000000000000000000000-ghost")
        .unwrap();
    let a = object(&store, A, "a", &[&ghost]);
    let b = object(&store, B, "b", &[&a.path]);
    let (a_path, b_path) = (a.path.clone(), b.path.clone());
    let lock_a = lock_of(&store, &a_path);
    store
        .register_valid_paths_later("a.drv".into(), vec![a], vec![lock_a], false)
        .unwrap();
    store
        .register_valid_paths_later("b.drv".into(), vec![b], Vec::new(), false)
        .unwrap();

    let failures = store.finish_registrations();
    let named: Vec<&str> = failures.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(named, ["a.drv", "b.drv"]);
    for failure in &failures {
        assert!(
            matches!(failure.error, Error::MissingReference { .. }),
            "{}",
            failure.error
        );
    }
    for p in [&a_path, &b_path] {
        assert!(!store.is_valid(p).unwrap(), "no longer pending");
        assert!(!valid_elsewhere(tmp.path(), p));
    }
    // As after any failed build, the lock file stays (and is free again).
    assert!(store.layout().lock_path(&a_path).exists());
    assert!(PathLock::try_acquire(&store.layout().lock_path(&a_path))
        .unwrap()
        .is_some());
    assert!(store.finish_registrations().is_empty(), "reported once");
}

#[test]
fn a_cycle_is_refused_when_handed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let a_path = store.parse_path(&format!("/nix/store/{A}-a")).unwrap();
    let b_path = store.parse_path(&format!("/nix/store/{B}-b")).unwrap();
    let a = object(&store, A, "a", &[&b_path]);
    let b = object(&store, B, "b", &[&a_path]);
    let err = store
        .register_valid_paths_later("ab.drv".into(), vec![a, b], Vec::new(), false)
        .unwrap_err();
    assert!(matches!(err, Error::ReferenceCycle(_)), "{err}");
    assert!(!store.is_valid(&a_path).unwrap());
    assert!(store.finish_registrations().is_empty());
}

/// Only what a temp root protects is answered from memory: a path this process did
/// not temp-root can vanish (another process's collector), and then is not valid.
#[test]
fn only_temp_rooted_closures_are_remembered_as_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let a = object(&store, A, "a", &[]);
    let b = object(&store, B, "b", &[&a.path]);
    let (a_path, b_path) = (a.path.clone(), b.path.clone());
    store.register_valid_paths(&[a, b]).unwrap();
    let both = BTreeSet::from([a_path.clone(), b_path.clone()]);

    // Unprotected: looked up, not remembered.
    assert_eq!(store.query_closure([&b_path]).unwrap(), both);
    assert_eq!(
        store.query_valid_references(&b_path).unwrap(),
        Some(BTreeSet::from([a_path.clone()]))
    );
    let other = LocalStore::open(tmp.path()).unwrap();
    other
        .invalidate_paths(std::slice::from_ref(&b_path))
        .unwrap();
    assert!(!store.is_valid(&b_path).unwrap());
    assert_eq!(store.query_valid_references(&b_path).unwrap(), None);

    // Protected: `a` is temp-rooted, so its closure stays valid for this process.
    store.add_temp_root(&a_path).unwrap();
    assert_eq!(
        store.query_closure([&a_path]).unwrap(),
        BTreeSet::from([a_path.clone()])
    );
    assert!(store.is_valid(&a_path).unwrap());
}

/// What this process found valid after temp-rooting it stays valid for it, and a
/// `.drv` it read stays readable, even when another connection invalidates them (a
/// collector honouring the temp root never would); its own invalidation forgets both.
/// Without a temp root nothing is remembered.
#[test]
fn temp_rooted_paths_and_derivations_are_remembered_until_this_store_invalidates_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let other = LocalStore::open(tmp.path()).unwrap();
    let drv_text = b"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"out\",\"\")])";
    let drv = common::derivation_without_input_drvs(&store, drv_text, "cached");
    let drv_path = store.add_derivation(&drv).unwrap();
    let plain = object(&store, A, "plain", &[]);
    let plain_path = plain.path.clone();
    store
        .register_valid_paths(std::slice::from_ref(&plain))
        .unwrap();

    // Not temp-rooted: looked up each time.
    assert!(store.is_valid(&plain_path).unwrap());
    other
        .invalidate_paths(std::slice::from_ref(&plain_path))
        .unwrap();
    assert!(!store.is_valid(&plain_path).unwrap());
    store.register_valid_paths(&[plain]).unwrap();

    // Temp-rooted (as `read_derivation` does): remembered.
    store.add_temp_root(&plain_path).unwrap();
    assert!(store.is_valid(&plain_path).unwrap());
    assert_eq!(*store.read_derivation(&drv_path).unwrap(), drv);
    other
        .invalidate_paths(&[plain_path.clone(), drv_path.clone()])
        .unwrap();
    assert!(!other.is_valid(&plain_path).unwrap());
    assert!(store.is_valid(&plain_path).unwrap());
    assert!(store.is_valid(&drv_path).unwrap());
    assert_eq!(*store.read_derivation(&drv_path).unwrap(), drv);

    // Our own invalidation forgets them.
    store
        .invalidate_paths(&[plain_path.clone(), drv_path.clone()])
        .unwrap();
    assert!(!store.is_valid(&plain_path).unwrap());
    assert!(matches!(
        store.read_derivation(&drv_path),
        Err(Error::InvalidPath(_))
    ));
}
