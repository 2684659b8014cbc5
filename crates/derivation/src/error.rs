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
    #[error("invalid store path '{path}' at byte {offset}")]
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

    #[error("invalid derivation name '{name}'")]
    BadName {
        name: String,
        #[source]
        source: kiln_store_path::Error,
    },

    /// An output path could not be computed (typically an output name that makes an
    /// invalid store path name).
    #[error("cannot compute the path of output '{output}' of derivation '{name}'")]
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
    #[error("in input derivation '{drv_path}'")]
    Input {
        drv_path: String,
        #[source]
        source: Box<Error>,
    },

    /// `__json` is not JSON (Nix's wording).
    #[error("cannot process __json attribute of '{drv}'")]
    StructuredAttrs {
        drv: String,
        #[source]
        source: serde_json::Error,
    },

    /// An attribute the builder side reads has the wrong type (Nix's wording);
    /// `expected` is "a string", "a Boolean" or "a list of strings".
    #[error("attribute '{attr}' of derivation '{drv}' must be {expected}")]
    BadAttribute {
        attr: String,
        drv: String,
        expected: &'static str,
    },

    /// The caller's resolver could not provide an input derivation; its own error
    /// (a store's, typically) is kept whole as the cause.
    #[error("cannot look up input derivation '{path}'")]
    Lookup {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    #[error("cannot read '{path}'")]
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

impl Error {
    /// An input derivation `path` that the resolver could not provide, because of
    /// `source`.
    pub fn lookup(
        path: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error::Lookup {
            path: path.into(),
            source: source.into(),
        }
    }
}

fn describe_found(found: Option<u8>) -> String {
    match found {
        None => "end of input".to_string(),
        Some(b) if b.is_ascii_graphic() || b == b' ' => format!("'{}'", b as char),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
