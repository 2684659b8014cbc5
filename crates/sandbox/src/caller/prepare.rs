//! Host-side preparation: the chroot skeleton, the input closure, every mount
//! point, and the resolved [`Plan`] for the helper.
//!
//! Nix 2.8 creates part of this in the parent and part in the sandboxed child
//! (mount points, `/dev` symlinks, `nsswitch.conf`) and `/etc/passwd` after
//! the clone. The resulting tree is the same wherever the files are created
//! (the child acts as host root on the chroot, or as the calling user), so it
//! is all done here, before any namespace exists: errors then surface in the
//! caller with full context, and the helper only mounts.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cleanup::cleanup;
use super::skeleton::{Pool, Skeleton};
use super::spec::{
    nix_group, nix_passwd, InputPath, Network, SandboxSpec, SANDBOX_GID, SANDBOX_UID,
};
use crate::error::Error;
use crate::host::host_facts;
use crate::protocol::plan::{flags, Bind, Plan};
use crate::protocol::HelperKind;

/// A chroot ready to run, with the plan the helper will execute.
///
/// Produced by [`prepare`], consumed by [`crate::Sandboxes::run`] (once: a second run
/// would see the first one's leftovers in `/tmp` and the store). Serialisable
/// so that a caller may hand it to another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub(crate) plan: Vec<u8>,
    /// Which helper serves the plan.
    pub(crate) helper: HelperKind,
    pub(crate) chroot_dir: PathBuf,
    pub(crate) chroot_store: PathBuf,
    /// What the chroot can be recycled as, if it can.
    pub(crate) skeleton: Option<Skeleton>,
    /// Owner for the pty slave (Nix chowns it to the build user, mode 0600).
    pub(crate) pty_owner: Option<u32>,
    /// The store directory as the builder sees it (`/nix/store`).
    pub(crate) store_dir: PathBuf,
    /// The inputs now in the chroot's store (a link, or a mount point to bind).
    pub(crate) inputs: Vec<PlacedInput>,
    /// The sandbox pivots before `go` (plan flag `EARLY_PIVOT`).
    pub(crate) pivots_early: bool,
    /// Binds below the store that are not inputs (`sandbox-paths` entries):
    /// inside path, source, optional.
    pub(crate) other_store_binds: Vec<(Vec<u8>, PathBuf, bool)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_silent_time: Option<Duration>,
    pub(crate) max_log_size: Option<u64>,
}

impl Prepared {
    /// The chroot directory on the host.
    pub fn chroot_dir(&self) -> &Path {
        &self.chroot_dir
    }

    /// `<chroot><store dir>` on the host: where the outputs are after the build.
    pub fn chroot_store(&self) -> &Path {
        &self.chroot_store
    }

    /// What to hand [`crate::Sandboxes::recycle`] once the chroot has been moved aside.
    pub fn skeleton(&self) -> Option<&Skeleton> {
        self.skeleton.as_ref()
    }
}

/// An input as placed in the chroot's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlacedInput {
    pub(crate) name: String,
    pub(crate) host_path: PathBuf,
    /// Bound (a directory) rather than linked (anything else).
    pub(crate) is_dir: bool,
    /// Bound by the plan itself, before `go` (early pivot, not provisional):
    /// it cannot be taken out again.
    pub(crate) bound_early: bool,
}

impl Prepared {
    /// Makes `inputs` the chroot's store inputs instead of those it was prepared
    /// with: a build prepared while its inputs were still being built learns its
    /// input closure only now. What the two lists share stays in place.
    pub fn replace_inputs(&mut self, inputs: &[InputPath]) -> Result<(), Error> {
        let wanted: BTreeMap<&str, &InputPath> =
            inputs.iter().map(|i| (i.name.as_str(), i)).collect();
        let mut kept = Vec::with_capacity(inputs.len());
        for placed in std::mem::take(&mut self.inputs) {
            match wanted.get(placed.name.as_str()) {
                Some(i) if i.host_path == placed.host_path => kept.push(placed),
                _ if placed.bound_early => {
                    return Err(Error::InvalidSpec(format!(
                        "input '{}' was not provisional but is no longer an input",
                        placed.host_path.display()
                    )))
                }
                _ => {
                    let at = self.inside_store(&placed.name);
                    let removed = if placed.is_dir {
                        fs::remove_dir(&at)
                    } else {
                        fs::remove_file(&at)
                    };
                    removed.map_err(|e| Error::fs("removing input from the chroot", &at, e))?;
                }
            }
        }
        let have: std::collections::BTreeSet<String> =
            kept.iter().map(|p| p.name.clone()).collect();
        for input in inputs.iter().filter(|i| !have.contains(&i.name)) {
            kept.push(place_input(
                &self.chroot_dir,
                &self.store_dir,
                input,
                false,
            )?);
        }
        self.inputs = kept;
        Ok(())
    }

