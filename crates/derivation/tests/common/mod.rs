//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use kiln_derivation::{Derivation, Error};
use kiln_store_path::{StoreDir, StorePath};

pub fn store_dir() -> StoreDir {
    StoreDir::default()
}

pub fn data_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

/// Bytes of a file under tests/data.
pub fn data(file: &str) -> Vec<u8> {
    std::fs::read(data_path(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

pub fn sp(full: &str) -> StorePath {
    store_dir()
        .parse(full)
        .unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// A resolver over an in-memory set of derivations, counting lookups.
pub struct MapStore {
    pub drvs: HashMap<StorePath, Derivation>,
    pub lookups: usize,
}

impl MapStore {
    pub fn new() -> Self {
        MapStore {
            drvs: HashMap::new(),
            lookups: 0,
        }
    }

    pub fn add(&mut self, path: StorePath, drv: Derivation) {
        self.drvs.insert(path, drv);
    }

    pub fn resolve(&mut self, path: &StorePath) -> Result<Derivation, Error> {
        self.lookups += 1;
        self.drvs.get(path).cloned().ok_or_else(|| Error::Io {
            path: store_dir().display(path),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}
