//! Copying a tree into the store in its canonical form (mode 0444/0555, mtime 1),
//! while feeding its NAR serialisation to a writer, so contents are read exactly once:
//! what is hashed is what is stored, even if the source changes meanwhile.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use kiln_hash::Hasher;
use kiln_nar::NarWriter;
use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};

use crate::error::{Error, IoContext, Result};

/// Nix sets every store file's mtime to 1 second after the epoch.
pub const CANONICAL_MTIME_SECS: i64 = 1;

/// The permission bits of a store object's non-symlink entry: read-only for everyone,
/// executable by everyone if the owner could execute it (directories always).
pub fn canonical_mode(is_dir: bool, mode: u32) -> u32 {
    if is_dir || mode & 0o100 != 0 {
        0o555
    } else {
        0o444
    }
}

/// Give one entry (whose metadata, not following symlinks, is `meta`) Nix's canonical
/// metadata: owned by this process's user and group, [`canonical_mode`] unless it is a
/// symlink, mtime [`CANONICAL_MTIME_SECS`]. Only what differs is changed, so an entry
/// that is canonical already costs one `utimensat`.
pub fn canonicalise_entry(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let kind = meta.file_type();
    let euid = rustix::process::geteuid();
    if meta.uid() != euid.as_raw() {
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(euid),
            Some(rustix::process::getegid()),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
        .ctx("chown", path)?;
    }
    if !kind.is_symlink() {
        let mode = canonical_mode(kind.is_dir(), meta.mode());
        if meta.mode() & 0o7777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).ctx("chmod", path)?;
        }
    }
    set_mtime_nofollow(path)
}

/// Files up to this size are read whole and written by the writer threads; larger ones
/// are streamed by the walking thread so memory stays bounded.
const SMALL_FILE: u64 = 256 * 1024;
/// Creating inodes is the expensive part on real filesystems (ext4 spends its time
/// finding a free inode); two writers keep both cores busy while the walk hashes.
const WRITERS: usize = 2;

pub(crate) struct TreeCopier<'a, W: Write> {
    pub nar: NarWriter<W>,
    /// Also hash the raw bytes of a single regular file (flat ingestion).
    pub flat: Option<&'a mut Hasher>,
    buf: Vec<u8>,
    /// Directories to make read-only and give mtime 1 once all writes are done,
    /// children before parents.
    finished_dirs: Vec<PathBuf>,
}

/// Work for a writer thread.
enum Job {
    File {
        dst: PathBuf,
        executable: bool,
        contents: Vec<u8>,
    },
    Symlink {
        dst: PathBuf,
        target: PathBuf,
    },
}

impl<'a, W: Write> TreeCopier<'a, W> {
    pub fn new(nar_sink: W, flat: Option<&'a mut Hasher>) -> Self {
        TreeCopier {
            nar: NarWriter::new(nar_sink),
            flat,
            buf: vec![0u8; 256 * 1024],
            finished_dirs: Vec::new(),
        }
    }

    /// Copy `src` to `dst`, which must not exist. The walk (reading and hashing, in
    /// NAR order) runs here; creating small files and symlinks is handed to writer
    /// threads. Everything is in place and canonical when this returns `Ok`.
    pub fn copy(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(256);
        let receiver = Mutex::new(receiver);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let walked = std::thread::scope(|scope| {
            for _ in 0..WRITERS {
                scope.spawn(|| loop {
                    let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = job else { return };
                    if let Err(e) = run_job(job) {
                        failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                });
            }
            let walked = self.copy_node(src, dst, &sender);
            drop(sender);
            walked
        });
        walked?;
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        for dir in self.finished_dirs.drain(..) {
            fs::set_permissions(&dir, fs::Permissions::from_mode(canonical_mode(true, 0)))
                .ctx("chmod", &dir)?;
            set_mtime_by_path(&dir)?;
        }
        Ok(())
    }

    fn copy_node(&mut self, src: &Path, dst: &Path, jobs: &SyncSender<Job>) -> Result<()> {
        let meta = fs::symlink_metadata(src).ctx("reading", src)?;
        let kind = meta.file_type();
        if self.flat.is_some() && !kind.is_file() {
            return Err(Error::NotARegularFile(src.to_path_buf()));
        }
        if kind.is_dir() {
            self.copy_dir(src, dst, jobs)
        } else if kind.is_file() {
            self.copy_file(src, dst, &meta, jobs)
        } else if kind.is_symlink() {
            let target = fs::read_link(src).ctx("reading symlink", src)?;
            self.nar.symlink(target.as_os_str().as_bytes())?;
            send(
                jobs,
                Job::Symlink {
                    dst: dst.to_path_buf(),
                    target,
                },
            )
        } else {
            Err(Error::UnsupportedFileType(src.to_path_buf()))
        }
    }

    fn copy_dir(&mut self, src: &Path, dst: &Path, jobs: &SyncSender<Job>) -> Result<()> {
        self.nar.begin_directory()?;
        fs::DirBuilder::new()
            .mode(0o755)
            .create(dst)
            .ctx("creating directory", dst)?;
        let mut names: Vec<_> = fs::read_dir(src)
            .ctx("reading directory", src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .ctx("reading directory", src)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            self.nar.entry(name.as_bytes())?;
            self.copy_node(&src.join(&name), &dst.join(&name), jobs)?;
        }
        self.nar.end_directory()?;
        // Mode and mtime only after the writers are done: adding entries would bump
        // the mtime again.
        self.finished_dirs.push(dst.to_path_buf());
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: &Path,
        dst: &Path,
        meta: &fs::Metadata,
        jobs: &SyncSender<Job>,
    ) -> Result<()> {
        let executable = meta.mode() & 0o100 != 0;
        let size = meta.len();
        let mut input = File::open(src).ctx("opening", src)?;
        self.nar.begin_file(executable, size)?;
        if size <= SMALL_FILE {
            // One read of the whole file, plus one to see the end: it must not have
            // grown or shrunk since the stat.
            let mut contents = Vec::with_capacity(size as usize + 1);
            (&mut input)
                .take(size + 1)
                .read_to_end(&mut contents)
                .ctx("reading", src)?;
            check_size(src, size, contents.len() as u64)?;
            self.nar.write_contents(&contents)?;
            if let Some(flat) = self.flat.as_deref_mut() {
                flat.update(&contents);
            }
            self.nar.end_file()?;
            return send(
                jobs,
                Job::File {
                    dst: dst.to_path_buf(),
                    executable,
                    contents,
                },
            );
        }
        let mut output = create_file(dst, executable)?;
        let mut copied = 0u64;
        loop {
            let n = match input.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx("reading", src),
            };
            copied += n as u64;
            if copied > size {
                break;
            }
            let chunk = &self.buf[..n];
            self.nar.write_contents(chunk)?;
            if let Some(flat) = self.flat.as_deref_mut() {
                flat.update(chunk);
            }
            output.write_all(chunk).ctx("writing", dst)?;
        }
        check_size(src, size, copied)?;
        self.nar.end_file()?;
        set_file_mtime(&output, dst)
    }
}

