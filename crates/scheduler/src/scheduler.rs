//! The coordinator: plans nodes, hands ready ones to job slots, applies job results,
//! wakes retries, stops after a failure, and reports events.
//!
//! It runs on the caller's thread and blocks only on the result channel (with a timeout
//! when a retry is due), so no time is spent polling.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::{Duration, Instant};

use crate::executor::{CancelToken, Executor, Plan, RunOutcome};
use crate::graph::{Finished, Graph, NodeId};
use crate::observer::{Decision, Event, Observer, Progress};
use crate::outcome::{Failure, Report};
use crate::pool::{panic_message, Job, JobDone, JobFailure, Pool};

/// A retry deadline too far to represent is replaced by this; it is as good as never.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Maximum number of concurrent `run`s (`-j`).
    pub jobs: NonZeroUsize,
    /// After a failure, go on with everything that does not depend on it (`-k`).
    /// Without it, the first failure stops new work and cancels running jobs.
    pub keep_going: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: NonZeroUsize::MIN,
            keep_going: false,
        }
    }
}

/// Runs goal graphs with one executor. Each [`run`](Scheduler::run) is independent: its
/// own nodes, dedup and job slots (kiln should drive everything through one run, as
/// several runs at once would not share work or respect a common `-j`).
pub struct Scheduler<X> {
    executor: X,
    options: Options,
}

type ObserverOf<'o, X> =
    dyn Observer<<X as Executor>::Key, <X as Executor>::Output, <X as Executor>::Error> + 'o;

impl<X: Executor> Scheduler<X> {
    pub fn new(executor: X, options: Options) -> Self {
        Scheduler { executor, options }
    }

    pub fn executor(&self) -> &X {
        &self.executor
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// Realises `goals` (duplicates are requested once) and everything their plans need.
    /// Returns when every node has an outcome; running jobs are always waited for.
    pub fn run(
        &self,
        goals: impl IntoIterator<Item = X::Key>,
        observer: &mut dyn Observer<X::Key, X::Output, X::Error>,
    ) -> Report<X::Key, X::Output, X::Error> {
        let mut graph = Graph::new();
        let goals = graph.add_goals(goals);
        let cancel = CancelToken::new();
        let mut coordinator = Coordinator {
            executor: &self.executor,
            keep_going: self.options.keep_going,
            graph,
            observer,
            retries: BinaryHeap::new(),
            running: 0,
            stopped_by: None,
            cancel: cancel.clone(),
            finished: Vec::new(),
            progress: Progress::default(),
        };
        thread::scope(|scope| {
            let mut pool = Pool::new(scope, &self.executor, self.options.jobs.get(), cancel);
            coordinator.drive(&mut pool);
        });
        coordinator.graph.fail_unfinished();
        coordinator.settle();
        coordinator.graph.into_report(&goals)
    }
}

struct Coordinator<'a, 'o, X: Executor> {
    executor: &'a X,
    keep_going: bool,
    graph: Graph<X::Key, X::Output, X::Error>,
    observer: &'a mut ObserverOf<'o, X>,
    /// Parked nodes by deadline.
    retries: BinaryHeap<Reverse<(Instant, NodeId)>>,
    running: usize,
    /// The key whose failure stopped the run (without keep-going).
    stopped_by: Option<X::Key>,
    cancel: CancelToken,
    finished: Vec<NodeId>,
    progress: Progress,
}

impl<X: Executor> Coordinator<'_, '_, X> {
    fn drive(&mut self, pool: &mut Pool<'_, '_, X>) {
        self.report_progress();
        loop {
            while let Some(done) = pool.try_recv() {
                self.on_job_done(pool, done);
            }
            self.wake_due_retries();
            self.dispatch(pool);
            // Plan one node at a time, so that results and dispatch are interleaved with
            // planning and workers never sit idle behind a long planning phase.
            if let Some(id) = self.graph.next_unplanned() {
                self.plan(id);
                continue;
            }
            if self.running == 0 && self.retries.is_empty() {
                // With every slot free, dispatch has emptied the ready queue: nothing can
                // change any more, except by failing cycles that nothing else will break.
                debug_assert!(self.graph.is_idle());
                if self.graph.done() < self.graph.total() && self.graph.fail_stuck_cycles() {
                    self.settle();
                    continue;
                }
                break;
            }
            let done = match self.retries.peek() {
                None => Some(pool.recv()),
                Some(Reverse((deadline, _))) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    pool.recv_timeout(wait)
                }
            };
            if let Some(done) = done {
                self.on_job_done(pool, done);
            }
        }
    }

