//! Shared fixture for the integration tests: a scratch "real store" holding a
//! static busybox, a chroot and a build dir, and a runner.

#![allow(dead_code)]

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_sandbox::{InputPath, Outcome, SandboxSpec};

/// Set by the unprivileged test to a copy of the helper it can reach.
pub const HELPER_OVERRIDE: &str = "KILN_SANDBOX_TEST_HELPER";

/// Set in the helper's environment to make it start a thread before
/// `helper_main` (see `src/bin/kiln-sandbox-helper.rs`).
pub const THREAD_FIRST: &str = "KILN_SANDBOX_TEST_THREAD_FIRST";

/// The sandboxes of this test process, all served by [`helper`].
pub fn sandboxes() -> &'static kiln_sandbox::Sandboxes {
    static SANDBOXES: std::sync::OnceLock<kiln_sandbox::Sandboxes> = std::sync::OnceLock::new();
    SANDBOXES.get_or_init(|| kiln_sandbox::Sandboxes::new(helper()))
}

/// The sandbox helper executable.
pub fn helper() -> PathBuf {
    std::env::var_os(HELPER_OVERRIDE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln-sandbox-helper")))
}
/// Host ids for tests that do not compare against Nix: not Nix build users,
/// so a concurrently running nix-build (which kills its build user's
/// processes) cannot hit our builders.
pub const TEST_UID: u32 = 30001;
pub const TEST_GID: u32 = 30000;
pub const BUSYBOX_NAME: &str = "8y1ndkcm6l6z0n1mfvpgmq3hqnm8k0sp-busybox";
pub const OUT_NAME: &str = "3vqvyqikl3ac4lhfg8yxz8c6kgb5q8ll-test";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    n: AtomicUsize,
}

