//! The caller's room: everything that runs in the (multi-threaded) process
//! that asks for builds. It prepares chroots, starts and talks to the helper
//! processes, streams a running builder's log, enforces its limits, cancels
//! it on request, and cleans up. Nothing here forks into namespaces, and
//! nothing here is `unsafe` except through `sys`.

pub(crate) mod cancel;
pub(crate) mod cleanup;
pub(crate) mod fresh_dir;
pub(crate) mod helpers;
pub(crate) mod kill_user;
pub(crate) mod launch;
pub(crate) mod prepare;
mod pty;
mod pump;
pub(crate) mod sandboxes;
pub(crate) mod skeleton;
pub(crate) mod spec;
