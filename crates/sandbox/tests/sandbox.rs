//! What a builder sees and can do inside kiln's sandbox, checked against Nix
//! 2.8's documented behaviour (spec local-store.md §4.2–4.7), plus isolation,
//! limits and error reporting.

#![allow(unsafe_code)] // one thread-local unshare, see the leftover-mounts test

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{section, Fixture, BUSYBOX_NAME, OUT_NAME};
use kiln_sandbox::{Error, InputPath, Network, Outcome, SandboxPath};

fn dump(f: &Fixture) -> String {
    let r = common::run(&f.spec(common::DUMP_SCRIPT)).unwrap();
    assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
    String::from_utf8(r.out.expect("the dump builder writes $out")).unwrap()
}

#[test]
fn builder_sees_nix_environment_and_identity() {
    let f = Fixture::new();
    let spec = f.spec(common::DUMP_SCRIPT);
    let d = dump(&f);
    // Exactly the given environment, in the given order: nothing added.
    let want: Vec<String> = spec
        .env
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    assert_eq!(section(&d, "environ"), want);
    // argv[0] is the builder's base name; the builder is PID 1.
    assert!(section(&d, "cmdline")[0].starts_with("sh|-c|exec 9>&1"));
    assert_eq!(section(&d, "pid"), ["1", "sh"]);
    assert_eq!(section(&d, "id"), ["uid=1000(nixbld) gid=100(nixbld)"]);
    assert_eq!(
        section(&d, "hostname"),
        ["localhost", "localhost", "(none)"]
    );
    assert_eq!(section(&d, "personality"), ["00040000"]);
    let (uid, gid) = common::ids();
    let idmap: Vec<String> = section(&d, "idmap")
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        idmap,
        [
            format!("1000 {uid} 1"),
            format!("100 {gid} 1"),
            "deny".to_string()
        ]
    );
    let status = section(&d, "status");
    for line in [
        "Uid:\t1000\t1000\t1000\t1000",
        "Gid:\t100\t100\t100\t100",
        "Groups:\t ",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "Seccomp_filters:\t1",
        "SigBlk:\t0000000000000000",
        "SigIgn:\t0000000000000000",
    ] {
        assert!(status.contains(&line), "missing {line:?} in {status:?}");
    }
    let limits = section(&d, "limits");
    assert!(
        limits.iter().any(
            |l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")
        ),
        "{limits:?}"
    );
}

/// Owner columns of `ls -l` for files of the chroot: host root is unmapped
/// (`nobody`) when root prepared it; an unprivileged caller owns the chroot
/// itself, and is the sandbox user.
fn chroot_owner(group_of_root_dir: bool) -> &'static str {
    match (rustix::process::geteuid().is_root(), group_of_root_dir) {
        (true, true) => "nobody   nixbld ",
        (true, false) => "nobody   nogroup",
        (false, _) => "nixbld   nixbld ",
    }
}

