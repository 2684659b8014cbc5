//! Nothing one builder leaves behind reaches a later one: not a process still running
//! as its build user after kiln died, not the network counters of a reused network
//! namespace. Root only (build users, pooled network namespaces), as the test script runs.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The uids of the `nixbld` group's members, in the order kiln (and Nix) try them.
fn build_uids() -> Vec<u32> {
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let members = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == "nixbld")
        .map(|f| f[3].to_string())
        .expect("no nixbld group: run scripts/test.sh, which installs Nix");
    members
        .split(',')
        .filter_map(|name| {
            passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == name)
                .and_then(|f| f[2].parse().ok())
        })
        .collect()
}

/// The pids of the processes one of whose arguments is exactly `token` (zombies
/// have no arguments left, so they do not count).
fn processes_with_arg(token: &str) -> Vec<u32> {
    processes_where(|cmdline| {
        cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == token.as_bytes())
    })
}

/// The real uid of `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// SIGKILLs, when dropped, whatever still runs with the token: a failing test must not
/// leave its orphan sleeping for an hour.
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in processes_with_arg(&self.0) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// A `kiln build` (in a process group of its own, with its sandbox helpers) whose
/// builder ignores SIGHUP and sleeps, once the builder runs.
struct Sleeper {
    tmp: tempfile::TempDir,
    store: PathBuf,
    build_tmp: PathBuf,
    kiln: Child,
    /// The builder's pid on the host.
    builder: u32,
    token: String,
    /// A quick derivation to build next.
    next: String,
    cleanup: KillOnDrop,
}

