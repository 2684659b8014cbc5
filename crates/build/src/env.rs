//! The builder's environment and the files Nix writes into the build directory for it
//! (`passAsFile`, structured attributes, `exportReferencesGraph`),
//! as Nix's `LocalDerivationGoal::initEnv` and `writeStructuredAttrs` make them.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_derivation::{Derivation, ParsedAttrs};
use kiln_hash::{nix32, Hash};

use crate::error::{Error, Result};
use crate::placeholders::Rewrites;

/// What the environment depends on besides the derivation.
pub struct EnvContext<'a> {
    /// `NIX_BUILD_CORES`.
    pub cores: usize,
    /// `sandbox-build-dir` as the builder sees it (`/build`).
    pub sandbox_build_dir: &'a str,
    /// The build directory on the host (2.8 leaks it into `NIX_ATTRS_*_FILE`).
    pub host_build_dir: &'a Path,
    pub store_dir: &'a str,
    pub fixed_output: bool,
    /// Output name → path the builder must write (its own output paths).
    pub outputs: &'a BTreeMap<String, String>,
    /// For structured attributes' `exportReferencesGraph.<name> = [ path … ]`: the JSON
    /// path info of the closure of those paths (Nix's `pathInfoToJSON` without impure
    /// fields, with closure sizes). `None` refuses such derivations.
    pub export_references: Option<&'a ExportReferences<'a>>,
}

/// See [`EnvContext::export_references`].
pub type ExportReferences<'a> = dyn Fn(&[String]) -> Result<serde_json::Value> + 'a;

/// A file to create in the build directory: (name relative to it, contents).
pub type BuildDirFile = (String, Vec<u8>);

/// Variables in the order they are passed to the builder.
pub type Environment = Vec<(Vec<u8>, Vec<u8>)>;

/// The environment, sorted by name as Nix passes it, and the files to write first.
pub fn builder_environment(
    attrs: &ParsedAttrs<'_>,
    ctx: &EnvContext<'_>,
) -> Result<(Environment, Vec<BuildDirFile>)> {
    let drv = attrs.derivation();
    let mut env: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut set = |k: &str, v: &[u8]| {
        env.insert(k.as_bytes().to_vec(), v.to_vec());
    };
    set("PATH", b"/path-not-set");
    set("HOME", b"/homeless-shelter");
    set("NIX_STORE", ctx.store_dir.as_bytes());
    set("NIX_BUILD_CORES", ctx.cores.to_string().as_bytes());

    if let Some(json) = attrs.structured() {
        let (attrs_json, attrs_sh) = structured_attrs(json.clone(), ctx)?;
        files.push((".attrs.json".to_string(), attrs_json));
        files.push((".attrs.sh".to_string(), attrs_sh));
        // The 2.8 quirk: these name the host's build directory, not /build.
        let host = ctx.host_build_dir.display();
        set(
            "NIX_ATTRS_JSON_FILE",
            format!("{host}/.attrs.json").as_bytes(),
        );
        set("NIX_ATTRS_SH_FILE", format!("{host}/.attrs.sh").as_bytes());
    } else {
        let pass_as_file = attrs
            .strings("passAsFile")
            .map_err(Error::attribute)?
            .unwrap_or_default();
        for (key, value) in &drv.env {
            if pass_as_file.iter().any(|p| p.as_bytes() == key.as_slice()) {
                let file = format!(".attr-{}", nix32::encode(Hash::sha256(key).as_bytes()));
                let mut var = key.to_vec();
                var.extend_from_slice(b"Path");
                let path = format!("{}/{}", ctx.sandbox_build_dir, file);
                env.insert(var, path.into_bytes());
                files.push((file, value.to_vec()));
            } else {
                env.insert(key.to_vec(), value.to_vec());
            }
        }
    }
    let mut set = |k: &str, v: &[u8]| {
        env.insert(k.as_bytes().to_vec(), v.to_vec());
    };
    for var in ["NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"] {
        set(var, ctx.sandbox_build_dir.as_bytes());
    }
    if ctx.fixed_output {
        set("NIX_OUTPUT_CHECKED", b"1");
        // Impure variables pass through from kiln's own environment for fetchers.
        // With structured attributes, the list is in `__json`, as Nix reads it.
        for name in attrs
            .strings("impureEnvVars")
            .map_err(Error::attribute)?
            .unwrap_or_default()
        {
            let value = std::env::var_os(&name).unwrap_or_default();
            set(&name, value.as_encoded_bytes());
        }
    }
    set("NIX_LOG_FD", b"2");
    set("TERM", b"xterm-256color");
    // Names too: Nix rewrites each `NAME=VALUE` string whole. The order stays that of
    // the names before rewriting, as in Nix.
    let rewrites = Rewrites::for_outputs(ctx.outputs);
    let env = env
        .into_iter()
        .map(|(k, v)| (rewrites.apply_owned(k), rewrites.apply_owned(v)))
        .collect();
    let files = files
        .into_iter()
        .map(|(name, contents)| (name, rewrites.apply_owned(contents)))
        .collect();
    Ok((env, files))
}

