//! Result links (`kiln build -o`) and `kiln store add-root` against what already has the
//! link's name, with `nix-store --realise --add-root` as the oracle. Nix 2.8 replaces
//! only a symlink whose target lies in the store; anything else it refuses with
//! "cannot create symlink '…'; already exists" and exit status 1, leaving it as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    drv: String,
    out: String,
}

/// A store holding one built derivation, whose output nothing roots yet.
fn fixture() -> Fixture {
    let (tmp, busybox, store) = scratch();
    let drv = instantiate_text(
        tmp.path(),
        "one.nix",
        r#"{ busybox }: let bb = builtins.path { path = busybox; name = "busybox"; };
in derivation { name = "one"; system = "x86_64-linux"; builder = "${bb}/sh";
  args = [ "-c" "echo one > $out" ]; }"#,
        &store,
        &busybox,
    );
    let out = kiln_ok(&["--store", s(&store), "build", "--no-link", &drv])
        .trim()
        .to_string();
    let dir = tmp.path().join("links");
    std::fs::create_dir(&dir).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        store,
        drv,
        out,
    }
}

/// Every command that makes a root: kiln's two, then Nix's.
const MAKERS: [&str; 3] = [
    "kiln build -o",
    "kiln store add-root",
    "nix-store --add-root",
];

fn make_root(f: &Fixture, maker: &str, link: &Path) -> Output {
    let store = s(&f.store);
    match maker {
        "kiln build -o" => kiln()
            .args(["--store", store, "build", "-o", s(link), &f.drv])
            .output()
            .unwrap(),
        "kiln store add-root" => kiln()
            .args(["--store", store, "store", "add-root", s(link), &f.out])
            .output()
            .unwrap(),
        _ => nix(
            "nix-store",
            &["--store", store, "--realise", &f.drv, "--add-root", s(link)],
        ),
    }
}

/// The `error:` line of a failed run, with `dir` written as `DIR`.
fn error_line(out: &Output, dir: &Path) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error in: {stderr}"))
        .replace(s(dir), "DIR")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// For each maker, in a directory of its own: `prepare` puts something at `f`, the
/// maker must fail exactly as Nix does, `unchanged` must hold of `f` afterwards, and
/// nothing else may be left in the directory.
fn assert_refused_like_nix(prepare: impl Fn(&Path), unchanged: impl Fn(&Path)) {
    let f = fixture();
    let mut errors = Vec::new();
    for (i, maker) in MAKERS.iter().enumerate() {
        let dir = f.dir.join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        let link = dir.join("f");
        prepare(&link);
        let out = make_root(&f, maker, &link);
        assert_eq!(out.status.code(), Some(1), "{maker} did not fail with 1");
        unchanged(&link);
        assert_eq!(entries(&dir), ["f"], "{maker} left something behind");
        errors.push(error_line(&out, &dir));
    }
    let nix_error = errors.last().unwrap();
    assert_eq!(
        nix_error,
        "error: cannot create symlink 'DIR/f'; already exists"
    );
    for (maker, error) in MAKERS.iter().zip(&errors) {
        assert_eq!(error, nix_error, "{maker}");
    }
    assert_store_verifies(&f.store);
}

/// Before, `kiln build -o f` and `kiln store add-root f` renamed a symlink over a
/// regular file `f`: exit 0, and the file's data was gone.
#[test]
fn result_link_never_replaces_a_regular_file() {
    assert_refused_like_nix(
        |f| std::fs::write(f, "data\n").unwrap(),
        |f| assert_eq!(std::fs::read_to_string(f).unwrap(), "data\n"),
    );
}

/// Before, a directory `f` made the rename fail, but the temporary
/// `f.tmp-<pid>-<n>` symlink stayed beside it.
#[test]
fn result_link_never_replaces_a_directory_nor_leaves_a_temporary() {
    assert_refused_like_nix(
        |f| {
            std::fs::create_dir(f).unwrap();
            std::fs::write(f.join("inside"), "kept\n").unwrap();
        },
        |f| assert_eq!(std::fs::read_to_string(f.join("inside")).unwrap(), "kept\n"),
    );
}

