//! `hashDerivationModulo` (formats.md §5.2–§5.3): the hash an input-addressed output
//! path is made from, and the basis of 2.8's realisation ids.
//!
//! The rules that are easy to get wrong, all reproduced here:
//! * inputs are hashed *unmasked*; only the derivation asked about is masked;
//! * each input `.drv` path is replaced by the lowercase hex of the input's hash for
//!   the wanted output, entries are sorted by that hex key, and equal keys merge;
//! * masking blanks output paths and only those env values whose key is an output name;
//! * a fixed-output derivation hashes `fixed:out:<hashAlgo>:<hex>:<outPath>`, whatever
//!   its builder, env or inputs;
//! * impure derivations hash to sha256("impure") and are Deferred; floating CA ones,
//!   and anything with a Deferred input, are Deferred.
//!
//! Inputs are read through a caller-supplied [`Resolver`]; their (unmasked) hashes are
//! memoised in a [`DrvHashCache`], since real graphs share inputs heavily. Input graphs
//! are walked with an explicit stack, so long dependency chains cannot overflow it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kiln_hash::Hash;
use kiln_store_path::{StoreDir, StorePath};

use crate::model::{Derivation, DerivationOutput, DerivationType};
use crate::{Error, Result};

/// Obtains an input derivation from its `.drv` path (reading the store, or a map in
/// tests). Its errors are passed through, wrapped with the path.
pub type Resolver<'a> = dyn FnMut(&StorePath) -> Result<Derivation> + 'a;

/// Whether the hash can be turned into output paths now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrvHashKind {
    Regular,
    /// Depends on something whose output is known only after building (floating CA,
    /// impure, deferred, or a dynamic input): the outputs stay deferred.
    Deferred,
}

/// Per-output hash modulo, and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrvHash {
    pub hashes: BTreeMap<String, Hash>,
    pub kind: DrvHashKind,
}

/// Memo of the *unmasked* hashes of input derivations, keyed by `.drv` path. Valid for
/// one store directory; share one cache across calls on the same store.
#[derive(Debug, Default, Clone)]
pub struct DrvHashCache {
    hashes: HashMap<StorePath, DrvHash>,
}

