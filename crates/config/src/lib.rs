//! kiln-config: Nix's configuration as one model, read the way Nix 2.8 reads it, for
//! every layer above the formats (builds, the collector, later the evaluator, remote
//! builders and pipelines).
//!
//! Layer: beside the formats, below the store; it knows settings, not what they do.
//!
//! Layers, each overriding the one before (see Nix's manual, "nix.conf"):
//! 1. the defaults ([`settings`]);
//! 2. `$NIX_CONF_DIR/nix.conf` (default `/etc/nix/nix.conf`);
//! 3. the user files: `$NIX_USER_CONF_FILES` (colon-separated), otherwise
//!    `nix/nix.conf` under `$XDG_CONFIG_HOME` (default `~/.config`) and each of
//!    `$XDG_CONFIG_DIRS` (default `/etc/xdg`); the first named wins, so they are applied
//!    last to first;
//! 4. `$NIX_CONFIG`, with the syntax of a file;
//! 5. the command line: `--option NAME VALUE` and flags such as `-j`, in their order.
//!
//! File syntax as Nix's: `#` starts a comment; a line is whitespace-separated tokens,
//! `NAME = VALUE…` (the `=` its own token; the value is the remaining tokens joined by
//! one space), `include PATH` or `!include PATH` (relative to the including file; a
//! missing `!include` is ignored). `extra-NAME` appends to a list setting. A missing
//! file is no error; a malformed line is, naming the line and file. Unknown settings are
//! kept (for `kiln config show` and whoever knows them) and reported by
//! [`Config::unknown`], which the CLI prints as Nix's `warning: unknown setting`.

mod load;
mod machine;
mod parse;
mod settings;
mod value;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use load::{EnvSource, ProcessEnv};
pub use machine::{default_extra_platforms, default_system_features, native_system};
pub use settings::{Kind, SettingDef, SETTINGS};
pub use value::{SandboxMode, Value};

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("illegal configuration line '{line}' in '{origin}'")]
    IllegalLine { line: String, origin: String },
    #[error("file '{path}' included from '{origin}' not found")]
    MissingInclude { path: PathBuf, origin: String },
    #[error("reading '{path}'")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} (setting '{name}' in '{origin}')")]
    BadValue {
        name: String,
        what: String,
        origin: String,
    },
    #[error("'{path}' includes itself")]
    IncludeCycle { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The effective settings: every known one with its value, and the unknown ones as
/// given.
#[derive(Clone, Debug)]
pub struct Config {
    known: BTreeMap<&'static str, Value>,
    unknown: BTreeMap<String, String>,
}

impl Config {
    /// Nix's defaults on this machine, nothing read.
    pub fn defaults() -> Config {
        Config {
            known: SETTINGS
                .iter()
                .map(|def| (def.name, (def.default)()))
                .collect(),
            unknown: BTreeMap::new(),
        }
    }

    /// Defaults, then the files and `$NIX_CONFIG` as this process's environment names
    /// them (layers 1-4).
    pub fn load() -> Result<Config> {
        Config::load_with(&ProcessEnv)
    }

    /// As [`Config::load`], with the environment (and home directory) from `env`.
    pub fn load_with(env: &dyn EnvSource) -> Result<Config> {
        let mut config = Config::defaults();
        load::apply_layers(&mut config, env)?;
        Ok(config)
    }

    /// Applies text in `nix.conf` syntax; `origin` names it in errors (a file's path,
    /// `NIX_CONFIG`). `include`s are resolved relative to `origin`'s directory.
    pub fn apply_text(&mut self, text: &str, origin: &str) -> Result<()> {
        parse::apply(self, text, origin, &mut Vec::new())
    }

    /// Sets `name` (or appends, for `extra-NAME` of a list) as a command-line option does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        self.set_from(name, value, "the command line")
    }

    pub(crate) fn set_from(&mut self, name: &str, value: &str, origin: &str) -> Result<()> {
        let bad = |what: String| Error::BadValue {
            name: name.to_string(),
            what,
            origin: origin.to_string(),
        };
        if let Some(def) = settings::find(name) {
            let parsed = def.kind.parse(value).map_err(bad)?;
            self.known.insert(def.name, parsed);
            return Ok(());
        }
        if let Some(def) = name.strip_prefix("extra-").and_then(settings::find) {
            if def.kind.appendable() {
                let added = def.kind.parse(value).map_err(bad)?;
                let current = self
                    .known
                    .get_mut(def.name)
                    .expect("every setting has a value");
                current.append(added);
                return Ok(());
            }
        }
        self.unknown.insert(name.to_string(), value.to_string());
        Ok(())
    }

    /// The value of a known setting, by its name or an alias.
    ///
    /// # Panics
    /// If no setting has that name: callers name settings from [`SETTINGS`].
    pub fn get(&self, name: &str) -> &Value {
        let def = settings::find(name).unwrap_or_else(|| panic!("no setting named '{name}'"));
        &self.known[def.name]
    }

    pub fn bool(&self, name: &str) -> bool {
        self.get(name).as_bool()
    }

    pub fn uint(&self, name: &str) -> u64 {
        self.get(name).as_uint()
    }

    pub fn string(&self, name: &str) -> String {
        self.get(name).to_string()
    }

    /// A list or set setting's items, in order (sets sorted).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.get(name).items()
    }

    /// Settings given that no part of kiln knows, with their values.
    pub fn unknown(&self) -> &BTreeMap<String, String> {
        &self.unknown
    }

    /// `NAME = VALUE` lines of every known setting, sorted by name, as `nix
    /// show-config` prints them.
    pub fn show(&self) -> String {
        self.known
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests;