fn start_sleeper() -> Sleeper {
    let (tmp, busybox, store) = scratch();
    let token = format!(
        "kiln-orphan-{}",
        tmp.path().file_name().unwrap().to_string_lossy()
    );
    let cleanup = KillOnDrop(token.clone());
    let expr = tmp.path().join("orphan.nix");
    std::fs::write(
        &expr,
        format!(
            r#"{{ busybox }}: let bb = builtins.path {{ path = busybox; name = "busybox"; }};
  mk = name: script: derivation {{ inherit name; system = "x86_64-linux"; builder = "${{bb}}/sh"; args = [ "-c" script "{token}" ]; }};
in [ (mk "orphan" "trap '' HUP; echo started; sleep 3600; mkdir $out") (mk "next" "echo next > $out") ]"#
        ),
    )
    .unwrap();
    let drvs = instantiate(&store, &expr, &busybox, None);
    let drvs: Vec<&str> = drvs.lines().collect();
    let build_tmp = build_tmp(tmp.path());
    let kiln = kiln_build(&store, &build_tmp)
        .arg(drvs[0])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let builder = loop {
        if let [pid] = processes_with_arg(&token)[..] {
            break pid;
        }
        assert!(Instant::now() < deadline, "the builder never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    Sleeper {
        next: drvs[1].to_string(),
        tmp,
        store,
        build_tmp,
        kiln,
        builder,
        token,
        cleanup,
    }
}

/// Whether `pid` (which had `token` among its arguments) is gone within 10 s: a
/// SIGKILLed sleeper is gone in microseconds, one nobody killed sleeps for an hour.
fn goes_away(pid: u32, token: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with_arg(token).contains(&pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A builder that ignores SIGHUP outlived a `kill -9` of its kiln and of the sandbox
/// helpers (its process group), and the next build given the same build user ran beside
/// it: kiln never killed the leftover processes of a build user, which Nix does before
/// every build.
#[test]
fn orphaned_builder_is_killed_before_its_build_user_is_reused() {
    let uids = build_uids();
    assert!(
        rustix::process::geteuid().is_root() && !uids.is_empty(),
        "needs root and the nixbld group (scripts/test.sh)"
    );
    let Sleeper {
        tmp: _tmp,
        store,
        build_tmp,
        kiln: mut first,
        builder: orphan,
        token,
        next,
        cleanup: _cleanup,
    } = start_sleeper();
    let uid = uid_of(orphan);
    assert!(uids.contains(&uid), "the builder runs as uid {uid}");
    // Claim the uid as soon as kiln lets go of it (before any other build can, which
    // would kill the orphan before this test looks at it).
    let pool = Path::new("/nix/var/nix/userpool");
    let open = |u: u32| {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(pool.join(u.to_string()))
    };
    let orphans_uid = {
        let file = open(uid).unwrap();
        std::thread::spawn(move || file.lock().map(|()| file))
    };
    rustix::process::kill_process_group(
        rustix::process::Pid::from_child(&first),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    first.wait().unwrap();
    let orphans_uid = orphans_uid.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        processes_with_arg(&token),
        [orphan],
        "the builder did not outlive its kiln, so this test cannot tell anything"
    );

    // kiln takes the first free uid in group order: hold the free ones before the
    // orphan's, so that the next build gets the orphan's.
    let _held: Vec<File> = uids
        .iter()
        .take_while(|&&u| u != uid)
        .filter_map(|&u| {
            let file = open(u).ok()?;
            file.try_lock().ok().map(|()| file)
        })
        .collect();
    drop(orphans_uid);
    let out = kiln_build(&store, &build_tmp).arg(&next).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        goes_away(orphan, &token),
        "the orphaned builder (pid {orphan}, uid {uid}) survived the next build of its uid"
    );
}

/// A builder that ignores SIGHUP ran on after a `kill -9` of its kiln alone (the
/// sandbox helper exited when kiln's end of its socket closed, and left the builder to
/// whoever claimed its uid next).
#[test]
fn builder_dies_with_its_killed_kiln() {
    let mut sleeper = start_sleeper();
    sleeper.kiln.kill().unwrap();
    sleeper.kiln.wait().unwrap();
    assert!(
        goes_away(sleeper.builder, &sleeper.token),
        "the builder (pid {}) outlived its kiln",
        sleeper.builder
    );
}

/// In one `kiln build -j1`, a builder whose `connect`s to an unroutable address sent no
/// packet handed its network namespace on with the counters those attempts moved
/// (`OutNoRoutes` in `/proc/net/snmp`): the pool called a namespace unused when its
/// interface counters were zero and it had no TCP socket. Every later builder must see
/// the counters of a namespace no builder has used.
#[test]
fn reused_network_namespace_shows_no_counters_of_an_earlier_builder() {
    let (tmp, busybox, store) = scratch();
    let expr = tmp.path().join("counters.nix");
    std::fs::write(
        &expr,
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "${bb}/sh"; args = [ "-c" script ]; };
  report = "cat /proc/net/snmp /proc/net/netstat";
  # Only lo exists: each connect fails at the route lookup, before any packet.
  noisy = mk "noisy" "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13; do nc 10.1.2.3 9 < /dev/null; done; ${report} > $out";
  # The pool may hand out a spare first, so the noisy namespace comes back a build
  # or two later.
  reader = n: dep: mk "reader-${toString n}" "${report} > $out; : ${dep}";
  r1 = reader 1 noisy; r2 = reader 2 r1; r3 = reader 3 r2;
in [ noisy r1 r2 r3 (reader 0 "alone") ]"#,
    )
    .unwrap();
    let drvs = instantiate(&store, &expr, &busybox, None);
    let drvs: Vec<&str> = drvs.lines().collect();
    let read = |p: &str| std::fs::read_to_string(store.join(p.trim_start_matches('/'))).unwrap();

    // Alone in its kiln, the first builder gets a namespace made for it.
    let fresh = read(kiln_ok(&["--store", s(&store), "build", "--no-link", drvs[4]]).trim());
    assert!(fresh.contains("OutNoRoutes"), "{fresh}");

    let mut args = vec!["--store", s(&store), "build", "--no-link", "-j1"];
    args.extend(&drvs[..4]);
    let out = kiln_ok(&args);
    let outs: Vec<&str> = out.lines().collect();
    let noisy = read(outs[0]);
    assert_ne!(noisy, fresh, "the connects moved no counter");
    for (n, out) in outs[1..].iter().enumerate() {
        assert_eq!(
            read(out),
            fresh,
            "reader {} saw counters a fresh namespace does not have",
            n + 1
        );
    }
}