#[test]
fn builder_sees_nix_file_system() {
    let f = Fixture::new();
    let d = common::normalize_dump(&dump(&f));
    let (root, other) = (chroot_owner(true), chroot_owner(false));
    assert_eq!(
        section(&d, "ls /"),
        [
            "total 28".to_string(),
            format!("drwxr-x---    8 {root}       4096 DATE ."),
            format!("drwxr-x---    8 {root}       4096 DATE .."),
            "drwx------    2 nixbld   nixbld        4096 DATE build".to_string(),
            format!("drwxr-xr-x    4 {other}       4096 DATE dev"),
            format!("drwxr-xr-x    2 {other}       4096 DATE etc"),
            format!("drwxr-xr-x    3 {other}       4096 DATE nix"),
            "dr-xr-xr-x N nobody nogroup 0 DATE proc".to_string(),
            format!("drwxrwxrwt    2 {other}       4096 DATE tmp"),
        ]
    );
    let dev: Vec<&str> = section(&d, "ls /dev")
        .into_iter()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.rsplit_once(" DATE ").map(|(_, name)| name))
        .collect();
    let mut want = vec![
        ".",
        "..",
        "fd -> /proc/self/fd",
        "full",
        "kvm",
        "null",
        "ptmx -> /dev/pts/ptmx",
        "pts",
        "random",
        "shm",
        "stderr -> /proc/self/fd/2",
        "stdin -> /proc/self/fd/0",
        "stdout -> /proc/self/fd/1",
        "tty",
        "urandom",
        "zero",
    ];
    if !Path::new("/dev/kvm").exists() {
        want.retain(|n| *n != "kvm");
    }
    assert_eq!(dev, want);
    assert_eq!(
        section(&d, "etc"),
        [
            "root:x:0:0:Nix build user:/build:/noshell",
            "nixbld:x:1000:100:Nix build user:/build:/noshell",
            "nobody:x:65534:65534:Nobody:/:/noshell",
            "root:x:0:",
            "nixbld:!:100:",
            "nogroup:x:65534:",
            "127.0.0.1 localhost",
            "::1 localhost",
            "cat: can't open '/etc/nsswitch.conf': No such file or directory",
        ]
    );
    let store = section(&d, "store");
    assert!(
        store[1].starts_with(&format!("drwxrwxr-t    3 {root}")),
        "{store:?}"
    );
    let names: Vec<&str> = store[3..]
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(names, [OUT_NAME, BUSYBOX_NAME]);
    // Without build users the chroot belongs to the caller, who is the
    // sandbox user: as with Nix, the builder may then write there.
    let root_dirs = if rustix::process::geteuid().is_root() {
        "not writable"
    } else {
        "writable"
    };
    assert_eq!(
        section(&d, "write"),
        [
            format!("/ {root_dirs}").as_str(),
            &format!("/etc {root_dirs}"),
            &format!("/nix {root_dirs}"),
            &format!("/dev {root_dirs}"),
            "/dev/shm writable",
            "/proc/sys not writable",
            "/tmp writable",
            "/build writable",
            "/nix/store writable",
        ]
    );
    // Mount points in tree order, /nix/store a shared peer group.
    let mounts: Vec<String> = section(&d, "mountinfo")
        .iter()
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let shared = if l.contains(" shared:") {
                " shared"
            } else {
                ""
            };
            format!("{}{shared}", fields[4])
        })
        .collect();
    let mut want = vec![
        "/".to_string(),
        "/nix/store shared".to_string(),
        format!("/nix/store/{BUSYBOX_NAME} shared"),
        "/build".to_string(),
    ];
    for node in ["full", "kvm", "null", "random", "tty", "urandom", "zero"] {
        if node != "kvm" || Path::new("/dev/kvm").exists() {
            want.push(format!("/dev/{node}"));
        }
    }
    want.extend(["/proc", "/dev/shm", "/dev/pts"].map(String::from));
    assert_eq!(mounts, want);
}

#[test]
fn private_network_has_only_loopback() {
    let f = Fixture::new();
    let d = dump(&f);
    let net = section(&d, "net");
    assert_eq!(&net[net.len() - 1..], ["    lo"]);
    assert!(
        net[0].starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{net:?}"
    );
    assert!(
        net.contains(&"    inet 127.0.0.1/8 scope host lo"),
        "{net:?}"
    );
    assert!(net.contains(&"    inet6 ::1/128 scope host "), "{net:?}");
}

#[test]
fn output_is_a_raw_terminal() {
    let f = Fixture::new();
    let spec = f.spec(
        "[ -t 1 ] && echo out-tty; [ -t 2 ] && echo err-tty >&2; [ -t 0 ] || echo in-null; \
         printf 'a\\nb\\r\\nc\\n'; ls /dev | head -c 0; ls /nix; echo x > $out",
    );
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}", r.outcome);
    // No \n -> \r\n translation, stdout and stderr both on the pty.
    assert_eq!(r.log, "out-tty\nerr-tty\nin-null\na\nb\r\nc\nstore\n");
}

#[test]
fn seccomp_blocks_setuid_bits_and_xattrs() {
    let f = Fixture::new();
    let mut spec = f.spec(
        "touch /tmp/f; chmod u+s /tmp/f; echo \"u+s $?\"; chmod g+s /tmp/f; echo \"g+s $?\"; \
         chmod 1755 /tmp/f; echo \"1755 $?\"; /probe probe-xattr /tmp/f; echo x > $out",
    );
    // The probe is the (dynamically linked) helper binary itself.
    for entry in ["/lib", "/lib64"] {
        spec.sandbox_paths.push(SandboxPath::parse(entry));
    }
    spec.sandbox_paths.push(SandboxPath::parse(&format!(
        "/probe={}",
        common::helper().display()
    )));
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
    assert_eq!(
        r.log,
        "chmod: /tmp/f: Operation not permitted\nu+s 1\n\
         chmod: /tmp/f: Operation not permitted\ng+s 1\n\
         1755 0\nsetxattr errno 95\n"
    );

    // The same builder with `filter-syscalls = false`: both succeed, so the
    // failures above are the filter's doing.
    let mut unfiltered = spec.clone();
    unfiltered.chroot_dir.set_extension("unfiltered");
    unfiltered.filter_syscalls = false;
    let r = common::run(&unfiltered).unwrap();
    assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
    assert_eq!(r.log, "u+s 0\ng+s 0\n1755 0\nsetxattr succeeded\n");
}

