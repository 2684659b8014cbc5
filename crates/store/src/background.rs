//! Registering finished builds off the builder's critical path.
//!
//! Once a build's outputs are checked, canonical and scanned, nothing about them
//! changes: what remains is to flush them to disk and write their rows. Both cost
//! more than the rest of a short build's bookkeeping (a `syncfs` on a real disk is
//! milliseconds), and the next step of a chain only needs to know the outputs and
//! their references. So a build hands its outputs to the registrar and returns:
//!
//! * until their transaction commits, the outputs are *pending*: this process's
//!   [`LocalStore`](crate::LocalStore) answers validity and path-info queries about
//!   them from memory, so its next builds can use them;
//! * builds are registered in the order they were handed over, each in its own
//!   transaction, so a build is registered after every build it used;
//! * one `syncfs` covers everything handed over since the previous one;
//! * a build's output locks are released only after its rows are committed, so
//!   another process (kiln or Nix) that wants an output waits for it to be valid;
//! * a build that fails to register is reported by
//!   [`LocalStore::finish_registrations`](crate::LocalStore::finish_registrations);
//!   its outputs stop being pending, so a build that used them fails to register
//!   too (its references are not valid) rather than be recorded without them.
//!
//! Other processes see the outputs only once they are registered, exactly as if
//! the build had taken that much longer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kiln_store_path::StorePath;

use crate::db::{Db, Registration};
use crate::error::Error;
use crate::{PathInfo, PathLock};

/// A build whose outputs could not be registered.
#[derive(Debug)]
pub struct RegistrationFailure {
    /// What was being registered (the derivation, for a build).
    pub what: String,
    pub error: Error,
}

/// One hand-over: rows to write, and the locks to release once they are written.
pub(crate) struct Job {
    /// Names the hand-over in a failure.
    pub(crate) what: String,
    /// Checked acyclic.
    pub(crate) infos: Vec<PathInfo>,
    /// Per path: what to record for a `.drv`.
    pub(crate) derivation_outputs: Vec<BTreeMap<String, StorePath>>,
    pub(crate) locks: Vec<PathLock>,
    /// Per path: stays valid while this process lives (see [`Registrar::protect`]).
    pub(crate) protected: Vec<bool>,
    /// Flush the filesystem first.
    pub(crate) sync: bool,
}

type Protected = Arc<Mutex<HashMap<StorePath, BTreeSet<StorePath>>>>;

const REGISTRAR_NICENESS: i32 = 5;

pub(crate) const SYNC_CONTEXT: &str = "syncing the store's filesystem";

type Pending = Arc<Mutex<HashMap<StorePath, PathInfo>>>;

/// Told of a registration failure nobody collected with
/// [`crate::LocalStore::finish_registrations`] before the store was dropped.
pub type UnclaimedFailureHook = Box<dyn Fn(&RegistrationFailure) + Send + Sync>;

pub(crate) struct Registrar {
    /// Where failures go that nobody asked for; without it they are lost.
    pub(crate) on_unclaimed: Mutex<Option<UnclaimedFailureHook>>,
    db: Arc<Mutex<Db>>,
    real_store_dir: PathBuf,
    pending: Pending,
    protected: Protected,
    failures: Arc<Mutex<Vec<RegistrationFailure>>>,
    worker: Mutex<Option<(Sender<Job>, JoinHandle<()>)>>,
}

impl Registrar {
    pub(crate) fn new(db: Arc<Mutex<Db>>, real_store_dir: PathBuf) -> Registrar {
        Registrar {
            on_unclaimed: Mutex::new(None),
            db,
            real_store_dir,
            pending: Arc::default(),
            protected: Arc::default(),
            failures: Arc::default(),
            worker: Mutex::new(None),
        }
    }

    pub(crate) fn pending_info(&self, path: &StorePath) -> Option<PathInfo> {
        lock(&self.pending).get(path).cloned()
    }

    /// The references of `path` if it is pending or protected: valid for as long as
    /// this process lives.
    pub(crate) fn known_references(&self, path: &StorePath) -> Option<BTreeSet<StorePath>> {
        // Pending before protected: the worker protects a path before it stops
        // being pending.
        if let Some(info) = lock(&self.pending).get(path) {
            return Some(info.references.clone());
        }
        lock(&self.protected).get(path).cloned()
    }

