//! Permanent GC roots: indirect roots as `nix-build -o` / `--add-root` make them.

use std::path::{Path, PathBuf};

use kiln_hash::{nix32, Algorithm, Hash};
use kiln_store_path::StorePath;

use crate::error::{IoContext, Result};
use crate::LocalStore;

impl LocalStore {
    /// Make `link` a symlink to `path` and register it as an indirect root:
    /// `gcroots/auto/<nix32(sha1(abs link))>` → `link`. Both symlinks are replaced
    /// atomically (temporary name, then rename). Returns the absolute link.
    pub fn add_indirect_root(&self, link: &Path, path: &StorePath) -> Result<PathBuf> {
        let link = std::path::absolute(link).ctx("resolving", link)?;
        // The store path must stay alive from before the link exists.
        self.add_temp_root(path)?;
        replace_symlink(Path::new(&self.layout().display(path)), &link)?;
        let link_text = link.to_string_lossy();
        let auto_name =
            nix32::encode(Hash::digest(Algorithm::Sha1, link_text.as_bytes()).as_bytes());
        let auto_dir = self.layout().gc_roots_dir().join("auto");
        std::fs::create_dir_all(&auto_dir).ctx("creating directory", &auto_dir)?;
        replace_symlink(&link, &auto_dir.join(auto_name))?;
        // A collector that started since the path was first rooted here may have
        // searched for permanent roots before the link existed.
        self.add_temp_root_and_tell_collector(path)?;
        Ok(link)
    }
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    let tmp = link.with_file_name(format!(
        "{}.tmp-{}-{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    std::os::unix::fs::symlink(target, &tmp).ctx("creating symlink", &tmp)?;
    std::fs::rename(&tmp, link).ctx("replacing symlink", link)
}
