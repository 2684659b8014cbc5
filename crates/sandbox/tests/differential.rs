//! Differential tests: the sandbox dump built by real Nix 2.8
//! (`nix-store --realise --option sandbox true` into a scratch chroot store)
//! against the same builder run by kiln-sandbox with an independently built
//! environment and the same chroot path, build directory, build user and
//! inputs. The dumps must be equal byte for byte once
//! [`common::normalize_dump`] has blanked what differs between any two runs
//! of Nix itself (dates, the host's process count in /proc's link count,
//! host-wide mount ids, anonymous device numbers and peer group numbers).
//!
//! Nix's sandbox works on this machine as root (the sandbox-paths option
//! supplies /bin/sh = the static busybox); these tests fail, not skip, when
//! `nix-build` is missing or its sandbox does not work.

#![allow(unsafe_code)] // one pre_exec hook, see `nix()`

mod common;

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use kiln_sandbox::{InputPath, Network, SandboxPath, SandboxSpec};

/// Nix kills every process of the build user it picks before and after a
/// build, and kiln runs as that same user here: one at a time.
static NIX_USER: Mutex<()> = Mutex::new(());

const FAKE_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct NixRun {
    dump: String,
    /// `name=value` attributes of the derivation, as Nix put them in the environment.
    attrs: Vec<(String, String)>,
    inputs: Vec<String>,
}

fn nix(store: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(args[0]);
    // Nix's builders inherit the signals Nix's own parent left ignored. A
    // shell leaves none; this test process was started with glibc's
    // posix_spawn, which leaves its two internal signals ignored, and so would
    // any child it spawns. Start Nix as a shell would.
    // SAFETY: runs between fork and exec; only raw async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(|| {
            let default_action = [0u64; 4];
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig as libc::c_long,
                        default_action.as_ptr(),
                        0usize,
                        8usize,
                    );
                }
            }
            Ok(())
        });
    }
    let out = cmd
        .args(&args[1..])
        .args(["--store", store.to_str().unwrap()])
        .args(["--option", "substituters", ""])
        .args(["--option", "sandbox", "true"])
        .args(["--option", "sandbox-paths", "/bin/sh=/bin/busybox"])
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (Nix 2.8 must be installed)", args[0]));
    out
}

/// The dump for a fixed-output derivation: Nix 2.8 aborts (an assertion in
/// makeFixedOutputPath) when a flat fixed output refers to any store path,
/// its own included, so the output's hash part is masked and there are no
/// inputs.
fn fod_script() -> String {
    common::DUMP_SCRIPT.replace(
        "} > $out 2>&1",
        // Not a pipe: its two sides race (is $out there yet when
        // `ls /nix/store` runs?); the dump goes through a file instead.
        "} > /build/dump 2>&1; sed \"s/$(basename $out | cut -c1-32)/OUTHASH/g\" /build/dump > $out",
    )
}

fn derivation_nix(dir: &Path, name: &str, fod: bool) -> PathBuf {
    std::fs::create_dir_all(dir.join("src/sub")).unwrap();
    std::fs::write(dir.join("src/sub/data"), "input directory\n").unwrap();
    let extra = if fod {
        format!("outputHashMode = \"flat\"; outputHashAlgo = \"sha256\"; outputHash = \"{FAKE_SHA256}\";")
    } else {
        // A directory input (bind-mounted) and a file input (hard-linked).
        "dir = builtins.path { path = ./src; name = \"input-dir\"; };\n  \
         file = builtins.toFile \"input-file\" \"an input file\\n\";"
            .to_string()
    };
    let text = format!(
        r#"derivation {{
  name = "{name}";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" {script} ];
  {extra}
}}"#,
        script = nix_string(&script(fod))
    );
    let path = dir.join("default.nix");
    std::fs::write(&path, text).unwrap();
    path
}

fn script(fod: bool) -> String {
    if fod {
        fod_script()
    } else {
        common::DUMP_SCRIPT.to_string()
    }
}

fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build_with_nix(scratch: &Path, name: &str, fod: bool) -> NixRun {
    let expr = derivation_nix(&scratch.join("expr"), name, fod);
    let store = scratch.join("root");
    let inst = nix(&store, &["nix-instantiate", expr.to_str().unwrap()]);
    assert!(
        inst.status.success(),
        "nix-instantiate: {}",
        String::from_utf8_lossy(&inst.stderr)
    );
    let drv = String::from_utf8(inst.stdout).unwrap().trim().to_string();
    let refs = nix(&store, &["nix-store", "-q", "--references", &drv]);
    assert!(
        refs.status.success(),
        "nix-store -q: {}",
        String::from_utf8_lossy(&refs.stderr)
    );
    let inputs: Vec<String> = String::from_utf8(refs.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("/nix/store/").to_string())
        .collect();
    let outputs = nix(&store, &["nix-store", "-q", "--outputs", &drv]);
    assert!(
        outputs.status.success(),
        "nix-store -q --outputs: {}",
        String::from_utf8_lossy(&outputs.stderr)
    );
    let out_path = String::from_utf8(outputs.stdout)
        .unwrap()
        .trim()
        .to_string();
    let out_hash = out_path.trim_start_matches("/nix/store/")[..32].to_string();
    let built = nix(&store, &["nix-store", "--realise", &drv]);
    let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
    let real_store = store.join("nix/store");
    let output = if fod {
        // A wrong fixed-output hash: Nix 2.8 still registers what was built,
        // under the content-addressed path, and then fails.
        assert!(
            stderr.contains("hash mismatch in fixed-output derivation"),
            "nix-store --realise: {stderr}"
        );
        std::fs::read_dir(&real_store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.ends_with(&format!("-{name}")) && p.is_file()
            })
            .expect("Nix registered the fixed-output result")
    } else {
        assert!(built.status.success(), "nix-store --realise: {stderr}");
        let out = String::from_utf8(built.stdout).unwrap().trim().to_string();
        real_store.join(out.trim_start_matches("/nix/store/"))
    };
    let dump = std::fs::read_to_string(&output).unwrap();
    // The derivation's own attributes, as Nix passed them (everything in
    // the environment that Nix adds itself is rebuilt independently below).
    let own = [
        "PATH",
        "HOME",
        "NIX_STORE",
        "NIX_BUILD_CORES",
        "NIX_BUILD_TOP",
        "TMPDIR",
        "TEMPDIR",
        "TMP",
        "TEMP",
        "PWD",
        "NIX_LOG_FD",
        "TERM",
        "NIX_OUTPUT_CHECKED",
    ];
    let attrs: Vec<(String, String)> = common::section(&dump, "environ")
        .iter()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !own.contains(k))
        // The fixed-output dump masks its own hash (see fod_script).
        .map(|(k, v)| (k.to_string(), v.replace("OUTHASH", &out_hash)))
        .collect();
    assert!(
        attrs_have_out(&attrs, &out_path),
        "Nix's environment lacks out={out_path}"
    );
    NixRun {
        dump,
        attrs,
        inputs,
    }
}

