//! The caller's side of a sandboxed run: start the helper, learn the builder's
//! pid and setup result from the status pipe, pump the log, kill the sandbox,
//! reap the builder.
//!
//! Safe to call from several threads at once: every descriptor created here
//! is close-on-exec, and the builder (a sibling of the helper, cloned with
//! `CLONE_PARENT`) is reaped by pid, never by `wait(-1)`.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};
use serde::{Deserialize, Serialize};

use super::cancel::{KillHandle, Registry, Target};
use super::helpers::Helpers;
use super::prepare::Prepared;
use super::pty;
use super::pump::{self, End, Limits};
use super::spec::SandboxSpec;
use crate::error::Error;
use crate::protocol::{plan, status, TREES_PER_MESSAGE};
use crate::sys;

/// How a sandboxed run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The builder exited with this code (0 = success).
    Exited(i32),
    /// The builder was killed by this signal. Includes SIGKILL after the
    /// builder closed its output early: like Nix, end of output ends the build.
    Signaled(i32),
    /// `timeout` expired; the sandbox was killed.
    TimedOut,
    /// `max-silent-time` expired; the sandbox was killed.
    Silent,
    /// More than `max-build-log-size` bytes of output; the sandbox was killed.
    LogLimitExceeded,
    /// Its [`KillHandle`] was fired (or [`crate::Sandboxes::cancel_all`] called) before the
    /// builder ended on its own; the sandbox was killed.
    Cancelled,
}

impl Outcome {
    /// Whether the builder exited with status 0.
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }

    /// The end of Nix 2.8's message about the build, for the limits of
    /// `spec`: `failed with exit code 1`, `failed due to signal 9 (Killed)`,
    /// `timed out after 5 seconds`, `timed out after 5 seconds of silence`,
    /// `killed after writing more than 100 bytes of log output`.
    pub fn describe(self, spec: &SandboxSpec) -> String {
        let secs = |d: Option<Duration>| d.unwrap_or_default().as_secs();
        match self {
            Outcome::Exited(0) => "succeeded".into(),
            Outcome::Exited(code) => format!("failed with exit code {code}"),
            Outcome::Signaled(sig) => format!("failed due to signal {sig} ({})", signal_name(sig)),
            Outcome::TimedOut => format!("timed out after {} seconds", secs(spec.timeout)),
            Outcome::Silent => format!(
                "timed out after {} seconds of silence",
                secs(spec.max_silent_time)
            ),
            Outcome::LogLimitExceeded => format!(
                "killed after writing more than {} bytes of log output",
                spec.max_log_size.unwrap_or_default()
            ),
            Outcome::Cancelled => "was cancelled".into(),
        }
    }
}

/// "failed with exit code N" / "failed due to signal N (Name)".
fn exit_text(status: rustix::process::WaitStatus) -> String {
    match status.exit_status() {
        Some(code) => format!("failed with exit code {code}"),
        None => {
            let sig = status.terminating_signal().unwrap_or(0);
            format!("failed due to signal {sig} ({})", signal_name(sig))
        }
    }
}

/// `strsignal` text (glibc's wording) for the signals a builder dies of.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "Hangup",
        libc::SIGINT => "Interrupt",
        libc::SIGQUIT => "Quit",
        libc::SIGILL => "Illegal instruction",
        libc::SIGTRAP => "Trace/breakpoint trap",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGFPE => "Floating point exception",
        libc::SIGKILL => "Killed",
        libc::SIGUSR1 => "User defined signal 1",
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGUSR2 => "User defined signal 2",
        libc::SIGPIPE => "Broken pipe",
        libc::SIGALRM => "Alarm clock",
        libc::SIGTERM => "Terminated",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "File size limit exceeded",
        libc::SIGSYS => "Bad system call",
        _ => return format!("Unknown signal {sig}"),
    };
    name.to_string()
}

