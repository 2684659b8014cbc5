//! Deriving paths: what a CLI installable or a derivation input names
//! (dynamic-derivations.md §3.2).
//!
//! ```text
//! single ::= storepath | single "^" output
//! multi  ::= storepath | single "^" ( "*" | output ("," output)* )
//! ```
//!
//! `/nix/store/…-foo.drv^out^bin,dev` is output set {bin, dev} of the derivation
//! produced as output `out` of `foo.drv`. Nesting (a `Built` inside a `Built`) is what
//! dynamic derivations add.

use std::collections::BTreeSet;

use kiln_store_path::{StoreDir, StorePath};

use crate::{Error, Result};

/// Nix sets no limit, but nesting this deep is never meaningful, and the recursive
/// `Box` chain would make dropping or comparing a hostile value overflow the stack.
pub const MAX_DEPTH: usize = 256;

/// One store path, either existing (`Opaque`) or an output of a derivation, which may
/// itself be produced by another derivation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SingleDerivedPath {
    Opaque(StorePath),
    Built {
        drv_path: Box<SingleDerivedPath>,
        output: String,
    },
}

/// Which outputs of a derivation are wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputsSpec {
    /// `*`: every output.
    All,
    /// A non-empty set of output names.
    Names(BTreeSet<String>),
}

/// A store path, or some outputs of a (possibly produced) derivation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DerivedPath {
    Opaque(StorePath),
    Built {
        drv_path: SingleDerivedPath,
        outputs: OutputsSpec,
    },
}

impl SingleDerivedPath {
    /// Parse `STORE/…` or `STORE/….drv^out[^out…]`.
    pub fn parse(store_dir: &StoreDir, s: &str) -> Result<SingleDerivedPath> {
        let mut parts = s.split('^');
        let first = parts.next().unwrap_or_default();
        // Built up iteratively rather than recursively, so a hostile string of many
        // `^` cannot exhaust the stack.
        let mut path = SingleDerivedPath::Opaque(parse_store_path(store_dir, s, first)?);
        for (depth, output) in parts.enumerate() {
            if depth >= MAX_DEPTH {
                return Err(bad(s, format!("more than {MAX_DEPTH} nested outputs")));
            }
            check_output_name(s, output)?;
            path = path.built(s, output)?;
        }
        Ok(path)
    }

    fn built(self, input: &str, output: &str) -> Result<SingleDerivedPath> {
        if let SingleDerivedPath::Opaque(p) = &self {
            require_drv(input, p)?;
        }
        Ok(SingleDerivedPath::Built {
            drv_path: Box::new(self),
            output: output.to_string(),
        })
    }

    /// The `.drv` path at the bottom of the chain (for `Opaque`, the path itself).
    pub fn root(&self) -> &StorePath {
        let mut current = self;
        loop {
            match current {
                SingleDerivedPath::Opaque(p) => return p,
                SingleDerivedPath::Built { drv_path, .. } => current = drv_path,
            }
        }
    }

    /// Number of `^` steps: 0 for a plain path, 1 for `drv^out`, 2 for `drv^out^out`.
    pub fn depth(&self) -> usize {
        let mut n = 0;
        let mut current = self;
        while let SingleDerivedPath::Built { drv_path, .. } = current {
            n += 1;
            current = drv_path;
        }
        n
    }

    pub fn to_string(&self, store_dir: &StoreDir) -> String {
        let mut outputs: Vec<&str> = Vec::new();
        let mut current = self;
        loop {
            match current {
                SingleDerivedPath::Opaque(p) => {
                    let mut s = store_dir.display(p);
                    for output in outputs.iter().rev() {
                        s.push('^');
                        s.push_str(output);
                    }
                    return s;
                }
                SingleDerivedPath::Built { drv_path, output } => {
                    outputs.push(output.as_str());
                    current = drv_path;
                }
            }
        }
    }
}

impl OutputsSpec {
    /// `*` or `name[,name…]`.
    pub fn parse(s: &str) -> Result<OutputsSpec> {
        if s == "*" {
            return Ok(OutputsSpec::All);
        }
        let mut names = BTreeSet::new();
        for name in s.split(',') {
            check_output_name(s, name)?;
            names.insert(name.to_string());
        }
        Ok(OutputsSpec::Names(names))
    }

    pub fn contains(&self, output: &str) -> bool {
        match self {
            OutputsSpec::All => true,
            OutputsSpec::Names(names) => names.contains(output),
        }
    }
}

impl std::fmt::Display for OutputsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputsSpec::All => f.write_str("*"),
            OutputsSpec::Names(names) => {
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
}

impl DerivedPath {
    /// Parse an installable: a store path, `drv^out`, `drv^out,dev`, `drv^*`,
    /// `drv^out^out`. The split is at the last `^`.
    pub fn parse(store_dir: &StoreDir, s: &str) -> Result<DerivedPath> {
        match s.rsplit_once('^') {
            None => Ok(DerivedPath::Opaque(parse_store_path(store_dir, s, s)?)),
            Some((drv, outputs)) => {
                let outputs = OutputsSpec::parse(outputs).map_err(|e| match e {
                    Error::DerivedPath { reason, .. } => bad(s, reason),
                    other => other,
                })?;
                let drv_path = SingleDerivedPath::parse(store_dir, drv).map_err(|e| match e {
                    Error::DerivedPath { reason, .. } => bad(s, reason),
                    other => other,
                })?;
                if let SingleDerivedPath::Opaque(p) = &drv_path {
                    require_drv(s, p)?;
                }
                Ok(DerivedPath::Built { drv_path, outputs })
            }
        }
    }

    /// Whether building this needs dynamic derivations (an output of a produced drv).
    pub fn is_dynamic(&self) -> bool {
        matches!(
            self,
            DerivedPath::Built {
                drv_path: SingleDerivedPath::Built { .. },
                ..
            }
        )
    }

    pub fn to_string(&self, store_dir: &StoreDir) -> String {
        match self {
            DerivedPath::Opaque(p) => store_dir.display(p),
            DerivedPath::Built { drv_path, outputs } => {
                format!("{}^{}", drv_path.to_string(store_dir), outputs)
            }
        }
    }
}

impl From<SingleDerivedPath> for DerivedPath {
    fn from(p: SingleDerivedPath) -> Self {
        match p {
            SingleDerivedPath::Opaque(p) => DerivedPath::Opaque(p),
            SingleDerivedPath::Built { drv_path, output } => DerivedPath::Built {
                drv_path: *drv_path,
                outputs: OutputsSpec::Names(BTreeSet::from([output])),
            },
        }
    }
}

fn bad(input: &str, reason: impl Into<String>) -> Error {
    Error::DerivedPath {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn parse_store_path(store_dir: &StoreDir, input: &str, path: &str) -> Result<StorePath> {
    store_dir.parse(path).map_err(|e| bad(input, e.to_string()))
}

fn require_drv(input: &str, path: &StorePath) -> Result<()> {
    if path.is_derivation() {
        Ok(())
    } else {
        Err(bad(
            input,
            format!(
                "'{}' is not a derivation ('.drv'), so it has no outputs",
                path.base_name()
            ),
        ))
    }
}

/// Output names follow the store-path name alphabet, since they end up in paths.
fn check_output_name(input: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(bad(input, "empty output name"));
    }
    if name == "*" {
        return Err(bad(input, "'*' can only stand alone, as the last outputs"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)))
    {
        return Err(bad(
            input,
            format!("invalid character {c:?} in output name '{name}'"),
        ));
    }
    Ok(())
}
