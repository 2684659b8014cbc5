//! The crate's single error type.
//!
//! Parse errors carry `offset`, the byte position in the NAR (or export stream) where
//! the offending token or byte starts, and `path`, the archive path of the node being
//! read, rendered for humans by [`render`] (`/` is the root). Filesystem errors carry
//! the filesystem path instead.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing, reading, restoring or listing a NAR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- malformed input (reader) ----
    #[error("not a Nix archive: bad magic at byte {offset}")]
    BadMagic { offset: u64 },

    #[error("non-zero padding at byte {offset} in '{path}'")]
    NonZeroPadding { offset: u64, path: String },

    #[error("NAR is truncated: unexpected end of input at byte {offset} in '{path}'")]
    Truncated { offset: u64, path: String },

    #[error("trailing data after the end of the archive at byte {offset}")]
    TrailingData { offset: u64 },

    #[error("expected {expected}, found {found} at byte {offset} in '{path}'")]
    UnexpectedToken {
        offset: u64,
        path: String,
        expected: &'static str,
        found: String,
    },

    #[error("unknown node type {found} at byte {offset} in '{path}'")]
    UnknownNodeType {
        offset: u64,
        path: String,
        found: String,
    },

    #[error("node has two 'type' fields at byte {offset} in '{path}'")]
    DuplicateType { offset: u64, path: String },

    #[error("regular file has no 'contents' field at byte {offset} in '{path}'")]
    MissingContents { offset: u64, path: String },

    #[error("regular file has a second 'contents' field at byte {offset} in '{path}'")]
    RepeatedContents { offset: u64, path: String },

    #[error("'executable' after 'contents' (not canonical) at byte {offset} in '{path}'")]
    ExecutableAfterContents { offset: u64, path: String },

    #[error("'executable' must be followed by an empty string, found {len} bytes at byte {offset} in '{path}'")]
    ExecutableNotEmpty { offset: u64, path: String, len: u64 },

    #[error("symlink has no 'target' field at byte {offset} in '{path}'")]
    MissingTarget { offset: u64, path: String },

    #[error("symlink target is empty at byte {offset} in '{path}'")]
    EmptyTarget { offset: u64, path: String },

    #[error("symlink target contains a NUL byte at byte {offset} in '{path}'")]
    TargetContainsNul { offset: u64, path: String },

    #[error(
        "symlink target of {len} bytes exceeds the limit of {limit} at byte {offset} in '{path}'"
    )]
    TargetTooLong {
        offset: u64,
        path: String,
        len: u64,
        limit: usize,
    },

    #[error("directory entry has 'node' before 'name' at byte {offset} in '{path}'")]
    NodeBeforeName { offset: u64, path: String },

    #[error("invalid entry name {name}: {reason} at byte {offset} in '{path}'")]
    InvalidName {
        offset: u64,
        path: String,
        name: String,
        reason: &'static str,
    },

    #[error("entry name of {len} bytes exceeds the limit of {limit} at byte {offset} in '{path}'")]
    NameTooLong {
        offset: u64,
        path: String,
        len: u64,
        limit: usize,
    },

    #[error(
        "directory entries not sorted: {name} comes after {previous} at byte {offset} in '{path}'"
    )]
    UnsortedEntry {
        offset: u64,
        path: String,
        name: String,
        previous: String,
    },

    #[error("duplicate directory entry {name} at byte {offset} in '{path}'")]
    DuplicateEntry {
        offset: u64,
        path: String,
        name: String,
    },

    #[error("directories nested deeper than {limit} levels at byte {offset} in '{path}'")]
    TooDeep {
        offset: u64,
        path: String,
        limit: usize,
    },

    #[error("error reading input at byte {offset}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },

    #[error("the NAR reader cannot continue after an error")]
    ReaderFailed,

    // ---- export framing ----
    #[error("bad export stream: {problem} at byte {offset}")]
    BadExport { offset: u64, problem: String },

    // ---- producing NARs ----
    #[error("error writing output")]
    Write(#[source] io::Error),

    #[error("NAR writer misuse: cannot {action} {state}")]
    WriterMisuse {
        action: &'static str,
        state: &'static str,
    },

    #[error("contents of '{path}' have {actual} bytes, but {declared} were declared")]
    ContentsLength {
        path: String,
        declared: u64,
        actual: u64,
    },

    #[error("file '{}' has an unsupported type", path.display())]
    UnsupportedFileType { path: PathBuf },

    #[error("file '{}' changed while it was being archived", path.display())]
    FileChanged { path: PathBuf },

    // ---- the filesystem ----
    #[error("cannot {op} '{}'", path.display())]
    Fs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("restore target '{}' already exists", path.display())]
    TargetExists { path: PathBuf },

    // ---- looking up members ----
    #[error("path '{path}' does not exist in the archive")]
    MemberNotFound { path: String },

    #[error("path '{path}' is not a regular file in the archive")]
    NotARegularFile { path: String },
}

impl Error {
    /// The byte offset in the NAR or export stream this error refers to, if any.
    pub fn offset(&self) -> Option<u64> {
        use Error::*;
        match self {
            BadMagic { offset }
            | NonZeroPadding { offset, .. }
            | Truncated { offset, .. }
            | TrailingData { offset }
            | UnexpectedToken { offset, .. }
            | UnknownNodeType { offset, .. }
            | DuplicateType { offset, .. }
            | MissingContents { offset, .. }
            | RepeatedContents { offset, .. }
            | ExecutableAfterContents { offset, .. }
            | ExecutableNotEmpty { offset, .. }
            | MissingTarget { offset, .. }
            | EmptyTarget { offset, .. }
            | TargetContainsNul { offset, .. }
            | TargetTooLong { offset, .. }
            | NodeBeforeName { offset, .. }
            | InvalidName { offset, .. }
            | NameTooLong { offset, .. }
            | UnsortedEntry { offset, .. }
            | DuplicateEntry { offset, .. }
            | TooDeep { offset, .. }
            | Read { offset, .. }
            | BadExport { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// Fs error constructor; keeps call sites short.
    pub(crate) fn fs(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Fs {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Renders an archive path (components joined by `/`, empty for the root) for messages:
/// rooted at `/`, invalid UTF-8 replaced, control characters escaped so that hostile
/// names cannot mess up a terminal.
pub(crate) fn render(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    push_escaped(&mut out, path);
    out
}

/// Renders a name or token for messages, quoted.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('\'');
    push_escaped(&mut out, bytes);
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_escapes_control_characters() {
        assert_eq!(render(b""), "/");
        assert_eq!(render(b"a/b"), "/a/b");
        assert_eq!(render(b"x\n\0y"), "/x\\n\\u{0}y");
        assert_eq!(quote("é".as_bytes()), "'é'");
        assert_eq!(quote(b"\xff"), "'\u{fffd}'");
    }
}
