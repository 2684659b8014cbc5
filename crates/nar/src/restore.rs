//! Unpacking a NAR into the filesystem: the equivalent of `nix-store --restore`.
//!
//! Why nothing is written outside the target: every object is created with "create new"
//! semantics that never follow a symlink at the final component (`mkdir`, `symlink`,
//! `O_CREAT|O_EXCL|O_NOFOLLOW`), and the strict reader guarantees that names are single,
//! valid components, unique and sorted within their directory. So every parent of a new
//! object is a directory this restore created itself. On failure the target is removed
//! again, but only if this restore created it.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reader::{Event, NarReader, INPUT_BUFFER};

/// Size of the buffer file contents are copied through.
const CHUNK: usize = 256 * 1024;

/// Restores the NAR read from `reader` at `target`, which must not exist.
///
/// Files are created with mode 0666 and directories with 0777, minus the umask;
/// executable files then get `+x` for everyone, as `nix-store --restore` does. (Nix 2.8
/// sets its umask to 022 at startup, so callers wanting Nix's exact modes need that
/// umask too.) On any error the partially restored tree is removed and the error
/// returned.
pub fn restore(reader: impl Read, target: &Path) -> Result<()> {
    restore_from(
        &mut NarReader::new(BufReader::with_capacity(INPUT_BUFFER, reader)),
        target,
    )
}

/// Like [`restore`], from an already constructed reader (e.g. one whose input is tee'd
/// into a hasher). The reader is consumed up to the end of the archive.
pub fn restore_from<R: Read>(nar: &mut NarReader<R>, target: &Path) -> Result<()> {
    if fs::symlink_metadata(target).is_ok() {
        return Err(Error::TargetExists {
            path: target.into(),
        });
    }
    let mut created = false;
    let result = unpack(nar, target, &mut created);
    if result.is_err() && created {
        // Best effort: the original error is what the caller needs to see.
        let _ = remove(target);
    }
    result
}

fn unpack<R: Read>(nar: &mut NarReader<R>, target: &Path, created: &mut bool) -> Result<()> {
    let mut buf = Vec::new();
    while let Some(event) = nar.next()? {
        let path = event.path();
        let fs_path = join(target, path);
        let is_root = path.is_empty();
        match event {
            Event::Directory { .. } => {
                fs::create_dir(&fs_path).map_err(|e| Error::fs("create directory", &fs_path, e))?;
            }
            Event::EndDirectory { .. } => {}
            Event::Symlink { target, .. } => {
                symlink(OsStr::from_bytes(target), &fs_path)
                    .map_err(|e| Error::fs("create symlink", &fs_path, e))?;
            }
            Event::Regular {
                executable,
                mut contents,
                ..
            } => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&fs_path)
                    .map_err(|e| Error::fs("create file", &fs_path, e))?;
                // Set before writing, so a failure mid-file still cleans up the root.
                *created |= is_root;
                if buf.is_empty() && contents.remaining() > 0 {
                    buf = vec![0; CHUNK];
                }
                loop {
                    let n = contents.read_chunk(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n])
                        .map_err(|e| Error::fs("write", &fs_path, e))?;
                }
                if executable {
                    // Through the descriptor, so no path (and no symlink) is resolved again.
                    let make_exec = |file: &fs::File| {
                        let mode = file.metadata()?.permissions().mode();
                        file.set_permissions(Permissions::from_mode(mode | 0o111))
                    };
                    make_exec(&file).map_err(|e| Error::fs("make executable", &fs_path, e))?;
                }
            }
        }
        *created |= is_root;
    }
    Ok(())
}

/// Filesystem path of archive path `rel` under `target`.
fn join(target: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        return target.into();
    }
    let mut bytes = target.as_os_str().as_bytes().to_vec();
    bytes.push(b'/');
    bytes.extend_from_slice(rel);
    PathBuf::from(OsStr::from_bytes(&bytes))
}

fn remove(target: &Path) -> std::io::Result<()> {
    if fs::symlink_metadata(target)?.is_dir() {
        fs::remove_dir_all(target)
    } else {
        fs::remove_file(target)
    }
}
