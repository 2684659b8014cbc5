//! The helper process: started by the caller (see `caller/helpers.rs`) as
//! `<exe> HELPER_ARG` and kept for later builds, it serves one request per
//! build: read the plan, clone the sandboxed child into new namespaces (as a
//! sibling, `CLONE_PARENT`, so the caller waits for the builder as Nix waits
//! for its own), write the child's uid/gid maps, signal it, and wait for the
//! next request.
//!
//! Why a separate executable: the caller is multi-threaded, and a clone of a
//! multi-threaded process may only call async-signal-safe functions. The
//! helper is single-threaded (checked at startup, see [`SingleThreaded`]), so
//! its child can run ordinary code (allocate, format errors) during setup. Why
//! it stays alive: starting a process costs about a millisecond here, a fifth
//! of the whole budget of a trivial build.
//!
//! Two kinds of helper run side by side (see [`HelperKind`]): the one started
//! with [`FILTERED_ARG`] as its second argument installs Nix's syscall filter
//! (and no-new-privileges) on itself first, so that every sandbox it clones
//! inherits it. Compiling and loading the filter once per sandbox cost a BPF
//! JIT run and two TLB flushes on every CPU, per build. It serves only plans
//! that want exactly that filter; the other helper serves the rest.
//!
//! Descriptors: 0 = a Unix stream socket to the caller (requests in, one
//! readiness line out), 1 and 2 = /dev/null. Requests are framed as in
//! `protocol/request.rs`; each request's outcome goes to its status pipe; the
//! socket only carries requests. EOF on it ends the helper, and with it every
//! sandbox it started; its last words on the socket are the pids of the spare
//! children it killed (see [`protocol::request`](crate::protocol::request)),
//! which only the caller, their parent, can reap.
//!
//! This room clones processes in two places (a child for a request, and a
//! spare ahead of one); both go through [`SingleThreaded::clone_process`],
//! the only `unsafe` outside `sys`.

mod idmap;
mod netpool;
mod spares;

use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

use self::netpool::NetworkPool;
use self::spares::Spares;
use crate::error::errno_text;
use crate::protocol::plan::{flags, Plan};
use crate::protocol::request::{receive, Request};
use crate::protocol::{status, HelperKind, FILTERED_ARG, READY_LINE};
use crate::sys;

/// Proof that this process has exactly one thread, which is what makes
/// `clone` without `CLONE_VM` sound and lets the clone run ordinary code.
/// Made only by [`SingleThreaded::check`] in [`helper_main`], which starts no
/// thread afterwards; neither `Send` nor `Sync`, so it cannot reach a thread
/// that was started some other way.
#[derive(Clone, Copy)]
pub(crate) struct SingleThreaded(PhantomData<*const ()>);

impl SingleThreaded {
    /// Counts the threads of this process in `/proc/self/task`.
    fn check() -> Result<SingleThreaded, String> {
        let tasks = std::fs::read_dir("/proc/self/task")
            .map_err(|e| format!("cannot count this process's threads in /proc/self/task: {e}"))?
            .count();
        if tasks == 1 {
            Ok(SingleThreaded(PhantomData))
        } else {
            Err(format!(
                "the sandbox helper must be a single-threaded process, but this one has \
                 {tasks} threads (call helper_main first thing in main)"
            ))
        }
    }

    /// `clone(2)` with `flags`, fork-like: 0 in the child, its pid in the parent.
    pub(crate) fn clone_process(self, flags: libc::c_ulong) -> std::io::Result<libc::pid_t> {
        // SAFETY: `self` proves this process had one thread when the helper
        // started, and the helper starts none (nor does anything it calls), so
        // the clone is a copy of a single-threaded process: no lock can be held
        // by a thread that does not exist in the child.
        unsafe { sys::clone_process(flags) }
    }
}

