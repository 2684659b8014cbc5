//! A derivation's attributes as the builder side reads them (Nix's `ParsedDerivation`):
//! from the `__json` environment variable when the derivation has structured
//! attributes, otherwise from the environment, where a list is whitespace-separated
//! words and a Boolean is true when it is exactly `1`. `__json` is parsed once, here.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::Derivation;

/// Characters Nix's `tokenizeString` splits on by default.
const WORD_SEPARATORS: &[u8] = b" \t\n\r";

pub struct ParsedAttrs<'a> {
    drv: &'a Derivation,
    drv_name: String,
    structured: Option<Value>,
}

impl<'a> ParsedAttrs<'a> {
    /// Parse `__json` if `drv` has it. `drv_name` names the derivation in errors:
    /// Nix's `ParsedDerivation` uses the `.drv`'s base name, but its output checks
    /// (which read `outputChecks` lists) the full path.
    pub fn parse(drv_name: &str, drv: &'a Derivation) -> Result<ParsedAttrs<'a>> {
        let drv_name = drv_name.to_string();
        let structured = match drv.env.get(b"__json".as_slice()) {
            None => None,
            Some(json) => {
                Some(
                    serde_json::from_slice(json).map_err(|source| Error::StructuredAttrs {
                        drv: drv_name.clone(),
                        source,
                    })?,
                )
            }
        };
        Ok(ParsedAttrs {
            drv,
            drv_name,
            structured,
        })
    }

    pub fn derivation(&self) -> &'a Derivation {
        self.drv
    }

    /// The whole `__json` value, for a derivation with structured attributes.
    pub fn structured(&self) -> Option<&Value> {
        self.structured.as_ref()
    }

    /// Whether the attribute is there at all.
    pub fn has(&self, name: &str) -> bool {
        match &self.structured {
            Some(attrs) => attrs.get(name).is_some(),
            None => self.drv.env.contains_key(name.as_bytes()),
        }
    }

    /// A structured attribute's raw value (`None` without structured attributes).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.structured.as_ref()?.get(name)
    }

    /// `getStringAttr`: a string, or the variable's value.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match &self.structured {
            Some(attrs) => match attrs.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(self.bad(name, "a string")),
            },
            None => Ok(self
                .drv
                .env
                .get(name.as_bytes())
                .map(|v| String::from_utf8_lossy(v).into_owned())),
        }
    }

    /// `getBoolAttr`: a Boolean, or whether the variable is `1`; `default` if absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match &self.structured {
            Some(attrs) => match attrs.get(name) {
                None => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(self.bad(name, "a Boolean")),
            },
            None => Ok(self
                .drv
                .env
                .get(name.as_bytes())
                .map_or(default, |v| v.as_slice() == b"1")),
        }
    }

    /// `getStringsAttr`: a list of strings, or the variable's words.
    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match &self.structured {
            Some(attrs) => attrs
                .get(name)
                .map(|value| self.list_of_strings(name, value))
                .transpose(),
            None => Ok(self.drv.env.get(name.as_bytes()).map(|v| {
                v.split(|b| WORD_SEPARATORS.contains(b))
                    .filter(|w| !w.is_empty())
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect()
            })),
        }
    }

    /// `value`, found under the attribute `name` (possibly nested, such as the lists of
    /// `outputChecks`), as a list of strings.
    pub fn list_of_strings(&self, name: &str, value: &Value) -> Result<Vec<String>> {
        let Value::Array(items) = value else {
            return Err(self.bad(name, "a list of strings"));
        };
        items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| self.bad(name, "a list of strings"))
    }

    fn bad(&self, name: &str, expected: &'static str) -> Error {
        Error::BadAttribute {
            attr: name.to_string(),
            drv: self.drv_name.clone(),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store_path::StoreDir;

    fn drv_with(env: &[(&str, &str)]) -> (&'static str, Derivation) {
        let store_dir = StoreDir::default();
        let env: String = env
            .iter()
            .map(|(k, v)| format!(",({})", aterm_pair(k, v)))
            .collect();
        let text = format!(
            "Derive([(\"out\",\"/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple\",\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"){env}])"
        );
        let drv = Derivation::from_aterm(&store_dir, text.as_bytes(), "simple").unwrap();
        ("cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv", drv)
    }

    fn aterm_pair(k: &str, v: &str) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{}\",\"{}\"", esc(k), esc(v))
    }

    #[test]
    fn without_structured_attrs_the_environment_is_read_as_nix_reads_it() {
        let (path, drv) = drv_with(&[
            ("features", " kvm\tbig-parallel\n"),
            ("local", "1"),
            ("remote", "true"),
        ]);
        let attrs = ParsedAttrs::parse(path, &drv).unwrap();
        assert_eq!(
            attrs.strings("features").unwrap(),
            Some(vec!["kvm".to_string(), "big-parallel".to_string()])
        );
        assert_eq!(attrs.strings("none").unwrap(), None);
        assert!(attrs.bool("local", false).unwrap());
        assert!(!attrs.bool("remote", true).unwrap(), "only '1' is true");
        assert!(attrs.bool("none", true).unwrap());
        assert_eq!(attrs.string("remote").unwrap().as_deref(), Some("true"));
        assert!(attrs.has("local") && !attrs.has("none"));
    }

    #[test]
    fn structured_attrs_are_typed_and_wrong_types_name_the_attribute() {
        let (path, drv) = drv_with(&[(
            "__json",
            r#"{"features":["kvm"],"bad":["kvm",1],"local":true,"name":"x","one":"1"}"#,
        )]);
        let attrs = ParsedAttrs::parse(path, &drv).unwrap();
        assert_eq!(
            attrs.strings("features").unwrap(),
            Some(vec!["kvm".to_string()])
        );
        assert!(attrs.bool("local", false).unwrap());
        assert_eq!(attrs.string("name").unwrap().as_deref(), Some("x"));
        assert_eq!(
            attrs.strings("bad").unwrap_err().to_string(),
            "attribute 'bad' of derivation 'cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv' must be a list of strings"
        );
        assert_eq!(
            attrs.strings("name").unwrap_err().to_string(),
            "attribute 'name' of derivation 'cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv' must be a list of strings"
        );
        assert_eq!(
            attrs.bool("one", false).unwrap_err().to_string(),
            "attribute 'one' of derivation 'cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv' must be a Boolean"
        );
        assert!(attrs.string("local").is_err());
    }

    #[test]
    fn bad_json_is_an_error_naming_the_derivation() {
        let (path, drv) = drv_with(&[("__json", "{")]);
        let err = ParsedAttrs::parse(path, &drv).err().unwrap();
        assert_eq!(
            err.to_string(),
            "cannot process __json attribute of 'cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv'"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