    fn plan(&mut self, id: NodeId) {
        let key = self.graph.key(id);
        let known = self.graph.known(id);
        let executor = self.executor;
        match catch_unwind(AssertUnwindSafe(|| executor.plan(key, known))) {
            Ok(Ok(plan)) => {
                let decision = match &plan {
                    Plan::Done(_) => Decision::Done,
                    Plan::Need(keys) => Decision::Need(keys),
                    Plan::Ready => Decision::Ready,
                };
                self.observer.event(Event::Planned { key, decision });
                self.graph.apply_plan(id, plan);
            }
            Ok(Err(e)) => self.graph.fail(id, Failure::Plan(e)),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                self.graph.fail(id, Failure::Panicked(message));
            }
        }
        self.settle();
    }

    fn dispatch(&mut self, pool: &mut Pool<'_, '_, X>) {
        while pool.has_free_slot() {
            let Some(id) = self.graph.next_ready() else {
                break;
            };
            let key = self.graph.key(id);
            let job = Job {
                node: id,
                key: key.clone(),
                known: self.graph.known_shared(id),
            };
            let slot = pool.start(job);
            self.running += 1;
            self.observer.event(Event::Started { key, slot });
            self.report_progress();
        }
    }

    fn on_job_done(&mut self, pool: &mut Pool<'_, '_, X>, done: JobDone<X>) {
        let JobDone { node, slot, result } = done;
        pool.release(slot);
        self.running -= 1;
        match (result, &self.stopped_by) {
            (Ok(RunOutcome::Built(output)), _) => self.graph.succeed(node, output, true),
            (Ok(RunOutcome::Retry(_)), Some(because)) => {
                let because = because.clone();
                self.graph.fail(node, Failure::NotAttempted { because });
            }
            (Ok(RunOutcome::Retry(delay)), None) => {
                self.graph.park(node);
                let key = self.graph.key(node);
                self.observer.event(Event::Retrying { key, slot, delay });
                let now = Instant::now();
                let deadline = now.checked_add(delay).unwrap_or(now + FAR_FUTURE);
                self.retries.push(Reverse((deadline, node)));
            }
            (Err(JobFailure::Error(error)), Some(because)) => {
                let because = because.clone();
                self.graph.fail(node, Failure::Cancelled { because, error });
            }
            (Err(JobFailure::Error(e)), None) => self.graph.fail(node, Failure::Run(e)),
            (Err(JobFailure::Panicked(message)), _) => {
                self.graph.fail(node, Failure::Panicked(message));
            }
        }
        self.settle();
    }

    fn wake_due_retries(&mut self) {
        if self.retries.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(&Reverse((deadline, id))) = self.retries.peek() {
            if deadline > now {
                break;
            }
            self.retries.pop();
            self.graph.unpark(id);
        }
    }

    /// After any transition: stop if a failure requires it, then report what finished.
    fn settle(&mut self) {
        if !self.keep_going && self.stopped_by.is_none() {
            if let Some(failed) = self.graph.first_failure() {
                self.stopped_by = Some(self.graph.key(failed).clone());
                self.cancel.cancel();
                self.graph.stop(failed);
                self.retries.clear();
            }
        }
        self.graph.drain_finished(&mut self.finished);
        for &id in &self.finished {
            let key = self.graph.key(id);
            let event = match self.graph.finished_state(id) {
                Some(Finished::Built(output)) => Event::Built { key, output },
                Some(Finished::Skipped(output)) => Event::Skipped { key, output },
                Some(Finished::Failed(failure)) => Event::Failed { key, failure },
                None => unreachable!("drained nodes are finished"),
            };
            self.observer.event(event);
        }
        self.report_progress();
    }

    fn report_progress(&mut self) {
        let now = Progress {
            done: self.graph.done(),
            total: self.graph.total(),
            running: self.running,
        };
        if now != self.progress {
            self.progress = now;
            self.observer.event(Event::Progress(now));
        }
    }
}
