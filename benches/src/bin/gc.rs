//! Deleting 10,000 unreachable paths: `kiln store gc` against `nix-store --gc`, each on
//! its own copy of the same store (made by Nix, so both start from identical state).
//!
//! Run: `cargo build --release -p kiln && cargo run --release -p kiln-bench --bin gc`
//! (options: `--runs N`, `--paths N`, `--dir DIR`).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context;
use kiln_bench::{kiln_binary, median, seconds, time_command, BenchArgs};

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse("kiln-bench-gc-", 3)?;
    let (runs, work) = (args.runs, &args.work);
    let paths = args.number("--paths", 10_000)?;
    let kiln = kiln_binary()?;
    let kiln = kiln.to_str().context("utf-8")?;

    // One template store with `paths` small unreachable paths, half of them referring
    // to another, made by a single nix-instantiate run.
    let template = work.path().join("template");
    let expr = work.path().join("many.nix");
    std::fs::write(
        &expr,
        format!(
            "let mk = i: builtins.toFile \"p${{toString i}}\" \"content ${{toString i}}\";\n\
             in builtins.genList (i: if i < {half} then mk i else builtins.toFile \"q${{toString i}}\" \"uses ${{mk (i - {half})}}\") {paths}",
            half = paths / 2
        ),
    )?;
    let out = Command::new("nix-instantiate")
        .args([
            "--store",
            template.to_str().context("utf-8")?,
            "--eval",
            "--strict",
            "--read-write-mode",
        ])
        .arg(&expr)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "nix-instantiate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (mut k_times, mut n_times) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let k_store = work.path().join(format!("kiln-{run}"));
        let n_store = work.path().join(format!("nix-{run}"));
        for dst in [&k_store, &n_store] {
            let status = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(dst)
                .status()?;
            anyhow::ensure!(status.success(), "cp -a failed");
        }
        let (k_out, k) = time_command(&[
            kiln,
            "--store",
            k_store.to_str().context("utf-8")?,
            "store",
            "gc",
        ])?;
        let (_, n) = time_command(&[
            "nix-store",
            "--store",
            n_store.to_str().context("utf-8")?,
            "--gc",
        ])?;
        let deleted = k_out.lines().count();
        anyhow::ensure!(deleted >= paths, "kiln deleted only {deleted} entries");
        k_times.push(k);
        n_times.push(n);
    }
    let (k, n) = (median(k_times), median(n_times));
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "# delete {paths} unreachable paths ({runs} runs, median)"
    )?;
    writeln!(
        stdout,
        "kiln store gc: {:.3} s; nix-store --gc: {:.3} s; speed-up x{:.2}",
        seconds(k),
        seconds(n),
        seconds(n) / seconds(k)
    )?;
    Ok(())
}
