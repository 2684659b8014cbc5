//! The run loop: plans nodes, hands ready ones to job slots, applies job results,
//! wakes retries, stops after a failure, and reports events.
//!
//! There is no coordinator thread. Each job slot is a worker thread, and whichever
//! worker holds the state's lock does the coordinating: a worker that finishes a job
//! applies its result, plans what that unblocked and takes the next ready node itself.
//! In a chain of builds each step therefore starts on the thread that finished the
//! previous one, with no thread to wake in between (on a busy 2-core machine a wake-up
//! can cost as much as a trivial build's whole bookkeeping). Idle workers sleep on a
//! condition variable, with a timeout when a retry is due, so no time is spent polling.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use crate::executor::{CancelToken, Executor, Plan, RunContext, RunOutcome};
use crate::graph::{Finished, Graph, NodeId};
use crate::observer::{Decision, Event, Observer, Progress};
use crate::outcome::{Failure, Report};

/// How long a worker plans, holding the lock, before it lets the workers it called take
/// the nodes that are ready: small graphs are planned whole before anything runs, large
/// ones do not keep builds waiting.
const PLANNING_BURST: Duration = Duration::from_millis(2);

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
    dyn Observer<<X as Executor>::Key, <X as Executor>::Output, <X as Executor>::Error> + Send + 'o;

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
        observer: &mut ObserverOf<'_, X>,
    ) -> Report<X::Key, X::Output, X::Error> {
        let mut graph = Graph::new();
        let goals = graph.add_goals(goals);
        let shared = Shared {
            state: Mutex::new(State {
                executor: &self.executor,
                keep_going: self.options.keep_going,
                graph,
                observer,
                retries: BinaryHeap::new(),
                running: 0,
                stopped_by: None,
                cancel: CancelToken::new(),
                finished: Vec::new(),
                progress: Progress::default(),
                workers: 1,
                idle: 0,
                over: false,
            }),
            wake: Condvar::new(),
            jobs: self.options.jobs.get(),
        };
        thread::scope(|scope| {
            // Workers are started as parallel work appears: a run that only plans, or
            // builds a chain, uses one thread, not `jobs`.
            spawn_worker(scope, &shared, 0);
        });
        let mut state = shared
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        state.graph.fail_unfinished();
        state.settle();
        state.graph.into_report(&goals)
    }
}

struct Shared<'a, 'o, X: Executor> {
    state: Mutex<State<'a, 'o, X>>,
    /// Signalled when work may be available or the run is over.
    wake: Condvar,
    jobs: usize,
}

impl<'a, 'o, X: Executor> Shared<'a, 'o, X> {
    fn lock(&self) -> MutexGuard<'_, State<'a, 'o, X>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State<'a, 'o, X: Executor> {
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
    /// Worker threads started so far; worker `i` is job slot `i`.
    workers: usize,
    /// Workers waiting for work.
    idle: usize,
    /// Nothing can change any more (or a worker panicked): every worker leaves.
    over: bool,
}

fn spawn_worker<'scope, 'env, 'a: 'env, 'o: 'env, X: Executor>(
    scope: &'scope Scope<'scope, 'env>,
    shared: &'env Shared<'a, 'o, X>,
    slot: usize,
) {
    thread::Builder::new()
        .name(format!("kiln-job-{slot}"))
        .spawn_scoped(scope, move || work(scope, shared, slot))
        .expect("failed to spawn a scheduler worker thread");
}

/// Ends the run if a worker unwinds (a panicking observer, say), so the others stop
/// waiting; the scope then re-raises the panic.
struct EndOnPanic<'s, 'a, 'o, X: Executor>(&'s Shared<'a, 'o, X>);

impl<X: Executor> Drop for EndOnPanic<'_, '_, '_, X> {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut state = self.0.lock();
            state.over = true;
            state.cancel.cancel();
            drop(state);
            self.0.wake.notify_all();
        }
    }
}

