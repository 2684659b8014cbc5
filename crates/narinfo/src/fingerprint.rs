//! The string a binary-cache signature covers (§7.3).

use std::collections::BTreeSet;

use kiln_hash::Hash;
use kiln_store_path::{StoreDir, StorePath};

use crate::{Error, Result};

/// `1;<full path>;<NarHash as algo:nix32>;<NarSize>;<full references, sorted, ','-joined>`.
///
/// References are deduplicated and sorted (by base name, which is full-path order for one
/// store directory); with none, the result ends in `;`. A NAR size of 0 means "unknown",
/// and 2.8 refuses to fingerprint such a path.
pub fn fingerprint<'a>(
    store_dir: &StoreDir,
    path: &StorePath,
    nar_hash: &Hash,
    nar_size: u64,
    references: impl IntoIterator<Item = &'a StorePath>,
) -> Result<String> {
    if nar_size == 0 {
        return Err(Error::UnknownNarSize {
            path: store_dir.display(path),
        });
    }
    let references: BTreeSet<&StorePath> = references.into_iter().collect();
    let references: Vec<String> = references.iter().map(|r| store_dir.display(r)).collect();
    Ok(format!(
        "1;{};{};{};{}",
        store_dir.display(path),
        nar_hash,
        nar_size,
        references.join(",")
    ))
}
