//! Reading one derivation object of the `nix show-derivation` form (the inner object,
//! keyed `outputs`, `inputSrcs`, `inputDrvs`, `system`, `builder`, `args`, `env`), as
//! `kiln derivation add` takes it. Outputs are classified like the ATerm reader does
//! (formats.md §4.5); a fixed output's `path`, if present, must be the one its hash
//! gives. Input-addressed paths are not checked here: see
//! [`crate::fill_in_output_paths`].
//!
//! JSON strings are Unicode, so env values that are not UTF-8 cannot come this way.

use std::collections::BTreeMap;

use bstr::BString;
use kiln_hash::Hash;
use kiln_store_path::{StoreDir, StorePath};
use serde_json::{Map, Value};

use crate::model::{ContentAddressMethod, Derivation, DerivationOutput, InputNode};
use crate::{Error, Result};

/// Parse JSON text holding one derivation object. See [`from_json_value`] for `name`.
pub fn from_json_bytes(
    store_dir: &StoreDir,
    json: &[u8],
    name: Option<&str>,
) -> Result<Derivation> {
    let value: Value = serde_json::from_slice(json).map_err(|e| Error::Json {
        field: String::new(),
        message: format!("not valid JSON: {e}"),
    })?;
    from_json_value(store_dir, &value, name)
}

/// Convert one derivation object. The derivation name is `name` if given, else the
/// object's `name` field (newer Nix prints one), else the `name` env var.
pub fn from_json_value(
    store_dir: &StoreDir,
    value: &Value,
    name: Option<&str>,
) -> Result<Derivation> {
    let obj = as_object(value, "")?;
    let env = read_env(obj)?;
    let name = match (name, obj.get("name")) {
        (Some(n), _) => n.to_string(),
        (None, Some(v)) => as_str(v, "name")?.to_string(),
        (None, None) => match env.get(b"name".as_slice()) {
            Some(n) => {
                String::from_utf8(n.to_vec()).map_err(|_| json_err("env.name", "is not UTF-8"))?
            }
            None => match env.get(b"__json".as_slice()) {
                Some(json) => structured_attrs_name(json)?,
                None => {
                    return Err(json_err(
                        "name",
                        "missing: give the derivation name as a 'name' field or env var",
                    ))
                }
            },
        },
    };
    // The `.drv` file is named `<name>.drv`, so the name must make a valid store name.
    kiln_store_path::validate_name(&format!("{name}.drv"))
        .map_err(|e| json_err("name", &e.to_string()))?;
    if name.ends_with(".drv") {
        return Err(json_err("name", "a derivation name must not end in '.drv'"));
    }

    let outputs_obj = as_object(field(obj, "outputs", "")?, "outputs")?;
    let mut outputs = BTreeMap::new();
    for (output_name, v) in outputs_obj {
        let path = format!("outputs.{output_name}");
        if output_name.is_empty() {
            return Err(json_err("outputs", "an output name must not be empty"));
        }
        let output = read_output(store_dir, &name, output_name, v, &path)?;
        outputs.insert(output_name.clone(), output);
    }

    let mut input_srcs = std::collections::BTreeSet::new();
    for (i, v) in as_array(field(obj, "inputSrcs", "")?, "inputSrcs")?
        .iter()
        .enumerate()
    {
        let f = format!("inputSrcs[{i}]");
        input_srcs.insert(store_path(store_dir, v, &f)?);
    }

    let mut input_drvs = BTreeMap::new();
    for (path, v) in as_object(field(obj, "inputDrvs", "")?, "inputDrvs")? {
        let f = format!("inputDrvs.{path}");
        let drv_path = store_dir
            .parse(path)
            .map_err(|e| json_err(&f, &e.to_string()))?;
        input_drvs.insert(drv_path, read_node(v, &f, 0)?);
    }

    let args = as_array(field(obj, "args", "")?, "args")?
        .iter()
        .enumerate()
        .map(|(i, v)| nix_string(v, &format!("args[{i}]")))
        .collect::<Result<Vec<_>>>()?;

    Ok(Derivation {
        name,
        outputs,
        input_drvs,
        input_srcs,
        platform: nix_string(field(obj, "system", "")?, "system")?,
        builder: nix_string(field(obj, "builder", "")?, "builder")?,
        args,
        env,
    })
}

fn read_env(obj: &Map<String, Value>) -> Result<BTreeMap<BString, BString>> {
    let mut env = BTreeMap::new();
    for (k, v) in as_object(field(obj, "env", "")?, "env")? {
        let f = format!("env.{k}");
        if k.contains('\0') {
            return Err(json_err(
                &f,
                "contains a NUL byte, which Nix strings cannot hold",
            ));
        }
        env.insert(BString::from(k.as_bytes()), nix_string(v, &f)?);
    }
    Ok(env)
}