/// Default sandboxes inherit the filter from the helper that filters itself; the
/// others come from the plain helper and install what their plan asks for. Either
/// way the builder has exactly one filter, and no-new-privileges unless asked not to
/// (Nix sets it together with the filter, so not at all without one).
#[test]
fn each_sandbox_has_exactly_the_filter_and_privileges_it_asks_for() {
    let f = Fixture::new();
    let status_of = |spec: &kiln_sandbox::SandboxSpec| {
        let r = common::run(spec).unwrap();
        assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
        r.log
    };
    let spec =
        f.spec("grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; echo x > $out");
    let mut privileged = spec.clone();
    privileged.chroot_dir.set_extension("privileged");
    privileged.allow_new_privileges = true;
    let mut unfiltered = spec.clone();
    unfiltered.chroot_dir.set_extension("unfiltered");
    unfiltered.filter_syscalls = false;
    // Twice each, interleaved: a helper serves several builds, and spares too.
    for _ in 0..2 {
        assert_eq!(
            status_of(&spec),
            "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        );
        assert_eq!(
            status_of(&privileged),
            "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n"
        );
        assert_eq!(
            status_of(&unfiltered),
            "NoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n"
        );
    }
}

#[test]
fn private_network_cannot_reach_host_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Fixture::new();
    let spec = f.spec(&format!(
        "echo leak | nc 127.0.0.1 {port}; echo \"nc $?\"; echo x > $out"
    ));
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}", r.outcome);
    assert!(r.log.ends_with("nc 1\n"), "{}", r.log);
    assert_eq!(
        listener.accept().map(drop).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the sandbox reached the host's loopback"
    );
}

#[test]
fn fixed_output_mode_shares_the_host_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        got
    });
    let f = Fixture::new();
    let mut spec = f.spec(&format!(
        "echo hello-from-sandbox | nc 127.0.0.1 {port}; echo \"nc $?\"; cat /etc/nsswitch.conf; \
         cmp /etc/hosts /proc/1/root/etc/hosts && echo hosts-bound; echo x > $out"
    ));
    spec.network = Network::Host;
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
    assert_eq!(server.join().unwrap(), "hello-from-sandbox\n");
    assert!(
        r.log
            .starts_with("nc 0\nhosts: files dns\nservices: files\n"),
        "{}",
        r.log
    );
    // The host's /etc/hosts is bound, not Nix's generated one.
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_ne!(host_hosts, "127.0.0.1 localhost\n::1 localhost\n");
}

#[test]
fn only_given_inputs_are_visible_and_files_are_hard_linked() {
    let f = Fixture::new();
    let secret = f.store.join("00000000000000000000000000000000-secret");
    std::fs::create_dir(&secret).unwrap();
    let file = f.store.join("11111111111111111111111111111111-file");
    std::fs::write(&file, "input file\n").unwrap();
    let mut spec = f.spec(
        "ls /nix/store; [ -e /nix/store/00000000000000000000000000000000-secret ] && echo visible; \
         cat /nix/store/11111111111111111111111111111111-file; echo x > $out",
    );
    spec.inputs.push(InputPath::new(
        "11111111111111111111111111111111-file",
        file.clone(),
    ));
    let prepared = kiln_sandbox::prepare(&spec).unwrap();
    let linked = prepared
        .chroot_store()
        .join("11111111111111111111111111111111-file");
    assert_eq!(
        std::fs::metadata(&linked).unwrap().ino(),
        std::fs::metadata(&file).unwrap().ino()
    );
    let mut log = Vec::new();
    let outcome = common::sandboxes().run(&prepared, &mut log).unwrap();
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    assert!(outcome.success());
    assert_eq!(
        String::from_utf8(log).unwrap(),
        format!("11111111111111111111111111111111-file\n{BUSYBOX_NAME}\ninput file\n")
    );
    // Cleanup removed the link, not the input.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "input file\n");
}

