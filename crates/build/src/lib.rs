//! kiln-build: layer 5, realising one derivation. It prepares what Nix 2.8 prepares
//! (output locks, build user, build directory, environment, `passAsFile` and
//! structured-attribute files), runs the builder through a [`Sandbox`] (the namespace
//! sandbox of `kiln-sandbox`, [`NamespaceSandbox`], whose module is the only one here
//! that calls that crate; or [`InProcessSandbox`], a test double), then checks,
//! canonicalises, scans and registers the outputs (Nix's `LocalDerivationGoal`).
//!
//! State has an owner: what builds share (build users kept for the next build, spare
//! build directories, the background removal thread) is the [`Resources`] of one
//! [`DerivationExecutor`], given back when it is dropped; a build stops (killed,
//! cleaned up, nothing registered) when its [`Stop`] is set, by the scheduler's
//! cancellation or the executor's interrupt.
//!
//! Invariants: outputs are registered only after every check passed, all of a
//! derivation's outputs in one transaction; an output is built only by the holder of
//! all its `.lock` files, after re-checking validity; on any failure nothing is
//! registered and the chroot, the build directory (unless kept) and moved outputs are
//! removed.

mod activity;
mod build_dirs;
mod build_user;
mod cleanup;
mod env;
mod error;
mod executor;
mod export_graph;
mod in_process;
mod inputs;
mod log;
mod namespace;
mod outputs;
mod placeholders;
mod platform;
mod realise;
mod resources;
mod runner;

pub use activity::{ActivityHook, BuilderActivity};
pub use build_user::BuildUser;
pub use cleanup::Cleanup;
pub use env::{builder_environment, EnvContext, Environment};
pub use error::{Error, Result};
pub use executor::{DerivationExecutor, Goal, GoalOutput};
pub use in_process::{BuilderCall, InProcessSandbox};
pub use log::{read_log, BuildLog, LOG_LINES};
pub use namespace::NamespaceSandbox;
pub use platform::{Platform, Requirements};
pub use realise::{
    realise, stage_ahead, BuildSettings, Job, KeptHook, KnownOutputs, Realised, Staged, StartHook,
};
pub use resources::Resources;
pub use runner::{Exit, Sandbox, Started, Stop};
