//! Nix's base-32: alphabet `0-9a-z` minus `e o u t`, the byte string read as a
//! little-endian integer and printed most significant digit first. Not RFC 4648.

/// The 32 symbols; a digit's value is its index.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Number of nix32 characters for `n` bytes: `ceil(8n/5)`.
pub fn encoded_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (8 * n - 1) / 5 + 1
    }
}

/// Inverse of [`ALPHABET`]: 0xff for bytes outside the alphabet.
const DECODE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 32 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

pub fn is_nix32_char(b: u8) -> bool {
    DECODE[b as usize] != 0xff
}

pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for k in 0..len {
        let bitpos = 5 * (len - 1 - k);
        let (i, j) = (bitpos / 8, bitpos % 8);
        let mut v = (bytes[i] as u32) >> j;
        if i + 1 < bytes.len() {
            v |= (bytes[i + 1] as u32) << (8 - j);
        }
        out.push(ALPHABET[(v & 31) as usize] as char);
    }
    out
}

/// Why a nix32 string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Byte offset (from the left) of a character outside the alphabet.
    InvalidChar(usize),
    /// A digit sets a bit beyond the output size.
    Overflow,
}

/// Decode into exactly `size` bytes. The string must be `encoded_len(size)` long
/// (callers check the length first, since Nix picks the encoding by length).
pub fn decode(s: &[u8], size: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; size];
    for (index, &c) in s.iter().rev().enumerate() {
        let digit = DECODE[c as usize];
        if digit == 0xff {
            return Err(DecodeError::InvalidChar(s.len() - 1 - index));
        }
        let bitpos = index * 5;
        let (i, j) = (bitpos / 8, bitpos % 8);
        if i >= size {
            if digit != 0 {
                return Err(DecodeError::Overflow);
            }
            continue;
        }
        out[i] |= digit << j;
        let carry = (digit as u16) >> (8 - j);
        if carry != 0 {
            if i + 1 >= size {
                return Err(DecodeError::Overflow);
            }
            out[i + 1] |= carry as u8;
        }
    }
    Ok(out)
}
