//! Adding a 20,000-file tree to a fresh store: `kiln store add-path` against
//! `nix-store --add`, side by side, each run into its own fresh store.
//!
//! Run: `cargo build --release -p kiln && cargo run --release -p kiln-bench --bin store-add`
//! (options: `--runs N`, `--files N`, `--dir DIR`).

use anyhow::Context;
use kiln_bench::{kiln_binary, make_tree, median, seconds, time_command, BenchArgs};

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse("kiln-bench-add-", 5)?;
    let (runs, work) = (args.runs, &args.work);
    let files = args.number("--files", 20_000)?;
    let kiln = kiln_binary()?;
    let kiln = kiln.to_str().context("kiln path is not UTF-8")?;
    let tree = work.path().join("tree");
    make_tree(&tree, files)?;
    let tree = tree.to_str().context("path is not UTF-8")?;

    let (mut k_times, mut n_times) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let k_store = work.path().join(format!("kiln-{run}"));
        let n_store = work.path().join(format!("nix-{run}"));
        let k_store = k_store.to_str().context("utf-8")?;
        let n_store = n_store.to_str().context("utf-8")?;
        // Create both stores first so only the add is timed.
        time_command(&[kiln, "--store", k_store, "store", "verify"])?;
        time_command(&["nix-store", "--store", n_store, "--verify"])?;
        let (k_out, k) = time_command(&[kiln, "--store", k_store, "store", "add-path", tree])?;
        let (n_out, n) = time_command(&["nix-store", "--store", n_store, "--add", tree])?;
        anyhow::ensure!(
            k_out.trim() == n_out.trim(),
            "kiln added {} but nix added {}",
            k_out.trim(),
            n_out.trim()
        );
        k_times.push(k);
        n_times.push(n);
    }
    let (k, n) = (median(k_times), median(n_times));
    println!("# add a {files}-file tree to a fresh store ({runs} runs, median)");
    println!(
        "kiln store add-path: {:.3} s ({:.0} files/s); nix-store --add: {:.3} s ({:.0} files/s); speed-up x{:.2}",
        seconds(k),
        files as f64 / seconds(k),
        seconds(n),
        files as f64 / seconds(n),
        seconds(n) / seconds(k)
    );
    Ok(())
}
