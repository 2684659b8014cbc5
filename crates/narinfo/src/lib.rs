//! kiln-narinfo: layer 3, above kiln-hash and kiln-store-path. Binary-cache metadata
//! as Nix 2.8 reads and writes it (Nix's `libstore/nar-info.cc`):
//!
//! * [`NarInfo`]: the `<hashpart>.narinfo` file: parsing with 2.8's reader rules and
//!   printing byte for byte as 2.8 writes it;
//! * [`fingerprint()`]: the string a binary-cache signature covers;
//! * [`SecretKey`], [`PublicKey`], [`PublicKeys`]: ed25519 keys in Nix's `name:base64`
//!   form, and [`verify_detached`] for `name:base64sig` signature strings;
//! * [`NarInfo::is_content_addressed`]: the check that lets a path whose `ca` claim
//!   recomputes to its own path be trusted without any signature.
//!
//! Invariants:
//!
//! * Parsing never panics, whatever the input; every error names what was wrong and,
//!   for narinfo text, the line number and key ([`Error`]).
//! * For every narinfo Nix 2.8 can write, `parse(text).to_text() == text`. References
//!   and signatures live in sorted sets, so printing is canonical whatever order the
//!   input had.
//! * A [`NarInfo`] does not know its store directory: every operation that needs full
//!   paths (parsing, printing, fingerprints, signing, the `ca` check) takes a
//!   [`StoreDir`](kiln_store_path::StoreDir).
//! * A [`SecretKey`] always holds a seed and the public key derived from it; text whose
//!   public half does not match its seed is refused rather than producing signatures
//!   that never verify.
//!
//! ```
//! use kiln_narinfo::{NarInfo, PublicKeys, SecretKey};
//! use kiln_store_path::StoreDir;
//!
//! let text = "StorePath: /nix/store/58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout\n\
//!     URL: nar/0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1.nar\n\
//!     Compression: none\n\
//!     FileHash: sha256:0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1\n\
//!     FileSize: 216\n\
//!     NarHash: sha256:0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1\n\
//!     NarSize: 216\n\
//!     References: 58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt\n\
//!     Deriver: rqr0qnzyqnd1c7y3g0vfcc4k7xr7dq0y-iaout.drv\n";
//! let dir = StoreDir::default();
//! let mut info = NarInfo::parse(&dir, text)?;
//! assert_eq!(info.to_text(&dir), text);
//!
//! let key = SecretKey::parse("test-key-1:WJ9Rd+//x/ALL+9grDCy1MHoxoXZo7NXL0ZzkAb19XyN7ZRQhpJ/36vv0TCswT5spELANqWdTaanS1nKl+zcrg==")?;
//! info.sign(&dir, &key)?;
//! let trusted: PublicKeys = key.to_public_key().into();
//! assert_eq!(info.count_valid_signatures(&dir, &trusted)?, 1);
//! # Ok::<(), kiln_narinfo::Error>(())
//! ```

mod base64;
mod fingerprint;
mod keys;
mod narinfo;
mod parse;
mod signature;

pub use fingerprint::fingerprint;
pub use keys::{KeyKind, PublicKey, PublicKeys, SecretKey};
pub use narinfo::{compression_extension, NarInfo, Trust};
pub use signature::verify_detached;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Text remained at `line` but no `:` followed it (Nix: "expecting ':'").
    #[error("narinfo line {line}: expected 'Key: value', but no ':' follows")]
    MissingColon { line: usize },

    /// The value of `key` (starting on `line`) is not terminated by a newline.
    #[error("narinfo line {line}: value of '{key}' is not terminated by a newline")]
    MissingNewline { line: usize, key: String },

    /// The value starts inside a multi-byte UTF-8 character (the value begins two bytes
    /// after the `:`, whatever those bytes are).
    #[error("narinfo line {line}: value of '{key}' does not start at a character boundary")]
    NotUtf8 { line: usize, key: String },

    /// A `FileHash`/`NarHash` value without a type prefix or with a bad body.
    #[error("narinfo line {line}: bad hash in '{key}'")]
    BadHash {
        line: usize,
        key: String,
        #[source]
        source: kiln_hash::Error,
    },

    /// A `StorePath`, `References` or `Deriver` value that is not a valid store path.
    #[error("narinfo line {line}: bad store path in '{key}'")]
    BadStorePath {
        line: usize,
        key: String,
        #[source]
        source: kiln_store_path::Error,
    },

    /// A `CA` value that is not a content address.
    #[error("narinfo line {line}: bad content address in '{key}'")]
    BadContentAddress {
        line: usize,
        key: String,
        #[source]
        source: kiln_store_path::Error,
    },

    /// A `FileSize`/`NarSize` value that is not an unsigned 64-bit decimal.
    #[error("narinfo line {line}: '{key}' value '{value}' is not an unsigned 64-bit integer")]
    BadNumber {
        line: usize,
        key: String,
        value: String,
    },

    /// A second `References` line after a non-empty one, or a second non-empty `CA`.
    #[error("narinfo line {line}: duplicate '{key}' line")]
    Duplicate { line: usize, key: String },

    /// `StorePath`, `NarHash` or `URL` (non-empty) is absent.
    #[error("narinfo is corrupt: required field '{key}' is missing")]
    MissingField { key: &'static str },

    /// `NarSize` is absent or zero.
    #[error("narinfo is corrupt: 'NarSize' is missing or zero")]
    ZeroNarSize,

    /// 2.8 refuses to fingerprint a path whose NAR size is unknown (0).
    #[error("cannot compute the fingerprint of '{path}' because its NAR size is not known")]
    UnknownNarSize { path: String },

    /// Key text without a `:` between name and key material.
    #[error("{kind} key is corrupt: expected '<name>:<base64>', but there is no ':'")]
    KeyMissingColon { kind: KeyKind },

    /// Key text (or a name given to a constructor) with an empty name.
    #[error("{kind} key is corrupt: the key name is empty")]
    KeyEmptyName { kind: KeyKind },

    /// A key name given to a constructor that contains `:`.
    #[error("{kind} key name '{name}' contains ':'")]
    KeyNameHasColon { kind: KeyKind, name: String },

    /// Key text whose part after the `:` is empty.
    #[error("{kind} key '{name}' is corrupt: the key material is empty")]
    KeyEmpty { kind: KeyKind, name: String },

    /// Key material that is not base64.
    #[error("{kind} key '{name}' is corrupt: invalid base64 character {ch:?}")]
    KeyBadBase64 {
        kind: KeyKind,
        name: String,
        ch: char,
    },

    /// Key material of the wrong size (64 bytes secret, 32 bytes public).
    #[error("{kind} key '{name}' is not valid: {len} bytes, expected {expected}")]
    KeyWrongLength {
        kind: KeyKind,
        name: String,
        len: usize,
        expected: usize,
    },

    /// A secret key whose second half is not the public key of its first half (seed).
    #[error("secret key '{name}' is not valid: its public half does not match its seed")]
    SecretKeyMismatch { name: String },

    /// A signature from a known key whose part after the `:` is not base64.
    #[error("signature by key '{name}' is not valid: invalid base64 character {ch:?}")]
    SignatureBadBase64 { name: String, ch: char },

    /// A signature from a known key that does not decode to 64 bytes.
    #[error("signature by key '{name}' is not valid: {len} bytes, expected 64")]
    SignatureWrongLength { name: String, len: usize },

    /// A `ca` claim from which no store path can be computed (e.g. a flat or non-sha256
    /// fixed-output address with references).
    #[error("content address of '{path}' cannot produce a store path")]
    ContentAddressPath {
        path: String,
        #[source]
        source: kiln_store_path::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
