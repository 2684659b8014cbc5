//! The narinfo reader, following 2.8's `NarInfo::NarInfo(store, text, whence)` (§7.2).
//!
//! The scan is 2.8's, byte for byte: from the current position, the key runs to the next
//! `:`, the value starts two bytes after that `:` (whatever the byte in between is) and
//! runs to the next LF at or after that point. So `Key:\n` swallows the following line,
//! and a line without `:` becomes part of the next key (which is then unknown and
//! ignored). Line numbers in errors are those of the line on which the key starts.
//!
//! Like 2.8, `StorePath` is canonicalised before it is checked (`/nix/store//x-y/`
//! reads as `/nix/store/x-y`); `References` and `Deriver` are base names.

use std::collections::BTreeSet;

use kiln_hash::Hash;
use kiln_store_path::{ContentAddress, StoreDir, StorePath};

use crate::{Error, NarInfo, Result};

/// Where a record is, for error messages.
struct Ctx<'a> {
    line: usize,
    key: &'a str,
}

impl Ctx<'_> {
    fn key(&self) -> String {
        self.key.to_string()
    }

    fn hash(&self, value: &str) -> Result<Hash> {
        parse_typed_hash(value).map_err(|source| Error::BadHash {
            line: self.line,
            key: self.key(),
            source,
        })
    }

    fn store_path(&self, r: kiln_store_path::Result<StorePath>) -> Result<StorePath> {
        r.map_err(|source| Error::BadStorePath {
            line: self.line,
            key: self.key(),
            source,
        })
    }

    fn number(&self, value: &str) -> Result<u64> {
        value.parse::<u64>().map_err(|_| Error::BadNumber {
            line: self.line,
            key: self.key(),
            value: value.to_string(),
        })
    }

    fn content_address(&self, value: &str) -> Result<ContentAddress> {
        parse_content_address(value).map_err(|source| Error::BadContentAddress {
            line: self.line,
            key: self.key(),
            source,
        })
    }

    fn duplicate(&self) -> Error {
        Error::Duplicate {
            line: self.line,
            key: self.key(),
        }
    }
}

/// A hash can only be ASCII. Checking first keeps multi-byte characters away from the
/// hash decoder, which reports positions by byte offset.
fn ascii_only(value: &str) -> kiln_hash::Result<()> {
    match value.char_indices().find(|(_, c)| !c.is_ascii()) {
        Some((pos, ch)) => Err(kiln_hash::Error::InvalidCharacter {
            hash: value.to_string(),
            pos,
            ch,
            encoding: "hash",
        }),
        None => Ok(()),
    }
}

/// 2.8's `Hash::parseAnyPrefixed`: `<algo>:<body>` or SRI; a bare body is refused.
fn parse_typed_hash(value: &str) -> kiln_hash::Result<Hash> {
    ascii_only(value)?;
    Hash::parse(value, None)
}

/// 2.8's `parseContentAddress`: `text:<algo>:<hash>` or `fixed:[r:]<algo>:<hash>`; the
/// `<algo>:` is required (no SRI form here).
fn parse_content_address(value: &str) -> kiln_store_path::Result<ContentAddress> {
    ascii_only(value)?;
    let after_prefix = value
        .strip_prefix("text:")
        .or_else(|| value.strip_prefix("fixed:r:"))
        .or_else(|| value.strip_prefix("fixed:"));
    if let Some(hash) = after_prefix {
        if !hash.contains(':') {
            return Err(kiln_store_path::Error::BadContentAddress(
                value.to_string(),
                "content address hash must be in the form '<algo>:<hash>'".to_string(),
            ));
        }
    }
    value.parse()
}

/// 2.8's `canonPath` (without symlink resolution), which `parseStorePath` applies
/// first: repeated `/`, `.` and trailing `/` vanish and `..` drops a component. Relative
/// or empty input is returned unchanged, for the store-path parser to refuse.
fn canon_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.starts_with('/') {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                out.push('/');
                out.push_str(component);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out.into()
}

fn find(bytes: &[u8], needle: u8, from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.iter().position(|&b| b == needle).map(|i| from + i)
}

pub(crate) fn parse(store_dir: &StoreDir, text: &str) -> Result<NarInfo> {
    let bytes = text.as_bytes();

    let mut path: Option<StorePath> = None;
    let mut url = String::new();
    let mut compression = String::new();
    let mut file_hash = None;
    let mut file_size = 0;
    let mut nar_hash: Option<Hash> = None;
    let mut nar_size = 0;
    let mut references = BTreeSet::new();
    let mut deriver = None;
    let mut system = None;
    let mut sigs = BTreeSet::new();
    let mut ca: Option<ContentAddress> = None;

    let mut pos = 0;
    let mut line = 1;
    while pos < bytes.len() {
        let colon = find(bytes, b':', pos).ok_or(Error::MissingColon { line })?;
        // `pos` follows an LF (or is 0) and `colon` is ASCII: both are char boundaries.
        let key = &text[pos..colon];
        let value_start = colon + 2;
        let ctx = Ctx { line, key };
        let eol = find(bytes, b'\n', value_start).ok_or_else(|| Error::MissingNewline {
            line,
            key: ctx.key(),
        })?;
        let value = || {
            text.get(value_start..eol).ok_or_else(|| Error::NotUtf8 {
                line,
                key: ctx.key(),
            })
        };

        match key {
            "StorePath" => {
                let value = canon_path(value()?);
                path = Some(ctx.store_path(store_dir.parse(&value))?);
            }
            "URL" => url = value()?.to_string(),
            "Compression" => compression = value()?.to_string(),
            "FileHash" => file_hash = Some(ctx.hash(value()?)?),
            "FileSize" => file_size = ctx.number(value()?)?,
            "NarHash" => nar_hash = Some(ctx.hash(value()?)?),
            "NarSize" => nar_size = ctx.number(value()?)?,
            "References" => {
                let value = value()?;
                if !references.is_empty() {
                    return Err(ctx.duplicate());
                }
                for name in value.split(' ').filter(|t| !t.is_empty()) {
                    references.insert(ctx.store_path(StorePath::from_base_name(name))?);
                }
            }
            "Deriver" => {
                let value = value()?;
                deriver = match value {
                    "unknown-deriver" => None,
                    _ => Some(ctx.store_path(StorePath::from_base_name(value))?),
                };
            }
            "System" => {
                let value = value()?;
                system = (!value.is_empty()).then(|| value.to_string());
            }
            "Sig" => {
                sigs.insert(value()?.to_string());
            }
            "CA" => {
                let value = value()?;
                if ca.is_some() {
                    return Err(ctx.duplicate());
                }
                if !value.is_empty() {
                    ca = Some(ctx.content_address(value)?);
                }
            }
            _ => {}
        }

        line += bytes[pos..=eol].iter().filter(|&&b| b == b'\n').count();
        pos = eol + 1;
    }

    if compression.is_empty() {
        compression = "bzip2".to_string();
    }
    let path = path.ok_or(Error::MissingField { key: "StorePath" })?;
    let nar_hash = nar_hash.ok_or(Error::MissingField { key: "NarHash" })?;
    if url.is_empty() {
        return Err(Error::MissingField { key: "URL" });
    }
    if nar_size == 0 {
        return Err(Error::ZeroNarSize);
    }

    Ok(NarInfo {
        path,
        url,
        compression,
        file_hash,
        file_size,
        nar_hash,
        nar_size,
        references,
        deriver,
        system,
        sigs,
        ca,
    })
}
