//! The collector's contract: roots keep their closures, everything else goes, and no
//! interleaving of client steps with collector steps loses a path a client is using.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use kiln_gc::{collect, GcAction, GcHooks, GcOptions, KeepSettings};
use kiln_store::{LocalStore, VerifyOptions};
use kiln_store_path::StorePath;

fn options(action: GcAction) -> GcOptions {
    GcOptions {
        action,
        keep: KeepSettings::default(),
        ignore_runtime_roots: true,
    }
}

fn text(store: &LocalStore, name: &str, body: &str, refs: &[&StorePath]) -> StorePath {
    let refs: BTreeSet<StorePath> = refs.iter().map(|p| (*p).clone()).collect();
    let mut contents = body.to_string();
    for r in &refs {
        contents.push_str(&format!(" {}", store.store_dir().display(r)));
    }
    store.add_text(name, contents.as_bytes(), &refs).unwrap()
}

fn root(store: &LocalStore, dir: &Path, name: &str, path: &StorePath) {
    store.add_indirect_root(&dir.join(name), path).unwrap();
}

fn assert_clean(store: &LocalStore) {
    let report = store
        .verify(VerifyOptions {
            check_contents: true,
            repair: false,
        })
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Simple and input derivations as nix-instantiate writes them (formats.md §4.10).
const SIMPLE: &str = r#"Derive([("out","/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo hi > $out"],[("builder","/bin/sh"),("name","simple"),("out","/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple"),("system","x86_64-linux")])"#;

#[test]
fn roots_keep_closures_and_everything_else_goes_and_dry_run_predicts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links");
    std::fs::create_dir(&links).unwrap();
    let store = LocalStore::open(&tmp.path().join("s")).unwrap();
    let leaf = text(&store, "leaf", "leaf", &[]);
    let mid = text(&store, "mid", "mid", &[&leaf]);
    let top = text(&store, "top", "top", &[&mid]);
    let other_leaf = text(&store, "other-leaf", "x", &[]);
    let garbage = text(&store, "garbage", "g", &[&other_leaf, &leaf]);
    let drv = store
        .add_text("simple.drv", SIMPLE.as_bytes(), &BTreeSet::new())
        .unwrap();
    let drv_user = text(&store, "uses-drv", "d", &[&drv]);
    root(&store, &links, "top", &top);
    root(&store, &links, "drv", &drv_user);
    // A stray invalid entry (e.g. an interrupted add) is garbage too.
    let stray = store
        .layout()
        .real_store_dir
        .join("00000000000000000000000000000000-stray");
    std::fs::write(&stray, "x").unwrap();
    drop(store);

    // A fresh handle, so this process holds no temp roots for the paths above.
    let store = LocalStore::open(&tmp.path().join("s")).unwrap();
    let dry = collect(&store, &options(GcAction::DryRun), &mut GcHooks::default()).unwrap();
    let expected: HashSet<String> = [&garbage, &other_leaf]
        .iter()
        .map(|p| store.store_dir().display(p))
        .chain(["/nix/store/00000000000000000000000000000000-stray".to_string()])
        .collect();
    let dry_set: HashSet<String> = dry.deleted.iter().cloned().collect();
    assert_eq!(dry_set, expected);
    assert!(stray.exists(), "a dry run deletes nothing");
    assert!(store.is_valid(&garbage).unwrap());

    let real = collect(
        &store,
        &options(GcAction::Collect { max_freed: None }),
        &mut GcHooks::default(),
    )
    .unwrap();
    assert_eq!(
        real.deleted, dry.deleted,
        "the dry run lists exactly what is deleted, in order"
    );
    assert_eq!(real.bytes_freed, dry.bytes_freed);
    for p in [&leaf, &mid, &top, &drv, &drv_user] {
        assert!(store.is_valid(p).unwrap(), "{p} must survive");
        assert!(store.layout().real_path(p).exists());
    }
    for p in [&garbage, &other_leaf] {
        assert!(!store.is_valid(p).unwrap(), "{p} must go");
        assert!(!store.layout().real_path(p).exists());
    }
    assert!(!stray.exists());
    // The rooted .drv kept its closure; its output was never built, nor is it needed.
    let outputs = store.query_derivation_outputs(&drv).unwrap();
    assert!(!store.is_valid(&outputs["out"]).unwrap());
    // Garbage was deleted referrers first.
    let pos = |p: &StorePath| {
        real.deleted
            .iter()
            .position(|d| *d == store.store_dir().display(p))
            .unwrap()
    };
    assert!(pos(&garbage) < pos(&other_leaf));
    assert_clean(&store);
}

