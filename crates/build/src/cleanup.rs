//! Removing a finished build's chroot and build directory off the critical path: on a
//! real disk, deleting a few hundred entries costs milliseconds, and the next build
//! (or the next step of a chain) need not wait for it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::thread::JoinHandle;

use kiln_store::LocalStore;

static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Delete a chroot in the background. It is first renamed to a temp-rooted scratch
/// name inside the store, so neither a later build of the same derivation nor a
/// collector (kiln's or Nix's) can trip over it. Falls back to deleting in place.
pub(crate) fn remove_chroot_later(
    store: &LocalStore,
    chroot: PathBuf,
) -> Result<(), kiln_sandbox::Error> {
    let trash = store
        .scratch_path("kiln-chroot-trash")
        .ok()
        .map(|p| store.layout().real_path(&p));
    match trash {
        Some(trash) if std::fs::rename(&chroot, &trash).is_ok() => {
            spawn(move || {
                let _ = kiln_sandbox::cleanup(&trash);
            });
            Ok(())
        }
        _ => kiln_sandbox::cleanup(&chroot),
    }
}

/// Delete a build directory in the background (nothing reuses its name while it
/// exists: the next build of the same derivation takes the next number).
pub(crate) fn remove_dir_later(dir: PathBuf) {
    spawn(move || {
        let _ = kiln_store::remove_tree(&dir);
    });
}

fn spawn(work: impl FnOnce() + Send + 'static) {
    // If no thread can be started the work is lost, which only leaves garbage for the
    // collector; the build itself has succeeded.
    if let Ok(handle) = std::thread::Builder::new()
        .name("kiln-cleanup".into())
        .spawn(work)
    {
        PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }
}

/// Wait for every background removal; call before the process exits.
pub fn finish_background_cleanup() {
    let handles = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for h in handles {
        let _ = h.join();
    }
}
