//! Sandboxed builds of trivial derivations, `kiln build -j2` against
//! `nix-store --realise --max-jobs 2 --option sandbox true`, each in a fresh copy of the
//! same store (instantiated once by Nix): N independent derivations and a chain of 50,
//! plus how kiln's per-derivation cost grows from 50 to 2,000 derivations, and the
//! chain's floor: its builder run the same number of times with no sandbox at all.
//!
//! Run: `cargo build --release -p kiln && cargo run --release -p kiln-bench --bin realise`
//! (options: `--runs N`, `--dir DIR`, `--no-scaling`, `--baseline KILN`: another kiln
//! binary, e.g. one built from an earlier commit, timed in the same runs, alternating
//! with this one, to show what a change costs).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;
use kiln_bench::{kiln_binary, median, seconds, time_command, BenchArgs};

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse("kiln-bench-build-", 3)?;
    let (runs, work) = (args.runs, &args.work);
    let kiln = kiln_binary()?;
    let kiln = kiln.to_str().context("utf-8")?;
    let baseline = args.text("--baseline");
    let busybox = work.path().join("busybox");
    std::fs::create_dir(&busybox)?;
    std::fs::copy("/bin/busybox", busybox.join("sh")).context("copying /bin/busybox")?;

    println!("# sandboxed trivial derivations, -j2, fresh stores ({runs} runs, median)");
    for (label, shape, count) in [
        ("200 independent", "independent", 200),
        ("chain of 50", "chain", 50),
    ] {
        let kilns: Vec<&str> = std::iter::once(kiln).chain(baseline.as_deref()).collect();
        let (times, n) = compare(work.path(), &busybox, &kilns, shape, count, runs, true)?;
        let k = times[0];
        println!(
            "{label}: kiln {:.3} s ({:.1} ms/drv), nix {:.3} s ({:.1} ms/drv), speed-up x{:.1}",
            k,
            1000.0 * k / count as f64,
            n,
            1000.0 * n / count as f64,
            n / k
        );
        if let Some(b) = times.get(1) {
            println!(
                "  baseline kiln {:.3} s ({:.1} ms/drv): this binary takes {:.1} % of its time",
                b,
                1000.0 * b / count as f64,
                100.0 * k / b
            );
        }
        if shape == "chain" {
            let floor = bare_chain_step(work.path(), &busybox, count, runs)?;
            println!(
                "  floor: the same {count} builder runs in a row, no sandbox, no store: {:.2} ms/step; \
                 10x Nix here would be {:.2} ms/step",
                1000.0 * floor,
                100.0 * n / count as f64
            );
        }
    }
    if !args.has("--no-scaling") {
        println!("# kiln per-derivation cost as the graph grows (independent, -j2)");
        for count in [50, 200, 1000, 2000] {
            let (times, _) = compare(
                work.path(),
                &busybox,
                &[kiln],
                "independent",
                count,
                1,
                false,
            )?;
            let k = times[0];
            println!(
                "{count:>5} derivations: {:.3} s, {:.2} ms/drv",
                k,
                1000.0 * k / count as f64
            );
        }
    }
    Ok(())
}

/// Median seconds per step of running the chain's builder `count` times in a row as a
/// plain child process (spawn, run, wait): what a chain step costs before any sandbox,
/// store or scheduling.
fn bare_chain_step(work: &Path, busybox: &Path, count: usize, runs: usize) -> anyhow::Result<f64> {
    let out = work.join("bare-out");
    let sh = busybox.join("sh");
    let mut per_run = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = std::time::Instant::now();
        for i in 0..count {
            let status = Command::new(&sh)
                .arg0("sh")
                .args([
                    "-c",
                    &format!("echo {i} /nix/store/00000000000000000000000000000000-t > $out"),
                ])
                .env_clear()
                .env("out", &out)
                .env("PATH", "/path-not-set")
                .stdin(Stdio::null())
                .status()
                .context("running the builder bare")?;
            anyhow::ensure!(status.success(), "bare builder run failed: {status}");
        }
        per_run.push(started.elapsed() / count as u32);
    }
    Ok(median(per_run).as_secs_f64())
}

/// Median wall seconds of each kiln binary and (if `with_nix`) Nix building `count`
/// derivations; within a run, each binary and Nix take their turn.
fn compare(
    work: &Path,
    busybox: &Path,
    kilns: &[&str],
    shape: &str,
    count: usize,
    runs: usize,
    with_nix: bool,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let template = work.join(format!("template-{shape}-{count}"));
    let expr = work.join(format!("{shape}-{count}.nix"));
    let body = match shape {
        "chain" => format!(
            "builtins.foldl' (prev: i: [ (mk i (if prev == [] then \"\" else \"${{builtins.head prev}}\")) ]) [] (builtins.genList (i: i) {count})"
        ),
        _ => format!("builtins.genList (i: mk i \"\") {count}"),
    };
    std::fs::write(
        &expr,
        format!(
            "let bb = builtins.path {{ path = {bb}; name = \"busybox\"; }};\n\
             mk = i: dep: derivation {{ name = \"t${{toString i}}\"; system = \"x86_64-linux\"; builder = \"${{bb}}/sh\";\n\
               args = [ \"-c\" \"echo ${{toString i}} ${{dep}} > $out\" ]; }};\n\
             in {body}",
            bb = busybox.display()
        ),
    )?;
    let out = Command::new("nix-instantiate")
        .args(["--store", template.to_str().context("utf-8")?])
        .arg(&expr)
        .stderr(Stdio::null())
        .output()?;
    anyhow::ensure!(out.status.success(), "nix-instantiate failed");
    let drvs: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(String::from)
        .collect();
    let mut k_times: Vec<Vec<std::time::Duration>> = vec![Vec::new(); kilns.len()];
    let mut n_times = Vec::new();
    for run in 0..runs {
        let n_store = work.join(format!("n-{shape}-{count}-{run}"));
        for (which, kiln) in kilns.iter().enumerate() {
            let k_store = work.join(format!("k{which}-{shape}-{count}-{run}"));
            copy_store(&template, &k_store)?;
            let mut kargs = vec![
                *kiln,
                "--store",
                k_store.to_str().context("utf-8")?,
                "build",
                "--no-link",
                "-j",
                "2",
            ];
            kargs.extend(drvs.iter().map(String::as_str));
            k_times[which].push(time_command(&kargs)?.1);
            let _ = std::fs::remove_dir_all(&k_store);
        }
        if with_nix {
            copy_store(&template, &n_store)?;
            let mut nargs = vec![
                "nix-store",
                "--store",
                n_store.to_str().context("utf-8")?,
                "--option",
                "sandbox",
                "true",
                "--option",
                "substituters",
                "",
                "--max-jobs",
                "2",
                "--realise",
            ];
            nargs.extend(drvs.iter().map(String::as_str));
            n_times.push(time_command(&nargs)?.1);
            let _ = std::fs::remove_dir_all(&n_store);
        }
    }
    let n = if with_nix {
        seconds(median(n_times))
    } else {
        0.0
    };
    Ok((k_times.into_iter().map(|t| seconds(median(t))).collect(), n))
}

fn copy_store(template: &Path, dst: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(dst)
            .status()?
            .success(),
        "copying the template store to {}",
        dst.display()
    );
    Ok(())
}
