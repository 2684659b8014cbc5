//! Collectors in a loop while builds run, each scenario for at least a minute in total:
//! kiln's collector against `kiln build`, Nix's collector against `kiln build`, and
//! kiln's collector against `nix-store --realise`. The `.drv`s are rooted (as a CI
//! pipeline roots them, seed 000); their outputs are not, so every intermediate output
//! is protected only by the builder's temp roots. Every build must succeed and the store
//! must verify.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const SCENARIO_TIME: Duration = Duration::from_secs(60);

/// A chain of `len` slow steps, unique per `round`; returns the top `.drv`, rooted.
fn instantiate_chain(tmp: &Path, store: &Path, busybox: &Path, round: usize, len: usize) -> String {
    let expr = tmp.join(format!("chain-{round}.nix"));
    std::fs::write(
        &expr,
        format!(
            r#"{{ busybox }}: let bb = builtins.path {{ path = busybox; name = "busybox"; }};
  step = prev: i: derivation {{ name = "r{round}-step${{toString i}}"; system = "x86_64-linux"; builder = "${{bb}}/sh";
    args = [ "-c" "sleep 0.2; mkdir $out; echo ${{toString i}} > $out/n; ${{if prev == null then "true" else "cat ${{prev}}/n >> $out/n; ln -s ${{prev}} $out/prev"}}" ]; }};
in builtins.foldl' step null (builtins.genList (i: i) {len})"#
        ),
    )
    .unwrap();
    // Rooted as it is written: between an unrooted instantiation and a later
    // add-root, a collector may take the .drv (seed 000's race).
    let link = tmp.join(format!("drv-root-{round}"));
    let drv = nix_ok(
        "nix-instantiate",
        &[
            "--store",
            s(store),
            "--add-root",
            s(&link),
            s(&expr),
            "--arg",
            "busybox",
            s(busybox),
        ],
    )
    .trim()
    .to_string();
    // `--add-root` prints the link; the .drv is its target.
    let target = std::fs::read_link(&drv)
        .map(|t| t.display().to_string())
        .unwrap_or(drv);
    assert!(target.ends_with(".drv"), "{target}");
    target
}

/// Runs `collect` in a loop on another thread while `build(round)` runs rounds until
/// the scenario time is used up. Returns (builds, collections).
fn scenario(
    store: &Path,
    collect: impl Fn() + Send + 'static,
    mut build: impl FnMut(usize),
) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (stop, runs) = (Arc::clone(&stop), Arc::clone(&runs));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                collect();
                runs.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < SCENARIO_TIME {
        build(rounds);
        rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    assert_store_verifies(store);
    (rounds, runs.load(Ordering::SeqCst))
}

/// The collector command, and whether the builds are kiln's (else Nix's).
fn run_scenario(collector: &'static str, kiln_builds: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let busybox = busybox_dir(tmp.path());
    kiln_ok(&["--store", s(&store), "store", "verify"]);
    // Against Nix's own collector, `nix-instantiate` itself can lose a `.drv` it is
    // writing: Nix 2.8's client gives up silently when it finds the collector's lock
    // taken but its socket not there yet (see docs/gc.md). That race is Nix's, not what
    // this scenario is about, so the `.drv`s are instantiated before collecting starts
    // (more than a minute of rounds can use).
    let prepared: Vec<String> = if collector == "nix" {
        (0..48)
            .map(|round| instantiate_chain(tmp.path(), &store, &busybox, round, 8))
            .collect()
    } else {
        Vec::new()
    };
    let store2 = store.clone();
    let (rounds, gcs) = scenario(
        &store,
        move || match collector {
            "kiln" => {
                kiln_ok(&["--store", s(&store2), "store", "gc"]);
            }
            _ => {
                nix_ok("nix-store", &["--store", s(&store2), "--gc"]);
            }
        },
        |round| {
            let drv = match prepared.get(round) {
                Some(drv) => drv.clone(),
                None => instantiate_chain(tmp.path(), &store, &busybox, round, 8),
            };
            let out = if kiln_builds {
                kiln_ok(&["--store", s(&store), "build", "--no-link", &drv])
            } else {
                nix_ok("nix-store", &nix_realise_args(&store, &[&drv]))
            };
            assert!(out.trim().ends_with("step7"), "{out}");
        },
    );
    assert!(
        rounds >= 2 && gcs >= 5,
        "rounds {rounds}, collections {gcs}"
    );
}

#[test]
fn kiln_collector_loop_while_kiln_builds() {
    run_scenario("kiln", true);
}

#[test]
fn nix_collector_loop_while_kiln_builds() {
    run_scenario("nix", true);
}

#[test]
fn kiln_collector_loop_while_nix_realises() {
    run_scenario("kiln", false);
}
