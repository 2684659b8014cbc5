//! The helper process ("zygote"): started once per caller process by
//! [`crate::run`] as `<exe> HELPER_ARG`, it serves one request per build:
//! read the plan, clone the sandboxed child into new namespaces (as a sibling,
//! `CLONE_PARENT`, so the caller waits for the builder as Nix waits for its
//! own), write the child's uid/gid maps, signal it, and wait for the next
//! request.
//!
//! Why a separate executable: the caller is multi-threaded, and a clone of a
//! multi-threaded process may only call async-signal-safe functions. The
//! helper is single-threaded, so its child can run ordinary code (allocate,
//! format errors) during setup. Why it stays alive: starting a process costs
//! about a millisecond here, a fifth of the whole budget of a trivial build.
//!
//! Two kinds of helper run side by side (see [`HelperKind`]): the one started
//! with [`FILTERED_ARG`] as its second argument installs Nix's syscall filter
//! (and no-new-privileges) on itself first, so that every sandbox it clones
//! inherits it. Compiling and loading the filter once per sandbox cost a BPF
//! JIT run and two TLB flushes on every CPU, per build. It serves only plans
//! that want exactly that filter; the other helper serves the rest.
//!
//! Descriptors: 0 = a Unix stream socket to the caller (requests in, one
//! readiness line out), 1 and 2 = /dev/null. A request is `u32 LE length |
//! plan` with two descriptors attached (`SCM_RIGHTS`): the pty slave and the
//! write end of that build's status pipe. Each request's outcome goes to its
//! status pipe; the socket only carries requests. EOF on it ends the helper.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::error::errno_text;
use crate::idmap;
use crate::netpool::NetworkPool;
use crate::plan::{flags, Plan};
use crate::status;
use crate::sys;

/// The argument that makes an executable run [`helper_main`].
pub const HELPER_ARG: &str = "__kiln-sandbox-helper";

/// The second argument of the helper that filters its own syscalls.
pub(crate) const FILTERED_ARG: &str = "filtered";

/// Which helper serves a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum HelperKind {
    /// Clones unfiltered children, which install whatever filter their plan asks for.
    Plain,
    /// Filters its own syscalls, without new privileges; its children inherit that.
    Filtered,
}

impl HelperKind {
    pub(crate) fn for_plan(filter_syscalls: bool, allow_new_privileges: bool) -> HelperKind {
        if filter_syscalls && !allow_new_privileges {
            HelperKind::Filtered
        } else {
            HelperKind::Plain
        }
    }

    fn of_plan(plan: &Plan) -> HelperKind {
        HelperKind::for_plan(
            plan.has(flags::FILTER_SYSCALLS),
            plan.has(flags::ALLOW_NEW_PRIVILEGES),
        )
    }
}

/// The line a helper writes on its socket once it is ready for requests.
pub(crate) const READY_LINE: &[u8] = b"kiln-sandbox-helper 1 ready\n";