fn read_output(
    store_dir: &StoreDir,
    drv_name: &str,
    output_name: &str,
    v: &Value,
    f: &str,
) -> Result<DerivationOutput> {
    let obj = as_object(v, f)?;
    let get_str = |key: &str| -> Result<Option<&str>> {
        obj.get(key)
            .map(|v| as_str(v, &format!("{f}.{key}")))
            .transpose()
    };
    let path = get_str("path")?.unwrap_or("");
    let hash_algo = get_str("hashAlgo")?.unwrap_or("");
    let hash = get_str("hash")?.unwrap_or("");
    let impure = match obj.get("impure") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(json_err(&format!("{f}.impure"), "expected a boolean")),
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "path" | "hashAlgo" | "hash" | "impure") {
            return Err(json_err(&format!("{f}.{key}"), "unknown output field"));
        }
    }

    if hash_algo.is_empty() {
        if !hash.is_empty() || impure {
            return Err(json_err(f, "'hash' and 'impure' need a 'hashAlgo'"));
        }
        return Ok(if path.is_empty() {
            DerivationOutput::Deferred
        } else {
            DerivationOutput::InputAddressed(
                store_dir
                    .parse(path)
                    .map_err(|e| json_err(&format!("{f}.path"), &e.to_string()))?,
            )
        });
    }

    let (method, algo) = ContentAddressMethod::parse_hash_algo(hash_algo)
        .map_err(|e| json_err(&format!("{f}.hashAlgo"), &e.to_string()))?;
    if impure {
        if !path.is_empty() || !hash.is_empty() {
            return Err(json_err(
                f,
                "an impure output has neither 'path' nor 'hash'",
            ));
        }
        return Ok(DerivationOutput::Impure { method, algo });
    }
    if hash.is_empty() {
        if !path.is_empty() {
            return Err(json_err(
                &format!("{f}.path"),
                "a floating content-addressed output (no 'hash') cannot have a path",
            ));
        }
        return Ok(DerivationOutput::CAFloating { method, algo });
    }
    let hash = Hash::parse(hash, Some(algo))
        .map_err(|e| json_err(&format!("{f}.hash"), &e.to_string()))?;
    let computed =
        crate::output_paths::fixed_output_path(store_dir, method, &hash, drv_name, output_name)?;
    if !path.is_empty() {
        let given = store_dir
            .parse(path)
            .map_err(|e| json_err(&format!("{f}.path"), &e.to_string()))?;
        if given != computed {
            return Err(Error::OutputPathMismatch {
                name: drv_name.to_string(),
                output: output_name.to_string(),
                given: store_dir.display(&given),
                computed: store_dir.display(&computed),
            });
        }
    }
    Ok(DerivationOutput::CAFixed { method, hash })
}

/// A list of output names (2.8), or `{"outputs": […], "dynamicOutputs": {…}}`.
fn read_node(v: &Value, f: &str, depth: usize) -> Result<InputNode> {
    if depth > 64 {
        return Err(json_err(f, "dynamic outputs nested too deeply"));
    }
    let names = |v: &Value, f: &str| -> Result<std::collections::BTreeSet<String>> {
        as_array(v, f)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = as_str(v, &format!("{f}[{i}]"))?;
                if s.is_empty() {
                    return Err(json_err(&format!("{f}[{i}]"), "empty output name"));
                }
                Ok(s.to_string())
            })
            .collect()
    };
    match v {
        Value::Array(_) => Ok(InputNode {
            outputs: names(v, f)?,
            dynamic_outputs: BTreeMap::new(),
        }),
        Value::Object(obj) => {
            let outputs = match obj.get("outputs") {
                Some(v) => names(v, &format!("{f}.outputs"))?,
                None => Default::default(),
            };
            let mut dynamic_outputs = BTreeMap::new();
            if let Some(v) = obj.get("dynamicOutputs") {
                let df = format!("{f}.dynamicOutputs");
                for (output, child) in as_object(v, &df)? {
                    let cf = format!("{df}.{output}");
                    dynamic_outputs.insert(output.clone(), read_node(child, &cf, depth + 1)?);
                }
            }
            let node = InputNode {
                outputs,
                dynamic_outputs,
            };
            if node.is_empty() {
                return Err(json_err(f, "an input must want at least one output"));
            }
            Ok(node)
        }
        _ => Err(json_err(f, "expected a list of output names")),
    }
}

fn field<'v>(obj: &'v Map<String, Value>, key: &str, parent: &str) -> Result<&'v Value> {
    obj.get(key)
        .ok_or_else(|| json_err(&join(parent, key), "missing"))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn as_object<'v>(v: &'v Value, f: &str) -> Result<&'v Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| json_err(f, "expected an object"))
}

fn as_array<'v>(v: &'v Value, f: &str) -> Result<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| json_err(f, "expected an array"))
}

fn as_str<'v>(v: &'v Value, f: &str) -> Result<&'v str> {
    v.as_str().ok_or_else(|| json_err(f, "expected a string"))
}

/// A string from the Nix language: any bytes but NUL.
fn nix_string(v: &Value, f: &str) -> Result<BString> {
    let s = as_str(v, f)?;
    if s.contains('\0') {
        return Err(json_err(
            f,
            "contains a NUL byte, which Nix strings cannot hold",
        ));
    }
    Ok(BString::from(s.as_bytes()))
}

fn store_path(store_dir: &StoreDir, v: &Value, f: &str) -> Result<StorePath> {
    store_dir
        .parse(as_str(v, f)?)
        .map_err(|e| json_err(f, &e.to_string()))
}

/// With structured attributes, the environment has only `__json`; the name is in there
/// (`nix show-derivation` 2.8 prints no `name` field).
fn structured_attrs_name(json: &[u8]) -> Result<String> {
    let attrs: Value = serde_json::from_slice(json)
        .map_err(|e| json_err("env.__json", &format!("is not valid JSON: {e}")))?;
    match attrs.get("name") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(json_err("env.__json.name", "is not a string")),
        None => Err(json_err(
            "name",
            "missing: give the derivation name as a 'name' field, an env var, or in env.__json",
        )),
    }
}

fn json_err(field: &str, message: &str) -> Error {
    Error::Json {
        field: if field.is_empty() {
            "(top level)".to_string()
        } else {
            field.to_string()
        },
        message: message.to_string(),
    }
}
