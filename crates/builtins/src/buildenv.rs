//! `builtin:buildenv`: a user environment (profile) as a tree of symlinks into the
//! packages, merged directory by directory, with Nix 2.8's rules for collisions
//! (lower priority number wins; equal priorities are an error), for the packages a
//! package propagates (`nix-support/propagated-user-env-packages`, added after all
//! explicit ones with ever larger priority numbers), and for the files never linked.
//!
//! The package list is the `derivations` attribute: whitespace-separated groups of
//! `ACTIVE PRIORITY COUNT PATH…` (`ACTIVE` is `false` for an inactive package), one
//! group per package, `COUNT` paths (its outputs) per group.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::activity;
use crate::env::Env;
use crate::error::Error;

/// Priority of the first propagated package; each next one gets one more.
const FIRST_PROPAGATED_PRIORITY: i32 = 1000;

/// Suffixes of source paths never linked: useless in a profile, or bound to collide
/// (every Python package has its own `easy-install.pth`, say).
const NEVER_LINKED: [&str; 7] = [
    "/propagated-build-inputs",
    "/nix-support",
    "/perllocal.pod",
    "/info/dir",
    "/log",
    "/manifest.nix",
    "/manifest.json",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    path: String,
    active: bool,
    priority: i32,
}

pub fn buildenv(env: &Env<'_>) -> Result<(), Error> {
    let out = PathBuf::from(env.require_str("out")?);
    fs::create_dir_all(&out).map_err(|e| Error::io("creating directory", &out, e))?;
    let packages = parse_packages(env.require_str("derivations")?)?;
    build_profile(&out, packages)?;
    let manifest = env.require_str("manifest")?;
    let link = out.join("manifest.nix");
    symlink(manifest, &link).map_err(|e| Error::io("creating symlink", &link, e))
}

fn parse_packages(text: &str) -> Result<Vec<Package>, Error> {
    let mut words = text.split_ascii_whitespace();
    let mut packages = Vec::new();
    while let Some(active) = words.next() {
        let mut number = |what: &str| -> Result<i32, Error> {
            let word = words
                .next()
                .ok_or_else(|| Error::BadPackageList(format!("a package lacks its {what}")))?;
            word.parse()
                .map_err(|_| Error::BadPackageList(format!("'{word}' is not a {what}")))
        };
        let priority = number("priority")?;
        let count = number("number of outputs")?;
        for _ in 0..count {
            let path = words.next().ok_or_else(|| {
                Error::BadPackageList("a package has fewer outputs than it says".into())
            })?;
            packages.push(Package {
                path: path.to_string(),
                active: active != "false",
                priority,
            });
        }
    }
    Ok(packages)
}

#[derive(Default)]
struct Profile {
    /// The priority of the package each link made so far came from; a link not
    /// recorded here counts as priority 0, as in Nix.
    priorities: BTreeMap<PathBuf, i32>,
    done: BTreeSet<String>,
    postponed: BTreeSet<String>,
}

fn build_profile(out: &Path, mut packages: Vec<Package>) -> Result<(), Error> {
    let mut profile = Profile::default();
    // Highest priority first, so that a collision rarely replaces a link.
    packages.sort_by(|a, b| (a.priority, &a.path).cmp(&(b.priority, &b.path)));
    for package in packages.iter().filter(|p| p.active) {
        profile.add(&package.path, out, package.priority)?;
    }
    // Propagated packages last: they lose collisions against anything chosen
    // explicitly.
    let mut priority = FIRST_PROPAGATED_PRIORITY;
    while !profile.postponed.is_empty() {
        for path in std::mem::take(&mut profile.postponed) {
            profile.add(&path, out, priority)?;
            priority += 1;
        }
    }
    Ok(())
}

impl Profile {
    fn add(&mut self, package: &str, out: &Path, priority: i32) -> Result<(), Error> {
        if !self.done.insert(package.to_string()) {
            return Ok(());
        }
        self.link_dir(Path::new(package), out, priority)?;
        let list = Path::new(package).join("nix-support/propagated-user-env-packages");
        match fs::read(&list) {
            Ok(text) => {
                for path in String::from_utf8_lossy(&text).split([' ', '\n']) {
                    if !path.is_empty() && !self.done.contains(path) {
                        self.postponed.insert(path.to_string());
                    }
                }
            }
            Err(e) if is_absent(&e) => {}
            Err(e) => return Err(Error::io("reading file", list, e)),
        }
        Ok(())
    }

