//! The derivation data model (formats.md §4.1, §4.5; dynamic-derivations.md §3.5).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bstr::BString;
use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{FileIngestionMethod, StoreDir, StorePath};

use crate::{Error, Result};

/// How an output's contents are turned into the bytes its content address hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentAddressMethod {
    /// The bytes of a single regular file (no prefix in the hashAlgo field).
    Flat,
    /// The NAR serialisation (`r:`).
    Recursive,
    /// Text hashing, as for `.drv` files (`text:`). Newer Nix only, for dynamic
    /// derivations; Nix 2.8 cannot read it.
    Text,
}

impl ContentAddressMethod {
    /// The prefix of a `.drv` hashAlgo field: `""`, `"r:"` or `"text:"`.
    pub fn prefix(self) -> &'static str {
        match self {
            ContentAddressMethod::Flat => "",
            ContentAddressMethod::Recursive => "r:",
            ContentAddressMethod::Text => "text:",
        }
    }

    /// Split a hashAlgo field such as `r:sha256` into method and algorithm name.
    pub fn split_prefix(field: &str) -> (ContentAddressMethod, &str) {
        if let Some(rest) = field.strip_prefix("r:") {
            (ContentAddressMethod::Recursive, rest)
        } else if let Some(rest) = field.strip_prefix("text:") {
            (ContentAddressMethod::Text, rest)
        } else {
            (ContentAddressMethod::Flat, field)
        }
    }

    /// Parse a whole hashAlgo field (`sha1`, `r:sha256`, `text:sha256`, …).
    pub fn parse_hash_algo(
        field: &str,
    ) -> Result<(ContentAddressMethod, Algorithm), kiln_hash::Error> {
        let (method, algo) = ContentAddressMethod::split_prefix(field);
        Ok((method, algo.parse()?))
    }

    /// The hashAlgo field for this method and `algo`.
    pub fn hash_algo_field(self, algo: Algorithm) -> String {
        format!("{}{}", self.prefix(), algo.name())
    }

    pub fn file_ingestion(self) -> Option<FileIngestionMethod> {
        match self {
            ContentAddressMethod::Flat => Some(FileIngestionMethod::Flat),
            ContentAddressMethod::Recursive => Some(FileIngestionMethod::Recursive),
            ContentAddressMethod::Text => None,
        }
    }
}

impl From<FileIngestionMethod> for ContentAddressMethod {
    fn from(m: FileIngestionMethod) -> Self {
        match m {
            FileIngestionMethod::Flat => ContentAddressMethod::Flat,
            FileIngestionMethod::Recursive => ContentAddressMethod::Recursive,
        }
    }
}

/// One output of a derivation, classified as formats.md §4.5 says a reader must.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DerivationOutput {
    /// A path computed from the derivation's hash modulo (§5.4).
    InputAddressed(StorePath),
    /// A fixed-output derivation's output. Like Nix 2.8, the path is not stored: it
    /// follows from the hash, the method and the derivation name (§2.5).
    CAFixed {
        method: ContentAddressMethod,
        hash: Hash,
    },
    /// A floating content-addressed output (`ca-derivations`): known after the build.
    CAFloating {
        method: ContentAddressMethod,
        algo: Algorithm,
    },
    /// An input-addressed output whose path waits for content-addressed inputs.
    Deferred,
    /// An output of an impure derivation (`impure-derivations`).
    Impure {
        method: ContentAddressMethod,
        algo: Algorithm,
    },
}

impl DerivationOutput {
    /// The output's store path when it is known without building: input-addressed
    /// and fixed outputs. `drv_name` is the derivation name (without `.drv`).
    pub fn path(
        &self,
        store_dir: &StoreDir,
        drv_name: &str,
        output_name: &str,
    ) -> Result<Option<StorePath>> {
        match self {
            DerivationOutput::InputAddressed(p) => Ok(Some(p.clone())),
            DerivationOutput::CAFixed { method, hash } => {
                Ok(Some(crate::output_paths::fixed_output_path(
                    store_dir,
                    *method,
                    hash,
                    drv_name,
                    output_name,
                )?))
            }
            DerivationOutput::CAFloating { .. }
            | DerivationOutput::Deferred
            | DerivationOutput::Impure { .. } => Ok(None),
        }
    }

