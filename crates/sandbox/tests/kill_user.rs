//! `kill_user_processes` kills exactly the processes of one uid. Root only: it takes the
//! uid on the calling thread.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Uids no account on a test machine uses, so that nothing but these tests' own
/// sleepers can be killed.
const VICTIM: u32 = 64_997;
const BYSTANDER: u32 = 64_996;

/// `sleep 600` as `uid`, once it runs as `uid`.
fn sleeper(uid: u32) -> Child {
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "sleep",
            "600",
        ])
        .spawn()
        .expect("setpriv");
    if !comes_to_run_as(child.id(), uid) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("setpriv never took uid {uid}");
    }
    child
}

/// Whether `pid`'s real uid becomes `uid` within 10 s.
fn comes_to_run_as(pid: u32, uid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let real = text.lines().find(|l| l.starts_with("Uid:"));
        if real.and_then(|l| l.split_whitespace().nth(1)) == Some(uid.to_string().as_str()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Whether `child` exits (is killed) within 10 s.
fn exits(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Before this function existed, a builder orphaned by a killed kiln ran on beside
/// the next build of its uid; this is the primitive that kills it.
#[test]
fn kills_every_process_of_the_uid_and_nothing_else() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root (scripts/test.sh)"
    );
    let mut victims = [sleeper(VICTIM), sleeper(VICTIM)];
    let mut bystander = sleeper(BYSTANDER);
    kiln_sandbox::kill_user_processes(VICTIM).unwrap();
    for victim in &mut victims {
        assert!(exits(victim), "a process of uid {VICTIM} survived");
    }
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a process of another uid was killed"
    );
    // The calling thread is root again: it may signal the bystander.
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert!(rustix::process::geteuid().is_root());
}

#[test]
fn refuses_root() {
    assert!(kiln_sandbox::kill_user_processes(0).is_err());
}