impl DrvHashCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, drv_path: &StorePath) -> Option<&DrvHash> {
        self.hashes.get(drv_path)
    }

    /// Record an input's unmasked hash obtained elsewhere (e.g. from a database).
    pub fn insert(&mut self, drv_path: StorePath, hash: DrvHash) {
        self.hashes.insert(drv_path, hash);
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// `H(drv, mask)`. Input derivations are obtained with `resolve` unless `cache`
/// already knows them.
pub fn hash_derivation_modulo(
    store_dir: &StoreDir,
    drv: &Derivation,
    mask: bool,
    cache: &mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<DrvHash> {
    fill_cache(store_dir, drv, cache, resolve)?;
    hash_with_cached_inputs(store_dir, drv, mask, cache)
}

/// The text `H(drv, mask)` hashes for a non-fixed, non-impure derivation (the masked
/// and input-replaced ATerm of §5.9–§5.11), with the kind. `None` for fixed-output
/// and impure derivations, whose hash is not the hash of a text.
pub fn hash_modulo_text(
    store_dir: &StoreDir,
    drv: &Derivation,
    mask: bool,
    cache: &mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<Option<(Vec<u8>, DrvHashKind)>> {
    fill_cache(store_dir, drv, cache, resolve)?;
    let kind = match drv.derivation_type()? {
        DerivationType::FixedOutput | DerivationType::Impure => return Ok(None),
        DerivationType::FloatingContentAddressed => DrvHashKind::Deferred,
        // A deferred input-addressed derivation is not tainted by its own outputs:
        // the evaluator hashes exactly that shape to find out whether it must defer.
        DerivationType::InputAddressed | DerivationType::DeferredInputAddressed => {
            DrvHashKind::Regular
        }
    };
    modulo_text(store_dir, drv, kind, mask, cache).map(Some)
}

/// The unmasked hash of the input derivation at `drv_path`, computing (and caching)
/// whatever it needs.
pub fn input_hash<'c>(
    store_dir: &StoreDir,
    drv_path: &StorePath,
    cache: &'c mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<&'c DrvHash> {
    compute_inputs(store_dir, std::iter::once(drv_path.clone()), cache, resolve)?;
    cache.get(drv_path).ok_or_else(|| Error::Cycle {
        drv_path: store_dir.display(drv_path),
    })
}

/// Make sure every input of `drv` (transitively) has its unmasked hash in `cache`.
fn fill_cache(
    store_dir: &StoreDir,
    drv: &Derivation,
    cache: &mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<()> {
    compute_inputs(store_dir, direct_inputs(drv).cloned(), cache, resolve)
}

/// Inputs whose hashes the modulo text needs. Entries with dynamic outputs are left
/// out: they make the derivation Deferred and do not appear in the text (as in newer
/// Nix; 2.8 has no such inputs).
fn direct_inputs(drv: &Derivation) -> impl Iterator<Item = &StorePath> {
    drv.input_drvs
        .iter()
        .filter(|(_, node)| !node.is_dynamic())
        .map(|(path, _)| path)
}

fn compute_inputs(
    store_dir: &StoreDir,
    roots: impl IntoIterator<Item = StorePath>,
    cache: &mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<()> {
    // Each frame is a derivation whose inputs are being hashed; `on_stack` spots a
    // cycle, which only a misbehaving resolver could produce.
    let mut stack: Vec<(StorePath, Option<Derivation>)> = roots
        .into_iter()
        .filter(|p| cache.get(p).is_none())
        .map(|p| (p, None))
        .collect();
    let mut on_stack: HashSet<StorePath> = HashSet::new();
    while let Some((path, slot)) = stack.last_mut() {
        if cache.get(path).is_some() {
            stack.pop();
            continue;
        }
        let path = path.clone();
        let drv: &Derivation = match slot {
            Some(drv) => drv,
            None => {
                let drv = resolve(&path).map_err(|e| wrap_input(store_dir, &path, e))?;
                on_stack.insert(path.clone());
                slot.insert(drv)
            }
        };
        let missing: Vec<StorePath> = direct_inputs(drv)
            .filter(|p| cache.get(p).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            let hash = hash_with_cached_inputs(store_dir, drv, false, cache)
                .map_err(|e| wrap_input(store_dir, &path, e))?;
            cache.insert(path.clone(), hash);
            on_stack.remove(&path);
            stack.pop();
        } else {
            for input in missing {
                if on_stack.contains(&input) {
                    return Err(Error::Cycle {
                        drv_path: store_dir.display(&input),
                    });
                }
                stack.push((input, None));
            }
        }
    }
    Ok(())
}

fn wrap_input(store_dir: &StoreDir, path: &StorePath, e: Error) -> Error {
    match e {
        // Keep the innermost path only: the chain of wrappers would just repeat it.
        e @ (Error::Input { .. } | Error::Lookup { .. }) => e,
        e => Error::Input {
            drv_path: store_dir.display(path),
            source: Box::new(e),
        },
    }
}

/// `H(drv, mask)` once every input's hash is in `cache`.
fn hash_with_cached_inputs(
    store_dir: &StoreDir,
    drv: &Derivation,
    mask: bool,
    cache: &DrvHashCache,
) -> Result<DrvHash> {
    match drv.derivation_type()? {
        DerivationType::FixedOutput => {
            let mut hashes = BTreeMap::new();
            for (name, output) in &drv.outputs {
                if let DerivationOutput::CAFixed { method, hash } = output {
                    let path = crate::output_paths::fixed_output_path(
                        store_dir, *method, hash, &drv.name, name,
                    )?;
                    // The algorithm field is the text of the `.drv`'s hashAlgo (with
                    // its `r:` prefix); the hash is always base16 here.
                    let clear = format!(
                        "fixed:out:{}:{}:{}",
                        output.hash_algo_field(),
                        hash.to_base16(),
                        store_dir.display(&path)
                    );
                    hashes.insert(name.clone(), Hash::sha256(clear));
                }
            }
            Ok(DrvHash {
                hashes,
                kind: DrvHashKind::Regular,
            })
        }
        DerivationType::Impure => Ok(DrvHash {
            hashes: drv
                .outputs
                .keys()
                .map(|name| (name.clone(), Hash::sha256("impure")))
                .collect(),
            kind: DrvHashKind::Deferred,
        }),
        ty @ (DerivationType::FloatingContentAddressed
        | DerivationType::InputAddressed
        | DerivationType::DeferredInputAddressed) => {
            // See `hash_modulo_text` for why only floating CA starts out Deferred.
            let kind = if ty == DerivationType::FloatingContentAddressed {
                DrvHashKind::Deferred
            } else {
                DrvHashKind::Regular
            };
            let (text, kind) = modulo_text(store_dir, drv, kind, mask, cache)?;
            let digest = Hash::sha256(&text);
            Ok(DrvHash {
                hashes: drv
                    .outputs
                    .keys()
                    .map(|name| (name.clone(), digest.clone()))
                    .collect(),
                kind,
            })
        }
    }
}

/// The masked (if `mask`) ATerm with inputs replaced by their hashes, and the kind:
/// `kind` as the derivation's own type gives it, made Deferred by any Deferred or
/// dynamic input.
fn modulo_text(
    store_dir: &StoreDir,
    drv: &Derivation,
    mut kind: DrvHashKind,
    mask: bool,
    cache: &DrvHashCache,
) -> Result<(Vec<u8>, DrvHashKind)> {
    let mut replaced: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, node) in &drv.input_drvs {
        if node.is_dynamic() {
            kind = DrvHashKind::Deferred;
            continue;
        }
        let input = cache.get(path).ok_or_else(|| Error::Input {
            drv_path: store_dir.display(path),
            source: Box::new(Error::Cycle {
                drv_path: store_dir.display(path),
            }),
        })?;
        if input.kind == DrvHashKind::Deferred {
            kind = DrvHashKind::Deferred;
        }
        for output in &node.outputs {
            let hash = input
                .hashes
                .get(output)
                .ok_or_else(|| Error::MissingInputOutput {
                    name: drv.name.clone(),
                    drv_path: store_dir.display(path),
                    output: output.clone(),
                })?;
            replaced
                .entry(hash.to_base16())
                .or_default()
                .insert(output.clone());
        }
    }
    let mut text = Vec::new();
    crate::aterm::write(&mut text, drv, store_dir, mask, Some(&replaced))?;
    Ok((text, kind))
}
