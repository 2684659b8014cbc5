//! The floor under a sequential build step on this machine: how long it takes just to
//! start a trivial builder, without any store work (no locks, database, scanning or
//! registration), measured three ways, step after step:
//!
//! * `spawn`: fork and exec busybox `sh -c 'echo 1 > FILE'` with no sandbox at all;
//! * `sandbox`: kiln's sandbox alone (prepare the chroot, run the builder) for the same
//!   builder, as `kiln build` uses it;
//! * `staged`: the part of that left once the sandbox was set up ahead, as `kiln build`
//!   does for the next step of a chain: from letting the builder go to its end;
//! * Nix's sandboxed step, from the `realise` bench, for comparison.
//!
//! Run as root: `cargo build --release -p kiln -p kiln-bench &&
//! target/release/sandbox-floor [--steps N] [--dir DIR]`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use kiln_bench::{kiln_binary, BenchArgs};
use kiln_sandbox::{InputPath, SandboxSpec};

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse("kiln-bench-floor-", 1)?;
    let steps = args.number("--steps", 200)?;
    let work = args.work.path();
    let sandboxes = kiln_sandbox::Sandboxes::new(kiln_binary()?);

    let store = work.join("store");
    let busybox = store.join("00000000000000000000000000000000-busybox");
    std::fs::create_dir_all(&busybox)?;
    std::fs::copy("/bin/busybox", busybox.join("sh")).context("copying /bin/busybox")?;

    let out = work.join("spawn-out");
    let start = Instant::now();
    for i in 0..steps {
        let status = std::process::Command::new(busybox.join("sh"))
            .arg("-c")
            .arg(format!("echo {i} > {}", out.display()))
            .status()?;
        anyhow::ensure!(status.success(), "busybox failed");
    }
    let spawn = start.elapsed().as_secs_f64() / steps as f64;

    // The uid kiln's build users would have as root; any unused one will do.
    let (uid, gid) = if rustix::process::geteuid().is_root() {
        (30_999, 30_999)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    };
    let mut sandbox = 0.0;
    for i in 0..steps {
        sandbox += sandboxed_step(&store, &busybox, work, &sandboxes, i, uid, gid, false)?;
    }
    let sandbox = sandbox / steps as f64;
    let mut staged = 0.0;
    for i in steps..2 * steps {
        staged += sandboxed_step(&store, &busybox, work, &sandboxes, i, uid, gid, true)?;
    }
    let staged = staged / steps as f64;
    // Stops the helper and deletes the kept skeletons.
    drop(sandboxes);

    println!("# sequential trivial builder steps ({steps} each)");
    println!("spawn (no sandbox):      {:.2} ms/step", spawn * 1000.0);
    println!("kiln sandbox, no store:  {:.2} ms/step", sandbox * 1000.0);
    println!("  of which after staging: {:.2} ms/step", staged * 1000.0);
    Ok(())
}

/// One step; with `staged`, only from letting the builder go (the sandbox was launched
/// and given time to set itself up) to its end.
#[allow(clippy::too_many_arguments)]
fn sandboxed_step(
    store: &Path,
    busybox: &Path,
    work: &Path,
    sandboxes: &kiln_sandbox::Sandboxes,
    i: usize,
    uid: u32,
    gid: u32,
    staged: bool,
) -> anyhow::Result<f64> {
    let chroot = store.join(format!("{i:032}-step.drv.chroot"));
    let build = work.join(format!("nix-build-step-{i}"));
    std::fs::create_dir(&build)?;
    rustix::fs::chown(
        &build,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    let sh = "/nix/store/00000000000000000000000000000000-busybox/sh";
    let mut spec = SandboxSpec::new(sh, &chroot, &build, uid, gid);
    spec.args = vec![b"-c".to_vec(), format!("echo {i} > $out").into_bytes()];
    spec.env = vec![
        (
            b"out".to_vec(),
            b"/nix/store/00000000000000000000000000000000-out".to_vec(),
        ),
        (b"PATH".to_vec(), b"/path-not-set".to_vec()),
    ];
    spec.inputs.push(InputPath::new(
        "00000000000000000000000000000000-busybox",
        busybox.to_path_buf(),
    ));
    // Timed: what a build step waits for. Removing the build directory and recycling
    // the chroot happen off that path in kiln, so they are left out.
    let mut start = Instant::now();
    let prepared = sandboxes.prepare(&spec)?;
    let launched = sandboxes.launch(&prepared)?;
    if staged {
        std::thread::sleep(std::time::Duration::from_millis(5));
        start = Instant::now();
    }
    let outcome = launched.go(&prepared, &mut std::io::sink())?;
    let took = start.elapsed().as_secs_f64();
    anyhow::ensure!(outcome.success(), "step {i}: {outcome:?}");
    let aside = store.join(format!("{i:032}-aside"));
    std::fs::rename(prepared.chroot_dir(), &aside)?;
    sandboxes.recycle(prepared.skeleton(), &aside)?;
    std::fs::remove_dir_all(&build)?;
    Ok(took)
}
