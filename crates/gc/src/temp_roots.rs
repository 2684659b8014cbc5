//! The collector's view of temp roots: the hash parts of what live processes have
//! rooted. The file format and Nix's reading rules are the store's
//! ([`kiln_store::temp_roots_file`]); this module only turns entries into hash parts.

use std::collections::HashSet;

use kiln_store::Layout;
use kiln_store_path::{StorePath, HASH_PART_LEN};

use crate::error::Result;

/// Hash parts of all temp roots of live processes.
pub(crate) fn read_temp_roots(
    layout: &Layout,
    log: &mut dyn FnMut(String),
) -> Result<HashSet<String>> {
    let entries = kiln_store::temp_roots_file::read_live_roots(&layout.temp_roots_dir(), log)?;
    Ok(entries
        .iter()
        .filter_map(|entry| hash_part_of(layout, entry))
        .collect())
}

/// The hash part of a logical store path given as bytes; `None` if it is not one.
pub(crate) fn hash_part_of(layout: &Layout, entry: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(entry).ok()?;
    let (path, _) = layout.store_dir.parse_with_subpath(text).ok()?;
    Some(path.hash_part().to_string())
}

pub(crate) fn hash_part(path: &StorePath) -> String {
    path.hash_part()[..HASH_PART_LEN].to_string()
}
