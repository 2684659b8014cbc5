//! Reading every process's temp roots, as Nix's collector does: a file whose lock we
//! can take belongs to a dead process and is removed; the others are read unlocked.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};

use kiln_store::Layout;
use kiln_store_path::{StorePath, HASH_PART_LEN};

use crate::error::{IoContext, Result};

/// Hash parts of all temp roots of live processes.
pub(crate) fn read_temp_roots(
    layout: &Layout,
    log: &mut dyn FnMut(String),
) -> Result<HashSet<String>> {
    let dir = layout.temp_roots_dir();
    let mut roots = HashSet::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(roots),
        Err(e) => return Err(e).ctx("reading", &dir),
    };
    for entry in entries {
        let entry = entry.ctx("reading", &dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Only `<pid>` files are temp roots; anything else is not ours to judge.
        if name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path();
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("opening", &path),
        };
        if file.try_lock().is_ok() {
            // Its owner is gone: remove it, and mark the inode so an owner that is just
            // starting and raced us to the lock knows to retry.
            log(format!(
                "removing stale temporary roots file '{}'",
                path.display()
            ));
            let _ = std::fs::remove_file(&path);
            let _ = file.write_all(b"d");
            continue;
        }
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).ctx("reading", &path)?;
        // Entries are NUL-terminated; a trailing fragment is still being written.
        let complete = match contents.iter().rposition(|&b| b == 0) {
            Some(last) => &contents[..last],
            None => continue,
        };
        for entry in complete.split(|&b| b == 0) {
            if let Some(hash) = hash_part_of(layout, entry) {
                roots.insert(hash);
            }
        }
    }
    Ok(roots)
}

/// The hash part of a logical store path given as bytes; `None` if it is not one.
pub(crate) fn hash_part_of(layout: &Layout, entry: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(entry).ok()?;
    let (path, _) = layout.store_dir.parse_with_subpath(text).ok()?;
    Some(path.hash_part().to_string())
}

pub(crate) fn hash_part(path: &StorePath) -> String {
    path.hash_part()[..HASH_PART_LEN].to_string()
}
