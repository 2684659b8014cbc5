//! The crate's error type. Every variant names the path, mount or syscall that
//! failed, because "Operation not permitted" alone is useless in a build log.

use std::io;
use std::path::PathBuf;

/// Errors of [`crate::prepare`], [`crate::Sandboxes`] and [`crate::cleanup`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be honoured as given (relative paths, NUL bytes, ...).
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    /// A filesystem operation on the host side failed.
    #[error("{what} '{path}': {error}")]
    Fs {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    /// A syscall that is not about one path failed on the host side.
    #[error("{what}: {error}")]
    Sys {
        what: &'static str,
        error: io::Error,
    },

    /// The helper executable could not be started.
    #[error("cannot start the sandbox helper '{path}': {error}")]
    SpawnHelper { path: PathBuf, error: io::Error },

    /// The helper (outside the namespaces) failed; the message names the step.
    #[error("sandbox helper failed: {0}")]
    Helper(String),

    /// The sandboxed process failed before `execve` of the builder; the message
    /// names the mount, path or syscall, like Nix's "while setting up the
    /// build environment" errors.
    #[error("while setting up the build environment: {0}")]
    Setup(String),

    /// The leftover processes of a build user could not be killed.
    #[error("cannot kill the processes of uid {uid}: {error}")]
    KillUser { uid: u32, error: io::Error },

    /// Writing the builder's output to the caller's log failed.
    #[error("writing the build log: {0}")]
    Log(io::Error),
}

impl Error {
    pub(crate) fn fs(
        what: &'static str,
        path: impl Into<PathBuf>,
        error: impl Into<io::Error>,
    ) -> Error {
        Error::Fs {
            what,
            path: path.into(),
            error: error.into(),
        }
    }

    pub(crate) fn sys(what: &'static str, error: impl Into<io::Error>) -> Error {
        Error::Sys {
            what,
            error: error.into(),
        }
    }
}

/// `strerror` text without std's " (os error N)" suffix, as Nix prints it.
pub(crate) fn errno_text(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
