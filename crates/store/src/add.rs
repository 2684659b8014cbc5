//! Adding objects: trees and files (NAR- or flat-hashed), text such as `.drv` files,
//! and NARs with known metadata. Every path goes through the same commit protocol:
//! temp root → lock → re-check validity → clear invalid leftovers → put the contents in
//! place → sync → register → release the lock (deleting it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use kiln_derivation::Derivation;
use kiln_hash::{Algorithm, Hash, Hasher};
use kiln_nar::NarWriter;
use kiln_store_path::{ContentAddress, FileIngestionMethod, StorePath};

use crate::canonical::{
    canonical_mode, canonicalise_tree, remove_tree, TreeCopier, CANONICAL_MTIME_SECS,
};
use crate::error::{Error, IoContext, Result};
use crate::lock::PathLock;
use crate::{LocalStore, PathInfo};

impl LocalStore {
    /// Add a file or tree as `nix-store --add` (recursive, sha256) or
    /// `nix-store --add-fixed [--recursive] ALGO` do. The contents are read once,
    /// copied into scratch space and hashed on the way.
    pub fn add_path(
        &self,
        src: &Path,
        name: &str,
        method: FileIngestionMethod,
        algorithm: Algorithm,
    ) -> Result<PathInfo> {
        kiln_store_path::validate_name(name)?;
        let scratch = self.scratch_path("kiln-add")?;
        let scratch_real = self.layout().real_path(&scratch);
        let result = self.copy_into_scratch(src, &scratch_real, method, algorithm);
        let (nar_hash, nar_size, ca_hash) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = remove_tree(&scratch_real);
                return Err(e);
            }
        };
        let ca = ContentAddress::Fixed(method, ca_hash);
        let path = self
            .store_dir()
            .make_content_addressed_path(&ca, name, [], false)?;
        let mut info = PathInfo::new(path, nar_hash, nar_size);
        info.ca = Some(ca);
        self.commit_scratch(&scratch_real, info)
    }

    fn copy_into_scratch(
        &self,
        src: &Path,
        scratch_real: &Path,
        method: FileIngestionMethod,
        algorithm: Algorithm,
    ) -> Result<(Hash, u64, Hash)> {
        let mut nar_sha256 = Hasher::new(Algorithm::Sha256);
        // A second NAR hasher only when the content address uses another algorithm.
        let mut nar_other = (method == FileIngestionMethod::Recursive
            && algorithm != Algorithm::Sha256)
            .then(|| Hasher::new(algorithm));
        let mut flat = (method == FileIngestionMethod::Flat).then(|| Hasher::new(algorithm));
        let nar_size = {
            let sink = Tee {
                a: &mut nar_sha256,
                b: nar_other.as_mut(),
            };
            let mut copier = TreeCopier::new(sink, flat.as_mut());
            copier.copy(src, scratch_real)?;
            let position = copier.nar.position();
            copier.nar.finish()?;
            position
        };
        let nar_hash = nar_sha256.finish();
        let ca_hash = match (flat, nar_other) {
            (Some(flat), _) => flat.finish(),
            (None, Some(other)) => other.finish(),
            (None, None) => nar_hash.clone(),
        };
        Ok((nar_hash, nar_size, ca_hash))
    }

    /// Move finished scratch contents to `info.path` and register them, unless someone
    /// else already made the path valid.
    fn commit_scratch(&self, scratch_real: &Path, info: PathInfo) -> Result<PathInfo> {
        let outcome = self.commit_with(&info, |target| {
            fs::rename(scratch_real, target).ctx("moving into place", target)
        });
        // Whatever happened, the scratch copy is no longer needed.
        let _ = remove_tree(scratch_real);
        outcome
    }

    /// The commit protocol around `put`, which must create `info.path`'s file.
    fn commit_with(
        &self,
        info: &PathInfo,
        put: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathInfo> {
        let path = &info.path;
        self.add_temp_root(path)?;
        // References must stay valid until the registration commits: root them too
        // (the transaction refuses the registration if one was already gone).
        for reference in info.references.iter().filter(|r| *r != path) {
            self.add_temp_root(reference)?;
        }
        if let Some(existing) = self.query_path_info(path)? {
            return Ok(existing);
        }
        let lock = PathLock::acquire(&self.layout().lock_path(path))?;
        // Someone may have finished it while we waited for the lock.
        if let Some(existing) = self.query_path_info(path)? {
            lock.release_and_delete();
            return Ok(existing);
        }
        let target = self.layout().real_path(path);
        remove_tree(&target)?;
        put(&target)?;
        self.sync()?;
        self.register_valid_paths(std::slice::from_ref(info))?;
        lock.release_and_delete();
        Ok(info.clone())
    }

    /// Add a text object (`builtins.toFile`, `.drv` files): its path depends on the
    /// contents and references, which must be valid.
    pub fn add_text(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        let content_hash = Hash::sha256(contents);
        let path = self
            .store_dir()
            .make_text_path(name, &content_hash, references)?;
        let (nar_hash, nar_size) = nar_of_file(contents)?;
        let mut info = PathInfo::new(path, nar_hash, nar_size);
        info.references = references.clone();
        info.ca = Some(ContentAddress::Text(content_hash));
        self.commit_with(&info, |target| write_canonical_file(target, contents))?;
        Ok(info.path)
    }

    /// Write a derivation as a `.drv` text object (references: its input sources and
    /// input derivations).
    pub fn add_derivation(&self, drv: &Derivation) -> Result<StorePath> {
        let name = format!("{}.drv", drv.name);
        let text = drv
            .to_aterm(self.store_dir())
            .map_err(|source| Error::derivation(name.clone(), source))?;
        self.add_text(&name, &text, &drv.references())
    }

    /// Read a valid `.drv` from the store (temp-rooting it first). Parsed once per
    /// process: this is the one cache of `.drv`s, which builds and their planning share.
    pub fn read_derivation(&self, drv_path: &StorePath) -> Result<Arc<Derivation>> {
        self.add_temp_root(drv_path)?;
        if let Some(drv) = self.cached_derivation(drv_path) {
            return Ok(drv);
        }
        if !self.is_valid(drv_path)? {
            return Err(Error::InvalidPath(self.layout().display(drv_path)));
        }
        let drv = Arc::new(read_derivation(self, drv_path)?);
        self.cache_derivation(drv_path, Arc::clone(&drv));
        Ok(drv)
    }

    /// Fill in the output paths (and matching env vars) of a derivation whose outputs
    /// are blank, as Nix's evaluator does, checking any that are given. Its input
    /// derivations must be valid in this store.
    pub fn complete_derivation(&self, drv: Derivation) -> Result<Derivation> {
        let name = format!("{}.drv", drv.name);
        let mut cache = self.drv_hash_cache();
        let mut resolve = |p: &StorePath| {
            self.read_derivation(p)
                .map(|d| (*d).clone())
                .map_err(|e| kiln_derivation::Error::lookup(self.layout().display(p), e))
        };
        kiln_derivation::fill_in_output_paths(self.store_dir(), drv, &mut cache, &mut resolve)
            .map_err(|source| Error::derivation(name, source))
    }

    /// Import a NAR whose metadata (path, hash, size, references, deriver, CA) the
    /// caller states; the NAR is checked against it before anything is registered.
    /// Exactly the NAR's bytes are read from `nar`, which should be buffered.
    pub fn import_nar(&self, expected: &PathInfo, nar: &mut dyn Read) -> Result<()> {
        let path_str = self.layout().display(&expected.path);
        self.add_temp_root(&expected.path)?;
        if self.is_valid(&expected.path)? {
            // Consume the stream so the caller's framing stays in step.
            std::io::copy(nar, &mut std::io::sink()).ctx("reading NAR for", &path_str)?;
            return Ok(());
        }
        let scratch = self.scratch_path("kiln-import")?;
        let scratch_real = self.layout().real_path(&scratch);
        let checked = (|| {
            let mut reader = HashingReader {
                inner: nar,
                hasher: Hasher::new(Algorithm::Sha256),
                count: 0,
            };
            // Embedded: the NAR may be followed by more of the caller's stream.
            kiln_nar::restore_from(
                &mut kiln_nar::NarReader::embedded(&mut reader, 0),
                &scratch_real,
            )?;
            let got = reader.hasher.finish();
            if got != expected.nar_hash {
                return Err(Error::HashMismatch {
                    path: path_str.clone(),
                    expected: expected.nar_hash.to_string(),
                    got: got.to_string(),
                });
            }
            if expected.nar_size != 0 && reader.count != expected.nar_size {
                return Err(Error::SizeMismatch {
                    path: path_str.clone(),
                    expected: expected.nar_size,
                    got: reader.count,
                });
            }
            if let Some(ca) = &expected.ca {
                self.check_content_address(expected, ca, &scratch_real)?;
            }
            canonicalise_tree(&scratch_real)?;
            Ok(reader.count)
        })();
        match checked {
            Ok(size) => {
                let mut info = expected.clone();
                info.nar_size = size;
                self.commit_scratch(&scratch_real, info).map(|_| ())
            }
            Err(e) => {
                let _ = remove_tree(&scratch_real);
                Err(e)
            }
        }
    }

    /// A CA claim must reproduce the path from the contents.
    fn check_content_address(
        &self,
        info: &PathInfo,
        ca: &ContentAddress,
        tree: &Path,
    ) -> Result<()> {
        let self_reference = info.references.contains(&info.path);
        let others = info.references.iter().filter(|r| **r != info.path);
        let actual_hash = match ca {
            ContentAddress::Text(_) => Hash::sha256(fs::read(tree).ctx("reading", tree)?),
            ContentAddress::Fixed(FileIngestionMethod::Flat, h) => {
                let mut hasher = Hasher::new(h.algorithm());
                let mut f = fs::File::open(tree).ctx("opening", tree)?;
                std::io::copy(&mut f, &mut hasher).ctx("reading", tree)?;
                hasher.finish()
            }
            ContentAddress::Fixed(FileIngestionMethod::Recursive, h) => {
                let mut hasher = Hasher::new(h.algorithm());
                kiln_nar::dump_path(tree, &mut hasher)?;
                hasher.finish()
            }
        };
        let actual = match ca {
            ContentAddress::Text(_) => ContentAddress::Text(actual_hash),
            ContentAddress::Fixed(m, _) => ContentAddress::Fixed(*m, actual_hash),
        };
        let computed = self.store_dir().make_content_addressed_path(
            &actual,
            info.path.name(),
            others,
            self_reference,
        )?;
        if computed != info.path {
            return Err(Error::ContentAddressMismatch {
                path: self.layout().display(&info.path),
                computed: self.layout().display(&computed),
            });
        }
        Ok(())
    }
}

