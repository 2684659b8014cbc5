//! Permanent roots (the `gcroots` and `profiles` trees, with indirect roots) and
//! runtime roots (what running processes have open, mapped, or in their environment).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kiln_store::Layout;
use kiln_store_path::StorePath;

/// A root and what makes it one (a link, a file, or `/proc/<pid>/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub source: String,
    pub path: StorePath,
}

/// Every root. Stale indirect roots under `gcroots/auto` are removed on the way, as Nix
/// does. `runtime` adds the roots found in `/proc`.
pub fn find_roots(layout: &Layout, runtime: bool, log: &mut dyn FnMut(String)) -> Vec<Root> {
    let mut roots = Vec::new();
    for dir in [layout.gc_roots_dir(), layout.profiles_dir()] {
        scan_dir(layout, &dir, &mut roots, log);
    }
    if runtime {
        roots.extend(runtime_roots(layout));
    }
    roots
}

fn scan_dir(layout: &Layout, dir: &Path, roots: &mut Vec<Root>, log: &mut dyn FnMut(String)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        scan_entry(layout, &entry.path(), roots, log);
    }
}

fn scan_entry(layout: &Layout, path: &Path, roots: &mut Vec<Root>, log: &mut dyn FnMut(String)) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let source = path.display().to_string();
    if meta.is_dir() {
        scan_dir(layout, path, roots, log);
    } else if meta.file_type().is_symlink() {
        let Ok(target) = std::fs::read_link(path) else {
            return;
        };
        if let Some(store_path) = store_path_in(layout, &target) {
            roots.push(Root {
                source,
                path: store_path,
            });
            return;
        }
        // An indirect root: a link to a link (e.g. `result`) that points into the store.
        let target = path.parent().unwrap_or(Path::new("/")).join(target);
        match std::fs::symlink_metadata(&target) {
            Err(_) => {
                if path.starts_with(layout.gc_roots_dir().join("auto")) {
                    log(format!(
                        "removing stale link from '{}' to '{}'",
                        path.display(),
                        target.display()
                    ));
                    let _ = std::fs::remove_file(path);
                }
            }
            Ok(m) if m.file_type().is_symlink() => {
                if let Some(store_path) = std::fs::read_link(&target)
                    .ok()
                    .and_then(|t| store_path_in(layout, &t))
                {
                    roots.push(Root {
                        source: target.display().to_string(),
                        path: store_path,
                    });
                }
            }
            Ok(_) => {}
        }
    } else if meta.is_file() {
        // A file named after a store path roots it (how `nix-store --add-root` without
        // symlinks and some tools mark roots).
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(p) = name.and_then(|n| StorePath::from_base_name(&n).ok()) {
            roots.push(Root { source, path: p });
        }
    }
}

/// The store object a path points into, accepting the logical store dir and, for a
/// chroot store, the physical one.
fn store_path_in(layout: &Layout, target: &Path) -> Option<StorePath> {
    let text = target.to_str()?;
    if let Ok((p, _)) = layout.store_dir.parse_with_subpath(text) {
        return Some(p);
    }
    let rest = target.strip_prefix(&layout.real_store_dir).ok()?;
    let first = rest.components().next()?;
    StorePath::from_base_name(first.as_os_str().to_str()?).ok()
}

/// Roots held by running processes: executables, working directories, open files,
/// memory maps, and store paths in environments.
fn runtime_roots(layout: &Layout) -> Vec<Root> {
    let mut found: BTreeMap<StorePath, String> = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let logical = format!("{}/", layout.store_dir);
    let physical = format!("{}/", layout.real_store_dir.display());
    for proc_entry in procs.flatten() {
        let name = proc_entry.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let dir = proc_entry.path();
        let mut links: Vec<PathBuf> = vec![dir.join("exe"), dir.join("cwd")];
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            links.extend(fds.flatten().map(|e| e.path()));
        }
        for link in links {
            if let Ok(target) = std::fs::read_link(&link) {
                if let Some(p) = store_path_in(layout, &target) {
                    found.entry(p).or_insert_with(|| link.display().to_string());
                }
            }
        }
        for file in ["maps", "environ"] {
            let source = dir.join(file);
            if let Ok(bytes) = std::fs::read(&source) {
                for prefix in [&logical, &physical] {
                    for p in store_paths_in_text(&bytes, prefix.as_bytes()) {
                        found
                            .entry(p)
                            .or_insert_with(|| source.display().to_string());
                    }
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(path, source)| Root { source, path })
        .collect()
}

/// Store paths mentioned in arbitrary bytes after `prefix` (`/nix/store/`).
fn store_paths_in_text(bytes: &[u8], prefix: &[u8]) -> Vec<StorePath> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(pos) = memfind(rest, prefix) {
        let after = &rest[pos + prefix.len()..];
        let len = after
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || b"+-._?=".contains(b)))
            .unwrap_or(after.len());
        if let Ok(text) = std::str::from_utf8(&after[..len]) {
            if let Ok(p) = StorePath::from_base_name(text) {
                out.push(p);
            }
        }
        rest = &after[len..];
    }
    out
}

fn memfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
