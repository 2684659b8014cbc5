//! Looking inside a NAR without unpacking it: listing entries and extracting one file.

use std::io::{BufReader, Read, Write};

use crate::error::{render, Error, Result};
use crate::reader::{Event, NarReader, INPUT_BUFFER};

/// One node of an archive, as reported by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Archive path: components joined by `/`, empty for the root.
    pub path: Vec<u8>,
    pub kind: EntryKind,
}

/// What kind of node a [`ListEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    Regular {
        executable: bool,
        size: u64,
        /// Offset of the first content byte within the NAR.
        offset: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// Every node of the NAR read from `reader`, root first, in archive (sorted) order.
/// The whole archive is checked; file contents are skipped, never held in memory.
pub fn list(reader: impl Read) -> Result<Vec<ListEntry>> {
    let mut nar = NarReader::new(BufReader::with_capacity(INPUT_BUFFER, reader));
    let mut entries = Vec::new();
    while let Some(event) = nar.next()? {
        let path = event.path().to_vec();
        let kind = match event {
            Event::Directory { .. } => EntryKind::Directory,
            Event::EndDirectory { .. } => continue,
            Event::Regular {
                executable,
                size,
                contents,
                ..
            } => EntryKind::Regular {
                executable,
                size,
                offset: contents.offset(),
            },
            Event::Symlink { target, .. } => EntryKind::Symlink {
                target: target.to_vec(),
            },
        };
        entries.push(ListEntry { path, kind });
    }
    Ok(entries)
}

/// Writes the contents of regular file `member` of the NAR read from `reader` to `sink`
/// and returns the number of bytes written.
///
/// `member` is an archive path; leading `/`, repeated `/` and `.` components are
/// ignored, so `/a/b`, `a/b` and `./a//b` are the same member, and `/` is the root.
/// The whole archive is read and checked, also after the member has been written, so
/// an error can follow output.
pub fn cat(reader: impl Read, member: impl AsRef<[u8]>, sink: &mut impl Write) -> Result<u64> {
    let wanted = member_path(member.as_ref());
    let mut nar = NarReader::new(BufReader::with_capacity(INPUT_BUFFER, reader));
    let mut found = None;
    while let Some(event) = nar.next()? {
        if found.is_some() || event.path() != wanted.as_slice() {
            continue;
        }
        found = Some(match event {
            Event::Regular { mut contents, .. } => Some(contents.copy_to(sink)?),
            _ => None,
        });
    }
    // Only now, so that a malformed archive is reported as such rather than as a
    // missing member.
    match found {
        Some(Some(written)) => Ok(written),
        Some(None) => Err(Error::NotARegularFile {
            path: render(&wanted),
        }),
        None => Err(Error::MemberNotFound {
            path: render(&wanted),
        }),
    }
}

/// Normalises a user-supplied member path to an archive path (see [`cat`]).
pub fn member_path(member: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(member.len());
    for component in member
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(component);
    }
    out
}
