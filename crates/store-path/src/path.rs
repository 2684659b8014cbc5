use std::fmt;

use kiln_hash::nix32;

use crate::{Error, Result};

/// Characters in a hash part: 160 bits in nix32.
pub const HASH_PART_LEN: usize = 32;
/// Longest name Nix 2.8 accepts (base name at most 32 + 1 + 211 bytes).
pub const MAX_NAME_LEN: usize = 211;

/// Check a store path name against Nix 2.8's rules: 1..=211 bytes of
/// `A-Za-z0-9+-._?=`. 2.8 has no leading-dot rule, so `.` and `..` pass.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::EmptyName(name.to_string()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong {
            name: name.to_string(),
        });
    }
    if let Some((pos, ch)) = name.char_indices().find(|&(_, c)| !is_name_char(c)) {
        return Err(Error::InvalidNameChar {
            name: name.to_string(),
            ch,
            pos,
        });
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '=')
}

/// A store object's identity: hash part and name, independent of the store directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    // Stored as the base name so ordering, hashing and display need no allocation.
    base_name: String,
}

impl StorePath {
    /// Parse a base name `<hash>-<name>`. Unlike 2.8, the `-` is required (newer Nix
    /// requires it too, and 2.8 can never create a path without it).
    pub fn from_base_name(base: &str) -> Result<StorePath> {
        let bad = |why| Error::BadStorePath(base.to_string(), why);
        if base.len() < HASH_PART_LEN + 2 {
            return Err(bad("too short"));
        }
        let bytes = base.as_bytes();
        if !bytes[..HASH_PART_LEN]
            .iter()
            .all(|&b| nix32::is_nix32_char(b))
        {
            return Err(bad("hash part is not 32 nix32 characters"));
        }
        if bytes[HASH_PART_LEN] != b'-' {
            return Err(bad("no '-' after the hash part"));
        }
        validate_name(&base[HASH_PART_LEN + 1..])?;
        Ok(StorePath {
            base_name: base.to_string(),
        })
    }

    /// Build from the 20-byte folded digest and a name.
    pub fn from_hash(digest20: &[u8], name: &str) -> Result<StorePath> {
        validate_name(name)?;
        debug_assert_eq!(digest20.len(), 20);
        Ok(StorePath {
            base_name: format!("{}-{}", nix32::encode(digest20), name),
        })
    }

    /// The 32 nix32 characters.
    pub fn hash_part(&self) -> &str {
        &self.base_name[..HASH_PART_LEN]
    }

    pub fn name(&self) -> &str {
        &self.base_name[HASH_PART_LEN + 1..]
    }

    /// `<hash>-<name>`, without the store directory.
    pub fn base_name(&self) -> &str {
        &self.base_name
    }

    pub fn is_derivation(&self) -> bool {
        self.name().ends_with(".drv")
    }

    /// The name without a trailing `.drv`, i.e. the derivation name for a `.drv` path.
    pub fn name_without_drv_ext(&self) -> &str {
        self.name().strip_suffix(".drv").unwrap_or(self.name())
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base_name)
    }
}