/// The `DerivationOutputs` rows Nix writes when a `.drv` becomes valid: every output
/// whose path is known from the derivation itself. Like Nix, refuse a derivation whose
/// input-addressed outputs are not the paths its hash modulo gives.
pub(crate) fn derivation_outputs_to_record(
    store: &LocalStore,
    drv_path: &StorePath,
) -> Result<BTreeMap<String, StorePath>> {
    let drv = read_derivation(store, drv_path)?;
    let err = |source| Error::derivation(store.layout().display(drv_path), source);
    let checked = {
        let mut cache = store.drv_hash_cache();
        let mut resolve = |p: &StorePath| {
            read_derivation(store, p)
                .map_err(|e| kiln_derivation::Error::lookup(store.layout().display(p), e))
        };
        kiln_derivation::fill_in_output_paths(
            store.store_dir(),
            drv.clone(),
            &mut cache,
            &mut resolve,
        )
    };
    match checked {
        Ok(filled) if filled.outputs != drv.outputs => {
            return Err(Error::IncorrectDerivationOutput {
                drv: store.layout().display(drv_path),
                got: format!("{:?}", drv.outputs),
                expected: format!("{:?}", filled.outputs),
            })
        }
        Ok(_) => {}
        Err(kiln_derivation::Error::OutputPathMismatch {
            given, computed, ..
        }) => {
            return Err(Error::IncorrectDerivationOutput {
                drv: store.layout().display(drv_path),
                got: given,
                expected: computed,
            })
        }
        Err(kiln_derivation::Error::EnvMismatch {
            var,
            given,
            expected,
            ..
        }) => {
            return Err(Error::IncorrectDerivationOutput {
                drv: store.layout().display(drv_path),
                got: format!("{var}={given}"),
                expected: format!("{var}={expected}"),
            })
        }
        Err(e) => return Err(err(e)),
    }
    Ok(drv
        .output_paths(store.store_dir())
        .map_err(err)?
        .into_iter()
        .filter_map(|(name, path)| path.map(|p| (name, p)))
        .collect())
}

fn read_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<Derivation> {
    let file = store.layout().real_path(drv_path);
    let text = fs::read(&file).ctx("reading derivation", &file)?;
    Derivation::from_drv_file(store.store_dir(), drv_path, &text)
        .map_err(|source| Error::derivation(store.layout().display(drv_path), source))
}

fn write_canonical_file(target: &Path, contents: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(canonical_mode(false, 0))
        .open(target)
        .ctx("creating", target)?;
    f.write_all(contents).ctx("writing", target)?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(CANONICAL_MTIME_SECS as u64))
        .ctx("setting mtime", target)
}

/// NAR hash and size of a single non-executable file with these contents.
fn nar_of_file(contents: &[u8]) -> Result<(Hash, u64)> {
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut nar = NarWriter::new(&mut hasher);
    nar.file(false, contents)?;
    let size = nar.position();
    nar.finish()?;
    Ok((hasher.finish(), size))
}

/// Feeds NAR bytes to one or two hashers.
struct Tee<'a> {
    a: &'a mut Hasher,
    b: Option<&'a mut Hasher>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.update(buf);
        if let Some(b) = self.b.as_deref_mut() {
            b.update(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Hasher,
    count: u64,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
