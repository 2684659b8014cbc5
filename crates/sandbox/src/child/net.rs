//! The private network namespace's loopback interface.

use std::os::fd::AsRawFd;

use rustix::net::{AddressFamily, SocketType};

use crate::error::errno_text;

/// Brings `lo` up (Nix: `SIOCSIFFLAGS` with `IFF_UP | IFF_LOOPBACK |
/// IFF_RUNNING` through an AF_INET datagram socket). The kernel configures
/// 127.0.0.1/8 and ::1 on its own once the interface is up.
pub(crate) fn loopback_up() -> Result<(), String> {
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)
        .map_err(|e| format!("cannot open IP socket: {}", errno_text(e.raw_os_error())))?;
    let flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    crate::sys::set_interface_flags(sock.as_raw_fd(), b"lo", flags).map_err(|e| {
        format!(
            "cannot set loopback interface flags: {}",
            errno_text(e.raw_os_error().unwrap_or(0))
        )
    })
}