#[test]
fn builder_cannot_write_outside_build_tmp_and_store() {
    // Without root the chroot belongs to the sandbox user (see builder_sees_nix_file_system).
    common::require_root();
    let f = Fixture::new();
    let spec = f.spec(&format!(
        "for p in /x /etc/x /nix/x /nix/store/{BUSYBOX_NAME}/x /nix/store/{BUSYBOX_NAME}/bin/sh /dev/x /proc/x; do \
           if echo > $p; then echo \"$p written\"; fi 2>/dev/null; done; \
         echo ok > /build/a && echo ok > /tmp/a && echo ok > $out && echo allowed"
    ));
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}", r.outcome);
    assert_eq!(r.log, "allowed\n");
    assert_eq!(r.out.as_deref(), Some(b"ok\n".as_slice()));
}

/// Host processes running `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<String> {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn timeout_kills_the_builder_and_its_children() {
    let f = Fixture::new();
    let marker = format!("{}", 100_000 + std::process::id());
    let mut spec = f.spec(&format!(
        "sleep {marker} & sleep {marker} & echo started; sleep {marker}"
    ));
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let r = common::run(&spec).unwrap();
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert_eq!(r.outcome.describe(&spec), "timed out after 0 seconds");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.log, "started\n");
    assert_eq!(
        sleepers(&marker),
        Vec::<String>::new(),
        "sandbox processes survived"
    );
}

#[test]
fn max_silent_time_kills_a_quiet_builder() {
    let f = Fixture::new();
    let mut spec = f.spec("echo one; sleep 0.2; echo two; sleep 1000");
    spec.max_silent_time = Some(Duration::from_millis(600));
    let r = common::run(&spec).unwrap();
    assert_eq!(r.outcome, Outcome::Silent);
    assert_eq!(
        r.outcome.describe(&spec),
        "timed out after 0 seconds of silence"
    );
    assert_eq!(r.log, "one\ntwo\n");
}

#[test]
fn log_limit_kills_a_chatty_builder() {
    let f = Fixture::new();
    let mut spec = f.spec("while :; do echo 0123456789; done");
    spec.max_log_size = Some(10_000);
    let r = common::run(&spec).unwrap();
    assert_eq!(r.outcome, Outcome::LogLimitExceeded);
    assert_eq!(
        r.outcome.describe(&spec),
        "killed after writing more than 10000 bytes of log output"
    );
    assert!(r.log.len() <= 10_000, "{} bytes logged", r.log.len());
}

#[test]
fn failing_builder_returns_its_exit_code() {
    let f = Fixture::new();
    let spec = f.spec("echo failing >&2; exit 3");
    let r = common::run(&spec).unwrap();
    assert_eq!(r.outcome, Outcome::Exited(3));
    assert_eq!(r.outcome.describe(&spec), "failed with exit code 3");
    assert_eq!(r.log, "failing\n");
}

/// Regression guard for Nix's end-of-output rule: a builder that closes its
/// stdout and stderr is killed, as Nix does, even though it is still running.
#[test]
fn closing_the_output_ends_the_build() {
    let f = Fixture::new();
    let started = Instant::now();
    let spec = f.spec("echo bye; exec >&- 2>&-; sleep 5; echo x > $out");
    let r = common::run(&spec).unwrap();
    assert_eq!(r.outcome, Outcome::Signaled(libc::SIGKILL));
    assert_eq!(r.outcome.describe(&spec), "failed due to signal 9 (Killed)");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(r.log, "bye\n");
    assert_eq!(r.out, None);
}

#[test]
fn missing_builder_is_a_clear_setup_error() {
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.builder = b"/nix/store/00000000000000000000000000000000-nothing/bin/sh".to_vec();
    match common::run(&spec) {
        Err(Error::Setup(message)) => assert_eq!(
            message,
            "executing '/nix/store/00000000000000000000000000000000-nothing/bin/sh': No such file or directory"
        ),
        other => panic!("expected a setup error, got {:?}", other.map(|r| r.outcome)),
    }
}

