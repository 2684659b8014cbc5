//! Requests on the helper's socket: `u32 LE length | plan` with three
//! descriptors attached (`SCM_RIGHTS`): the pty slave, the write end of the
//! build's status pipe and the read end of its `go` socket. The caller sends
//! them to the helper, and the helper forwards them unchanged to a spare child.
//!
//! When the caller shuts down its side of the helper's socket, the helper
//! answers with the pids (`i32 LE` each) of the spare children it killed,
//! which are the caller's children (`CLONE_PARENT`), then exits.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::error::Error;

/// One build's request, as received.
pub(crate) struct Request {
    pub(crate) plan: Vec<u8>,
    pub(crate) pty: OwnedFd,
    pub(crate) status: OwnedFd,
    /// Read end of the pipe on which the caller sends the store inputs' binds
    /// when the sandbox may go on (EOF: abandon it).
    pub(crate) go: OwnedFd,
}

/// A request as it travels to the helper (and from the helper to a spare child):
/// `u32 LE length | plan`.
pub(crate) fn frame(plan: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u32::try_from(plan.len())
        .map_err(|_| Error::InvalidSpec("sandbox plan larger than 4 GiB".into()))?;
    let mut frame = Vec::with_capacity(4 + plan.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(plan);
    Ok(frame)
}

pub(crate) fn send(
    sock: BorrowedFd<'_>,
    frame: &[u8],
    fds: [BorrowedFd<'_>; 3],
) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let pushed = control.push(SendAncillaryMessage::ScmRights(&fds));
    debug_assert!(pushed, "cmsg space is sized for three descriptors");
    // The descriptors travel with the first chunk; the rest is plain data.
    let mut sent = loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(frame)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(Errno::INTR) => continue,
            other => break other?,
        }
    };
    while sent < frame.len() {
        match rustix::net::send(sock, &frame[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
