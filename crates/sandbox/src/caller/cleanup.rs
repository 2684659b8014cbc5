//! Removing a chroot after the caller moved the outputs out.
//!
//! Builders leave read-only directories behind, so a directory that cannot be
//! opened or emptied is made accessible first, like Nix's `deletePath`. The
//! sandbox's mounts live in its own mount namespace and vanish with it; a
//! mount that is nevertheless attached here (EBUSY) is detached lazily and the
//! removal retried.
//!
//! Syscalls are spent sparingly (this runs once per build): the entry type
//! from `getdents` decides between `unlink` and `rmdir`, and a directory is
//! only opened and read when removing it directly says it is not empty.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use crate::error::Error;

/// Deletes `path` (normally a chroot) recursively. A missing path is not an error.
///
/// This is usually the slowest step of a trivial build on a busy ext4 store:
/// every `rmdir` frees a directory block (about a dozen per chroot, as with
/// Nix). Nothing about the build depends on it, so a caller may rename the
/// chroot aside (same directory, so the name is free for the next build of
/// the same derivation) and call this from another thread.
pub fn cleanup(path: &Path) -> Result<(), Error> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => {
            return Err(Error::InvalidSpec(format!(
                "refusing to delete '{}'",
                path.display()
            )))
        }
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::fs("opening directory", parent, e))?;
    let name = CString::new(name.as_bytes())
        .map_err(|_| Error::InvalidSpec("path contains NUL".into()))?;
    remove(dir.as_fd(), &name, None, path)
}

/// Removes `name` in `parent`; `is_dir` is the type from the directory
/// listing when known.
fn remove(
    parent: BorrowedFd<'_>,
    name: &CStr,
    is_dir: Option<bool>,
    path: &Path,
) -> Result<(), Error> {
    if is_dir != Some(true) {
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            // Linux says EISDIR for directories; EPERM is POSIX's word for it.
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(Errno::BUSY) => {
                detach(path)?;
                return rustix::fs::unlinkat(parent, name, AtFlags::empty())
                    .map_err(|e| Error::fs("removing", path, e));
            }
            Err(e) => return Err(Error::fs("removing", path, e)),
        }
    }
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {}
        Err(Errno::BUSY) => {
            detach(path)?;
            return remove(parent, name, Some(true), path);
        }
        Err(Errno::NOTDIR) => return Err(Error::fs("removing", path, Errno::PERM)),
        Err(e) => return Err(Error::fs("removing directory", path, e)),
    }
    empty_dir(parent, name, path)?;
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
        .map_err(|e| Error::fs("removing directory", path, e))
}

fn empty_dir(parent: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<(), Error> {
    let open = || {
        rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let dir: OwnedFd = match open() {
        Ok(dir) => dir,
        Err(Errno::ACCESS) => {
            make_accessible(parent, name, path)?;
            open().map_err(|e| Error::fs("opening directory", path, e))?
        }
        Err(e) => return Err(Error::fs("opening directory", path, e)),
    };
    let mut entries = Vec::new();
    let mut reader = Dir::read_from(&dir).map_err(|e| Error::fs("reading directory", path, e))?;
    while let Some(entry) = reader.read() {
        let entry = entry.map_err(|e| Error::fs("reading directory", path, e))?;
        let n = entry.file_name();
        if n != c"." && n != c".." {
            let is_dir = match entry.file_type() {
                FileType::Directory => Some(true),
                FileType::Unknown => None,
                _ => Some(false),
            };
            entries.push((n.to_owned(), is_dir));
        }
    }
    drop(reader);
    let mut made_writable = false;
    for (n, is_dir) in entries {
        let child: PathBuf = path.join(OsStr::from_bytes(n.as_bytes()));
        match remove(dir.as_fd(), &n, is_dir, &child) {
            // A read-only directory (as seen by a non-root caller).
            Err(Error::Fs { error, .. })
                if !made_writable && error.raw_os_error() == Some(libc::EACCES) =>
            {
                make_accessible(parent, name, path)?;
                made_writable = true;
                remove(dir.as_fd(), &n, is_dir, &child)?;
            }
            other => other?,
        }
    }
    Ok(())
}

/// Adds u+rwx, as Nix's `deletePath` does before descending.
fn make_accessible(parent: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<(), Error> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::fs("getting attributes of path", path, e))?;
    rustix::fs::chmodat(
        parent,
        name,
        Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700),
        AtFlags::empty(),
    )
    .map_err(|e| Error::fs("making directory accessible", path, e))
}

fn detach(path: &Path) -> Result<(), Error> {
    rustix::mount::unmount(path, UnmountFlags::DETACH)
        .map_err(|e| Error::fs("unmounting leftover mount", path, e))
}
