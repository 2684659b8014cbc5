//! The caller's handles on its long-lived helper processes (see `helper/`): at
//! most one of each [`HelperKind`], started on first use, restarted if one died,
//! and told to exit (then reaped) when the [`Helpers`] is dropped.
//!
//! Sending a request holds the lock only for the duration of the `sendmsg`;
//! the helper serves requests in order, each in about the time of one `clone`,
//! and the sandboxes then set themselves up in parallel.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::error::Error;
use crate::protocol::request::{frame, send};
use crate::protocol::{HelperKind, FILTERED_ARG, HELPER_ARG, READY_LINE};

/// One running helper process.
#[derive(Debug)]
struct Helper {
    kind: HelperKind,
    child: Child,
    sock: UnixStream,
}

impl Helper {
    /// End of requests is the helper's signal to kill the sandboxes it started
    /// and exit; it names the spare children it killed, which are ours to reap.
    fn stop(self) {
        let Helper {
            mut child,
            mut sock,
            ..
        } = self;
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let mut pids = Vec::new();
        let _ = sock.read_to_end(&mut pids);
        for pid in pids.chunks_exact(4) {
            let pid = i32::from_le_bytes(pid.try_into().expect("chunks of 4"));
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
        let _ = child.wait();
    }
}

/// The helpers of one executable.
#[derive(Debug)]
pub(crate) struct Helpers {
    exe: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: Vec<Helper>,
    /// The filtering helper could not start (no seccomp, say): the plain
    /// helper serves every plan, and each child installs its filter itself,
    /// failing with the kernel's reason if it cannot.
    no_filtered: bool,
}

/// How long a freshly started helper may take to say it is ready. Generous:
/// it only guards against a wrong executable that never answers.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

impl Helpers {
    /// `exe` is started as `<exe> HELPER_ARG` when first needed.
    pub(crate) fn new(exe: PathBuf) -> Helpers {
        Helpers {
            exe,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands one build to the helper of `kind`: the encoded plan plus the pty
    /// slave, the status pipe's write end and the go socket's read end (the
    /// helper gets its own copies).
    pub(crate) fn submit(
        &self,
        kind: HelperKind,
        plan: &[u8],
        fds: [BorrowedFd<'_>; 3],
    ) -> Result<(), Error> {
        let frame = frame(plan)?;
        let mut state = self.lock();
        // A helper that died since the last build (killed, or the binary was
        // broken) shows up as EPIPE/ECONNRESET here; start a new one, once.
        for attempt in 0..2 {
            let at = self.find_or_spawn(&mut state, kind)?;
            match send(state.running[at].sock.as_fd(), &frame, fds) {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 0 && matches!(e, Errno::PIPE | Errno::CONNRESET) => {
                    state.running.swap_remove(at).stop();
                }
                Err(e) => return Err(Error::sys("sending the build to the sandbox helper", e)),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Starts the helper that serves Nix's default settings now if it is not
    /// running.
    pub(crate) fn start(&self) -> Result<(), Error> {
        let mut state = self.lock();
        self.find_or_spawn(&mut state, HelperKind::Filtered)
            .map(|_| ())
    }

    /// Where in `state.running` the helper of `kind` is, started if need be;
    /// the plain one instead when the filtering one cannot start.
    fn find_or_spawn(&self, state: &mut State, kind: HelperKind) -> Result<usize, Error> {
        let kind = if state.no_filtered {
            HelperKind::Plain
        } else {
            kind
        };
        if let Some(at) = state.running.iter().position(|h| h.kind == kind) {
            return Ok(at);
        }
        let helper = match spawn(&self.exe, kind) {
            Ok(h) => h,
            Err(_) if kind == HelperKind::Filtered => {
                state.no_filtered = true;
                return self.find_or_spawn(state, HelperKind::Plain);
            }
            Err(e) => return Err(e),
        };
        state.running.push(helper);
        Ok(state.running.len() - 1)
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        let state = std::mem::take(self.state.get_mut().unwrap_or_else(|e| e.into_inner()));
        for helper in state.running {
            helper.stop();
        }
    }
}

/// The proxy variables curl (Nix's downloader) reads, in both cases.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

fn spawn(exe: &Path, kind: HelperKind) -> Result<Helper, Error> {
    let spawn_error = |error| Error::SpawnHelper {
        path: exe.to_path_buf(),
        error,
    };
    let (ours, theirs) = UnixStream::pair().map_err(spawn_error)?;
    let mut command = Command::new(exe);
    command.arg(HELPER_ARG);
    if kind == HelperKind::Filtered {
        command.arg(FILTERED_ARG);
    }
    command.env_clear();
    // Builtin builders run in the helper's clones and, like Nix's in the daemon, take
    // their proxy settings from its environment; nothing else is passed on.
    for name in PROXY_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_error)?;
    // The command holds our copy of the helper's end of the socket: without
    // dropping it, a helper that exits early would never show as EOF.
    drop(command);
    match read_ready_line(&ours) {
        Ok(line) if line == READY_LINE => Ok(Helper {
            kind,
            child,
            sock: ours,
        }),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let why = match other {
                Ok(line) if line.starts_with(b"error: ") => {
                    String::from_utf8_lossy(&line[7..]).trim_end().to_string()
                }
                Ok(line) if line.is_empty() => "it exited during startup".to_string(),
                Ok(_) => format!(
                    "it is not a kiln sandbox helper (expected it to handle '{HELPER_ARG}')"
                ),
                Err(e) => e,
            };
            Err(Error::Helper(format!(
                "sandbox helper '{}': {why}",
                exe.display()
            )))
        }
    }
}

/// Reads up to the first newline, giving up after [`STARTUP_TIMEOUT`].
fn read_ready_line(mut sock: &UnixStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ts = Timespec::try_from(left).map_err(|_| "bad timeout".to_string())?;
        let mut fds = [PollFd::new(sock, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Err("it did not get ready in time".into()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
        match sock.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from it: {e}")),
        }
    }
    Ok(line)
}
