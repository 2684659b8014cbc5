//! Helpers shared by the side-by-side benchmark binaries: locating the `kiln` binary,
//! timing commands, and reporting figures as ratios against Nix.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The release `kiln` binary: `$KILN_BIN`, else `target/release/kiln` beside this crate.
pub fn kiln_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("KILN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/kiln")
        });
    if !path.exists() {
        bail!(
            "kiln binary not found at {}; run `cargo build --release -p kiln` or set KILN_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// Run `argv` to completion, failing on a non-zero exit, and return its stdout and the
/// wall time it took.
pub fn time_command(argv: &[&str]) -> anyhow::Result<(String, Duration)> {
    let start = Instant::now();
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            argv,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
    ))
}

/// Median of the samples.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Deterministic fast pseudo-random bytes (xorshift64*), so inputs are incompressible
/// but reproducible.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A tree of `files` small files: directories of 100 entries, sizes 0..4 KiB, every
/// tenth file executable, one symlink per directory.
pub fn make_tree(root: &std::path::Path, files: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut noise = Noise::new(7);
    let mut buf = vec![0u8; 8192];
    for d in 0..files.div_ceil(100) {
        let dir = root.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..99.min(files - d * 100) {
            let len = (noise.next_u64() % 4096) as usize;
            noise.fill(&mut buf[..len]);
            let file = dir.join(format!("f{f:02}"));
            std::fs::write(&file, &buf[..len])?;
            if f % 10 == 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        std::os::unix::fs::symlink("f00", dir.join("link"))?;
    }
    Ok(())
}

/// The options every bench binary takes: `--runs N`, `--dir DIR` (where inputs and
/// stores are made), plus its own numeric options read with [`BenchArgs::number`].
pub struct BenchArgs {
    args: Vec<String>,
    pub runs: usize,
    pub work: tempfile::TempDir,
}

impl BenchArgs {
    pub fn parse(prefix: &str, default_runs: usize) -> anyhow::Result<BenchArgs> {
        let args: Vec<String> = std::env::args().collect();
        let base =
            flag(&args, "--dir").unwrap_or_else(|| std::env::temp_dir().display().to_string());
        let runs = flag(&args, "--runs")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default_runs);
        let work = tempfile::Builder::new().prefix(prefix).tempdir_in(base)?;
        Ok(BenchArgs { args, runs, work })
    }

    pub fn number(&self, name: &str, default: usize) -> anyhow::Result<usize> {
        Ok(flag(&self.args, name)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    }

    pub fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    pub fn text(&self, name: &str) -> Option<String> {
        flag(&self.args, name)
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
