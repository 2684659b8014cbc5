//! kiln-builtins: Nix 2.8's builtin builders, `builtin:fetchurl`, `builtin:buildenv`
//! and `builtin:unpack-channel`.
//!
//! Layer: beside `kiln-build`, above `kiln-nar`; nothing below depends on it. The
//! `kiln` executable hands [`run`] to `kiln_sandbox::set_builtin_runner` in its
//! sandbox helper, so a builtin runs in the sandboxed child exactly where a builder
//! would be executed: inside the chroot, as the build user, in the build's network
//! namespace. Each builtin reads the derivation's environment, writes its `out`, and
//! reports progress and warnings as Nix's JSON logger does (`@nix` lines, see
//! [`activity`]); a failure is one log line, formatted as Nix formats its errors.

mod activity;
mod buildenv;
mod env;
mod error;
mod fetchurl;
mod transfer;
mod unpack_channel;

pub use env::Env;
pub use error::Error;

/// Runs builtin `name` with the builder environment `env`; the `Err` text is the log
/// line Nix would write for the same failure (colours included, as in Nix's logs).
pub fn run(name: &[u8], env: &[(&[u8], &[u8])]) -> Result<(), String> {
    run_builtin(name, &Env::new(env)).map_err(|e| e.log_line())
}

fn run_builtin(name: &[u8], env: &Env<'_>) -> Result<(), Error> {
    match name {
        b"fetchurl" => fetchurl::fetchurl(env),
        b"buildenv" => buildenv::buildenv(env),
        b"unpack-channel" => unpack_channel::unpack_channel(env),
        _ => Err(Error::Unsupported(
            String::from_utf8_lossy(name).into_owned(),
        )),
    }
}
