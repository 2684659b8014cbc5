//! Helpers shared by the integration tests: token-level NAR building and decoding, hash
//! encodings, the fixtures, filesystem snapshots, and access to Nix's tools.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Nix's base-32 (Nix's `libutil/hash.cc`): the bytes as a little-endian number, most significant
/// digit first.
pub fn nix32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    (0..len)
        .rev()
        .map(|digit| {
            let bit = digit * 5;
            let (i, j) = (bit / 8, bit % 8);
            let mut v = u16::from(bytes[i]) >> j;
            if i + 1 < bytes.len() {
                v |= u16::from(bytes[i + 1]) << (8 - j);
            }
            ALPHABET[usize::from(v & 31)] as char
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

pub fn sha512(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha512::digest(data).to_vec()
}

/// One encoded token (Nix's `libutil/serialise.cc`).
pub fn token(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len() + (8 - bytes.len() % 8) % 8, 0);
    out
}

/// A NAR assembled token by token, remembering where each token starts.
#[derive(Default)]
pub struct Nar {
    pub bytes: Vec<u8>,
    pub offsets: Vec<u64>,
}

impl Nar {
    pub fn from_tokens(tokens: &[&[u8]]) -> Nar {
        let mut nar = Nar::default();
        for t in tokens {
            nar.push(t);
        }
        nar
    }

    pub fn push(&mut self, t: &[u8]) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        self.bytes.extend(token(t));
        self
    }

    /// Offset of the `i`-th token.
    pub fn at(&self, i: usize) -> u64 {
        self.offsets[i]
    }

    /// Index of the first token equal to `t` at or after token `from`.
    pub fn find(&self, t: &[u8], from: usize) -> usize {
        let toks = decode_tokens(&self.bytes);
        (from..toks.len())
            .find(|&i| toks[i].1 == t)
            .unwrap_or_else(|| panic!("token {:?} not found", String::from_utf8_lossy(t)))
    }
}

/// Splits a NAR into its tokens, with offsets (test-side decoder, independent of the crate).
pub fn decode_tokens(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
        out.push((pos as u64, bytes[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len + (8 - len % 8) % 8;
    }
    out
}

/// The "tree" fixture: a file, a symlink and an executable in a subdirectory.
pub fn make_tree(dir: &Path) {
    fs::create_dir(dir).unwrap();
    fs::write(dir.join("README"), "hi\n").unwrap();
    fs::set_permissions(dir.join("README"), fs::Permissions::from_mode(0o644)).unwrap();
    symlink("README", dir.join("link")).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/run"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("sub/run"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every object below (and including) `root`: type, full mode, contents or target.
/// `None` if `root` does not exist.
pub fn snapshot(root: &Path) -> Option<BTreeMap<PathBuf, String>> {
    fs::symlink_metadata(root).ok()?;
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    Some(out)
}

fn walk(root: &Path, path: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let rel = path.strip_prefix(root).unwrap().to_path_buf();
    let mode = meta.permissions().mode() & 0o7777;
    let desc = if meta.file_type().is_symlink() {
        format!("symlink -> {:?}", fs::read_link(path).unwrap())
    } else if meta.is_file() {
        format!("file {mode:o} {:?}", fs::read(path).unwrap())
    } else if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &path.join(name), out);
        }
        format!("dir {mode:o}")
    } else {
        format!("other {mode:o}")
    };
    out.insert(rel, desc);
}

/// Like [`snapshot`], but for files only the owner-execute bit of the mode, and for
/// directories none: the part of a restored tree that does not depend on the umask.
pub fn shape(root: &Path) -> BTreeMap<PathBuf, String> {
    snapshot(root)
        .unwrap()
        .into_iter()
        .map(|(path, desc)| {
            let mut parts = desc.splitn(3, ' ');
            let desc = match (parts.next(), parts.next(), parts.next()) {
                (Some("file"), Some(mode), Some(data)) => {
                    let mode = u32::from_str_radix(mode, 8).unwrap();
                    format!("file x={} {data}", mode & 0o100 != 0)
                }
                (Some("dir"), _, _) => "dir".to_string(),
                _ => desc,
            };
            (path, desc)
        })
        .collect()
}

/// The process umask (Linux: from /proc/self/status, so no unsafe call is needed).
pub fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("no Umask line in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

/// Asserts the modes `nix-store --restore` semantics give under `umask`: files 0666 and
/// directories 0777 minus the umask, executables then +x for everyone.
pub fn assert_restore_modes(root: &Path, umask: u32) {
    for (path, desc) in snapshot(root).unwrap() {
        let mut parts = desc.split(' ');
        let (kind, mode) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        let Ok(mode) = u32::from_str_radix(mode, 8) else {
            continue; // symlink
        };
        let expected = match kind {
            "dir" => 0o777 & !umask,
            _ if mode & 0o100 != 0 => (0o666 & !umask) | 0o111,
            _ => 0o666 & !umask,
        };
        assert_eq!(
            mode,
            expected,
            "mode of {} under umask {umask:03o}",
            path.display()
        );
    }
}

/// Path of one of Nix's tools. Differential tests must not silently pass without them.
pub fn nix_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` (Nix 2.8) is not on PATH; these tests compare against Nix: run scripts/test.sh")
    })
}

/// Runs a Nix tool and returns its stdout; panics with its stderr on failure.
pub fn nix(tool: &str, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(nix_tool(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub fn os_bytes(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
