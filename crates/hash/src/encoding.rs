//! The textual forms a hash can take, and the length-based decoding rule Nix uses.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{nix32, Algorithm, Error, Result};

/// How a hash is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base16,
    Nix32,
    Base64,
    /// `<algo>-<base64>`.
    Sri,
}

pub fn base16_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        // Nix prints lowercase but accepts uppercase.
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The character containing byte `pos` of `s` (which may be inside a multi-byte one).
fn char_at(s: &str, pos: usize) -> char {
    let mut start = pos.min(s.len());
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    s[start..].chars().next().unwrap_or('?')
}

pub fn base16_decode(s: &str) -> Result<Vec<u8>> {
    let bytes = s.as_bytes();
    let invalid = |pos: usize| Error::InvalidCharacter {
        hash: s.to_string(),
        pos,
        ch: char_at(s, pos),
        encoding: "base16",
    };
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid(bytes.len() - 1));
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for (pair_index, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or_else(|| invalid(pair_index * 2))?;
        let lo = hex_value(pair[1]).ok_or_else(|| invalid(pair_index * 2 + 1))?;
        out.push(hi << 4 | lo);
    }
    Ok(out)
}

pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Padded standard base64. Nix 2.8 also accepts a missing trailing `=` in SRI bodies,
/// so this tolerates absent padding; length rules are the caller's business.
pub fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|_| Error::InvalidBase64(s.to_string()))
}

/// Decode a bare (untyped, non-SRI) hash body for `algo`, choosing the encoding by its
/// length as Nix does: base16, nix32 or padded base64, anything else is an error.
pub fn decode_by_length(body: &str, algo: Algorithm, whole: &str) -> Result<Vec<u8>> {
    let len = body.len();
    if len == algo.base16_len() {
        base16_decode(body).map_err(|e| rename(e, whole))
    } else if len == algo.nix32_len() {
        nix32::decode(body.as_bytes(), algo.size()).map_err(|e| match e {
            nix32::DecodeError::InvalidChar(pos) => Error::InvalidCharacter {
                hash: whole.to_string(),
                pos: pos + (whole.len() - body.len()),
                ch: char_at(body, pos),
                encoding: "base-32",
            },
            nix32::DecodeError::Overflow => Error::Nix32Overflow(whole.to_string()),
        })
    } else if len == algo.base64_len() {
        let bytes = base64_decode(body).map_err(|e| rename(e, whole))?;
        if bytes.len() != algo.size() {
            return Err(Error::InvalidBase64(whole.to_string()));
        }
        Ok(bytes)
    } else {
        Err(Error::WrongLength {
            hash: whole.to_string(),
            len,
            algo,
        })
    }
}

/// Errors should name the string the user wrote, not the body we sliced out of it.
fn rename(err: Error, whole: &str) -> Error {
    match err {
        Error::InvalidCharacter {
            pos, ch, encoding, ..
        } => Error::InvalidCharacter {
            hash: whole.to_string(),
            pos,
            ch,
            encoding,
        },
        Error::InvalidBase64(_) => Error::InvalidBase64(whole.to_string()),
        other => other,
    }
}
