//! `kiln hash path|file`: the same digests `nix-hash` prints.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_hash::{Algorithm, Encoding, Hash, Hasher};

#[derive(clap::Args, Clone, Copy)]
#[group(multiple = false)]
pub struct FormatFlags {
    /// Print in base-16 (hex).
    #[arg(long)]
    base16: bool,
    /// Print in Nix's base-32 (the default).
    #[arg(long)]
    base32: bool,
    /// Print in base-64.
    #[arg(long)]
    base64: bool,
    /// Print in SRI form (algo-base64).
    #[arg(long)]
    sri: bool,
}

impl FormatFlags {
    fn encoding(self) -> Encoding {
        if self.base16 {
            Encoding::Base16
        } else if self.base64 {
            Encoding::Base64
        } else if self.sri {
            Encoding::Sri
        } else {
            Encoding::Nix32
        }
    }
}

#[derive(Clone, Copy)]
pub enum Mode {
    /// Hash the NAR serialisation.
    Nar,
    /// Hash the bytes of a regular file.
    Flat,
}

pub fn run(
    paths: &[PathBuf],
    algorithm: &str,
    format: FormatFlags,
    truncate: bool,
    mode: Mode,
) -> anyhow::Result<()> {
    let algorithm: Algorithm = algorithm.parse()?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for path in paths {
        let hash = match mode {
            Mode::Nar => hash_nar(path, algorithm),
            Mode::Flat => hash_file(path, algorithm),
        }
        .with_context(|| format!("hashing '{}'", path.display()))?;
        writeln!(out, "{}", render(&hash, format.encoding(), truncate))?;
    }
    out.flush()?;
    Ok(())
}

fn render(hash: &Hash, encoding: Encoding, truncate: bool) -> String {
    if !truncate {
        return hash.encode(encoding);
    }
    let folded = hash.fold(20);
    match encoding {
        Encoding::Base16 => kiln_hash::encoding::base16_encode(&folded),
        Encoding::Nix32 => kiln_hash::nix32::encode(&folded),
        Encoding::Base64 => kiln_hash::encoding::base64_encode(&folded),
        Encoding::Sri => format!(
            "{}-{}",
            hash.algorithm(),
            kiln_hash::encoding::base64_encode(&folded)
        ),
    }
}

pub fn hash_nar(path: &Path, algorithm: Algorithm) -> anyhow::Result<Hash> {
    let mut hasher = Hasher::new(algorithm);
    kiln_nar::dump_path(path, &mut hasher)?;
    Ok(hasher.finish())
}

fn hash_file(path: &Path, algorithm: Algorithm) -> anyhow::Result<Hash> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new(algorithm);
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finish())
}
