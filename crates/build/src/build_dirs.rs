//! Build directories (`$TMPDIR/nix-build-<drv>-<n>`) are reused rather than made anew:
//! on this kind of disk (ext4 with `discard`) making a directory searches the inode
//! bitmap past recently deleted inodes and was the dearest single syscall of a trivial
//! build. After a build its directory is emptied in the background (which had to happen
//! anyway) and kept under a spare name; the next build renames it to its own name,
//! without replacing anything, and gives it to its build user with mode 0700. One that
//! a new directory would not look like to a builder (see `kiln_sandbox::looks_new`:
//! its last owner, the builder, may have grown, flagged or labelled it) is deleted
//! instead.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::fs::{RenameFlags, CWD};

/// One executor's emptied directories waiting for a build, at most [`KEEP`].
#[derive(Default)]
pub(crate) struct BuildDirs {
    spare: Mutex<Vec<PathBuf>>,
    /// Makes spare names unique within the process.
    counter: AtomicU64,
}

const KEEP: usize = 8;

impl BuildDirs {
    /// Renames a spare directory to `dir` if there is one (never over an existing `dir`);
    /// false otherwise, or if `dir` exists.
    pub(crate) fn take(&self, dir: &Path) -> bool {
        let Some(spare) = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return false;
        };
        match rustix::fs::renameat_with(CWD, &spare, CWD, dir, RenameFlags::NOREPLACE) {
            Ok(()) => {
                // The last builder may have left it with other permissions.
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
                true
            }
            Err(_) => {
                // Its name may be wanted again (EEXIST): keep it for the next build.
                self.spare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(spare);
                false
            }
        }
    }

    /// Empties `dir` and keeps it for a later build, or deletes it. Runs off the build's
    /// path (the cleanup thread).
    pub(crate) fn recycle(&self, dir: PathBuf) {
        let full = self.spare.lock().unwrap_or_else(|e| e.into_inner()).len() >= KEEP;
        let Some(parent) = dir.parent().filter(|_| !full) else {
            let _ = kiln_store::remove_tree(&dir);
            return;
        };
        let spare = parent.join(format!(
            ".kiln-build-dir-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        if std::fs::rename(&dir, &spare).is_err() {
            let _ = kiln_store::remove_tree(&dir);
            return;
        }
        if empty(&spare).is_ok() && crate::namespace::looks_new(&spare) {
            self.spare
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(spare);
        } else {
            let _ = kiln_store::remove_tree(&spare);
        }
    }

    /// Deletes every spare directory.
    pub(crate) fn discard(&self) {
        let spares = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()));
        for dir in spares {
            let _ = std::fs::remove_dir(&dir).or_else(|_| kiln_store::remove_tree(&dir));
        }
    }
}

fn empty(dir: &Path) -> std::io::Result<()> {
    // The builder may have left the directory unreadable.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        kiln_store::remove_tree(&entry?.path()).map_err(std::io::Error::other)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_directory_comes_back_empty_or_not_at_all() {
        let dirs = BuildDirs::default();
        let (take, recycle) = (|d: &Path| dirs.take(d), |d: PathBuf| dirs.recycle(d));
        let tmp = tempfile::tempdir().unwrap();
        let used = tmp.path().join("nix-build-a.drv-0");
        std::fs::create_dir(&used).unwrap();
        std::fs::create_dir(used.join("sub")).unwrap();
        std::fs::write(used.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(used.join("sub"), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::fs::set_permissions(&used, std::fs::Permissions::from_mode(0o555)).unwrap();
        recycle(used.clone());
        assert!(!used.exists());

        let next = tmp.path().join("nix-build-b.drv-0");
        assert!(take(&next), "the emptied directory is reused");
        assert_eq!(std::fs::read_dir(&next).unwrap().count(), 0);
        let mode = std::fs::metadata(&next).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        // Never over an existing directory.
        recycle(next.clone());
        let taken = tmp.path().join("nix-build-c.drv-0");
        std::fs::create_dir(&taken).unwrap();
        assert!(!take(&taken));
        assert!(take(&tmp.path().join("nix-build-c.drv-1")));

        // A directory its builder marked in a way a new one is not is deleted instead.
        let marked = tmp.path().join("nix-build-d.drv-0");
        std::fs::create_dir(&marked).unwrap();
        if rustix::fs::setxattr(
            &marked,
            "user.kiln-test",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok()
        {
            recycle(marked.clone());
            assert!(!take(&tmp.path().join("nix-build-e.drv-0")));
            let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with(".kiln-build-dir"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        dirs.discard();
    }
}
