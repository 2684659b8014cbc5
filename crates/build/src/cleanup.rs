//! Removing a finished build's chroot and build directory off the critical path: on a
//! real disk, deleting a few hundred entries costs milliseconds, and the next build
//! (or the next step of a chain) need not wait for it.
//!
//! [`Cleanup`] is owned by whoever runs builds (the [`crate::DerivationExecutor`]):
//! dropping it waits for every queued removal and deletes the spare build
//! directories, so nothing outlives the builds that made it whatever order the
//! caller tears things down in.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::build_dirs::BuildDirs;

type Work = Box<dyn FnOnce() + Send>;

/// The background removal thread of one executor, and its spare build directories.
pub struct Cleanup {
    worker: Mutex<Worker>,
    pub(crate) dirs: Arc<BuildDirs>,
}

/// The thread and its queue, started on first use; `None` once it could not be
/// started (the work is then done in place).
#[derive(Default)]
struct Worker {
    queue: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

/// Nice value of the removal thread: it yields to builds and their bookkeeping
/// when the CPUs are busy (on a 2-core machine a removal running beside two
/// builders delays the next one), yet still gets a share, so a long run of
/// builds cannot pile up unremoved build directories.
const CLEANUP_NICENESS: i32 = 10;

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup::new()
    }
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup {
            worker: Mutex::new(Worker::default()),
            dirs: Arc::new(BuildDirs::default()),
        }
    }

    /// Empty a build directory in the background and keep it for a later build (see
    /// `build_dirs`). Nothing reuses its name while it exists: the next build of the
    /// same derivation takes the next number.
    pub(crate) fn remove_dir_later(&self, dir: PathBuf) {
        let dirs = Arc::clone(&self.dirs);
        self.later(move || dirs.recycle(dir));
    }

    /// Runs `work` on the background thread, after what is queued already.
    pub fn later(&self, work: impl FnOnce() + Send + 'static) {
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if worker.queue.is_none() {
            let (tx, rx) = mpsc::channel::<Work>();
            // If no thread can be started the work is done right here instead.
            if let Ok(handle) = std::thread::Builder::new()
                .name("kiln-cleanup".into())
                .spawn(move || {
                    let _ = rustix::process::setpriority_process(None, CLEANUP_NICENESS);
                    for work in rx {
                        work();
                    }
                })
            {
                worker.queue = Some(tx);
                worker.thread = Some(handle);
            }
        }
        match &worker.queue {
            Some(queue) => {
                if let Err(mpsc::SendError(work)) = queue.send(Box::new(work)) {
                    work();
                }
            }
            None => {
                drop(worker);
                work();
            }
        }
    }

    /// Waits for every queued removal.
    fn flush(&self) {
        let (queue, thread) = {
            let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
            (worker.queue.take(), worker.thread.take())
        };
        // Closing the queue ends the thread once it has done everything queued.
        drop(queue);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.flush();
        self.dirs.discard();
    }
}
