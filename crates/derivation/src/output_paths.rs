//! Where outputs and the `.drv` itself live in the store: fixed-output paths (§2.5),
//! input-addressed paths (§5.4), the `.drv` text path (§4.7), the evaluator's
//! procedure that fills in output paths (§5.5), and derivation output ids (§5.7).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use bstr::{BString, ByteSlice};
use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{output_path_name, output_placeholder, StoreDir, StorePath};

use crate::hash_modulo::{hash_derivation_modulo, DrvHashCache, DrvHashKind, Resolver};
use crate::model::{ContentAddressMethod, Derivation, DerivationOutput, DerivationType};
use crate::{Error, Result};

/// The path of a fixed output: it depends only on the method, the hash and the name,
/// never on the builder, env or inputs.
pub fn fixed_output_path(
    store_dir: &StoreDir,
    method: ContentAddressMethod,
    hash: &Hash,
    drv_name: &str,
    output_name: &str,
) -> Result<StorePath> {
    let name = output_path_name(drv_name, output_name);
    let err = |source| Error::OutputPath {
        name: drv_name.to_string(),
        output: output_name.to_string(),
        source,
    };
    match method.file_ingestion() {
        Some(ingestion) => store_dir
            .make_fixed_output_path(ingestion, hash, &name, [], false)
            .map_err(err),
        None => {
            // Text hashing (newer Nix, dynamic derivations) is defined for sha256 only.
            if hash.algorithm() != Algorithm::Sha256 {
                return Err(err(kiln_store_path::Error::BadContentAddress(
                    format!("text:{}", hash.algorithm()),
                    "text hashing requires sha256".to_string(),
                )));
            }
            store_dir.make_text_path(&name, hash, []).map_err(err)
        }
    }
}

/// The path of output `output_name` of an input-addressed derivation whose masked hash
/// modulo is `drv_hash`.
pub fn input_addressed_output_path(
    store_dir: &StoreDir,
    drv_name: &str,
    output_name: &str,
    drv_hash: &Hash,
) -> Result<StorePath> {
    store_dir
        .make_output_path(output_name, drv_hash, drv_name)
        .map_err(|source| Error::OutputPath {
            name: drv_name.to_string(),
            output: output_name.to_string(),
            source,
        })
}

/// The store path of a `.drv` file with contents `text` (a text object named
/// `<name>.drv` whose references are `references`).
pub fn drv_path_of_text(
    store_dir: &StoreDir,
    name: &str,
    text: &[u8],
    references: &BTreeSet<StorePath>,
) -> Result<StorePath> {
    let file_name = format!("{name}.drv");
    store_dir
        .make_text_path(&file_name, &Hash::sha256(text), references)
        .map_err(|source| Error::BadName {
            name: file_name,
            source,
        })
}

