//! What makes a name, a symlink target and a nesting depth acceptable. Shared by the
//! writer (so it only ever emits archives the reader accepts) and the reader.

/// Longest entry name accepted, in bytes (Linux `NAME_MAX`; the limit Nix 2.35 adopts).
pub const MAX_NAME_LEN: usize = 255;

/// Longest symlink target accepted, in bytes (`PATH_MAX - 1`; the limit Nix 2.35 adopts).
pub const MAX_TARGET_LEN: usize = 4095;

/// Most directory levels the reader accepts, counting the root directory as level 1.
///
/// Every level below the root adds at least two bytes (a slash and a one-byte name) to the
/// paths inside it, so a tree deeper than `PATH_MAX / 2` has paths no system call accepts
/// whole: neither kiln nor Nix can dump, add, scan or restore it, since both name files
/// by whole paths. Any tree the store can hold is therefore within this limit, while a
/// hostile stream still cannot make the reader keep unbounded state.
pub const MAX_DEPTH: usize = 2048;

/// Why `name` cannot be a directory entry name, if it cannot.
pub(crate) fn name_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("name is empty")
    } else if name == b"." || name == b".." {
        Some("'.' and '..' are not allowed")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains a NUL byte")
    } else {
        None
    }
}

/// Ways a symlink target can be unacceptable (length is checked separately, before the
/// target is read, so that no oversized buffer is allocated).
pub(crate) enum TargetProblem {
    Empty,
    ContainsNul,
}

pub(crate) fn target_problem(target: &[u8]) -> Option<TargetProblem> {
    if target.is_empty() {
        Some(TargetProblem::Empty)
    } else if target.contains(&0) {
        Some(TargetProblem::ContainsNul)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0"] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            &b"a"[..],
            b"...",
            b".hidden",
            b"-",
            b" x ",
            "é".as_bytes(),
            b"\xff",
        ] {
            assert!(name_problem(good).is_none(), "{good:?}");
        }
    }
}