/// Runs the helper; it never returns. Call this when the process was started
/// with [`crate::HELPER_ARG`] as its first argument, before anything starts a thread:
/// it refuses to run (reports the error to its caller and exits with status 1)
/// when the process has more than one thread.
pub fn helper_main() -> ! {
    let kind = if std::env::args_os().nth(2).as_deref() == Some(std::ffi::OsStr::new(FILTERED_ARG))
    {
        HelperKind::Filtered
    } else {
        HelperKind::Plain
    };
    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    // Supplementary groups cannot be dropped from inside a user namespace;
    // as root, drop them here, once, for every sandbox (Nix does the same).
    let startup = if rustix::process::getuid().is_root() {
        rustix::thread::set_thread_groups(&[])
            .map_err(|e| format!("setgroups failed: {}", errno_text(e.raw_os_error())))
    } else {
        Ok(())
    };
    // Do not keep the caller's working directory busy, nor anything it let
    // leak to us without close-on-exec (a lock file, say: its flock would
    // live as long as this process).
    let _ = rustix::process::chdir(c"/");
    // SAFETY: this function never returns and ends the process with `_exit`, so
    // no owner its caller made of a descriptor above stderr is dropped; and the
    // process has no other thread to use one (checked just below, before the
    // first clone, which is what needs it).
    let _ = unsafe { sys::close_from(3) };
    // Before the first clone: children inherit what it finds.
    let _ = sys::ignored_signals();
    let single = SingleThreaded::check();
    let startup = startup.and_then(|()| match kind {
        HelperKind::Filtered => crate::child::seccomp::install(false),
        HelperKind::Plain => Ok(()),
    });
    let (startup, single) = match (startup, single) {
        (Ok(()), Ok(single)) => (Ok(()), Some(single)),
        (Err(e), _) | (Ok(()), Err(e)) => (Err(e), None),
    };
    let hello = match &startup {
        Ok(()) => READY_LINE.to_vec(),
        Err(message) => format!("error: {message}\n").into_bytes(),
    };
    let said = rustix::io::write(sock, &hello) == Ok(hello.len());
    let Some(single) = single.filter(|_| said) else {
        sys::exit_now(1)
    };
    let mut nets = NetworkPool::new();
    let mut spares = Spares::new();
    if kind == HelperKind::Filtered {
        // Plans ask for a user namespace exactly when the host allows them (see
        // `prepare`): the first spare need not wait for the first request.
        spares.user_namespace = Some(crate::host::user_namespaces_enabled());
    }
    let mut started = Started(Vec::new());
    loop {
        // Prepare namespaces and the next child while idle, not while a build
        // (of a parallel job) is already waiting.
        if !request_pending(sock) {
            nets.tend();
            spares.replenish(single, &mut nets);
            started.forget_exited();
        }
        match receive(sock) {
            Ok(Some(request)) => {
                if let Some(pid) = serve(single, request, kind, &mut nets, &mut spares) {
                    started.add(pid);
                }
            }
            Ok(None) => {
                started.kill_all();
                // The spare is the caller's child (CLONE_PARENT): it reaps it.
                let reap: Vec<u8> = spares
                    .discard()
                    .into_iter()
                    .flat_map(|pid| pid.to_le_bytes())
                    .collect();
                let _ = rustix::io::write(sock, &reap);
                sys::exit_now(0)
            }
            Err(_) => {
                started.kill_all();
                sys::exit_now(1)
            }
        }
    }
}

/// The sandboxes this helper started that may still run. EOF on the socket
/// means the caller is gone, and a sandbox nobody will reap would run on as
/// its build user (a builder that ignores SIGHUP outlives its pty), so they
/// die with the caller; the caller's next build user claim would kill them
/// anyway, but only if it claims that uid.
struct Started(Vec<OwnedFd>);

impl Started {
    fn add(&mut self, pid: libc::pid_t) {
        // The helper is not the builder's parent (CLONE_PARENT); a pidfd still
        // reaches it, whoever reaps it.
        let pidfd = Pid::from_raw(pid)
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
        self.0.extend(pidfd);
    }

    fn forget_exited(&mut self) {
        self.0.retain(|pidfd| !netpool::has_exited(pidfd));
    }

    fn kill_all(&self) {
        // Killing a sandbox's PID 1 kills its whole PID namespace.
        for pidfd in &self.0 {
            let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
        }
    }
}

/// Serves one request; the pid of the sandbox it started, if any.
fn serve(
    single: SingleThreaded,
    request: Request,
    kind: HelperKind,
    nets: &mut NetworkPool,
    spares: &mut Spares,
) -> Option<libc::pid_t> {
    let Request {
        plan,
        pty,
        status,
        go,
    } = request;
    let started = start(single, &plan, kind, [&pty, &status, &go], nets, spares);
    if let Err(message) = &started {
        status::send(
            status.as_raw_fd(),
            status::TAG_HELPER_ERROR,
            message.as_bytes(),
        );
    }
    // Dropping our copies of the pty and the status pipe only now, after any
    // error was sent, lets the caller see EOF once the child has executed the
    // builder (or died).
    started.ok()
}

/// A sandboxed child that exists and waits for its uid map and sync byte.
pub(crate) struct Cloned {
    pid: libc::pid_t,
    /// Where the sync byte goes: a pipe, or a spare's socket.
    sync: OwnedFd,
    user_namespace: bool,
}

