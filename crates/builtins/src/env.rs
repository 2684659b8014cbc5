//! The derivation attributes a builtin reads, from the builder's environment.

use crate::error::Error;

/// The builder's environment, looked up by name.
pub struct Env<'a> {
    vars: &'a [(&'a [u8], &'a [u8])],
}

impl<'a> Env<'a> {
    pub fn new(vars: &'a [(&'a [u8], &'a [u8])]) -> Env<'a> {
        Env { vars }
    }

    /// The value of `name` (the last one, should it repeat).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| *v)
    }

    /// The value of `name`, or Nix's error for a missing attribute.
    pub fn require(&self, name: &str) -> Result<&'a [u8], Error> {
        self.get(name)
            .ok_or_else(|| Error::MissingAttribute(name.to_string()))
    }

    /// A required attribute that must be text (paths, URLs).
    pub fn require_str(&self, name: &str) -> Result<&'a str, Error> {
        std::str::from_utf8(self.require(name)?).map_err(|_| Error::NotText(name.to_string()))
    }
}
