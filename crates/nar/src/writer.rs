//! [`NarWriter`]: turns a stream of node events into canonical NAR bytes (Nix's `libutil/archive.cc`).
//!
//! The writer checks the event order, entry-name rules and strict sorting, so whatever it
//! produces is accepted by [`crate::NarReader`] (nesting depth aside). Small tokens are
//! gathered in an internal buffer; large file chunks go to the sink directly, so the sink
//! sees few, large writes (this matters when the sink is a hasher).

use std::io::Write;

use crate::error::{quote, render, Error, Result};
use crate::rules::{self, TargetProblem, MAX_NAME_LEN, MAX_TARGET_LEN};
use crate::wire::{push_padding, push_token, push_u64, MAGIC};

/// Tokens and small content chunks are gathered until this many bytes are pending, so
/// runs of small files reach the sink in batches; larger chunks bypass the buffer.
const BUF_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A node (the root, or the node of an entry just begun) must come next.
    Node,
    /// Inside a directory: an entry or the end of the directory must come next.
    Directory,
    /// Inside a regular file, `remaining` of `declared` content bytes still to come.
    Contents { declared: u64, remaining: u64 },
    /// The root node is complete.
    Done,
}

impl State {
    fn describe(self) -> &'static str {
        match self {
            State::Node => "where a node is expected",
            State::Directory => "inside a directory (an entry or the directory's end is expected)",
            State::Contents { .. } => "while file contents are being written",
            State::Done => "after the archive is complete",
        }
    }
}

/// Writes a NAR event by event.
///
/// Calls must follow the NAR grammar, with entries in strictly increasing byte order of
/// their names:
///
/// ```text
/// archive = node, then finish()
/// node    = file(..)
///         | begin_file(..) write_contents(..)* end_file()
///         | symlink(..)
///         | begin_directory() { entry(name) node } end_directory()
/// ```
///
/// Any deviation is an error, after which the writer must be discarded.
///
/// ```
/// let mut w = kiln_nar::NarWriter::new(Vec::new());
/// w.begin_directory()?;
/// w.entry(b"README")?;
/// w.file(false, b"hi\n")?;
/// w.entry(b"link")?;
/// w.symlink(b"README")?;
/// w.end_directory()?;
/// let nar = w.finish()?;
/// assert_eq!(kiln_nar::list(&nar[..])?.len(), 3);
/// # Ok::<(), kiln_nar::Error>(())
/// ```
pub struct NarWriter<W: Write> {
    sink: W,
    buf: Vec<u8>,
    /// `names[i]` is the current (latest) entry name of the i-th open directory.
    /// Vectors past `open` are kept only to reuse their allocations.
    names: Vec<Vec<u8>>,
    open: usize,
    state: State,
    /// Bytes already handed to `sink`.
    flushed: u64,
}

impl<W: Write> NarWriter<W> {
    /// Starts an archive. Nothing reaches `sink` until enough is buffered or
    /// [`finish`](Self::finish) is called.
    pub fn new(sink: W) -> Self {
        let mut buf = Vec::with_capacity(4096);
        push_token(&mut buf, MAGIC);
        NarWriter {
            sink,
            flushed: 0,
            buf,
            names: Vec::new(),
            open: 0,
            state: State::Node,
        }
    }

    /// Number of NAR bytes produced so far (written or buffered).
    pub fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Begins a directory node.
    pub fn begin_directory(&mut self) -> Result<()> {
        self.expect(State::Node, "begin a directory")?;
        self.node_header(b"directory");
        if self.names.len() == self.open {
            self.names.push(Vec::new());
        }
        self.names[self.open].clear();
        self.open += 1;
        self.state = State::Directory;
        Ok(())
    }