    /// After an early pivot, the directory inputs not bound yet, each with its
    /// bind as `go` sends it (`source` empty: the mount travels as a descriptor;
    /// `target` inside the sandbox) and its host path.
    pub(crate) fn late_inputs(&self) -> Vec<(Bind, &Path, CString)> {
        self.inputs
            .iter()
            .filter(|i| i.is_dir && !i.bound_early)
            .map(|i| {
                let bind = Bind {
                    source: CString::default(),
                    target: cstring(bytes(&self.store_dir.join(&i.name))),
                    optional: false,
                };
                (bind, i.host_path.as_path(), cstring(bytes(&i.host_path)))
            })
            .collect()
    }

    /// The binds below the store, in Nix's order (byte order of the inside path).
    pub(crate) fn store_binds(&self) -> Vec<Bind> {
        store_binds(
            &self.chroot_dir,
            &self.store_dir,
            &self.other_store_binds,
            self.inputs.iter().filter(|i| i.is_dir),
        )
    }

    fn inside_store(&self, name: &str) -> PathBuf {
        join_inside(&self.chroot_dir, &self.store_dir.join(name))
    }
}

/// The binds below the store of `other_store_binds` (inside path, source,
/// optional) and the directory inputs `dirs`, in Nix's order (byte order of the
/// inside path).
fn store_binds<'a>(
    chroot: &Path,
    store_dir: &Path,
    other_store_binds: &'a [(Vec<u8>, PathBuf, bool)],
    dirs: impl Iterator<Item = &'a PlacedInput>,
) -> Vec<Bind> {
    let mut binds: BTreeMap<Vec<u8>, (&Path, bool)> = other_store_binds
        .iter()
        .map(|(inside, host, optional)| (inside.clone(), (host.as_path(), *optional)))
        .collect();
    // Inputs win over a configured entry for the same path, as in `build`.
    for input in dirs {
        let inside = store_dir.join(&input.name);
        binds.insert(bytes(&inside).to_vec(), (&input.host_path, false));
    }
    binds
        .into_iter()
        .map(|(inside, (host, optional))| Bind {
            source: cstring(bytes(host)),
            target: cstring(bytes(&join_inside(
                chroot,
                Path::new(OsStr::from_bytes(&inside)),
            ))),
            optional,
        })
        .collect()
}

/// Links a non-directory input into the chroot's store, or makes the mount
/// point for a directory (`bind_early`: in the plan's binds).
fn place_input(
    chroot: &Path,
    store_dir: &Path,
    input: &InputPath,
    bind_early: bool,
) -> Result<PlacedInput, Error> {
    let target = join_inside(chroot, &store_dir.join(&input.name));
    // Most inputs a chain links are files: linking first spares them the `stat`
    // (a directory refuses the link with EPERM).
    let linked = fs::hard_link(&input.host_path, &target);
    let is_dir = match linked {
        Ok(()) => false,
        Err(link_error) => {
            let meta = fs::symlink_metadata(&input.host_path)
                .map_err(|e| Error::fs("getting attributes of path", &input.host_path, e))?;
            if meta.is_dir() {
                create_dirs(&target)?;
            } else {
                copy_unlinkable(&input.host_path, &target, &meta, link_error)?;
            }
            meta.is_dir()
        }
    };
    Ok(PlacedInput {
        name: input.name.clone(),
        host_path: input.host_path.clone(),
        is_dir,
        bound_early: bind_early && is_dir && !input.provisional,
    })
}

/// One entry of Nix's `dirsInChroot` map (inside path → host source).
struct Source {
    host: PathBuf,
    optional: bool,
    /// Whether the source is a directory, when already known without a
    /// `stat` (the build dir, inputs, the fixed /dev nodes).
    is_dir: Option<bool>,
}

/// Creates the chroot for `spec` (deleting a stale one first, as Nix does) and
/// resolves the mount plan. The builder is not started. On failure the
/// partly built chroot is removed again.
/// [`crate::Sandboxes::prepare`] does the same with a recycled skeleton when one fits.
pub fn prepare(spec: &SandboxSpec) -> Result<Prepared, Error> {
    prepare_from(spec, None)
}

