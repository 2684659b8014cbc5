//! The seam between realising a derivation and the sandbox that runs its builder:
//! everything `realise` needs from a sandbox, so that the namespace sandbox
//! ([`crate::NamespaceSandbox`]) is one implementation and an in-process test double
//! ([`crate::InProcessSandbox`]) another.

use std::io::Write;
use std::path::Path;

use kiln_sandbox::{InputPath, SandboxSpec};
use kiln_scheduler::CancelToken;

/// Runs builders: one [`Started`] sandbox per build.
pub trait Sandbox: Send + Sync {
    /// Whether builders run as a build user of their own (claimed from the `nixbld`
    /// pool when running as root). An in-process runner cannot switch users.
    fn isolates_users(&self) -> bool {
        true
    }

    /// Makes the sandbox `spec` describes (removing a stale one at
    /// `spec.chroot_dir` first) and starts it as far as it can go before its store
    /// inputs are final: possibly long before the build runs (staging).
    fn start(&self, spec: &SandboxSpec) -> Result<Box<dyn Started>, kiln_sandbox::Error>;
}

/// A sandbox that has been started and waits to run its builder. Dropped without
/// [`Started::finish`], it ends whatever it started and removes what it made.
pub trait Started: Send {
    /// Where the builder's store directory is on the host: the outputs are there
    /// once the builder has run, until [`Started::finish`].
    fn store_on_host(&self) -> &Path;

    /// The input closure turned out to differ from the one given to
    /// [`Sandbox::start`] (it was a guess, made while inputs were being built).
    fn replace_inputs(&mut self, inputs: &[InputPath]) -> Result<(), kiln_sandbox::Error>;

    /// Runs the builder to its end, streaming its output into `log`; stops it
    /// promptly once `stop` is set. Runs once.
    fn run(&mut self, log: &mut dyn Write, stop: &Stop) -> Result<Exit, kiln_sandbox::Error>;

    /// Removes what [`Sandbox::start`] made, once the outputs have been moved out;
    /// possibly later, through `cleanup`.
    fn finish(
        self: Box<Self>,
        store: &kiln_store::LocalStore,
        cleanup: &crate::cleanup::Cleanup,
    ) -> Result<(), kiln_sandbox::Error>;
}

/// How a builder's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Succeeded,
    /// The end of Nix's message, e.g. `failed with exit code 1`, `timed out after 5
    /// seconds`.
    Failed(String),
    /// Killed because [`Stop`] was set.
    Stopped,
}

/// When a build must stop: the scheduler gave up on the run (a failure without
/// keep-going), or the user interrupted the process.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    run: CancelToken,
    interrupt: CancelToken,
}

impl Stop {
    pub fn new(run: CancelToken, interrupt: CancelToken) -> Stop {
        Stop { run, interrupt }
    }

    pub fn is_set(&self) -> bool {
        self.interrupt.is_cancelled() || self.run.is_cancelled()
    }

    /// The user interrupted (rather than the scheduler cancelling).
    pub fn by_user(&self) -> bool {
        self.interrupt.is_cancelled()
    }
}
