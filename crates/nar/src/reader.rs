//! [`NarReader`]: a strict, pull-style NAR parser over any `Read`.
//!
//! It accepts exactly the canonical form that [`crate::NarWriter`] produces (Nix's `libutil/archive.cc`)
//! and rejects everything Nix 2.8 lets through (§3.5): every field in its one allowed
//! place, entries strictly sorted, names and symlink targets valid and bounded, bounded
//! nesting, zero padding, no trailing bytes. Because only the canonical encoding is
//! accepted, a NAR that parses re-serialises to the very same bytes, so its hash is
//! the hash of what was received.
//!
//! Memory use is bounded: tokens other than file contents are capped before anything
//! is allocated for them, and file contents are streamed through [`Contents`].

use std::io::{self, Read, Write};

use crate::error::{quote, render, Error, Result};
use crate::rules::{self, TargetProblem, MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN};
use crate::wire::{Input, WireError, MAGIC};

/// Buffer size used by the convenience functions that wrap a plain `Read`: tokens are
/// small reads and need the buffer, large content reads bypass it.
pub(crate) const INPUT_BUFFER: usize = 64 * 1024;

/// Longer tokens cannot be a keyword; they are rejected without being read.
const MAX_KEYWORD_LEN: u64 = 16;

/// A parsed step of the archive, in document order. `path` is the archive path of the
/// node (components joined by `/`, empty for the root).
#[derive(Debug)]
pub enum Event<'a, R> {
    /// A directory begins; its entries' nodes follow, then [`Event::EndDirectory`].
    Directory { path: &'a [u8] },
    /// The directory at `path` has no more entries.
    EndDirectory { path: &'a [u8] },
    /// A regular file. Its bytes can be read from `contents`; whatever is not read is
    /// skipped (and still checked) by the next call to [`NarReader::next`].
    Regular {
        path: &'a [u8],
        executable: bool,
        size: u64,
        contents: Contents<'a, R>,
    },
    /// A symlink; `target` is raw bytes, non-empty, without NUL.
    Symlink { path: &'a [u8], target: &'a [u8] },
}

impl<'a, R> Event<'a, R> {
    /// Archive path of the node this event belongs to.
    pub fn path(&self) -> &'a [u8] {
        match self {
            Event::Directory { path }
            | Event::EndDirectory { path }
            | Event::Regular { path, .. }
            | Event::Symlink { path, .. } => path,
        }
    }
}

/// The contents of the current regular file, as a bounded reader.
#[derive(Debug)]
pub struct Contents<'a, R> {
    input: &'a mut Input<R>,
    remaining: &'a mut u64,
    path: &'a [u8],
}

