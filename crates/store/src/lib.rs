//! kiln-store: layer 3, the local store. On disk it is a Nix 2.8 store: the same
//! `/nix/store` layout, SQLite database (schema 10, WAL, foreign keys), `flock(2)`
//! locks (`db/big-lock`, `<path>.lock` with the deletion token, `gc.lock`), temp roots
//! in `temproots/<pid>` and the GC socket, so kiln and Nix can share one store.
//!
//! Invariants kept at every instant, also across a crash:
//! - a path is valid iff its `ValidPaths` row exists, and it only gets that row after
//!   its contents are complete, canonical (mode 0444/0555, mtime 1) and synced;
//! - every reference of a valid path is valid (rows are written in one transaction
//!   with their references);
//! - a process registers a temp root for a path before it checks the path's validity
//!   or creates anything named after its hash part, so a collector never deletes what
//!   it is about to use.

mod add;
mod background;
mod canonical;
mod db;
mod error;
pub mod gc_socket;
mod layout;
mod local;
mod lock;
mod path_info;
mod roots;
mod symlink;
mod temp_roots;
pub mod temp_roots_file;
mod verify;

pub use background::{RegistrationFailure, UnclaimedFailureHook};
pub use canonical::{canonical_mode, canonicalise_entry, remove_tree, CANONICAL_MTIME_SECS};
pub use db::GraphRow;
pub use error::{Error, Result};
pub use layout::Layout;
pub use local::LocalStore;
pub use lock::{lock_all, PathLock};
pub use path_info::PathInfo;
pub use verify::{VerifyOptions, VerifyReport};
