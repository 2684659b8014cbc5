//! Private network namespaces for sandboxes, made ahead of time and reused
//! when a build left no trace in them.
//!
//! Creating a network namespace costs about 0.7 ms of CPU here, and the
//! kernel spends as much again tearing it down on a worker thread: together
//! the largest share of a trivial build, paid on both of a 2-core machine's
//! CPUs while the next build waits for them. The helper (root only) therefore
//! keeps namespaces it created itself, with `lo` up, and lends each to one
//! sandbox at a time.
//!
//! A namespace goes back to the pool only if the sandbox that used it has
//! exited (its PID 1 is gone, and with it every process of its PID namespace
//! and every socket they had) and it is *pristine*: every interface's counters
//! are zero and no TCP socket exists, not even in TIME-WAIT. A builder without
//! capabilities (uid 1000, and the namespace belongs to the initial user
//! namespace, not the sandbox's) can change nothing else in it, so a pristine
//! namespace is indistinguishable from a fresh one to the next builder, apart
//! from its inode number. A builder that sent a single packet, even to
//! itself, makes its namespace unusable; it is dropped and the kernel tears it
//! down as it would have anyway.
//!
//! Unprivileged callers get `CLONE_NEWNET` per sandbox, as in Nix.

use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::LinkNameSpaceType;

use crate::sys;

/// How many unused namespaces to keep; more only pile up after a burst of
/// concurrent builds, and are kept for the next burst.
const IDLE_TARGET: usize = 1;

pub(crate) struct NetworkPool {
    /// The helper's own network namespace, to return to after each visit;
    /// `None` when the pool is disabled (not root, or the kernel refused).
    home: Option<OwnedFd>,
    idle: Vec<OwnedFd>,
    lent: Vec<Loan>,
}

/// A namespace in use by the sandbox whose PID 1 `pidfd` refers to.
struct Loan {
    namespace: OwnedFd,
    pidfd: OwnedFd,
}

impl NetworkPool {
    pub(crate) fn new() -> NetworkPool {
        let home = if rustix::process::geteuid().is_root() {
            open_current().ok()
        } else {
            None
        };
        NetworkPool {
            home,
            idle: Vec::new(),
            lent: Vec::new(),
        }
    }

    /// Takes back namespaces whose sandbox has ended and makes one if none is
    /// idle. Called between requests; failures only mean the next build uses
    /// `CLONE_NEWNET`.
    pub(crate) fn tend(&mut self) {
        self.reclaim();
        if self.idle.len() < IDLE_TARGET {
            self.create();
        }
    }

    fn reclaim(&mut self) {
        if self.home.is_none() {
            return;
        }
        let mut still_lent = Vec::with_capacity(self.lent.len());
        for loan in std::mem::take(&mut self.lent) {
            if !has_exited(&loan.pidfd) {
                still_lent.push(loan);
            } else if self.visit(&loan.namespace, is_pristine) == Some(true) {
                self.idle.push(loan.namespace);
            }
        }
        self.lent = still_lent;
    }

    fn create(&mut self) {
        let Some(home) = &self.home else { return };
        if sys::unshare_network_namespace().is_err() {
            self.home = None;
            return;
        }
        let made = crate::net::loopback_up()
            .ok()
            .and_then(|()| open_current().ok());
        go_home(home);
        self.idle.extend(made);
    }

    /// Enters an idle namespace for the next clone; `None` if there is none.
    /// The clone then inherits it; [`Entered::lend_to`] records the loan.
    pub(crate) fn enter(&mut self) -> Option<Entered<'_>> {
        if self.idle.is_empty() {
            // Made now, it costs what `CLONE_NEWNET` would, and can be reused.
            self.tend();
        }
        let home = self.home.as_ref()?;
        let namespace = self.idle.pop()?;
        if rustix::thread::move_into_link_name_space(
            namespace.as_fd(),
            Some(LinkNameSpaceType::Network),
        )
        .is_err()
        {
            return None;
        }
        Some(Entered {
            home,
            namespace: Some(namespace),
            lent: &mut self.lent,
        })
    }

    /// Runs `check` inside `namespace` and comes back.
    fn visit(&self, namespace: &OwnedFd, check: fn() -> bool) -> Option<bool> {
        let home = self.home.as_ref()?;
        rustix::thread::move_into_link_name_space(
            namespace.as_fd(),
            Some(LinkNameSpaceType::Network),
        )
        .ok()?;
        let result = check();
        go_home(home);
        Some(result)
    }
}

