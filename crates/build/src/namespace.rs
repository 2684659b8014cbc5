//! The namespace sandbox of `kiln-sandbox` behind [`Sandbox`]: the one module of this
//! crate that calls into `kiln-sandbox`, so that a change of its API is a change here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use kiln_sandbox::{
    InputPath, KillHandle, Launched, Lingering, Outcome, Prepared, SandboxSpec, Sandboxes,
};
use kiln_store::LocalStore;

use crate::cleanup::Cleanup;
use crate::runner::{Exit, Sandbox, Started, Stop};

/// Builders run by `kiln-sandbox` (user, mount, PID, IPC, UTS and network
/// namespaces, a chroot), through the helper processes `sandboxes` owns.
pub struct NamespaceSandbox {
    sandboxes: Arc<Sandboxes>,
    stopper: Arc<Stopper>,
}

impl NamespaceSandbox {
    pub fn new(sandboxes: Arc<Sandboxes>) -> NamespaceSandbox {
        NamespaceSandbox {
            sandboxes,
            stopper: Arc::new(Stopper::default()),
        }
    }
}

impl Sandbox for NamespaceSandbox {
    fn start(&self, spec: &SandboxSpec) -> Result<Box<dyn Started>, kiln_sandbox::Error> {
        // A stale chroot from an interrupted build is removed first, as Nix does.
        kiln_sandbox::cleanup(&spec.chroot_dir)?;
        let prepared = self.sandboxes.prepare(spec)?;
        match self.sandboxes.launch(&prepared) {
            Ok(launched) => Ok(Box::new(NamespaceRun {
                sandboxes: Arc::clone(&self.sandboxes),
                spec: spec.clone(),
                prepared: Some(prepared),
                launched: Some(launched),
                lingering: None,
                stopper: Arc::clone(&self.stopper),
            })),
            Err(e) => {
                let _ = kiln_sandbox::cleanup(&spec.chroot_dir);
                Err(e)
            }
        }
    }
}

impl Drop for NamespaceSandbox {
    fn drop(&mut self) {
        self.stopper.shut_down();
    }
}

struct NamespaceRun {
    sandboxes: Arc<Sandboxes>,
    spec: SandboxSpec,
    /// Taken by `finish`; what `Drop` cleans up otherwise.
    prepared: Option<Prepared>,
    /// Taken by `run`.
    launched: Option<Launched>,
    /// The finished sandbox's mount namespace, torn down with the chroot, off the
    /// build's thread.
    lingering: Option<Lingering>,
    stopper: Arc<Stopper>,
}

impl Started for NamespaceRun {
    fn store_on_host(&self) -> &Path {
        self.prepared.as_ref().expect("not finished").chroot_store()
    }

    fn replace_inputs(&mut self, inputs: &[InputPath]) -> Result<(), kiln_sandbox::Error> {
        self.prepared
            .as_mut()
            .expect("not finished")
            .replace_inputs(inputs)
    }

    fn run(&mut self, log: &mut dyn Write, stop: &Stop) -> Result<Exit, kiln_sandbox::Error> {
        let launched = self.launched.take().expect("run once");
        let prepared = self.prepared.as_ref().expect("not finished");
        if stop.is_set() {
            return Ok(Exit::Stopped);
        }
        let watch = self.stopper.watch(stop, launched.kill_handle());
        let ran = launched.go_lingering(prepared, log);
        drop(watch);
        let (outcome, lingering) = ran?;
        self.lingering = Some(lingering);
        Ok(if outcome.success() {
            Exit::Succeeded
        } else if matches!(outcome, Outcome::Cancelled) || stop.is_set() {
            Exit::Stopped
        } else {
            Exit::Failed(outcome.describe(&self.spec))
        })
    }

    fn finish(
        mut self: Box<Self>,
        store: &LocalStore,
        cleanup: &Cleanup,
    ) -> Result<(), kiln_sandbox::Error> {
        let prepared = self.prepared.take().expect("finish once");
        let skeleton = prepared.skeleton().cloned();
        let chroot = prepared.chroot_dir().to_path_buf();
        drop(prepared);
        remove_chroot_later(
            store,
            cleanup,
            &self.sandboxes,
            chroot,
            skeleton,
            self.lingering.take(),
        )
    }
}

