//! kiln-scheduler: the goal graph. A generic parallel executor for a graph of keys that
//! grows while it runs. It knows nothing of derivations, stores or sandboxes: the build
//! layer plugs in through [`Executor`] (whose `plan` says what a key needs and whose `run`
//! does the work) and a progress bar or log through [`Observer`]. It depends on no other
//! kiln crate; only std threads, no async runtime.
//!
//! Invariants of [`Scheduler::run`] (each guarded by tests in `tests/it`):
//!
//! * **One node per key.** However many goals or plans name a key, it is planned as one
//!   node and run at most once (a [`RunOutcome::Retry`] is a postponement, not a second
//!   run). A key is an immutable objective: needing more means needing another key, so the
//!   "grow a shared goal's wanted outputs" bug of Nix 2.18's RFC 92 scheduler has no place
//!   to happen.
//! * **Dependencies first, and visible.** A node is planned again, and finally run, only
//!   after every key its plan needed has succeeded, and it sees the outputs of exactly
//!   those keys ([`Known`]) — never of keys it did not ask for, so nothing depends on
//!   timing.
//! * **Job slots.** At most `jobs` runs at once, each in its own slot; a node waiting to
//!   retry holds none.
//! * **No path is dropped.** Every node that enters the graph ends with exactly one
//!   [`Outcome`]: built, skipped (plan said `Done`), or failed — by its own error, a cycle,
//!   a failed dependency (naming it and the root cause), or not attempted because a named
//!   failure stopped the run. [`Report`] holds them all; every goal has one.
//! * **Cycles fail, never hang.** A short cycle is caught when the edge closing it is
//!   added; any other once the run goes quiet with keys still waiting. Every key on the
//!   cycle fails, naming the cycle, and so does everything waiting for it.
//! * **Failure.** Without `keep_going` the first failure stops planning and starting, and
//!   running jobs are told through [`RunContext`]; with it, everything that does not
//!   depend on a failure is still built.
//!
//! Planning happens on the caller's thread, `run` on worker threads; events reach the
//! observer on the caller's thread, in decision order.

mod cycle;
mod executor;
mod graph;
mod known;
mod observer;
mod outcome;
mod pool;
mod scheduler;

pub use executor::{CancelToken, Executor, Plan, RunContext, RunOutcome};
pub use known::Known;
pub use observer::{Decision, Event, NoopObserver, Observer, Progress};
pub use outcome::{Failure, Outcome, Report};
pub use scheduler::{Options, Scheduler};