    /// The `hashAlgo` field of the ATerm and JSON forms (empty for input-addressed and
    /// deferred outputs).
    pub fn hash_algo_field(&self) -> String {
        match self {
            DerivationOutput::InputAddressed(_) | DerivationOutput::Deferred => String::new(),
            DerivationOutput::CAFixed { method, hash } => method.hash_algo_field(hash.algorithm()),
            DerivationOutput::CAFloating { method, algo }
            | DerivationOutput::Impure { method, algo } => method.hash_algo_field(*algo),
        }
    }
}

/// What a derivation wants from one input derivation: a set of its outputs, and for
/// dynamic derivations, outputs of the derivations that its outputs *are*
/// (Nix's `DerivedPathMap<StringSet>::ChildNode`). Input `X.drv^o1^o2` is the node
/// `{outputs: {}, dynamic_outputs: {o1: {outputs: {o2}}}}` under key `X.drv`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputNode {
    pub outputs: BTreeSet<String>,
    pub dynamic_outputs: BTreeMap<String, InputNode>,
}

impl InputNode {
    /// A plain (non-dynamic) input on the given outputs.
    pub fn from_outputs<I, S>(outputs: I) -> InputNode
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        InputNode {
            outputs: outputs.into_iter().map(Into::into).collect(),
            dynamic_outputs: BTreeMap::new(),
        }
    }

    pub fn is_dynamic(&self) -> bool {
        !self.dynamic_outputs.is_empty()
    }

    /// Neither outputs nor dynamic outputs: an entry that asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty() && self.dynamic_outputs.is_empty()
    }
}

/// The kind of a whole derivation, taken from the kinds of its outputs (§4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DerivationType {
    /// Every output is input-addressed with a known path.
    InputAddressed,
    /// Input-addressed, but every output is deferred.
    DeferredInputAddressed,
    /// Exactly one fixed content-addressed output, named `out`.
    FixedOutput,
    /// Every output is floating content-addressed, all with the same algorithm.
    FloatingContentAddressed,
    Impure,
}

impl DerivationType {
    pub fn is_fixed(self) -> bool {
        self == DerivationType::FixedOutput
    }

    pub fn is_impure(self) -> bool {
        self == DerivationType::Impure
    }

    pub fn is_content_addressed(self) -> bool {
        matches!(
            self,
            DerivationType::FixedOutput | DerivationType::FloatingContentAddressed
        )
    }

    /// Fixed-output and impure builds get network access; the others are sandboxed.
    pub fn is_sandboxed(self) -> bool {
        !matches!(self, DerivationType::FixedOutput | DerivationType::Impure)
    }

    /// Whether every output path is known before building.
    pub fn has_known_output_paths(self) -> bool {
        matches!(
            self,
            DerivationType::InputAddressed | DerivationType::FixedOutput
        )
    }
}

/// A derivation. The name is not part of the `.drv` text; it comes from the `.drv`
/// file name (without `.drv`) and is needed to compute fixed output paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Derivation {
    pub name: String,
    pub outputs: BTreeMap<String, DerivationOutput>,
    pub input_drvs: BTreeMap<StorePath, InputNode>,
    pub input_srcs: BTreeSet<StorePath>,
    pub platform: BString,
    pub builder: BString,
    pub args: Vec<BString>,
    pub env: BTreeMap<BString, BString>,
}

