//! Spare children: cloned while the helper is idle, so that a typical build's
//! request finds its process already in its namespaces.

use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, Signal};

use super::netpool::NetworkPool;
use super::{Cloned, SingleThreaded, BASE_CLONE_FLAGS};
use crate::protocol::plan::{flags, Plan};
use crate::protocol::request;

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
    pub(crate) user_namespace: Option<bool>,
    /// Spares failed to start; stop trying.
    disabled: bool,
}

pub(crate) struct Spare {
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

    pub(crate) fn learn(&mut self, plan: &Plan) {
        if Self::fits(plan) {
            self.user_namespace = Some(plan.has(flags::USER_NAMESPACE));
        }
    }

    pub(crate) fn take_for(&mut self, plan: &Plan) -> Option<Spare> {
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

    /// Kills the spare, if any; its pid, for its parent (the caller) to reap.
    pub(crate) fn discard(&mut self) -> Option<libc::pid_t> {
        let spare = self.spare.take()?;
        if let Some(pid) = Pid::from_raw(spare.pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        Some(spare.pid)
    }

    /// Makes a spare if there is none and requests have shown what it needs.
    pub(crate) fn replenish(&mut self, single: SingleThreaded, nets: &mut NetworkPool) {
        if self.disabled || self.spare.is_some() {
            return;
        }
        let Some(user_namespace) = self.user_namespace else {
            return;
        };
        match make_spare(single, user_namespace, nets) {
            Some(spare) => self.spare = Some(spare),
            None => self.disabled = true,
        }
    }
}

fn make_spare(
    single: SingleThreaded,
    user_namespace: bool,
    nets: &mut NetworkPool,
) -> Option<Spare> {
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
    let pid = match single.clone_process(clone_flags) {
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
    pub(crate) fn hand_over(self, plan_bytes: &[u8], fds: [&OwnedFd; 3]) -> Option<Cloned> {
        let frame = request::frame(plan_bytes).ok()?;
        match request::send(self.ctl.as_fd(), &frame, fds.map(|fd| fd.as_fd())) {
            Ok(()) => Some(Cloned {
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