/// Complete a derivation the way Nix's evaluator does (§5.5), for `kiln derivation
/// add`. Output paths that are present are checked; absent ones, and the env vars
/// named after outputs that are absent or empty, are computed:
///
/// * fixed output: the path follows from the hash; env `out` is that path;
/// * floating CA and impure: env `<output>` is the output placeholder;
/// * input-addressed (every output given or deferred): the derivation is hashed with
///   all outputs deferred and their env vars empty; a Regular hash gives the paths, a
///   Deferred one leaves the outputs deferred with empty env vars.
///
/// Errors name the output (or env var) whose given value differs from Nix's.
pub fn fill_in_output_paths(
    store_dir: &StoreDir,
    mut drv: Derivation,
    cache: &mut DrvHashCache,
    resolve: &mut Resolver<'_>,
) -> Result<Derivation> {
    let all_input_addressed = !drv.outputs.is_empty()
        && drv.outputs.values().all(|o| {
            matches!(
                o,
                DerivationOutput::InputAddressed(_) | DerivationOutput::Deferred
            )
        });
    if !all_input_addressed {
        match drv.derivation_type()? {
            DerivationType::FixedOutput => {
                for (name, output) in drv.outputs.clone() {
                    let path = output
                        .path(store_dir, &drv.name, &name)?
                        .map(|p| store_dir.display(&p))
                        .unwrap_or_default();
                    set_env(&mut drv, &name, &path)?;
                }
            }
            _ => {
                let names: Vec<String> = drv.outputs.keys().cloned().collect();
                for name in names {
                    set_env(&mut drv, &name, &output_placeholder(&name))?;
                }
            }
        }
        return Ok(drv);
    }

    // Hash the shape the evaluator hashes: every output deferred, every output's env
    // var present and empty. Masking would blank the values anyway, but not add
    // missing keys, and an absent key changes the text.
    let given: Vec<(String, Option<StorePath>)> = drv
        .outputs
        .iter()
        .map(|(name, output)| match output {
            DerivationOutput::InputAddressed(p) => (name.clone(), Some(p.clone())),
            _ => (name.clone(), None),
        })
        .collect();
    let given_env: Vec<Option<BString>> = given
        .iter()
        .map(|(name, _)| drv.env.get(name.as_bytes()).cloned())
        .collect();
    for (name, _) in &given {
        drv.outputs.insert(name.clone(), DerivationOutput::Deferred);
        drv.env
            .insert(BString::from(name.as_bytes()), BString::default());
    }
    let hash = hash_derivation_modulo(store_dir, &drv, true, cache, resolve)?;

    for ((name, given_path), env_value) in given.into_iter().zip(given_env) {
        let computed = match hash.kind {
            DrvHashKind::Regular => {
                let digest = hash
                    .hashes
                    .get(&name)
                    .ok_or_else(|| Error::DerivationType {
                        name: drv.name.clone(),
                        reason: "the hash modulo does not cover every output",
                    })?;
                Some(input_addressed_output_path(
                    store_dir, &drv.name, &name, digest,
                )?)
            }
            DrvHashKind::Deferred => None,
        };
        match (&given_path, &computed) {
            (Some(given), Some(computed)) if given != computed => {
                return Err(Error::OutputPathMismatch {
                    name: drv.name.clone(),
                    output: name,
                    given: store_dir.display(given),
                    computed: store_dir.display(computed),
                })
            }
            (Some(given), None) => {
                return Err(Error::DeferredOutputHasPath {
                    name: drv.name.clone(),
                    output: name,
                    given: store_dir.display(given),
                })
            }
            _ => {}
        }
        let expected = computed
            .as_ref()
            .map(|p| store_dir.display(p))
            .unwrap_or_default();
        if let Some(value) = env_value.filter(|v| !v.is_empty()) {
            if value != expected.as_bytes() {
                return Err(env_mismatch(&drv, &name, &value, &expected));
            }
        }
        drv.env.insert(
            BString::from(name.as_bytes()),
            BString::from(expected.as_bytes()),
        );
        drv.outputs.insert(
            name,
            computed.map_or(DerivationOutput::Deferred, DerivationOutput::InputAddressed),
        );
    }
    Ok(drv)
}

/// Set env var `name` to `value` if it is absent or empty; otherwise it must already
/// hold `value`.
fn set_env(drv: &mut Derivation, name: &str, value: &str) -> Result<()> {
    match drv.env.get(name.as_bytes()) {
        Some(current) if !current.is_empty() && current != value.as_bytes() => {
            Err(env_mismatch(drv, name, current, value))
        }
        _ => {
            drv.env.insert(
                BString::from(name.as_bytes()),
                BString::from(value.as_bytes()),
            );
            Ok(())
        }
    }
}

fn env_mismatch(drv: &Derivation, var: &str, given: &[u8], expected: &str) -> Error {
    Error::EnvMismatch {
        name: drv.name.clone(),
        var: var.to_string(),
        given: given.to_str_lossy().into_owned(),
        expected: expected.to_string(),
    }
}

/// The key of a 2.8 realisation: `sha256:<hex of H(drv, mask=true)[output]>!<output>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DrvOutputId {
    pub drv_hash: Hash,
    pub output: String,
}

impl DrvOutputId {
    pub fn new(drv_hash: Hash, output: impl Into<String>) -> Self {
        DrvOutputId {
            drv_hash,
            output: output.into(),
        }
    }
}

impl fmt::Display for DrvOutputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}!{}",
            self.drv_hash.algorithm(),
            self.drv_hash.to_base16(),
            self.output
        )
    }
}

impl FromStr for DrvOutputId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::DrvOutputId {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (hash, output) = s
            .split_once('!')
            .ok_or_else(|| bad("expected '<hash>!<output>'"))?;
        if output.is_empty() {
            return Err(bad("empty output name"));
        }
        let drv_hash = Hash::parse_typed(hash).map_err(|e| bad(&e.to_string()))?;
        Ok(DrvOutputId::new(drv_hash, output))
    }
}
