use std::collections::BTreeMap;

use super::*;

struct FakeEnv(BTreeMap<&'static str, String>);

impl EnvSource for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn env(pairs: &[(&'static str, &str)]) -> FakeEnv {
    FakeEnv(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
}

#[test]
fn layers_apply_in_nix_order() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("etc");
    std::fs::create_dir(&sys).unwrap();
    std::fs::write(
        sys.join("nix.conf"),
        "timeout = 1\nmax-silent-time = 1\ncores = 1\nkeep-outputs = true\n",
    )
    .unwrap();
    let (first, second) = (
        tmp.path().join("first.conf"),
        tmp.path().join("second.conf"),
    );
    std::fs::write(&first, "max-silent-time = 2\n").unwrap();
    std::fs::write(&second, "max-silent-time = 3\ncores = 3\n").unwrap();
    let config = Config::load_with(&env(&[
        ("NIX_CONF_DIR", sys.to_str().unwrap()),
        (
            "NIX_USER_CONF_FILES",
            &format!("{}:{}", first.display(), second.display()),
        ),
        ("NIX_CONFIG", "cores = 4\n"),
    ]))
    .unwrap();
    assert_eq!(config.uint("timeout"), 1, "the system file");
    assert_eq!(
        config.uint("max-silent-time"),
        2,
        "the first user file wins"
    );
    assert_eq!(config.uint("cores"), 4, "NIX_CONFIG over the files");
    assert!(config.bool("keep-outputs"));
    assert!(
        config.bool("gc-keep-outputs"),
        "aliases name the same setting"
    );
}

#[test]
fn xdg_directories_are_the_user_files_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".config/nix")).unwrap();
    std::fs::write(home.join(".config/nix/nix.conf"), "timeout = 7\n").unwrap();
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("nix")).unwrap();
    std::fs::write(
        xdg.join("nix/nix.conf"),
        "timeout = 9\nmax-silent-time = 9\n",
    )
    .unwrap();
    let config = Config::load_with(&env(&[
        ("NIX_CONF_DIR", tmp.path().join("none").to_str().unwrap()),
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_DIRS", xdg.to_str().unwrap()),
    ]))
    .unwrap();
    assert_eq!(config.uint("timeout"), 7);
    assert_eq!(config.uint("max-silent-time"), 9);
}

#[test]
fn extra_appends_and_plain_replaces() {
    let mut config = Config::defaults();
    config
        .apply_text(
            "substituters = a b\nextra-substituters = c a\nsystem-features = z y\n\
             extra-system-features = x y\nsandbox-paths = /p\nbuild-chroot-dirs = /q\n",
            "test",
        )
        .unwrap();
    assert_eq!(config.strings("substituters"), ["a", "b", "c", "a"]);
    assert_eq!(config.strings("system-features"), ["x", "y", "z"]);
    assert_eq!(config.strings("sandbox-paths"), ["/q"]);
    // `extra-` of a scalar setting is unknown, as in Nix.
    config.apply_text("extra-timeout = 3\n", "test").unwrap();
    assert_eq!(config.uint("timeout"), 0);
    assert_eq!(config.unknown()["extra-timeout"], "3");
}

#[test]
fn values_are_tokens_joined_by_one_space_and_comments_end_lines() {
    let mut config = Config::defaults();
    config
        .apply_text(
            "builders =   ssh://a   x86_64-linux # a machine\n\n  # only a comment\n",
            "t",
        )
        .unwrap();
    assert_eq!(config.string("builders"), "ssh://a x86_64-linux");
}

#[test]
fn malformed_lines_and_values_are_refused_with_their_place() {
    let mut config = Config::defaults();
    let err = config
        .apply_text("sandbox-paths=/a\n", "/etc/nix/nix.conf")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "illegal configuration line 'sandbox-paths=/a' in '/etc/nix/nix.conf'"
    );
    let err = config
        .apply_text("keep-going maybe = x\n", "f")
        .unwrap_err();
    assert!(matches!(err, Error::IllegalLine { .. }), "{err}");
    let err = config.apply_text("keep-going = maybe\n", "f").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Boolean setting has invalid value 'maybe' (setting 'keep-going' in 'f')"
    );
    let err = config.set("max-jobs", "-1").unwrap_err();
    assert!(err.to_string().contains("'-1'"), "{err}");
    config.set("max-jobs", "auto").unwrap();
    assert!(config.uint("max-jobs") >= 1);
}

#[test]
fn includes_resolve_beside_the_including_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(
        tmp.path().join("nix.conf"),
        "include sub/more.conf\n!include absent.conf\ntimeout = 2\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("sub/more.conf"), "timeout = 1\ncores = 5\n").unwrap();
    let config = Config::load_with(&env(&[
        ("NIX_CONF_DIR", tmp.path().to_str().unwrap()),
        ("NIX_USER_CONF_FILES", ""),
    ]))
    .unwrap();
    assert_eq!(config.uint("cores"), 5);
    assert_eq!(
        config.uint("timeout"),
        2,
        "later lines win over the include"
    );

    std::fs::write(tmp.path().join("nix.conf"), "include absent.conf\n").unwrap();
    let err =
        Config::load_with(&env(&[("NIX_CONF_DIR", tmp.path().to_str().unwrap())])).unwrap_err();
    assert!(
        matches!(&err, Error::MissingInclude { path, .. } if path.ends_with("absent.conf")),
        "{err}"
    );

    std::fs::write(tmp.path().join("nix.conf"), "include nix.conf\n").unwrap();
    let err =
        Config::load_with(&env(&[("NIX_CONF_DIR", tmp.path().to_str().unwrap())])).unwrap_err();
    assert!(matches!(err, Error::IncludeCycle { .. }), "{err}");
}

#[test]
fn unknown_settings_are_kept_and_shown_settings_are_sorted() {
    let mut config = Config::defaults();
    config.apply_text("frobnicate = yes please\n", "t").unwrap();
    assert_eq!(config.unknown()["frobnicate"], "yes please");
    let shown = config.show();
    let names: Vec<&str> = shown
        .lines()
        .map(|l| l.split(" = ").next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(shown.contains("\nmax-jobs = 1\n"), "{shown}");
    assert!(!shown.contains("frobnicate"));
}
