//! The collector end to end: killed at random moments it leaves a store that verifies;
//! run in a loop against a process adding linked paths it deletes nothing in use; and
//! Nix's collector honours kiln's temp roots.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

fn add_linked(store: &LocalStore, name: &str, refs: &[StorePath]) -> StorePath {
    let refs: BTreeSet<StorePath> = refs.iter().cloned().collect();
    let mut body = format!("{name}\n");
    for r in &refs {
        body.push_str(&store.store_dir().display(r));
        body.push('\n');
    }
    store.add_text(name, body.as_bytes(), &refs).unwrap()
}

/// Keep adding paths, each referring to up to three earlier ones (every `step`th), for
/// `time`; returns them all.
fn add_linked_for(store: &LocalStore, time: Duration, step: usize, prefix: &str) -> Vec<StorePath> {
    let deadline = Instant::now() + time;
    let mut made: Vec<StorePath> = Vec::new();
    while Instant::now() < deadline {
        let refs: Vec<StorePath> = made.iter().rev().step_by(step).take(3).cloned().collect();
        let name = format!("{prefix}{}", made.len());
        made.push(add_linked(store, &name, &refs));
    }
    made
}

#[test]
fn gc_and_delete_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    let (kept, dead) = {
        let store = LocalStore::open(&root).unwrap();
        let kept = add_linked(&store, "kept", &[]);
        let dead = add_linked(&store, "dead", std::slice::from_ref(&kept));
        (kept, dead)
    };
    let kept_s = format!("/nix/store/{kept}");
    let dead_s = format!("/nix/store/{dead}");
    let link = tmp.path().join("result");
    kiln_ok(&["--store", s(&root), "store", "add-root", s(&link), &kept_s]);
    let roots = kiln_ok(&["--store", s(&root), "store", "roots"]);
    assert!(
        roots.contains(&format!("{} -> {kept_s}", link.display())),
        "{roots}"
    );
    let (ok, _, stderr) = run_kiln(&["--store", s(&root), "store", "delete", &kept_s]);
    assert!(!ok && stderr.contains("still alive"), "{stderr}");
    let dry = kiln_ok(&["--store", s(&root), "store", "gc", "--dry-run"]);
    assert_eq!(dry.trim(), dead_s);
    let real = kiln_ok(&["--store", s(&root), "store", "gc"]);
    assert_eq!(real, dry);
    assert_store_verifies(&root);
    // Nix agrees on what is left.
    let left = nix_ok("nix", &["path-info", "--store", s(&root), "--all"]);
    assert_eq!(left.trim(), kept_s);
}

#[test]
fn a_collector_killed_at_random_moments_leaves_a_store_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..8 {
        {
            let store = LocalStore::open(&root).unwrap();
            let mut prev: Vec<StorePath> = Vec::new();
            for i in 0..400 {
                let refs: Vec<StorePath> = prev.iter().rev().take(2).cloned().collect();
                prev.push(add_linked(&store, &format!("r{round}-{i}"), &refs));
            }
        }
        let mut child = kiln()
            .args(["--store", s(&root), "store", "gc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 120));
        let _ = child.kill();
        let _ = child.wait();
        assert_store_verifies(&root);
    }
    // A full run afterwards cleans up whatever the killed ones left.
    kiln_ok(&["--store", s(&root), "store", "gc"]);
    assert_store_verifies(&root);
    let left = nix_ok("nix", &["path-info", "--store", s(&root), "--all"]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn kiln_collector_in_a_loop_while_kiln_adds_linked_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    LocalStore::open(&root).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = Arc::clone(&stop);
        let root = root.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                kiln_ok(&["--store", s(&root), "store", "gc"]);
                runs += 1;
            }
            runs
        })
    };
    // This process is the client: every path it makes or uses is temp-rooted, and
    // later paths refer to earlier ones, so a wrong deletion breaks a registration.
    let store = LocalStore::open(&root).unwrap();
    let made = add_linked_for(&store, Duration::from_secs(60), 7, "n");
    stop.store(true, Ordering::SeqCst);
    let runs = collector.join().unwrap();
    assert!(runs >= 2, "the collector ran {runs} times");
    for p in &made {
        assert!(store.is_valid(p).unwrap(), "{p} was deleted while in use");
    }
    drop(store);
    assert_store_verifies(&root);
}

#[test]
fn nix_collector_in_a_loop_honours_kiln_temp_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s");
    let store = LocalStore::open(&root).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = Arc::clone(&stop);
        let root = root.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                nix_ok("nix-store", &["--store", s(&root), "--gc"]);
                runs += 1;
            }
            runs
        })
    };
    let made = add_linked_for(&store, Duration::from_secs(15), 5, "m");
    stop.store(true, Ordering::SeqCst);
    let runs = collector.join().unwrap();
    assert!(runs >= 2, "nix-store --gc ran {runs} times");
    for p in &made {
        assert!(store.is_valid(p).unwrap(), "{p} was deleted while in use");
    }
    drop(store);
    assert_store_verifies(&root);
}
