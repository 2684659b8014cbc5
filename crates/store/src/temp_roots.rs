//! Registering temporary GC roots, as Nix 2.8's clients do: each root goes into this
//! process's `temproots/<pid>` file (format: [`crate::temp_roots_file`]). Adding a
//! root takes `gc.lock` shared for the instant of the append; if a collector holds it,
//! the root is also sent over the GC socket ([`crate::gc_socket`]) so the running
//! collector learns of it (and waits until it is not deleting that very path).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::gc_socket::GcClient;
use crate::lock::open_lock_file;
use crate::temp_roots_file::OwnTempRootsFile;

/// One temp-roots file per process and state directory: two handles on the same store
/// in one process must share it, or the second would unlink the first's file.
pub(crate) struct TempRoots {
    state_dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    file: Option<OwnTempRootsFile>,
    gc_lock: Option<File>,
    gc_socket: Option<GcClient>,
    /// Paths already in the file: a root stays for the process's lifetime (the file is
    /// only ever appended to, and every later collector reads it), so adding one again
    /// would only cost a lock and a write (a build asks for its outputs several times).
    added: std::collections::HashSet<String>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<TempRoots>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<TempRoots>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl TempRoots {
    pub(crate) fn for_state_dir(state_dir: &Path) -> Arc<TempRoots> {
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = map.get(state_dir).and_then(Weak::upgrade) {
            return existing;
        }
        let roots = Arc::new(TempRoots {
            state_dir: state_dir.to_path_buf(),
            inner: Mutex::new(Inner::default()),
        });
        map.insert(state_dir.to_path_buf(), Arc::downgrade(&roots));
        roots
    }

    /// Whether this process has made `logical_path` a temp root.
    pub(crate) fn contains(&self, logical_path: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .added
            .contains(logical_path)
    }

    /// Protect `logical_path` (a full `/nix/store/…` path) from any collector, kiln's or
    /// Nix's, from now until this process exits.
    pub(crate) fn add(&self, logical_path: &str) -> Result<()> {
        self.add_with(logical_path, false)
    }

    /// [`TempRoots::add`], and make sure a collector running now knows `logical_path`
    /// even when this process rooted it long ago. A new permanent root needs this:
    /// Nix's collector reads the permanent roots before the temp-roots files, so one
    /// that started after the path was rooted here may have looked for permanent roots
    /// before the link existed, and read the temp roots after this process exited and
    /// removed its file. Told over the socket, it keeps the path for the rest of its
    /// run; a collector that starts after this call finds the link. When no collector
    /// runs this costs one lock attempt.
    pub(crate) fn add_and_tell_collector(&self, logical_path: &str) -> Result<()> {
        self.add_with(logical_path, true)
    }

    fn add_with(&self, logical_path: &str, tell_again: bool) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let in_file = inner.added.contains(logical_path);
        if in_file && !tell_again {
            return Ok(());
        }
        let result = self.register(&mut inner, logical_path, in_file);
        if result.is_ok() {
            inner.added.insert(logical_path.to_string());
        }
        result
    }

    /// Append `logical_path` to the file unless `in_file`, and send it to the running
    /// collector if there is one.
    fn register(&self, inner: &mut Inner, logical_path: &str, mut in_file: bool) -> Result<()> {
        self.ensure_file(inner)?;
        let gc_lock_path = self.state_dir.join("gc.lock");
        if inner.gc_lock.is_none() {
            inner.gc_lock = Some(open_lock_file(&gc_lock_path).ctx("opening", &gc_lock_path)?);
        }
        loop {
            let gc_lock = inner.gc_lock.as_ref().expect("opened above");
            match gc_lock.try_lock_shared() {
                Ok(()) => {
                    // No collector is running: the file is enough, and one that starts
                    // later reads it under its exclusive lock.
                    let result = if in_file {
                        Ok(())
                    } else {
                        append(inner, logical_path)
                    };
                    let _ = inner.gc_lock.as_ref().expect("opened above").unlock();
                    return result;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    // File first, then the collector (Nix does it the other way round):
                    // once the running collector answers, it may finish and the next
                    // one may read the files at once; the root must already be there.
                    if !in_file {
                        append(inner, logical_path)?;
                        in_file = true;
                    }
                    if self.tell_collector(inner, logical_path)? {
                        return Ok(());
                    }
                    // The collector went away between our attempts; try the lock again.
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).ctx("locking", &gc_lock_path);
                }
            }
        }
    }

    /// Send the root to the running collector; `false` if it was not reachable and the
    /// caller should retry from the lock.
    fn tell_collector(&self, inner: &mut Inner, logical_path: &str) -> Result<bool> {
        if inner.gc_socket.is_none() {
            let socket_path = self.state_dir.join("gc-socket/socket");
            match GcClient::connect(&socket_path)? {
                Some(client) => inner.gc_socket = Some(client),
                // The collector takes the lock slightly before it binds the socket, and
                // a finished one leaves a dead socket behind: wait and retry.
                None => {
                    std::thread::sleep(Duration::from_millis(100));
                    return Ok(false);
                }
            }
        }
        let client = inner.gc_socket.as_mut().expect("connected above");
        if client.register(logical_path) {
            return Ok(true);
        }
        // The collector exited; start over.
        inner.gc_socket = None;
        Ok(false)
    }

    fn ensure_file(&self, inner: &mut Inner) -> Result<()> {
        if inner.file.is_none() {
            inner.file = Some(OwnTempRootsFile::create(&self.state_dir.join("temproots"))?);
        }
        Ok(())
    }
}

fn append(inner: &mut Inner, logical_path: &str) -> Result<()> {
    inner
        .file
        .as_mut()
        .expect("created before appending")
        .append(logical_path)
}

impl Drop for TempRoots {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        // Its own drop unlinks the file while still holding the lock.
        drop(inner.file.take());
        if let Ok(mut map) = registry().lock() {
            if map
                .get(&self.state_dir)
                .is_some_and(|w| w.strong_count() == 0)
            {
                map.remove(&self.state_dir);
            }
        }
    }
}
