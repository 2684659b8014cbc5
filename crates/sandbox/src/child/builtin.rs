//! Builders named `builtin:NAME` (Nix's `builtin:fetchurl` and friends): code of the
//! caller's executable that the sandboxed child runs in place of `execve`, after the
//! whole sandbox is set up, so it sees exactly what a builder would (the chroot, the
//! network namespace, the build user). Nix 2.8 runs its builtins the same way, in the
//! forked build child.
//!
//! This crate does not know the builtins (they live above the build layer); the
//! executable registers them with [`set_builtin_runner`] in the helper process before
//! the helper clones anything, so every child, spare or not, inherits the registration.

use std::sync::OnceLock;

/// Runs builtin `name` (the builder without its `builtin:` prefix) with the builder's
/// environment, as `(name, value)` pairs. On `Err`, the text is written to the build
/// log as one line and the builder exits with status 1, as Nix's do.
pub type BuiltinRunner = fn(name: &[u8], env: &[(&[u8], &[u8])]) -> Result<(), String>;

static RUNNER: OnceLock<BuiltinRunner> = OnceLock::new();

/// Makes the sandbox run `builtin:` builders with `runner`. Call it in the helper
/// process (the executable started with [`crate::HELPER_ARG`]) before
/// [`crate::helper_main`]; without it a `builtin:` builder fails as an executable
/// that does not exist. A second registration is ignored.
pub fn set_builtin_runner(runner: BuiltinRunner) {
    let _ = RUNNER.set(runner);
}

/// The registered runner, if `builder` names a builtin.
pub(crate) fn for_builder(builder: &[u8]) -> Option<(BuiltinRunner, &[u8])> {
    let name = builder.strip_prefix(b"builtin:")?;
    RUNNER.get().map(|runner| (*runner, name))
}

/// `NAME=VALUE` entries split at their first `=` (an entry without one is skipped:
/// the builder's environment never has such entries).
pub(crate) fn split_env<'a>(envp: impl Iterator<Item = &'a [u8]>) -> Vec<(&'a [u8], &'a [u8])> {
    envp.filter_map(|entry| {
        let eq = entry.iter().position(|&b| b == b'=')?;
        Some((&entry[..eq], &entry[eq + 1..]))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_split_at_the_first_equals_sign() {
        let env = [b"a=b=c".as_slice(), b"out=/nix/store/x", b"empty=", b"junk"];
        assert_eq!(
            split_env(env.into_iter()),
            vec![
                (b"a".as_slice(), b"b=c".as_slice()),
                (b"out".as_slice(), b"/nix/store/x".as_slice()),
                (b"empty".as_slice(), b"".as_slice()),
            ]
        );
    }
}
