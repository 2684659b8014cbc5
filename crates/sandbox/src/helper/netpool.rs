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
//! and every socket they had) and nothing a later builder could observe in it
//! differs from what it showed when it was new. The builder ran without
//! capabilities (uid 1000, and the namespace belongs to the initial user
//! namespace, not the sandbox's), so it could not write a sysctl under
//! `/proc/sys/net`, add an address, route, neighbour, iptables rule or
//! interface, or open a raw or packet socket. What it can change:
//!
//! * counters, even without sending a packet: a `connect` to an unroutable
//!   address counts in `OutNoRoutes` (`/proc/net/snmp`), its IPv6 twin in
//!   `/proc/net/snmp6`, and the TCP/IP extension counters of
//!   `/proc/net/netstat` move with socket options and failures;
//! * anything that needs a packet (interface counters in `/proc/net/dev`,
//!   TIME-WAIT sockets, TCP metrics, conntrack entries, route
//!   exceptions, fragment queues, ICMP rate limits), which the first packet
//!   already betrays through those counters;
//! * IPv6 flow labels (`IPV6_FLOWLABEL_MGR`), which linger for seconds after
//!   their socket is closed and are listed in `/proc/net/ip6_flowlabel`;
//! * sockets kept alive after their process died, in flight in a Unix socket
//!   until the kernel's garbage collector finds them: counted in
//!   `/proc/net/sockstat{,6}` (`inuse`) or listed in `/proc/net/unix`.
//!
//! Unix abstract names, multicast memberships, port bindings and flow labels
//! in use die with their sockets. Per-namespace hash seeds (port selection)
//! are fixed at creation and a builder cannot change them; the ones a builder
//! does move (ephemeral port perturbation, socket cookies, IP IDs) are global
//! to the machine, under Nix too. So a namespace is reused only if each of
//! [`COMPARED`] reads byte for byte as it did right after the namespace was
//! made, and `sockstat{,6}` count no socket in use and none in TIME-WAIT.
//! (`dev_snmp6/lo` moves only with packets on `lo`, which `dev` counts.) The
//! files are opened once, inside the new namespace, and read again from the
//! helper's own when the sandbox has exited, each with one read of one byte more
//! than it had: about 170 µs of CPU per build when read in pieces (`netstat` alone
//! was 70), between requests, against the 1.4 ms a namespace
//! costs to make and tear down. A namespace that fails is dropped and the
//! kernel tears it down as it would have anyway.
//!
//! Unprivileged callers get `CLONE_NEWNET` per sandbox, as in Nix.

use std::ffi::CStr;
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
    /// The helper's own network namespace, to return to after making one;
    /// `None` when the pool is disabled (not root, or the kernel refused).
    home: Option<OwnedFd>,
    idle: Vec<Pooled>,
    lent: Vec<Loan>,
}

/// A namespace made by the pool, and the files that tell whether it is
/// still as it was then.
struct Pooled {
    namespace: OwnedFd,
    watch: Watch,
}

/// A namespace in use by the sandbox whose PID 1 `pidfd` refers to.
struct Loan {
    pooled: Pooled,
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
            } else if loan.pooled.watch.unchanged() {
                self.idle.push(loan.pooled);
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
        let made = crate::child::net::loopback_up().ok().and_then(|()| {
            Some(Pooled {
                namespace: open_current().ok()?,
                watch: Watch::start()?,
            })
        });
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
        let pooled = self.idle.pop()?;
        if rustix::thread::move_into_link_name_space(
            pooled.namespace.as_fd(),
            Some(LinkNameSpaceType::Network),
        )
        .is_err()
        {
            return None;
        }
        Some(Entered {
            home,
            pooled: Some(pooled),
            lent: &mut self.lent,
        })
    }
}

