//! The caller's handle on the long-lived helper process (see `helper.rs`):
//! one per helper executable, started on first use, restarted if it died.
//!
//! Sending a request takes a process-wide lock only for the duration of the
//! `sendmsg`; the helper serves requests in order, each in about the time of
//! one `clone`, and the sandboxes then set themselves up in parallel.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;


use crate::error::Error;
use crate::protocol::request::{frame, send};
use crate::protocol::{HelperKind, FILTERED_ARG, HELPER_ARG, READY_LINE};

struct Zygote {
    exe: PathBuf,
    kind: HelperKind,
    child: Child,
    sock: UnixStream,
}

static ZYGOTES: Mutex<Vec<Zygote>> = Mutex::new(Vec::new());

/// Executables whose filtering helper could not start (no seccomp, say): their
/// plain helper serves every plan, and each child installs its filter itself,
/// failing with the kernel's reason if it cannot.
static NO_FILTERED_HELPER: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long a freshly started helper may take to say it is ready. Generous:
/// it only guards against a wrong executable that never answers.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Hands one build to the helper `exe`: the encoded plan plus the pty slave,
/// the status pipe's write end and the go pipe's read end (the helper gets its
/// own copies).
pub(crate) fn submit(
    exe: &Path,
    kind: HelperKind,
    plan: &[u8],
    fds: [BorrowedFd<'_>; 3],
) -> Result<(), Error> {
    let frame = frame(plan)?;

    let mut zygotes = ZYGOTES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // A helper that died since the last build (killed, or the binary was
    // broken) shows up as EPIPE/ECONNRESET here; start a new one, once.
    for attempt in 0..2 {
        let at = find_or_spawn(&mut zygotes, exe, kind)?;
        match send(zygotes[at].sock.as_fd(), &frame, fds) {
            Ok(()) => return Ok(()),
            Err(e) if attempt == 0 && matches!(e, Errno::PIPE | Errno::CONNRESET) => {
                let mut dead = zygotes.swap_remove(at);
                let _ = dead.child.wait();
            }
            Err(e) => return Err(Error::sys("sending the build to the sandbox helper", e)),
        }
    }
    unreachable!("the second attempt returns")
}

/// Starts the helper `exe` now if it is not running, so that the first build does not
/// wait for it (a caller may do this on another thread while it plans).
pub fn start_helper(exe: &Path) -> Result<(), Error> {
    let mut zygotes = ZYGOTES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The kind that serves Nix's default settings.
    find_or_spawn(&mut zygotes, exe, HelperKind::Filtered).map(|_| ())
}

/// Where in `zygotes` the helper of `kind` for `exe` is, started if need be; the
/// plain one instead when the filtering one cannot start.
fn find_or_spawn(zygotes: &mut Vec<Zygote>, exe: &Path, kind: HelperKind) -> Result<usize, Error> {
    let mut no_filtered = NO_FILTERED_HELPER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let kind = if no_filtered.iter().any(|e| e == exe) {
        HelperKind::Plain
    } else {
        kind
    };
    if let Some(at) = zygotes.iter().position(|z| z.exe == exe && z.kind == kind) {
        return Ok(at);
    }
    let zygote = match spawn(exe, kind) {
        Ok(z) => z,
        Err(_) if kind == HelperKind::Filtered => {
            no_filtered.push(exe.to_path_buf());
            drop(no_filtered);
            return find_or_spawn(zygotes, exe, HelperKind::Plain);
        }
        Err(e) => return Err(e),
    };
    zygotes.push(zygote);
    Ok(zygotes.len() - 1)
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

fn spawn(exe: &Path, kind: HelperKind) -> Result<Zygote, Error> {
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
        Ok(line) if line == READY_LINE => Ok(Zygote {
            exe: exe.to_path_buf(),
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

