//! ATerm parser: one pass over the bytes, strings borrowed from the input unless they
//! contain escapes, errors with the byte offset and what was expected.
//!
//! Compared with Nix 2.8's reader, this one is stricter about structure (it requires
//! the commas and brackets Nix writes, refuses data after the closing `)`, refuses
//! duplicate output names, input derivations and env keys, where Nix silently keeps
//! one of them, and requires every path to be a valid store path of `store_dir`). It
//! reads string contents exactly like Nix: after `\`, `n`, `r` and `t` are control
//! characters and any other byte stands for itself, in every field.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeSet;

use bstr::{BString, ByteSlice};
use kiln_hash::{encoding, Hash};
use kiln_store_path::{StoreDir, StorePath};

use crate::model::{ContentAddressMethod, Derivation, DerivationOutput, InputNode};
use crate::{Error, Result};

/// Dynamic-output nodes nest; a bound keeps hostile input from exhausting the stack.
const MAX_NODE_DEPTH: usize = 64;

/// Parse `.drv` text. `name` is the derivation name (the `.drv` file's name without
/// `.drv`); it is not part of the text.
pub fn parse(store_dir: &StoreDir, text: &[u8], name: &str) -> Result<Derivation> {
    let mut p = Parser {
        s: text,
        pos: 0,
        store_dir,
    };
    let drv = p.derivation(name)?;
    if p.pos != text.len() {
        return Err(Error::TrailingData { offset: p.pos });
    }
    Ok(drv)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Traditional,
    DynamicDerivations,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    store_dir: &'a StoreDir,
}

impl<'a> Parser<'a> {
    fn derivation(&mut self, name: &str) -> Result<Derivation> {
        let version = if self.s.starts_with(b"Derive(") {
            self.pos += b"Derive(".len();
            Version::Traditional
        } else if self.s.starts_with(b"DrvWithVersion(") {
            self.pos += b"DrvWithVersion(".len();
            let offset = self.pos;
            let version = self.string()?;
            if version.as_ref() != super::DYNAMIC_DERIVATIONS_VERSION.as_bytes() {
                return Err(Error::UnknownVersion {
                    offset,
                    version: version.to_str_lossy().into_owned(),
                });
            }
            self.expect(b',', "','")?;
            Version::DynamicDerivations
        } else {
            // Point at the first byte that differs from `Derive(`.
            let matched = self
                .s
                .iter()
                .zip(b"Derive(")
                .take_while(|(a, b)| a == b)
                .count();
            return Err(Error::Syntax {
                offset: matched,
                expected: "'Derive(' or 'DrvWithVersion('",
                found: self.s.get(matched).copied(),
            });
        };

        let mut drv = Derivation {
            name: name.to_string(),
            ..Derivation::default()
        };

        self.list(|p| {
            let offset = p.pos;
            let (output_name, output) = p.output()?;
            match drv.outputs.entry(output_name) {
                Entry::Occupied(e) => Err(Error::Duplicate {
                    offset,
                    what: "output",
                    key: e.key().clone(),
                }),
                Entry::Vacant(e) => {
                    e.insert(output);
                    Ok(())
                }
            }
        })?;

        self.expect(b',', "','")?;
        self.list(|p| {
            let offset = p.pos;
            p.expect(b'(', "'('")?;
            let path = p.store_path()?;
            p.expect(b',', "','")?;
            let node = p.node(version, 0)?;
            p.expect(b')', "')'")?;
            match drv.input_drvs.entry(path) {
                Entry::Occupied(e) => Err(Error::Duplicate {
                    offset,
                    what: "input derivation",
                    key: e.key().to_string(),
                }),
                Entry::Vacant(e) => {
                    e.insert(node);
                    Ok(())
                }
            }
        })?;

        self.expect(b',', "','")?;
        self.list(|p| {
            let path = p.store_path()?;
            drv.input_srcs.insert(path);
            Ok(())
        })?;

        self.expect(b',', "','")?;
        drv.platform = BString::from(self.string()?.into_owned());
        self.expect(b',', "','")?;
        drv.builder = BString::from(self.string()?.into_owned());

        self.expect(b',', "','")?;
        self.list(|p| {
            let arg = p.string()?;
            drv.args.push(BString::from(arg.into_owned()));
            Ok(())
        })?;

        self.expect(b',', "','")?;
        self.list(|p| {
            p.expect(b'(', "'('")?;
            let offset = p.pos;
            let key = p.string()?;
            p.expect(b',', "','")?;
            let value = p.string()?;
            p.expect(b')', "')'")?;
            match drv.env.entry(BString::from(key.into_owned())) {
                Entry::Occupied(e) => Err(Error::Duplicate {
                    offset,
                    what: "environment variable",
                    key: e.key().to_str_lossy().into_owned(),
                }),
                Entry::Vacant(e) => {
                    e.insert(BString::from(value.into_owned()));
                    Ok(())
                }
            }
        })?;

        self.expect(b')', "')'")?;
        Ok(drv)
    }