/// [`prepare`], taking the chroot's skeleton from `pool` when one fits.
pub(crate) fn prepare_from(spec: &SandboxSpec, pool: Option<&Pool>) -> Result<Prepared, Error> {
    validate(spec)?;
    build(spec, pool).inspect_err(|_| {
        // Best effort: the original error is the one worth reporting.
        let _ = cleanup(&spec.chroot_dir);
    })
}

fn build(spec: &SandboxSpec, pool: Option<&Pool>) -> Result<Prepared, Error> {
    let facts = host_facts();
    let is_root = rustix::process::geteuid().is_root();
    let userns = facts.user_namespaces;
    // Only a privileged caller can hand the sandbox the inputs found after it
    // pivoted (see `sys::detached_tree`).
    let pivots_early = spec.pivot_early && is_root && facts.detached_mounts;
    let chroot = spec.chroot_dir.as_path();
    let group = match &spec.group {
        Some(text) => text.clone(),
        // Nix writes this before it knows whether the clone gets a user
        // namespace, with the namespace gid even when it does not.
        None => nix_group(SANDBOX_GID),
    };
    let (uid_inside, gid_inside) = if userns {
        (SANDBOX_UID, SANDBOX_GID)
    } else {
        (spec.host_uid, spec.host_gid)
    };
    let build_dir_text = String::from_utf8_lossy(bytes(&spec.sandbox_build_dir)).into_owned();
    let passwd = match &spec.passwd {
        Some(text) => text.clone(),
        None => nix_passwd(uid_inside, gid_inside, &build_dir_text),
    };
    let store_inside = spec
        .store_dir
        .strip_prefix("/")
        .unwrap_or(&spec.store_dir)
        .to_path_buf();
    // Everything the skeleton's files depend on (see skeleton.rs for why only
    // root's chroots with a user namespace qualify).
    let skeleton = (is_root && userns).then(|| {
        let resolver_files: Vec<bool> = ["/etc/resolv.conf", "/etc/services", "/etc/hosts"]
            .iter()
            .map(|f| spec.network == Network::Host && Path::new(f).exists())
            .collect();
        Skeleton::new(
            (
                spec.host_gid,
                &group,
                &passwd,
                spec.network,
                &spec.store_dir,
                &spec.sandbox_build_dir,
                &spec.sandbox_paths,
                spec.kvm && facts.dev_kvm,
                resolver_files,
            ),
            store_inside.clone(),
            passwd.clone(),
        )
    });
    // A recycled skeleton has every file but the inputs' mount points.
    let fresh = !skeleton
        .as_ref()
        .is_some_and(|s| pool.is_some_and(|pool| pool.take(s, chroot)));

    if fresh {
        // Nix deletes a stale chroot first; trying the mkdir first saves a
        // stat in the normal case.
        let mkdir_chroot = || fs::DirBuilder::new().mode(0o750).create(chroot);
        if let Err(e) = mkdir_chroot() {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(Error::fs("cannot create", chroot, e));
            }
            cleanup(chroot)?;
            mkdir_chroot().map_err(|e| Error::fs("cannot create", chroot, e))?;
        }
        // Only root can give the chroot to the build group; for anyone else
        // the group already is their own, which is what gets mapped.
        if is_root {
            chown(chroot, 0, spec.host_gid)?;
        }
        let tmp = chroot.join("tmp");
        mkdir(&tmp)?;
        chmod(&tmp, 0o1777)?;
        mkdir(&chroot.join("etc"))?;
        write_file(&chroot.join("etc/group"), &group)?;
        if spec.network == Network::Private {
            write_file(
                &chroot.join("etc/hosts"),
                b"127.0.0.1 localhost\n::1 localhost\n",
            )?;
        }
    }

    let chroot_store = join_inside(chroot, &spec.store_dir);
    if fresh {
        create_dirs(&chroot_store)?;
        chmod(&chroot_store, 0o1775)?;
        if is_root {
            chown(&chroot_store, 0, spec.host_gid)?;
        }
    }

    // Nix's `dirsInChroot`: a std::map, so later assignments win and mounts
    // happen in byte order of the inside path.
    let mut dirs: BTreeMap<Vec<u8>, Source> = BTreeMap::new();
    for p in &spec.sandbox_paths {
        dirs.insert(
            bytes(&p.inside).to_vec(),
            Source {
                host: p.host.clone(),
                optional: p.optional,
                is_dir: None,
            },
        );
    }
    dirs.insert(
        bytes(&spec.sandbox_build_dir).to_vec(),
        Source {
            host: spec.build_dir.clone(),
            optional: false,
            // A missing build dir then fails at the mount, naming both paths.
            is_dir: Some(true),
        },
    );
    // Inputs are placed now; without an early pivot they are bound only when
    // the sandbox goes on (see `Prepared::store_binds`). A configured entry at
    // an input's path loses.
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for input in &spec.inputs {
        dirs.remove(bytes(&spec.store_dir.join(&input.name)));
        inputs.push(place_input(chroot, &spec.store_dir, input, pivots_early)?);
    }

    // What Nix's child adds with `emplace` (never replacing a configured
    // entry): (path, optional, known to be a non-directory).
    let mut host_entries: Vec<(&str, bool, Option<bool>)> = Vec::new();
    let own_dev = !dirs.contains_key(b"/dev".as_slice());
    if own_dev && fresh {
        mkdir(&chroot.join("dev"))?;
        mkdir(&chroot.join("dev/shm"))?;
        mkdir(&chroot.join("dev/pts"))?;
        for (target, link) in [
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
        ] {
            let link = chroot.join(link);
            symlink(target, &link).map_err(|e| Error::fs("creating symlink", link, e))?;
        }
    }
    if own_dev {
        host_entries.push(("/dev/full", false, Some(false)));
        if spec.kvm && facts.dev_kvm {
            host_entries.push(("/dev/kvm", true, Some(false)));
        }
        for node in [
            "/dev/null",
            "/dev/random",
            "/dev/tty",
            "/dev/urandom",
            "/dev/zero",
        ] {
            host_entries.push((node, false, Some(false)));
        }
    }
    if spec.network == Network::Host {
        if fresh {
            write_file(
                &chroot.join("etc/nsswitch.conf"),
                b"hosts: files dns\nservices: files\n",
            )?;
        }
        for file in ["/etc/resolv.conf", "/etc/services", "/etc/hosts"] {
            // Optional in the plan: Nix checks existence at that moment.
            if Path::new(file).exists() {
                host_entries.push((file, true, None));
            }
        }
    }
    for (path, optional, is_dir) in host_entries {
        dirs.entry(path.as_bytes().to_vec()).or_insert(Source {
            host: PathBuf::from(path),
            optional,
            is_dir,
        });
    }

    let mut binds = Vec::with_capacity(dirs.len());
    let mut other_store_binds = Vec::new();
    // File mount points are all hard links to one empty file: a mount hides
    // the mount point's own inode, and a link is far cheaper than a new inode
    // on the store's filesystem.
    let mut empty_file: Option<PathBuf> = None;
    for (inside, source) in &dirs {
        // Nix skips this for backwards compatibility: /proc is mounted fresh.
        if source.host.as_os_str() == "/proc" {
            continue;
        }
        let target = join_inside(chroot, Path::new(OsStr::from_bytes(inside)));
        let in_store = inside
            .strip_prefix(bytes(&spec.store_dir))
            .is_some_and(|rest| rest.starts_with(b"/"));
        let is_dir = match source.is_dir {
            Some(known) => known,
            // Followed like Nix's stat(): a symlink to a directory is bound as one.
            None => match fs::metadata(&source.host) {
                Ok(meta) => meta.is_dir(),
                Err(e) if source.optional && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::fs("getting attributes of path", &source.host, e)),
            },
        };
        // A recycled skeleton's store is empty.
        if fresh || in_store {
            if is_dir {
                create_dirs(&target)?;
            } else {
                make_file_mount_point(&target, &mut empty_file)?;
            }
        }
        if in_store {
            other_store_binds.push((inside.clone(), source.host.clone(), source.optional));
            continue;
        }
        binds.push(Bind {
            source: cstring(bytes(&source.host)),
            target: cstring(bytes(&target)),
            optional: source.optional,
        });
    }
    if pivots_early {
        // All in the plan, in Nix's order: a bind must follow the one it lies in
        // (the child then makes them in tree order, see `mounts::setup`).
        binds.extend(store_binds(
            chroot,
            &spec.store_dir,
            &other_store_binds,
            inputs.iter().filter(|i| i.bound_early),
        ));
        other_store_binds.clear();
        binds.sort_by(|a, b| a.target.cmp(&b.target));
    }
    let passwd_path = chroot.join("etc/passwd");
    if fresh {
        create_dirs(&chroot.join("proc"))?;
        write_file(&passwd_path, &passwd)?;
    }
    let passwd_fallback = (spec.passwd.is_none() && userns).then(|| {
        (
            cstring(bytes(&passwd_path)),
            nix_passwd(spec.host_uid, spec.host_gid, &build_dir_text),
        )
    });

    let mut plan_flags = 0;
    for (on, flag) in [
        (spec.network == Network::Private, flags::PRIVATE_NETWORK),
        (userns, flags::USER_NAMESPACE),
        (spec.filter_syscalls, flags::FILTER_SYSCALLS),
        (spec.allow_new_privileges, flags::ALLOW_NEW_PRIVILEGES),
        (spec.personality.linux32, flags::LINUX32),
        (spec.personality.uname26, flags::UNAME26),
        (pivots_early, flags::EARLY_PIVOT),
    ] {
        if on {
            plan_flags |= flag;
        }
    }
    let shm = facts.dev_shm.then(|| {
        (
            cstring(bytes(&chroot.join("dev/shm"))),
            cstring(format!("size={}", spec.dev_shm_size).as_bytes()),
        )
    });
    // Nix mounts a private devpts unless /dev/ptmx already exists in the
    // chroot (host /dev bound, or an explicit entry) or /dev/pts is bound.
    let devpts = (facts.dev_pts_ptmx
        && own_dev
        && !dirs.contains_key(b"/dev/ptmx".as_slice())
        && !dirs.contains_key(b"/dev/pts".as_slice()))
    .then(|| cstring(bytes(&chroot.join("dev/pts"))));

    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    argv.push(cstring(base_name(&spec.builder)));
    argv.extend(spec.args.iter().map(|a| cstring(a)));
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k);
            kv.push(b'=');
            kv.extend_from_slice(v);
            cstring(&kv)
        })
        .collect();

    let plan = Plan {
        flags: plan_flags,
        host_uid: spec.host_uid,
        host_gid: spec.host_gid,
        sandbox_uid: SANDBOX_UID,
        sandbox_gid: SANDBOX_GID,
        chroot: cstring(bytes(chroot)),
        chroot_store: cstring(bytes(&chroot_store)),
        binds,
        proc_dir: cstring(bytes(&chroot.join("proc"))),
        shm,
        devpts,
        ptmx: cstring(bytes(&chroot.join("dev/ptmx"))),
        build_dir_inside: cstring(bytes(&spec.sandbox_build_dir)),
        builder: cstring(&spec.builder),
        argv,
        envp,
        passwd_fallback,
    };
    Ok(Prepared {
        plan: plan.encode(),
        helper: HelperKind::for_plan(spec.filter_syscalls, spec.allow_new_privileges),
        chroot_dir: chroot.to_path_buf(),
        chroot_store,
        skeleton,
        pty_owner: is_root.then_some(spec.host_uid),
        store_dir: spec.store_dir.clone(),
        inputs,
        pivots_early,
        other_store_binds,
        timeout: spec.timeout,
        max_silent_time: spec.max_silent_time,
        max_log_size: spec.max_log_size,
    })
}

