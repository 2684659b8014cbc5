//! What the caller asks for: one builder, its environment, its inputs and the
//! sandbox knobs Nix 2.8 exposes as settings. Plain data, serde-serialisable.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The uid the builder has inside the user namespace (Nix's `sandboxUid()`).
pub const SANDBOX_UID: u32 = 1000;
/// The gid the builder has inside the user namespace (Nix's `sandboxGid()`).
pub const SANDBOX_GID: u32 = 100;

/// Everything needed to run one builder in the sandbox.
///
/// The caller computes the environment and the input closure; the sandbox adds
/// nothing to either (it does not even sort the environment: Nix passes it in
/// `std::map` order, i.e. sorted by name, so the caller should too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Path of the builder as seen inside the sandbox. `argv[0]` is its base name.
    pub builder: Vec<u8>,
    /// Arguments after `argv[0]`.
    pub args: Vec<Vec<u8>>,
    /// The complete environment, in the order it is passed to `execve`.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Host build directory; bind-mounted at [`Self::sandbox_build_dir`].
    pub build_dir: PathBuf,
    /// Nix's `sandbox-build-dir` (default `/build`): where the builder starts.
    pub sandbox_build_dir: PathBuf,
    /// Host path of the chroot to create. Nix uses `<realStoreDir>/<drv base
    /// name>.chroot` so outputs can be renamed into the store afterwards.
    pub chroot_dir: PathBuf,
    /// Logical store directory (`/nix/store`), created inside the chroot.
    pub store_dir: PathBuf,
    /// The input closure. Directories are bind-mounted, everything else is
    /// hard-linked (copied when linking is impossible).
    pub inputs: Vec<InputPath>,
    /// Extra bind mounts (`sandbox-paths`, plus the closure of store paths
    /// among them, which the caller computes). Later entries win.
    pub sandbox_paths: Vec<SandboxPath>,
    /// Private network (ordinary derivations) or the host's (fixed-output).
    pub network: Network,
    /// Host uid mapped to [`SANDBOX_UID`] (a build user's, or the caller's own).
    pub host_uid: u32,
    /// Host gid mapped to [`SANDBOX_GID`].
    pub host_gid: u32,
    /// Contents of `/etc/passwd`; `None` = Nix's text ([`nix_passwd`]) with the
    /// ids actually used (they differ when user namespaces are unavailable).
    pub passwd: Option<Vec<u8>>,
    /// Contents of `/etc/group`; `None` = Nix's text ([`nix_group`]).
    pub group: Option<Vec<u8>>,
    /// Nix's `timeout`: kill the sandbox after this long.
    pub timeout: Option<Duration>,
    /// Nix's `max-silent-time`: kill the sandbox after this long without output.
    pub max_silent_time: Option<Duration>,
    /// Nix's `max-build-log-size`: kill the sandbox once it wrote more bytes.
    pub max_log_size: Option<u64>,
    /// The store's `system-features` contain `kvm`: bind `/dev/kvm` if the
    /// host has it. (Nix's default features contain `kvm` exactly when
    /// `/dev/kvm` exists, so `true` is the default here.)
    pub kvm: bool,
    /// Nix's `sandbox-dev-shm-size` (the tmpfs `size=` option of `/dev/shm`).
    pub dev_shm_size: String,
    /// Nix's `filter-syscalls`: install the seccomp filter.
    pub filter_syscalls: bool,
    /// Nix's `allow-new-privileges`: do not set no-new-privileges.
    pub allow_new_privileges: bool,
    /// Personality tweaks derived from the derivation's platform.
    pub personality: Personality,
    /// Let the sandbox pivot into the chroot before [`crate::Launched::go`], when
    /// the host allows it (see `Prepared::pivots_early`): inputs found only then
    /// are attached as detached mounts. Off, everything from the store's binds on
    /// waits for `go`, which is slower but needs no privileges in the caller.
    pub pivot_early: bool,
}

/// One store path of the input closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPath {
    /// Base name under the store directory (`<hash>-<name>`).
    pub name: String,
    /// Where the path really is on the host (`<realStoreDir>/<name>`).
    pub host_path: PathBuf,
    /// Only a guess of a build prepared ahead: it may be dropped by
    /// [`crate::Prepared::replace_inputs`], so it is never bound before `go`.
    #[serde(default)]
    pub provisional: bool,
}

impl InputPath {
    /// An input that stays in the closure.
    pub fn new(name: impl Into<String>, host_path: impl Into<PathBuf>) -> InputPath {
        InputPath {
            name: name.into(),
            host_path: host_path.into(),
            provisional: false,
        }
    }
}

/// One `sandbox-paths` entry: `inside=host`, or `path` for both, `?` = optional.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SandboxPath {
    /// Absolute path inside the sandbox.
    pub inside: PathBuf,
    /// Host path that is bind-mounted there (followed if it is a symlink).
    pub host: PathBuf,
    /// A missing `host` is silently skipped instead of failing the build.
    pub optional: bool,
}

