//! The pseudo-terminal carrying the builder's stdout and stderr.
//!
//! Nix gives builders a pty rather than a pipe, so `isatty` is true and tools
//! like `ls` behave as on a terminal; raw mode keeps bytes unchanged (no
//! `\n` → `\r\n`). Both ends are close-on-exec in the caller so concurrent
//! spawns in other threads cannot inherit them (an inherited slave would keep
//! the log open after the builder exits).

use std::os::fd::OwnedFd;

use rustix::fs::Mode;
use rustix::pty::OpenptFlags;
use rustix::termios::OptionalActions;

use crate::error::Error;

pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pty pair; with `owner`, the slave becomes `owner:root` mode 0600
/// (what Nix does for build users).
pub(crate) fn open(owner: Option<u32>) -> Result<Pty, Error> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master =
        rustix::pty::openpt(flags).map_err(|e| Error::sys("opening pseudoterminal master", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| Error::sys("unlocking pseudoterminal", e))?;
    // TIOCGPTPEER opens the slave without a path lookup (and without the
    // ptsname race); older kernels fall back to the name.
    let slave = match rustix::pty::ioctl_tiocgptpeer(&master, flags) {
        Ok(fd) => fd,
        Err(_) => {
            let name = rustix::pty::ptsname(&master, Vec::new())
                .map_err(|e| Error::sys("getting pseudoterminal name", e))?;
            rustix::fs::open(
                &*name,
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::sys("opening pseudoterminal slave", e))?
        }
    };
    if let Some(uid) = owner {
        rustix::fs::fchmod(&slave, Mode::from_raw_mode(0o600))
            .map_err(|e| Error::sys("changing mode of pseudoterminal slave", e))?;
        rustix::fs::fchown(
            &slave,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::ROOT),
        )
        .map_err(|e| Error::sys("changing owner of pseudoterminal slave", e))?;
    }
    let mut term = rustix::termios::tcgetattr(&slave)
        .map_err(|e| Error::sys("getting pseudoterminal attributes", e))?;
    term.make_raw();
    rustix::termios::tcsetattr(&slave, OptionalActions::Now, &term)
        .map_err(|e| Error::sys("putting pseudoterminal into raw mode", e))?;
    Ok(Pty { master, slave })
}
