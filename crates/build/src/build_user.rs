//! Build users: as root, builders run as a member of the `nixbld` group, claimed through
//! `userpool/<uid>` flocks exactly as Nix claims them, so kiln and Nix never hand one
//! uid to two concurrent builds (each kills that uid's leftover processes).

use std::fs::File;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The ids a builder runs as on the host, and the lock that reserves them.
pub struct BuildUser {
    pub uid: u32,
    pub gid: u32,
    _lock: Option<File>,
}

impl BuildUser {
    /// Claim a free `nixbld` member when running as root (the pool lives under the
    /// machine's own state directory, shared by every store, as in Nix); otherwise the
    /// builder runs as the caller.
    pub fn acquire(global_state_dir: &Path) -> Result<BuildUser> {
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        if euid != 0 {
            return Ok(BuildUser {
                uid: euid,
                gid: egid,
                _lock: None,
            });
        }
        let Some(group) = build_group() else {
            return Ok(BuildUser {
                uid: euid,
                gid: egid,
                _lock: None,
            });
        };
        let pool = global_state_dir.join("userpool");
        std::fs::create_dir_all(&pool).ctx("creating", &pool)?;
        for &uid in &group.uids {
            let path = pool.join(uid.to_string());
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .ctx("opening", &path)?;
            if file.try_lock().is_ok() {
                return Ok(BuildUser {
                    uid,
                    gid: group.gid,
                    _lock: Some(file),
                });
            }
        }
        Err(Error::NoBuildUser(group.members))
    }
}

/// The `nixbld` group as it was when this process first looked: editing the
/// user database while builds run is not supported by Nix either, and reading
/// `/etc/group` and `/etc/passwd` once per build was a measurable share of a
/// trivial build.
struct BuildGroup {
    gid: u32,
    /// How many members the group lists (some may lack a passwd entry).
    members: usize,
    uids: Vec<u32>,
}

fn build_group() -> Option<&'static BuildGroup> {
    static GROUP: std::sync::OnceLock<Option<BuildGroup>> = std::sync::OnceLock::new();
    GROUP
        .get_or_init(|| {
            let (gid, members) = group_members("nixbld")?;
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            Some(BuildGroup {
                gid,
                members: members.len(),
                uids: members
                    .iter()
                    .filter_map(|name| user_id(&passwd, name))
                    .collect(),
            })
        })
        .as_ref()
}

fn group_members(group: &str) -> Option<(u32, Vec<String>)> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[0] != group {
            return None;
        }
        let members = fields[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        Some((fields[2].parse().ok()?, members))
    })
}

fn user_id(passwd: &str, name: &str) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[0] == name).then(|| fields[2].parse().ok())?
    })
}
