//! Placing symlinks atomically, for GC roots: the user's result link, which must not
//! clobber what is already there unless that is itself a symlink into the store, and
//! the collector's `gcroots/auto` link, which is simply replaced.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{renameat_with, RenameFlags, CWD};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

/// Make `link` a symlink to `target`, whatever is there now.
pub(crate) fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    let tmp = TempLink::create(target, link)?;
    std::fs::rename(&tmp.path, link).ctx("replacing symlink", link)?;
    tmp.disarm();
    Ok(())
}

/// Make `link` a symlink to `target` unless something other than a symlink into
/// `store_dir` is there (then [`Error::RootLinkExists`], and `link` is untouched).
/// Atomic: the entry found is swapped out, not removed and recreated, and if it turns
/// out to have changed since it was looked at, it is swapped back.
pub(crate) fn place_root_link(target: &Path, link: &Path, store_dir: &str) -> Result<()> {
    let tmp = TempLink::create(target, link)?;
    loop {
        match renameat_with(CWD, &tmp.path, CWD, link, RenameFlags::NOREPLACE) {
            Ok(()) => {
                tmp.disarm();
                return Ok(());
            }
            Err(Errno::EXIST) => {}
            // A file system without renameat2's flags: check, then replace, as Nix
            // does everywhere (a file put there in between would be replaced).
            Err(Errno::INVAL) => {
                if !points_into_store(link, store_dir)?.unwrap_or(true) {
                    return Err(Error::RootLinkExists(link.to_path_buf()));
                }
                std::fs::rename(&tmp.path, link).ctx("replacing symlink", link)?;
                tmp.disarm();
                return Ok(());
            }
            Err(e) => return Err(std::io::Error::from(e)).ctx("creating symlink", link),
        }
        match points_into_store(link, store_dir)? {
            // Gone again since the rename: try placing it afresh.
            None => continue,
            Some(false) => return Err(Error::RootLinkExists(link.to_path_buf())),
            Some(true) => {}
        }
        match renameat_with(CWD, &tmp.path, CWD, link, RenameFlags::EXCHANGE) {
            Ok(()) => {}
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(std::io::Error::from(e)).ctx("replacing symlink", link),
        }
        // `tmp.path` now names what was at `link`: an old result link to drop, or,
        // if someone put something else there since the check, theirs to give back.
        if points_into_store(&tmp.path, store_dir)? == Some(true) {
            return Ok(());
        }
        if let Err(e) = renameat_with(CWD, &tmp.path, CWD, link, RenameFlags::EXCHANGE) {
            // Their entry stays under the temporary name; never delete it.
            let kept = tmp.disarm();
            return Err(Error::RootLinkDisplaced {
                link: link.to_path_buf(),
                kept,
                source: e.into(),
            });
        }
        return Err(Error::RootLinkExists(link.to_path_buf()));
    }
}

/// Whether `path` is a symlink whose target lies inside `store_dir` (the target's text,
/// as Nix checks it: not resolved, a relative target is never in the store); `None` if
/// nothing is there.
fn points_into_store(path: &Path, store_dir: &str) -> Result<Option<bool>> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(Some(is_in_dir(target.as_os_str().as_bytes(), store_dir))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // Not a symlink.
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(Some(false)),
        Err(e) => Err(e).ctx("reading symlink", path),
    }
}

/// Strictly below `dir`, by the path's text.
pub(crate) fn is_in_dir(path: &[u8], dir: &str) -> bool {
    path.len() >= dir.len() + 2 && path.starts_with(dir.as_bytes()) && path[dir.len()] == b'/'
}

/// A new symlink `<link>.tmp-<pid>-<n>` beside `link`, removed when dropped unless
/// [`TempLink::disarm`]ed, so that no error path leaves it behind.
struct TempLink {
    path: PathBuf,
    armed: bool,
}

impl TempLink {
    fn create(target: &Path, link: &Path) -> Result<TempLink> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = link.file_name().unwrap_or_default();
        loop {
            let mut name = OsString::from(base);
            name.push(format!(
                ".tmp-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = link.with_file_name(name);
            match std::os::unix::fs::symlink(target, &path) {
                Ok(()) => return Ok(TempLink { path, armed: true }),
                // A dead process with our pid left one: take the next number.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).ctx("creating symlink", path),
            }
        }
    }

    fn disarm(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempLink {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