/// While alive, the helper is in a pooled namespace; dropping it returns home.
pub(crate) struct Entered<'a> {
    home: &'a OwnedFd,
    namespace: Option<OwnedFd>,
    lent: &'a mut Vec<Loan>,
}

impl Entered<'_> {
    /// Records that the sandbox with PID 1 `pid` uses the namespace. Without a
    /// pidfd there is no telling when it is free, so it is simply dropped.
    pub(crate) fn lend_to(mut self, pid: libc::pid_t) {
        let pidfd = Pid::from_raw(pid).and_then(|pid| {
            // The helper is not the builder's parent (CLONE_PARENT), so it
            // cannot wait for it; a pidfd still says when it has exited.
            rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
        });
        if let (Some(namespace), Some(pidfd)) = (self.namespace.take(), pidfd) {
            self.lent.push(Loan { namespace, pidfd });
        }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        go_home(self.home);
    }
}

fn open_current() -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        c"/proc/thread-self/ns/net",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn go_home(home: &OwnedFd) {
    // Staying in a pooled namespace would give later fixed-output builds the
    // wrong network: better to die and be restarted.
    if rustix::thread::move_into_link_name_space(home.as_fd(), Some(LinkNameSpaceType::Network))
        .is_err()
    {
        sys::exit_now(3);
    }
}

/// A pidfd is readable once its process has exited. A builder is PID 1 of its
/// PID namespace, and the kernel kills and reaps every other process of that
/// namespace before PID 1 counts as exited.
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

/// Whether the current network namespace looks exactly as it did when it was
/// made: all interface counters zero, and no TCP socket of any state.
fn is_pristine() -> bool {
    let read = |path: &std::ffi::CStr| -> Option<String> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rustix::io::read(&fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return None,
            }
        }
        String::from_utf8(text).ok()
    };
    let Some(dev) = read(c"/proc/thread-self/net/dev") else {
        return false;
    };
    let Some(sockstat) = read(c"/proc/thread-self/net/sockstat") else {
        return false;
    };
    // Without IPv6 there is no such file, and nothing to count.
    let sockstat6 = read(c"/proc/thread-self/net/sockstat6").unwrap_or_default();
    interfaces_unused(&dev) && no_tcp_sockets(&sockstat) && no_tcp_sockets(&sockstat6)
}

/// `/proc/net/dev`: two header lines, then `name: counter…` per interface.
fn interfaces_unused(dev: &str) -> bool {
    let mut interfaces = 0;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            return false;
        };
        if !counters.split_whitespace().all(|c| c == "0") {
            return false;
        }
        interfaces += 1;
    }
    interfaces > 0
}

/// `/proc/net/sockstat{,6}`: the `TCP:`/`TCP6:` line's `inuse` and `tw`
/// counts are per namespace (its `orphan`, `alloc` and `mem` are global).
fn no_tcp_sockets(sockstat: &str) -> bool {
    for line in sockstat.lines() {
        let Some(rest) = line
            .strip_prefix("TCP: ")
            .or_else(|| line.strip_prefix("TCP6: "))
        else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let busy = words
            .chunks(2)
            .any(|pair| matches!(pair, ["inuse" | "tw", count] if *count != "0"));
        if busy {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH_DEV: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n";

    #[test]
    fn fresh_interfaces_count_as_unused() {
        assert!(interfaces_unused(FRESH_DEV));
    }

    #[test]
    fn any_traffic_counts_as_used() {
        let used = FRESH_DEV.replace("lo:       0       0", "lo:      84       1");
        assert!(!interfaces_unused(&used));
    }

    #[test]
    fn a_table_without_interfaces_is_not_trusted() {
        let headers: String = FRESH_DEV
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!interfaces_unused(&headers));
    }

    #[test]
    fn tcp_sockets_in_use_or_time_wait_are_noticed() {
        let idle =
            "sockets: used 130\nTCP: inuse 0 orphan 3 tw 0 alloc 12 mem 1\nUDP: inuse 0 mem 0\n";
        assert!(no_tcp_sockets(idle));
        assert!(!no_tcp_sockets(
            &idle.replace("inuse 0 orphan", "inuse 1 orphan")
        ));
        assert!(!no_tcp_sockets(&idle.replace("tw 0", "tw 2")));
        assert!(!no_tcp_sockets("TCP6: inuse 1\nUDP6: inuse 0\n"));
    }
}
