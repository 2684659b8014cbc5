//! The JSON form of derivations printed by `nix show-derivation` in Nix 2.8
//! (formats.md §6), and a reader for one derivation object of that form.

mod print;
mod read;

pub use print::{show_derivations, write_derivation_object};
pub use read::{from_json_bytes, from_json_value};
