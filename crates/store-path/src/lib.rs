//! kiln-store-path: layer 2, above kiln-hash. What a store path is and how Nix 2.8
//! computes one: name rules, parsing against a store directory, the fingerprint scheme
//! (`text`, `source`, `output:NAME`, fixed outputs), content-address strings,
//! placeholders, and scanning byte streams for references to store paths.
//!
//! Invariants: a [`StorePath`] always has a valid 32-character nix32 hash part, a `-`,
//! and a name obeying [`validate_name`]; it does not know its store directory — a
//! [`StoreDir`] prints and parses full paths. Paths order by their base name, which for a
//! common store directory is the byte order Nix sorts full paths in.

mod content_address;
mod path;
mod placeholder;
mod scan;
mod store_dir;

pub use content_address::{ContentAddress, FileIngestionMethod};
pub use path::{validate_name, StorePath, HASH_PART_LEN, MAX_NAME_LEN};
pub use placeholder::{downstream_placeholder, output_path_name, output_placeholder};
pub use scan::{scan_for_references, ReferenceScanner};
pub use store_dir::{StoreDir, DEFAULT_STORE_DIR};

/// Errors from parsing or validating store paths and content addresses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("store path name '{0}' is empty")]
    EmptyName(String),
    #[error("store path name '{name}' is longer than {max} characters", max = MAX_NAME_LEN)]
    NameTooLong { name: String },
    #[error("store path name '{name}' contains forbidden character {ch:?} at byte {pos}")]
    InvalidNameChar { name: String, ch: char, pos: usize },
    #[error("path '{0}' is not in the Nix store '{1}'")]
    NotInStore(String, String),
    #[error("path '{0}' is not a valid store path: {1}")]
    BadStorePath(String, &'static str),
    #[error("store directory '{0}' must be an absolute path without a trailing slash")]
    BadStoreDir(String),
    #[error("invalid content address '{0}': {1}")]
    BadContentAddress(String, String),
    #[error(transparent)]
    Hash(#[from] kiln_hash::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