impl<R: Read> Contents<'_, R> {
    /// Content bytes not read yet.
    pub fn remaining(&self) -> u64 {
        *self.remaining
    }

    /// Offset in the input of the next content byte.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// Reads some content bytes into `buf`; `Ok(0)` means the contents are exhausted.
    /// Input ending early is an [`Error::Truncated`].
    pub fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = (*self.remaining).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .input
            .read_some(&mut buf[..want])
            .map_err(|e| e.at(self.path))?;
        if n == 0 {
            return Err(WireError::Truncated(self.input.offset()).at(self.path));
        }
        *self.remaining -= n as u64;
        Ok(n)
    }

    /// Copies the remaining contents to `sink` and returns how many bytes that was.
    pub fn copy_to<W: Write + ?Sized>(&mut self, sink: &mut W) -> Result<u64> {
        let mut buf = vec![0; (*self.remaining).min(256 * 1024) as usize];
        let mut total = 0;
        loop {
            let n = self.read_chunk(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            sink.write_all(&buf[..n]).map_err(Error::Write)?;
            total += n as u64;
        }
    }
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_chunk(buf).map_err(|e| match e {
            Error::Truncated { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            e => io::Error::other(e),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet.
    Start,
    /// Inside a directory, before an `entry` or the closing `)`.
    InDirectory,
    /// Inside a regular file's contents (see `NarReader::remaining`).
    InFile { size: u64 },
    /// A node's closing `)` has been read.
    NodeDone,
    /// The root node is complete.
    Finished,
    /// An error was returned; the input position is meaningless now.
    Failed,
}

/// What `advance` parsed; turned into a borrowed [`Event`] afterwards.
enum Ready {
    Directory,
    EndDirectory,
    Regular { executable: bool, size: u64 },
    Symlink,
}

/// The keywords of the grammar, plus what else a token can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Open,
    Close,
    Type,
    Regular,
    Symlink,
    Directory,
    Executable,
    Contents,
    Target,
    Entry,
    Name,
    Node,
    /// Some other short token (still in the input's token buffer, for messages).
    Other,
    /// A token too long to be a keyword, with its length (its bytes were not read).
    Long(u64),
}

/// An open directory.
#[derive(Debug, Default)]
struct Frame {
    /// Length of the directory's own archive path.
    path_len: usize,
    /// Name of the latest entry; empty before the first (names are never empty).
    last: Vec<u8>,
}

/// Strict pull parser; call [`next`](Self::next) until it returns `Ok(None)`.
///
/// The reader consumes exactly the bytes of the archive (plus one byte to check for
/// trailing data), issuing small reads for tokens: give it a buffered source.
/// Error offsets count from the start of the input.
#[derive(Debug)]
pub struct NarReader<R> {
    input: Input<R>,
    /// Archive path of the current node.
    path: Vec<u8>,
    /// `frames[..open]` are the open directories; later ones only keep allocations.
    frames: Vec<Frame>,
    open: usize,
    state: State,
    /// Whether end of input must follow the archive.
    standalone: bool,
    /// Content bytes of the current regular file not consumed yet.
    remaining: u64,
    /// Target of the latest symlink.
    target: Vec<u8>,
    /// Buffer for skipping unread file contents.
    scratch: Vec<u8>,
}

impl<R: Read> NarReader<R> {
    /// A reader for a standalone NAR: anything after the archive is an error.
    pub fn new(reader: R) -> Self {
        Self::with_offset(reader, 0, true)
    }

    /// A reader for a NAR embedded in a larger stream (an export, a protocol message)
    /// at `offset`; bytes after the archive are left unread, so the stream's framing
    /// stays in step.
    pub fn embedded(reader: R, offset: u64) -> Self {
        Self::with_offset(reader, offset, false)
    }

    fn with_offset(reader: R, offset: u64, standalone: bool) -> Self {
        NarReader {
            input: Input::new(reader, offset),
            path: Vec::new(),
            frames: Vec::new(),
            open: 0,
            state: State::Start,
            standalone,
            remaining: 0,
            target: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// The next event, or `None` once the whole archive has been read and checked.
    /// After an error, every further call fails.
    #[allow(clippy::should_implement_trait)] // a lending iterator cannot be `Iterator`
    pub fn next(&mut self) -> Result<Option<Event<'_, R>>> {
        let ready = match self.advance() {
            Ok(Some(ready)) => ready,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.state = State::Failed;
                return Err(e);
            }
        };
        let path = &self.path[..];
        Ok(Some(match ready {
            Ready::Directory => Event::Directory { path },
            Ready::EndDirectory => Event::EndDirectory { path },
            Ready::Symlink => Event::Symlink {
                path,
                target: &self.target,
            },
            Ready::Regular { executable, size } => Event::Regular {
                path,
                executable,
                size,
                contents: Contents {
                    input: &mut self.input,
                    remaining: &mut self.remaining,
                    path,
                },
            },
        }))
    }

    /// Reads (and checks) the rest of the archive, ignoring the events.
    pub fn finish(&mut self) -> Result<()> {
        while self.next()?.is_some() {}
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<Ready>> {
        loop {
            match self.state {
                State::Start => {
                    self.magic()?;
                    return self.node().map(Some);
                }
                State::InFile { size } => self.end_file(size)?,
                State::NodeDone if self.open == 0 => {
                    self.state = State::Finished;
                    if self.standalone {
                        self.expect_eof()?;
                    }
                }
                State::NodeDone => {
                    let (offset, kw) = self.keyword()?;
                    if kw != Kw::Close {
                        return Err(self.unexpected(offset, kw, "')' closing the entry"));
                    }
                    self.path.truncate(self.frames[self.open - 1].path_len);
                    self.state = State::InDirectory;
                }
                State::InDirectory => {
                    let (offset, kw) = self.keyword()?;
                    match kw {
                        Kw::Close => {
                            self.open -= 1;
                            self.state = State::NodeDone;
                            return Ok(Some(Ready::EndDirectory));
                        }
                        Kw::Entry => {
                            self.entry_header()?;
                            return self.node().map(Some);
                        }
                        Kw::Type => return Err(self.duplicate_type(offset)),
                        _ => return Err(self.unexpected(offset, kw, "'entry' or ')'")),
                    }
                }
                State::Finished => return Ok(None),
                State::Failed => return Err(Error::ReaderFailed),
            }
        }
    }

    fn magic(&mut self) -> Result<()> {
        let offset = self.offset();
        let len = self.input.read_u64().map_err(|e| e.at(b""))?;
        if len != MAGIC.len() as u64 {
            return Err(Error::BadMagic { offset });
        }
        let token = self.input.read_bytes(MAGIC.len()).map_err(|e| e.at(b""))?;
        if token != MAGIC {
            return Err(Error::BadMagic { offset });
        }
        Ok(())
    }

    /// Parses `( type <kind> ...` up to the point where the node's event can be emitted.
    fn node(&mut self) -> Result<Ready> {
        let (offset, kw) = self.keyword()?;
        if kw != Kw::Open {
            return Err(self.unexpected(offset, kw, "'('"));
        }
        let (offset, kw) = self.keyword()?;
        if kw != Kw::Type {
            return Err(self.unexpected(offset, kw, "'type'"));
        }
        let (offset, kw) = self.keyword()?;
        match kw {
            Kw::Regular => self.regular(),
            Kw::Symlink => self.symlink(),
            Kw::Directory => {
                if self.open >= MAX_DEPTH {
                    return Err(Error::TooDeep {
                        offset,
                        path: render(&self.path),
                        limit: MAX_DEPTH,
                    });
                }
                if self.frames.len() == self.open {
                    self.frames.push(Frame::default());
                }
                let frame = &mut self.frames[self.open];
                frame.path_len = self.path.len();
                frame.last.clear();
                self.open += 1;
                self.state = State::InDirectory;
                Ok(Ready::Directory)
            }
            _ => Err(Error::UnknownNodeType {
                offset,
                path: render(&self.path),
                found: self.describe(kw),
            }),
        }
    }

    fn regular(&mut self) -> Result<Ready> {
        let (mut offset, mut kw) = self.keyword()?;
        let executable = kw == Kw::Executable;
        if executable {
            let value_offset = self.offset();
            let len = self.read_u64()?;
            if len != 0 {
                return Err(Error::ExecutableNotEmpty {
                    offset: value_offset,
                    path: render(&self.path),
                    len,
                });
            }
            (offset, kw) = self.keyword()?;
        }
        match kw {
            Kw::Contents => {}
            Kw::Close => {
                return Err(Error::MissingContents {
                    offset,
                    path: render(&self.path),
                })
            }
            Kw::Type => return Err(self.duplicate_type(offset)),
            _ if executable => return Err(self.unexpected(offset, kw, "'contents'")),
            _ => return Err(self.unexpected(offset, kw, "'executable' or 'contents'")),
        }
        let size = self.read_u64()?;
        self.state = State::InFile { size };
        self.remaining = size;
        Ok(Ready::Regular { executable, size })
    }

    /// Skips unread contents, checks the padding and the node's end.
    fn end_file(&mut self, size: u64) -> Result<()> {
        let unread = std::mem::take(&mut self.remaining);
        self.input
            .skip(unread, &mut self.scratch)
            .and_then(|()| self.input.read_padding(size))
            .map_err(|e| e.at(&self.path))?;
        let (offset, kw) = self.keyword()?;
        let path = || render(&self.path);
        match kw {
            Kw::Close => {
                self.state = State::NodeDone;
                Ok(())
            }
            Kw::Executable => Err(Error::ExecutableAfterContents {
                offset,
                path: path(),
            }),
            Kw::Contents => Err(Error::RepeatedContents {
                offset,
                path: path(),
            }),
            Kw::Type => Err(self.duplicate_type(offset)),
            _ => Err(self.unexpected(offset, kw, "')'")),
        }
    }

    fn symlink(&mut self) -> Result<Ready> {
        let (offset, kw) = self.keyword()?;
        match kw {
            Kw::Target => {}
            Kw::Close => {
                return Err(Error::MissingTarget {
                    offset,
                    path: render(&self.path),
                })
            }
            Kw::Type => return Err(self.duplicate_type(offset)),
            _ => return Err(self.unexpected(offset, kw, "'target'")),
        }
        let offset = self.offset();
        let len = self.read_u64()?;
        if len > MAX_TARGET_LEN as u64 {
            return Err(Error::TargetTooLong {
                offset,
                path: render(&self.path),
                len,
                limit: MAX_TARGET_LEN,
            });
        }
        let target = self
            .input
            .read_bytes(len as usize)
            .map_err(|e| e.at(&self.path))?;
        match rules::target_problem(target) {
            Some(TargetProblem::Empty) => {
                return Err(Error::EmptyTarget {
                    offset,
                    path: render(&self.path),
                })
            }
            Some(TargetProblem::ContainsNul) => {
                return Err(Error::TargetContainsNul {
                    offset,
                    path: render(&self.path),
                })
            }
            None => {}
        }
        self.target.clear();
        self.target.extend_from_slice(target);
        let (offset, kw) = self.keyword()?;
        match kw {
            Kw::Close => {}
            Kw::Type => return Err(self.duplicate_type(offset)),
            _ => return Err(self.unexpected(offset, kw, "')'")),
        }
        self.state = State::NodeDone;
        Ok(Ready::Symlink)
    }

    /// Parses `( name <name> node` after `entry` and descends into the entry's path.
    fn entry_header(&mut self) -> Result<()> {
        let (offset, kw) = self.keyword()?;
        if kw != Kw::Open {
            return Err(self.unexpected(offset, kw, "'(' after 'entry'"));
        }
        let (offset, kw) = self.keyword()?;
        match kw {
            Kw::Name => {}
            Kw::Node => {
                return Err(Error::NodeBeforeName {
                    offset,
                    path: render(&self.path),
                })
            }
            _ => return Err(self.unexpected(offset, kw, "'name'")),
        }
        let offset = self.offset();
        let len = self.read_u64()?;
        if len > MAX_NAME_LEN as u64 {
            return Err(Error::NameTooLong {
                offset,
                path: render(&self.path),
                len,
                limit: MAX_NAME_LEN,
            });
        }
        let name = self
            .input
            .read_bytes(len as usize)
            .map_err(|e| e.at(&self.path))?;
        let dir = || render(&self.path);
        if let Some(reason) = rules::name_problem(name) {
            return Err(Error::InvalidName {
                offset,
                path: dir(),
                name: quote(name),
                reason,
            });
        }
        let frame = &mut self.frames[self.open - 1];
        if !frame.last.is_empty() && name <= frame.last.as_slice() {
            return Err(if name == frame.last.as_slice() {
                Error::DuplicateEntry {
                    offset,
                    path: dir(),
                    name: quote(name),
                }
            } else {
                Error::UnsortedEntry {
                    offset,
                    path: dir(),
                    name: quote(name),
                    previous: quote(&frame.last),
                }
            });
        }
        frame.last.clear();
        frame.last.extend_from_slice(name);
        let (offset, kw) = self.keyword()?;
        if kw != Kw::Node {
            return Err(self.unexpected(offset, kw, "'node'"));
        }
        let frame = &self.frames[self.open - 1];
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(&frame.last);
        Ok(())
    }

    fn expect_eof(&mut self) -> Result<()> {
        let offset = self.offset();
        match self.input.at_eof() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::TrailingData { offset }),
            Err(e) => Err(e.at(b"")),
        }
    }

    fn read_u64(&mut self) -> Result<u64> {
        self.input.read_u64().map_err(|e| e.at(&self.path))
    }

    /// Reads a token expected to be a keyword; returns its offset and classification.
    fn keyword(&mut self) -> Result<(u64, Kw)> {
        let offset = self.offset();
        let len = self.read_u64()?;
        if len > MAX_KEYWORD_LEN {
            return Ok((offset, Kw::Long(len)));
        }
        let token = self
            .input
            .read_bytes(len as usize)
            .map_err(|e| e.at(&self.path))?;
        let kw = match token {
            b"(" => Kw::Open,
            b")" => Kw::Close,
            b"type" => Kw::Type,
            b"regular" => Kw::Regular,
            b"symlink" => Kw::Symlink,
            b"directory" => Kw::Directory,
            b"executable" => Kw::Executable,
            b"contents" => Kw::Contents,
            b"target" => Kw::Target,
            b"entry" => Kw::Entry,
            b"name" => Kw::Name,
            b"node" => Kw::Node,
            _ => Kw::Other,
        };
        Ok((offset, kw))
    }

    /// How a token looks in a message. `Other` refers to the last token read.
    fn describe(&self, kw: Kw) -> String {
        match kw {
            Kw::Long(len) => format!("a {len}-byte token"),
            _ => quote(self.input.last_token()),
        }
    }

    fn unexpected(&self, offset: u64, kw: Kw, expected: &'static str) -> Error {
        Error::UnexpectedToken {
            offset,
            path: render(&self.path),
            expected,
            found: self.describe(kw),
        }
    }

    fn duplicate_type(&self, offset: u64) -> Error {
        Error::DuplicateType {
            offset,
            path: render(&self.path),
        }
    }
}