#[test]
fn missing_sandbox_path_is_an_error_unless_optional() {
    let f = Fixture::new();
    let mut spec = f.spec("[ -e /opt/missing ] || echo absent; echo x > $out");
    spec.sandbox_paths
        .push(SandboxPath::parse("/opt/missing=/nonexistent/kiln-sandbox"));
    let err = kiln_sandbox::prepare(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "getting attributes of path '/nonexistent/kiln-sandbox': No such file or directory (os error 2)"
    );
    assert!(
        !spec.chroot_dir.exists(),
        "a failed prepare leaves no chroot behind"
    );

    spec.sandbox_paths = vec![SandboxPath::parse(
        "/opt/missing=/nonexistent/kiln-sandbox?",
    )];
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success());
    assert_eq!(r.log, "absent\n");
}

#[test]
fn sandbox_paths_bind_files_and_directories() {
    let f = Fixture::new();
    let dir = f.dir.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("note"), "from the host\n").unwrap();
    let mut spec = f.spec("/bin/sh -c 'echo via-bound-sh'; cat /opt/data/note; echo x > $out");
    spec.sandbox_paths
        .push(SandboxPath::parse("/bin/sh=/bin/busybox"));
    spec.sandbox_paths
        .push(SandboxPath::parse(&format!("/opt/data={}", dir.display())));
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
    assert_eq!(r.log, "via-bound-sh\nfrom the host\n");
}

#[test]
fn wrong_helper_is_reported() {
    let f = Fixture::new();
    let prepared = kiln_sandbox::prepare(&f.spec("")).unwrap();
    let err = kiln_sandbox::Sandboxes::new("/bin/true")
        .run(&prepared, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Helper(m) if m.contains("exited during startup")),
        "{err}"
    );
    let err = kiln_sandbox::Sandboxes::new("/nonexistent/kiln")
        .run(&prepared, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(&err, Error::SpawnHelper { .. }), "{err}");
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
}

/// `helper_main` called in a process that already has a second thread refuses to
/// serve, and the caller reports why. Before, it cloned sandboxes from such a
/// process anyway, where a child may deadlock on a lock another thread held.
#[test]
fn a_helper_with_threads_refuses_to_start() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let wrapper = f.dir.path().join("threaded-helper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/env {}=1 {} \"$@\"\n",
            common::THREAD_FIRST,
            common::helper().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prepared = kiln_sandbox::prepare(&f.spec("echo ran > $out")).unwrap();
    let err = kiln_sandbox::Sandboxes::new(&wrapper)
        .run(&prepared, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Helper(m) if m.contains("must be a single-threaded process")),
        "{err}"
    );
    assert!(!prepared.chroot_store().join(OUT_NAME).exists());
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
}

#[test]
fn cleanup_copes_with_read_only_leftovers() {
    let f = Fixture::new();
    let spec = f.spec(
        "mkdir -p $out/a/b /tmp/ro/x && echo data > $out/a/b/f && chmod -R a-w $out && \
         chmod 0 /tmp/ro && echo done",
    );
    let prepared = kiln_sandbox::prepare(&spec).unwrap();
    let mut log = Vec::new();
    let outcome = common::sandboxes().run(&prepared, &mut log).unwrap();
    assert!(
        outcome.success(),
        "{outcome:?}: {}",
        String::from_utf8_lossy(&log)
    );
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    assert!(!prepared.chroot_dir().exists());
    // A missing path is fine too.
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
}

