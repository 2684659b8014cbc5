//! ATerm printer. Writes bytes, never strings: env values need not be UTF-8.

use std::collections::{BTreeMap, BTreeSet};

use kiln_store_path::{StoreDir, StorePath};

use crate::model::{Derivation, DerivationOutput, InputNode};
use crate::Result;

/// The `.drv` text of `drv`, exactly as Nix writes it.
pub fn print(drv: &Derivation, store_dir: &StoreDir) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(estimate_len(drv));
    write(&mut out, drv, store_dir, false, None)?;
    Ok(out)
}

/// Write the ATerm of `drv` to `out`, optionally in the two altered forms
/// `hashDerivationModulo` hashes: `mask` blanks output paths and the env vars named
/// after outputs; `replaced_inputs` (hex digest → output names) stands in for
/// `inputDrvs`.
pub(crate) fn write(
    out: &mut Vec<u8>,
    drv: &Derivation,
    store_dir: &StoreDir,
    mask: bool,
    replaced_inputs: Option<&BTreeMap<String, BTreeSet<String>>>,
) -> Result<()> {
    // Newer Nix uses the versioned form only when it is needed, so plain derivations
    // keep the bytes (and paths) 2.8 gives them.
    if drv.has_dynamic_inputs() {
        out.extend_from_slice(b"DrvWithVersion(");
        raw(out, super::DYNAMIC_DERIVATIONS_VERSION.as_bytes());
        out.extend_from_slice(b",[");
    } else {
        out.extend_from_slice(b"Derive([");
    }

    for (i, (name, output)) in drv.outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'(');
        raw(out, name.as_bytes());
        out.push(b',');
        match output {
            DerivationOutput::InputAddressed(path) if !mask => raw_path(out, store_dir, path),
            DerivationOutput::CAFixed { method, hash } if !mask => {
                // Like 2.8, the path of a fixed output is recomputed, not stored.
                let path = crate::output_paths::fixed_output_path(
                    store_dir, *method, hash, &drv.name, name,
                )?;
                raw_path(out, store_dir, &path)
            }
            _ => raw(out, b""),
        }
        out.push(b',');
        raw(out, output.hash_algo_field().as_bytes());
        out.push(b',');
        match output {
            DerivationOutput::CAFixed { hash, .. } => raw(out, hash.to_base16().as_bytes()),
            DerivationOutput::Impure { .. } => raw(out, b"impure"),
            _ => raw(out, b""),
        }
        out.push(b')');
    }

    out.extend_from_slice(b"],[");
    match replaced_inputs {
        Some(inputs) => {
            for (i, (hex, outputs)) in inputs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'(');
                raw(out, hex.as_bytes());
                out.push(b',');
                raw_list(out, outputs.iter().map(|o| o.as_bytes()));
                out.push(b')');
            }
        }
        None => {
            for (i, (path, node)) in drv.input_drvs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'(');
                raw_path(out, store_dir, path);
                out.push(b',');
                write_node(out, node);
                out.push(b')');
            }
        }
    }

    out.extend_from_slice(b"],[");
    for (i, path) in drv.input_srcs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        raw_path(out, store_dir, path);
    }
    out.extend_from_slice(b"],");
    // The platform is written unescaped: a Nix 2.8 quirk that must be kept, since the
    // bytes determine the `.drv` path.
    raw(out, &drv.platform);
    out.push(b',');
    escaped(out, &drv.builder);
    out.extend_from_slice(b",[");
    for (i, arg) in drv.args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escaped(out, arg);
    }
    out.extend_from_slice(b"],[");
    for (i, (key, value)) in drv.env.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'(');
        escaped(out, key);
        out.push(b',');
        let blank = mask && std::str::from_utf8(key).is_ok_and(|k| drv.outputs.contains_key(k));
        escaped(out, if blank { b"" } else { value.as_slice() });
        out.push(b')');
    }
    out.extend_from_slice(b"])");
    Ok(())
}

/// `["a","b"]`, or `(["a"],[("child",<node>),…])` when there are dynamic outputs.
fn write_node(out: &mut Vec<u8>, node: &InputNode) {
    if node.dynamic_outputs.is_empty() {
        raw_list(out, node.outputs.iter().map(|o| o.as_bytes()));
        return;
    }
    out.push(b'(');
    raw_list(out, node.outputs.iter().map(|o| o.as_bytes()));
    out.extend_from_slice(b",[");
    for (i, (output, child)) in node.dynamic_outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'(');
        raw(out, output.as_bytes());
        out.push(b',');
        write_node(out, child);
        out.push(b')');
    }
    out.extend_from_slice(b"])");
}

fn raw(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

fn raw_path(out: &mut Vec<u8>, store_dir: &StoreDir, path: &StorePath) {
    out.push(b'"');
    out.extend_from_slice(store_dir.as_str().as_bytes());
    out.push(b'/');
    out.extend_from_slice(path.base_name().as_bytes());
    out.push(b'"');
}

fn raw_list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a [u8]>) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        raw(out, item);
    }
    out.push(b']');
}

/// Only `"`, `\`, LF, CR and TAB are escaped; every other byte is written as is.
fn escaped(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// A cheap upper-bound-ish guess so large env values do not cause repeated regrowth.
fn estimate_len(drv: &Derivation) -> usize {
    let paths = (drv.outputs.len() + drv.input_drvs.len() + drv.input_srcs.len()) * 100;
    let strings: usize = drv.args.iter().map(|a| a.len() + 3).sum::<usize>()
        + drv
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    64 + paths + drv.platform.len() + drv.builder.len() + strings + strings / 16
}