/// Before, any symlink was replaced. Nix keeps one whose target text is not in the
/// logical store directory: dangling, outside, relative, or into the store's physical
/// location.
#[test]
fn result_link_never_replaces_a_symlink_out_of_the_store() {
    let outside = tempfile::NamedTempFile::new().unwrap();
    let physical = "/tmp/elsewhere/nix/store/00000000000000000000000000000000-gone";
    for target in [
        "/nonexistent/target",
        s(outside.path()),
        "relative",
        physical,
        "/nix/store",
    ] {
        assert_refused_like_nix(
            |f| std::os::unix::fs::symlink(target, f).unwrap(),
            |f| assert_eq!(std::fs::read_link(f).unwrap(), Path::new(target)),
        );
    }
}

/// Replacing a symlink into the store (an earlier result, or a dangling one) is what
/// Nix does and what kiln did; the replacement must leave no temporary behind and
/// register the root.
#[test]
fn result_link_replaces_a_symlink_into_the_store() {
    let f = fixture();
    for (i, maker) in MAKERS.iter().enumerate() {
        for (j, old) in [
            "/nix/store/00000000000000000000000000000000-gone",
            f.out.as_str(),
        ]
        .iter()
        .enumerate()
        {
            let dir = f.dir.join(format!("{i}-{j}"));
            std::fs::create_dir(&dir).unwrap();
            let link = dir.join("f");
            std::os::unix::fs::symlink(old, &link).unwrap();
            let out = make_root(&f, maker, &link);
            assert!(
                out.status.success(),
                "{maker}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(&f.out));
            assert_eq!(entries(&dir), ["f"], "{maker} left something behind");
        }
    }
    // Every link is an indirect root now: a collection keeps the output.
    nix_ok("nix-store", &["--store", s(&f.store), "--gc"]);
    let roots = nix_ok(
        "nix-store",
        &["--store", s(&f.store), "--query", "--roots", &f.out],
    );
    assert_eq!(roots.lines().count(), MAKERS.len() * 2, "{roots}");
    assert_store_verifies(&f.store);
}

/// Before, a link in a directory that does not exist failed; Nix creates the
/// directories.
#[test]
fn result_link_creates_missing_parent_directories() {
    let f = fixture();
    for (i, maker) in MAKERS.iter().enumerate() {
        let link = f.dir.join(format!("{i}/sub/result"));
        let out = make_root(&f, maker, &link);
        assert!(
            out.status.success(),
            "{maker}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(&f.out));
    }
}

/// Before, `..` stayed in the link's name, so `gcroots/auto` got an entry named
/// after a different path than Nix's for the same link, pointing at a non-canonical
/// path. Nix names the link by its canonical absolute path; making the same root
/// again through another spelling must reuse the entry kiln made.
#[test]
fn root_link_is_named_by_its_canonical_path() {
    let f = fixture();
    std::fs::create_dir_all(f.dir.join("a/b")).unwrap();
    let canonical = f.dir.join("result");
    let auto = f.store.join("nix/var/nix/gcroots/auto");
    for (i, maker) in MAKERS[..2].iter().enumerate() {
        let _ = std::fs::remove_dir_all(&auto);
        let ours = format!("{}/a/b/../../result", s(&f.dir));
        let out = make_root(&f, maker, Path::new(&ours));
        assert!(out.status.success(), "{maker}");
        let made = entries(&auto);
        assert_eq!(made.len(), 1, "{maker}: {made:?}");
        assert_eq!(
            std::fs::read_link(auto.join(&made[0])).unwrap(),
            canonical,
            "{maker}"
        );
        let theirs = format!("{}/a/./../result", s(&f.dir));
        let out = make_root(&f, MAKERS[2], Path::new(&theirs));
        assert!(out.status.success(), "nix after {maker} ({i})");
        assert_eq!(entries(&auto), made, "Nix named {maker}'s root differently");
    }
}

/// Before, kiln made a root inside the store directory (and so in a real `/nix/store`
/// when given one); Nix refuses it by the link's text.
#[test]
fn root_link_inside_the_store_is_refused_like_nix() {
    let f = fixture();
    let link = Path::new("/nix/store/kiln-test-no-such-directory/result");
    let mut errors = Vec::new();
    for maker in MAKERS {
        let out = make_root(&f, maker, link);
        assert_eq!(out.status.code(), Some(1), "{maker} did not fail with 1");
        errors.push(error_line(&out, &f.dir));
    }
    assert!(
        errors[2].contains("in the Nix store is forbidden"),
        "{errors:?}"
    );
    assert_eq!(errors[0], errors[2]);
    assert_eq!(errors[1], errors[2]);
    assert!(!link.parent().unwrap().exists());
}
