//! `exportReferencesGraph`: the closure information Nix's `exportReferences` gives a
//! builder, as registration text files (legacy) or `.attrs.json` entries (structured).

use std::collections::BTreeSet;

use kiln_derivation::Derivation;
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

use crate::error::{Error, Result};
use crate::inputs::output_paths;

/// `exportReferencesGraph = [ name path … ]`: for each pair, a file `name` in the build
/// directory listing the closure of `path` in Nix's registration format (path, an empty
/// deriver line, the number of references, then the references), paths sorted.
pub(crate) fn export_references_graph(
    store: &LocalStore,
    drv: &Derivation,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(spec) = drv.env.get(b"exportReferencesGraph".as_slice()) else {
        return Ok(Vec::new());
    };
    let spec = String::from_utf8_lossy(spec);
    let words: Vec<&str> = spec.split_whitespace().collect();
    let bad = |why: String| Error::ExportReferences {
        drv: drv_str.to_string(),
        why,
    };
    if !words.len().is_multiple_of(2) {
        return Err(bad(format!(
            "odd number of tokens in 'exportReferencesGraph': '{spec}'"
        )));
    }
    let mut files = Vec::new();
    for pair in words.chunks(2) {
        let (name, path) = (pair[0], pair[1]);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid_name {
            return Err(bad(format!(
                "invalid file name '{name}' in 'exportReferencesGraph'"
            )));
        }
        let (root, _) = store.store_dir().parse_with_subpath(path).map_err(|_| {
            bad(format!(
                "'exportReferencesGraph' contains a non-store path '{path}'"
            ))
        })?;
        let mut text = String::new();
        for p in export_closure(store, input_closure, drv_str, [root])? {
            let refs = store.query_references(&p)?;
            text.push_str(&format!(
                "{}\n\n{}\n",
                store.layout().display(&p),
                refs.len()
            ));
            for r in refs {
                text.push_str(&store.layout().display(&r));
                text.push('\n');
            }
        }
        files.push((name.to_string(), text.into_bytes()));
    }
    Ok(files)
}

/// Nix's `exportReferences`: the closure of `roots`, each of which must be in the
/// input closure, plus the closure of the outputs of every derivation in it (for
/// images that carry a build's whole dependency graph); those outputs must be valid.
fn export_closure(
    store: &LocalStore,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
    roots: impl IntoIterator<Item = StorePath>,
) -> Result<BTreeSet<StorePath>> {
    let mut wanted = BTreeSet::new();
    for root in roots {
        if !input_closure.contains(&root) {
            return Err(Error::ExportReferences {
                drv: drv_str.to_string(),
                why: format!(
                    "cannot export references of path '{}' because it is not in the input closure of the derivation",
                    store.layout().display(&root)
                ),
            });
        }
        wanted.insert(root);
    }
    let mut closure = store.query_closure(&wanted)?;
    let derivations: Vec<StorePath> = closure
        .iter()
        .filter(|p| p.is_derivation())
        .cloned()
        .collect();
    for d in derivations {
        let outputs = output_paths(store, &d, &*store.read_derivation(&d)?)?;
        for (_, output) in outputs {
            let output = output.ok_or_else(|| Error::ExportReferences {
                drv: drv_str.to_string(),
                why: "exportReferences on CA derivations is not yet implemented".into(),
            })?;
            closure.extend(store.query_closure([&output])?);
        }
    }
    Ok(closure)
}

/// Structured attributes' `exportReferencesGraph.<name>`: the closure of `paths` (which
/// must be in the input closure, as in Nix) as Nix 2.8's `pathInfoToJSON` prints it
/// without impure fields and with closure sizes, in store path order.
pub(crate) fn export_references_json(
    store: &LocalStore,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
    paths: &[String],
) -> Result<serde_json::Value> {
    let mut roots = Vec::new();
    for p in paths {
        let (root, _) =
            store
                .store_dir()
                .parse_with_subpath(p)
                .map_err(|_| Error::ExportReferences {
                    drv: drv_str.to_string(),
                    why: format!("path '{p}' is not in the Nix store"),
                })?;
        roots.push(root);
    }
    let mut infos = Vec::new();
    for p in export_closure(store, input_closure, drv_str, roots)? {
        let info = store
            .query_path_info(&p)?
            .ok_or_else(|| kiln_store::Error::InvalidPath(store.layout().display(&p)))?;
        let closure_size: u64 = store
            .query_closure([&p])?
            .iter()
            .map(|q| Ok(store.query_path_info(q)?.map_or(0, |i| i.nar_size)))
            .sum::<Result<u64>>()?;
        let mut obj = serde_json::Map::new();
        obj.insert("path".into(), store.layout().display(&p).into());
        obj.insert(
            "narHash".into(),
            format!("sha256:{}", info.nar_hash.to_nix32()).into(),
        );
        obj.insert("narSize".into(), info.nar_size.into());
        obj.insert(
            "references".into(),
            info.references
                .iter()
                .map(|r| serde_json::Value::from(store.layout().display(r)))
                .collect::<Vec<_>>()
                .into(),
        );
        if let Some(ca) = &info.ca {
            obj.insert("ca".into(), ca.to_string().into());
        }
        obj.insert("closureSize".into(), closure_size.into());
        infos.push(serde_json::Value::Object(obj));
    }
    Ok(serde_json::Value::Array(infos))
}
