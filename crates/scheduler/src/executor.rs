//! The contract between the scheduler and whatever does the work (realising derivations,
//! substituting paths, or a fake in tests).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::known::Known;

/// Plans and runs the nodes of a goal graph.
///
/// Both are called on worker threads: `plan` one call at a time, `run` several at once
/// (hence `Sync`).
pub trait Executor: Send + Sync {
    /// Identity of a node, and at the same time its immutable objective: wanting more
    /// (another output, say) means wanting another key, never widening an existing one.
    type Key: Clone + Eq + Hash + Ord + Debug + Send + Sync;
    /// What a finished node hands to the nodes that needed it (e.g. output name → path).
    type Output: Clone + Send + Sync;
    /// Why planning or running a node failed.
    type Error: std::error::Error + Send + 'static;

    /// Decides what `key` needs next. Called again after each [`Plan::Need`] once every
    /// needed key has succeeded, with their outputs added to `known`; that is how the graph
    /// grows at run time (for `drv^out^out`: first need `drv^out`, then read the `.drv`
    /// it produced and need its inputs, and so on, to any depth).
    ///
    /// `known` holds the outputs of exactly the keys this node has needed so far — not
    /// of everything that happens to be finished — so a plan cannot depend on timing.
    fn plan(
        &self,
        key: &Self::Key,
        known: &Known<Self::Key, Self::Output>,
    ) -> Result<Plan<Self::Key, Self::Output>, Self::Error>;

    /// Does the work for a node whose last plan said [`Plan::Ready`]. `known` is as in
    /// `plan`. Returning [`RunOutcome::Retry`] gives the job slot back and calls `run`
    /// again after the delay (not `plan`), so `run` must re-check whatever it waited for,
    /// e.g. whether another process built the path while we waited for its lock.
    fn run(
        &self,
        key: &Self::Key,
        known: &Known<Self::Key, Self::Output>,
        ctx: &RunContext,
    ) -> Result<RunOutcome<Self::Output>, Self::Error>;

    /// Called on a worker with nothing else to do, for a node that waits only for
    /// running nodes: whatever `run` would do first without their outputs may start
    /// now, so that in a chain the next step is set up while this one runs. `run`,
    /// if it comes, must cope with staging that is still under way, that failed, or
    /// that never happened. Default: nothing.
    fn stage(&self, _key: &Self::Key) {}

    /// A node passed to `stage` finished without running (a need failed, or the
    /// run stopped): release what was staged. Default: nothing.
    fn unstage(&self, _key: &Self::Key) {}
}

/// Lets a caller keep ownership of its executor (and inspect it after the run).
impl<X: Executor + ?Sized> Executor for &X {
    type Key = X::Key;
    type Output = X::Output;
    type Error = X::Error;

    fn plan(
        &self,
        key: &Self::Key,
        known: &Known<Self::Key, Self::Output>,
    ) -> Result<Plan<Self::Key, Self::Output>, Self::Error> {
        (**self).plan(key, known)
    }

    fn run(
        &self,
        key: &Self::Key,
        known: &Known<Self::Key, Self::Output>,
        ctx: &RunContext,
    ) -> Result<RunOutcome<Self::Output>, Self::Error> {
        (**self).run(key, known, ctx)
    }

    fn stage(&self, key: &Self::Key) {
        (**self).stage(key)
    }

    fn unstage(&self, key: &Self::Key) {
        (**self).unstage(key)
    }
}

/// The answer of [`Executor::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<K, O> {
    /// Nothing to run: this is the output (already valid, or an administrative node that
    /// forwards the output of a key it needed).
    Done(O),
    /// These keys must succeed first; then `plan` is called again. Keys already known
    /// count as satisfied, but a `Need` that adds nothing new is a failure
    /// ([`Failure::NoProgress`](crate::Failure::NoProgress)) rather than an endless loop.
    Need(Vec<K>),
    /// Run it.
    Ready,
}

/// The answer of a successful [`Executor::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome<O> {
    /// Finished; this is the output.
    Built(O),
    /// Could not proceed yet (e.g. another process holds the output lock): release the
    /// job slot and call `run` again after this delay.
    Retry(Duration),
}

/// What a running job may ask of the scheduler.
#[derive(Debug, Clone)]
pub struct RunContext {
    slot: usize,
    cancel: CancelToken,
}

impl RunContext {
    /// For executors' own unit tests; the scheduler makes one per worker.
    pub fn new(slot: usize, cancel: CancelToken) -> Self {
        RunContext { slot, cancel }
    }

    /// Job slot index in `0..jobs`; no two concurrent runs share one (build users, log
    /// prefixes and temporary directories can be keyed by it).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// True once the scheduler has given up on the run (a failure without keep-going).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The token itself, to wait on or to hand to a child-process supervisor.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

/// A cancellation flag that can also be waited on, so a job that supervises a child
/// process can sleep until either its poll interval passes or the run is cancelled,
/// instead of spinning.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        // Taking the lock orders this notify after any waiter's flag check, so no
        // waiter can miss it.
        let _guard = self.0.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.wake.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Blocks until cancelled or `timeout` passes; returns whether it was cancelled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.0.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (_guard, _) = self
            .0
            .wake
            .wait_timeout_while(guard, timeout, |_| !self.is_cancelled())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_cancelled()
    }
}
