//! `kiln config show` against `nix show-config` over the same layered configuration:
//! a system file with an include, user files, `$NIX_CONFIG` and `--option`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

/// Settings whose defaults differ on purpose (see docs/compatibility.md), or that the
/// `nix` command itself sets.
const DIFFERENT_ON_PURPOSE: [&str; 3] = [
    "sync-before-registering",
    "pure-eval",
    "experimental-features",
];

fn settings(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with_layers(cmd: &mut Command, dir: &std::path::Path) {
    cmd.env("NIX_CONF_DIR", dir.join("etc"))
        .env(
            "NIX_USER_CONF_FILES",
            format!("{}:{}", dir.join("user1.conf").display(), dir.join("user2.conf").display()),
        )
        .env(
            "NIX_CONFIG",
            "keep-outputs = true\nextra-substituters = http://b\nexperimental-features = nix-command\n",
        )
        .args(["--option", "max-silent-time", "7"])
        .args(["--option", "extra-system-features", "c"]);
}

#[test]
fn config_show_agrees_with_nix_show_config() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("nix.conf"),
        "cores = 3 # comment\nextra-sandbox-paths = /x /y\ninclude more.conf\n\
         !include absent.conf\nsystem-features = a b\nsubstituters = http://a\n\
         build-max-jobs = 4\nfrobnicate = 1\n",
    )
    .unwrap();
    std::fs::write(etc.join("more.conf"), "timeout = 5\nkeep-failed = yes\n").unwrap();
    std::fs::write(tmp.path().join("user1.conf"), "timeout = 6\n").unwrap();
    std::fs::write(
        tmp.path().join("user2.conf"),
        "timeout = 8\nconnect-timeout = 9\n",
    )
    .unwrap();

    let mut ours = kiln();
    with_layers(&mut ours, tmp.path());
    let ours = ours.args(["config", "show"]).output().unwrap();
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let mut theirs = nix_command("nix");
    with_layers(&mut theirs, tmp.path());
    let theirs = theirs.arg("show-config").output().unwrap();
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );

    let (ours_map, theirs_map) = (settings(&ours.stdout), settings(&theirs.stdout));
    let mut compared = 0;
    for (name, value) in &ours_map {
        if DIFFERENT_ON_PURPOSE.contains(&name.as_str()) {
            continue;
        }
        let nix_value = theirs_map
            .get(name)
            .unwrap_or_else(|| panic!("nix show-config has no setting '{name}'"));
        assert_eq!(value, nix_value, "setting '{name}'");
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} settings compared");
    // Spot checks that the layers were read at all (not just defaults on both sides).
    assert_eq!(ours_map["timeout"], "6", "the first user file wins");
    assert_eq!(ours_map["max-jobs"], "4");
    assert_eq!(ours_map["system-features"], "a b c");
    assert_eq!(ours_map["substituters"], "http://a http://b");
    assert!(String::from_utf8_lossy(&ours.stderr).contains("warning: unknown setting 'frobnicate'"));
}

#[test]
fn a_malformed_configuration_line_is_refused_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("nix.conf"), "timeout=5\n").unwrap();
    let out = kiln()
        .env("NIX_CONF_DIR", tmp.path())
        .env("NIX_USER_CONF_FILES", "")
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "illegal configuration line 'timeout=5' in '{}'",
            tmp.path().join("nix.conf").display()
        )),
        "{stderr}"
    );
}