#[test]
fn delete_refuses_live_paths_and_paths_with_referrers() {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links");
    std::fs::create_dir(&links).unwrap();
    let root_dir = tmp.path().join("s");
    let (a, b, c) = {
        let store = LocalStore::open(&root_dir).unwrap();
        let a = text(&store, "a", "a", &[]);
        let b = text(&store, "b", "b", &[&a]);
        let c = text(&store, "c", "c", &[]);
        root(&store, &links, "c", &c);
        (a, b, c)
    };
    let store = LocalStore::open(&root_dir).unwrap();
    let err = collect(
        &store,
        &options(GcAction::Delete(vec![c.clone()])),
        &mut GcHooks::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("still alive"), "{err}");
    let err = collect(
        &store,
        &options(GcAction::Delete(vec![a.clone()])),
        &mut GcHooks::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("still alive"), "{err}");
    let done = collect(
        &store,
        &options(GcAction::Delete(vec![a.clone(), b.clone()])),
        &mut GcHooks::default(),
    )
    .unwrap();
    assert_eq!(done.deleted.len(), 2);
    assert!(!store.is_valid(&a).unwrap() && !store.is_valid(&b).unwrap());
    assert!(store.is_valid(&c).unwrap());
}

#[test]
fn temp_roots_of_live_processes_protect_paths_and_their_closure() {
    let tmp = tempfile::tempdir().unwrap();
    let root_dir = tmp.path().join("s");
    let (a, b) = {
        let store = LocalStore::open(&root_dir).unwrap();
        (text(&store, "a", "a", &[]), text(&store, "b", "b", &[]))
    };
    let user = LocalStore::open(&root_dir).unwrap();
    let uses_a = text(&user, "uses-a", "u", &[&a]);
    // `user` holds a temp root for uses-a (it created it), which references a.
    let store = LocalStore::open(&root_dir).unwrap();
    let result = collect(
        &store,
        &options(GcAction::Collect { max_freed: None }),
        &mut GcHooks::default(),
    )
    .unwrap();
    assert!(store.is_valid(&uses_a).unwrap());
    assert!(store.is_valid(&a).unwrap());
    // b's creator has dropped its store handle, which removed its temp roots file:
    // nothing protects b any more.
    assert!(!store.is_valid(&b).unwrap());
    assert_eq!(result.deleted, vec![store.store_dir().display(&b)]);
}

/// xorshift, so failures reproduce from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn randomized_interleavings_of_clients_and_collector_lose_nothing() {
    for seed in 1..=12u64 {
        interleaving_round(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    }
}

fn interleaving_round(seed: u64) {
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root_dir = tmp.path().join("s");
    let links = tmp.path().join("links");
    std::fs::create_dir(&links).unwrap();
    // A random DAG of 300 text paths (many more than one batch), a few rooted.
    let mut paths: Vec<StorePath> = Vec::new();
    {
        let store = LocalStore::open(&root_dir).unwrap();
        for i in 0..300 {
            let mut refs = Vec::new();
            for _ in 0..rng.below(3) {
                if !paths.is_empty() {
                    refs.push(paths[rng.below(paths.len())].clone());
                }
            }
            let refs: Vec<&StorePath> = refs.iter().collect();
            paths.push(text(
                &store,
                &format!("p{i}"),
                &format!("{seed}-{i}"),
                &refs,
            ));
        }
        for k in 0..5 {
            root(
                &store,
                &links,
                &format!("r{k}"),
                &paths[rng.below(paths.len())],
            );
        }
    }
    let store = LocalStore::open(&root_dir).unwrap();
    // The client is a separate handle; its roots reach the running collector through
    // the socket, exactly as another process's would.
    let client_dir = root_dir.clone();
    let mut used: Vec<StorePath> = Vec::new();
    let mut made: Vec<StorePath> = Vec::new();
    let mut client: Option<LocalStore> = None;
    let mut step = 0u64;
    let mut rng2 = Rng(seed ^ 0xdead_beef);
    let mut hooks = GcHooks {
        before_batch: Some(Box::new(|| {
            let client = client.get_or_insert_with(|| LocalStore::open(&client_dir).unwrap());
            for _ in 0..rng2.below(4) {
                step += 1;
                let x = &paths[rng2.below(paths.len())];
                // The client protocol: root first, then check, then use.
                client.add_temp_root(x).unwrap();
                if client.is_valid(x).unwrap() {
                    let new = text(client, &format!("user{step}"), "uses", &[x]);
                    used.push(x.clone());
                    made.push(new);
                }
            }
        })),
    };
    collect(
        &store,
        &options(GcAction::Collect { max_freed: None }),
        &mut hooks,
    )
    .unwrap();
    drop(hooks);
    for p in used.iter().chain(&made) {
        assert!(
            store.is_valid(p).unwrap(),
            "seed {seed}: {p} was in use and got deleted"
        );
        for q in store.query_closure([p]).unwrap() {
            assert!(
                store.layout().real_path(&q).exists(),
                "seed {seed}: {q} files missing"
            );
        }
    }
    assert_clean(&store);
}
