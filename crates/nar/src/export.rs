//! The `nix-store --export` / `--import` framing (Nix's `LocalStore::exportPath`):
//!
//! ```text
//! for each path:  u64(1)  NAR  u64(0x4558494e)  str(store path)
//!                 u64(#refs) str(ref)…  str(deriver or "")  u64(0)
//! end:            u64(0)
//! ```
//!
//! The NARs inside are parsed as strictly as standalone ones; string fields of the
//! framing are length-capped before anything is allocated for them.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use crate::copy::copy_nar;
use crate::error::{quote, Error, Result};
use crate::reader::{NarReader, INPUT_BUFFER};
use crate::wire::{push_token, push_u64, Input, WireError};
use crate::writer::NarWriter;

/// "NIXE" read as a little-endian integer; follows each NAR.
pub const EXPORT_MAGIC: u64 = 0x4558_494e;

/// Longest store path, reference or deriver accepted when reading.
const MAX_PATH_LEN: u64 = 4096;
/// Most references accepted for one path when reading.
const MAX_REFERENCES: u64 = 1 << 16;
/// Longest legacy signature accepted (and skipped) when reading.
const MAX_LEGACY_SIGNATURE_LEN: u64 = 64 * 1024;

/// The metadata that follows each NAR in an export stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportInfo {
    /// The object's store path, e.g. `/nix/store/…-hello`.
    pub path: String,
    /// Store paths it refers to; Nix writes them sorted.
    pub references: Vec<String>,
    pub deriver: Option<String>,
}

/// One object read from an export stream.
#[derive(Debug)]
pub struct Exported<T> {
    pub info: ExportInfo,
    /// Length of the object's NAR in bytes.
    pub nar_size: u64,
    /// What the caller's NAR callback returned.
    pub value: T,
}

/// Writes an export stream; call [`finish`](Self::finish) to write the end marker.
pub struct ExportWriter<W: Write> {
    sink: W,
}

impl<W: Write> ExportWriter<W> {
    pub fn new(sink: W) -> Self {
        ExportWriter { sink }
    }

    /// Adds the filesystem object at `fs_path` (dumped as by `nix-store --dump`).
    /// Returns the NAR size.
    pub fn add_path(&mut self, fs_path: &Path, info: &ExportInfo) -> Result<u64> {
        self.add_with(info, |nar| nar.write_path(fs_path))
    }

    /// Adds an existing standalone NAR, which is checked strictly on the way through.
    /// Returns the NAR size.
    pub fn add_nar(&mut self, nar: impl Read, info: &ExportInfo) -> Result<u64> {
        let mut reader = NarReader::new(BufReader::with_capacity(INPUT_BUFFER, nar));
        self.add_with(info, |out| copy_nar(&mut reader, out))
    }

    /// Adds an object whose root node `write` produces. Returns the NAR size.
    pub fn add_with(
        &mut self,
        info: &ExportInfo,
        write: impl FnOnce(&mut NarWriter<&mut W>) -> Result<()>,
    ) -> Result<u64> {
        self.sink
            .write_all(&1u64.to_le_bytes())
            .map_err(Error::Write)?;
        let mut nar = NarWriter::new(&mut self.sink);
        write(&mut nar)?;
        let nar_size = nar.position();
        nar.finish()?;

        let mut trailer = Vec::new();
        push_u64(&mut trailer, EXPORT_MAGIC);
        push_token(&mut trailer, info.path.as_bytes());
        push_u64(&mut trailer, info.references.len() as u64);
        for reference in &info.references {
            push_token(&mut trailer, reference.as_bytes());
        }
        push_token(
            &mut trailer,
            info.deriver.as_deref().unwrap_or("").as_bytes(),
        );
        push_u64(&mut trailer, 0); // no legacy signature
        self.sink.write_all(&trailer).map_err(Error::Write)?;
        Ok(nar_size)
    }

    /// Writes the end marker, flushes, and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.sink
            .write_all(&0u64.to_le_bytes())
            .map_err(Error::Write)?;
        self.sink.flush().map_err(Error::Write)?;
        Ok(self.sink)
    }
}

