//! Permanent GC roots: indirect roots as `nix-build -o` / `--add-root` make them.

use std::path::{Component, Path, PathBuf};

use kiln_hash::{nix32, Algorithm, Hash};
use kiln_store_path::StorePath;

use crate::error::{Error, IoContext, Result};
use crate::symlink::{is_in_dir, place_root_link, replace_symlink};
use crate::LocalStore;

impl LocalStore {
    /// Make `link` a symlink to `path` and register it as an indirect root:
    /// `gcroots/auto/<nix32(sha1(link))>` → `link`, with `link` made absolute and
    /// canonical and its missing parent directories created. As Nix 2.8 does, refuses a
    /// link inside the store, and an existing `link` unless it is a symlink into the
    /// store (which is replaced atomically). Returns the link.
    pub fn add_indirect_root(&self, link: &Path, path: &StorePath) -> Result<PathBuf> {
        let link = canonical_absolute(link)?;
        let store_dir = self.store_dir().as_str();
        if is_in_dir(link.as_os_str().as_encoded_bytes(), store_dir) {
            return Err(Error::RootInStore(link));
        }
        let shown = self.layout().display(path);
        // The store path must stay alive from before the link exists.
        self.add_temp_root(path)?;
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).ctx("creating directory", parent)?;
        }
        place_root_link(Path::new(&shown), &link, store_dir)?;
        let auto_name = nix32::encode(
            Hash::digest(Algorithm::Sha1, link.as_os_str().as_encoded_bytes()).as_bytes(),
        );
        let auto_dir = self.layout().gc_roots_dir().join("auto");
        std::fs::create_dir_all(&auto_dir).ctx("creating directory", &auto_dir)?;
        replace_symlink(&link, &auto_dir.join(auto_name))?;
        // A collector that started since the path was first rooted here may have
        // searched for permanent roots before the link existed.
        self.add_temp_root_and_tell_collector(path)?;
        Ok(link)
    }
}

/// `link` absolute, without `.`, `..` or repeated slashes, resolved by its text alone
/// (symlinks are not followed), as Nix names the roots it makes.
fn canonical_absolute(link: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(link).ctx("resolving", link)?;
    let mut canonical = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::Normal(name) => canonical.push(name),
            Component::ParentDir => {
                canonical.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(canonical)
}
