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

/// `kiln build -o` while `nix-store --gc` runs in a loop, 30 rounds, each building a
/// fresh derivation whose output nothing else roots: every link must end up pointing at
/// a valid path with its contents. Before, kiln told a running collector about an
/// output only the first time it temp-rooted it (during the build). Nix's collector
/// reads the permanent roots first and the temp-roots files after; one that started
/// during the build read `gcroots/` before the link existed and the temp roots after
/// kiln had exited and removed its file, and deleted the output under the new link
/// (several rounds in 30).
#[test]
fn nix_collector_loop_never_deletes_the_target_of_a_new_output_link() {
    const ROUNDS: usize = 30;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let busybox = busybox_dir(tmp.path());
    // All `.drv`s rooted before collecting starts (see `run_scenario`); their outputs
    // are rooted by nothing but the `-o` links.
    let expr = tmp.path().join("fresh.nix");
    std::fs::write(
        &expr,
        format!(
            r#"{{ busybox }}: let bb = builtins.path {{ path = busybox; name = "busybox"; }};
in builtins.genList (i: derivation {{ name = "fresh-${{toString i}}"; system = "x86_64-linux";
  builder = "${{bb}}/sh"; args = [ "-c" "echo round ${{toString i}} > $out" ]; }}) {ROUNDS}"#
        ),
    )
    .unwrap();
    let drv_root = tmp.path().join("drv");
    let drv_links = nix_ok(
        "nix-instantiate",
        &[
            "--store",
            s(&store),
            "--add-root",
            s(&drv_root),
            s(&expr),
            "--arg",
            "busybox",
            s(&busybox),
        ],
    );
    let drvs: Vec<String> = drv_links
        .lines()
        .map(|l| std::fs::read_link(l).unwrap().display().to_string())
        .collect();
    assert_eq!(drvs.len(), ROUNDS, "{drv_links}");

    let stop = Arc::new(AtomicBool::new(false));
    let collections = Arc::new(AtomicUsize::new(0));
    let collector = {
        let (stop, collections, store) =
            (Arc::clone(&stop), Arc::clone(&collections), store.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                nix_ok("nix-store", &["--store", s(&store), "--gc"]);
                collections.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut built = Vec::new();
    for (round, drv) in drvs.iter().enumerate() {
        let link = tmp.path().join(format!("res-{round}"));
        let out = kiln_ok(&["--store", s(&store), "build", "-o", s(&link), drv]);
        built.push((link, out.trim().to_string()));
    }
    stop.store(true, Ordering::SeqCst);
    collector.join().unwrap();
    assert!(
        collections.load(Ordering::SeqCst) >= 5,
        "the collector hardly ran"
    );

    let mut lost = Vec::new();
    for (round, (link, out)) in built.iter().enumerate() {
        let target = std::fs::read_link(link).unwrap().display().to_string();
        assert_eq!(&target, out, "{} points elsewhere", link.display());
        let valid = nix(
            "nix-store",
            &["--store", s(&store), "--check-validity", &target],
        );
        let contents = std::fs::read_to_string(store.join(target.trim_start_matches('/')));
        if !valid.status.success() || contents.ok() != Some(format!("round {round}\n")) {
            lost.push(target);
        }
    }
    assert!(
        lost.is_empty(),
        "outputs deleted under their links: {lost:?}"
    );
    assert_store_verifies(&store);
}