/// Starts the sandbox for `prepared` without letting it reach its store
/// inputs: the namespaces, the chroot's mounts other than the inputs, the id
/// maps are all set up, and the process then waits for [`Launched::go`].
/// A build prepared while its inputs are still being built can thus start
/// all of that early. Dropping the handle instead ends the sandbox.
pub(crate) fn launch(
    prepared: &Prepared,
    helpers: &Helpers,
    running: &Registry,
) -> Result<Launched, Error> {
    let pty = pty::open(prepared.pty_owner)?;
    let (status_read, status_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| Error::sys("creating the status pipe", e))?;
    // A socket rather than a pipe: inputs found after an early pivot travel as
    // descriptors of detached mounts.
    let (go_read, go_write) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("creating the inputs socket", e))?;
    helpers.submit(
        prepared.helper,
        &prepared.plan,
        [pty.slave.as_fd(), status_write.as_fd(), go_read.as_fd()],
    )?;
    // Only the helper's and the child's copies may remain: EOF on the status
    // pipe and on the pty must mean what they say.
    drop((status_write, pty.slave, go_read));
    Ok(Launched {
        target: running.register(),
        pty_master: pty.master,
        status: Some(status_read),
        go: Some(go_write),
    })
}

/// Writes the `go` message, then `trees` in order, a few per one-byte message.
fn send_inputs(go: BorrowedFd<'_>, message: &[u8], trees: &[OwnedFd]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < message.len() {
        match rustix::net::send(go, &message[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for chunk in trees.chunks(TREES_PER_MESSAGE) {
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|t| t.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(TREES_PER_MESSAGE))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let pushed = control.push(SendAncillaryMessage::ScmRights(&fds));
        debug_assert!(pushed, "cmsg space is sized for a full chunk");
        let message = [IoSlice::new(b"t")];
        while let Err(e) = rustix::net::sendmsg(go, &message, &mut control, SendFlags::NOSIGNAL) {
            if e != Errno::INTR {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// A sandbox started by [`crate::Sandboxes::launch`] and waiting for its store inputs.
#[derive(Debug)]
pub struct Launched {
    target: Arc<Target>,
    pty_master: OwnedFd,
    /// Taken by `go` (the `Drop` of an abandoned sandbox reads it instead).
    status: Option<OwnedFd>,
    go: Option<OwnedFd>,
}

impl Launched {
    /// A handle that stops this sandbox from another thread, before or during
    /// [`Launched::go`]; see [`KillHandle::kill`].
    pub fn kill_handle(&self) -> KillHandle {
        KillHandle(Arc::clone(&self.target))
    }

    /// Binds the store inputs `prepared` has now (see [`Prepared::replace_inputs`])
    /// and lets the builder run; returns how it ended. `prepared` must be the
    /// one this sandbox was launched with. Time limits count from here.
    pub fn go(self, prepared: &Prepared, log: &mut dyn Write) -> Result<Outcome, Error> {
        self.go_lingering(prepared, log).map(|(outcome, _)| outcome)
    }

    /// [`Launched::go`], keeping the sandbox's mount namespace alive in the returned
    /// [`Lingering`] after the builder exits: without another reference the builder's
    /// own exit tears the namespace down (every mount, the `/proc`, `/dev/shm` and
    /// `/dev/pts` instances, an RCU grace period) before its parent learns that it
    /// ended, which was 0.3–0.7 ms of each step. Dropping the `Lingering` (before the
    /// chroot is touched again) does that work wherever the caller likes.
    pub fn go_lingering(
        mut self,
        prepared: &Prepared,
        log: &mut dyn Write,
    ) -> Result<(Outcome, Lingering), Error> {
        let started = Instant::now();
        if self.target.is_cancelled() {
            // Dropping the sandbox ends it before the builder starts.
            drop(self);
            let nothing = Lingering {
                _mount_namespace: None,
            };
            return Ok((Outcome::Cancelled, nothing));
        }
        let (binds, trees) = if prepared.pivots_early {
            let late = prepared.late_inputs();
            let trees = late
                .iter()
                .map(|(_, path, source)| {
                    sys::detached_tree(source)
                        .map_err(|e| Error::fs("cloning the mount of input", *path, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (late.into_iter().map(|(bind, ..)| bind).collect(), trees)
        } else {
            (prepared.store_binds(), Vec::new())
        };
        let go = self.go.take().expect("go runs once");
        // A child that died during setup closed its end: its error follows on
        // the status pipe.
        let _ = send_inputs(go.as_fd(), &plan::encode_binds(&binds), &trees);
        drop((go, trees));
        let status_read = self.status.take().expect("go runs once");
        let mut status_bytes = Vec::new();
        std::fs::File::from(status_read)
            .read_to_end(&mut status_bytes)
            .map_err(|e| Error::sys("reading the sandbox status pipe", e))?;
        let report = status::parse(&status_bytes).map_err(Error::Helper)?;
        let pid = report.pid.and_then(Pid::from_raw);
        let pid = match (pid, report.child_error, report.helper_error) {
            (pid, Some(message), _) => return Err(abandon(pid, Error::Setup(message))),
            (pid, None, Some(message)) => return Err(abandon(pid, Error::Helper(message))),
            (None, None, None) => {
                return Err(Error::Helper(
                    "the sandbox helper exited without starting the sandbox".into(),
                ))
            }
            // EOF without an error and without the ready mark: the child was
            // killed before it could say anything (OOM killer, a signal).
            (Some(pid), None, None) if !report.ready => {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                let status = reap(pid)?;
                return Err(Error::Setup(format!(
                    "the sandboxed process died during setup ({})",
                    exit_text(status)
                )));
            }
            (Some(pid), None, None) => pid,
        };

        let limits = Limits {
            timeout: prepared.timeout,
            max_silent_time: prepared.max_silent_time,
            max_log_size: prepared.max_log_size,
        };
        self.target.started(pid);
        // Best effort: a builder already gone has taken its namespace with it.
        let lingering = Lingering {
            _mount_namespace: open_mount_namespace(pid),
        };
        let end = pump::pump(&self.pty_master, &limits, started, log);
        // Whatever happened, the sandbox goes now: killing its PID 1 kills every
        // process in its PID namespace. After EOF this is Nix's "the builder could
        // also have simply closed its end of the pipe, so just to be sure, kill it".
        let cancelled = self.target.finished();
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let status = reap(pid)?;
        let outcome = match end? {
            // A builder that exited on its own before the cancel reached it keeps
            // its own outcome.
            End::Eof if cancelled && status.exit_status().is_none() => Outcome::Cancelled,
            End::Eof => Outcome::from_wait(status),
            End::Timeout => Outcome::TimedOut,
            End::Silence => Outcome::Silent,
            End::LogLimit => Outcome::LogLimitExceeded,
        };
        Ok((outcome, lingering))
    }
}

/// What is left of a finished sandbox until dropped: its mount namespace (see
/// [`Launched::go_lingering`]).
#[derive(Debug)]
pub struct Lingering {
    _mount_namespace: Option<OwnedFd>,
}

fn open_mount_namespace(pid: Pid) -> Option<OwnedFd> {
    let path = format!("/proc/{}/ns/mnt", pid.as_raw_nonzero());
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

impl Drop for Launched {
    /// An abandoned sandbox reads EOF instead of its inputs and exits; it is
    /// reaped here so that it does not linger as a zombie.
    fn drop(&mut self) {
        let Some(status) = self.status.take() else {
            return;
        };
        drop(self.go.take());
        let mut bytes = Vec::new();
        let _ = std::fs::File::from(status).read_to_end(&mut bytes);
        if let Ok(report) = status::parse(&bytes) {
            if let Some(pid) = report.pid.and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                let _ = reap(pid);
            }
        }
    }
}

/// Kills and reaps a sandbox whose setup failed, keeping the setup error.
fn abandon(pid: Option<Pid>, err: Error) -> Error {
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = reap(pid);
    }
    err
}

fn reap(pid: Pid) -> Result<rustix::process::WaitStatus, Error> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::sys("waiting for the builder", e)),
        }
    }
}

impl Outcome {
    fn from_wait(status: rustix::process::WaitStatus) -> Outcome {
        if let Some(code) = status.exit_status() {
            Outcome::Exited(code)
        } else {
            Outcome::Signaled(status.terminating_signal().unwrap_or(0))
        }
    }
}
