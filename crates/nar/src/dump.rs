//! Serialising a filesystem tree: the equivalent of `nix-store --dump` (entries in byte order of their names, as Nix's `libutil/archive.cc`).
//!
//! This is on the hot path of NAR hashing, so it walks the tree iteratively (no recursion
//! depth limit, no per-level stack frames), reads files through one reused buffer with
//! one `read` per chunk, and relies on [`NarWriter`] to batch the small tokens.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use crate::error::{Error, Result};
use crate::writer::NarWriter;

/// File contents are read in chunks of this size: large enough that syscall overhead is
/// negligible, small enough that a chunk is still in cache when the sink (a hasher)
/// reads it.
const CHUNK: usize = 256 * 1024;

/// Files at least this large are read by a helper thread, so that reading (a copy out of
/// the page cache) overlaps with the sink's work (usually hashing) instead of adding to
/// it. For smaller files a thread costs more than it saves.
const READ_AHEAD_MIN: u64 = 2 * 1024 * 1024;

/// Chunks in flight between the read-ahead thread and the sink.
const READ_AHEAD_CHUNKS: usize = 4;

/// Writes the NAR serialisation of `path` to `sink` and returns its length in bytes.
///
/// The output is byte-identical to `nix-store --dump path`: `path` is used as given
/// (a symlink is archived as a symlink, unless the path ends in `/`), directory entries
/// are sorted by raw bytes, a file is `executable` iff its owner-execute bit is set, and
/// anything but regular files, directories and symlinks is an error naming its path.
/// Memory use does not depend on file sizes.
pub fn dump_path(path: &Path, sink: &mut impl Write) -> Result<u64> {
    let mut writer = NarWriter::new(sink);
    writer.write_path(path)?;
    let len = writer.position();
    writer.finish()?;
    Ok(len)
}

impl<W: Write> NarWriter<W> {
    /// Writes the filesystem object at `path` as the next node (the root, or the node of
    /// the entry just begun). See [`dump_path`].
    pub fn write_path(&mut self, path: &Path) -> Result<()> {
        Dumper {
            path: path.as_os_str().as_bytes().to_vec(),
            buf: Vec::new(),
        }
        .run(self)
    }
}

/// An open directory: its sorted entries and where to resume.
struct Frame {
    entries: Vec<(OsString, FileType)>,
    next: usize,
    /// Length of `Dumper::path` to restore when this directory is done.
    parent_len: usize,
}

struct Dumper {
    /// Filesystem path of the object being visited, as raw bytes.
    path: Vec<u8>,
    /// Contents buffer, shared by all files.
    buf: Vec<u8>,
}

impl Dumper {
    fn fs_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    fn run<W: Write>(mut self, w: &mut NarWriter<W>) -> Result<()> {
        let meta = fs::symlink_metadata(self.fs_path())
            .map_err(|e| Error::fs("get status of", self.fs_path(), e))?;
        let mut stack = Vec::new();
        let root_len = self.path.len();
        self.node(w, meta.file_type(), root_len, &mut stack)?;
        while let Some(frame) = stack.last_mut() {
            let Some((name, file_type)) = frame.entries.get(frame.next) else {
                self.path.truncate(frame.parent_len);
                stack.pop();
                w.end_directory()?;
                continue;
            };
            frame.next += 1;
            let (name, file_type) = (name.as_bytes(), *file_type);
            w.entry(name)?;
            let parent_len = self.path.len();
            self.path.push(b'/');
            self.path.extend_from_slice(name);
            self.node(w, file_type, parent_len, &mut stack)?;
        }
        Ok(())
    }

    /// Writes the node at `self.path`. Directories are only opened here; their entries
    /// are written by the loop in `run`, which also restores the path afterwards.
    fn node<W: Write>(
        &mut self,
        w: &mut NarWriter<W>,
        file_type: FileType,
        parent_len: usize,
        stack: &mut Vec<Frame>,
    ) -> Result<()> {
        if file_type.is_dir() {
            w.begin_directory()?;
            stack.push(Frame {
                entries: self.read_dir()?,
                next: 0,
                parent_len,
            });
            return Ok(());
        }
        if file_type.is_file() {
            self.file(w)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(self.fs_path())
                .map_err(|e| Error::fs("read symlink", self.fs_path(), e))?;
            w.symlink(target.as_os_str().as_bytes())?;
        } else {
            return Err(Error::UnsupportedFileType {
                path: self.fs_path().into(),
            });
        }
        self.path.truncate(parent_len);
        Ok(())
    }

