//! [`Sandboxes`]: the one owner of everything the caller's room keeps between
//! builds, so that it all ends when the handle is dropped, in an order fixed
//! here rather than by the order of lines in the caller.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cancel::{CancelAll, Registry};
use super::helpers::Helpers;
use super::launch::{launch, Launched, Outcome};
use super::prepare::{prepare_from, Prepared};
use super::skeleton::{Pool, Skeleton};
use super::spec::SandboxSpec;
use crate::error::Error;

/// The sandboxes of one caller: its helper processes (started on first use), the
/// chroot skeletons kept for later builds, and the registry of running builders.
/// Create one per process (or per store) and share it by reference or `Arc`; every
/// method may be called from any thread.
///
/// Dropping it cancels every builder still running (their `go`s return
/// [`Outcome::Cancelled`]), tells the helpers to exit and reaps them, then deletes
/// the skeletons still waiting.
#[derive(Debug)]
pub struct Sandboxes {
    running: Arc<Registry>,
    helpers: Helpers,
    skeletons: Pool,
}

impl Sandboxes {
    /// `helper_exe` is an executable whose `main` calls [`crate::helper_main`] when
    /// its first argument is [`crate::HELPER_ARG`] (the `kiln` binary itself).
    /// Nothing is started yet.
    pub fn new(helper_exe: impl Into<PathBuf>) -> Sandboxes {
        Sandboxes {
            running: Arc::new(Registry::new()),
            helpers: Helpers::new(helper_exe.into()),
            skeletons: Pool::default(),
        }
    }

    /// Starts the helper now if it is not running, so that the first build does
    /// not wait for it (a caller may do this on another thread while it plans).
    pub fn start_helper(&self) -> Result<(), Error> {
        self.helpers.start()
    }

    /// [`crate::prepare`], reusing a skeleton [`Sandboxes::recycle`] kept when
    /// one fits.
    pub fn prepare(&self, spec: &SandboxSpec) -> Result<Prepared, Error> {
        prepare_from(spec, Some(&self.skeletons))
    }

    /// Starts the sandbox for `prepared` without letting it reach its store
    /// inputs: the namespaces, the chroot's mounts other than the inputs, the id
    /// maps are all set up, and the process then waits for [`Launched::go`].
    /// A build prepared while its inputs are still being built can thus start
    /// all of that early. Dropping the handle instead ends the sandbox.
    pub fn launch(&self, prepared: &Prepared) -> Result<Launched, Error> {
        launch(prepared, &self.helpers, &self.running)
    }

    /// Runs the prepared sandbox and returns how it ended; the builder's combined
    /// stdout/stderr is streamed into `log`. The chroot is left in place for the
    /// caller to collect outputs and then [`crate::cleanup`] (or recycle).
    pub fn run(&self, prepared: &Prepared, log: &mut dyn Write) -> Result<Outcome, Error> {
        self.launch(prepared)?.go(prepared, log)
    }

    /// Takes the finished chroot now at `dir` (moved there by the caller after
    /// collecting the outputs) for later builds with the same `skeleton` (see
    /// [`Prepared::skeleton`]), emptying what a build may have changed; deletes
    /// it instead if it cannot be recycled.
    pub fn recycle(&self, skeleton: Option<&Skeleton>, dir: &Path) -> Result<(), Error> {
        self.skeletons.recycle(skeleton, dir)
    }

    /// Cancels every sandbox launched through this handle and not yet reaped, as
    /// if each one's [`crate::KillHandle`] were fired. For Ctrl-C.
    pub fn cancel_all(&self) {
        self.running.cancel_all();
    }

    /// A handle that does [`Sandboxes::cancel_all`] from anywhere (a signal
    /// handling thread, say) without keeping the sandboxes alive.
    pub fn canceller(&self) -> CancelAll {
        CancelAll(Arc::clone(&self.running))
    }
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        // Builders first, so that none is still writing into a chroot; then the
        // helpers (their fields drop next), which kill whatever they started
        // that is still alive; the skeletons last.
        self.running.cancel_all();
    }
}