fn validate(spec: &SandboxSpec) -> Result<(), Error> {
    let bad = |what: String| Err(Error::InvalidSpec(what));
    for (what, path) in [
        ("chroot directory", &spec.chroot_dir),
        ("store directory", &spec.store_dir),
        ("sandbox build directory", &spec.sandbox_build_dir),
        ("build directory", &spec.build_dir),
    ] {
        if !path.is_absolute() {
            return bad(format!("{what} '{}' is not absolute", path.display()));
        }
    }
    if spec.builder.is_empty() {
        return bad("the builder path is empty".into());
    }
    // (uid_t)-1 means "unchanged" to chown and is rejected by uid_map.
    if spec.host_uid == u32::MAX || spec.host_gid == u32::MAX {
        return bad("host uid/gid -1 cannot be mapped".into());
    }
    for p in &spec.sandbox_paths {
        // Inside paths are appended to the chroot path as text (like Nix), so
        // `..` would create mount points outside the chroot.
        if !p.inside.is_absolute() || p.inside.components().any(|c| c == Component::ParentDir) {
            return bad(format!(
                "sandbox path '{}' must be absolute without '..'",
                p.inside.display()
            ));
        }
    }
    for i in &spec.inputs {
        if i.name.is_empty() || i.name.contains('/') || i.name == "." || i.name == ".." {
            return bad(format!("input name '{}' is not a store base name", i.name));
        }
    }
    Ok(())
}

