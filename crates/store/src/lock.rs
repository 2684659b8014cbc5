//! `flock(2)` locks as Nix uses them (never fcntl: on Linux the two do not interact,
//! so fcntl locks would exclude nothing against Nix).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Open (creating, mode 0600) a lock file. std opens with O_CLOEXEC, so builders we
/// spawn later never inherit the lock.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// An exclusive lock on `<path>.lock`, following Nix's deletion protocol: a holder
/// that finishes successfully unlinks the file and writes one byte into it, so any
/// process blocked on that (now stale) inode sees a non-empty file and retries on a
/// fresh one.
pub struct PathLock {
    file: File,
    lock_path: PathBuf,
}

impl PathLock {
    /// Block until the lock is ours.
    pub fn acquire(lock_path: &Path) -> Result<PathLock> {
        loop {
            let file = open_lock_file(lock_path).ctx("opening lock file", lock_path)?;
            file.lock().ctx("locking", lock_path)?;
            if Self::still_current(&file, lock_path)? {
                return Ok(PathLock {
                    file,
                    lock_path: lock_path.to_path_buf(),
                });
            }
        }
    }

    /// Take the lock only if nobody holds it.
    pub fn try_acquire(lock_path: &Path) -> Result<Option<PathLock>> {
        loop {
            let file = open_lock_file(lock_path).ctx("opening lock file", lock_path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("locking", lock_path),
            }
            if Self::still_current(&file, lock_path)? {
                return Ok(Some(PathLock {
                    file,
                    lock_path: lock_path.to_path_buf(),
                }));
            }
        }
    }

    /// A non-empty lock file was deleted by its previous holder: ours is stale.
    fn still_current(file: &File, lock_path: &Path) -> Result<bool> {
        Ok(file.metadata().ctx("stat of lock file", lock_path)?.len() == 0)
    }

    /// Release after the path became valid: unlink, then mark the inode stale.
    pub fn release_and_delete(mut self) {
        // Failure here only leaves an empty lock file behind, which Nix also does after
        // failures and which the collector removes.
        let _ = std::fs::remove_file(&self.lock_path);
        let _ = self.file.write_all(b"d");
    }
}

/// Lock several paths in sorted order (the same order every process uses, so two
/// processes locking overlapping sets cannot deadlock).
pub fn lock_all(mut lock_paths: Vec<PathBuf>) -> Result<Vec<PathLock>> {
    lock_paths.sort();
    lock_paths.dedup();
    lock_paths.iter().map(|p| PathLock::acquire(p)).collect()
}
