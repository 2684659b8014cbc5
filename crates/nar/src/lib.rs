//! kiln-nar: the Nix ARchive format (spec `formats.md` §3), bit-identical with Nix 2.8.
//!
//! Layer: depends only on std (and `libc` constants); used by hashing, the store and the
//! CLI. It knows nothing of store paths or hashes: a NAR is just a byte stream here.
//!
//! * [`dump_path`] / [`NarWriter`] produce the canonical serialisation, byte for byte
//!   what `nix-store --dump` writes. They stream: memory use does not depend on file
//!   sizes, and the sink receives few, large writes.
//! * [`NarReader`] parses strictly: it accepts exactly the canonical form and rejects
//!   everything Nix 2.8 is lax about (see docs/compatibility.md, "Strict readers"), with an [`Error`] naming the byte offset
//!   and archive path. Hence a NAR that reads successfully re-serialises to the same bytes.
//!   No untrusted length is allocated without a cap ([`MAX_NAME_LEN`], [`MAX_TARGET_LEN`],
//!   [`MAX_DEPTH`]); file contents are streamed.
//! * [`restore`] unpacks like `nix-store --restore`, never writing outside the target
//!   and removing a partial result on error; [`list`] and [`cat`] look inside without
//!   unpacking; [`export`] handles the `nix-store --export` framing.

mod copy;
mod dump;
mod error;
pub mod export;
mod list;
mod reader;
mod restore;
mod rules;
mod wire;
mod writer;

pub use copy::copy_nar;
pub use dump::dump_path;
pub use error::{Error, Result};
pub use list::{cat, list, member_path, EntryKind, ListEntry};
pub use reader::{Contents, Event, NarReader};
pub use restore::{restore, restore_from};
pub use rules::{MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN};
pub use writer::NarWriter;