fn start(
    single: SingleThreaded,
    plan_bytes: &[u8],
    kind: HelperKind,
    [pty, status, go]: [&OwnedFd; 3],
    nets: &mut NetworkPool,
    spares: &mut Spares,
) -> Result<libc::pid_t, String> {
    let plan = Plan::decode(plan_bytes)?;
    if HelperKind::of_plan(&plan) != kind {
        return Err(format!(
            "internal error: a {:?} sandbox helper was sent a plan for a {:?} one",
            kind,
            HelperKind::of_plan(&plan)
        ));
    }
    let status_fd = status.as_raw_fd();
    spares.learn(&plan);
    let launched = match spares.take_for(&plan) {
        Some(spare) => spare.hand_over(plan_bytes, [pty, status, go]),
        None => None,
    };
    let launched = match launched {
        Some(launched) => launched,
        None => clone_for(single, &plan, kind, [pty, status, go], nets)?,
    };
    let Cloned {
        pid,
        sync,
        user_namespace,
    } = launched;
    status::send(status_fd, status::TAG_PID, &pid.to_le_bytes());

    let finish = || -> Result<(), String> {
        if user_namespace {
            idmap::write_maps(
                pid,
                plan.sandbox_uid,
                plan.host_uid,
                plan.sandbox_gid,
                plan.host_gid,
            )?;
        } else {
            if !rustix::process::getuid().is_root() {
                return Err(
                    "cannot perform a sandboxed build because user namespaces are not enabled; \
                            check /proc/sys/user/max_user_namespaces"
                        .into(),
                );
            }
            // /etc/passwd was written for the namespace ids; Nix writes it
            // after the clone with the ids actually in use.
            if let Some((path, contents)) = &plan.passwd_fallback {
                let path = std::path::Path::new(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes()),
                );
                std::fs::write(path, contents).map_err(|e| {
                    format!(
                        "writing '{}': {}",
                        path.display(),
                        errno_text(e.raw_os_error().unwrap_or(0))
                    )
                })?;
            }
        }
        rustix::io::write(&sync, b"1").map_err(|e| {
            format!(
                "signalling the sandboxed process: {}",
                errno_text(e.raw_os_error())
            )
        })?;
        Ok(())
    };
    let result = finish();
    if result.is_err() {
        // Don't leave a half-set-up sandbox waiting for the sync byte.
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    result.map(|()| pid)
}

/// The namespaces every sandbox gets, whatever its plan.
pub(crate) const BASE_CLONE_FLAGS: libc::c_ulong = (libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_PARENT
    | libc::SIGCHLD) as libc::c_ulong;

/// Clones a child for `plan` now (no spare fits).
fn clone_for(
    single: SingleThreaded,
    plan: &Plan,
    kind: HelperKind,
    [pty, status, go]: [&OwnedFd; 3],
    nets: &mut NetworkPool,
) -> Result<Cloned, String> {
    let (sync_read, sync_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| format!("creating a pipe: {}", errno_text(e.raw_os_error())))?;
    let mut clone_flags = BASE_CLONE_FLAGS;
    let entered = if plan.has(flags::PRIVATE_NETWORK) {
        nets.enter()
    } else {
        None
    };
    let network_ready = entered.is_some();
    if plan.has(flags::PRIVATE_NETWORK) && !network_ready {
        clone_flags |= libc::CLONE_NEWNET as libc::c_ulong;
    }
    let mut user_namespace = plan.has(flags::USER_NAMESPACE);
    if user_namespace {
        clone_flags |= libc::CLONE_NEWUSER as libc::c_ulong;
    }

    let attempt = |flags| single.clone_process(flags);
    let mut cloned = attempt(clone_flags);
    if user_namespace
        && matches!(
            cloned.as_ref().map_err(|e| e.raw_os_error()),
            Err(Some(libc::EPERM | libc::EINVAL))
        )
    {
        // Some kernels refuse user namespaces (to unprivileged callers, or
        // entirely); Nix retries without one.
        user_namespace = false;
        clone_flags &= !(libc::CLONE_NEWUSER as libc::c_ulong);
        cloned = attempt(clone_flags);
    }
    let pid = match cloned {
        Ok(0) => {
            // In the child: without its own copy of the write end, the sync
            // read sees EOF if the helper dies before signalling.
            drop(sync_write);
            crate::child::main(
                plan,
                sync_read,
                [pty.as_raw_fd(), status.as_raw_fd(), go.as_raw_fd()],
                user_namespace,
                network_ready,
                kind == HelperKind::Filtered,
            )
        }
        Ok(pid) => pid,
        Err(e) => {
            return Err(format!(
                "cloning builder process: {}",
                errno_text(e.raw_os_error().unwrap_or(0))
            ))
        }
    };
    if let Some(entered) = entered {
        entered.lend_to(pid);
    }
    Ok(Cloned {
        pid,
        sync: sync_write,
        user_namespace,
    })
}

fn request_pending(sock: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&sock, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
}