    /// `(name,path,hashAlgo,hash)`, classified by the reader rules of formats.md §4.5.
    fn output(&mut self) -> Result<(String, DerivationOutput)> {
        self.expect(b'(', "'('")?;
        let name = self.utf8_string("output name")?;
        self.expect(b',', "','")?;
        let path_offset = self.pos;
        let path = self.string()?;
        self.expect(b',', "','")?;
        let algo_offset = self.pos;
        let algo = self.utf8_string("output hash algorithm")?;
        self.expect(b',', "','")?;
        let hash_offset = self.pos;
        let hash = self.utf8_string("output hash")?;
        self.expect(b')', "')'")?;

        let bad = |offset: usize, reason: String| Error::BadOutput {
            offset,
            output: name.clone(),
            reason,
        };
        let output = if algo.is_empty() {
            if !hash.is_empty() {
                return Err(bad(hash_offset, "has a hash but no hash algorithm".into()));
            }
            if path.is_empty() {
                DerivationOutput::Deferred
            } else {
                DerivationOutput::InputAddressed(self.parse_path(&path, path_offset)?)
            }
        } else {
            let (method, algorithm) = ContentAddressMethod::parse_hash_algo(&algo)
                .map_err(|e| bad(algo_offset, e.to_string()))?;
            if hash == "impure" {
                if !path.is_empty() {
                    return Err(bad(
                        path_offset,
                        "an impure output must have an empty path".into(),
                    ));
                }
                DerivationOutput::Impure {
                    method,
                    algo: algorithm,
                }
            } else if !hash.is_empty() {
                // Nix validates the path but then recomputes it from the hash, so a
                // path that does not match is accepted and ignored, as in 2.8.
                self.parse_path(&path, path_offset)?;
                // 2.8 reads this field with parseNonSRIUnprefixed: any of base16,
                // nix32 and base64, told apart by length.
                let digest = encoding::decode_by_length(&hash, algorithm, &hash)
                    .map_err(|e| bad(hash_offset, e.to_string()))?;
                let hash = Hash::from_bytes(algorithm, &digest)
                    .ok_or_else(|| bad(hash_offset, "hash has the wrong length".into()))?;
                DerivationOutput::CAFixed { method, hash }
            } else {
                if !path.is_empty() {
                    return Err(bad(
                        path_offset,
                        "a floating content-addressed output must have an empty path".into(),
                    ));
                }
                DerivationOutput::CAFloating {
                    method,
                    algo: algorithm,
                }
            }
        };
        Ok((name, output))
    }