/// `chroot + inside` as text, the way Nix builds sandbox paths.
fn join_inside(chroot: &Path, inside: &Path) -> PathBuf {
    let mut s = chroot.as_os_str().to_os_string();
    s.push(inside.as_os_str());
    PathBuf::from(s)
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// C strings end at the first NUL; Nix passes `std::string::c_str()` to
/// `execve`, so anything after an embedded NUL is silently dropped there too.
fn cstring(b: &[u8]) -> CString {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).expect("NUL removed above")
}

/// Nix's `baseNameOf`: ignores one trailing slash.
fn base_name(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    if end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    let start = path[..end]
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1);
    &path[start..end]
}

fn mkdir(path: &Path) -> Result<(), Error> {
    fs::create_dir(path).map_err(|e| Error::fs("creating directory", path, e))
}

/// An empty regular file at `target` to mount a non-directory on: a link to
/// the first one made, parents created on demand, an existing file kept (no
/// O_TRUNC: it may be a hard-linked input, which Nix would truncate here).
fn make_file_mount_point(target: &Path, first: &mut Option<PathBuf>) -> Result<(), Error> {
    let attempt = |first: &Option<PathBuf>| match first {
        Some(first) => fs::hard_link(first, target),
        None => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map(drop),
    };
    let mut result = attempt(first);
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        if let Some(parent) = target.parent() {
            create_dirs(parent)?;
        }
        result = attempt(first);
    }
    match result {
        Ok(()) => {
            if first.is_none() {
                *first = Some(target.to_path_buf());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::fs("creating mount point", target, e)),
    }
}