impl Derivation {
    /// Classify the derivation from its outputs, with Nix 2.8's error messages.
    pub fn derivation_type(&self) -> Result<DerivationType> {
        let err = |reason| Error::DerivationType {
            name: self.name.clone(),
            reason,
        };
        let mut kinds = [0usize; 5];
        let mut floating_algo = None;
        for output in self.outputs.values() {
            let index = match output {
                DerivationOutput::InputAddressed(_) => 0,
                DerivationOutput::CAFixed { .. } => 1,
                DerivationOutput::CAFloating { algo, .. } => {
                    match floating_algo {
                        None => floating_algo = Some(*algo),
                        Some(first) if first != *algo => {
                            return Err(err("all floating outputs must use the same hash type"))
                        }
                        Some(_) => {}
                    }
                    2
                }
                DerivationOutput::Deferred => 3,
                DerivationOutput::Impure { .. } => 4,
            };
            kinds[index] += 1;
        }
        let present = kinds.iter().filter(|&&n| n > 0).count();
        if present == 0 {
            return Err(err("must have at least one output"));
        }
        if present > 1 {
            return Err(err("can't mix derivation output types"));
        }
        Ok(if kinds[0] > 0 {
            DerivationType::InputAddressed
        } else if kinds[1] > 0 {
            if kinds[1] > 1 {
                return Err(err("only one fixed output is allowed for now"));
            }
            if !self.outputs.contains_key("out") {
                return Err(err("single fixed output must be named \"out\""));
            }
            DerivationType::FixedOutput
        } else if kinds[2] > 0 {
            DerivationType::FloatingContentAddressed
        } else if kinds[3] > 0 {
            DerivationType::DeferredInputAddressed
        } else {
            DerivationType::Impure
        })
    }

    /// Whether some input asks for an output of an output, which needs the
    /// `DrvWithVersion("xp-dyn-drv",…)` form.
    pub fn has_dynamic_inputs(&self) -> bool {
        self.input_drvs.values().any(InputNode::is_dynamic)
    }

    /// The references of the `.drv` file itself: inputSrcs and the (root) input
    /// derivation paths. Outputs are not references (§4.7).
    pub fn references(&self) -> BTreeSet<StorePath> {
        let mut refs = self.input_srcs.clone();
        refs.extend(self.input_drvs.keys().cloned());
        refs
    }

    /// Output names, in order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.keys().map(String::as_str)
    }

    /// The statically known path of every output (`None` for floating, deferred and
    /// impure outputs).
    pub fn output_paths(
        &self,
        store_dir: &StoreDir,
    ) -> Result<BTreeMap<String, Option<StorePath>>> {
        self.outputs
            .iter()
            .map(|(name, output)| Ok((name.clone(), output.path(store_dir, &self.name, name)?)))
            .collect()
    }

    /// The ATerm text (`.drv` file contents) Nix 2.8 would write.
    pub fn to_aterm(&self, store_dir: &StoreDir) -> Result<Vec<u8>> {
        crate::aterm::print(self, store_dir)
    }

    /// Parse `.drv` text; `name` is the derivation name (the `.drv` file name without
    /// `.drv`).
    pub fn from_aterm(store_dir: &StoreDir, text: &[u8], name: &str) -> Result<Derivation> {
        crate::aterm::parse(store_dir, text, name)
    }

    /// Parse the contents of the `.drv` file at `drv_path`, taking the name from it.
    pub fn from_drv_file(
        store_dir: &StoreDir,
        drv_path: &StorePath,
        text: &[u8],
    ) -> Result<Derivation> {
        crate::aterm::parse(store_dir, text, drv_path.name_without_drv_ext())
    }

    /// The store path the `.drv` file gets (§4.7).
    pub fn drv_path(&self, store_dir: &StoreDir) -> Result<StorePath> {
        let text = self.to_aterm(store_dir)?;
        crate::output_paths::drv_path_of_text(store_dir, &self.name, &text, &self.references())
    }
}

impl fmt::Display for ContentAddressMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentAddressMethod::Flat => "flat",
            ContentAddressMethod::Recursive => "recursive",
            ContentAddressMethod::Text => "text",
        })
    }
}
