//! Copying the builder's pty output into the caller's log while enforcing
//! `timeout`, `max-silent-time` and `max-build-log-size`.
//!
//! One blocking `poll` per wake-up, with the nearest deadline as its timeout:
//! no sleeping and no periodic polling. Without limits it is a plain blocking
//! read loop.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::error::Error;

/// Why the pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Every slave descriptor is closed: the builder exited (or closed its
    /// output, which Nix treats the same way).
    Eof,
    /// `max-silent-time` passed without output.
    Silence,
    /// `timeout` passed.
    Timeout,
    /// More than `max-build-log-size` bytes were written.
    LogLimit,
}

pub(crate) struct Limits {
    pub timeout: Option<Duration>,
    pub max_silent_time: Option<Duration>,
    pub max_log_size: Option<u64>,
}

pub(crate) fn pump(
    master: &OwnedFd,
    limits: &Limits,
    started: Instant,
    log: &mut dyn Write,
) -> Result<End, Error> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_output = Instant::now();
    let mut logged: u64 = 0;
    let timed = limits.timeout.is_some() || limits.max_silent_time.is_some();
    loop {
        if timed {
            let now = Instant::now();
            let mut wait: Option<(Duration, End)> = None;
            for (deadline, why) in [
                (limits.timeout.map(|t| started + t), End::Timeout),
                (
                    limits.max_silent_time.map(|t| last_output + t),
                    End::Silence,
                ),
            ] {
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(now);
                    if wait.is_none_or(|(w, _)| left < w) {
                        wait = Some((left, why));
                    }
                }
            }
            let (left, why) = wait.expect("timed implies a deadline");
            if left.is_zero() {
                return Ok(why);
            }
            let ts = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
            let mut fds = [PollFd::new(master, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(Error::sys("waiting for builder output", e)),
            }
        }
        let n = match rustix::io::read(master, &mut buf) {
            Ok(0) | Err(Errno::IO) => return Ok(End::Eof),
            Ok(n) => n,
            Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
            Err(e) => return Err(Error::sys("reading builder output", e)),
        };
        last_output = Instant::now();
        logged += n as u64;
        if limits.max_log_size.is_some_and(|max| logged > max) {
            return Ok(End::LogLimit);
        }
        log.write_all(&buf[..n]).map_err(Error::Log)?;
    }
}
