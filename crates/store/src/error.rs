use std::io;
use std::path::PathBuf;

use kiln_store_path::StorePath;

/// Errors from the local store. Variants carry the store path or file that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context} '{path}'")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("SQLite database '{path}'")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("current Nix store schema is version {found} in '{path}', but kiln only supports 10")]
    UnsupportedSchema { path: PathBuf, found: u32 },
    #[error("store directory '{0}' or one of its parents is a symlink")]
    SymlinkedStore(PathBuf),
    #[error("path '{0}' is not valid")]
    InvalidPath(String),
    #[error("cannot register '{path}': its reference '{reference}' is not valid")]
    MissingReference { path: String, reference: String },
    #[error("cannot create symlink '{}'; already exists", .0.display())]
    RootLinkExists(PathBuf),
    #[error(
        "creating a garbage collector root ({}) in the Nix store is forbidden \
         (are you running nix-build inside the store?)",
        .0.display()
    )]
    RootInStore(PathBuf),
    #[error(
        "'{}' changed while it was being replaced and could not be put back; \
         what was there is now '{}'",
        link.display(),
        kept.display()
    )]
    RootLinkDisplaced {
        link: PathBuf,
        kept: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cycle detected in the references of '{0}'")]
    ReferenceCycle(String),
    #[error("file '{0}' has an unsupported type")]
    UnsupportedFileType(PathBuf),
    #[error("'{0}' is not a regular file (flat hashing needs one)")]
    NotARegularFile(PathBuf),
    #[error("hash mismatch importing '{path}': expected {expected}, got {got}")]
    HashMismatch {
        path: String,
        expected: String,
        got: String,
    },
    #[error("NAR size mismatch importing '{path}': expected {expected}, got {got}")]
    SizeMismatch {
        path: String,
        expected: u64,
        got: u64,
    },
    #[error("content address of '{path}' does not match: it gives '{computed}'")]
    ContentAddressMismatch { path: String, computed: String },
    #[error("derivation '{drv}' has incorrect output '{got}', should be '{expected}'")]
    IncorrectDerivationOutput {
        drv: String,
        got: String,
        expected: String,
    },
    #[error("corrupt database row for '{path}': {why}")]
    CorruptRow { path: String, why: String },
    #[error(transparent)]
    StorePath(#[from] kiln_store_path::Error),
    #[error(transparent)]
    Hash(#[from] kiln_hash::Error),
    #[error(transparent)]
    Nar(#[from] kiln_nar::Error),
    #[error("derivation '{path}'")]
    Derivation {
        path: String,
        #[source]
        source: Box<kiln_derivation::Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach the file and what we were doing to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context,
            path: path.into(),
            source,
        })
    }
}

impl Error {
    pub(crate) fn derivation(path: impl Into<String>, source: kiln_derivation::Error) -> Error {
        Error::Derivation {
            path: path.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn missing_reference(path: &StorePath, reference: &StorePath) -> Error {
        Error::MissingReference {
            path: path.to_string(),
            reference: reference.to_string(),
        }
    }
}
