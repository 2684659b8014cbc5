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
//! Planning, `run` and events all happen on the worker threads (one per job slot, started
//! as parallel work appears), under one lock: events reach the observer in decision
//! order, one at a time. A [`RunOutcome::Retry`] calls `run`
//! again after its delay, not `plan`: the job re-checks what it waited for (Nix's "someone
//! beat us to it" after an output lock).
//!
//! ```
//! use kiln_scheduler::{Executor, Known, NoopObserver, Options, Plan, RunContext, RunOutcome, Scheduler};
//!
//! /// Key `n` needs `n - 1` and outputs the sum `0 + 1 + … + n`.
//! struct Sum;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("never")]
//! struct Never;
//!
//! impl Executor for Sum {
//!     type Key = u32;
//!     type Output = u32;
//!     type Error = Never;
//!
//!     fn plan(&self, n: &u32, known: &Known<u32, u32>) -> Result<Plan<u32, u32>, Never> {
//!         Ok(if *n > 0 && !known.contains(&(n - 1)) { Plan::Need(vec![n - 1]) } else { Plan::Ready })
//!     }
//!
//!     fn run(&self, n: &u32, known: &Known<u32, u32>, _: &RunContext) -> Result<RunOutcome<u32>, Never> {
//!         let below = if *n > 0 { known.get(&(n - 1)).copied().unwrap() } else { 0 };
//!         Ok(RunOutcome::Built(below + n))
//!     }
//! }
//!
//! let scheduler = Scheduler::new(Sum, Options { jobs: 2.try_into().unwrap(), keep_going: false });
//! let report = scheduler.run([10, 4, 10], &mut NoopObserver);
//! assert!(report.is_success());
//! assert_eq!(report.outcome(&10).and_then(|o| o.output()), Some(&55));
//! assert_eq!(report.built().count(), 11); // 0..=10, each once
//! ```

mod cycle;
mod executor;
mod graph;
mod known;
mod observer;
mod outcome;
mod scheduler;

pub use executor::{CancelToken, Executor, Plan, RunContext, RunOutcome};
pub use known::Known;
pub use observer::{Decision, Event, NoopObserver, Observer, Progress};
pub use outcome::{Failure, Outcome, Report};
pub use scheduler::{Options, Scheduler};