fn check_size(src: &Path, expected: u64, got: u64) -> Result<()> {
    if got == expected {
        return Ok(());
    }
    Err(Error::Io {
        context: "file changed size while being added",
        path: src.to_path_buf(),
        source: std::io::Error::other(format!("expected {expected} bytes, read {got}")),
    })
}

fn send(jobs: &SyncSender<Job>, job: Job) -> Result<()> {
    jobs.send(job).map_err(|_| Error::Io {
        context: "handing work to a writer thread",
        path: PathBuf::new(),
        source: std::io::Error::other("all writer threads have stopped"),
    })
}

fn run_job(job: Job) -> Result<()> {
    match job {
        Job::File {
            dst,
            executable,
            contents,
        } => {
            let mut output = create_file(&dst, executable)?;
            output.write_all(&contents).ctx("writing", &dst)?;
            set_file_mtime(&output, &dst)
        }
        Job::Symlink { dst, target } => {
            std::os::unix::fs::symlink(&target, &dst).ctx("creating symlink", &dst)?;
            set_mtime_nofollow(&dst)
        }
    }
}

/// Creating with the final read-only mode still lets this descriptor write.
fn create_file(dst: &Path, executable: bool) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(canonical_mode(false, if executable { 0o100 } else { 0 }))
        .open(dst)
        .ctx("creating", dst)
}

fn set_file_mtime(file: &File, path: &Path) -> Result<()> {
    file.set_modified(UNIX_EPOCH + Duration::from_secs(CANONICAL_MTIME_SECS as u64))
        .ctx("setting mtime", path)
}

fn canonical_times() -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: CANONICAL_MTIME_SECS,
            tv_nsec: 0,
        },
    }
}

fn set_mtime_nofollow(path: &Path) -> Result<()> {
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &canonical_times(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
    .ctx("setting mtime", path)
}

fn set_mtime_by_path(path: &Path) -> Result<()> {
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &canonical_times(),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(std::io::Error::from)
    .ctx("setting mtime", path)
}

/// Bring an existing tree (e.g. a restored NAR or build output) to canonical metadata
/// ([`canonicalise_entry`]).
pub(crate) fn canonicalise_tree(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).ctx("reading", path)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        // Entries first, while the directory may still need to be writable for them.
        for entry in fs::read_dir(path).ctx("reading directory", path)? {
            let entry = entry.ctx("reading directory", path)?;
            canonicalise_tree(&entry.path())?;
        }
    } else if !kind.is_file() && !kind.is_symlink() {
        return Err(Error::UnsupportedFileType(path.to_path_buf()));
    }
    canonicalise_entry(path, &meta)
}

/// Delete a tree whose directories are read-only (as store objects are).
pub fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("reading", path),
    };
    if meta.is_dir() {
        if meta.mode() & 0o700 != 0o700 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).ctx("chmod", path)?;
        }
        for entry in fs::read_dir(path).ctx("reading directory", path)? {
            remove_tree(&entry.ctx("reading directory", path)?.path())?;
        }
        fs::remove_dir(path).ctx("removing directory", path)
    } else {
        fs::remove_file(path).ctx("removing", path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_entry_gets_nix_modes_and_mtime_one() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let exec = dir.path().join("exec");
        let sub = dir.path().join("sub");
        fs::write(&plain, b"x").unwrap();
        fs::write(&exec, b"x").unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o664)).unwrap();
        fs::set_permissions(&exec, fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink("plain", dir.path().join("link")).unwrap();
        for (name, mode) in [
            ("plain", Some(0o444)),
            ("exec", Some(0o555)),
            ("sub", Some(0o555)),
            ("link", None),
        ] {
            let path = dir.path().join(name);
            canonicalise_entry(&path, &fs::symlink_metadata(&path).unwrap()).unwrap();
            let meta = fs::symlink_metadata(&path).unwrap();
            if let Some(mode) = mode {
                assert_eq!(meta.mode() & 0o7777, mode, "{name}");
            }
            assert_eq!(meta.mtime(), CANONICAL_MTIME_SECS, "{name}");
        }
        // The symlink's target was not touched through it.
        assert_eq!(fs::symlink_metadata(&plain).unwrap().mode() & 0o7777, 0o444);
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
