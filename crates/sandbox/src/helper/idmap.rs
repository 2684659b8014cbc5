//! Writing the child's uid/gid maps from the helper (outside the namespace).
//!
//! Nix maps exactly one id each way: the sandbox uid 1000 to the build user
//! (or the calling user) and gid 100 to its group, and denies `setgroups`
//! first (required for an unprivileged writer, done unconditionally by Nix,
//! and visible to the builder in `/proc/self/setgroups`).

use crate::error::errno_text;

/// Writes `uid_map`, `setgroups` = `deny`, `gid_map` for `pid`, in Nix's order.
pub(crate) fn write_maps(
    pid: i32,
    sandbox_uid: u32,
    host_uid: u32,
    sandbox_gid: u32,
    host_gid: u32,
) -> Result<(), String> {
    let write = |file: &str, contents: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, contents.as_bytes()).map_err(|e| {
            format!(
                "writing '{path}' ({contents}): {}",
                errno_text(e.raw_os_error().unwrap_or(0))
            )
        })
    };
    write("uid_map", format!("{sandbox_uid} {host_uid} 1"))?;
    write("setgroups", "deny".to_string())?;
    write("gid_map", format!("{sandbox_gid} {host_gid} 1"))
}
