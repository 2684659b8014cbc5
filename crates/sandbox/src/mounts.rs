//! The child's mount sequence, in Nix 2.8's order (the order shows in the
//! builder's `/proc/self/mountinfo`, and the shared `/nix/store` peer group is
//! part of what the builder sees).

use std::ffi::{CStr, CString};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::errno_text;
use crate::plan::{Bind, Plan};

fn fail(what: String, e: Errno) -> String {
    format!("{what}: {}", errno_text(e.raw_os_error()))
}

fn show(p: &CStr) -> std::borrow::Cow<'_, str> {
    p.to_string_lossy()
}

/// Everything from making `/` private up to the pivot;
/// runs with the host's root still visible, so sources are host paths.
pub(crate) fn setup(plan: &Plan) -> Result<(), String> {
    // Mounting below a shared subtree would propagate to the host even from a
    // private namespace; making everything private is local to this one.
    rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| fail("unable to make '/' private".into(), e))?;
    // pivot_root needs the new root to be a mount point.
    rustix::mount::mount_bind(&*plan.chroot, &*plan.chroot)
        .map_err(|e| fail(format!("unable to bind mount '{}'", show(&plan.chroot)), e))?;
    // Nix marks the chroot's store shared so that paths added later (recursive
    // Nix) propagate into the builder's namespace; the builder sees it as a
    // `shared:` peer group.
    rustix::mount::mount_bind(&*plan.chroot_store, &*plan.chroot_store).map_err(|e| {
        fail(
            format!(
                "unable to bind mount the Nix store '{}'",
                show(&plan.chroot_store)
            ),
            e,
        )
    })?;
    rustix::mount::mount_change(&*plan.chroot_store, MountPropagationFlags::SHARED).map_err(
        |e| {
            fail(
                format!("unable to make '{}' shared", show(&plan.chroot_store)),
                e,
            )
        },
    )?;

    bind_all(&plan.binds)?;

    rustix::mount::mount(c"none", &*plan.proc_dir, c"proc", MountFlags::empty(), None)
        .map_err(|e| fail("mounting /proc".into(), e))?;
    if let Some((dir, options)) = &plan.shm {
        rustix::mount::mount(
            c"none",
            &**dir,
            c"tmpfs",
            MountFlags::empty(),
            Some(&**options),
        )
        .map_err(|e| fail("mounting /dev/shm".into(), e))?;
    }
    if let Some(pts) = &plan.devpts {
        devpts(pts, &plan.ptmx)?;
    }
    Ok(())
}

pub(crate) fn bind_all(binds: &[Bind]) -> Result<(), String> {
    for bind in binds {
        match rustix::mount::mount_bind_recursive(&*bind.source, &*bind.target) {
            Ok(()) => {}
            Err(Errno::NOENT) if bind.optional => {}
            Err(e) => {
                return Err(fail(
                    format!(
                        "bind mount from '{}' to '{}' failed",
                        show(&bind.source),
                        show(&bind.target)
                    ),
                    e,
                ))
            }
        }
    }
    Ok(())
}

fn devpts(pts: &CStr, ptmx: &CStr) -> Result<(), String> {
    match rustix::mount::mount(
        c"none",
        pts,
        c"devpts",
        MountFlags::empty(),
        Some(c"newinstance,mode=0620"),
    ) {
        Ok(()) => {
            rustix::fs::symlink(c"/dev/pts/ptmx", ptmx)
                .map_err(|e| fail(format!("creating symlink '{}'", show(ptmx)), e))?;
            // Some kernels create the new instance's ptmx with mode 0.
            let node = CString::new([pts.to_bytes(), b"/ptmx"].concat()).expect("no NUL in a CStr");
            rustix::fs::chmod(&*node, Mode::from_raw_mode(0o666))
                .map_err(|e| fail(format!("changing mode of '{}'", show(&node)), e))
        }
        // Kernels without multiple devpts instances: share the host's.
        Err(Errno::INVAL) => {
            rustix::mount::mount_bind_recursive(c"/dev/pts", pts).map_err(|e| {
                fail(
                    format!("bind mount from '/dev/pts' to '{}' failed", show(pts)),
                    e,
                )
            })?;
            rustix::fs::open(
                ptmx,
                OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )
            .map_err(|e| fail(format!("creating '{}'", show(ptmx)), e))?;
            rustix::mount::mount_bind_recursive(c"/dev/ptmx", ptmx).map_err(|e| {
                fail(
                    format!("bind mount from '/dev/ptmx' to '{}' failed", show(ptmx)),
                    e,
                )
            })
        }
        Err(e) => Err(fail("mounting /dev/pts".into(), e)),
    }
}

/// Makes the chroot the root with `pivot_root` (unlike a plain chroot, the
/// old root can then be detached entirely).
///
/// Nix pivots onto a `real-root` directory it creates in the chroot and
/// removes again. `pivot_root(".", ".")` stacks the old root on the new one
/// instead and needs no directory: two fewer metadata writes on the store's
/// filesystem per build, and the same result.
pub(crate) fn pivot(plan: &Plan) -> Result<(), String> {
    let chroot = show(&plan.chroot);
    rustix::process::chdir(&*plan.chroot)
        .map_err(|e| fail(format!("cannot change directory to '{chroot}'"), e))?;
    rustix::process::pivot_root(c".", c".")
        .map_err(|e| fail(format!("cannot pivot root onto '{chroot}'"), e))?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH)
        .map_err(|e| fail("cannot unmount real root filesystem".into(), e))?;
    rustix::process::chroot(c".")
        .map_err(|e| fail(format!("cannot change root directory to '{chroot}'"), e))?;
    rustix::process::chdir(c"/").map_err(|e| fail("cannot change directory to '/'".into(), e))?;
    // Nix unshares the mount namespace once more before pivoting (keeping the
    // first one to bind paths into later for recursive Nix). kiln adds no
    // paths later, but the copy is visible: mountinfo then lists the mounts in
    // tree order (the copy's order) rather than in creation order. Copying
    // after the old root is detached gives the same tree, and copies a dozen
    // mounts instead of the whole host's table.
    crate::sys::unshare_mount_namespace().map_err(|e| fail("unsharing mount namespace".into(), e))
}