/// Which network namespace the builder gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Network {
    /// A private network namespace with only `lo` (ordinary derivations).
    Private,
    /// The host's network plus its resolver files (fixed-output derivations).
    Host,
}

/// Personality bits beyond the always-set `ADDR_NO_RANDOMIZE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Personality {
    /// `PER_LINUX32`: i686 builds on x86_64, armv6l/armv7l builds.
    pub linux32: bool,
    /// `UNAME26`: Nix's `impersonate-linux-26` for i686/x86_64 builds.
    pub uname26: bool,
}

impl SandboxSpec {
    /// A spec with Nix 2.8's defaults: `/nix/store`, `/build`, private network,
    /// seccomp on, `/dev/shm` at 50%, `kvm` feature, no timeouts, no inputs,
    /// empty environment.
    pub fn new(
        builder: impl Into<Vec<u8>>,
        chroot_dir: impl Into<PathBuf>,
        build_dir: impl Into<PathBuf>,
        host_uid: u32,
        host_gid: u32,
    ) -> SandboxSpec {
        SandboxSpec {
            builder: builder.into(),
            args: Vec::new(),
            env: Vec::new(),
            build_dir: build_dir.into(),
            sandbox_build_dir: PathBuf::from("/build"),
            chroot_dir: chroot_dir.into(),
            store_dir: PathBuf::from("/nix/store"),
            inputs: Vec::new(),
            sandbox_paths: Vec::new(),
            network: Network::Private,
            host_uid,
            host_gid,
            passwd: None,
            group: None,
            timeout: None,
            max_silent_time: None,
            max_log_size: None,
            kvm: true,
            dev_shm_size: "50%".to_string(),
            filter_syscalls: true,
            allow_new_privileges: false,
            personality: Personality::default(),
            pivot_early: true,
        }
    }

    /// Where output `name` (a store base name) appears on the host while the
    /// chroot exists: `<chroot>/<store dir>/<name>`.
    pub fn output_host_path(&self, name: &str) -> PathBuf {
        let mut p = self.chroot_dir.clone().into_os_string();
        p.push(&self.store_dir);
        p.push("/");
        p.push(name);
        PathBuf::from(p)
    }
}

impl SandboxPath {
    /// Parses one `sandbox-paths` word the way Nix 2.8 does: a trailing `?`
    /// marks it optional, then the first `=` splits `inside=host`.
    pub fn parse(entry: &str) -> SandboxPath {
        let (entry, optional) = match entry.strip_suffix('?') {
            Some(rest) => (rest, true),
            None => (entry, false),
        };
        let (inside, host) = entry.split_once('=').unwrap_or((entry, entry));
        SandboxPath {
            inside: PathBuf::from(inside),
            host: PathBuf::from(host),
            optional,
        }
    }
}

/// Nix 2.8's `/etc/passwd` for the sandbox (`build_dir` is `sandbox-build-dir`).
pub fn nix_passwd(uid: u32, gid: u32, build_dir: &str) -> Vec<u8> {
    format!(
        "root:x:0:0:Nix build user:{build_dir}:/noshell\n\
         nixbld:x:{uid}:{gid}:Nix build user:{build_dir}:/noshell\n\
         nobody:x:65534:65534:Nobody:/:/noshell\n"
    )
    .into_bytes()
}

/// Nix 2.8's `/etc/group` for the sandbox.
pub fn nix_group(gid: u32) -> Vec<u8> {
    format!("root:x:0:\nnixbld:!:{gid}:\nnogroup:x:65534:\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_path_forms() {
        assert_eq!(
            SandboxPath::parse("/bin/sh=/nix/store/x-bash/bin/bash?"),
            SandboxPath {
                inside: "/bin/sh".into(),
                host: "/nix/store/x-bash/bin/bash".into(),
                optional: true
            }
        );
        let p = SandboxPath::parse("/usr");
        assert_eq!(
            (p.inside.as_os_str(), p.host.as_os_str(), p.optional),
            ("/usr".as_ref(), "/usr".as_ref(), false)
        );
    }

    #[test]
    fn passwd_and_group_text() {
        assert_eq!(
            nix_passwd(1000, 100, "/build"),
            b"root:x:0:0:Nix build user:/build:/noshell\n\
nixbld:x:1000:100:Nix build user:/build:/noshell\n\
nobody:x:65534:65534:Nobody:/:/noshell\n"
        );
        assert_eq!(
            nix_group(100),
            b"root:x:0:\nnixbld:!:100:\nnogroup:x:65534:\n"
        );
    }

    #[test]
    fn output_path_is_under_chroot_store() {
        let s = SandboxSpec::new("/bin/sh", "/s/nix/store/x.drv.chroot", "/tmp/b", 1, 2);
        assert_eq!(
            s.output_host_path("abc-out"),
            PathBuf::from("/s/nix/store/x.drv.chroot/nix/store/abc-out")
        );
    }
}
