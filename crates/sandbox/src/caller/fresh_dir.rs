//! Whether a directory that is about to be reused (a recycled chroot's `/tmp`, a build
//! directory) shows a builder nothing a new one would not: same size (ext4 never
//! shrinks a directory), same inode flags (an owner may `chattr` its own directory),
//! no extended attributes or ACLs. Only times and the inode number can differ.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a directory shows, apart from its times and contents.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Looks {
    size: u64,
    flags: u32,
}

fn looks(dir: &Path) -> Option<(u64, Looks)> {
    let meta = std::fs::metadata(dir).ok()?;
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    // Filesystems without inode flags (tmpfs) refuse the ioctl; that is their "none".
    let flags = rustix::fs::ioctl_getflags(&fd).map_or(0, |f| f.bits());
    Some((
        meta.dev(),
        Looks {
            size: meta.len(),
            flags,
        },
    ))
}

/// Whether `dir` (empty) looks like a directory made now beside it. The reference is
/// measured once per filesystem and process, with a probe made and removed beside `dir`.
pub fn looks_new(dir: &Path) -> bool {
    static NEW: Mutex<Option<HashMap<u64, Looks>>> = Mutex::new(None);
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let Some((dev, seen)) = looks(dir) else {
        return false;
    };
    if !matches!(rustix::fs::llistxattr_query(dir), Ok(0)) {
        return false;
    }
    let mut new = NEW.lock().unwrap_or_else(|e| e.into_inner());
    let new = new.get_or_insert_with(HashMap::new);
    if let Some(reference) = new.get(&dev) {
        return *reference == seen;
    }
    let Some(parent) = dir.parent() else {
        return false;
    };
    let probe = parent.join(format!(
        ".kiln-new-dir-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::create_dir(&probe).is_err() {
        return false;
    }
    let reference = looks(&probe);
    let _ = std::fs::remove_dir(&probe);
    match reference {
        Some((probe_dev, reference)) if probe_dev == dev => {
            new.insert(dev, reference);
            reference == seen
        }
        _ => false,
    }
}