/// While alive, the helper is in a pooled namespace; dropping it returns home.
pub(crate) struct Entered<'a> {
    home: &'a OwnedFd,
    pooled: Option<Pooled>,
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
        if let (Some(pooled), Some(pidfd)) = (self.pooled.take(), pidfd) {
            self.lent.push(Loan { pooled, pidfd });
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
pub(crate) fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

/// The files of a network namespace whose every byte a later builder could
/// read and an earlier one could change (see the module doc), and whether
/// each must exist (the rest are IPv6's).
const COMPARED: [(&CStr, bool); 6] = [
    (c"/proc/thread-self/net/dev", true),
    (c"/proc/thread-self/net/snmp", true),
    (c"/proc/thread-self/net/netstat", true),
    (c"/proc/thread-self/net/unix", true),
    (c"/proc/thread-self/net/snmp6", false),
    (c"/proc/thread-self/net/ip6_flowlabel", false),
];

/// `/proc/net/sockstat{,6}`, which count sockets in use.
const SOCKSTATS: [(&CStr, bool); 2] = [
    (c"/proc/thread-self/net/sockstat", true),
    (c"/proc/thread-self/net/sockstat6", false),
];

/// [`COMPARED`] and [`SOCKSTATS`] of one namespace, opened inside it: a file
/// under `/proc/net` keeps showing the namespace it was opened in, so the
/// helper checks it from its own namespace without opening anything.
struct Watch {
    /// With what each read when the namespace was new.
    compared: Vec<(OwnedFd, Vec<u8>)>,
    sockstats: Vec<OwnedFd>,
}

impl Watch {
    /// In the namespace to watch, right after making it. `None` if a file that
    /// must exist cannot be read: such a namespace cannot be vouched for.
    fn start() -> Option<Watch> {
        let mut compared = Vec::with_capacity(COMPARED.len());
        for file in open_all(&COMPARED)? {
            let when_new = read_all(&file).ok()?;
            compared.push((file, when_new));
        }
        Some(Watch {
            compared,
            sockstats: open_all(&SOCKSTATS)?,
        })
    }

    /// Whether everything reads as when the namespace was new, and no socket
    /// of any protocol is in use or in TIME-WAIT. `sockstat` is not compared
    /// whole: its `sockets: used`, and TCP's `orphan`, `alloc` and `mem`, count
    /// the whole machine.
    fn unchanged(&self) -> bool {
        self.sockstats.iter().all(|file| {
            read_all(file)
                .ok()
                .and_then(|text| String::from_utf8(text).ok())
                .is_some_and(|text| none_in_use(&text))
        }) && self
            .compared
            .iter()
            .all(|(file, when_new)| reads_as(file, when_new))
    }
}

/// Opens the files that exist; `None` if one that must exist does not.
fn open_all(files: &[(&CStr, bool)]) -> Option<Vec<OwnedFd>> {
    let mut opened = Vec::with_capacity(files.len());
    for &(path, required) in files {
        match rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => opened.push(fd),
            Err(rustix::io::Errno::NOENT) if !required => {}
            Err(_) => return None,
        }
    }
    Some(opened)
}

/// Whether `file` reads exactly `expected`. One read of one byte more than
/// `expected`: the kernel generates a `/proc/net` file anew for every read at
/// an offset other than where the last one ended, so reading it whole in
/// pieces (and then once more to see its end) would make it several times;
/// a read that fills all but the last byte of the buffer has met the end.
fn reads_as(file: &OwnedFd, expected: &[u8]) -> bool {
    let mut buf = vec![0u8; expected.len() + 1];
    loop {
        match rustix::io::pread(file, &mut buf, 0) {
            Ok(n) => return n == expected.len() && buf[..n] == *expected,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}

/// The whole file, from its start whatever was read before.
fn read_all(file: &OwnedFd) -> rustix::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::pread(file, &mut buf, text.len() as u64) {
            Ok(0) => return Ok(text),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `/proc/net/sockstat{,6}`: `PROTO: name count name count…` per line; every
/// protocol's `inuse`, and TCP's `tw`, count this namespace's sockets.
fn none_in_use(sockstat: &str) -> bool {
    sockstat.lines().all(|line| {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        !words
            .chunks(2)
            .any(|pair| matches!(pair, ["inuse" | "tw", count] if *count != "0"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: &str = "sockets: used 130\nTCP: inuse 0 orphan 3 tw 0 alloc 12 mem 1\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";

    #[test]
    fn machine_wide_socket_counts_do_not_matter() {
        assert!(none_in_use(IDLE));
    }

    #[test]
    fn sockets_of_any_protocol_in_use_or_time_wait_are_noticed() {
        assert!(!none_in_use(&IDLE.replace("TCP: inuse 0", "TCP: inuse 1")));
        assert!(!none_in_use(&IDLE.replace("tw 0", "tw 2")));
        assert!(!none_in_use(&IDLE.replace("UDP: inuse 0", "UDP: inuse 1")));
        assert!(!none_in_use(&IDLE.replace("RAW: inuse 0", "RAW: inuse 1")));
        assert!(!none_in_use("TCP6: inuse 1\nUDP6: inuse 0\n"));
        assert!(!none_in_use("TCP6: inuse 0\nUDP6: inuse 3\n"));
    }
}