    /// The value of an inputDrvs entry: a list of output names, or (only in the
    /// versioned form) `([outputs],[(output,node),…])`.
    fn node(&mut self, version: Version, depth: usize) -> Result<InputNode> {
        let mut node = InputNode::default();
        if version == Version::DynamicDerivations && self.peek() == Some(b'(') {
            if depth >= MAX_NODE_DEPTH {
                return Err(Error::Syntax {
                    offset: self.pos,
                    expected: "at most 64 levels of dynamic outputs",
                    found: self.peek(),
                });
            }
            let offset = self.pos;
            self.pos += 1;
            self.output_names(&mut node.outputs)?;
            self.expect(b',', "','")?;
            self.list(|p| {
                let child_offset = p.pos;
                p.expect(b'(', "'('")?;
                let output = p.utf8_string("output name")?;
                p.expect(b',', "','")?;
                let child = p.node(version, depth + 1)?;
                p.expect(b')', "')'")?;
                match node.dynamic_outputs.entry(output) {
                    Entry::Occupied(e) => Err(Error::Duplicate {
                        offset: child_offset,
                        what: "dynamic output",
                        key: e.key().clone(),
                    }),
                    Entry::Vacant(e) => {
                        e.insert(child);
                        Ok(())
                    }
                }
            })?;
            self.expect(b')', "')'")?;
            if node.is_empty() {
                return Err(Error::Syntax {
                    offset,
                    expected: "an input with at least one output",
                    found: Some(b'('),
                });
            }
        } else {
            let offset = self.pos;
            self.output_names(&mut node.outputs)?;
            // The versioned form refuses entries that ask for nothing; 2.8's reader
            // accepts `[]` in the classic form, so we do too.
            if version == Version::DynamicDerivations && node.is_empty() {
                return Err(Error::Syntax {
                    offset,
                    expected: "an input with at least one output",
                    found: Some(b'['),
                });
            }
        }
        Ok(node)
    }

    fn output_names(&mut self, into: &mut BTreeSet<String>) -> Result<()> {
        self.list(|p| {
            into.insert(p.utf8_string("output name")?);
            Ok(())
        })
    }

    /// `[` item {`,` item} `]` or `[]`.
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b'[', "'['")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                found => {
                    return Err(Error::Syntax {
                        offset: self.pos,
                        expected: "',' or ']'",
                        found,
                    })
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<()> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            found => Err(Error::Syntax {
                offset: self.pos,
                expected,
                found,
            }),
        }
    }

    /// A quoted string with escapes undone. Borrowed from the input when it has none,
    /// which is the common case even for very large env values.
    fn string(&mut self) -> Result<Cow<'a, [u8]>> {
        self.expect(b'"', "'\"'")?;
        let s: &'a [u8] = self.s;
        let start = self.pos;
        let unterminated = || Error::Syntax {
            offset: s.len(),
            expected: "'\"' to end the string",
            found: None,
        };
        let first = s[start..].find_byteset(b"\"\\").ok_or_else(unterminated)?;
        if s[start + first] == b'"' {
            self.pos = start + first + 1;
            return Ok(Cow::Borrowed(&s[start..start + first]));
        }
        // Escapes present: copy runs between them. Escaped strings are usually short
        // or sparse in escapes, but `__json` values can be megabytes of `\"`.
        let mut owned = Vec::with_capacity(first + 16);
        owned.extend_from_slice(&s[start..start + first]);
        let mut i = start + first;
        loop {
            match s.get(i) {
                None => return Err(unterminated()),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    let escaped = *s.get(i + 1).ok_or_else(unterminated)?;
                    owned.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                    i += 2;
                }
                Some(_) => {
                    let run = s[i..].find_byteset(b"\"\\").ok_or_else(unterminated)?;
                    owned.extend_from_slice(&s[i..i + run]);
                    i += run;
                }
            }
        }
    }

    fn utf8_string(&mut self, field: &'static str) -> Result<String> {
        let offset = self.pos;
        let bytes = self.string()?;
        String::from_utf8(bytes.into_owned()).map_err(|_| Error::InvalidUtf8 { offset, field })
    }

    fn store_path(&mut self) -> Result<StorePath> {
        let offset = self.pos;
        let bytes = self.string()?;
        self.parse_path(&bytes, offset)
    }

    fn parse_path(&self, bytes: &[u8], offset: usize) -> Result<StorePath> {
        let text = std::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 {
            offset,
            field: "store path",
        })?;
        self.store_dir
            .parse(text)
            .map_err(|source| Error::BadStorePath {
                offset,
                path: text.to_string(),
                source,
            })
    }
}
