//! The [`NarInfo`] record: printing as 2.8 writes it, and the signing and trust helpers
//! built on its fingerprint. Parsing lives in `parse.rs`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use kiln_hash::Hash;
use kiln_store_path::{ContentAddress, StoreDir, StorePath};

use crate::{Error, PublicKeys, Result, SecretKey};

/// The contents of a `<hashpart>.narinfo` file (§7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    /// `StorePath`: the store object described.
    pub path: StorePath,
    /// `URL`: where the (possibly compressed) NAR is, relative to the cache root.
    pub url: String,
    /// `Compression`: `none`, `xz`, `bzip2`, `zstd`, `lzip`, `lz4`, `br`, or anything else
    /// a cache wrote. A file without the field reads as `bzip2`.
    pub compression: String,
    /// `FileHash`: hash of the file at `url`. Optional when reading; Nix always writes it.
    pub file_hash: Option<Hash>,
    /// `FileSize`: size of the file at `url` (0 when absent).
    pub file_size: u64,
    /// `NarHash`: hash of the uncompressed NAR.
    pub nar_hash: Hash,
    /// `NarSize`: size of the uncompressed NAR; never 0 in a parsed narinfo.
    pub nar_size: u64,
    /// `References`, possibly including the path itself.
    pub references: BTreeSet<StorePath>,
    /// `Deriver`: the `.drv` that built the path, if known.
    pub deriver: Option<StorePath>,
    /// `System`: written only when set and non-empty (`nix copy` never sets it).
    pub system: Option<String>,
    /// `Sig` lines, `<keyname>:<base64>`, kept sorted and unique as Nix does.
    pub sigs: BTreeSet<String>,
    /// `CA`: the content-address claim, for content-addressed paths.
    pub ca: Option<ContentAddress>,
}

/// The file extension Nix gives a NAR compressed with `compression` (§7.2), or `None`
/// for a method it does not know. `none` has the empty extension.
pub fn compression_extension(compression: &str) -> Option<&'static str> {
    Some(match compression {
        "none" => "",
        "xz" => ".xz",
        "bzip2" => ".bz2",
        "zstd" => ".zst",
        "lzip" => ".lzip",
        "lz4" => ".lz4",
        "br" => ".br",
        _ => return None,
    })
}

/// Why a path can be trusted, from [`NarInfo::trust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The `ca` claim recomputes to the path itself: no signature is needed.
    ContentAddressed,
    /// The number of `Sig` lines that verify against the trusted keys (may be 0).
    Signatures(usize),
}

impl Trust {
    /// The count 2.8's `checkSignatures` returns: `usize::MAX` for a content-addressed
    /// path, otherwise the number of good signatures.
    pub fn count(self) -> usize {
        match self {
            Trust::ContentAddressed => usize::MAX,
            Trust::Signatures(n) => n,
        }
    }

    /// Whether at least `required` good signatures (or a valid `ca`) were found.
    pub fn meets(self, required: usize) -> bool {
        self.count() >= required
    }
}

impl NarInfo {
    /// Parse narinfo text with 2.8's reader rules (see the crate docs and §7.2). Errors
    /// name the line and key at fault; nothing panics.
    pub fn parse(store_dir: &StoreDir, text: &str) -> Result<NarInfo> {
        crate::parse::parse(store_dir, text)
    }

    /// The narinfo text exactly as 2.8 writes it: fixed field order, `References: ` with
    /// a trailing space when empty, base names for references and deriver, LF endings.
    ///
    /// Nix asserts that `FileHash` is present and that both hashes are sha256; here a
    /// missing `FileHash` line is left out and other algorithms print as `<algo>:<nix32>`,
    /// so every value still reads back to itself. An empty `system` is not written.
    pub fn to_text(&self, store_dir: &StoreDir) -> String {
        let mut out = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = self.write_text(store_dir, &mut out);
        out
    }

