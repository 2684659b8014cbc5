//! The `.drv` ATerm text (formats.md §4.2–§4.4, §4.8).
//!
//! Two string writers exist and the printer must pick the right one per field, because
//! Nix 2.8 does: builder, args and env keys/values are escaped; every other string
//! (output names and paths, hashAlgo, hash, input paths and output names, inputSrcs,
//! platform) is written raw between quotes. The parser undoes the escaping in every
//! field, as Nix's parser does.

mod parse;
mod print;

pub use parse::parse;
pub use print::print;
pub(crate) use print::write;

/// The only version string of the `DrvWithVersion(…)` form so far.
pub const DYNAMIC_DERIVATIONS_VERSION: &str = "xp-dyn-drv";
