//! Events for progress bars and logs.

use std::time::Duration;

use crate::outcome::Failure;

/// Receives every event of a run, one at a time under the scheduler's lock (on
/// whichever worker thread made the decision, hence `Send`), in the order the scheduler
/// made the decisions: a `Started` never precedes the `Built` of a key it needed. Keep it
/// quick: every worker waits for it.
pub trait Observer<K, O, E> {
    fn event(&mut self, event: Event<'_, K, O, E>);
}

impl<K, O, E, F> Observer<K, O, E> for F
where
    F: for<'a> FnMut(Event<'a, K, O, E>),
{
    fn event(&mut self, event: Event<'_, K, O, E>) {
        self(event)
    }
}

/// Ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl<K, O, E> Observer<K, O, E> for NoopObserver {
    fn event(&mut self, _: Event<'_, K, O, E>) {}
}

#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a, K, O, E> {
    /// `plan` answered for `key` (called again after each `Need` is satisfied).
    Planned {
        key: &'a K,
        decision: Decision<'a, K>,
    },
    /// `run` was handed to a worker.
    Started { key: &'a K, slot: usize },
    /// `run` asked to be retried; its slot is free again meanwhile.
    Retrying {
        key: &'a K,
        slot: usize,
        delay: Duration,
    },
    /// Terminal: built by this run.
    Built { key: &'a K, output: &'a O },
    /// Terminal: `plan` said `Done`.
    Skipped { key: &'a K, output: &'a O },
    /// Terminal: every kind of failure, including inherited ones and nodes not attempted.
    Failed {
        key: &'a K,
        failure: &'a Failure<K, E>,
    },
    /// The counts changed; `total` grows as plans add keys.
    Progress(Progress),
}

/// What a plan decided, as reported in [`Event::Planned`].
#[derive(Debug)]
pub enum Decision<'a, K> {
    Done,
    Need(&'a [K]),
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Nodes with an outcome.
    pub done: usize,
    /// Nodes known so far.
    pub total: usize,
    /// Runs occupying a job slot.
    pub running: usize,
}
