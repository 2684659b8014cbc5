//! Killing every process of a build user, as Nix does before it lends that
//! user to a build: a builder whose caller died (killed with SIGKILL, say)
//! keeps running as its uid, and would otherwise share it with the next build
//! of that user.
//!
//! `kill(-1, SIGKILL)` reaches every process its caller may signal, which for
//! a caller whose real and effective uids are the build user's means exactly
//! the processes running as that user (in any user namespace: the kernel
//! compares host ids), and never the caller itself. Nix forks a child that
//! takes the uid. Here the calling thread takes it for that one call: Linux
//! credentials belong to a thread, and the raw `setresuid` (unlike libc's,
//! which changes every thread of the process) changes only the caller's.
//! Keeping root as the saved uid lets the thread return. With a hundred
//! processes on the machine this costs about 20 µs, where forking kiln costs
//! a millisecond.

use std::io;

use rustix::process::{DumpableBehavior, Uid};

use crate::error::Error;
use crate::sys;

/// Sends SIGKILL to every process whose real or saved uid is `uid`. Needs
/// root; refuses uid 0.
pub fn kill_user_processes(uid: u32) -> Result<(), Error> {
    let fail = |error: io::Error| Error::KillUser { uid, error };
    if uid == 0 {
        return Err(fail(io::Error::from(io::ErrorKind::InvalidInput)));
    }
    if !rustix::process::geteuid().is_root() || !rustix::process::getuid().is_root() {
        return Err(fail(io::Error::from(io::ErrorKind::PermissionDenied)));
    }
    // A change of effective uid makes the whole process undumpable; put back
    // what it was.
    let dumpable = rustix::process::dumpable_behavior().ok();
    let user = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(user, user, Uid::ROOT)
        .map_err(|e| fail(io::Error::from(e)))?;
    let killed = loop {
        match sys::kill_every_permitted(libc::SIGKILL) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    if rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_err() {
        // A thread left with a build user's credentials would do the rest of
        // the build (chown, registration) as that user: stop instead. Not an
        // error to return (a caller could carry on as that user), and not a
        // panic (one could be caught); a library has no stderr of its own to
        // explain it on. Cannot happen short of a syscall filter: the saved uid
        // is root, which lets the thread become root again.
        std::process::abort();
    }
    if let Some(dumpable) = dumpable {
        if dumpable != DumpableBehavior::NotDumpable {
            let _ = rustix::process::set_dumpable_behavior(dumpable);
        }
    }
    match killed {
        // ESRCH: no process at all besides ours and init; EPERM: none of them
        // runs as `uid`.
        Err(e) if !matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EPERM)) => Err(fail(e)),
        _ => Ok(()),
    }
}
