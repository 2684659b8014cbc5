//! The child's mount sequence, in Nix 2.8's order (the order shows in the
//! builder's `/proc/self/mountinfo`, and the shared `/nix/store` peer group is
//! part of what the builder sees).

use std::ffi::{CStr, CString};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::errno_text;
use crate::protocol::plan::{flags, Bind, Plan};

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

    let steps = Step::in_nix_order(plan);
    let steps = if plan.has(flags::EARLY_PIVOT) {
        // No namespace copy after the pivot (see `pivot`), so the order made
        // is the order `mountinfo` lists: make them in the copy's order.
        in_tree_order(plan, steps)
    } else {
        steps
    };
    for step in steps {
        match step {
            Step::Bind(bind) => bind_all(std::slice::from_ref(bind))?,
            Step::Proc => {
                rustix::mount::mount(c"none", &*plan.proc_dir, c"proc", MountFlags::empty(), None)
                    .map_err(|e| fail("mounting /proc".into(), e))?
            }
            Step::Shm(dir, options) => {
                rustix::mount::mount(c"none", dir, c"tmpfs", MountFlags::empty(), Some(options))
                    .map_err(|e| fail("mounting /dev/shm".into(), e))?
            }
            Step::Devpts(pts) => devpts(pts, &plan.ptmx)?,
        }
    }
    Ok(())
}

/// One mount after the chroot's own and the store's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Bind(&'a Bind),
    Proc,
    Shm(&'a CStr, &'a CStr),
    Devpts(&'a CStr),
}

impl<'a> Step<'a> {
    /// In the order Nix 2.8 makes them: the `dirsInChroot` binds, then `/proc`,
    /// `/dev/shm` and `/dev/pts`.
    fn in_nix_order(plan: &'a Plan) -> Vec<Step<'a>> {
        let mut steps: Vec<Step<'a>> = plan.binds.iter().map(Step::Bind).collect();
        steps.push(Step::Proc);
        if let Some((dir, options)) = &plan.shm {
            steps.push(Step::Shm(dir, options));
        }
        if let Some(pts) = &plan.devpts {
            steps.push(Step::Devpts(pts));
        }
        steps
    }

    fn target(&self, plan: &'a Plan) -> &'a [u8] {
        match self {
            Step::Bind(bind) => bind.target.as_bytes(),
            Step::Proc => plan.proc_dir.as_bytes(),
            Step::Shm(dir, _) => dir.to_bytes(),
            Step::Devpts(pts) => pts.to_bytes(),
        }
    }
}

/// `steps` (made in that order after the chroot and store mounts) in the order a
/// copy of the namespace lists them: depth first, each mount followed by the
/// mounts made on top of or below it later, siblings in the order they were made.
fn in_tree_order<'a>(plan: &'a Plan, steps: Vec<Step<'a>>) -> Vec<Step<'a>> {
    let mut targets: Vec<&[u8]> = vec![plan.chroot.as_bytes(), plan.chroot_store.as_bytes()];
    targets.extend(steps.iter().map(|s| s.target(plan)));
    let order = tree_order(&targets);
    debug_assert_eq!(
        order[..2],
        [0, 1],
        "the store mount is the root's first child"
    );
    order[2..].iter().map(|&i| steps[i - 2]).collect()
}

/// Indices of mount points `targets` (in creation order, the first the root of
/// all) in depth-first tree order: each one's parent is the latest mount made
/// before it at or above its path.
pub(crate) fn tree_order(targets: &[&[u8]]) -> Vec<usize> {
    let covers = |outer: &[u8], inner: &[u8]| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/") || outer.ends_with(b"/"))
    };
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for k in 1..targets.len() {
        let parent = (0..k)
            .rev()
            .find(|&j| covers(targets[j], targets[k]))
            .unwrap_or(0);
        children[parent].push(k);
    }
    let mut order = Vec::with_capacity(targets.len());
    let mut stack = vec![0];
    while let Some(node) = stack.pop() {
        order.push(node);
        stack.extend(children[node].iter().rev());
    }
    order
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
    if plan.has(flags::EARLY_PIVOT) {
        // The mounts were made in tree order (see `setup`): nothing to gain.
        return Ok(());
    }
    // Nix unshares the mount namespace once more before pivoting (keeping the
    // first one to bind paths into later for recursive Nix). kiln adds no
    // paths later, but the copy is visible: mountinfo then lists the mounts in
    // tree order (the copy's order) rather than in creation order. Copying
    // after the old root is detached gives the same tree, and copies a dozen
    // mounts instead of the whole host's table.
    crate::sys::unshare_mount_namespace().map_err(|e| fail("unsharing mount namespace".into(), e))
}

#[cfg(test)]
mod tests {
    use super::tree_order;

    #[test]
    fn tree_order_is_depth_first_with_siblings_in_creation_order() {
        let targets: Vec<&[u8]> = vec![
            b"/c",
            b"/c/nix/store",
            b"/c/bin/sh",
            b"/c/dev/null",
            b"/c/nix/store/aaa-x",
            b"/c/usr",
            b"/c/usr-x",
            b"/c/usr/bin",
            b"/c/proc",
            b"/c/dev/shm",
            b"/c/usr/bin",
        ];
        // `/c/usr/bin` comes after `/c/usr` and before `/c/usr-x` (a
        // sibling of `/c/usr`, not a child); the second `/c/usr/bin` is
        // stacked on the first.
        assert_eq!(tree_order(&targets), vec![0, 1, 4, 2, 3, 5, 7, 10, 6, 8, 9]);
    }
}
