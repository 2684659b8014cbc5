//! Setting values: how each kind is parsed from its text, extended by `extra-`, and
//! printed, as Nix 2.8 does for the same kind.

use std::collections::BTreeSet;
use std::fmt;

/// `sandbox`: `true`, `false` or `relaxed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    Enabled,
    Disabled,
    Relaxed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Uint(u64),
    Str(String),
    /// Words in the order given, duplicates kept (Nix's `Strings`).
    List(Vec<String>),
    /// Words sorted, without duplicates (Nix's `StringSet`/`PathSet`).
    Set(BTreeSet<String>),
    Sandbox(SandboxMode),
}

impl Value {
    pub fn as_bool(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Sandbox(mode) => *mode != SandboxMode::Disabled,
            other => panic!("{other:?} is not a boolean setting"),
        }
    }

    pub fn as_uint(&self) -> u64 {
        match self {
            Value::Uint(n) => *n,
            other => panic!("{other:?} is not a numeric setting"),
        }
    }

    pub fn items(&self) -> Vec<String> {
        match self {
            Value::List(items) => items.clone(),
            Value::Set(items) => items.iter().cloned().collect(),
            Value::Str(s) => s.split_whitespace().map(String::from).collect(),
            other => vec![other.to_string()],
        }
    }

    pub(crate) fn append(&mut self, more: Value) {
        match (self, more) {
            (Value::List(items), Value::List(more)) => items.extend(more),
            (Value::Set(items), Value::Set(more)) => items.extend(more),
            (this, more) => *this = more,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Uint(n) => write!(f, "{n}"),
            Value::Str(s) => f.write_str(s),
            Value::List(items) => f.write_str(&items.join(" ")),
            Value::Set(items) => f.write_str(
                &items
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Value::Sandbox(SandboxMode::Enabled) => f.write_str("true"),
            Value::Sandbox(SandboxMode::Disabled) => f.write_str("false"),
            Value::Sandbox(SandboxMode::Relaxed) => f.write_str("relaxed"),
        }
    }
}

/// Nix's boolean words.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

pub(crate) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split([' ', '\t', '\n', '\r'])
        .filter(|w| !w.is_empty())
        .map(String::from)
}