impl Drop for Fixture {
    /// The store copy of busybox is read-only, which `TempDir` cannot delete
    /// as an ordinary user; kiln's own cleanup can.
    fn drop(&mut self) {
        let _ = kiln_sandbox::cleanup(self.dir.path());
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("kiln-sandbox-test")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let bin = store.join(BUSYBOX_NAME).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("sh")).unwrap();
        // Store-like permissions: nothing writable.
        std::fs::set_permissions(bin.join("sh"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(
            store.join(BUSYBOX_NAME),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        Fixture {
            dir,
            store,
            n: AtomicUsize::new(0),
        }
    }

    pub fn sh(&self) -> String {
        format!("/nix/store/{BUSYBOX_NAME}/bin/sh")
    }

    /// A spec running `script` with busybox sh, Nix's environment for a
    /// derivation named `test`, uid/gid mapped to the test ids.
    pub fn spec(&self, script: &str) -> SandboxSpec {
        let (uid, gid) = ids();
        self.spec_as(script, uid, gid)
    }

    /// Like [`Fixture::spec`] with explicit host ids (root only).
    pub fn spec_as(&self, script: &str, uid: u32, gid: u32) -> SandboxSpec {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let chroot = self.store.join(format!(
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{n}-test.drv.chroot"
        ));
        let build = self.dir.path().join(format!("nix-build-test.drv-{n}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&build)
            .unwrap();
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&build, Some(uid), Some(gid)).unwrap();
        }
        let mut spec = SandboxSpec::new(self.sh(), chroot, build, uid, gid);
        spec.args = vec![b"-c".to_vec(), script.as_bytes().to_vec()];
        spec.env = nix_env(&[
            ("builder", &self.sh()),
            ("name", "test"),
            ("out", &format!("/nix/store/{OUT_NAME}")),
            ("system", "x86_64-linux"),
        ]);
        spec.inputs
            .push(InputPath::new(BUSYBOX_NAME, self.store.join(BUSYBOX_NAME)));
        spec
    }
}

/// The host ids to map: the test ids as root, our own otherwise.
pub fn ids() -> (u32, u32) {
    if rustix::process::geteuid().is_root() {
        (TEST_UID, TEST_GID)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    }
}

/// Nix 2.8's builder environment for a simple non-structured derivation,
/// sorted by name like Nix's std::map.
pub fn nix_env(attrs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut env = std::collections::BTreeMap::new();
    for (k, v) in [
        ("PATH", "/path-not-set"),
        ("HOME", "/homeless-shelter"),
        ("NIX_STORE", "/nix/store"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    // Nix's default `cores` setting: the number of CPUs.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    env.insert("NIX_BUILD_CORES".into(), cores.to_string());
    for (k, v) in attrs {
        env.insert(k.to_string(), v.to_string());
    }
    for k in ["NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"] {
        env.insert(k.to_string(), "/build".to_string());
    }
    env.insert("NIX_LOG_FD".into(), "2".into());
    env.insert("TERM".into(), "xterm-256color".into());
    env.into_iter()
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect()
}

pub struct Ran {
    pub outcome: Outcome,
    pub log: String,
    pub out: Option<Vec<u8>>,
}

/// prepare + run + read `$out` + cleanup.
pub fn run(spec: &SandboxSpec) -> Result<Ran, kiln_sandbox::Error> {
    let prepared = kiln_sandbox::prepare(spec)?;
    let mut log = Vec::new();
    let result = sandboxes().run(&prepared, &mut log);
    let out = std::fs::read(prepared.chroot_store().join(OUT_NAME)).ok();
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    Ok(Ran {
        outcome: result?,
        log: String::from_utf8_lossy(&log).into_owned(),
        out,
    })
}

/// The sandbox dump (spec local-store.md §4): everything a builder can see
/// of its sandbox, written to `$out`. stdout stays on the pty (fd 9) so the
/// tty checks see what the builder sees.
pub const DUMP_SCRIPT: &str = r#"exec 9>&1
{
echo "== environ"; tr '\0' '\n' < /proc/1/environ
echo "== cmdline"; tr '\0' '|' < /proc/1/cmdline; echo
echo "== pid"; echo $$; cat /proc/1/comm
echo "== id"; id
echo "== hostname"; hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname
echo "== ls /"; ls -la /
echo "== ls /dev"; ls -la /dev /dev/pts /dev/shm
echo "== ls /etc"; ls -la /etc
echo "== etc"; cat /etc/passwd /etc/group; cat /etc/hosts; cat /etc/nsswitch.conf 2>&1
echo "== store"; ls -la /nix/store
echo "== build"; pwd; ls -la /build /tmp
echo "== personality"; cat /proc/self/personality
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== net"; ip addr; cut -d: -f1 < /proc/net/dev
echo "== status"; grep -E '^(Uid|Gid|Groups|NoNewPrivs|Seccomp|Seccomp_filters|CapInh|CapPrm|CapEff|CapBnd|CapAmb|SigBlk|SigIgn)' /proc/self/status
echo "== idmap"; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups
echo "== tty"; [ -t 9 ] && echo out-tty || echo out-notty; [ -t 0 ] && echo in-tty || echo in-notty; readlink /proc/1/fd/0; ls /proc/1/fd
echo "== stty"; stty -a <&9
echo "== limits"; cat /proc/self/limits
echo "== umask"; umask
echo "== ps"; ps
echo "== cgroup"; cat /proc/self/cgroup
echo "== chmod"; touch /tmp/x; chmod u+s /tmp/x; echo "rc=$?"; chmod g+s /tmp/x; echo "rc=$?"; chmod 1755 /tmp/x; echo "rc=$?"; ls -l /tmp/x
echo "== write"; for p in / /etc /nix /dev /dev/shm /proc/sys /tmp /build /nix/store; do if touch $p/probe 2>/dev/null; then echo "$p writable"; rm $p/probe; else echo "$p not writable"; fi; done
} > $out 2>&1
"#;

/// Blanks what legitimately differs between two runs of [`DUMP_SCRIPT`]:
/// `ls` dates, the /proc link count (the host's process count), mount ids
/// (renumbered by first appearance), anonymous device numbers (other than
/// devtmpfs's) and the shared peer group number: all allocated host-wide.
pub fn normalize_dump(text: &str) -> String {
    let mut ids: Vec<String> = Vec::new();
    let mut section = "";
    let mut out = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            section = match name {
                "mountinfo" => "mountinfo",
                _ => "",
            };
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut line = blank_dates(line);
        if line.ends_with(" proc") && line.starts_with("dr-xr-xr-x") {
            let fields: Vec<&str> = line.split_whitespace().collect();
            line = format!("dr-xr-xr-x N {}", fields[2..].join(" "));
        }
        if section == "mountinfo" {
            let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
            for f in fields.iter_mut().take(2) {
                let at = ids.iter().position(|i| i == f).unwrap_or_else(|| {
                    ids.push(f.clone());
                    ids.len() - 1
                });
                *f = format!("#{at}");
            }
            // Anonymous device numbers (proc, tmpfs, devpts: major 0) come
            // from a global allocator, so concurrent sandboxes shift them.
            if fields.len() > 2 && fields[2].starts_with("0:") && fields[2] != "0:6" {
                fields[2] = "0:N".into();
            }
            for f in fields.iter_mut() {
                if f.starts_with("shared:") {
                    *f = "shared:N".into();
                }
            }
            line = fields.join(" ");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn blank_dates(line: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = line.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        // "Mon dd HH:MM" or "Mon dd  YYYY", as busybox ls prints them.
        if i + 12 <= b.len()
            && MONTHS.iter().any(|m| b[i..].starts_with(m.as_bytes()))
            && b[i + 3] == b' '
        {
            let rest = &b[i + 3..i + 12];
            let day_ok = (rest[1] == b' ' || rest[1].is_ascii_digit())
                && rest[2].is_ascii_digit()
                && rest[3] == b' ';
            let time_ok = rest[4..].iter().enumerate().all(|(k, &c)| {
                if k == 2 {
                    c == b':'
                } else {
                    c.is_ascii_digit()
                }
            }) || (rest[4] == b' ' && rest[5..].iter().all(u8::is_ascii_digit));
            if day_ok && time_ok {
                out.extend_from_slice(b"DATE");
                i += 12;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of one `== name` section of a dump.
pub fn section<'a>(dump: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("== {name}");
    dump.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

/// Fails the test unless it runs as root: without root these tests would check
/// nothing (a pass would say nothing about the sandbox).
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root: run scripts/test.sh as root"
    );
}
