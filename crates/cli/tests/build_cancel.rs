//! A failure without `--keep-going` stops the builds running beside it: their
//! builders are killed, nothing of them is registered, nothing of them is left.

mod common;

use common::*;

/// The pids of the processes whose command line contains `token`.
fn processes_mentioning(token: &str) -> Vec<u32> {
    processes_where(|cmdline| cmdline.windows(token.len()).any(|w| w == token.as_bytes()))
}

/// Before, the build executor ignored the scheduler's cancellation: after `bad`
/// failed, kiln waited for its sibling `slow` to sleep its minute out, and then
/// registered its output although the run had already failed.
#[test]
fn a_failure_stops_a_running_sibling_and_registers_nothing_of_it() {
    let (tmp, busybox, store) = scratch();
    // `bad` fails only once `slow` is running: both see this directory.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let token = format!("kiln-cancel-token-{}", std::process::id());
    let expr = tmp.path().join("c.nix");
    std::fs::write(
        &expr,
        format!(
            r#"{{ busybox }}: let bb = builtins.path {{ path = busybox; name = "busybox"; }};
  mk = name: script: derivation {{ inherit name; system = "x86_64-linux"; builder = "${{bb}}/sh"; args = [ "-c" script ]; }};
in {{
  slow = mk "slow" "mkdir $out; touch /shared/started; sleep 60; echo {token} > $out/done";
  bad = mk "bad" "while [ ! -e /shared/started ]; do sleep 0.1; done; exit 1";
}}"#
        ),
    )
    .unwrap();
    let slow = instantiate(&store, &expr, &busybox, Some("slow"));
    let bad = instantiate(&store, &expr, &busybox, Some("bad"));
    let slow_out = nix_ok(
        "nix-store",
        &["--store", s(&store), "-q", "--outputs", &slow],
    );
    let build_tmp = build_tmp(tmp.path());
    let bind = format!("/shared={}", s(&shared));
    let out = kiln_build(&store, &build_tmp)
        .args(["-j", "2", "--sandbox-path", &bind, &bad, &slow])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("failed with exit code 1"), "{stderr}");
    assert!(shared.join("started").exists(), "slow never ran: {stderr}");
    assert!(
        processes_mentioning(&token).is_empty(),
        "slow's builder outlived kiln"
    );
    assert!(
        !nix(
            "nix-store",
            &["--store", s(&store), "-q", "--hash", slow_out.trim()]
        )
        .status
        .success(),
        "slow was registered after the run failed: {stderr}"
    );
    assert_nothing_left(&store, &build_tmp, |n| {
        n.ends_with(".chroot") || n.ends_with("-slow") || n.contains("chroot-trash")
    });
    assert_store_verifies(&store);
}
