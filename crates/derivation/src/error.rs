//! The crate's single error type. Every variant carries what a person needs to find
//! the problem: a byte offset into the `.drv` text, an output or field name, or a path.

/// Errors from parsing, printing, hashing and checking derivations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ATerm text does not follow the grammar.
    #[error("expected {expected} at byte {offset}, found {}", describe_found(*.found))]
    Syntax {
        offset: usize,
        expected: &'static str,
        /// The byte that was there instead, `None` at the end of the input.
        found: Option<u8>,
    },

    #[error("unknown derivation ATerm format version '{version}' at byte {offset}")]
    UnknownVersion { offset: usize, version: String },

    #[error("data after the end of the derivation at byte {offset}")]
    TrailingData { offset: usize },

    #[error("{field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize, field: &'static str },

    /// A path in a store-path position is not `STORE/<hash>-<name>` for this store.
    #[error("invalid store path '{path}' at byte {offset}: {source}")]
    BadStorePath {
        offset: usize,
        path: String,
        #[source]
        source: kiln_store_path::Error,
    },

    /// A key that must be unique appears twice (Nix would silently pick one of them).
    #[error("duplicate {what} '{key}' at byte {offset}")]
    Duplicate {
        offset: usize,
        what: &'static str,
        key: String,
    },

    /// An output tuple whose fields do not fit any output kind (formats.md §4.5).
    #[error("output '{output}' at byte {offset}: {reason}")]
    BadOutput {
        offset: usize,
        output: String,
        reason: String,
    },

    /// The outputs do not form a valid derivation type ("can't mix derivation output
    /// types" and friends).
    #[error("derivation '{name}': {reason}")]
    DerivationType { name: String, reason: &'static str },

    #[error("invalid derivation name '{name}': {source}")]
    BadName {
        name: String,
        #[source]
        source: kiln_store_path::Error,
    },

    /// An output path could not be computed (typically an output name that makes an
    /// invalid store path name).
    #[error("cannot compute the path of output '{output}' of derivation '{name}': {source}")]
    OutputPath {
        name: String,
        output: String,
        #[source]
        source: kiln_store_path::Error,
    },

    #[error("output '{output}' of derivation '{name}' has path '{given}', but it should be '{computed}'")]
    OutputPathMismatch {
        name: String,
        output: String,
        given: String,
        computed: String,
    },

    #[error("output '{output}' of derivation '{name}' has path '{given}', but the derivation is deferred (it depends on a content-addressed, impure or dynamic input), so the path cannot be known yet")]
    DeferredOutputHasPath {
        name: String,
        output: String,
        given: String,
    },

    #[error("environment variable '{var}' of derivation '{name}' is '{given}', but it should be '{expected}'")]
    EnvMismatch {
        name: String,
        var: String,
        given: String,
        expected: String,
    },

    /// An `inputDrvs` entry asks for an output the input derivation does not have.
    #[error(
        "derivation '{name}' wants output '{output}' of '{drv_path}', which has no such output"
    )]
    MissingInputOutput {
        name: String,
        drv_path: String,
        output: String,
    },

    #[error("derivation '{drv_path}' depends on itself")]
    Cycle { drv_path: String },

    /// A failure while obtaining or processing an input derivation.
    #[error("in input derivation '{drv_path}': {source}")]
    Input {
        drv_path: String,
        #[source]
        source: Box<Error>,
    },

    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The JSON form of a derivation is malformed; `field` is a dotted path such as
    /// `outputs.out.hashAlgo`.
    #[error("JSON field '{field}': {message}")]
    Json { field: String, message: String },

    #[error("invalid derived path '{input}': {reason}")]
    DerivedPath { input: String, reason: String },

    #[error("invalid derivation output id '{input}': {reason}")]
    DrvOutputId { input: String, reason: String },
}

fn describe_found(found: Option<u8>) -> String {
    match found {
        None => "end of input".to_string(),
        Some(b) if b.is_ascii_graphic() || b == b' ' => format!("'{}'", b as char),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
