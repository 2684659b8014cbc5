//! Where a store's files live: the logical store directory (`/nix/store`, part of every
//! hash) versus the physical directories under a root (`/` for the machine's store,
//! `DIR` for a chroot-style store at `DIR/nix/store`, as `nix --store DIR` uses).

use std::path::{Path, PathBuf};

use kiln_store_path::{StoreDir, StorePath};

#[derive(Debug, Clone)]
pub struct Layout {
    pub store_dir: StoreDir,
    pub root: PathBuf,
    pub real_store_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Layout {
    /// The layout Nix uses for a store rooted at `root` with logical dir `/nix/store`.
    pub fn under_root(root: &Path) -> Layout {
        let store_dir = StoreDir::default();
        Layout {
            real_store_dir: root.join(store_dir.as_str().trim_start_matches('/')),
            state_dir: root.join("nix/var/nix"),
            log_dir: root.join("nix/var/log/nix"),
            store_dir,
            root: root.to_path_buf(),
        }
    }

    /// The file of a store object on this machine.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.real_store_dir.join(path.base_name())
    }

    /// `<path>.lock`, the per-path lock file.
    pub fn lock_path(&self, path: &StorePath) -> PathBuf {
        self.real_store_dir
            .join(format!("{}.lock", path.base_name()))
    }

    pub fn db_dir(&self) -> PathBuf {
        self.state_dir.join("db")
    }

    pub fn temp_roots_dir(&self) -> PathBuf {
        self.state_dir.join("temproots")
    }

    pub fn gc_lock_path(&self) -> PathBuf {
        self.state_dir.join("gc.lock")
    }

    pub fn gc_socket_path(&self) -> PathBuf {
        self.state_dir.join("gc-socket/socket")
    }

    pub fn gc_roots_dir(&self) -> PathBuf {
        self.state_dir.join("gcroots")
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.state_dir.join("profiles")
    }

    /// `drvs/<first 2 chars>/<rest>.bz2` under the log dir, where Nix keeps the
    /// (bzip2-compressed) build log of a derivation, and kiln writes it.
    pub fn log_path(&self, drv: &StorePath) -> PathBuf {
        self.log_paths(drv)[1].0.clone()
    }

    /// Every file a build log of `drv` may be in, in the order Nix 2.8 looks (older
    /// versions wrote uncompressed logs, or no two-level directory), each with whether
    /// it is bzip2-compressed. [`Layout::log_path`] is one of them.
    pub fn log_paths(&self, drv: &StorePath) -> [(PathBuf, bool); 4] {
        let base = drv.base_name();
        let (head, rest) = base.split_at(2);
        let drvs = self.log_dir.join("drvs");
        [
            (drvs.join(head).join(rest), false),
            (drvs.join(head).join(format!("{rest}.bz2")), true),
            (drvs.join(base), false),
            (drvs.join(format!("{base}.bz2")), true),
        ]
    }

    pub fn display(&self, path: &StorePath) -> String {
        self.store_dir.display(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_kiln_writes_is_one_nix_reads() {
        let layout = Layout::under_root(Path::new("/r"));
        let drv = layout
            .store_dir
            .parse("/nix/store/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv")
            .unwrap();
        let drvs = "/r/nix/var/log/nix/drvs";
        assert_eq!(
            layout.log_path(&drv),
            PathBuf::from(format!(
                "{drvs}/cx/l3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv.bz2"
            ))
        );
        let paths: Vec<(String, bool)> = layout
            .log_paths(&drv)
            .into_iter()
            .map(|(p, bz)| (p.display().to_string(), bz))
            .collect();
        assert_eq!(
            paths,
            vec![
                (
                    format!("{drvs}/cx/l3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv"),
                    false
                ),
                (
                    format!("{drvs}/cx/l3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv.bz2"),
                    true
                ),
                (
                    format!("{drvs}/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv"),
                    false
                ),
                (
                    format!("{drvs}/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv.bz2"),
                    true
                ),
            ]
        );
    }
}
