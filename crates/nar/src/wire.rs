//! The primitive encoding (Nix's `libutil/serialise.cc`): every token is `u64le(len) || bytes || zero
//! padding to a multiple of 8`. Encoding appends to a byte buffer; decoding goes
//! through [`Input`], which counts every byte consumed so errors can name an offset.
//!
//! [`Input`] never reads past what the grammar needs, so a NAR embedded in a larger
//! stream (the export framing) leaves the following bytes unread. Callers that read
//! from an unbuffered source should wrap it in a `BufReader`.

use std::io::{self, Read};

use crate::error::{render, Error};

pub(crate) const MAGIC: &[u8] = b"nix-archive-1";

/// Zero bytes for padding.
const ZEROS: [u8; 8] = [0; 8];

/// Number of zero bytes that follow a token of `len` bytes.
pub(crate) fn padding_len(len: u64) -> usize {
    // `len % 8` is < 8, so the cast cannot truncate.
    ((8 - len % 8) % 8) as usize
}

pub(crate) fn push_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(&n.to_le_bytes());
}

pub(crate) fn push_padding(buf: &mut Vec<u8>, len: u64) {
    buf.extend_from_slice(&ZEROS[..padding_len(len)]);
}

pub(crate) fn push_token(buf: &mut Vec<u8>, bytes: &[u8]) {
    push_u64(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
    push_padding(buf, bytes.len() as u64);
}

/// A failure at the wire level; the caller adds the archive path (or not, for framing).
#[derive(Debug)]
pub(crate) enum WireError {
    Truncated(u64),
    NonZeroPadding(u64),
    Read(u64, io::Error),
}

impl WireError {
    /// Converts to [`Error`], attributing the failure to the archive path `path`.
    pub(crate) fn at(self, path: &[u8]) -> Error {
        match self {
            WireError::Truncated(offset) => Error::Truncated {
                offset,
                path: render(path),
            },
            WireError::NonZeroPadding(offset) => Error::NonZeroPadding {
                offset,
                path: render(path),
            },
            WireError::Read(offset, source) => Error::Read { offset, source },
        }
    }

    /// Converts to [`Error`] for failures in the export framing around NARs.
    pub(crate) fn framing(self) -> Error {
        match self {
            WireError::Truncated(offset) => Error::BadExport {
                offset,
                problem: "unexpected end of input".into(),
            },
            WireError::NonZeroPadding(offset) => Error::BadExport {
                offset,
                problem: "non-zero padding".into(),
            },
            WireError::Read(offset, source) => Error::Read { offset, source },
        }
    }
}

pub(crate) type WireResult<T> = Result<T, WireError>;

/// A byte source that tracks its offset and decodes tokens.
#[derive(Debug)]
pub(crate) struct Input<R> {
    inner: R,
    offset: u64,
    /// Holds the most recent bounded token; reused so parsing does not allocate.
    token: Vec<u8>,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R, offset: u64) -> Self {
        Input {
            inner,
            offset,
            token: Vec::new(),
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying reader, for a nested parser that tracks its own offset; call
    /// [`set_offset`](Self::set_offset) with its final offset afterwards.
    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// One `read` call (retrying on EINTR); 0 means end of input.
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> WireResult<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Read(self.offset, e)),
            }
        }
    }

    pub(crate) fn read_exact(&mut self, mut buf: &mut [u8]) -> WireResult<()> {
        while !buf.is_empty() {
            match self.read_some(buf)? {
                0 => return Err(WireError::Truncated(self.offset)),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    pub(crate) fn read_u64(&mut self) -> WireResult<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads and checks the padding after a token of `len` bytes.
    pub(crate) fn read_padding(&mut self, len: u64) -> WireResult<()> {
        let mut pad = [0u8; 8];
        let pad = &mut pad[..padding_len(len)];
        let start = self.offset;
        self.read_exact(pad)?;
        match pad.iter().position(|&b| b != 0) {
            Some(i) => Err(WireError::NonZeroPadding(start + i as u64)),
            None => Ok(()),
        }
    }

    /// Reads `len` bytes plus padding; `len` must already be bounded by the caller.
    pub(crate) fn read_bytes(&mut self, len: usize) -> WireResult<&[u8]> {
        let mut token = std::mem::take(&mut self.token);
        token.clear();
        token.resize(len, 0);
        let res = self
            .read_exact(&mut token)
            .and_then(|()| self.read_padding(len as u64));
        self.token = token;
        res.map(|()| &self.token[..])
    }

    /// The token most recently read by [`read_bytes`](Self::read_bytes).
    pub(crate) fn last_token(&self) -> &[u8] {
        &self.token
    }

    /// Discards `n` bytes.
    pub(crate) fn skip(&mut self, mut n: u64, scratch: &mut Vec<u8>) -> WireResult<()> {
        if scratch.is_empty() {
            scratch.resize(64 * 1024, 0);
        }
        while n > 0 {
            let want = n.min(scratch.len() as u64) as usize;
            match self.read_some(&mut scratch[..want])? {
                0 => return Err(WireError::Truncated(self.offset)),
                got => n -= got as u64,
            }
        }
        Ok(())
    }

    /// True if the input is exhausted. Consumes one byte otherwise.
    pub(crate) fn at_eof(&mut self) -> WireResult<bool> {
        let mut b = [0u8; 1];
        Ok(self.read_some(&mut b)? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_encoding_pads_to_eight() {
        let mut buf = Vec::new();
        push_token(&mut buf, b"");
        assert_eq!(buf, [0u8; 8]);
        buf.clear();
        push_token(&mut buf, b"(");
        assert_eq!(buf, b"\x01\0\0\0\0\0\0\0(\0\0\0\0\0\0\0");
        buf.clear();
        push_token(&mut buf, b"contents");
        assert_eq!(buf.len(), 16);
        for len in 0..=17u64 {
            assert_eq!((len + padding_len(len) as u64) % 8, 0);
            assert!(padding_len(len) < 8);
        }
    }

    #[test]
    fn input_reports_offsets() {
        let good = b"\x03\0\0\0\0\0\0\0abc\0\0\0\0\0";
        let mut input = Input::new(&good[..], 0);
        let len = input.read_u64().unwrap();
        assert_eq!(input.read_bytes(len as usize).unwrap(), b"abc");
        assert_eq!(input.offset(), 16);
        let data = b"\x03\0\0\0\0\0\0\0abc\0\0\0\0\x01";
        let mut input = Input::new(&data[..], 100);
        input.read_u64().unwrap();
        match input.read_bytes(3) {
            Err(WireError::NonZeroPadding(off)) => assert_eq!(off, 115),
            other => panic!("{other:?}"),
        }
        let mut input = Input::new(&data[..5], 0);
        match input.read_u64() {
            Err(WireError::Truncated(off)) => assert_eq!(off, 5),
            other => panic!("{other:?}"),
        }
    }
}
