//! Which store paths a build's chroot shows: its input closure, found once its inputs
//! exist or, for a build staged ahead, guessed from what exists and corrected later.

use std::collections::{BTreeMap, BTreeSet};

use kiln_derivation::Derivation;
use kiln_sandbox::SandboxPath;
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

use crate::error::{Error, Result};
use crate::realise::KnownOutputs;

/// Store paths and their references.
pub(crate) type ReferenceGraph = BTreeMap<StorePath, BTreeSet<StorePath>>;

/// What of the input closure exists while input derivations are still being built.
pub(crate) struct Provisional {
    /// The valid inputs, and for each input derivation not built yet, its own valid
    /// inputs (all that its outputs can refer to besides themselves), each
    /// temp-rooted before it is checked, closed under references.
    pub(crate) graph: ReferenceGraph,
    /// The part of it that is certainly in the final closure: the closure of the
    /// valid input sources and input derivation outputs (the rest is a guess).
    pub(crate) settled: BTreeSet<StorePath>,
}

pub(crate) fn provisional_closure(store: &LocalStore, drv: &Derivation) -> Result<Provisional> {
    let mut direct: Vec<StorePath> = Vec::new();
    let mut guessed: Vec<StorePath> = Vec::new();
    let add_if_valid = |p: &StorePath, to: &mut Vec<StorePath>| -> Result<()> {
        store.add_temp_root(p)?;
        if store.is_valid(p)? {
            to.push(p.clone());
        }
        Ok(())
    };
    for p in &drv.input_srcs {
        add_if_valid(p, &mut direct)?;
    }
    for (input_drv, node) in &drv.input_drvs {
        let input = store.read_derivation(input_drv)?;
        let produced = known_outputs(store, input_drv, &input)?;
        let mut pending = false;
        for output in &node.outputs {
            match produced.get(output) {
                Some(p) if store.is_valid(p)? => add_if_valid(p, &mut direct)?,
                _ => pending = true,
            }
        }
        if pending {
            for p in &input.input_srcs {
                add_if_valid(p, &mut guessed)?;
            }
            for (its_input, its_node) in &input.input_drvs {
                let its = store.read_derivation(its_input)?;
                let produced = known_outputs(store, its_input, &its)?;
                for output in &its_node.outputs {
                    if let Some(p) = produced.get(output) {
                        add_if_valid(p, &mut guessed)?;
                    }
                }
            }
        }
    }
    let all: Vec<StorePath> = direct.iter().chain(&guessed).cloned().collect();
    let mut graph = store.query_closure_graph(&all)?;
    let settled = closure_in(store, &mut graph, &direct)?.unwrap_or_default();
    Ok(Provisional { graph, settled })
}

/// Input sources plus the outputs of input derivations, closed under references; each
/// temp-rooted before it is checked.
pub(crate) fn input_closure(
    store: &LocalStore,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    drv_str: &str,
) -> Result<BTreeSet<StorePath>> {
    let direct = direct_inputs(store, drv, known_inputs, drv_str)?;
    for p in &direct {
        store.add_temp_root(p)?;
        if !store.is_valid(p)? {
            return Err(Error::Store(kiln_store::Error::InvalidPath(
                store.layout().display(p),
            )));
        }
    }
    Ok(store.query_closure(&direct)?)
}

/// The closure of `direct` from the references in `graph`, which is closed under
/// references; paths not in it are looked up (temp-rooted first) and added.
/// `None` if one is not valid: [`input_closure`] then says which.
pub(crate) fn closure_in(
    store: &LocalStore,
    graph: &mut ReferenceGraph,
    direct: &[StorePath],
) -> Result<Option<BTreeSet<StorePath>>> {
    let mut closure = BTreeSet::new();
    let mut todo: Vec<StorePath> = direct.to_vec();
    while let Some(p) = todo.pop() {
        if closure.contains(&p) {
            continue;
        }
        if !graph.contains_key(&p) {
            store.add_temp_root(&p)?;
            let Some(references) = store.query_valid_references(&p)? else {
                return Ok(None);
            };
            graph.insert(p.clone(), references);
        }
        todo.extend(graph[&p].iter().filter(|r| !closure.contains(*r)).cloned());
        closure.insert(p);
    }
    Ok(Some(closure))
}

/// Input sources and the wanted outputs of input derivations.
pub(crate) fn direct_inputs(
    store: &LocalStore,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    drv_str: &str,
) -> Result<Vec<StorePath>> {
    let mut direct: Vec<StorePath> = drv.input_srcs.iter().cloned().collect();
    for (input_drv, node) in &drv.input_drvs {
        let known = match known_inputs.get(input_drv) {
            Some(outputs) => (**outputs).clone(),
            None => store.query_derivation_outputs(input_drv)?,
        };
        let produced = if known.is_empty() {
            known_outputs(store, input_drv, &*store.read_derivation(input_drv)?)?
        } else {
            known
        };
        for output in &node.outputs {
            let p = produced.get(output).ok_or_else(|| Error::Unsupported {
                drv: drv_str.to_string(),
                why: format!(
                    "input '{}' has no known output '{output}'",
                    store.layout().display(input_drv)
                ),
            })?;
            direct.push(p.clone());
        }
    }
    Ok(direct)
}

/// The closure of the valid store paths that `sandbox-paths` sources lie in, each
/// temp-rooted (they are mounted for the whole build). A source may be named by its
/// logical path or, for a store whose root is not `/`, by its path on the host; paths
/// that are not valid are ignored, as Nix ignores them.
pub(crate) fn sandbox_paths_closure(
    store: &LocalStore,
    sandbox_paths: &[SandboxPath],
) -> Result<BTreeSet<StorePath>> {
    let real = store.layout().real_store_dir.clone();
    let mut roots = Vec::new();
    for p in sandbox_paths {
        let logical = match p.host.strip_prefix(&real) {
            Ok(rest) => std::path::Path::new(store.store_dir().as_str()).join(rest),
            Err(_) => p.host.clone(),
        };
        let Some(text) = logical.to_str() else {
            continue;
        };
        let Ok((root, _)) = store.store_dir().parse_with_subpath(text) else {
            continue;
        };
        store.add_temp_root(&root)?;
        if store.is_valid(&root)? {
            roots.push(root);
        }
    }
    if roots.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(store.query_closure(&roots)?)
}

/// The output paths of `drv` (stored at `drv_path`), `None` where not known before
/// it is built.
pub(crate) fn output_paths(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<BTreeMap<String, Option<StorePath>>> {
    drv.output_paths(store.store_dir())
        .map_err(|source| Error::Derivation {
            drv: store.layout().display(drv_path),
            source: Box::new(source),
        })
}

/// The output paths of `drv` that are known before it is built.
fn known_outputs(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<BTreeMap<String, StorePath>> {
    Ok(output_paths(store, drv_path, drv)?
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
        .collect())
}
