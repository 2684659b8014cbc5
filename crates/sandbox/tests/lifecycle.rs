//! What a `Sandboxes` handle owns ends with it. Alone in its test binary, so
//! that every sandbox helper child of this process is this test's.

mod common;

use common::{Fixture, OUT_NAME};

/// Children of this process (running or not yet reaped) that are sandbox
/// helpers: the kernel's `comm` is the executable's name, cut to 15 bytes.
fn helper_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let exe = common::helper();
    let name = exe.file_name().unwrap().as_encoded_bytes();
    let comm = String::from_utf8_lossy(&name[..name.len().min(15)]).into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid ...`; comm may hold spaces, not ')'.
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                return false;
            };
            head.ends_with(&format!("({comm}")) && tail.split(' ').nth(1) == Some(me.as_str())
        })
        .collect()
}

/// Dropping the handle stops (and reaps) the helper processes it started and
/// deletes the chroot skeletons it kept for later builds. Before, helpers and
/// skeletons lived in process-wide statics: the helpers ran until the process
/// exited, and the skeletons stayed unless the caller remembered to call
/// `discard_recycled` after every other thread that might recycle had finished.
#[test]
fn dropping_the_sandboxes_stops_its_helpers_and_deletes_kept_skeletons() {
    common::require_root();
    let f = Fixture::new();
    let sandboxes = kiln_sandbox::Sandboxes::new(common::helper());
    let prepared = sandboxes.prepare(&f.spec("echo x > $out")).unwrap();
    let outcome = sandboxes.run(&prepared, &mut Vec::new()).unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert!(prepared.chroot_store().join(OUT_NAME).exists());
    let aside = f.store.join("kept-skeleton");
    std::fs::rename(prepared.chroot_dir(), &aside).unwrap();
    sandboxes.recycle(prepared.skeleton(), &aside).unwrap();
    assert!(aside.exists(), "the skeleton is kept for a later build");
    assert!(!helper_children().is_empty(), "no helper was started");

    drop(sandboxes);
    assert_eq!(
        helper_children(),
        Vec::<String>::new(),
        "helpers outlived the handle"
    );
    assert!(!aside.exists(), "a kept skeleton outlived the handle");
}