    /// Begins an entry of the current directory; its node must follow.
    pub fn entry(&mut self, name: &[u8]) -> Result<()> {
        self.expect(State::Directory, "begin an entry")?;
        let dir = self.open - 1;
        if let Some(reason) = rules::name_problem(name) {
            return Err(Error::InvalidName {
                offset: self.position(),
                path: self.dir_path(),
                name: quote(name),
                reason,
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong {
                offset: self.position(),
                path: self.dir_path(),
                len: name.len() as u64,
                limit: MAX_NAME_LEN,
            });
        }
        // An empty `previous` means no entry yet, since names are never empty.
        let previous = &self.names[dir];
        if !previous.is_empty() && name <= previous.as_slice() {
            return Err(if name == previous.as_slice() {
                Error::DuplicateEntry {
                    offset: self.position(),
                    path: self.dir_path(),
                    name: quote(name),
                }
            } else {
                Error::UnsortedEntry {
                    offset: self.position(),
                    path: self.dir_path(),
                    name: quote(name),
                    previous: quote(previous),
                }
            });
        }
        self.names[dir].clear();
        self.names[dir].extend_from_slice(name);
        push_token(&mut self.buf, b"entry");
        push_token(&mut self.buf, b"(");
        push_token(&mut self.buf, b"name");
        push_token(&mut self.buf, name);
        push_token(&mut self.buf, b"node");
        self.state = State::Node;
        Ok(())
    }

    /// Ends the current directory node.
    pub fn end_directory(&mut self) -> Result<()> {
        self.expect(State::Directory, "end a directory")?;
        self.open -= 1;
        self.end_node()
    }

    /// Begins a regular file of exactly `size` content bytes.
    pub fn begin_file(&mut self, executable: bool, size: u64) -> Result<()> {
        self.expect(State::Node, "begin a file")?;
        self.node_header(b"regular");
        if executable {
            push_token(&mut self.buf, b"executable");
            push_token(&mut self.buf, b"");
        }
        push_token(&mut self.buf, b"contents");
        push_u64(&mut self.buf, size);
        self.state = State::Contents {
            declared: size,
            remaining: size,
        };
        Ok(())
    }

    /// Appends to the contents of the file begun by [`begin_file`](Self::begin_file).
    pub fn write_contents(&mut self, data: &[u8]) -> Result<()> {
        let State::Contents {
            declared,
            remaining,
        } = self.state
        else {
            return Err(self.misuse("write file contents"));
        };
        let len = data.len() as u64;
        if len > remaining {
            return Err(Error::ContentsLength {
                path: self.node_path(),
                declared,
                actual: (declared - remaining).saturating_add(len),
            });
        }
        self.state = State::Contents {
            declared,
            remaining: remaining - len,
        };
        if data.len() >= BUF_CAP {
            self.flush_buf()?;
            self.sink.write_all(data).map_err(Error::Write)?;
            self.flushed += len;
        } else {
            self.buf.extend_from_slice(data);
            if self.buf.len() >= BUF_CAP {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    /// Ends the current file; all declared bytes must have been written.
    pub fn end_file(&mut self) -> Result<()> {
        let State::Contents {
            declared,
            remaining,
        } = self.state
        else {
            return Err(self.misuse("end a file"));
        };
        if remaining != 0 {
            return Err(Error::ContentsLength {
                path: self.node_path(),
                declared,
                actual: declared - remaining,
            });
        }
        push_padding(&mut self.buf, declared);
        self.end_node()
    }

    /// Writes a whole regular file node from memory.
    pub fn file(&mut self, executable: bool, contents: &[u8]) -> Result<()> {
        self.begin_file(executable, contents.len() as u64)?;
        self.write_contents(contents)?;
        self.end_file()
    }

    /// Writes a symlink node. The target is raw bytes: non-empty, no NUL, at most
    /// [`MAX_TARGET_LEN`] bytes.
    pub fn symlink(&mut self, target: &[u8]) -> Result<()> {
        self.expect(State::Node, "write a symlink")?;
        let offset = self.position();
        match rules::target_problem(target) {
            Some(TargetProblem::Empty) => {
                return Err(Error::EmptyTarget {
                    offset,
                    path: self.node_path(),
                })
            }
            Some(TargetProblem::ContainsNul) => {
                return Err(Error::TargetContainsNul {
                    offset,
                    path: self.node_path(),
                })
            }
            None => {}
        }
        if target.len() > MAX_TARGET_LEN {
            return Err(Error::TargetTooLong {
                offset,
                path: self.node_path(),
                len: target.len() as u64,
                limit: MAX_TARGET_LEN,
            });
        }
        self.node_header(b"symlink");
        push_token(&mut self.buf, b"target");
        push_token(&mut self.buf, target);
        self.end_node()
    }

    /// Flushes everything and returns the sink. The root node must be complete.
    pub fn finish(mut self) -> Result<W> {
        self.expect(State::Done, "finish the archive")?;
        self.flush_buf()?;
        self.sink.flush().map_err(Error::Write)?;
        Ok(self.sink)
    }

    fn node_header(&mut self, kind: &[u8]) {
        push_token(&mut self.buf, b"(");
        push_token(&mut self.buf, b"type");
        push_token(&mut self.buf, kind);
    }

    /// Closes a node, and the entry around it if there is one.
    fn end_node(&mut self) -> Result<()> {
        push_token(&mut self.buf, b")");
        if self.open > 0 {
            push_token(&mut self.buf, b")");
            self.state = State::Directory;
        } else {
            self.state = State::Done;
        }
        if self.buf.len() >= BUF_CAP {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.sink.write_all(&self.buf).map_err(Error::Write)?;
            self.flushed += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn expect(&self, state: State, action: &'static str) -> Result<()> {
        if self.state == state {
            Ok(())
        } else {
            Err(self.misuse(action))
        }
    }

    fn misuse(&self, action: &'static str) -> Error {
        Error::WriterMisuse {
            action,
            state: self.state.describe(),
        }
    }

    /// Path of the directory whose entries are being written.
    fn dir_path(&self) -> String {
        render(&self.names[..self.open - 1].join(&b'/'))
    }

    /// Path of the node being written.
    fn node_path(&self) -> String {
        render(&self.names[..self.open].join(&b'/'))
    }
}
