//! kiln-hash: the bottom layer. Digests (md5, sha1, sha256, sha512) and the textual
//! encodings Nix uses for them (nix32, base16, base64, SRI), plus the 160-bit XOR
//! folding that turns a sha256 into a store-path hash part.
//!
//! Invariants: a [`Hash`] always holds exactly `algorithm.size()` bytes; every printer
//! emits the canonical lowercase form Nix prints; every parser accepts exactly what
//! Nix 2.8 accepts for that form (Nix's `libutil/hash.cc`, `Hash::parseAny`).

mod algorithm;
mod digest;
pub mod encoding;
mod hash;
pub mod nix32;

pub use algorithm::Algorithm;
pub use digest::{Hasher, HashingWriter};
pub use encoding::Encoding;
pub use hash::{fold, Hash};

/// Errors from parsing algorithm names and hash strings.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unknown hash algorithm '{0}' (expected md5, sha1, sha256 or sha512)")]
    UnknownAlgorithm(String),
    #[error("hash '{hash}' has wrong length {len} for hash type '{algo}'")]
    WrongLength {
        hash: String,
        len: usize,
        algo: Algorithm,
    },
    #[error("invalid character {ch:?} at position {pos} in {encoding} hash '{hash}'")]
    InvalidCharacter {
        hash: String,
        pos: usize,
        ch: char,
        encoding: &'static str,
    },
    #[error("invalid base-32 hash '{0}': value does not fit the hash size")]
    Nix32Overflow(String),
    #[error("invalid base64 in hash '{0}'")]
    InvalidBase64(String),
    #[error("hash '{hash}' has algorithm '{given}', but '{expected}' was expected")]
    AlgorithmMismatch {
        hash: String,
        given: Algorithm,
        expected: Algorithm,
    },
    #[error("hash '{0}' does not include a type, nor is the type otherwise known from context")]
    MissingAlgorithm(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
