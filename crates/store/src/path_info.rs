use std::collections::BTreeSet;

use kiln_hash::Hash;
use kiln_store_path::{ContentAddress, StorePath};

/// What the database records about a valid store object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub deriver: Option<StorePath>,
    /// sha256 of the NAR serialisation.
    pub nar_hash: Hash,
    pub nar_size: u64,
    /// Sorted; may include `path` itself.
    pub references: BTreeSet<StorePath>,
    /// Unix seconds.
    pub registration_time: i64,
    /// Built locally, hence trusted without signatures.
    pub ultimate: bool,
    pub signatures: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl PathInfo {
    /// A fresh record with no deriver, signatures or CA, registered now.
    pub fn new(path: StorePath, nar_hash: Hash, nar_size: u64) -> PathInfo {
        PathInfo {
            path,
            deriver: None,
            nar_hash,
            nar_size,
            references: BTreeSet::new(),
            registration_time: now(),
            ultimate: false,
            signatures: BTreeSet::new(),
            ca: None,
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
