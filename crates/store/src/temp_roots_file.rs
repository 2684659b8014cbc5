//! The `temproots/<pid>` file format, both sides of it, as Nix 2.8 reads and writes it:
//!
//! - the owner creates `temproots/<its pid>`, takes an exclusive `flock` on it and
//!   keeps that lock for its whole life, appending each root as the logical path
//!   followed by a NUL byte;
//! - a collector tells a live owner's file from a dead one's by trying the same lock:
//!   if it gets it, the owner is gone, and the file is removed (with a byte written
//!   into the inode, so an owner that opened it just before can tell and retry);
//!   otherwise the file is read without a lock, and a last entry with no NUL yet is
//!   one being written, which is skipped.
//!
//! The registrar ([`crate::temp_roots`]) and kiln's collector (`kiln-gc`) both go
//! through this module, so the two sides cannot drift apart.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Ends every entry.
const TERMINATOR: u8 = 0;
/// What a collector writes into a stale file it removes; any byte would do, as the
/// owner only checks that the file it locked is still empty.
const STALE_MARK: &[u8] = b"d";

/// This process's temp-roots file, locked for as long as it is held.
pub struct OwnTempRootsFile {
    file: File,
    path: PathBuf,
}

impl OwnTempRootsFile {
    /// Create and lock `dir/<our pid>`. A file already there with our pid can only be
    /// a dead process's (pids are unique among the living), so it is replaced.
    pub fn create(dir: &Path) -> Result<OwnTempRootsFile> {
        let path = dir.join(std::process::id().to_string());
        loop {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx("removing stale temp roots file", &path),
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .ctx("creating temp roots file", &path)?;
            file.lock().ctx("locking temp roots file", &path)?;
            // A collector may have judged the file stale and deleted it between our
            // open and lock; then it is no longer empty (it wrote the mark).
            if file.metadata().ctx("stat", &path)?.len() == 0 {
                return Ok(OwnTempRootsFile { file, path });
            }
        }
    }

    /// Append one root: the logical path, then the terminator, in one write.
    pub fn append(&mut self, logical_path: &str) -> Result<()> {
        let mut record = Vec::with_capacity(logical_path.len() + 1);
        record.extend_from_slice(logical_path.as_bytes());
        record.push(TERMINATOR);
        // O_APPEND is not needed: only this process writes the file, and its callers
        // serialise their appends.
        self.file
            .seek(SeekFrom::End(0))
            .and_then(|_| self.file.write_all(&record))
            .ctx("writing temp root", &self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnTempRootsFile {
    fn drop(&mut self) {
        // Unlink while still holding the lock, as Nix does on orderly exit.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Every complete entry in the temp-roots files of live processes under `dir` (the
/// raw bytes, normally logical store paths). Files of dead processes are removed, each
/// reported through `log` as Nix reports it. A missing `dir` holds no roots.
pub fn read_live_roots(dir: &Path, log: &mut dyn FnMut(String)) -> Result<Vec<Vec<u8>>> {
    let mut roots = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(roots),
        Err(e) => return Err(e).ctx("reading", dir),
    };
    for entry in entries {
        let entry = entry.ctx("reading", dir)?;
        let name = entry.file_name();
        // Only `<pid>` files are temp roots; anything else is not ours to judge.
        let name = name.as_encoded_bytes();
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let path = entry.path();
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("opening", &path),
        };
        if file.try_lock().is_ok() {
            log(format!(
                "removing stale temporary roots file '{}'",
                path.display()
            ));
            let _ = std::fs::remove_file(&path);
            let _ = file.write_all(STALE_MARK);
            continue;
        }
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).ctx("reading", &path)?;
        roots.extend(complete_entries(&contents).map(<[u8]>::to_vec));
    }
    Ok(roots)
}

/// The terminated entries of a file's contents; a trailing fragment with no terminator
/// is an entry its owner is still writing.
fn complete_entries(contents: &[u8]) -> impl Iterator<Item = &[u8]> {
    let complete = contents
        .iter()
        .rposition(|&b| b == TERMINATOR)
        .map(|last| &contents[..last]);
    complete
        .into_iter()
        .flat_map(|c| c.split(|&b| b == TERMINATOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(contents: &[u8]) -> Vec<&[u8]> {
        complete_entries(contents).collect()
    }

    #[test]
    fn a_partial_last_entry_is_skipped() {
        assert_eq!(
            entries(b"/nix/store/a\0/nix/st"),
            vec![&b"/nix/store/a"[..]]
        );
        assert_eq!(
            entries(b"/nix/store/a\0/nix/store/b\0"),
            vec![&b"/nix/store/a"[..], &b"/nix/store/b"[..]]
        );
        assert!(entries(b"/nix/st").is_empty());
        assert!(entries(b"").is_empty());
    }

    #[test]
    fn what_the_owner_appends_a_collector_reads_while_the_owner_lives() {
        let dir = tempfile::tempdir().unwrap();
        let mut own = OwnTempRootsFile::create(dir.path()).unwrap();
        own.append("/nix/store/00000000000000000000000000000000-a")
            .unwrap();
        own.append("/nix/store/11111111111111111111111111111111-b")
            .unwrap();
        assert_eq!(
            std::fs::read(own.path()).unwrap(),
            b"/nix/store/00000000000000000000000000000000-a\0/nix/store/11111111111111111111111111111111-b\0"
        );
        let mut messages = Vec::new();
        let roots = read_live_roots(dir.path(), &mut |m| messages.push(m)).unwrap();
        assert_eq!(
            roots,
            vec![
                b"/nix/store/00000000000000000000000000000000-a".to_vec(),
                b"/nix/store/11111111111111111111111111111111-b".to_vec()
            ]
        );
        assert!(messages.is_empty(), "{messages:?}");
        let path = own.path().to_path_buf();
        drop(own);
        assert!(!path.exists(), "the owner removes its file on orderly exit");
    }

    #[test]
    fn a_file_nobody_holds_locked_is_a_dead_process_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("999999999");
        std::fs::write(&stale, b"/nix/store/00000000000000000000000000000000-a\0").unwrap();
        // Not a pid: left alone and not read.
        std::fs::write(dir.path().join("notes"), b"/nix/store/x\0").unwrap();
        let mut messages = Vec::new();
        let roots = read_live_roots(dir.path(), &mut |m| messages.push(m)).unwrap();
        assert!(roots.is_empty(), "{roots:?}");
        assert!(!stale.exists());
        assert!(dir.path().join("notes").exists());
        assert_eq!(
            messages,
            vec![format!(
                "removing stale temporary roots file '{}'",
                stale.display()
            )]
        );
    }

    #[test]
    fn no_directory_means_no_roots() {
        let dir = tempfile::tempdir().unwrap();
        let roots = read_live_roots(&dir.path().join("temproots"), &mut |_| {}).unwrap();
        assert!(roots.is_empty());
    }
}
