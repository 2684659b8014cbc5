//! After a successful builder: check each output, give it canonical metadata, move it
//! into the store, scan it for references, check fixed-output hashes and reference
//! constraints, and describe it for registration (Nix's `LocalDerivationGoal::registerOutputs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_derivation::{Derivation, DerivationOutput, ParsedAttrs};
use kiln_hash::{Algorithm, Hasher};
use kiln_store::{LocalStore, PathInfo};
use kiln_store_path::{ContentAddress, FileIngestionMethod, ReferenceScanner, StorePath};

use crate::error::{Error, IoContext, Result};

/// One output as the builder left it.
pub struct RawOutput {
    pub name: String,
    pub path: StorePath,
    /// Where it is on the host, inside the chroot's store.
    pub host_path: std::path::PathBuf,
}

/// Check and move every output into the store; returns what to register. On error the
/// moved outputs are deleted again, so nothing half-checked is left at a store path.
pub fn process_outputs(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    raw: &[RawOutput],
    input_closure: &BTreeSet<StorePath>,
    build_uid: u32,
) -> Result<Vec<PathInfo>> {
    let drv_str = store.layout().display(drv_path);
    let mut moved: Vec<&StorePath> = Vec::new();
    let result = (|| {
        for out in raw {
            let meta =
                std::fs::symlink_metadata(&out.host_path).map_err(|_| Error::MissingOutput {
                    drv: drv_str.clone(),
                    output: out.name.clone(),
                    path: store.layout().display(&out.path),
                })?;
            if !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 || meta.uid() != build_uid
            {
                return Err(Error::SuspiciousOutput {
                    path: store.layout().display(&out.path),
                    output: out.name.clone(),
                });
            }
            canonicalise(&out.host_path, build_uid, &mut HashSet::new())?;
            let target = store.layout().real_path(&out.path);
            kiln_store::remove_tree(&target)?;
            std::fs::rename(&out.host_path, &target)
                .ctx("moving output into the store", &target)?;
            moved.push(&out.path);
        }
        let candidates: BTreeSet<&StorePath> = input_closure
            .iter()
            .chain(raw.iter().map(|o| &o.path))
            .collect();
        let mut infos = Vec::new();
        for out in raw {
            infos.push(describe_output(store, drv_path, drv, out, &candidates)?);
        }
        check_output_cycles(&drv_str, raw, &infos)?;
        check_reference_constraints(store, drv, &drv_str, raw, &infos)?;
        Ok(infos)
    })();
    if result.is_err() {
        for p in moved {
            let _ = kiln_store::remove_tree(&store.layout().real_path(p));
        }
    }
    result
}

/// Canonical metadata (the store's [`kiln_store::canonicalise_entry`]), refusing
/// files the builder did not create (hard links to other users' files), as Nix does.
fn canonicalise(path: &Path, build_uid: u32, seen: &mut HashSet<(u64, u64)>) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).ctx("reading", path)?;
    let inode = (meta.dev(), meta.ino());
    if meta.uid() != build_uid && !(meta.is_file() && seen.contains(&inode)) {
        return Err(Error::InvalidOwnership(path.to_path_buf()));
    }
    seen.insert(inode);
    let kind = meta.file_type();
    if kind.is_dir() {
        // Entries first, while the directory is still writable for them.
        for entry in std::fs::read_dir(path).ctx("reading directory", path)? {
            canonicalise(
                &entry.ctx("reading directory", path)?.path(),
                build_uid,
                seen,
            )?;
        }
    } else if !kind.is_file() && !kind.is_symlink() {
        return Err(Error::Store(kiln_store::Error::UnsupportedFileType(
            path.to_path_buf(),
        )));
    }
    kiln_store::canonicalise_entry(path, &meta)?;
    Ok(())
}

