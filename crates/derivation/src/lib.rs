//! kiln-derivation: layer 3, above kiln-hash and kiln-store-path. Nix derivations as
//! Nix 2.8 writes and reads them:
//!
//! * [`model`]: the [`Derivation`] data model, its output kinds and its
//!   [`DerivationType`], including inputs on outputs of outputs (dynamic derivations).
//! * [`aterm`]: the `.drv` ATerm printer and parser (`Derive(…)` and, only when a
//!   dynamic input needs it, `DrvWithVersion("xp-dyn-drv",…)`).
//! * [`hash_modulo`]: `hashDerivationModulo`, with a memo table for shared inputs.
//! * [`output_paths`]: output paths, the `.drv` file's own path, the evaluator's
//!   fill-in procedure and derivation output ids.
//! * [`json`]: the `nix show-derivation` (2.8) JSON printer and a reader for one
//!   derivation object.
//! * [`derived_path`]: `drv^out`, `drv^out,dev`, `drv^*`, `drv^out^out`.
//! * [`attrs`]: the attributes a build reads (structured `__json` or environment
//!   words), typed as Nix's `ParsedDerivation` types them.
//!
//! Invariants:
//! * Strings that come from the Nix language (platform, builder, args, env) are byte
//!   strings ([`BString`]) and round-trip exactly; output names are UTF-8 `String`s
//!   and store paths are validated [`StorePath`](kiln_store_path::StorePath)s.
//! * Maps and sets are `BTree`s, so iteration order is Nix's byte order (`memcmp`);
//!   `args` keeps its order.
//! * Printing a derivation Nix 2.8 wrote, after parsing it, gives back the same bytes.
//! * Nothing here touches the file system: inputs of a derivation are obtained through
//!   a caller-supplied resolver.
//! * No function panics on bad input; every error says where (byte offset, output,
//!   field or path) and what was expected.
//!
//! Reference: Nix's `libstore/derivations.cc` (ATerm, hash modulo, output paths) and
//! `libstore/derived-path.cc` (`drv^out^out`).

pub mod aterm;
pub mod attrs;
pub mod derived_path;
mod error;
pub mod hash_modulo;
pub mod json;
pub mod model;
pub mod output_paths;

pub use attrs::ParsedAttrs;
pub use bstr::BString;
pub use derived_path::{DerivedPath, OutputsSpec, SingleDerivedPath};
pub use error::{Error, Result};
pub use hash_modulo::{hash_derivation_modulo, DrvHash, DrvHashCache, DrvHashKind, Resolver};
pub use model::{ContentAddressMethod, Derivation, DerivationOutput, DerivationType, InputNode};
pub use output_paths::{fill_in_output_paths, DrvOutputId};
