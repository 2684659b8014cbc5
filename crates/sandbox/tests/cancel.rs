//! Cancelling one running builder from another thread: the scheduler stops
//! sibling jobs after a failure, and Ctrl-C stops them all.

mod common;

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::Fixture;

/// A log that wakes a waiter once the builder has written `started`.
#[derive(Clone, Default)]
struct Log(Arc<(Mutex<Vec<u8>>, Condvar)>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 .0.lock().unwrap().extend_from_slice(buf);
        self.0 .1.notify_all();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn wait_for_start(&self) {
        let (text, woken) = &*self.0;
        let text = text.lock().unwrap();
        let (text, timeout) = woken
            .wait_timeout_while(text, Duration::from_secs(30), |t| {
                !String::from_utf8_lossy(t).contains("started")
            })
            .unwrap();
        assert!(!timeout.timed_out(), "builder never started: {text:?}");
    }
}

fn sleepers(marker: &str) -> usize {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .count()
}

/// A sandbox whose builder sleeps 60 s, cancelled from another thread once it
/// runs, ends at once as `Cancelled` with none of its processes left and its
/// chroot removable, while a sibling sandbox keeps running. Before, the only
/// way to stop a builder from outside was `kill_running_builders`, which killed
/// every builder of the process, the sibling included.
#[test]
fn cancelling_one_builder_kills_its_sandbox_and_spares_its_sibling() {
    common::require_root();
    let f = Fixture::new();
    let marker = |n: u32| format!("{}", 200_000 + 2 * std::process::id() + n);
    let (victim, sibling) = (marker(0), marker(1));
    let specs =
        [&victim, &sibling].map(|m| f.spec(&format!("sleep {m} & echo started; sleep {m}")));
    let prepared = specs.each_ref().map(|s| kiln_sandbox::prepare(s).unwrap());
    let sandboxes = kiln_sandbox::Sandboxes::new(common::helper());
    let launched = prepared.each_ref().map(|p| sandboxes.launch(p).unwrap());
    let handles = launched.each_ref().map(kiln_sandbox::Launched::kill_handle);
    let logs = [Log::default(), Log::default()];
    let (ended, outcomes) = mpsc::channel();
    std::thread::scope(|s| {
        for ((n, l), (p, log)) in launched
            .into_iter()
            .enumerate()
            .zip(prepared.iter().zip(&logs))
        {
            let (mut log, ended) = (log.clone(), ended.clone());
            s.spawn(move || ended.send((n, l.go(p, &mut log))).unwrap());
        }
        logs.iter().for_each(Log::wait_for_start);
        handles[0].kill();
        // Generous: the builder would otherwise sleep for a minute.
        let (n, outcome) = outcomes.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(n, 0, "the sibling ended instead of the cancelled sandbox");
        assert_eq!(outcome.unwrap(), kiln_sandbox::Outcome::Cancelled);
        assert_eq!(
            sleepers(&victim),
            0,
            "processes of the cancelled sandbox survived"
        );
        kiln_sandbox::cleanup(prepared[0].chroot_dir()).unwrap();
        assert!(!prepared[0].chroot_dir().exists());
        assert_eq!(
            sleepers(&sibling),
            2,
            "the sibling did not survive the cancel"
        );
        // Ctrl-C: every builder left is cancelled the same way.
        sandboxes.cancel_all();
        let (n, outcome) = outcomes.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((n, outcome.unwrap()), (1, kiln_sandbox::Outcome::Cancelled));
        assert_eq!(sleepers(&sibling), 0);
        kiln_sandbox::cleanup(prepared[1].chroot_dir()).unwrap();
    });
}

/// A cancel that comes before `go` keeps the builder from ever running.
#[test]
fn a_sandbox_cancelled_before_go_never_runs_its_builder() {
    common::require_root();
    let f = Fixture::new();
    let prepared = kiln_sandbox::prepare(&f.spec("echo ran > $out")).unwrap();
    let launched = common::sandboxes().launch(&prepared).unwrap();
    launched.kill_handle().kill();
    let mut log = Vec::new();
    let outcome = launched.go(&prepared, &mut log).unwrap();
    assert_eq!(outcome, kiln_sandbox::Outcome::Cancelled);
    assert!(!prepared.chroot_store().join(common::OUT_NAME).exists());
    assert!(log.is_empty());
    kiln_sandbox::cleanup(prepared.chroot_dir()).unwrap();
}
