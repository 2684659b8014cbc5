//! Per-run overhead of a trivial sandboxed build (`/bin/sh -c 'echo hi >
//! $out'`, busybox bound as /bin/sh), to compare with Nix 2.8's per-derivation
//! time. A printout, not an assertion: run with
//! `cargo test -p kiln-sandbox --release --test timing -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

const RUNS: usize = 50;

fn one(f: &common::Fixture) -> (Duration, Duration, Duration) {
    // Like `nix-build` of a trivial derivation with sandbox-paths /bin/sh=busybox.
    let mut spec = f.spec("echo hi > $out");
    spec.builder = b"/bin/sh".to_vec();
    spec.inputs.clear();
    spec.sandbox_paths
        .push(kiln_sandbox::SandboxPath::parse("/bin/sh=/bin/busybox"));
    let t0 = Instant::now();
    let prepared = kiln_sandbox::prepare(&spec).unwrap();
    let t1 = Instant::now();
    let mut log = Vec::new();
    let outcome = common::sandboxes().run(&prepared, &mut log).unwrap();
    let t2 = Instant::now();
    assert!(
        outcome.success(),
        "{outcome:?}: {}",
        String::from_utf8_lossy(&log)
    );
    assert_eq!(
        std::fs::read(prepared.chroot_store().join(common::OUT_NAME)).unwrap(),
        b"hi\n"
    );
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    let t3 = Instant::now();
    (t1 - t0, t2 - t1, t3 - t2)
}

#[test]
fn trivial_build_overhead() {
    let f = common::Fixture::new();
    one(&f); // warm-up: page cache, first exec of the helper
    let mut samples = Vec::with_capacity(RUNS);
    let t = Instant::now();
    for _ in 0..RUNS {
        samples.push(one(&f));
    }
    let total = t.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = |pick: fn(&(Duration, Duration, Duration)) -> Duration| {
        ms(samples.iter().map(pick).sum::<Duration>()) / RUNS as f64
    };
    let mut totals: Vec<Duration> = samples.iter().map(|(p, r, c)| *p + *r + *c).collect();
    totals.sort();
    println!(
        "sequential: {:.2} ms mean per trivial sandboxed run (prepare {:.2}, run {:.2}, \
         cleanup {:.2}; median {:.2}, fastest {:.2}) over {RUNS} runs",
        ms(total) / RUNS as f64,
        mean(|s| s.0),
        mean(|s| s.1),
        mean(|s| s.2),
        ms(totals[RUNS / 2]),
        ms(totals[0]),
    );

    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..RUNS / 2 {
                    one(&f);
                }
            });
        }
    });
    println!(
        "-j2: {:.2} ms wall per run ({RUNS} runs on 2 threads)",
        t.elapsed().as_secs_f64() * 1000.0 / RUNS as f64
    );
}
