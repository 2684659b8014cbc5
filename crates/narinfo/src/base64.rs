//! base64 as Nix 2.8 reads and writes it for keys and signatures.
//!
//! Writing is standard padded base64. Reading is 2.8's lenient decoder: decoding stops
//! at the first `=`, newlines are skipped, and leftover bits that do not make a whole
//! byte are dropped; any other character outside the standard alphabet is an error.

use ::base64::engine::general_purpose::STANDARD;
use ::base64::Engine;

pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn digit(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decode like 2.8's `base64Decode`. On error, returns the first offending character.
pub(crate) fn decode_lenient(s: &str) -> Result<Vec<u8>, char> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (pos, c) in s.bytes().enumerate() {
        match c {
            b'=' => break,
            b'\n' => continue,
            _ => {}
        }
        let Some(d) = digit(c) else {
            return Err(s[pos..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER));
        };
        acc = (acc << 6) | d;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_leniency() {
        for n in 0..70u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            let text = encode(&bytes);
            assert_eq!(decode_lenient(&text).unwrap(), bytes);
            // 2.8 also accepts a missing padding, embedded newlines and junk after '='.
            let unpadded = text.trim_end_matches('=');
            assert_eq!(decode_lenient(unpadded).unwrap(), bytes);
            let with_newline = format!("{unpadded}\n=junk!");
            assert_eq!(decode_lenient(&with_newline).unwrap(), bytes);
        }
    }

    #[test]
    fn bad_characters() {
        assert_eq!(decode_lenient("ab-c"), Err('-'));
        assert_eq!(decode_lenient("abé"), Err('é'));
        assert_eq!(decode_lenient("ab c"), Err(' '));
    }
}
