use std::collections::BTreeSet;
use std::fmt;

use kiln_hash::{fold, Hash};

use crate::{ContentAddress, Error, FileIngestionMethod, Result, StorePath};

pub const DEFAULT_STORE_DIR: &str = "/nix/store";

/// The logical store directory (e.g. `/nix/store`). Part of every path's hash.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreDir {
    dir: String,
}

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir {
            dir: DEFAULT_STORE_DIR.to_string(),
        }
    }
}

impl StoreDir {
    pub fn new(dir: &str) -> Result<StoreDir> {
        if !dir.starts_with('/') || (dir.len() > 1 && dir.ends_with('/')) || dir.contains('\0') {
            return Err(Error::BadStoreDir(dir.to_string()));
        }
        Ok(StoreDir {
            dir: dir.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.dir
    }

    /// Full path of a store object.
    pub fn display(&self, path: &StorePath) -> String {
        format!("{}/{}", self.dir, path.base_name())
    }

    /// Parse a full store path (exactly `STORE/<base>`, no sub-path).
    pub fn parse(&self, full: &str) -> Result<StorePath> {
        let base = full
            .strip_prefix(self.dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| Error::NotInStore(full.to_string(), self.dir.clone()))?;
        if base.contains('/') {
            return Err(Error::BadStorePath(
                full.to_string(),
                "has a path below the store object",
            ));
        }
        StorePath::from_base_name(base).map_err(|e| match e {
            Error::BadStorePath(_, why) => Error::BadStorePath(full.to_string(), why),
            other => other,
        })
    }

    /// Split `STORE/<base>[/sub/path]` into the store path and the rest (with its
    /// leading `/`, or empty).
    pub fn parse_with_subpath<'a>(&self, full: &'a str) -> Result<(StorePath, &'a str)> {
        let after_dir = full
            .strip_prefix(self.dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| Error::NotInStore(full.to_string(), self.dir.clone()))?;
        let split = after_dir.find('/').unwrap_or(after_dir.len());
        let path = self.parse(&full[..full.len() - after_dir.len() + split])?;
        Ok((path, &after_dir[split..]))
    }

    /// Nix's `makeStorePath`: hash `<type>:sha256:<hex inner>:<store>:<name>`, fold the
    /// digest to 160 bits.
    pub fn make_store_path(&self, path_type: &str, inner: &Hash, name: &str) -> Result<StorePath> {
        crate::validate_name(name)?;
        let fingerprint = format!(
            "{}:{}:{}:{}:{}",
            path_type,
            inner.algorithm(),
            inner.to_base16(),
            self.dir,
            name
        );
        StorePath::from_hash(&fold(Hash::sha256(fingerprint).as_bytes(), 20), name)
    }

    /// `<kind>` followed by `:<full ref>` for each reference (sorted) and `:self`.
    fn type_with_references<'a>(
        &self,
        kind: &str,
        references: impl IntoIterator<Item = &'a StorePath>,
        self_reference: bool,
    ) -> String {
        let sorted: BTreeSet<&StorePath> = references.into_iter().collect();
        let mut t = kind.to_string();
        for r in sorted {
            t.push(':');
            t.push_str(&self.display(r));
        }
        if self_reference {
            t.push_str(":self");
        }
        t
    }

    /// A text object (`builtins.toFile`, `.drv` files): `text:<refs>` over the sha256 of
    /// the contents.
    pub fn make_text_path<'a>(
        &self,
        name: &str,
        content_sha256: &Hash,
        references: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath> {
        let t = self.type_with_references("text", references, false);
        self.make_store_path(&t, content_sha256, name)
    }

    /// Fixed-output / content-addressed path. Recursive sha256 uses the `source` type
    /// (so it equals `nix-store --add`); every other case hashes
    /// `fixed:out:<r?><algo>:<hex>:` and uses `output:out`, which cannot carry references.
    pub fn make_fixed_output_path<'a>(
        &self,
        method: FileIngestionMethod,
        hash: &Hash,
        name: &str,
        references: impl IntoIterator<Item = &'a StorePath>,
        self_reference: bool,
    ) -> Result<StorePath> {
        if method == FileIngestionMethod::Recursive
            && hash.algorithm() == kiln_hash::Algorithm::Sha256
        {
            let t = self.type_with_references("source", references, self_reference);
            return self.make_store_path(&t, hash, name);
        }
        let has_refs = references.into_iter().next().is_some();
        if has_refs || self_reference {
            return Err(Error::BadContentAddress(
                format!("fixed:{}{}", method.prefix(), hash.algorithm()),
                format!("'{name}': only recursive sha256 content addresses may have references"),
            ));
        }
        let inner = format!(
            "fixed:out:{}{}:{}:",
            method.prefix(),
            hash.algorithm(),
            hash.to_base16()
        );
        self.make_store_path("output:out", &Hash::sha256(inner), name)
    }

    /// The path a content address gives for `name` and `references`. A reference to the
    /// path itself is expressed by `self_reference`, not in `references`.
    pub fn make_content_addressed_path<'a>(
        &self,
        ca: &ContentAddress,
        name: &str,
        references: impl IntoIterator<Item = &'a StorePath>,
        self_reference: bool,
    ) -> Result<StorePath> {
        match ca {
            ContentAddress::Text(hash) => {
                if self_reference {
                    return Err(Error::BadContentAddress(
                        ca.to_string(),
                        "text objects cannot refer to themselves".into(),
                    ));
                }
                self.make_text_path(name, hash, references)
            }
            ContentAddress::Fixed(method, hash) => {
                self.make_fixed_output_path(*method, hash, name, references, self_reference)
            }
        }
    }

    /// Path of output `output` of an input-addressed derivation named `drv_name` whose
    /// hash modulo is `drv_hash`.
    pub fn make_output_path(
        &self,
        output: &str,
        drv_hash: &Hash,
        drv_name: &str,
    ) -> Result<StorePath> {
        self.make_store_path(
            &format!("output:{output}"),
            drv_hash,
            &crate::output_path_name(drv_name, output),
        )
    }

    /// The path `nix-store --add` gives a tree whose NAR has sha256 `nar_hash`.
    pub fn make_source_path(&self, name: &str, nar_hash: &Hash) -> Result<StorePath> {
        self.make_store_path("source", nar_hash, name)
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir)
    }
}

impl fmt::Debug for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreDir({})", self.dir)
    }
}