    fn read_dir(&self) -> Result<Vec<(OsString, FileType)>> {
        let err = |e| Error::fs("read directory", self.fs_path(), e);
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.fs_path()).map_err(err)? {
            let entry = entry.map_err(err)?;
            // Usually answered from the directory entry itself, without a stat.
            let file_type = entry.file_type().map_err(err)?;
            entries.push((entry.file_name(), file_type));
        }
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(entries)
    }

    fn file<W: Write>(&mut self, w: &mut NarWriter<W>) -> Result<()> {
        // O_NOFOLLOW and the fstat below make sure we archive what we classified; O_NONBLOCK
        // keeps a FIFO swapped in behind our back from blocking the open.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.fs_path())
            .map_err(|e| Error::fs("open", self.fs_path(), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::fs("get status of", self.fs_path(), e))?;
        if !meta.is_file() {
            return Err(Error::FileChanged {
                path: self.fs_path().into(),
            });
        }
        let executable = meta.permissions().mode() & 0o100 != 0;
        let size = meta.len();
        w.begin_file(executable, size)?;
        self.copy_contents(&mut file, size, w)?;
        w.end_file()
    }

    /// Copies `size` bytes of `file` into the writer, failing if the file turns out
    /// shorter or longer than that.
    fn copy_contents<W: Write>(
        &mut self,
        file: &mut File,
        size: u64,
        w: &mut NarWriter<W>,
    ) -> Result<()> {
        if size >= READ_AHEAD_MIN {
            return self.copy_with_read_ahead(file, size, w);
        }
        // Only as large as this file needs: most store files are small, and a
        // full chunk would be a fresh zeroed mapping for each one.
        let needed = size.saturating_add(1).min(CHUNK as u64) as usize;
        if self.buf.len() < needed {
            self.buf = vec![0; needed];
        }
        let mut remaining = size;
        while remaining > 0 {
            // One byte more than expected, so a file that grew is noticed without an
            // extra read; a file that shrank shows up as an early end of file.
            let want = remaining.saturating_add(1).min(CHUNK as u64) as usize;
            let n = read_retrying(file, &mut self.buf[..want])
                .map_err(|e| Error::fs("read", self.fs_path(), e))?;
            if n == 0 || n as u64 > remaining {
                return Err(Error::FileChanged {
                    path: self.fs_path().into(),
                });
            }
            w.write_contents(&self.buf[..n])?;
            remaining -= n as u64;
        }
        Ok(())
    }

    /// Like the loop in `copy_contents`, with the reads done on another thread.
    fn copy_with_read_ahead<W: Write>(
        &self,
        file: &mut File,
        size: u64,
        w: &mut NarWriter<W>,
    ) -> Result<()> {
        let changed = || Error::FileChanged {
            path: self.fs_path().into(),
        };
        let (filled_tx, filled_rx) = mpsc::sync_channel(READ_AHEAD_CHUNKS);
        let (empty_tx, empty_rx) = mpsc::sync_channel(READ_AHEAD_CHUNKS);
        for _ in 0..READ_AHEAD_CHUNKS {
            // Cannot fail: the receiver is alive and the channel has room.
            let _ = empty_tx.send(vec![0; CHUNK]);
        }
        // `move`: when this closure returns, early or not, our channel ends are dropped
        // before the scope joins the reader, so a reader blocked on either channel wakes
        // up and stops instead of deadlocking the join.
        thread::scope(move |scope| {
            scope.spawn(move || read_ahead(file, size, empty_rx, filled_tx));
            let mut remaining = size;
            while remaining > 0 {
                let (buf, n) = filled_rx
                    .recv()
                    .map_err(|_| changed())?
                    .map_err(|e| Error::fs("read", self.fs_path(), e))?;
                if n == 0 || n as u64 > remaining {
                    return Err(changed());
                }
                w.write_contents(&buf[..n])?;
                remaining -= n as u64;
                let _ = empty_tx.send(buf);
            }
            Ok(())
        })
    }
}

type Chunk = io::Result<(Vec<u8>, usize)>;

/// The read-ahead thread: fills buffers from `empty` and passes them on through `filled`,
/// with the same one-byte-more trick as `Dumper::file`. Stops at the expected size, at the
/// first error or sign of change, or when the consumer hangs up.
fn read_ahead(file: &mut File, size: u64, empty: Receiver<Vec<u8>>, filled: SyncSender<Chunk>) {
    let mut remaining = size;
    while remaining > 0 {
        let Ok(mut buf) = empty.recv() else {
            return;
        };
        let want = remaining.saturating_add(1).min(buf.len() as u64) as usize;
        let result = read_retrying(file, &mut buf[..want]);
        let stop = match result {
            Ok(n) if n > 0 && n as u64 <= remaining => {
                remaining -= n as u64;
                false
            }
            _ => true,
        };
        if filled.send(result.map(|n| (buf, n))).is_err() || stop {
            return;
        }
    }
}

fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Duration;

    fn dumper(path: &Path) -> Dumper {
        Dumper {
            path: path.as_os_str().as_bytes().to_vec(),
            buf: Vec::new(),
        }
    }

    /// A file whose size differs from what was stat'ed is an error, on both copy paths.
    #[test]
    fn size_changes_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        for actual in [10u64, READ_AHEAD_MIN + 12345] {
            let path = dir.path().join(format!("f{actual}"));
            fs::write(&path, vec![b'x'; actual as usize]).unwrap();
            for claimed in [actual - 1, actual + 1, actual + CHUNK as u64] {
                let mut file = File::open(&path).unwrap();
                let mut w = NarWriter::new(io::sink());
                w.begin_file(false, claimed).unwrap();
                let err = dumper(&path)
                    .copy_contents(&mut file, claimed, &mut w)
                    .unwrap_err();
                assert!(matches!(err, Error::FileChanged { .. }), "{err}");
            }
        }
    }

    /// A sink failing mid-file stops the read-ahead thread instead of deadlocking.
    #[test]
    fn sink_failure_during_read_ahead_does_not_hang() {
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(io::Error::other("full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![0u8; 8 * READ_AHEAD_MIN as usize]).unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let result = dump_path(&path, &mut FailAfter(3 * CHUNK));
            // The sink's own error is the cause, not part of the message.
            let _ = tx.send(result.map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                )
            }));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(result) => assert!(result.unwrap_err().contains("full")),
            Err(RecvTimeoutError::Timeout) => panic!("dump_path hung after a sink error"),
            Err(e) => panic!("{e}"),
        }
    }
}
