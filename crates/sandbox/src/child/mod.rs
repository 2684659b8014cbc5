//! The sandboxed child, from the clone to `execve` of the builder.
//!
//! Runs in the new namespaces as the single thread of a fresh process, so it
//! may do anything a single-threaded program may. Every failure is reported
//! on the status pipe with the step that failed, then the child `_exit`s.
//!
//! The order follows Nix 2.8's `runChild`, except that the wait for the uid
//! map comes after the mounts instead of before them: mounting needs only the
//! capabilities the new user namespace already grants, so the helper writes
//! the maps while the child mounts, and the child waits only before `setuid`.
//! The builder cannot observe the difference.

pub(crate) mod builtin;
mod mounts;
pub(crate) mod net;
pub(crate) mod seccomp;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{Gid, Uid};

use crate::error::errno_text;
use crate::protocol::plan::{flags, Plan};
use crate::protocol::status::{self, STATUS_FD};
use crate::sys;

const PER_LINUX32: libc::c_ulong = 0x0008;
const UNAME26: libc::c_ulong = 0x0020000;
const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;

/// Entry point of a child cloned for one request. Never returns.
pub(crate) fn main(
    plan: &Plan,
    sync: OwnedFd,
    fds: [RawFd; 3],
    user_namespace: bool,
    network_ready: bool,
    filter_inherited: bool,
) -> ! {
    let early = Early {
        done: false,
        network_ready,
        filter_inherited,
    };
    run(plan, sync, fds, user_namespace, early)
}

/// Entry point of a spare child (see `helper/spares.rs`), cloned before its request exists: it
/// does what is the same for every sandbox, then waits on `ctl` (the helper's socket)
/// for a request, which the helper only sends if the plan asks for exactly that
/// (private network, syscall filter, no new privileges); later the helper writes the
/// sync byte on the same socket. Never returns.
pub(crate) fn spare_main(ctl: OwnedFd, user_namespace: bool, network_ready: bool) -> ! {
    // SAFETY: a fresh spare clone, which ends in `_exit` or `execve` and never
    // returns into the helper's code that owns the other descriptors.
    let Ok(ctl) = (unsafe { sys::isolate_spare(ctl) }) else {
        sys::exit_now(1)
    };
    // Spares serve only plans with the default filter, which only the filtering
    // helper gets: the filter is inherited from it.
    if set_names().is_err() {
        // The helper sees the spare gone when it forwards a request, and clones anew.
        sys::exit_now(1);
    }
    let request = match crate::protocol::request::receive(ctl.as_fd()) {
        Ok(Some(request)) => request,
        _ => sys::exit_now(0),
    };
    let plan = match Plan::decode(&request.plan) {
        Ok(plan) => plan,
        Err(message) => {
            status::send(
                request.status.as_raw_fd(),
                status::TAG_CHILD_ERROR,
                message.as_bytes(),
            );
            sys::exit_now(1)
        }
    };
    let early = Early {
        done: true,
        network_ready,
        filter_inherited: true,
    };
    run(
        &plan,
        ctl,
        [
            request.pty.as_raw_fd(),
            request.status.as_raw_fd(),
            request.go.as_raw_fd(),
        ],
        user_namespace,
        early,
    )
}

/// Which of the plan-independent steps already happened.
struct Early {
    /// Host and domain names set (a spare did it while waiting).
    done: bool,
    /// The network namespace's `lo` is up already.
    network_ready: bool,
    /// The default syscall filter, inherited from the filtering helper.
    filter_inherited: bool,
}

fn run(
    plan: &Plan,
    sync: OwnedFd,
    [pty, status, go]: [RawFd; 3],
    user_namespace: bool,
    early: Early,
) -> ! {
    // Until the status pipe is at its fixed number, errors go to wherever it is.
    let mut status_fd = status;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Out of the way of the fixed numbers first.
        // SAFETY: `go` is this child's to take: its owner is the helper's
        // request, which the child never drops (it never returns into the helper).
        let go = unsafe { sys::dup_above(go, STATUS_FD + 7) }
            .map_err(|e| sys_fail("placing the inputs pipe", e))?;
        place_fds(pty, status)?;
        status_fd = STATUS_FD;
        setup(plan, sync, go, user_namespace, &early)
    }));
    let message = match result {
        Ok(Err(message)) => message,
        Ok(Ok(never)) => match never {},
        Err(_) => "panic while setting up the sandbox".to_string(),
    };
    status::send(status_fd, status::TAG_CHILD_ERROR, message.as_bytes());
    sys::exit_now(1)
}

