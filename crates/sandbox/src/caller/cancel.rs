//! Stopping a running sandbox from another thread: a [`KillHandle`] taken from a
//! [`crate::Launched`] before its `go` kills the sandbox's PID 1 (and with it the
//! whole PID namespace) as soon as the builder exists, and `go` then returns
//! [`crate::Outcome::Cancelled`]. The same mechanism serves Ctrl-C, through the
//! registry of every sandbox of one [`crate::Sandboxes`] that is launched and not
//! yet reaped.
//!
//! The pid is only ever signalled under the target's lock and before `go` reaps
//! it (it sets `reaped` under the same lock first), so a cancel can never reach
//! a process that reused the pid.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rustix::process::{Pid, Signal};

/// What a [`KillHandle`] acts on: one sandbox of one `launch`.
#[derive(Debug, Default)]
pub(crate) struct Target {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// PID 1 of the sandbox, once `go` has learnt it and until it reaps it.
    pid: Option<Pid>,
    cancelled: bool,
}

impl Target {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the sandbox's PID 1; kills it at once if it was cancelled before.
    pub(crate) fn started(&self, pid: Pid) {
        let mut state = self.lock();
        if state.cancelled {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        state.pid = Some(pid);
    }

    /// Forgets the pid before it is reaped; whether the sandbox was cancelled.
    pub(crate) fn finished(&self) -> bool {
        let mut state = self.lock();
        state.pid = None;
        state.cancelled
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        if let Some(pid) = state.pid {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

/// Stops one launched sandbox from any thread: see [`crate::Launched::kill_handle`].
/// Cheap to clone; firing it after the sandbox ended does nothing.
#[derive(Debug, Clone)]
pub struct KillHandle(pub(crate) Arc<Target>);

impl KillHandle {
    /// Kills the sandbox (all of its processes) now, or as soon as its builder
    /// exists if it is still being set up; its `go` returns
    /// [`crate::Outcome::Cancelled`], or does not start the builder at all.
    pub fn kill(&self) {
        self.0.cancel();
    }
}

/// Every sandbox launched by this process and not yet reaped, for cancelling
/// them all at once.
#[derive(Debug)]
pub(crate) struct Registry {
    targets: Mutex<Vec<Weak<Target>>>,
}

impl Registry {
    pub(crate) const fn new() -> Registry {
        Registry {
            targets: Mutex::new(Vec::new()),
        }
    }

    /// A new target, registered until it is dropped.
    pub(crate) fn register(&self) -> Arc<Target> {
        let target = Arc::new(Target::default());
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|t| t.strong_count() > 0);
        targets.push(Arc::downgrade(&target));
        target
    }

    /// Cancels every registered sandbox.
    pub(crate) fn cancel_all(&self) {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        for target in targets.iter().filter_map(Weak::upgrade) {
            target.cancel();
        }
    }
}

/// Cancels every running sandbox of one [`crate::Sandboxes`]; see
/// [`crate::Sandboxes::canceller`]. Does nothing once those are gone.
#[derive(Debug, Clone)]
pub struct CancelAll(pub(crate) Arc<Registry>);

impl CancelAll {
    /// See [`crate::Sandboxes::cancel_all`].
    pub fn cancel_all(&self) {
        self.0.cancel_all();
    }
}
