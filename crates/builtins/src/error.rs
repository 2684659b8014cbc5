//! What can go wrong in a builtin, worded as Nix 2.8 words it.

use std::path::PathBuf;

/// A builtin's failure. `Display` is the plain message; [`Error::log_line`] is the
/// line Nix's builtins write to the build log, with its colours.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", self.render(false))]
    MissingAttribute(String),
    #[error("{}", self.render(false))]
    NotText(String),
    #[error("{}", self.render(false))]
    Unsupported(String),
    /// A download that failed for good; `reason` as curl would give it where known.
    #[error("{}", self.render(false))]
    Download { url: String, reason: String },
    /// A system call on `path` failed while doing `what` (Nix's `SysError`). The
    /// message ends with the system's text as Nix's does, so the I/O error is part of
    /// it rather than a separate cause (which would print it twice).
    #[error("{}", self.render(false))]
    Io {
        what: &'static str,
        path: PathBuf,
        errno: std::io::Error,
    },
    #[error("{}", self.render(false))]
    NotExecutable {
        path: PathBuf,
        errno: std::io::Error,
    },
    #[error(transparent)]
    Nar(#[from] kiln_nar::Error),
    /// The `derivations` attribute of `builtin:buildenv` does not have Nix's layout.
    #[error("{}", self.render(false))]
    BadPackageList(String),
    #[error("{}", self.render(false))]
    CollisionWithFile { dir: PathBuf, file: PathBuf },
    #[error("{}", self.render(false))]
    FileOverDirectory { file: PathBuf, dir: PathBuf },
    #[error("{}", self.render(false))]
    SamePriority {
        new: PathBuf,
        old: PathBuf,
        priority: i32,
    },
    #[error("{}", self.render(false))]
    ChannelNotOneFile(String),
    #[error("{}", self.render(false))]
    Tarball { src: String, reason: String },
}

const RED_BOLD: &str = "\x1b[31;1m";
const MAGENTA_BOLD: &str = "\x1b[35;1m";
const RESET: &str = "\x1b[0m";

impl Error {
    /// The message as Nix logs it: `error:` in red and, where Nix formats the message
    /// with highlighted arguments, those arguments in magenta.
    pub fn log_line(&self) -> String {
        format!("{RED_BOLD}error:{RESET} {}", self.render(true))
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            what,
            path: path.into(),
            errno: source,
        }
    }

    fn render(&self, colour: bool) -> String {
        let hl = |s: &dyn std::fmt::Display| {
            if colour {
                format!("{MAGENTA_BOLD}{s}{RESET}")
            } else {
                s.to_string()
            }
        };
        match self {
            Error::MissingAttribute(name) => format!("attribute '{}' missing", hl(name)),
            Error::NotText(name) => format!("attribute '{}' is not valid UTF-8", hl(name)),
            Error::Unsupported(name) => format!("unsupported builtin builder '{}'", hl(name)),
            Error::Download { url, reason } => format!("unable to download '{url}': {reason}"),
            Error::Io { what, path, errno } => {
                format!("{what} '{}': {}", hl(&path.display()), strerror(errno))
            }
            Error::NotExecutable { path, errno } => format!(
                "making '{}' executable: {}",
                hl(&path.display()),
                strerror(errno)
            ),
            // The log line is all the user sees of a builtin's failure: the NAR error's
            // causes go in it.
            Error::Nar(e) => chain(e),
            Error::BadPackageList(why) => {
                format!("attribute '{}' is malformed: {why}", hl(&"derivations"))
            }
            Error::CollisionWithFile { dir, file } => format!(
                "collision between '{}' and non-directory '{}'",
                hl(&dir.display()),
                hl(&file.display())
            ),
            Error::FileOverDirectory { file, dir } => format!(
                "collision between non-directory '{}' and directory '{}'",
                hl(&file.display()),
                hl(&dir.display())
            ),
            Error::SamePriority { new, old, priority } => format!(
                "packages '{}' and '{}' have the same priority {}; use 'nix-env --set-flag \
                 priority NUMBER INSTALLED_PKGNAME' to change the priority of one of the \
                 conflicting packages (0 being the highest priority)",
                hl(&new.display()),
                hl(&old.display()),
                hl(priority)
            ),
            Error::ChannelNotOneFile(src) => {
                format!("channel tarball '{}' contains more than one file", hl(src))
            }
            Error::Tarball { src, reason } => {
                format!("unpacking channel tarball '{}': {reason}", hl(src))
            }
        }
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The C library's text for the error, without Rust's " (os error N)" suffix, as
/// Nix prints it.
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_colour_what_nix_colours() {
        assert_eq!(
            Error::MissingAttribute("url".into()).log_line(),
            "\x1b[31;1merror:\x1b[0m attribute '\x1b[35;1murl\x1b[0m' missing"
        );
        assert_eq!(
            Error::Unsupported("foo".into()).to_string(),
            "unsupported builtin builder 'foo'"
        );
    }

    #[test]
    fn io_errors_read_like_nix_sys_errors() {
        let e = Error::io(
            "opening file",
            "/x",
            std::io::Error::from_raw_os_error(libc_enoent()),
        );
        assert_eq!(
            e.to_string(),
            "opening file '/x': No such file or directory"
        );
    }

    fn libc_enoent() -> i32 {
        2
    }
}