/// stdout = stderr = the pty (Nix's commonChildInit), the status pipe at its
/// fixed close-on-exec number. The received descriptors themselves are
/// close-on-exec and are closed with all other strays before `execve`.
fn place_fds(pty: RawFd, status: RawFd) -> Result<(), String> {
    // The pty first: the status descriptor may currently sit where the pty
    // goes (never the other way round: 1 and 2 are taken when fds arrive).
    // SAFETY: 1 and 2 have no Rust owner; STATUS_FD may be one of
    // the helper's descriptors, whose owners the child never uses or drops.
    unsafe { sys::dup_onto(pty, 2, false) }
        .map_err(|e| sys_fail("cannot pipe standard error into log file", e))?;
    // SAFETY: as above.
    unsafe { sys::dup_onto(2, 1, false) }
        .map_err(|e| sys_fail("cannot dup stderr into stdout", e))?;
    // SAFETY: as above.
    unsafe { sys::dup_onto(status, STATUS_FD, true) }
        .map_err(|e| sys_fail("placing the status pipe", e))
}

/// The store inputs' binds from the go pipe; `None` if the caller abandoned
/// the build (EOF before any byte).
fn receive_inputs(go: BorrowedFd<'_>) -> Result<Option<Vec<crate::protocol::plan::Bind>>, String> {
    let mut header = [0u8; 4];
    if !read_full(go, &mut header)? {
        return Ok(None);
    }
    let mut payload = vec![0u8; u32::from_le_bytes(header) as usize];
    if !read_full(go, &mut payload)? {
        return Err("the sandbox inputs were cut short".into());
    }
    crate::protocol::plan::decode_binds(&payload).map(Some)
}

/// Fills `buf`; false at EOF before the first byte.
fn read_full(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> Result<bool, String> {
    let mut first = true;
    while !buf.is_empty() {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) if first => return Ok(false),
            Ok(0) => return Err("the sandbox inputs were cut short".into()),
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(sys_fail("reading the sandbox inputs", e)),
        }
        first = false;
    }
    Ok(true)
}

fn sys_fail(what: &str, e: impl Into<std::io::Error>) -> String {
    let e: std::io::Error = e.into();
    format!("{what}: {}", errno_text(e.raw_os_error().unwrap_or(0)))
}

enum Never {}

/// Nix opens /dev/null for stdin before any mounts, in the first mount
/// namespace, which Nix keeps alive (for recursive Nix) while the builder
/// runs, so `readlink /proc/self/fd/0` says `/dev/null`. Here that namespace
/// is gone by now and the same open would read `/null` (a detached mount);
/// opening the sandbox's own /dev/null (a bind of the same host node) gives
/// the builder the same file under the same name.
fn open_stdin() -> Result<(), String> {
    let null = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| sys_fail("cannot open '/dev/null'", e))?;
    // SAFETY: stdin has no Rust owner.
    unsafe { sys::dup_onto(null.as_raw_fd(), 0, false) }
        .map_err(|e| sys_fail("cannot dup null device into stdin", e))
}

