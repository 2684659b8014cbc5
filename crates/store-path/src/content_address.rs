use std::fmt;
use std::str::FromStr;

use kiln_hash::{Algorithm, Hash};

use crate::Error;

/// How file contents are turned into the bytes that are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileIngestionMethod {
    /// The raw bytes of a single regular file.
    Flat,
    /// The NAR serialisation of a tree.
    Recursive,
}

impl FileIngestionMethod {
    /// `r:` for recursive, empty for flat, as in `.drv` hashAlgo fields and `ca` strings.
    pub fn prefix(self) -> &'static str {
        match self {
            FileIngestionMethod::Flat => "",
            FileIngestionMethod::Recursive => "r:",
        }
    }
}

/// A store object's content address, printed as in path-info `ca` and narinfo `CA:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// `text:sha256:<nix32>`: builtins.toFile and `.drv` files.
    Text(Hash),
    /// `fixed:<r:?><algo>:<nix32>`.
    Fixed(FileIngestionMethod, Hash),
}

impl ContentAddress {
    pub fn hash(&self) -> &Hash {
        match self {
            ContentAddress::Text(h) | ContentAddress::Fixed(_, h) => h,
        }
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddress::Text(h) => write!(f, "text:{h}"),
            ContentAddress::Fixed(method, h) => write!(f, "fixed:{}{h}", method.prefix()),
        }
    }
}

impl FromStr for ContentAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadContentAddress(s.to_string(), why.to_string());
        // Nix 2.8 wants `<algo>:<hash>` after the prefix; an SRI hash is refused.
        let typed = |rest: &str| -> Result<Hash, Error> {
            if !rest.contains(':') {
                return Err(bad("expected '<algo>:<hash>' after the prefix"));
            }
            Ok(Hash::parse(rest, None)?)
        };
        if let Some(rest) = s.strip_prefix("text:") {
            let hash = typed(rest)?;
            if hash.algorithm() != Algorithm::Sha256 {
                return Err(bad("text content addresses must use sha256"));
            }
            Ok(ContentAddress::Text(hash))
        } else if let Some(rest) = s.strip_prefix("fixed:") {
            let (method, rest) = match rest.strip_prefix("r:") {
                Some(rest) => (FileIngestionMethod::Recursive, rest),
                None => (FileIngestionMethod::Flat, rest),
            };
            Ok(ContentAddress::Fixed(method, typed(rest)?))
        } else {
            Err(bad("expected 'text:' or 'fixed:' prefix"))
        }
    }
}