/// NAR hash, size and references of a moved output, and its content address when it
/// is a fixed output (checked against the derivation's hash).
fn describe_output(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    out: &RawOutput,
    candidates: &BTreeSet<&StorePath>,
) -> Result<PathInfo> {
    let real = store.layout().real_path(&out.path);
    let mut nar_hash = Hasher::new(Algorithm::Sha256);
    let mut scanner = ReferenceScanner::new(candidates.iter().copied());
    let mut fixed_nar: Option<Hasher> = None;
    let fixed = match drv.outputs.get(&out.name) {
        Some(DerivationOutput::CAFixed { method, hash }) => Some((*method, hash.clone())),
        _ => None,
    };
    if let Some((method, hash)) = &fixed {
        if method.file_ingestion() == Some(FileIngestionMethod::Recursive)
            && hash.algorithm() != Algorithm::Sha256
        {
            fixed_nar = Some(Hasher::new(hash.algorithm()));
        }
    }
    let size = {
        let mut sink = Tee {
            a: &mut nar_hash,
            b: &mut scanner,
            c: fixed_nar.as_mut(),
        };
        kiln_nar::dump_path(&real, &mut sink)?
    };
    let nar_hash = nar_hash.finish();
    let mut info = PathInfo::new(out.path.clone(), nar_hash.clone(), size);
    info.references = scanner.found().into_iter().collect();
    info.deriver = Some(drv_path.clone());
    info.ultimate = true;
    if let Some((method, expected)) = fixed {
        let ingestion = method
            .file_ingestion()
            .unwrap_or(FileIngestionMethod::Recursive);
        let actual = match ingestion {
            FileIngestionMethod::Flat => {
                let meta = std::fs::symlink_metadata(&real).ctx("reading", &real)?;
                if !meta.is_file() || meta.mode() & 0o100 != 0 {
                    return Err(Error::FlatOutputNotAFile {
                        path: store.layout().display(&out.path),
                    });
                }
                let mut h = Hasher::new(expected.algorithm());
                let mut f = std::fs::File::open(&real).ctx("opening", &real)?;
                std::io::copy(&mut f, &mut h).ctx("reading", &real)?;
                h.finish()
            }
            FileIngestionMethod::Recursive => match fixed_nar {
                Some(h) => h.finish(),
                None => nar_hash.clone(),
            },
        };
        if actual != expected {
            keep_under_actual_path(
                store, drv_path, out, &real, ingestion, &actual, &nar_hash, size,
            )?;
            return Err(Error::HashMismatch {
                drv: store.layout().display(drv_path),
                specified: expected.to_sri(),
                got: actual.to_sri(),
            });
        }
        info.ca = Some(ContentAddress::Fixed(ingestion, actual));
    }
    Ok(info)
}

/// A fixed output with the wrong hash is still registered, as Nix does, under the
/// content-addressed path of what was actually produced, so the download need not be
/// repeated to find the right hash.
#[allow(clippy::too_many_arguments)]
fn keep_under_actual_path(
    store: &LocalStore,
    drv_path: &StorePath,
    out: &RawOutput,
    real: &Path,
    ingestion: FileIngestionMethod,
    actual: &kiln_hash::Hash,
    nar_hash: &kiln_hash::Hash,
    nar_size: u64,
) -> Result<()> {
    let path =
        store
            .store_dir()
            .make_fixed_output_path(ingestion, actual, out.path.name(), [], false)?;
    store.add_temp_root(&path)?;
    if store.is_valid(&path)? {
        return Ok(());
    }
    let lock = kiln_store::PathLock::acquire(&store.layout().lock_path(&path))?;
    if !store.is_valid(&path)? {
        let target = store.layout().real_path(&path);
        kiln_store::remove_tree(&target)?;
        std::fs::rename(real, &target).ctx("moving output into the store", &target)?;
        store.sync_store()?;
        let mut info = PathInfo::new(path, nar_hash.clone(), nar_size);
        info.deriver = Some(drv_path.clone());
        info.ultimate = true;
        info.ca = Some(ContentAddress::Fixed(ingestion, actual.clone()));
        store.register_valid_paths(&[info])?;
    }
    lock.release_and_delete();
    Ok(())
}

