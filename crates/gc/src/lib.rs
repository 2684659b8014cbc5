//! kiln-gc: layer 4, the garbage collector. It speaks Nix 2.8's protocol from the
//! collector's side — `gc.lock` held exclusively for the whole run, the
//! `gc-socket/socket` server, temp roots read with the staleness test, permanent,
//! indirect and runtime roots — so it is safe against kiln and Nix clients alike.
//!
//! The invariant, kept at every instant (also if the collector is killed):
//! no path is deleted while (a) a live process has registered it as a temp root —
//! before the collector started, or over the socket at any moment before its batch
//! is committed — or (b) a valid path refers to it. See `docs/gc.md` for the protocol
//! and why no interleaving loses a path.

mod collector;
mod config;
mod error;
mod roots;
mod server;
mod temp_roots;

pub use collector::{collect, GcAction, GcHooks, GcOptions, GcResult};
pub use config::KeepSettings;
pub use error::{Error, Result};
pub use roots::{find_roots, Root};