    fn link_dir(&mut self, src_dir: &Path, dst_dir: &Path, priority: i32) -> Result<(), Error> {
        let entries = match fs::read_dir(src_dir) {
            Ok(entries) => entries,
            Err(e) if e.raw_os_error() == Some(ENOTDIR) => {
                activity::warn(&format!(
                    "not including '{}' in the user environment because it's not a directory",
                    highlight(src_dir)
                ));
                return Ok(());
            }
            Err(e) => return Err(Error::io("opening directory", src_dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("reading directory", src_dir, e))?;
            names.push(entry.file_name());
        }
        // Shell globs do not match dot files, and Nix's builder once was a shell script.
        names.retain(|n| !n.as_encoded_bytes().starts_with(b"."));
        names.sort();
        for name in names {
            let src = src_dir.join(&name);
            let dst = dst_dir.join(&name);
            self.link_entry(&src, &dst, priority)?;
        }
        Ok(())
    }

    fn link_entry(&mut self, src: &Path, dst: &Path, priority: i32) -> Result<(), Error> {
        let src_meta = match fs::metadata(src) {
            Ok(meta) => meta,
            Err(e) if is_absent(&e) => {
                activity::warn(&format!("skipping dangling symlink '{}'", highlight(dst)));
                return Ok(());
            }
            Err(e) => return Err(Error::io("getting status of", src, e)),
        };
        let src_text = src.as_os_str().as_encoded_bytes();
        if NEVER_LINKED
            .iter()
            .any(|suffix| src_text.ends_with(suffix.as_bytes()))
        {
            return Ok(());
        }
        let dst_meta = match fs::symlink_metadata(dst) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("getting status of", dst, e)),
        };
        if src_meta.is_dir() {
            match dst_meta {
                Some(meta) if meta.is_dir() => return self.link_dir(src, dst, priority),
                Some(meta) if meta.file_type().is_symlink() => {
                    // A directory of another package linked whole: replace the link by
                    // a directory holding both packages' entries.
                    let target =
                        fs::canonicalize(dst).map_err(|e| Error::io("canonicalising", dst, e))?;
                    let target_is_dir = fs::symlink_metadata(&target)
                        .map_err(|e| Error::io("getting status of", &target, e))?
                        .is_dir();
                    if !target_is_dir {
                        return Err(Error::CollisionWithFile {
                            dir: src.to_path_buf(),
                            file: target,
                        });
                    }
                    fs::remove_file(dst).map_err(|e| Error::io("unlinking", dst, e))?;
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(dst)
                        .map_err(|e| Error::io("creating directory", dst, e))?;
                    let previous = self.priorities.get(dst).copied().unwrap_or(0);
                    self.link_dir(&target, dst, previous)?;
                    return self.link_dir(src, dst, priority);
                }
                _ => {}
            }
        } else if let Some(meta) = dst_meta {
            if meta.file_type().is_symlink() {
                let previous = self.priorities.get(dst).copied().unwrap_or(0);
                if previous == priority {
                    let old = fs::read_link(dst)
                        .map_err(|e| Error::io("reading symbolic link", dst, e))?;
                    return Err(Error::SamePriority {
                        new: src.to_path_buf(),
                        old,
                        priority,
                    });
                }
                if previous < priority {
                    return Ok(());
                }
                fs::remove_file(dst).map_err(|e| Error::io("unlinking", dst, e))?;
            } else if meta.is_dir() {
                return Err(Error::FileOverDirectory {
                    file: src.to_path_buf(),
                    dir: dst.to_path_buf(),
                });
            }
        }
        symlink(src, dst).map_err(|e| Error::io("creating symlink", dst, e))?;
        self.priorities.insert(dst.to_path_buf(), priority);
        Ok(())
    }
}

use std::os::unix::fs::DirBuilderExt;

const ENOTDIR: i32 = 20;

/// Missing, or a path through something that is not a directory.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ENOTDIR)
}

fn highlight(path: &Path) -> String {
    format!("\x1b[35;1m{}\x1b[0m", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_groups_expand_to_one_entry_per_output() {
        let list = parse_packages("true 5 2 /a /b\nfalse 0 1 /c").unwrap();
        assert_eq!(
            list,
            vec![
                Package {
                    path: "/a".into(),
                    active: true,
                    priority: 5
                },
                Package {
                    path: "/b".into(),
                    active: true,
                    priority: 5
                },
                Package {
                    path: "/c".into(),
                    active: false,
                    priority: 0
                },
            ]
        );
    }

    #[test]
    fn a_short_package_list_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_packages("true 5"),
            Err(Error::BadPackageList(_))
        ));
        assert!(matches!(
            parse_packages("true x 1 /a"),
            Err(Error::BadPackageList(_))
        ));
        assert!(matches!(
            parse_packages("true 1 2 /a"),
            Err(Error::BadPackageList(_))
        ));
    }
}
