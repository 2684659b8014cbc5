use std::fmt;

use crate::encoding::{self, Encoding};
use crate::{nix32, Algorithm, Error, Result};

/// A digest together with its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algorithm: Algorithm,
    bytes: [u8; 64],
}

impl Hash {
    /// Wrap raw digest bytes; `None` if the length does not fit the algorithm.
    pub fn from_bytes(algorithm: Algorithm, digest: &[u8]) -> Option<Hash> {
        if digest.len() != algorithm.size() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Hash { algorithm, bytes })
    }

    /// The all-zero hash Nix substitutes for an empty `outputHash`.
    pub fn zero(algorithm: Algorithm) -> Hash {
        Hash {
            algorithm,
            bytes: [0u8; 64],
        }
    }

    /// Digest `data` in one go.
    pub fn digest(algorithm: Algorithm, data: impl AsRef<[u8]>) -> Hash {
        let mut hasher = crate::Hasher::new(algorithm);
        hasher.update(data.as_ref());
        hasher.finish()
    }

    pub fn sha256(data: impl AsRef<[u8]>) -> Hash {
        Hash::digest(Algorithm::Sha256, data)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.size()]
    }

    pub fn to_base16(&self) -> String {
        encoding::base16_encode(self.as_bytes())
    }

    pub fn to_nix32(&self) -> String {
        nix32::encode(self.as_bytes())
    }

    pub fn to_base64(&self) -> String {
        encoding::base64_encode(self.as_bytes())
    }

    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algorithm, self.to_base64())
    }

    /// The bare body in the given encoding (SRI includes its algorithm prefix).
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Base16 => self.to_base16(),
            Encoding::Nix32 => self.to_nix32(),
            Encoding::Base64 => self.to_base64(),
            Encoding::Sri => self.to_sri(),
        }
    }

    /// `<algo>:<body>`, e.g. `sha256:<nix32>` as narinfo and `nix-store -q --hash` print.
    pub fn to_typed(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Sri => self.to_sri(),
            other => format!("{}:{}", self.algorithm, self.encode(other)),
        }
    }

    /// Parse any form Nix 2.8 accepts: `<algo>:<body>`, SRI `<algo>-<base64>`, or a
    /// bare body when `expected` supplies the algorithm. When both the string and
    /// `expected` name an algorithm they must agree.
    pub fn parse(s: &str, expected: Option<Algorithm>) -> Result<Hash> {
        let (algorithm, body, sri) = if let Some((algo, body)) = s.split_once(':') {
            (Some(algo.parse::<Algorithm>()?), body, false)
        } else if let Some((algo, body)) = s.split_once('-') {
            (Some(algo.parse::<Algorithm>()?), body, true)
        } else {
            (None, s, false)
        };
        let algorithm = match (algorithm, expected) {
            (Some(given), Some(expected)) if given != expected => {
                return Err(Error::AlgorithmMismatch {
                    hash: s.to_string(),
                    given,
                    expected,
                })
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(Error::MissingAlgorithm(s.to_string())),
        };
        let bytes = if sri {
            let bytes = encoding::base64_decode(body)?;
            if bytes.len() != algorithm.size() {
                return Err(Error::WrongLength {
                    hash: s.to_string(),
                    len: body.len(),
                    algo: algorithm,
                });
            }
            bytes
        } else {
            encoding::decode_by_length(body, algorithm, s)?
        };
        Ok(Hash::from_bytes(algorithm, &bytes).expect("length checked above"))
    }

    /// Parse a string that must carry its own algorithm (`algo:…` or SRI), as narinfo
    /// hash fields must.
    pub fn parse_typed(s: &str) -> Result<Hash> {
        Hash::parse(s, None)
    }

    /// XOR-fold to `size` bytes (Nix's `compressHash`).
    pub fn fold(&self, size: usize) -> Vec<u8> {
        fold(self.as_bytes(), size)
    }
}

/// XOR-fold `bytes` into `size` bytes: `out[i % size] ^= bytes[i]`.
pub fn fold(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    if size == 0 {
        return out;
    }
    for (i, b) in bytes.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({}:{})", self.algorithm, self.to_base16())
    }
}

/// Displays as `<algo>:<nix32>`, the form Nix uses in narinfo and the database.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_nix32())
    }
}