/// The builder's arguments, with output placeholders replaced as in its environment.
pub fn builder_arguments(drv: &Derivation, outputs: &BTreeMap<String, String>) -> Vec<Vec<u8>> {
    let rewrites = Rewrites::for_outputs(outputs);
    drv.args
        .iter()
        .map(|a| rewrites.apply(a).into_owned())
        .collect()
}

/// `.attrs.json` (the `__json` attribute with `outputs` replaced by output paths) and
/// `.attrs.sh` (bash `declare`s of its simple values), as Nix 2.8 writes them.
fn structured_attrs(
    mut value: serde_json::Value,
    ctx: &EnvContext<'_>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let obj = value
        .as_object_mut()
        .ok_or_else(|| Error::StructuredAttrs("__json is not a JSON object".into()))?;
    let outputs: serde_json::Map<String, serde_json::Value> = ctx
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    obj.insert("outputs".into(), serde_json::Value::Object(outputs));
    // Each `exportReferencesGraph.<name>` adds a top-level `<name>` with the closure.
    let graphs: Vec<(String, Vec<String>)> = match obj.get("exportReferencesGraph") {
        Some(serde_json::Value::Object(graphs)) => graphs
            .iter()
            .map(|(name, paths)| {
                // Nix iterates the value: a list, or a single path.
                let items: Vec<&serde_json::Value> = match paths {
                    serde_json::Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                let paths = items
                    .iter()
                    .map(|p| p.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| {
                        Error::StructuredAttrs(format!(
                            "exportReferencesGraph.{name} must be a list of store paths"
                        ))
                    })?;
                Ok((name.clone(), paths))
            })
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    for (name, paths) in graphs {
        let export = ctx.export_references.ok_or_else(|| {
            Error::StructuredAttrs("exportReferencesGraph is not available here".into())
        })?;
        obj.insert(name, export(&paths)?);
    }
    let sorted = sort_keys(&value);
    let attrs_json = serde_json::to_vec(&sorted)
        .map_err(|e| Error::StructuredAttrs(format!("cannot print .attrs.json: {e}")))?;
    let mut sh = String::new();
    if let serde_json::Value::Object(obj) = &sorted {
        for (key, value) in obj {
            if !is_shell_name(key) {
                continue;
            }
            if let Some(s) = shell_simple(value) {
                sh.push_str(&format!("declare {key}={s}\n"));
            } else if let serde_json::Value::Array(items) = value {
                let parts: Option<Vec<String>> = items.iter().map(shell_simple).collect();
                if let Some(parts) = parts {
                    let body: String = parts.iter().map(|p| format!("{p} ")).collect();
                    sh.push_str(&format!("declare -a {key}=({body})\n"));
                }
            } else if let serde_json::Value::Object(map) = value {
                let parts: Option<Vec<String>> = map
                    .iter()
                    .map(|(k, v)| shell_simple(v).map(|s| format!("[{}]={s} ", shell_escape(k))))
                    .collect();
                if let Some(parts) = parts {
                    sh.push_str(&format!("declare -A {key}=({})\n", parts.concat()));
                }
            }
        }
    }
    Ok((attrs_json, sh.into_bytes()))
}

/// Nix prints JSON from an ordered map: keys sorted at every level.
fn sort_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, sort_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sort_keys).collect())
        }
        other => other.clone(),
    }
}

fn is_shell_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn shell_escape(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell form of a string, integral number, boolean or null; `None` otherwise.
fn shell_simple(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(shell_escape(s)),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.to_string())
            } else {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| (f as i64).to_string())
            }
        }
        serde_json::Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        serde_json::Value::Null => Some("''".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_forms_follow_nix() {
        assert_eq!(shell_escape("it's"), "'it'\\''s'");
        assert_eq!(shell_simple(&serde_json::json!(1.5)), None);
        assert_eq!(shell_simple(&serde_json::json!(2.0)).as_deref(), Some("2"));
        assert_eq!(shell_simple(&serde_json::json!(false)).as_deref(), Some(""));
        assert_eq!(
            shell_simple(&serde_json::json!(null)).as_deref(),
            Some("''")
        );
        assert!(is_shell_name("_a1") && !is_shell_name("1a") && !is_shell_name("a-b"));
    }
}
