//! The status pipe from the helper and the sandboxed child back to the caller.
//!
//! Nix multiplexes its setup messages into the builder's pty (`\2\n` = ready,
//! `\1\n` + error). Here they go through a separate pipe per build, so the
//! log only ever carries the builder's own bytes: the caller reads frames
//! until end-of-file, which comes when the helper has dropped its copy and the
//! child has either executed the builder (the child's copy is close-on-exec)
//! or died.
//!
//! A frame is `tag (1 byte) | length (u32 LE) | payload`. Frames are far below
//! `PIPE_BUF`, so writes from the helper and the child never interleave.

use std::os::fd::RawFd;

/// The fd number of the status pipe in the sandboxed child.
pub(crate) const STATUS_FD: RawFd = 3;

/// Frame tags.
pub(crate) const TAG_PID: u8 = b'P';
pub(crate) const TAG_HELPER_ERROR: u8 = b'H';
pub(crate) const TAG_CHILD_ERROR: u8 = b'C';
pub(crate) const TAG_READY: u8 = b'R';

const MAX_PAYLOAD: usize = 3072;

/// Writes one frame to `fd`; long messages are cut to stay atomic.
pub(crate) fn send(fd: RawFd, tag: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    // A failed write means the caller is gone; there is nobody left to tell.
    let _ = crate::sys::write_raw(fd, &frame);
}

/// What the caller learnt from the status pipe.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub pid: Option<i32>,
    pub helper_error: Option<String>,
    pub child_error: Option<String>,
    pub ready: bool,
}

/// Parses everything read from the status pipe.
pub(crate) fn parse(mut data: &[u8]) -> Result<Report, String> {
    let mut report = Report::default();
    while !data.is_empty() {
        if data.len() < 5 {
            return Err("truncated status frame".into());
        }
        let tag = data[0];
        let len = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let payload = data.get(5..5 + len).ok_or("truncated status frame")?;
        data = &data[5 + len..];
        let text = || String::from_utf8_lossy(payload).into_owned();
        match tag {
            TAG_PID => {
                let b: [u8; 4] = payload.try_into().map_err(|_| "bad pid frame")?;
                report.pid = Some(i32::from_le_bytes(b));
            }
            TAG_HELPER_ERROR => {
                report.helper_error.get_or_insert_with(text);
            }
            TAG_CHILD_ERROR => {
                report.child_error.get_or_insert_with(text);
            }
            TAG_READY => report.ready = true,
            _ => return Err(format!("unknown status frame tag {tag}")),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_frames_and_keeps_first_error() {
        let mut data = frame(TAG_PID, &42i32.to_le_bytes());
        data.extend(frame(TAG_CHILD_ERROR, b"mounting /proc: EPERM"));
        data.extend(frame(TAG_CHILD_ERROR, b"second"));
        let r = parse(&data).unwrap();
        assert_eq!(r.pid, Some(42));
        assert_eq!(r.child_error.as_deref(), Some("mounting /proc: EPERM"));
        assert!(!r.ready);
        assert!(parse(&data[..data.len() - 1]).is_err());
    }
}
