//! The few syscalls rustix does not wrap (or wraps in a way that does not fit
//! a freshly cloned, single-threaded helper), shared by the three rooms. Every
//! raw syscall of the crate is made here, each block with the reason it is
//! sound. The wrappers whose soundness depends on their caller (a clone of a
//! single-threaded process; closing or replacing descriptor numbers that a Rust
//! owner might still use) are `unsafe fn`s with a `# Safety` section, called
//! only from the helper (`helper/`) and the sandboxed child (`child/`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr;

/// `clone(2)` without a new stack: the child continues from here with a copy of
/// the address space, like `fork`, but in new namespaces and possibly as a
/// sibling of the caller (`CLONE_PARENT`). Returns 0 in the child, the child's
/// pid (in our PID namespace) in the parent.
///
/// # Safety
/// The calling process must be single-threaded: the child gets only the calling
/// thread, and no `atfork` handlers run, so locks held by other threads (malloc,
/// stdio) would stay locked forever in the child.
pub(crate) unsafe fn clone_process(flags: libc::c_ulong) -> io::Result<libc::pid_t> {
    // SAFETY: a raw clone with a null stack pointer duplicates the process like
    // fork; the caller guarantees there are no other threads whose state could
    // be left inconsistent, and all pointer arguments are null (unused).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            ptr::null_mut::<libc::c_void>(),
            ptr::null_mut::<libc::c_void>(),
            ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// `execve`; returns only on failure.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(ptr::null());
    // SAFETY: all three arguments point to NUL-terminated strings / null-
    // terminated pointer arrays that outlive the call (execve does not return
    // on success, and on failure nothing has been freed).
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// `personality(2)`; `0xffffffff` queries without changing.
pub(crate) fn personality(persona: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: personality takes a plain integer and touches no memory of ours.
    let r = unsafe { libc::personality(persona) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Closes every descriptor `>= first` (`close_range`, or `/proc/self/fd` on
/// kernels before 5.9, which is how Nix 2.8 does it).
///
/// # Safety
/// No Rust owner of a descriptor at or above `first` (an `OwnedFd`, a `File`) may
/// be used or dropped afterwards: its number may by then name another file.
pub(crate) unsafe fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the caller guarantees that
    // no owner of one of them is used again.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is already closed,
        // so at worst close returns EBADF, which is ignored.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Where a spare child keeps its socket to the helper: above the descriptors a
/// request brings (they arrive at the lowest free numbers, from 3) and the
/// status pipe's fixed number.
pub(crate) const SPARE_CTL_FD: RawFd = 9;

/// For a freshly cloned spare child: keeps `ctl` at [`SPARE_CTL_FD`], makes
/// stdin `/dev/null`, and closes every other descriptor above stderr that it
/// inherited from the helper (above all the helper's end of the caller's
/// socket, whose EOF tells the caller that the helper died).
///
/// # Safety
/// As for [`close_from`]`(3)`, except `ctl`: call it only in a freshly cloned
/// spare that never returns into the helper's code.
pub(crate) unsafe fn isolate_spare(ctl: OwnedFd) -> io::Result<OwnedFd> {
    let raw = ctl.into_raw_fd();
    // SAFETY: what lives at SPARE_CTL_FD is one of the helper's, never used again
    // (the caller's guarantee).
    unsafe { dup_onto(raw, SPARE_CTL_FD, true) }?;
    for fd in 3..SPARE_CTL_FD {
        // SAFETY: close only closes a descriptor (EBADF for unused numbers is
        // ignored). The spare never returns to the helper's code, so the Rust
        // owners it inherited for these numbers (the helper's sockets and
        // namespaces) are never dropped, and `raw` was given up above.
        unsafe { libc::close(fd) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { close_from(SPARE_CTL_FD + 1) }?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: stdin has no Rust owner.
    unsafe { dup_onto(null.as_raw_fd(), 0, false) }?;
    drop(null);
    // SAFETY: SPARE_CTL_FD was just made a copy of `ctl`, and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(SPARE_CTL_FD) })
}

/// A close-on-exec copy of `fd` numbered `min` or above; `fd` is closed.
///
/// # Safety
/// The caller owns `fd` and hands it over: no Rust owner of it is used or
/// dropped afterwards.
pub(crate) unsafe fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller hands over `fd`, which nothing else owns (the Rust
    // owner it came from is never dropped: the child never returns).
    unsafe { libc::close(fd) };
    // SAFETY: `new` was just created and has no other owner.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `dup3(old, new, O_CLOEXEC?)` onto a fixed descriptor number (stdio, the status fd).
///
/// # Safety
/// No Rust owner of what `new` named before may be used or dropped afterwards.
pub(crate) unsafe fn dup_onto(old: RawFd, new: RawFd, cloexec: bool) -> io::Result<()> {
    let r = if old == new {
        if !cloexec {
            return Ok(());
        }
        // SAFETY: fcntl F_SETFD on a descriptor number only changes its flags.
        unsafe { libc::fcntl(new, libc::F_SETFD, libc::FD_CLOEXEC) }
    } else {
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 onto a fixed number; any descriptor previously there is
        // closed atomically, and the caller guarantees nothing owns it.
        unsafe { libc::dup3(old, new, flags) }
    };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The signals this process ignores, found once, before the helper clones anything
/// (it never changes a disposition afterwards, so its children inherit exactly these).
/// Handlers reset on exec by themselves, but *ignored* signals and the mask survive
/// it: the Rust runtime ignores SIGPIPE, and glibc's `posix_spawn` (how the helper
/// was started) leaves its two internal real-time signals ignored, which glibc's own
/// `signal()` refuses to touch. Nix's builders start with nothing ignored or blocked.
pub(crate) fn ignored_signals() -> &'static [i32] {
    static IGNORED: std::sync::OnceLock<Vec<i32>> = std::sync::OnceLock::new();
    IGNORED.get_or_init(|| {
        (1..=64)
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
            .filter(|&sig| {
                let mut old = [0u64; 4];
                // SAFETY: rt_sigaction only writes the old action into a zeroed
                // buffer larger than the kernel's struct (new = null: no change).
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig as libc::c_long,
                        ptr::null::<libc::c_void>(),
                        old.as_mut_ptr(),
                        8 as libc::c_long,
                    )
                };
                // The handler is the struct's first field on every architecture.
                r == 0 && old[0] == libc::SIG_IGN as u64
            })
            .collect()
    })
}

/// Restores the default disposition of the signals in [`ignored_signals`] and
/// empties the signal mask, with raw syscalls (one per ignored signal rather than
/// one per signal: this runs between a build's start and its builder).
pub(crate) fn reset_signals() {
    // A zeroed kernel `struct sigaction` is SIG_DFL with no flags and an
    // empty mask, whatever the architecture's field order.
    let default_action = [0u64; 4];
    for &sig in ignored_signals() {
        // SAFETY: rt_sigaction reads a kernel sigaction from a valid, zeroed
        // buffer larger than the struct, and writes nothing (old = null).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                default_action.as_ptr(),
                ptr::null_mut::<libc::c_void>(),
                8 as libc::c_long,
            )
        };
    }
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask reads an 8-byte mask from a valid location.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &empty as *const u64,
            ptr::null_mut::<libc::c_void>(),
            8 as libc::c_long,
        )
    };
}

/// `_exit`: no destructors, no atexit handlers, no stdio flushing (the cloned
/// child must not run the helper's cleanup a second time).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`.
pub(crate) fn install_seccomp(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which is alive for the duration of the
    // call; the kernel copies the program and keeps no reference to it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ioctl(sock, SIOCSIFFLAGS, {name, flags})`.
pub(crate) fn set_interface_flags(
    sock: RawFd,
    name: &[u8],
    flags: libc::c_short,
) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq`, which `req` is, for the
    // duration of the call only.
    let r = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req as *const libc::ifreq) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `write(2)` to a descriptor known only by number (the status pipe, whose
/// number is fixed by the helper); retried on EINTR.
pub(crate) fn write_raw(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `data` is a valid slice for the duration of the call; an fd
        // that is not open only yields EBADF.
        let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `unshare(CLONE_NEWNET)` of the (single-threaded) helper itself.
pub(crate) fn unshare_network_namespace() -> Result<(), rustix::io::Errno> {
    // SAFETY: rustix marks unshare unsafe because unsharing file tables or fs
    // info changes what other threads share; the helper has no other threads,
    // and a network namespace holds no memory of ours.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}

/// `unshare(CLONE_NEWNS)` of the (single-threaded) sandboxed child.
pub(crate) fn unshare_mount_namespace() -> Result<(), rustix::io::Errno> {
    // SAFETY: as for unshare_network_namespace: one thread, and a mount
    // namespace holds no memory of ours.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
}

/// A detached, private copy of the mount tree at `path` (`open_tree` with
/// `OPEN_TREE_CLONE`), for a sandbox that has pivoted already to attach with
/// [`attach_tree`]. Private like the binds a sandbox makes itself (its copy of
/// the host's mounts is made private first): a clone of a shared host mount
/// would otherwise join the host's peer group. Needs `CAP_SYS_ADMIN`.
pub(crate) fn detached_tree(path: &CStr) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    // `c_ulong` is 32 bits wide on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE as u64,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from a live,
    // initialised struct laid out as the kernel's `struct mount_attr`; the
    // path is a valid empty C string, and `tree` is an open descriptor.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// The kernel's `struct mount_attr` (version 0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attaches a tree from [`detached_tree`] at `target` in this mount namespace.
pub(crate) fn attach_tree(tree: &OwnedFd, target: &CStr) -> Result<(), rustix::io::Errno> {
    rustix::mount::move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        target,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Whether the kernel has `open_tree`, `move_mount` and `mount_setattr`
/// (Linux 5.12): asked with arguments each rejects before doing anything, so
/// that only a missing call gives `ENOSYS`.
pub(crate) fn detached_mounts_supported() -> bool {
    let missing = |r: libc::c_long| {
        r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
    };
    // SAFETY: each call gets an invalid descriptor (-1) and null or empty
    // pointers that the kernel rejects (EBADF/EINVAL/EFAULT) without writing.
    unsafe {
        !missing(libc::syscall(libc::SYS_open_tree, -1, c"".as_ptr(), 0u32))
            && !missing(libc::syscall(
                libc::SYS_move_mount,
                -1,
                c"".as_ptr(),
                -1,
                c"".as_ptr(),
                0u32,
            ))
            && !missing(libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                0u32,
                ptr::null::<MountAttr>(),
                0usize,
            ))
    }
}

/// `kill(-1, sig)`: `sig` to every process the calling thread may signal,
/// except init and the caller's own process.
pub(crate) fn kill_every_permitted(sig: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    let r = unsafe { libc::kill(-1, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