    fn write_text(&self, store_dir: &StoreDir, out: &mut String) -> std::fmt::Result {
        writeln!(out, "StorePath: {}", store_dir.display(&self.path))?;
        writeln!(out, "URL: {}", self.url)?;
        writeln!(out, "Compression: {}", self.compression)?;
        if let Some(file_hash) = &self.file_hash {
            writeln!(out, "FileHash: {file_hash}")?;
        }
        writeln!(out, "FileSize: {}", self.file_size)?;
        writeln!(out, "NarHash: {}", self.nar_hash)?;
        writeln!(out, "NarSize: {}", self.nar_size)?;
        out.push_str("References: ");
        for (i, reference) in self.references.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(reference.base_name());
        }
        out.push('\n');
        if let Some(deriver) = &self.deriver {
            writeln!(out, "Deriver: {deriver}")?;
        }
        if let Some(system) = self.system.as_deref().filter(|s| !s.is_empty()) {
            writeln!(out, "System: {system}")?;
        }
        for sig in &self.sigs {
            writeln!(out, "Sig: {sig}")?;
        }
        if let Some(ca) = &self.ca {
            writeln!(out, "CA: {ca}")?;
        }
        Ok(())
    }

    /// The signature fingerprint of this path (§7.3); an error when `nar_size` is 0.
    pub fn fingerprint(&self, store_dir: &StoreDir) -> Result<String> {
        crate::fingerprint(
            store_dir,
            &self.path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    /// Sign the fingerprint with `key` and add the signature to `sigs` (a no-op if that
    /// exact signature is already there).
    pub fn sign(&mut self, store_dir: &StoreDir, key: &SecretKey) -> Result<()> {
        let fingerprint = self.fingerprint(store_dir)?;
        self.sigs.insert(key.sign(fingerprint.as_bytes()));
        Ok(())
    }

    /// Whether the signature string `sig` is a good signature of this path by one of
    /// `keys` (see [`verify_detached`](crate::verify_detached) for what is an error).
    pub fn verify_signature(
        &self,
        store_dir: &StoreDir,
        sig: &str,
        keys: &PublicKeys,
    ) -> Result<bool> {
        let fingerprint = self.fingerprint(store_dir)?;
        crate::verify_detached(fingerprint.as_bytes(), sig, keys)
    }

    /// How many of `sigs` are good signatures by `keys`.
    pub fn count_valid_signatures(&self, store_dir: &StoreDir, keys: &PublicKeys) -> Result<usize> {
        let fingerprint = self.fingerprint(store_dir)?;
        let mut good = 0;
        for sig in &self.sigs {
            if crate::verify_detached(fingerprint.as_bytes(), sig, keys)? {
                good += 1;
            }
        }
        Ok(good)
    }

    /// 2.8's `checkSignatures`: a path whose `ca` checks out needs no signature;
    /// otherwise count the good signatures.
    pub fn trust(&self, store_dir: &StoreDir, keys: &PublicKeys) -> Result<Trust> {
        if self.is_content_addressed(store_dir) {
            return Ok(Trust::ContentAddressed);
        }
        self.count_valid_signatures(store_dir, keys)
            .map(Trust::Signatures)
    }

    /// The path the `ca` claim gives for this name and these references, or `None`
    /// without a claim. A reference to the path itself is taken out of the references
    /// and expressed as the `self` flag (§2.7).
    pub fn content_addressed_path(&self, store_dir: &StoreDir) -> Result<Option<StorePath>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let self_reference = self.references.contains(&self.path);
        let others = self.references.iter().filter(|r| **r != self.path);
        store_dir
            .make_content_addressed_path(ca, self.path.name(), others, self_reference)
            .map(Some)
            .map_err(|source| Error::ContentAddressPath {
                path: store_dir.display(&self.path),
                source,
            })
    }

    /// Whether the `ca` claim recomputes to the path itself, in which case the path is
    /// trusted without signatures. False without a claim or when no path can be
    /// computed from it.
    pub fn is_content_addressed(&self, store_dir: &StoreDir) -> bool {
        matches!(self.content_addressed_path(store_dir), Ok(Some(p)) if p == self.path)
    }
}
