use std::path::PathBuf;

/// Why a derivation could not be realised. Messages follow Nix's where Nix has one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context} '{path}'")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] kiln_store::Error),
    #[error(transparent)]
    StorePath(#[from] kiln_store_path::Error),
    #[error(transparent)]
    Nar(#[from] kiln_nar::Error),
    #[error("sandbox for '{drv}'")]
    Sandbox {
        drv: String,
        #[source]
        source: kiln_sandbox::Error,
    },
    #[error("derivation '{drv}'")]
    Derivation {
        drv: String,
        #[source]
        source: Box<kiln_derivation::Error>,
    },
    #[error("builder for '{drv}' {outcome}{log_tail}")]
    BuilderFailed {
        drv: String,
        outcome: String,
        /// The last lines of the log, already formatted for display.
        log_tail: String,
    },
    #[error("builder for '{drv}' failed to produce output path for output '{output}' at '{path}'")]
    MissingOutput {
        drv: String,
        output: String,
        path: String,
    },
    #[error("suspicious ownership or permission on '{path}' for output '{output}'; rejecting this build output")]
    SuspiciousOutput { path: String, output: String },
    #[error("invalid ownership on file '{0}'")]
    InvalidOwnership(PathBuf),
    #[error("hash mismatch in fixed-output derivation '{drv}':\n  specified: {specified}\n     got:    {got}")]
    HashMismatch {
        drv: String,
        specified: String,
        got: String,
    },
    #[error("output '{path}' is not allowed to refer to the following paths:{paths}")]
    IllegalReference { path: String, paths: String },
    #[error("derivation contains an illegal reference specifier '{0}'")]
    BadReferenceSpecifier(String),
    #[error("path '{path}' is too large at {size} bytes; limit is {limit} bytes")]
    OutputTooLarge { path: String, size: u64, limit: u64 },
    #[error("closure of path '{path}' is too large at {size} bytes; limit is {limit} bytes")]
    ClosureTooLarge { path: String, size: u64, limit: u64 },
    #[error("attribute '{attr}' of derivation '{drv}' {why}")]
    BadAttribute {
        attr: String,
        drv: String,
        why: &'static str,
    },
    #[error("output path '{path}' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)")]
    FlatOutputNotAFile { path: String },
    #[error(
        "cycle detected in build of '{drv}' in the references of output '{a}' from output '{b}'"
    )]
    OutputCycle { drv: String, a: String, b: String },
    #[error("structured attributes: {0}")]
    StructuredAttrs(String),
    /// An attribute the build reads is malformed; the message names it and the
    /// derivation.
    #[error(transparent)]
    Attribute(Box<kiln_derivation::Error>),
    /// Nix's messages about `exportReferencesGraph`, which name the path but not the
    /// derivation; kiln adds it.
    #[error("{why} (in 'exportReferencesGraph' of '{drv}')")]
    ExportReferences { drv: String, why: String },
    #[error("derivation '{drv}' cannot be built here: {why}")]
    Unsupported { drv: String, why: String },
    #[error("a '{system}' with features {{{features}}} is required to build '{drv}', but I am a '{this_system}' with features {{{this_features}}}")]
    WrongPlatform {
        system: String,
        features: String,
        drv: String,
        this_system: String,
        this_features: String,
    },
    /// `max-jobs = 0` and no remote builders, as Nix words it.
    #[error("unable to start any build; either increase '--max-jobs' or enable remote builds.\nhttps://nixos.org/manual/nix/stable/advanced-topics/distributed-builds.html")]
    NoBuildSlots,
    #[error("interrupted by the user")]
    Interrupted,
    /// The scheduler gave up on the run (another build failed, without keep-going).
    #[error("build of '{drv}' was stopped because another build failed")]
    Cancelled { drv: String },
    #[error("claiming a build user: {0}")]
    BuildUser(#[source] kiln_sandbox::Error),
    #[error("no free build user in group 'nixbld' (all {0} are busy)")]
    NoBuildUser(usize),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// For [`kiln_derivation::ParsedAttrs`]' errors, which name the derivation
    /// themselves; other derivation errors go in [`Error::Derivation`].
    pub(crate) fn attribute(e: kiln_derivation::Error) -> Error {
        Error::Attribute(Box::new(e))
    }
}

pub(crate) trait IoContext<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context,
            path: path.into(),
            source,
        })
    }
}