/// Reads an export stream object by object.
///
/// Reads exactly up to the end marker and no further, so the stream may be embedded in
/// a larger protocol; give it a buffered source. Error offsets count from the start of
/// the stream.
pub struct ExportReader<R> {
    input: Input<R>,
}

impl<R: Read> ExportReader<R> {
    pub fn new(reader: R) -> Self {
        ExportReader {
            input: Input::new(reader, 0),
        }
    }

    /// Reads the next object, or returns `None` at the end marker.
    ///
    /// `visit` gets a reader positioned at the object's NAR; whatever it leaves unread is
    /// read and checked afterwards. `tee` receives exactly the NAR's bytes as they are
    /// consumed (pass a hasher to compute the NAR hash, or `&mut std::io::sink()`).
    pub fn next_path<T>(
        &mut self,
        tee: &mut dyn Write,
        visit: impl FnOnce(&mut NarReader<&mut dyn Read>) -> Result<T>,
    ) -> Result<Option<Exported<T>>> {
        let offset = self.input.offset();
        match self.input.read_u64().map_err(WireError::framing)? {
            0 => return Ok(None),
            1 => {}
            n => {
                return Err(Error::BadExport {
                    offset,
                    problem: format!("expected 1 (next path) or 0 (end), found {n}"),
                })
            }
        }
        let nar_start = self.input.offset();
        let mut tee_reader = Tee {
            inner: self.input.inner_mut(),
            tee,
        };
        let mut nar = NarReader::embedded(&mut tee_reader as &mut dyn Read, nar_start);
        let value = visit(&mut nar)?;
        nar.finish()?;
        let nar_end = nar.offset();
        self.input.set_offset(nar_end);

        let offset = self.input.offset();
        let magic = self.input.read_u64().map_err(WireError::framing)?;
        if magic != EXPORT_MAGIC {
            return Err(Error::BadExport {
                offset,
                problem: format!("expected the export magic {EXPORT_MAGIC:#x}, found {magic:#x}"),
            });
        }
        let path = self.string("store path", MAX_PATH_LEN)?;
        let offset = self.input.offset();
        let count = self.input.read_u64().map_err(WireError::framing)?;
        if count > MAX_REFERENCES {
            return Err(Error::BadExport {
                offset,
                problem: format!("{count} references exceed the limit of {MAX_REFERENCES}"),
            });
        }
        let references = (0..count)
            .map(|_| self.string("reference", MAX_PATH_LEN))
            .collect::<Result<Vec<_>>>()?;
        let deriver = self.string("deriver", MAX_PATH_LEN)?;
        let offset = self.input.offset();
        match self.input.read_u64().map_err(WireError::framing)? {
            0 => {}
            1 => {
                // A legacy signature: Nix 2.8 reads and ignores it, and so do we.
                self.string("legacy signature", MAX_LEGACY_SIGNATURE_LEN)?;
            }
            n => {
                return Err(Error::BadExport {
                    offset,
                    problem: format!("expected 0 or 1 for the signature flag, found {n}"),
                })
            }
        }
        if !path.starts_with('/') {
            return Err(Error::BadExport {
                offset: nar_end + 8,
                problem: format!("store path {} is not absolute", quote(path.as_bytes())),
            });
        }
        Ok(Some(Exported {
            info: ExportInfo {
                path,
                references,
                deriver: (!deriver.is_empty()).then_some(deriver),
            },
            nar_size: nar_end - nar_start,
            value,
        }))
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// A bounded UTF-8 string field.
    fn string(&mut self, what: &str, max: u64) -> Result<String> {
        let offset = self.input.offset();
        let len = self.input.read_u64().map_err(WireError::framing)?;
        if len > max {
            return Err(Error::BadExport {
                offset,
                problem: format!("{what} of {len} bytes exceeds the limit of {max}"),
            });
        }
        let bytes = self
            .input
            .read_bytes(len as usize)
            .map_err(WireError::framing)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::BadExport {
            offset,
            problem: format!("{what} {} is not valid UTF-8", quote(bytes)),
        })
    }
}

/// Passes every byte read through to `tee`.
struct Tee<'a, R> {
    inner: &'a mut R,
    tee: &'a mut dyn Write,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tee.write_all(&buf[..n])?;
        Ok(n)
    }
}