/// Outputs may refer to each other, but not in a cycle.
fn check_output_cycles(drv: &str, raw: &[RawOutput], infos: &[PathInfo]) -> Result<()> {
    let index: BTreeMap<&StorePath, usize> =
        raw.iter().enumerate().map(|(i, o)| (&o.path, i)).collect();
    // Depth-first search for a back edge among outputs.
    fn visit(
        i: usize,
        infos: &[PathInfo],
        index: &BTreeMap<&StorePath, usize>,
        state: &mut [u8],
        raw: &[RawOutput],
        drv: &str,
    ) -> Result<()> {
        state[i] = 1;
        for r in &infos[i].references {
            let Some(&j) = index.get(r) else { continue };
            if j == i {
                continue;
            }
            if state[j] == 1 {
                return Err(Error::OutputCycle {
                    drv: drv.to_string(),
                    a: raw[j].name.clone(),
                    b: raw[i].name.clone(),
                });
            }
            if state[j] == 0 {
                visit(j, infos, index, state, raw, drv)?;
            }
        }
        state[i] = 2;
        Ok(())
    }
    let mut state = vec![0u8; raw.len()];
    for i in 0..raw.len() {
        if state[i] == 0 {
            visit(i, infos, &index, &mut state, raw, drv)?;
        }
    }
    Ok(())
}

/// `allowedReferences`, `allowedRequisites`, `disallowedReferences`,
/// `disallowedRequisites` (§4.9): lists of store paths or output names.
/// Nix's per-output checks (`checkOutputs` in `local-derivation-goal.cc`).
#[derive(Default)]
struct Checks {
    /// Legacy mode leaves the output itself out of its requisites.
    ignore_self_refs: bool,
    max_size: Option<u64>,
    max_closure_size: Option<u64>,
    /// `allowedReferences`, `allowedRequisites`, `disallowedReferences`,
    /// `disallowedRequisites`, as given.
    lists: [Option<Vec<String>>; 4],
}

const CHECK_LISTS: [&str; 4] = [
    "allowedReferences",
    "allowedRequisites",
    "disallowedReferences",
    "disallowedRequisites",
];

/// The checks for `output`: with structured attributes from
/// `outputChecks.<output>` in `__json`, otherwise the same top-level attributes for
/// every output. Nix 2.8's structured reader also copies each list it reads into
/// `disallowedRequisites`, but then assigns that field last, so the copy never counts.
fn checks_for(drv: &Derivation, drv_str: &str, output: &str) -> Result<Option<Checks>> {
    // Nix's output checks name the derivation by its full path.
    let attrs = ParsedAttrs::parse(drv_str, drv).map_err(Error::attribute)?;
    if attrs.structured().is_none() {
        let mut checks = Checks {
            ignore_self_refs: true,
            ..Checks::default()
        };
        for (slot, attr) in checks.lists.iter_mut().zip(CHECK_LISTS) {
            *slot = attrs.strings(attr).map_err(Error::attribute)?;
        }
        return Ok(Some(checks));
    }
    let Some(spec) = attrs.get("outputChecks").and_then(|c| c.get(output)) else {
        return Ok(None);
    };
    let bad = |attr: &str, why| Error::BadAttribute {
        attr: attr.to_string(),
        drv: drv_str.to_string(),
        why,
    };
    let mut checks = Checks::default();
    let size = |name: &str| -> Result<Option<u64>> {
        match spec.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(name, "must be a non-negative integer")),
        }
    };
    checks.max_size = size("maxSize")?;
    checks.max_closure_size = size("maxClosureSize")?;
    for (slot, attr) in checks.lists.iter_mut().zip(CHECK_LISTS) {
        if let Some(list) = spec.get(attr) {
            *slot = Some(
                attrs
                    .list_of_strings(attr, list)
                    .map_err(Error::attribute)?,
            );
        }
    }
    Ok(Some(checks))
}