fn attrs_have_out(attrs: &[(String, String)], out_path: &str) -> bool {
    attrs.iter().any(|(k, v)| k == "out" && v == out_path)
}

/// Runs the dump with kiln-sandbox exactly where Nix ran it; `pivot_early` as in
/// [`kiln_sandbox::SandboxSpec::pivot_early`].
fn run_with_kiln(nix_run: &NixRun, scratch: &Path, fod: bool, pivot_early: bool) -> String {
    let mountinfo = common::section(&nix_run.dump, "mountinfo");
    let root_of = |mount_point: &str| -> PathBuf {
        let line = mountinfo
            .iter()
            .find(|l| l.split(' ').nth(4) == Some(mount_point))
            .unwrap_or_else(|| panic!("no {mount_point} in Nix's mountinfo"));
        PathBuf::from(line.split(' ').nth(3).unwrap())
    };
    let chroot = root_of("/");
    let build_dir = root_of("/build");
    let idmap = common::section(&nix_run.dump, "idmap");
    let host_id = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let (uid, gid) = (host_id(idmap[0]), host_id(idmap[1]));

    // Nix removed both after its build; recreate the build dir as Nix makes it.
    assert!(!chroot.exists(), "Nix left {} behind", chroot.display());
    let _ = std::fs::remove_dir_all(&build_dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&build_dir)
        .unwrap();
    std::os::unix::fs::chown(&build_dir, Some(uid), Some(gid)).unwrap();

    let mut spec = SandboxSpec::new("/bin/sh", &chroot, &build_dir, uid, gid);
    spec.args = vec![b"-c".to_vec(), script(fod).into_bytes()];
    let attrs: Vec<(&str, &str)> = nix_run
        .attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    spec.env = common::nix_env(&attrs);
    if fod {
        spec.network = Network::Host;
        spec.env
            .push((b"NIX_OUTPUT_CHECKED".to_vec(), b"1".to_vec()));
        spec.env.sort();
    }
    spec.sandbox_paths
        .push(SandboxPath::parse("/bin/sh=/bin/busybox"));
    let real_store = scratch.join("root/nix/store");
    for name in &nix_run.inputs {
        spec.inputs
            .push(InputPath::new(name.clone(), real_store.join(name)));
    }
    let out_name = nix_run
        .attrs
        .iter()
        .find(|(k, _)| k == "out")
        .map(|(_, v)| v.trim_start_matches("/nix/store/").to_string())
        .unwrap();

    spec.pivot_early = pivot_early;
    let prepared = kiln_sandbox::prepare(&spec).unwrap();
    let mut log = Vec::new();
    let outcome = common::sandboxes().run(&prepared, &mut log).unwrap();
    let dump = std::fs::read_to_string(prepared.chroot_store().join(&out_name));
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
    std::fs::remove_dir_all(&build_dir).unwrap();
    assert!(
        outcome.success(),
        "{outcome:?}: {}",
        String::from_utf8_lossy(&log)
    );
    dump.unwrap()
}

fn compare(name: &str, fod: bool) {
    let _user = NIX_USER.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = tempfile::Builder::new()
        .prefix("kiln-sandbox-diff")
        .tempdir()
        .unwrap();
    let nix_run = build_with_nix(scratch.path(), name, fod);
    // Both ways of reaching the store inputs: pivoting before `go` (when the
    // caller may) and after it.
    for pivot_early in [true, false] {
        let kiln_dump = run_with_kiln(&nix_run, scratch.path(), fod, pivot_early);
        let (want, got) = (
            common::normalize_dump(&nix_run.dump),
            common::normalize_dump(&kiln_dump),
        );
        if std::env::var_os("KILN_SANDBOX_SHOW_DUMP").is_some() {
            eprintln!("--- Nix's dump ---\n{}", nix_run.dump);
        }
        if want != got {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("  nix:  {a}\n  kiln: {b}"))
                .collect();
            panic!(
                "kiln's sandbox (pivot_early: {pivot_early}) differs from Nix's ({} vs {} lines):\n{}\n--- nix ---\n{want}\n--- kiln ---\n{got}",
                want.lines().count(),
                got.lines().count(),
                diff.join("\n")
            );
        }
    }
}

#[test]
fn sandbox_dump_equals_nix() {
    compare("envdump", false);
}

#[test]
fn fixed_output_sandbox_dump_equals_nix() {
    compare("envdump-fod", true);
}
