//! Facts about the host that every room of the crate may ask: read once per
//! process and never changed afterwards (a `OnceLock`, not state with an owner:
//! nothing can make them wrong while we run, and nothing needs releasing).

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

/// Facts about the host that Nix checks on every build but that do not change
/// while we run; looked up once per process.
pub(crate) struct HostFacts {
    pub(crate) user_namespaces: bool,
    pub(crate) dev_shm: bool,
    pub(crate) dev_pts_ptmx: bool,
    pub(crate) dev_kvm: bool,
    pub(crate) detached_mounts: bool,
}

pub(crate) fn host_facts() -> &'static HostFacts {
    static FACTS: OnceLock<HostFacts> = OnceLock::new();
    FACTS.get_or_init(|| HostFacts {
        // Nix: user namespaces are tried unless this file says 0.
        user_namespaces: fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .map(|s| s.trim() != "0")
            .unwrap_or(false),
        dev_shm: Path::new("/dev/shm").exists(),
        dev_pts_ptmx: Path::new("/dev/pts/ptmx").exists(),
        dev_kvm: Path::new("/dev/kvm").exists(),
        detached_mounts: crate::sys::detached_mounts_supported(),
    })
}

/// Whether sandboxes will try a user namespace (`/proc/sys/user/max_user_namespaces` ≠ 0).
pub fn user_namespaces_enabled() -> bool {
    host_facts().user_namespaces
}
