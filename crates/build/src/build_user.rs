//! Build users: as root, builders run as a member of the `nixbld` group, claimed through
//! `userpool/<uid>` flocks exactly as Nix claims them, so kiln and Nix never hand one
//! uid to two concurrent builds.
//!
//! A uid claimed from the pool may still run processes: a builder whose kiln or Nix was
//! killed outright outlives it (nothing kills a sandbox's PID 1 when its parent dies).
//! So, as Nix does, every process of a newly claimed uid is killed before any build
//! uses it. Nix also kills them after each build; kiln need not: a builder is PID 1
//! of its own PID namespace, and once kiln has reaped it the kernel has killed every
//! process that namespace held, so a build that ran to its end leaves no process of
//! its uid. Such a uid stays claimed (its flock held) by this process, for its next
//! build, which therefore needs no kill either. A build that ended any other way
//! gives its uid back to the pool after killing its processes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, IoContext, Result};

/// The ids a builder runs as on the host, and the lock that reserves them.
pub struct BuildUser {
    pub uid: u32,
    pub gid: u32,
    /// `None` when the builder runs as the caller (no pool).
    claim: Option<Claim>,
    /// Where the claim goes when the build is done.
    idle: Option<Arc<IdleUsers>>,
    /// The build's sandbox has been reaped, and with it every process of the uid.
    no_processes_left: bool,
}

/// A pool member this process holds the flock of.
struct Claim {
    lock: File,
    /// The `userpool` directory the lock is in.
    pool: PathBuf,
}

/// Uids an executor holds, known to run no process, ready for its next build;
/// released when it is dropped.
#[derive(Default)]
pub(crate) struct IdleUsers(Mutex<Vec<(u32, u32, Claim)>>);

impl BuildUser {
    /// Claim a free `nixbld` member when running as root (the pool lives under the
    /// machine's own state directory, shared by every store, as in Nix); otherwise the
    /// builder runs as the caller.
    pub(crate) fn acquire(global_state_dir: &Path, idle: &Arc<IdleUsers>) -> Result<BuildUser> {
        let unpooled = BuildUser::caller();
        if unpooled.uid != 0 {
            return Ok(unpooled);
        }
        let Some(group) = build_group() else {
            return Ok(unpooled);
        };
        let pool = global_state_dir.join("userpool");
        if let Some(user) = take_idle(idle, &pool) {
            return Ok(user);
        }
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
            // Also fails for the uids this process holds: flocks of separate opens
            // conflict even within one process.
            if file.try_lock().is_ok() {
                let user = BuildUser {
                    uid,
                    gid: group.gid,
                    claim: Some(Claim { lock: file, pool }),
                    idle: Some(Arc::clone(idle)),
                    no_processes_left: false,
                };
                // On error the lock goes back, with whatever still runs as `uid`.
                crate::namespace::kill_user_processes(uid).map_err(Error::BuildUser)?;
                return Ok(user);
            }
        }
        Err(Error::NoBuildUser(group.members))
    }

    /// The caller's own ids, for builders that cannot run as anyone else.
    pub fn caller() -> BuildUser {
        BuildUser {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            claim: None,
            idle: None,
            no_processes_left: false,
        }
    }

    /// Says that the build's sandbox has been reaped: no process of this user is left,
    /// and the next build of this process may have it without killing anything.
    pub fn sandbox_reaped(&mut self) {
        self.no_processes_left = true;
    }
}

fn take_idle(idle: &Arc<IdleUsers>, pool: &Path) -> Option<BuildUser> {
    let mut users = idle.0.lock().unwrap_or_else(|e| e.into_inner());
    let at = users.iter().position(|(_, _, claim)| claim.pool == pool)?;
    let (uid, gid, claim) = users.swap_remove(at);
    Some(BuildUser {
        uid,
        gid,
        claim: Some(claim),
        idle: Some(Arc::clone(idle)),
        no_processes_left: false,
    })
}

impl Drop for BuildUser {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        if let (true, Some(idle)) = (self.no_processes_left, &self.idle) {
            idle.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.uid, self.gid, claim));
            return;
        }
        // The sandbox may not have been reaped (a failed setup, an error while
        // waiting): whatever runs as the uid goes before the uid does, as after every
        // build in Nix.
        let _ = crate::namespace::kill_user_processes(self.uid);
        drop(claim.lock);
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
