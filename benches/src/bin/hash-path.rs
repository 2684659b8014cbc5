//! `kiln hash path` against `nix-hash` on a 1 GiB file and a 20,000-file tree, plus
//! kiln's sha256 throughput against `openssl speed -evp sha256` on one core.
//!
//! Run: `cargo build --release -p kiln && cargo run --release -p kiln-bench --bin hash-path`
//! (options: `--runs N`, `--dir DIR` for where the inputs are made).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use kiln_bench::{kiln_binary, median, seconds, time_command, BenchArgs, Noise};

const BIG_FILE_BYTES: u64 = 1 << 30;
const TREE_FILES: usize = 20_000;

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse("kiln-bench-hash-", 5)?;
    let (runs, work) = (args.runs, &args.work);
    let kiln = kiln_binary()?;
    let kiln = kiln.to_str().context("kiln path is not UTF-8")?;

    let big = work.path().join("big.bin");
    make_big_file(&big)?;
    let tree = work.path().join("tree");
    kiln_bench::make_tree(&tree, TREE_FILES)?;

    println!("# kiln hash path vs nix-hash ({runs} runs each, median wall time, warm cache)");
    println!("cpu sha_ni: {}", cpu_has_sha_ni());
    let openssl = openssl_sha256_bytes_per_sec()?;
    println!(
        "openssl speed -evp sha256 (1 MiB blocks, one core): {:.0} MB/s",
        openssl / 1e6
    );

    for (label, path, bytes) in [
        ("1 GiB file", big.as_path(), Some(BIG_FILE_BYTES)),
        ("20,000-file tree", tree.as_path(), None),
    ] {
        let p = path.to_str().context("path is not UTF-8")?;
        let kiln_argv = [kiln, "hash", "path", "--type", "sha256", "--base32", p];
        let nix_argv = ["nix-hash", "--type", "sha256", "--base32", p];
        let (k_out, _) = time_command(&kiln_argv)?;
        let (n_out, _) = time_command(&nix_argv)?;
        anyhow::ensure!(
            k_out.trim() == n_out.trim(),
            "{label}: kiln printed {} but nix-hash printed {}",
            k_out.trim(),
            n_out.trim()
        );
        let (mut k_times, mut n_times) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            k_times.push(time_command(&kiln_argv)?.1);
            n_times.push(time_command(&nix_argv)?.1);
        }
        let (k, n) = (median(k_times), median(n_times));
        println!(
            "{label}: kiln {:.3} s, nix-hash {:.3} s, speed-up x{:.2} (nix/kiln)",
            seconds(k),
            seconds(n),
            seconds(n) / seconds(k)
        );
        if let Some(bytes) = bytes {
            let rate = bytes as f64 / seconds(k);
            println!(
                "{label}: kiln {:.0} MB/s = {:.1}% of openssl's single-core sha256",
                rate / 1e6,
                100.0 * rate / openssl
            );
        }
    }
    Ok(())
}

fn make_big_file(path: &Path) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(fs::File::create(path)?);
    let mut noise = Noise::new(42);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..(BIG_FILE_BYTES >> 20) {
        noise.fill(&mut buf);
        file.write_all(&buf)?;
    }
    file.flush()?;
    Ok(())
}

fn cpu_has_sha_ni() -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.split_whitespace().any(|w| w == "sha_ni"))
        .unwrap_or(false)
}

/// Bytes per second `openssl speed -evp sha256` reports for 1 MiB blocks.
fn openssl_sha256_bytes_per_sec() -> anyhow::Result<f64> {
    let (out, _) = time_command(&[
        "openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "3",
    ])?;
    // The last line reads: "sha256   1201668.10k" (thousands of bytes per second).
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("sha256"))
        .context("no sha256 line in openssl speed output")?;
    let field = line
        .split_whitespace()
        .last()
        .context("empty openssl line")?;
    let kilo: f64 = field.trim_end_matches('k').parse()?;
    Ok(kilo * 1000.0)
}
