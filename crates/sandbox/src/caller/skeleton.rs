//! Recycling chroots: the skeleton of a finished build's chroot (`/etc`
//! files, `/dev` and `/proc` mount points, the empty store directory, …) is
//! the same for the next build with the same settings, so instead of deleting
//! two dozen entries and creating them again, [`recycle`] empties what a build
//! can change and keeps the rest for [`crate::prepare`] to rename into place.
//!
//! Only root's chroots are recycled, and only with a user namespace: then the
//! chroot and everything in it but `tmp` (01777) and the store directory
//! (01775, group `nixbld`) belong to root, so a builder (uid 1000 of its own
//! namespace, a build user on the host) cannot change them; and `/etc/passwd`
//! is the one written before the build, not rewritten with host ids. What the
//! sandbox itself leaves behind (the `/dev/ptmx` symlink) is removed too. A
//! recycled chroot therefore has exactly the files a fresh one has; only the
//! times of its directories are older (one that a new directory would not
//! look like, see `fresh_dir.rs`, is not recycled).
//!
//! While waiting, a skeleton sits wherever the caller put the finished chroot
//! (kiln: a temp-rooted scratch name in the store, which collectors leave
//! alone), in the pool of the [`crate::Sandboxes`] it was recycled into, which
//! deletes the ones still waiting when it is dropped.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cleanup::cleanup;
use super::fresh_dir::looks_new;
use crate::error::Error;

/// Identifies the skeleton a chroot was made with; see [`crate::Prepared`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skeleton {
    key: u64,
    /// The store directory inside the chroot, relative to it.
    store: PathBuf,
    /// `/etc/passwd` as written; the helper rewrites it when the kernel
    /// refuses the user namespace after all.
    passwd: Vec<u8>,
}

/// Skeletons waiting for a build, at most this many: enough for a few
/// parallel jobs, and each costs only a few inodes.
const KEEP: usize = 8;

/// The skeletons waiting for a build, and where they wait.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    waiting: Mutex<Vec<(Skeleton, PathBuf)>>,
}

impl Skeleton {
    /// `parts` must determine every file of the skeleton.
    pub(crate) fn new(parts: impl Hash, store: PathBuf, passwd: Vec<u8>) -> Skeleton {
        let mut hasher = DefaultHasher::new();
        parts.hash(&mut hasher);
        Skeleton {
            key: hasher.finish(),
            store,
            passwd,
        }
    }
}

impl Pool {
    /// Moves a waiting skeleton like `wanted` to `chroot`; false if there is none
    /// (or it could not be moved, in which case it is deleted).
    pub(crate) fn take(&self, wanted: &Skeleton, chroot: &Path) -> bool {
        let found = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let at = waiting.iter().position(|(s, _)| s == wanted);
            at.map(|at| waiting.swap_remove(at).1)
        };
        let Some(dir) = found else { return false };
        if std::fs::rename(&dir, chroot).is_ok() {
            return true;
        }
        let _ = cleanup(&dir);
        false
    }

    /// Takes the finished chroot now at `dir` (moved there by the caller after
    /// collecting the outputs) for later builds, emptying what a build may have
    /// changed; deletes it instead if it cannot be recycled.
    pub(crate) fn recycle(&self, skeleton: Option<&Skeleton>, dir: &Path) -> Result<(), Error> {
        let Some(skeleton) = skeleton else {
            return cleanup(dir);
        };
        let full = {
            let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.len() >= KEEP
        };
        if full {
            return cleanup(dir);
        }
        let unchanged = std::fs::read(dir.join("etc/passwd")).is_ok_and(|p| p == skeleton.passwd);
        if !unchanged {
            return cleanup(dir);
        }
        let scrubbed = empty(&dir.join("tmp"))
            .and_then(|()| empty(&dir.join(&skeleton.store)))
            .and_then(|()| remove_if_present(&dir.join("dev/ptmx")));
        if let Err(e) = scrubbed {
            let _ = cleanup(dir);
            return Err(e);
        }
        // On ext4 a directory never shrinks: one that held many entries would
        // show `ls -la` a size no fresh chroot has.
        if !looks_new(&dir.join("tmp")) || !looks_new(&dir.join(&skeleton.store)) {
            return cleanup(dir);
        }
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((skeleton.clone(), dir.to_path_buf()));
        Ok(())
    }
}

impl Drop for Pool {
    /// Skeletons are scratch directories in the caller's store: none outlives
    /// the pool.
    fn drop(&mut self) {
        let waiting = std::mem::take(self.waiting.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (_, dir) in waiting {
            let _ = cleanup(&dir);
        }
    }
}

/// Deletes everything inside `dir`, keeping `dir`.
fn empty(dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::fs("reading directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::fs("reading directory", dir, e))?;
        cleanup(&entry.path())?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::fs("removing", path, e)),
        _ => Ok(()),
    }
}