fn check_reference_constraints(
    store: &LocalStore,
    drv: &Derivation,
    drv_str: &str,
    raw: &[RawOutput],
    infos: &[PathInfo],
) -> Result<()> {
    let outputs: BTreeMap<&str, &StorePath> =
        raw.iter().map(|o| (o.name.as_str(), &o.path)).collect();
    let parse_spec = |words: &[String]| -> Result<BTreeSet<StorePath>> {
        let mut set = BTreeSet::new();
        for word in words {
            if let Some(p) = outputs.get(word.as_str()) {
                set.insert((*p).clone());
            } else if let Ok(p) = store.store_dir().parse(word) {
                set.insert(p);
            } else {
                return Err(Error::BadReferenceSpecifier(word.to_string()));
            }
        }
        Ok(set)
    };
    let by_path: BTreeMap<&StorePath, &PathInfo> = infos.iter().map(|i| (&i.path, i)).collect();
    // The closure (the path itself included), across siblings that are not
    // registered yet, with its total NAR size.
    let closure = |start: &PathInfo| -> Result<(BTreeSet<StorePath>, u64)> {
        let mut seen = BTreeSet::new();
        let mut size = 0u64;
        let mut queue = vec![start.path.clone()];
        while let Some(p) = queue.pop() {
            if seen.contains(&p) {
                continue;
            }
            let (refs, nar_size) = match by_path.get(&p) {
                Some(info) => (info.references.clone(), info.nar_size),
                None => {
                    let info = store.query_path_info(&p)?.ok_or_else(|| {
                        kiln_store::Error::InvalidPath(store.layout().display(&p))
                    })?;
                    (info.references, info.nar_size)
                }
            };
            size = size.saturating_add(nar_size);
            queue.extend(refs.into_iter().filter(|r| !seen.contains(r)));
            seen.insert(p);
        }
        Ok((seen, size))
    };
    for (out, info) in raw.iter().zip(infos) {
        let Some(checks) = checks_for(drv, drv_str, &out.name)? else {
            continue;
        };
        let display = store.layout().display(&info.path);
        if let Some(limit) = checks.max_size {
            if info.nar_size > limit {
                return Err(Error::OutputTooLarge {
                    path: display,
                    size: info.nar_size,
                    limit,
                });
            }
        }
        if let Some(limit) = checks.max_closure_size {
            let (_, size) = closure(info)?;
            if size > limit {
                return Err(Error::ClosureTooLarge {
                    path: display,
                    size,
                    limit,
                });
            }
        }
        for (list, (requisite, allowed)) in
            checks
                .lists
                .iter()
                .zip([(false, true), (true, true), (false, false), (true, false)])
        {
            let Some(words) = list else { continue };
            let set = parse_spec(words)?;
            let used = if requisite {
                let (mut all, _) = closure(info)?;
                if checks.ignore_self_refs {
                    all.remove(&info.path);
                }
                all
            } else {
                info.references.clone()
            };
            let bad: Vec<&StorePath> = used
                .iter()
                .filter(|p| set.contains(*p) != allowed)
                .collect();
            if !bad.is_empty() {
                let paths: String = bad
                    .iter()
                    .map(|p| format!("\n  {}", store.layout().display(p)))
                    .collect();
                return Err(Error::IllegalReference {
                    path: display,
                    paths,
                });
            }
        }
    }
    Ok(())
}

struct Tee<'a> {
    a: &'a mut Hasher,
    b: &'a mut ReferenceScanner,
    c: Option<&'a mut Hasher>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.a.update(buf);
        self.b.update(buf);
        if let Some(c) = self.c.as_deref_mut() {
            c.update(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