/// Nix's `createDirs`: missing parents too, mode 0777 minus umask, an existing
/// directory (or symlink to one) is fine.
fn create_dirs(path: &Path) -> Result<(), Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
                Ok(())
            } else {
                Err(Error::fs("not a directory", path, e))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match path.parent() {
                Some(parent) if parent != path => create_dirs(parent)?,
                _ => return Err(Error::fs("creating directory", path, e)),
            }
            create_dirs(path)
        }
        Err(e) => Err(Error::fs("creating directory", path, e)),
    }
}

fn chmod(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::fs("changing mode of", path, e))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::fs("changing ownership of", path, e))
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    fs::write(path, contents).map_err(|e| Error::fs("writing file", path, e))
}

/// The rest of Nix's `linkOrCopy` once the hard link (which keeps the input's
/// inode, and is cheap) failed with `link_error`: when the link count is
/// exhausted or linking is refused (EMLINK, EPERM, e.g.
/// `fs.protected_hardlinks` for a non-root caller) the file is copied. EXDEV is
/// also copied here, where Nix would fail, so a store and chroot on different
/// filesystems still work.
fn copy_unlinkable(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    link_error: std::io::Error,
) -> Result<(), Error> {
    match link_error.raw_os_error() {
        Some(libc::EMLINK) | Some(libc::EPERM) | Some(libc::EXDEV) => {}
        _ => return Err(Error::fs("linking input into the chroot", from, link_error)),
    }
    let copied = if meta.file_type().is_symlink() {
        fs::read_link(from).and_then(|target| symlink(target, to))
    } else {
        fs::copy(from, to).map(drop)
    };
    copied.map_err(|e| Error::fs("copying input into the chroot", from, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_like_nix() {
        assert_eq!(base_name(b"/nix/store/x-bash/bin/bash"), b"bash");
        assert_eq!(base_name(b"sh"), b"sh");
        assert_eq!(base_name(b"/a/b/"), b"b");
        assert_eq!(base_name(b"/"), b"");
    }

    #[test]
    fn cstring_truncates_at_nul_like_c() {
        assert_eq!(cstring(b"a\0b").as_bytes(), b"a");
    }

    #[test]
    fn rejects_escaping_sandbox_paths() {
        let mut spec = SandboxSpec::new("/bin/sh", "/tmp/x.chroot", "/tmp/b", 1, 1);
        spec.sandbox_paths
            .push(crate::SandboxPath::parse("/../etc=/etc"));
        assert!(matches!(prepare(&spec), Err(Error::InvalidSpec(_))));
    }
}
