//! Cycles fail with their members named, never hang.

use std::time::Duration;

use crate::fake::{options, run, Fake, Rec, Spec};
use kiln_scheduler::Failure;

#[test]
fn static_cycle_fails_every_member_and_names_them() {
    // 1 needs 2 needs 3 needs 1; 0 sits above the cycle.
    let fake = Fake::new([
        (0, Spec::needs(&[1])),
        (1, Spec::needs(&[2])),
        (2, Spec::needs(&[3])),
        (3, Spec::needs(&[1])),
    ]);
    let r = run(fake, &[0], options(2, true));
    for k in [1, 2, 3] {
        let Failure::Cycle(cycle) = r.failure(k) else {
            panic!("{k}: {:?}", r.failure(k));
        };
        let mut members = cycle.clone();
        members.sort();
        assert_eq!(members, [1, 2, 3]);
        assert!(r.failure(k).to_string().starts_with("dependency cycle: "));
    }
    assert!(matches!(
        r.failure(0),
        Failure::DependencyFailed { dep: 1, .. }
    ));
    assert!(r.built().is_empty());
}

#[test]
fn key_needing_itself_is_a_cycle_of_one() {
    let fake = Fake::new([(1, Spec::needs(&[1]))]);
    let r = run(fake, &[1], options(1, false));
    assert!(matches!(r.failure(1), Failure::Cycle(c) if c == &[1]));
}

#[test]
fn cycle_with_keep_going_leaves_independent_work_alone() {
    let fake = Fake::new([
        (1, Spec::needs(&[2])),
        (2, Spec::needs(&[1])),
        (5, Spec::needs(&[6]).work(Duration::from_millis(10))),
        (6, Spec::needs(&[])),
    ]);
    let r = run(fake, &[1, 5], options(2, true));
    assert_eq!(r.built(), [5, 6].into());
}

/// A short cycle is found when its last edge is added, so a run without keep-going stops
/// before independent work starts (had it waited for the run to go quiet, 5 would have
/// been built first).
#[test]
fn short_cycle_stops_the_run_at_once_without_keep_going() {
    let fake = Fake::new([
        (1, Spec::needs(&[2])),
        (2, Spec::needs(&[1])),
        (5, Spec::needs(&[])),
    ]);
    let r = run(fake, &[1, 5], options(2, false));
    assert!(matches!(
        r.failure(5),
        Failure::NotAttempted { because: 1 | 2 }
    ));
}

#[test]
fn cycle_that_appears_only_after_a_build_is_caught() {
    // 1 first needs 5 (a real build); only then does it ask for 2, which needs 1.
    let fake = Fake::new([
        (
            1,
            Spec {
                rounds: vec![vec![5], vec![2]],
                ..Spec::default()
            },
        ),
        (2, Spec::needs(&[1])),
        (5, Spec::needs(&[]).work(Duration::from_millis(10))),
    ]);
    let r = run(fake, &[1], options(2, true));
    assert_eq!(r.built(), [5].into());
    assert!(matches!(r.failure(1), Failure::Cycle(c) if c.len() == 2));
    assert!(matches!(r.failure(2), Failure::Cycle(_)));
    assert_eq!(r.fake.count(&Rec::Plan(2)), 1);
}

#[test]
fn cycle_through_a_shared_node_reached_by_two_paths() {
    // 1 needs 2 and 3; 2 needs 4; 3 needs 4; 4 needs 3 (cycle 3-4), 2 only above it.
    let fake = Fake::new([
        (1, Spec::needs(&[2, 3])),
        (2, Spec::needs(&[4])),
        (3, Spec::needs(&[4])),
        (4, Spec::needs(&[3])),
    ]);
    let r = run(fake, &[1], options(2, true));
    assert!(matches!(r.failure(3), Failure::Cycle(_)));
    assert!(matches!(r.failure(4), Failure::Cycle(_)));
    assert!(matches!(
        r.failure(2),
        Failure::DependencyFailed { dep: 4, .. }
    ));
    assert!(matches!(r.failure(1), Failure::DependencyFailed { .. }));
}

/// Longer than the eager check looks (16 nodes), so only the check made when the run
/// goes quiet can find it; independent work still finishes first.
#[test]
fn long_cycle_is_caught_when_the_run_goes_quiet() {
    const N: u32 = 40;
    for keep_going in [true, false] {
        let mut specs: Vec<(u32, Spec)> =
            (0..N).map(|i| (i, Spec::needs(&[(i + 1) % N]))).collect();
        // 100 sits above the cycle; 200 is independent and slow.
        specs.push((100, Spec::needs(&[0])));
        specs.push((200, Spec::needs(&[]).work(Duration::from_millis(30))));
        let r = run(Fake::new(specs), &[100, 200], options(2, keep_going));
        for k in 0..N {
            let Failure::Cycle(cycle) = r.failure(k) else {
                panic!("{k}: {:?}", r.failure(k));
            };
            assert_eq!(cycle.len(), N as usize);
        }
        assert!(matches!(
            r.failure(100),
            Failure::DependencyFailed { dep: 0, .. }
        ));
        assert_eq!(r.built(), [200].into(), "independent work is not held up");
    }
}
