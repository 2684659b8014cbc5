//! Job slots and the worker threads behind them.
//!
//! Slot `i` is worker thread `i`, so "at most `jobs` runs at once" and "no two concurrent
//! runs share a slot" hold by construction. Workers are spawned the first time their slot
//! is used: a run that only plans (everything valid) or builds a chain starts one thread,
//! not `jobs`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, Scope};
use std::time::Duration;

use crate::executor::{CancelToken, Executor, RunContext, RunOutcome};
use crate::graph::NodeId;
use crate::known::Known;

type Key<X> = <X as Executor>::Key;
type Output<X> = <X as Executor>::Output;

pub(crate) struct Job<X: Executor> {
    pub(crate) node: NodeId,
    pub(crate) key: Key<X>,
    pub(crate) known: Arc<Known<Key<X>, Output<X>>>,
}

pub(crate) struct JobDone<X: Executor> {
    pub(crate) node: NodeId,
    pub(crate) slot: usize,
    pub(crate) result: Result<RunOutcome<Output<X>>, JobFailure<X::Error>>,
}

pub(crate) enum JobFailure<E> {
    Error(E),
    Panicked(String),
}

pub(crate) struct Pool<'scope, 'env, X: Executor> {
    scope: &'scope Scope<'scope, 'env>,
    executor: &'env X,
    cancel: CancelToken,
    workers: Vec<Option<Sender<Job<X>>>>,
    /// Free slots, lowest on top, so a slot that was just released is reused (its thread
    /// is warm) and higher slots are only spawned when there is parallel work.
    free: Vec<usize>,
    done_tx: Sender<JobDone<X>>,
    done_rx: Receiver<JobDone<X>>,
}

impl<'scope, 'env, X: Executor> Pool<'scope, 'env, X> {
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        executor: &'env X,
        jobs: usize,
        cancel: CancelToken,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        Pool {
            scope,
            executor,
            cancel,
            workers: (0..jobs).map(|_| None).collect(),
            free: (0..jobs).rev().collect(),
            done_tx,
            done_rx,
        }
    }

    pub(crate) fn has_free_slot(&self) -> bool {
        !self.free.is_empty()
    }

    /// Hands `job` to a free slot and returns the slot. Call only if `has_free_slot`.
    pub(crate) fn start(&mut self, job: Job<X>) -> usize {
        let slot = self.free.pop().expect("start() needs a free slot");
        let worker = self.workers[slot].get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel();
            let ctx = RunContext::new(slot, self.cancel.clone());
            let done = self.done_tx.clone();
            let executor = self.executor;
            thread::Builder::new()
                .name(format!("kiln-job-{slot}"))
                .spawn_scoped(self.scope, move || work(executor, ctx, rx, done))
                .expect("failed to spawn a scheduler worker thread");
            tx
        });
        // Workers only exit once their sender is dropped, which is after the pool.
        worker
            .send(job)
            .expect("a scheduler worker exited while the pool was alive");
        slot
    }

    pub(crate) fn release(&mut self, slot: usize) {
        self.free.push(slot);
    }

    pub(crate) fn try_recv(&self) -> Option<JobDone<X>> {
        self.done_rx.try_recv().ok()
    }

    /// Blocks for the next result. Only call with a job running: the pool keeps a sender
    /// itself, so this would otherwise wait forever.
    pub(crate) fn recv(&self) -> JobDone<X> {
        self.done_rx
            .recv()
            .expect("the pool holds a sender, so the channel stays open")
    }

    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Option<JobDone<X>> {
        match self.done_rx.recv_timeout(timeout) {
            Ok(done) => Some(done),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                unreachable!("the pool holds a sender, so the channel stays open")
            }
        }
    }
}

impl<X: Executor> Drop for Pool<'_, '_, X> {
    fn drop(&mut self) {
        // The coordinator is unwinding (an observer or the scheduler itself panicked):
        // the scope will wait for the running jobs, so ask them to stop.
        if thread::panicking() {
            self.cancel.cancel();
        }
    }
}

fn work<X: Executor>(
    executor: &X,
    ctx: RunContext,
    jobs: Receiver<Job<X>>,
    done: Sender<JobDone<X>>,
) {
    for job in jobs {
        // A panicking job must still report, or its node would never finish.
        let result = catch_unwind(AssertUnwindSafe(|| {
            executor.run(&job.key, &job.known, &ctx)
        }));
        let result = match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(JobFailure::Error(e)),
            Err(payload) => Err(JobFailure::Panicked(panic_message(payload.as_ref()))),
        };
        let report = JobDone {
            node: job.node,
            slot: ctx.slot(),
            result,
        };
        drop(job);
        if done.send(report).is_err() {
            break;
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
