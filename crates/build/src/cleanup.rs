//! Removing a finished build's chroot and build directory off the critical path: on a
//! real disk, deleting a few hundred entries costs milliseconds, and the next build
//! (or the next step of a chain) need not wait for it.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kiln_store::LocalStore;

/// Delete a chroot in the background, or keep its skeleton for the next build (see
/// `kiln_sandbox::recycle`). It is first renamed to a temp-rooted scratch name inside
/// the store, so neither a later build of the same derivation nor a collector (kiln's
/// or Nix's) can trip over it. Falls back to deleting in place.
pub(crate) fn remove_chroot_later(
    store: &LocalStore,
    sandboxes: &Arc<kiln_sandbox::Sandboxes>,
    chroot: PathBuf,
    skeleton: Option<kiln_sandbox::Skeleton>,
    lingering: Option<kiln_sandbox::Lingering>,
) -> Result<(), kiln_sandbox::Error> {
    let trash = store
        .scratch_path("kiln-chroot-trash")
        .ok()
        .map(|p| store.layout().real_path(&p));
    match trash {
        Some(trash) if std::fs::rename(&chroot, &trash).is_ok() => {
            let sandboxes = Arc::clone(sandboxes);
            spawn(move || {
                // The namespace goes first: nothing in it then still refers to
                // the chroot's directories.
                drop(lingering);
                let _ = sandboxes.recycle(skeleton.as_ref(), &trash);
            });
            Ok(())
        }
        _ => {
            drop(lingering);
            kiln_sandbox::cleanup(&chroot)
        }
    }
}

/// Empty a build directory in the background and keep it for a later build (see
/// `build_dirs`). Nothing reuses its name while it exists: the next build of the same
/// derivation takes the next number.
pub(crate) fn remove_dir_later(dir: PathBuf) {
    spawn(move || crate::build_dirs::recycle(dir));
}

type Work = Box<dyn FnOnce() + Send>;

/// The one background thread and its queue; `None` once it could not be started.
struct Worker {
    queue: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

static WORKER: Mutex<Worker> = Mutex::new(Worker {
    queue: None,
    thread: None,
});

/// Nice value of the removal thread: it yields to builds and their bookkeeping
/// when the CPUs are busy (on a 2-core machine a removal running beside two
/// builders delays the next one), yet still gets a share, so a long run of
/// builds cannot pile up unremoved build directories.
const CLEANUP_NICENESS: i32 = 10;

fn spawn(work: impl FnOnce() + Send + 'static) {
    let mut worker = WORKER.lock().unwrap_or_else(|e| e.into_inner());
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

/// Wait for every background removal; call before the process exits.
pub fn finish_background_cleanup() {
    let (queue, thread) = {
        let mut worker = WORKER.lock().unwrap_or_else(|e| e.into_inner());
        (worker.queue.take(), worker.thread.take())
    };
    // Closing the queue ends the thread once it has done everything queued.
    drop(queue);
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    crate::build_dirs::discard();
}