    /// Remembers valid paths with their references that no collector deletes while
    /// this process lives: the closure of a path it temp-rooted before it found it
    /// valid. (Only a deletion that ignores liveness, `nix-store --delete
    /// --ignore-liveness`, breaks this, as it breaks Nix's own path-info cache.)
    pub(crate) fn protect(&self, rows: impl IntoIterator<Item = (StorePath, BTreeSet<StorePath>)>) {
        lock(&self.protected).extend(rows);
    }

    /// Stops remembering `paths` (this process invalidated them).
    pub(crate) fn forget(&self, paths: &[StorePath]) {
        let mut protected = lock(&self.protected);
        for p in paths {
            protected.remove(p);
        }
    }

    /// Queues `job` for registration; its paths are pending from now on.
    pub(crate) fn submit(&self, job: Job) {
        // Pending before queued: the worker removes them only after committing.
        {
            let mut pending = lock(&self.pending);
            for info in &job.infos {
                pending.insert(info.path.clone(), info.clone());
            }
        }
        let mut worker = lock(&self.worker);
        if worker.is_none() {
            let (tx, rx) = mpsc::channel();
            let worker_state = self.worker_state();
            match std::thread::Builder::new()
                .name("kiln-register".into())
                .spawn(move || worker_state.run(rx))
            {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(_) => {
                    // No thread: register right here, as if synchronously.
                    drop(worker);
                    self.worker_state().register_batch(vec![job]);
                    return;
                }
            }
        }
        let (tx, _) = worker.as_ref().expect("started above");
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            drop(worker);
            self.worker_state().register_batch(vec![job]);
        }
    }

    fn worker_state(&self) -> Worker {
        Worker {
            db: Arc::clone(&self.db),
            real_store_dir: self.real_store_dir.clone(),
            pending: Arc::clone(&self.pending),
            protected: Arc::clone(&self.protected),
            failures: Arc::clone(&self.failures),
        }
    }

    /// Waits until everything handed over is registered (or failed); returns the
    /// failures since the last call.
    pub(crate) fn finish(&self) -> Vec<RegistrationFailure> {
        let worker = lock(&self.worker).take();
        if let Some((tx, handle)) = worker {
            // Closing the queue ends the worker once the queue is empty.
            drop(tx);
            let _ = handle.join();
        }
        std::mem::take(&mut *lock(&self.failures))
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let failures = self.finish();
        // Nobody asked: the caller dropped the store without finishing.
        if let Some(hook) = lock(&self.on_unclaimed).as_ref() {
            for failure in &failures {
                hook(failure);
            }
        }
    }
}

struct Worker {
    db: Arc<Mutex<Db>>,
    real_store_dir: PathBuf,
    pending: Pending,
    protected: Protected,
    failures: Arc<Mutex<Vec<RegistrationFailure>>>,
}

impl Worker {
    fn run(self, queue: Receiver<Job>) {
        // Below the builds' bookkeeping: woken on the CPU of the build that handed
        // over, it would otherwise run first and delay the next step by as long as
        // it saves.
        let _ = rustix::process::setpriority_process(None, REGISTRAR_NICENESS);
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            batch.extend(queue.try_iter());
            self.register_batch(batch);
        }
    }

    fn register_batch(&self, batch: Vec<Job>) {
        let synced = if batch.iter().any(|j| j.sync) {
            crate::local::sync_dir(&self.real_store_dir).map_err(|e| (e.kind(), e.to_string()))
        } else {
            Ok(())
        };
        for job in batch {
            let result = match &synced {
                Ok(()) => {
                    let rows: Vec<Registration<'_>> = job
                        .infos
                        .iter()
                        .zip(&job.derivation_outputs)
                        .map(|(info, derivation_outputs)| Registration {
                            info,
                            derivation_outputs: derivation_outputs.clone(),
                        })
                        .collect();
                    lock(&self.db).register(&rows)
                }
                Err((kind, message)) => Err(Error::Io {
                    context: SYNC_CONTEXT,
                    path: self.real_store_dir.clone(),
                    source: std::io::Error::new(*kind, message.clone()),
                }),
            };
            if result.is_ok() {
                lock(&self.protected).extend(
                    job.infos
                        .iter()
                        .zip(&job.protected)
                        .filter(|(_, protected)| **protected)
                        .map(|(info, _)| (info.path.clone(), info.references.clone())),
                );
            }
            {
                let mut pending = lock(&self.pending);
                for info in &job.infos {
                    pending.remove(&info.path);
                }
            }
            match result {
                Ok(()) => {
                    for l in job.locks {
                        l.release_and_delete();
                    }
                }
                // The lock files stay, as after any failed build.
                Err(error) => lock(&self.failures).push(RegistrationFailure {
                    what: job.what,
                    error,
                }),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