/// The `count` detached mounts that follow the inputs message after an early
/// pivot, in its order.
fn receive_trees(go: BorrowedFd<'_>, count: usize) -> Result<Vec<OwnedFd>, String> {
    let mut trees = Vec::with_capacity(count);
    while trees.len() < count {
        let mut byte = [0u8];
        let mut space = [MaybeUninit::uninit();
            rustix::cmsg_space!(ScmRights(crate::protocol::TREES_PER_MESSAGE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match rustix::net::recvmsg(
            go,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(sys_fail("receiving the sandbox inputs", e)),
            Ok(msg) => msg,
        };
        if received.bytes == 0 {
            return Err("the sandbox inputs were cut short".into());
        }
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                trees.extend(fds);
            }
        }
    }
    if trees.len() != count {
        return Err("the sandbox inputs came with the wrong number of mounts".into());
    }
    Ok(trees)
}

fn set_names() -> Result<(), String> {
    // Nix passes sizeof() of the literals, i.e. including the NUL.
    rustix::system::sethostname(b"localhost\0").map_err(|e| sys_fail("cannot set host name", e))?;
    rustix::system::setdomainname(b"(none)\0").map_err(|e| sys_fail("cannot set domain name", e))
}

fn setup(
    plan: &Plan,
    sync: OwnedFd,
    go: OwnedFd,
    user_namespace: bool,
    early: &Early,
) -> Result<Never, String> {
    // The rest of Nix's commonChildInit: own session (no controlling
    // terminal, no terminal signals); stdin follows after the pivot.
    rustix::process::setsid().map_err(|e| sys_fail("creating a new session", e))?;

    if !early.done {
        if plan.has(flags::FILTER_SYSCALLS) && !early.filter_inherited {
            seccomp::install(plan.has(flags::ALLOW_NEW_PRIVILEGES))?;
        }
        set_names()?;
    }
    // A namespace prepared by the helper already has `lo` up.
    if plan.has(flags::PRIVATE_NETWORK) && !early.network_ready {
        net::loopback_up()?;
    }

    mounts::setup(plan)?;
    // The store's inputs may not exist yet (the build was prepared while they
    // were being built): wait for the caller to send what is still missing.
    if plan.has(flags::EARLY_PIVOT) {
        mounts::pivot(plan)?;
        open_stdin()?;
        let Some(inputs) = receive_inputs(go.as_fd())? else {
            sys::exit_now(0)
        };
        let trees = receive_trees(go.as_fd(), inputs.len())?;
        // Before `close_from` below, which would leave this owner a stale number.
        drop(go);
        for (input, tree) in inputs.iter().zip(&trees) {
            sys::attach_tree(tree, &input.target).map_err(|e| {
                sys_fail(
                    &format!("attaching input '{}'", input.target.to_string_lossy()),
                    e,
                )
            })?;
        }
    } else {
        // Binds from host paths, all below the store mount, so the builder's
        // mount table ends up in the same tree order as if they had been
        // mounted with the rest.
        let Some(inputs) = receive_inputs(go.as_fd())? else {
            sys::exit_now(0)
        };
        drop(go);
        mounts::bind_all(&inputs)?;
        mounts::pivot(plan)?;
        open_stdin()?;
    }

    // The helper writes a byte once the uid/gid maps are in place (EOF means
    // it died without doing so).
    let mut byte = [0u8];
    match rustix::io::read(&sync, &mut byte) {
        Ok(1) if byte[0] == b'1' => {}
        _ => return Err("user namespace initialisation failed".into()),
    }
    drop(sync);
    let (uid, gid) = if user_namespace {
        (plan.sandbox_uid, plan.sandbox_gid)
    } else {
        (plan.host_uid, plan.host_gid)
    };
    // Per-thread id syscalls are exactly right: this process has one thread.
    rustix::thread::set_thread_gid(Gid::from_raw(gid)).map_err(|e| sys_fail("setgid failed", e))?;
    rustix::thread::set_thread_uid(Uid::from_raw(uid)).map_err(|e| sys_fail("setuid failed", e))?;

    rustix::process::chdir(&*plan.build_dir_inside).map_err(|e| {
        sys_fail(
            &format!(
                "changing into '{}'",
                plan.build_dir_inside.to_string_lossy()
            ),
            e,
        )
    })?;
    // Everything but stdio and the close-on-exec status pipe.
    // SAFETY: this child's own owners (`sync`, `go`, the input trees) are gone by
    // now; the rest belong to the helper's code, which the child never returns to.
    unsafe { sys::close_from(STATUS_FD + 1) }
        .map_err(|e| sys_fail("closing file descriptors", e))?;

    if plan.has(flags::LINUX32) {
        sys::personality(PER_LINUX32).map_err(|e| sys_fail("cannot set 32-bit personality", e))?;
    }
    if plan.has(flags::UNAME26) {
        if let Ok(cur) = sys::personality(0xffff_ffff) {
            let _ = sys::personality(cur as libc::c_ulong | UNAME26);
        }
    }
    // Nix ignores failures of both of these.
    if let Ok(cur) = sys::personality(0xffff_ffff) {
        let _ = sys::personality(cur as libc::c_ulong | ADDR_NO_RANDOMIZE);
    }
    // Soft limit 0 and hard limit infinity, exactly Nix's call: raising the
    // hard limit fails (ignored) unless it already is infinite.
    let _ = rustix::process::setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: None,
        },
    );

    sys::reset_signals();
    status::send(STATUS_FD, status::TAG_READY, &[]);
    if let Some((runner, name)) = builtin::for_builder(plan.builder.to_bytes()) {
        run_builtin(runner, name, plan)
    }
    let err = sys::execve(&plan.builder, &plan.argv, &plan.envp);
    Err(format!(
        "executing '{}': {}",
        plan.builder.to_string_lossy(),
        errno_text(err.raw_os_error().unwrap_or(0))
    ))
}

/// Runs a builtin builder in this process, which from here on is the builder: its
/// output goes to the log and its exit status is the build's.
fn run_builtin(runner: builtin::BuiltinRunner, name: &[u8], plan: &Plan) -> ! {
    // There is no `execve` to close the status pipe, and the caller reads it to EOF
    // before it pumps the log.
    // SAFETY: as before `execve` (see `setup`): nothing above stderr has an
    // owner this process will use or drop.
    let _ = unsafe { sys::close_from(STATUS_FD) };
    let env = builtin::split_env(plan.envp.iter().map(|e| e.to_bytes()));
    let result = std::panic::catch_unwind(|| runner(name, &env));
    let message = match result {
        Ok(Ok(())) => sys::exit_now(0),
        Ok(Err(message)) => message,
        Err(_) => "the builtin builder panicked".to_string(),
    };
    let mut line = message.into_bytes();
    line.push(b'\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &line);
    sys::exit_now(1)
}
