//! A small dedicated JSON printer. serde_json cannot emit strings that are not UTF-8,
//! and Nix 2.8 copies env bytes ≥ 0x80 through raw, so this writes bytes.
//!
//! Layout (Nix 2.8's JSONWriter with indentation): two spaces per level, `": "`
//! after keys, each element on its own line, `{}`/`[]` when empty, and a fixed,
//! non-alphabetical key order inside a derivation.

use kiln_store_path::{StoreDir, StorePath};

use crate::model::{Derivation, DerivationOutput, InputNode};
use crate::Result;

/// The whole output of `nix show-derivation`: one object keyed by `.drv` path, sorted,
/// followed by a newline.
pub fn show_derivations<'a>(
    store_dir: &StoreDir,
    drvs: impl IntoIterator<Item = (&'a StorePath, &'a Derivation)>,
) -> Result<Vec<u8>> {
    let mut entries: Vec<(&StorePath, &Derivation)> = drvs.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, 0);
    w.open(b'{');
    for (path, drv) in entries {
        w.key(store_dir.display(path).as_bytes());
        write_object(&mut w, store_dir, drv)?;
    }
    w.close(b'}');
    out.push(b'\n');
    Ok(out)
}

/// One derivation object, as it appears nested `depth` levels deep (0 at top level).
pub fn write_derivation_object(
    out: &mut Vec<u8>,
    depth: usize,
    store_dir: &StoreDir,
    drv: &Derivation,
) -> Result<()> {
    write_object(&mut Writer::new(out, depth), store_dir, drv)
}

fn write_object(w: &mut Writer<'_>, store_dir: &StoreDir, drv: &Derivation) -> Result<()> {
    w.open(b'{');

    w.key(b"outputs");
    w.open(b'{');
    for (name, output) in &drv.outputs {
        w.key(name.as_bytes());
        w.open(b'{');
        match output {
            DerivationOutput::InputAddressed(path) => {
                w.key(b"path");
                w.string(store_dir.display(path).as_bytes());
            }
            DerivationOutput::CAFixed { method, hash } => {
                let path = crate::output_paths::fixed_output_path(
                    store_dir, *method, hash, &drv.name, name,
                )?;
                w.key(b"path");
                w.string(store_dir.display(&path).as_bytes());
                w.key(b"hashAlgo");
                w.string(output.hash_algo_field().as_bytes());
                w.key(b"hash");
                w.string(hash.to_base16().as_bytes());
            }
            DerivationOutput::CAFloating { .. } => {
                w.key(b"hashAlgo");
                w.string(output.hash_algo_field().as_bytes());
            }
            DerivationOutput::Deferred => {}
            DerivationOutput::Impure { .. } => {
                w.key(b"hashAlgo");
                w.string(output.hash_algo_field().as_bytes());
                w.key(b"impure");
                w.raw(b"true");
            }
        }
        w.close(b'}');
    }
    w.close(b'}');

    w.key(b"inputSrcs");
    w.open(b'[');
    for path in &drv.input_srcs {
        w.element();
        w.string(store_dir.display(path).as_bytes());
    }
    w.close(b']');

    w.key(b"inputDrvs");
    w.open(b'{');
    for (path, node) in &drv.input_drvs {
        w.key(store_dir.display(path).as_bytes());
        write_node(w, node);
    }
    w.close(b'}');

    w.key(b"system");
    w.string(&drv.platform);
    w.key(b"builder");
    w.string(&drv.builder);

    w.key(b"args");
    w.open(b'[');
    for arg in &drv.args {
        w.element();
        w.string(arg);
    }
    w.close(b']');

    w.key(b"env");
    w.open(b'{');
    for (key, value) in &drv.env {
        w.key(key);
        w.string(value);
    }
    w.close(b'}');

    w.close(b'}');
    Ok(())
}

/// 2.8 prints a list of output names. It has no dynamic inputs; for those we print
/// the newer `{"outputs": […], "dynamicOutputs": {…}}` object so nothing is lost.
fn write_node(w: &mut Writer<'_>, node: &InputNode) {
    if !node.is_dynamic() {
        write_names(w, node);
        return;
    }
    w.open(b'{');
    w.key(b"outputs");
    write_names(w, node);
    w.key(b"dynamicOutputs");
    w.open(b'{');
    for (output, child) in &node.dynamic_outputs {
        w.key(output.as_bytes());
        write_node(w, child);
    }
    w.close(b'}');
    w.close(b'}');
}

fn write_names(w: &mut Writer<'_>, node: &InputNode) {
    w.open(b'[');
    for output in &node.outputs {
        w.element();
        w.string(output.as_bytes());
    }
    w.close(b']');
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    depth: usize,
    /// No element written yet in the innermost open container. One flag suffices:
    /// a container we return to always holds at least the key or element we were in.
    first: bool,
}

impl<'o> Writer<'o> {
    fn new(out: &'o mut Vec<u8>, depth: usize) -> Self {
        Writer {
            out,
            depth,
            first: true,
        }
    }

    fn open(&mut self, bracket: u8) {
        self.out.push(bracket);
        self.depth += 1;
        self.first = true;
    }

    fn close(&mut self, bracket: u8) {
        self.depth -= 1;
        if !self.first {
            self.newline();
        }
        self.out.push(bracket);
        // Whatever encloses this container now has at least one element.
        self.first = false;
    }

    /// Separator and indentation before an array element or object key.
    fn element(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.newline();
    }

    fn key(&mut self, key: &[u8]) {
        self.element();
        self.string(key);
        self.out.extend_from_slice(b": ");
    }

    fn newline(&mut self) {
        self.out.push(b'\n');
        self.out.resize(self.out.len() + 2 * self.depth, b' ');
    }

    fn raw(&mut self, text: &[u8]) {
        self.out.extend_from_slice(text);
    }

    /// Nix 2.8's escaping: `"` `\` LF CR TAB get short escapes, other bytes below 0x20
    /// `\u00xx` (lowercase), everything else (0x7f, UTF-8, invalid UTF-8) raw.
    fn string(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.out;
        out.push(b'"');
        let mut start = 0;
        for (i, &b) in s.iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => b"",
                _ => continue,
            };
            out.extend_from_slice(&s[start..i]);
            if short.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            } else {
                out.extend_from_slice(short);
            }
            start = i + 1;
        }
        out.extend_from_slice(&s[start..]);
        out.push(b'"');
    }
}
