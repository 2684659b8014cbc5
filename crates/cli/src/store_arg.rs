//! Turning `--store` / `$KILN_STORE` into where a store's files live.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_store::Layout;

/// A local store, as the store itself lays it out under a filesystem root (`/` for
/// the machine's own store, `DIR` for a chroot-style store whose files are at
/// `DIR/nix/store`).
pub struct StoreLocation {
    pub layout: Layout,
}

impl StoreLocation {
    pub fn resolve(arg: Option<&str>) -> anyhow::Result<StoreLocation> {
        let root = match arg {
            None | Some("") => default_root()?,
            Some("/") | Some("local") => PathBuf::from("/"),
            Some(url) if url.starts_with("local?") => local_url_root(url)?,
            Some(url) if url.contains("://") => {
                bail!("unsupported store URL '{url}' (expected DIR, local?root=DIR, / or local)")
            }
            Some(dir) if dir.starts_with('/') || dir.starts_with('.') => {
                std::path::absolute(dir).with_context(|| format!("store root '{dir}'"))?
            }
            Some(other) => bail!(
                "unknown store '{other}' (expected an absolute DIR, local?root=DIR, / or local)"
            ),
        };
        Ok(StoreLocation {
            layout: Layout::under_root(&root),
        })
    }
}

fn local_url_root(url: &str) -> anyhow::Result<PathBuf> {
    let query = url.trim_start_matches("local?");
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("root", dir)) if dir.starts_with('/') => return Ok(PathBuf::from(dir)),
            Some(("root", dir)) => bail!("store root '{dir}' in '{url}' must be absolute"),
            _ => {}
        }
    }
    bail!("store URL '{url}' has no root=DIR parameter")
}

/// The machine's `/nix` when we can write it, otherwise a per-user root under the XDG
/// data directory, so kiln works with no configuration.
fn default_root() -> anyhow::Result<PathBuf> {
    let nix = Path::new("/nix");
    if writable(nix) || (!nix.exists() && writable(Path::new("/"))) {
        return Ok(PathBuf::from("/"));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set; pass --store DIR")?;
    Ok(data.join("kiln/root"))
}

fn writable(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // Good enough to choose a default: root can write anywhere; otherwise we must own it.
    match path.metadata() {
        Ok(meta) => {
            let uid = current_uid();
            uid == 0 || meta.uid() == uid
        }
        Err(_) => false,
    }
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