fn work<'scope, 'env, 'a: 'env, 'o: 'env, X: Executor>(
    scope: &'scope Scope<'scope, 'env>,
    shared: &'env Shared<'a, 'o, X>,
    slot: usize,
) {
    let _end_on_panic = EndOnPanic(shared);
    let mut state = shared.lock();
    let ctx = RunContext::new(slot, state.cancel.clone());
    if slot == 0 {
        state.report_progress();
    }
    let mut planning_since: Option<Instant> = None;
    loop {
        if state.over {
            break;
        }
        state.wake_due_retries();
        // With more than one slot, planning comes first: other workers are called to take
        // what is ready meanwhile, so neither builds nor planning wait for the other.
        let keep_planning = state.graph.has_unplanned() && shared.jobs > 1;
        if state.graph.has_ready() && !keep_planning {
            planning_since = None;
            let Some((node, key, known)) = state.take_ready(slot) else {
                unreachable!("a node is ready")
            };
            if state.graph.has_ready() || state.graph.has_unplanned() || state.graph.has_prospects()
            {
                call_helper(scope, shared, &mut state);
            }
            let executor = state.executor;
            drop(state);
            // A panicking job must still report, or its node would never finish.
            let result = catch_unwind(AssertUnwindSafe(|| executor.run(&key, &known, &ctx)));
            let result = match result {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(e)) => Err(JobFailure::Error(e)),
                Err(payload) => Err(JobFailure::Panicked(panic_message(payload.as_ref()))),
            };
            drop((key, known));
            state = shared.lock();
            if state.over {
                break;
            }
            state.on_job_done(node, slot, result);
            continue;
        }
        // Plan one node at a time, so that nodes become ready, and are taken, while the
        // rest of the graph is still being planned.
        if let Some(id) = state.graph.next_unplanned() {
            if state.graph.has_ready() {
                call_helper(scope, shared, &mut state);
            }
            let burst_start = *planning_since.get_or_insert_with(Instant::now);
            state.plan(id);
            if state.graph.has_ready()
                && state.graph.has_unplanned()
                && burst_start.elapsed() >= PLANNING_BURST
            {
                // Let a called worker in to take what is ready.
                drop(state);
                thread::yield_now();
                state = shared.lock();
                planning_since = None;
            }
            continue;
        }
        if state.running == 0 && state.retries.is_empty() {
            // Nothing is running or waiting and nothing is ready: nothing can change any
            // more, except by failing cycles that nothing else will break.
            debug_assert!(state.graph.is_idle());
            if state.graph.done() < state.graph.total() && state.graph.fail_stuck_cycles() {
                state.settle();
                continue;
            }
            state.over = true;
            shared.wake.notify_all();
            break;
        }
        // Idle while something runs: set up what waits only for running jobs (at most
        // as many as there are free slots, so staging never holds more than `-j`).
        if state.running + state.graph.staged() < shared.jobs {
            if let Some(id) = state.graph.next_prospect() {
                let key = state.graph.key(id).clone();
                let executor = state.executor;
                drop(state);
                // A panic here only loses the head start; `run` does the work.
                let _ = catch_unwind(AssertUnwindSafe(|| executor.stage(&key)));
                state = shared.lock();
                continue;
            }
        }
        state.idle += 1;
        let due = state.retries.peek().map(|Reverse((deadline, _))| *deadline);
        state = match due {
            None => shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match shared.wake.wait_timeout(state, wait) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                }
            }
        };
        state.idle -= 1;
    }
}

/// Wakes an idle worker, or starts one if every started worker is busy and a slot is
/// left, to take work this one will not get to soon.
fn call_helper<'scope, 'env, 'a: 'env, 'o: 'env, X: Executor>(
    scope: &'scope Scope<'scope, 'env>,
    shared: &'env Shared<'a, 'o, X>,
    state: &mut State<'a, 'o, X>,
) {
    if state.idle > 0 {
        shared.wake.notify_one();
    } else if state.workers < shared.jobs {
        let next = state.workers;
        state.workers += 1;
        spawn_worker(scope, shared, next);
    }
}

enum JobFailure<E> {
    Error(E),
    Panicked(String),
}

type Taken<X> = (
    NodeId,
    <X as Executor>::Key,
    std::sync::Arc<crate::known::Known<<X as Executor>::Key, <X as Executor>::Output>>,
);

impl<X: Executor> State<'_, '_, X> {
    fn take_ready(&mut self, slot: usize) -> Option<Taken<X>> {
        let id = self.graph.next_ready()?;
        let key = self.graph.key(id).clone();
        let known = self.graph.known_shared(id);
        self.running += 1;
        self.observer.event(Event::Started { key: &key, slot });
        self.report_progress();
        Some((id, key, known))
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

    fn on_job_done(
        &mut self,
        node: NodeId,
        slot: usize,
        result: Result<RunOutcome<X::Output>, JobFailure<X::Error>>,
    ) {
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
        let mut unstaged = Vec::new();
        self.graph.drain_unstaged(&mut unstaged);
        for id in unstaged {
            self.executor.unstage(self.graph.key(id));
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

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