/// A mount left attached inside a chroot (a crashed tool, a manual bind) is
/// detached, not descended into: rmdir reports a mount point as busy before
/// looking at its contents, so what is mounted there survives.
#[test]
fn cleanup_detaches_leftover_mounts_without_entering_them() {
    common::require_root(); // mounting needs root here
    let f = Fixture::new();
    let victim = f.dir.path().join("precious");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "keep me\n").unwrap();
    let chroot = f.dir.path().join("leftover.chroot");
    std::fs::create_dir_all(chroot.join("nix/store/dir")).unwrap();
    std::fs::write(chroot.join("file"), "").unwrap();
    // In a private mount namespace of a dedicated thread (namespaces belong
    // to threads), so the host's mount table is never touched.
    std::thread::spawn(move || {
        // SAFETY: unsharing the mount namespace of this one thread only
        // affects path lookups made from it; it shares no fs state with
        // other threads afterwards, which is the point.
        unsafe {
            rustix::thread::unshare_unsafe(
                rustix::thread::UnshareFlags::NEWNS | rustix::thread::UnshareFlags::FS,
            )
        }
        .unwrap();
        use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .unwrap();
        mount_bind(&victim, chroot.join("nix/store/dir")).unwrap();
        mount_bind("/dev/null", chroot.join("file")).unwrap();
        kiln_sandbox::cleanup(&chroot).unwrap();
        assert!(!chroot.exists());
        assert_eq!(
            std::fs::read_to_string(victim.join("keep")).unwrap(),
            "keep me\n"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn prepare_replaces_a_stale_chroot() {
    let f = Fixture::new();
    let spec = f.spec("ls /tmp; echo x > $out");
    std::fs::create_dir_all(spec.chroot_dir.join("tmp/stale")).unwrap();
    let r = common::run(&spec).unwrap();
    assert!(r.outcome.success());
    assert_eq!(r.log, "");
}

#[test]
fn concurrent_runs_stay_separate() {
    let f = Fixture::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    for i in 0..5 {
                        let spec =
                            f.spec(&format!("echo {t}-{i} > $out; ls /tmp; touch /tmp/mine"));
                        let r = common::run(&spec).unwrap();
                        assert!(r.outcome.success(), "{:?}", r.outcome);
                        assert_eq!(r.out.as_deref(), Some(format!("{t}-{i}\n").as_bytes()));
                        assert_eq!(r.log, "");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

const UNPRIVILEGED_ENV: &str = "KILN_SANDBOX_TEST_UNPRIVILEGED";

/// As an ordinary user (uid 65534 here), the sandbox maps that user to 1000.
#[test]
fn works_for_an_unprivileged_caller() {
    if !rustix::process::geteuid().is_root() {
        // Already unprivileged: just run the body.
        return unprivileged_body();
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // The checkout may sit below a directory only root can enter (a `mktemp -d`), so
    // the unprivileged user runs copies of this test and of the helper from here.
    let copies = tempfile::tempdir().unwrap();
    std::fs::set_permissions(copies.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let test_copy = copies.path().join("sandbox-test");
    let helper_copy = copies.path().join("helper");
    std::fs::copy(std::env::current_exe().unwrap(), &test_copy).unwrap();
    std::fs::copy(common::helper(), &helper_copy).unwrap();
    let out = std::process::Command::new(&test_copy)
        .args([
            "unprivileged_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNPRIVILEGED_ENV, "1")
        .env(common::HELPER_OVERRIDE, &helper_copy)
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Not a test of its own: the body of [`works_for_an_unprivileged_caller`],
/// run in a child process that has dropped root.
#[test]
fn unprivileged_entry_point() {
    if std::env::var_os(UNPRIVILEGED_ENV).is_some() {
        unprivileged_body();
    }
}

fn unprivileged_body() {
    assert!(!rustix::process::geteuid().is_root());
    let f = Fixture::new();
    let d = dump(&f);
    assert_eq!(section(&d, "id"), ["uid=1000(nixbld) gid=100(nixbld)"]);
    assert_eq!(
        section(&d, "hostname"),
        ["localhost", "localhost", "(none)"]
    );
    let (uid, _) = common::ids();
    assert_eq!(
        section(&d, "idmap")[0]
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000", &uid.to_string(), "1"]
    );
    assert!(section(&d, "net").contains(&"    inet 127.0.0.1/8 scope host lo"));
    assert_eq!(
        section(&d, "chmod")[0],
        "chmod: /tmp/x: Operation not permitted"
    );
    let r = common::run(&f.spec("mkdir -p $out/ro && chmod 0 $out/ro $out && exit 4")).unwrap();
    assert_eq!(r.outcome, Outcome::Exited(4));

    // Regression: the helper once closed its copy of the status pipe before
    // reporting a failure after the clone, so the caller saw "the sandboxed
    // process died during setup" instead of the helper's message. Mapping
    // someone else's uid is such a failure for an ordinary user.
    let (_, gid) = common::ids();
    match common::run(&f.spec_as("echo x > $out", 12345, gid)) {
        Err(Error::Helper(message)) => {
            assert!(message.starts_with("writing '/proc/"), "{message}");
            assert!(
                message.ends_with("/uid_map' (1000 12345 1): Operation not permitted"),
                "{message}"
            );
        }
        other => panic!(
            "expected a helper error, got {:?}",
            other.map(|r| r.outcome)
        ),
    }
}

/// A chroot recycled after a builder made a mess of `/tmp` and the store looks to the
/// next builder exactly like a fresh one (root only: nobody else's are recycled).
#[test]
fn a_recycled_chroot_looks_fresh() {
    let f = Fixture::new();
    // A settings key of its own, so no concurrent test takes this skeleton.
    let unique = SandboxPath::parse("/kiln-recycle-test=/nonexistent-kiln-recycle-test?");
    let with_key = |script: &str| {
        let mut spec = f.spec(script);
        spec.sandbox_paths.push(unique.clone());
        spec
    };
    let sections = |dump: &str| -> String {
        let dump = common::normalize_dump(dump);
        [
            "ls /", "ls /dev", "ls /etc", "etc", "store", "build", "write", "chmod",
        ]
        .iter()
        .map(|name| format!("{name}: {:?}\n", section(&dump, name)))
        .collect()
    };
    let run_dump = || {
        let r = common::run(&with_key(common::DUMP_SCRIPT)).unwrap();
        assert!(r.outcome.success(), "{:?}: {}", r.outcome, r.log);
        String::from_utf8(r.out.unwrap()).unwrap()
    };
    let fresh = run_dump();

    let messy = with_key(
        "mkdir /tmp/d; echo x > /tmp/d/f; chmod 500 /tmp/d; echo x > /tmp/junk; \
         echo x > $NIX_STORE/junk; echo done > $out",
    );
    let prepared = kiln_sandbox::prepare(&messy).unwrap();
    let outcome = common::sandboxes().run(&prepared, &mut Vec::new()).unwrap();
    assert!(outcome.success());
    let aside = f.store.join("recycled-chroot");
    std::fs::rename(prepared.chroot_dir(), &aside).unwrap();
    let skeleton = prepared.skeleton().cloned();
    if !rustix::process::geteuid().is_root() {
        assert!(skeleton.is_none(), "only root's chroots are recycled");
        return common::sandboxes().recycle(None, &aside).unwrap();
    }
    common::sandboxes()
        .recycle(skeleton.as_ref(), &aside)
        .unwrap();
    assert!(aside.join("etc/passwd").exists(), "the skeleton is kept");
    assert!(!aside.join("tmp/junk").exists() && !aside.join("nix/store/junk").exists());

    let prepared = common::sandboxes()
        .prepare(&with_key(common::DUMP_SCRIPT))
        .unwrap();
    assert!(!aside.exists(), "the next sandbox took the skeleton");
    let mut log = Vec::new();
    let outcome = common::sandboxes().run(&prepared, &mut log).unwrap();
    assert!(outcome.success(), "{}", String::from_utf8_lossy(&log));
    let recycled = std::fs::read_to_string(prepared.chroot_store().join(common::OUT_NAME)).unwrap();
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    assert_eq!(sections(&recycled), sections(&fresh));
}

/// The names of the mount namespaces this process holds descriptors of.
fn held_mount_namespaces() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("mnt:["))
        .collect()
}

/// `go_lingering` keeps the builder's own mount namespace (not the helper's, not
/// ours) until the `Lingering` is dropped, and then lets it go.
#[test]
fn the_builders_mount_namespace_lingers_until_dropped() {
    let f = Fixture::new();
    // Kiln takes the namespace once it sees the `execve`; the builder stays long
    // enough for that even on a loaded machine.
    let spec = f.spec("readlink /proc/self/ns/mnt > $out; sleep 0.5");
    let prepared = kiln_sandbox::prepare(&spec).unwrap();
    let before = held_mount_namespaces();
    let launched = common::sandboxes().launch(&prepared).unwrap();
    let mut log = Vec::new();
    let (outcome, lingering) = launched.go_lingering(&prepared, &mut log).unwrap();
    assert!(
        outcome.success(),
        "{outcome:?}: {}",
        String::from_utf8_lossy(&log)
    );
    let builders = std::fs::read_to_string(prepared.chroot_store().join(OUT_NAME)).unwrap();
    let builders = builders.trim().to_string();
    assert!(builders.starts_with("mnt:["), "{builders}");
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(
        ours.to_string_lossy(),
        builders,
        "the builder has its own namespace"
    );
    let held = held_mount_namespaces();
    assert!(
        held.contains(&builders) && !before.contains(&builders),
        "{builders} not held: {held:?}"
    );
    drop(lingering);
    assert!(!held_mount_namespaces().contains(&builders));
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
}