impl Drop for NamespaceRun {
    fn drop(&mut self) {
        let Some(prepared) = self.prepared.take() else {
            return;
        };
        drop(self.launched.take());
        drop(self.lingering.take());
        let chroot = prepared.chroot_dir().to_path_buf();
        drop(prepared);
        // What cannot be removed now is removed by the next build of this
        // derivation, as after a crash.
        let _ = kiln_sandbox::cleanup(&chroot);
    }
}

/// Delete a chroot in the background, or keep its skeleton for the next build (see
/// `kiln_sandbox::Sandboxes::recycle`). It is first renamed to a temp-rooted scratch name inside
/// the store, so neither a later build of the same derivation nor a collector (kiln's
/// or Nix's) can trip over it. Falls back to deleting in place.
fn remove_chroot_later(
    store: &LocalStore,
    cleanup: &Cleanup,
    sandboxes: &Arc<Sandboxes>,
    chroot: PathBuf,
    skeleton: Option<kiln_sandbox::Skeleton>,
    lingering: Option<Lingering>,
) -> Result<(), kiln_sandbox::Error> {
    let trash = store
        .scratch_path("kiln-chroot-trash")
        .ok()
        .map(|p| store.layout().real_path(&p));
    match trash {
        Some(trash) if std::fs::rename(&chroot, &trash).is_ok() => {
            let sandboxes = Arc::clone(sandboxes);
            cleanup.later(move || {
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

/// Whether a used build directory looks like a new one to a builder.
pub(crate) fn looks_new(dir: &Path) -> bool {
    kiln_sandbox::looks_new(dir)
}

/// Kills whatever runs as `uid` before a build may use it.
pub(crate) fn kill_user_processes(uid: u32) -> Result<(), kiln_sandbox::Error> {
    kiln_sandbox::kill_user_processes(uid)
}

/// Stops the builders whose [`Stop`] is set: one thread watches the stops of all runs
/// in progress and fires the kill handle of each run whose stop is set (a handle
/// fired before its builder started keeps it from starting).
#[derive(Default)]
struct Stopper {
    state: Mutex<Watched>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Watched {
    next_id: u64,
    runs: Vec<(u64, Stop, KillHandle)>,
    shut_down: bool,
}

/// How often stops are looked at while builders run. Waking a thread 40 times a
/// second costs nothing measurable; a stopped build ends within this.
const STOP_POLL: Duration = Duration::from_millis(25);

/// Removes its run from the watch when dropped.
struct Watch<'a> {
    stopper: &'a Arc<Stopper>,
    id: u64,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut state = self.stopper.lock();
        state.runs.retain(|(id, _, _)| *id != self.id);
    }
}

impl Stopper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watch<'a>(self: &'a Arc<Self>, stop: &Stop, kill: KillHandle) -> Watch<'a> {
        let (id, idle) = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            let idle = state.runs.is_empty();
            state.runs.push((id, stop.clone(), kill));
            (id, idle)
        };
        // A thread that polls already will see this run; only an idle one waits
        // to be woken (a wake-up per build would cost a context switch each).
        if idle {
            self.wake.notify_all();
        }
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if thread.is_none() {
            let me = Arc::clone(self);
            // Without the thread, stops are only noticed between builds.
            *thread = std::thread::Builder::new()
                .name("kiln-stopper".into())
                .spawn(move || me.serve())
                .ok();
        }
        Watch { stopper: self, id }
    }

    fn serve(&self) {
        let mut state = self.lock();
        while !state.shut_down {
            if state.runs.is_empty() {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            for (_, stop, kill) in &state.runs {
                if stop.is_set() {
                    kill.kill();
                }
            }
            state = self
                .wake
                .wait_timeout(state, STOP_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn shut_down(&self) {
        self.lock().shut_down = true;
        self.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
