//! kiln-sandbox: runs one builder process in a Linux sandbox that looks, from
//! the inside, exactly like Nix 2.8's (spec `local-store.md` §4.2–4.7).
//!
//! Layer: below `kiln-build`, beside the store; it knows nothing about
//! derivations, the database or build users. Its caller computes the
//! environment, the input closure and the ids to map, and afterwards moves the
//! outputs out of [`Prepared::chroot_store`] before calling [`cleanup`].
//!
//! Flow: the caller makes one [`Sandboxes`] (it owns the helper processes,
//! the chroot skeletons kept for reuse and the registry of running builders,
//! and releases them all when dropped). [`Sandboxes::prepare`] builds the
//! chroot (`tmp` 01777, `etc` files, `<store>` 01775, inputs, every mount
//! point) and resolves a plan; [`Sandboxes::launch`] hands the plan to a
//! helper process (`<exe> HELPER_ARG`, whose `main` calls [`helper_main`];
//! started on first use and kept) that clones the builder into fresh
//! user/mount/PID/IPC/UTS(/network) namespaces and maps uid 1000/gid 100 to
//! the given host ids; the clone mounts, pivots, installs the seccomp filter
//! and waits; [`Launched::go`] lets it execute the builder as PID 1, streams
//! its pty into the caller's log and enforces the time and size limits, until
//! the builder ends or its [`KillHandle`] (or [`Sandboxes::cancel_all`])
//! cancels it.
//!
//! Rooms: the code is split by the process it runs in. `caller/` runs in the
//! caller (multi-threaded), `helper/` in the helper (single-threaded, checked),
//! `child/` in the sandboxed child up to `execve`; they share only `protocol`
//! (the plan, the request framing, the status pipe), `sys` (raw syscalls),
//! `host` (read-once facts about the machine) and `error`. The helper room
//! calls into the child room (it clones the child and runs its `main`);
//! nothing else crosses rooms.
//!
//! Invariants:
//! * The caller process never forks into namespaces: all privileged setup
//!   happens in the single-threaded helper and its child, so every method of
//!   [`Sandboxes`] is safe from any thread, concurrently.
//! * Killing the builder (PID 1 of its namespace) kills the whole sandbox; no
//!   sandbox process survives [`Launched::go`], cancelled or not. When the
//!   caller drops its [`Sandboxes`] or dies, its helpers kill the sandboxes they
//!   started; one that outlived both keeps running as its host uid until
//!   [`kill_user_processes`] (which the caller runs before lending that uid to
//!   a build) kills it.
//! * Every mount happens inside the sandbox's private mount namespace; the
//!   host's mount table is never changed.
//! * The builder's environment is exactly [`SandboxSpec::env`]; nothing is added.
//! * This is the only crate of the workspace with `unsafe`. The shared, private
//!   `sys` module makes every raw syscall; those of its wrappers whose soundness
//!   depends on the caller are `unsafe fn`s with a `# Safety` section: `clone`
//!   of a single-threaded process, called only through the helper's
//!   `SingleThreaded::clone_process` (the helper has two call sites: a child for
//!   a request, a spare ahead of one), and the descriptor shuffles (`dup3` onto
//!   fixed numbers, `close_range`), called from the helper's startup and the
//!   sandboxed child. The caller's room and the protocol have no `unsafe`.
//!   Every block has a `SAFETY:` comment.
//!
//! Where the mechanics differ from Nix 2.8 (checked by `tests/differential.rs`
//! to leave the builder's view unchanged, unless noted):
//! * setup errors travel on a separate status pipe, not the pty;
//! * mount points are created before the clone, by [`prepare`]; file mount
//!   points are hard links of one empty file (cheaper than new inodes);
//! * `pivot_root(".", ".")` instead of a `real-root` directory;
//! * stdin is the sandbox's `/dev/null`, opened after the pivot (Nix's is the
//!   host's, opened before, in a namespace it keeps alive: same name, same node);
//! * the child waits for its uid map just before `setuid`, not before mounting;
//! * the helper is a long-lived process, so umask and rlimits are those of
//!   the caller when the helper started;
//! * as root, the private network namespace is made ahead of time by the
//!   helper and owned by the initial user namespace instead of the sandbox's
//!   (visible only through `ioctl(NS_GET_USERNS)`); it is reused by a later
//!   sandbox only if every counter, socket table and flow label a builder can
//!   read is as it was when the namespace was new (see `helper/netpool.rs`), so only
//!   its inode number can tell it from a fresh one;
//! * builders start with every signal at its default; Nix passes on whatever
//!   its own parent left ignored.

#![warn(clippy::undocumented_unsafe_blocks)]

// The three rooms, one per process, and what they share.
mod caller;
#[allow(unsafe_code)] // the descriptor shuffles before `execve`, see `sys`
mod child;
#[allow(unsafe_code)] // `SingleThreaded::clone_process`; closing inherited descriptors
mod helper;
mod protocol;

mod error;
mod host;
#[allow(unsafe_code)]
mod sys;

pub use caller::cancel::{CancelAll, KillHandle};
pub use caller::cleanup::cleanup;
pub use caller::fresh_dir::looks_new;
pub use caller::kill_user::kill_user_processes;
pub use caller::launch::{Launched, Lingering, Outcome};
pub use caller::prepare::{prepare, Prepared};
pub use caller::sandboxes::Sandboxes;
pub use caller::skeleton::Skeleton;
pub use caller::spec::{
    nix_group, nix_passwd, InputPath, Network, Personality, SandboxPath, SandboxSpec, SANDBOX_GID,
    SANDBOX_UID,
};
pub use child::builtin::{set_builtin_runner, BuiltinRunner};
pub use error::Error;
pub use helper::helper_main;
pub use host::user_namespaces_enabled;
pub use protocol::HELPER_ARG;