/// Runs the helper. Call this, and nothing else, when the process was started
/// with [`HELPER_ARG`] as its first argument; it never returns.
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
    let _ = sys::close_from(3);
    // Before the first clone: children inherit what it finds.
    let _ = sys::ignored_signals();
    let startup = startup.and_then(|()| match kind {
        HelperKind::Filtered => crate::seccomp::install(false),
        HelperKind::Plain => Ok(()),
    });
    let hello = match &startup {
        Ok(()) => READY_LINE.to_vec(),
        Err(message) => format!("error: {message}\n").into_bytes(),
    };
    if startup.is_err() || rustix::io::write(sock, &hello) != Ok(hello.len()) {
        sys::exit_now(1);
    }
    let mut nets = NetworkPool::new();
    let mut spares = Spares::new();
    if kind == HelperKind::Filtered {
        // Plans ask for a user namespace exactly when the host allows them (see
        // `prepare`): the first spare need not wait for the first request.
        spares.user_namespace = Some(crate::prepare::user_namespaces_enabled());
    }
    let mut started = Started(Vec::new());
    loop {
        // Prepare namespaces and the next child while idle, not while a build
        // (of a parallel job) is already waiting.
        if !request_pending(sock) {
            nets.tend();
            spares.replenish(&mut nets);
            started.forget_exited();
        }
        match receive(sock) {
            Ok(Some(request)) => {
                if let Some(pid) = serve(request, kind, &mut nets, &mut spares) {
                    started.add(pid);
                }
            }
            Ok(None) => {
                started.kill_all();
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
        self.0.retain(|pidfd| !crate::netpool::has_exited(pidfd));
    }

    fn kill_all(&self) {
        // Killing a sandbox's PID 1 kills its whole PID namespace.
        for pidfd in &self.0 {
            let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
        }
    }
}

pub(crate) struct Request {
    pub(crate) plan: Vec<u8>,
    pub(crate) pty: OwnedFd,
    pub(crate) status: OwnedFd,
    /// Read end of the pipe on which the caller sends the store inputs' binds
    /// when the sandbox may go on (EOF: abandon it).
    pub(crate) go: OwnedFd,
}

/// Serves one request; the pid of the sandbox it started, if any.
fn serve(
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
    let started = start(&plan, kind, &pty, &status, &go, nets, spares);
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
struct Launched {
    pid: libc::pid_t,
    /// Where the sync byte goes: a pipe, or a spare's socket.
    sync: OwnedFd,
    user_namespace: bool,
}

fn start(
    plan_bytes: &[u8],
    kind: HelperKind,
    pty: &OwnedFd,
    status: &OwnedFd,
    go: &OwnedFd,
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
        None => clone_for(&plan, kind, [pty, status, go], nets)?,
    };
    let Launched {
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
const BASE_CLONE_FLAGS: libc::c_ulong = (libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_PARENT
    | libc::SIGCHLD) as libc::c_ulong;

/// Clones a child for `plan` now (no spare fits).
fn clone_for(
    plan: &Plan,
    kind: HelperKind,
    [pty, status, go]: [&OwnedFd; 3],
    nets: &mut NetworkPool,
) -> Result<Launched, String> {
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

    // SAFETY: the helper is single-threaded: it is a freshly executed process
    // whose helper_main starts no threads.
    let attempt = |flags| unsafe { sys::clone_process(flags) };
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
    Ok(Launched {
        pid,
        sync: sync_write,
        user_namespace,
    })
}

/// A child cloned ahead of time, in the namespaces of a typical sandbox (see
/// `child::spare_main`): cloning a process into five new namespaces is the
/// most expensive step of starting a sandbox, and this takes it, with the
/// syscall filter and the host name, off the path between a build's request
/// and its builder.
///
/// A spare serves only a plan that wants exactly its setup: a private network,
/// the default syscall filter without new privileges, and a user namespace if
/// and only if the spare has one. Anything else is cloned on request as before.
pub(crate) struct Spares {
    spare: Option<Spare>,
    /// Whether requests ask for a user namespace; spares are made only once a
    /// request has said.
    user_namespace: Option<bool>,
    /// Spares failed to start; stop trying.
    disabled: bool,
}

struct Spare {
    pid: libc::pid_t,
    ctl: OwnedFd,
    user_namespace: bool,
}

impl Spares {
    pub(crate) fn new() -> Spares {
        Spares {
            spare: None,
            user_namespace: None,
            disabled: false,
        }
    }

    fn fits(plan: &Plan) -> bool {
        plan.has(flags::PRIVATE_NETWORK)
            && plan.has(flags::FILTER_SYSCALLS)
            && !plan.has(flags::ALLOW_NEW_PRIVILEGES)
    }

    fn learn(&mut self, plan: &Plan) {
        if Self::fits(plan) {
            self.user_namespace = Some(plan.has(flags::USER_NAMESPACE));
        }
    }

    fn take_for(&mut self, plan: &Plan) -> Option<Spare> {
        let fits = Self::fits(plan)
            && self
                .spare
                .as_ref()
                .is_some_and(|s| s.user_namespace == plan.has(flags::USER_NAMESPACE));
        if fits {
            self.spare.take()
        } else {
            None
        }
    }

    /// Makes a spare if there is none and requests have shown what it needs.
    pub(crate) fn replenish(&mut self, nets: &mut NetworkPool) {
        if self.disabled || self.spare.is_some() {
            return;
        }
        let Some(user_namespace) = self.user_namespace else {
            return;
        };
        match make_spare(user_namespace, nets) {
            Some(spare) => self.spare = Some(spare),
            None => self.disabled = true,
        }
    }
}

fn make_spare(user_namespace: bool, nets: &mut NetworkPool) -> Option<Spare> {
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .ok()?;
    let mut clone_flags = BASE_CLONE_FLAGS;
    let entered = nets.enter();
    let network_ready = entered.is_some();
    if !network_ready {
        clone_flags |= libc::CLONE_NEWNET as libc::c_ulong;
    }
    if user_namespace {
        clone_flags |= libc::CLONE_NEWUSER as libc::c_ulong;
    }
    // SAFETY: the helper is single-threaded (see clone_for).
    let pid = match unsafe { sys::clone_process(clone_flags) } {
        Ok(0) => {
            drop(ours);
            crate::child::spare_main(theirs, user_namespace, network_ready)
        }
        Ok(pid) => pid,
        Err(_) => return None,
    };
    if let Some(entered) = entered {
        entered.lend_to(pid);
    }
    Some(Spare {
        pid,
        ctl: ours,
        user_namespace,
    })
}

impl Spare {
    /// Gives the request to the spare; `None` (and the spare killed) if it is
    /// gone, so that the caller clones a child instead.
    fn hand_over(self, plan_bytes: &[u8], fds: [&OwnedFd; 3]) -> Option<Launched> {
        let frame = crate::zygote::frame(plan_bytes).ok()?;
        match crate::zygote::send(self.ctl.as_fd(), &frame, fds.map(|fd| fd.as_fd())) {
            Ok(()) => Some(Launched {
                pid: self.pid,
                sync: self.ctl,
                user_namespace: self.user_namespace,
            }),
            Err(_) => {
                if let Some(pid) = Pid::from_raw(self.pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
                None
            }
        }
    }
}

fn request_pending(sock: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&sock, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
}

/// Reads one request; `None` at EOF (the caller is gone).
pub(crate) fn receive(sock: BorrowedFd<'_>) -> Result<Option<Request>, String> {
    let mut header = [0u8; 4];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut header)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other.map_err(|e| format!("receiving a request: {e}"))?,
        }
    };
    if msg.bytes == 0 {
        return Ok(None);
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    read_exact(sock, &mut header[msg.bytes..])?;
    let mut plan = vec![0u8; u32::from_le_bytes(header) as usize];
    read_exact(sock, &mut plan)?;
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next(), fds.next(), fds.next()) {
        (Some(pty), Some(status), Some(go), None) => Ok(Some(Request {
            plan,
            pty,
            status,
            go,
        })),
        _ => Err("a request must carry exactly three descriptors".into()),
    }
}

fn read_exact(sock: BorrowedFd<'_>, mut buf: &mut [u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match rustix::io::read(sock, &mut *buf) {
            Ok(0) => return Err("request truncated".into()),
            Ok(n) => buf = &mut buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("reading a request: {e}")),
        }
    }
    Ok(())
}
