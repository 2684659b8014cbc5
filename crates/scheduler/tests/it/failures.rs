//! Failure: propagation, naming, keep-going, stopping, cancellation, panics.

use std::time::Duration;

use crate::fake::{options, run, within, Fake, FakeError, Rec, Spec, HANG_LIMIT};
use kiln_scheduler::{
    Executor, Failure, Known, NoopObserver, Plan, RunContext, RunOutcome, Scheduler,
};

const MS: Duration = Duration::from_millis(1);

fn failing(deps: &[u32]) -> Spec {
    Spec {
        run_error: true,
        ..Spec::needs(deps)
    }
}

#[test]
fn dependency_failure_names_the_dependency_and_the_root() {
    // 3 needs 2 needs 1, and 1 fails.
    for keep_going in [false, true] {
        let fake = Fake::new([
            (1, failing(&[])),
            (2, Spec::needs(&[1])),
            (3, Spec::needs(&[2])),
        ]);
        let r = run(fake, &[3], options(2, keep_going));
        assert!(matches!(r.failure(1), Failure::Run(FakeError(m)) if m == "cannot build 1"));
        assert!(matches!(
            r.failure(2),
            Failure::DependencyFailed { dep: 1, root: 1 }
        ));
        let f3 = r.failure(3);
        assert!(matches!(f3, Failure::DependencyFailed { dep: 2, root: 1 }));
        assert_eq!(f3.to_string(), "dependency 2 failed (root cause: 1)");
        let (root, why) = r.report.root_cause(&3).unwrap();
        assert_eq!((*root, why.to_string().as_str()), (1, "cannot build 1"));
        assert_eq!(r.fake.count(&Rec::Plan(3)), 1, "3 is not planned again");
    }
}

/// One goal fails at once; another is a chain of slow builds.
fn fail_beside_slow_chain() -> Fake {
    let mut specs = vec![(100, failing(&[]))];
    for i in 0..5 {
        let deps: Vec<u32> = if i < 4 { vec![i + 1] } else { vec![] };
        specs.push((i, Spec::needs(&deps).work(60 * MS)));
    }
    Fake::new(specs)
}

#[test]
fn without_keep_going_the_first_failure_stops_new_work() {
    let r = run(fail_beside_slow_chain(), &[100, 0], options(2, false));
    assert!(!r.report.is_success());
    // The chain's bottom was running when 100 failed; it may finish, nothing above starts.
    assert!(
        r.built().len() <= 1,
        "built after the stop: {:?}",
        r.built()
    );
    for k in 0..4 {
        assert!(
            matches!(r.failure(k), Failure::NotAttempted { because: 100 }),
            "{k}: {:?}",
            r.failure(k)
        );
    }
    // The whole chain would take 300 ms.
    assert!(r.elapsed < Duration::from_millis(250), "{:?}", r.elapsed);
}

#[test]
fn with_keep_going_everything_independent_of_the_failure_is_built() {
    let r = run(fail_beside_slow_chain(), &[100, 0], options(2, true));
    assert_eq!(r.built(), (0..5).collect());
    assert!(matches!(r.failure(100), Failure::Run(_)));
    assert!(!r.report.is_success());
}

#[test]
fn keep_going_builds_the_other_branch_of_a_node_whose_first_branch_failed() {
    // 1 needs 2 (fails) and 3 (slow); 4 also needs 3.
    let fake = Fake::new([
        (1, Spec::needs(&[2, 3])),
        (2, failing(&[])),
        (3, Spec::needs(&[]).work(20 * MS)),
        (4, Spec::needs(&[3])),
    ]);
    let r = run(fake, &[1, 4], options(2, true));
    assert!(matches!(
        r.failure(1),
        Failure::DependencyFailed { dep: 2, root: 2 }
    ));
    assert_eq!(r.built(), [3, 4].into());
}

#[test]
fn plan_error_fails_the_key_and_its_dependents() {
    let fake = Fake::new([
        (1, Spec::needs(&[2])),
        (
            2,
            Spec {
                plan_error: true,
                ..Spec::default()
            },
        ),
    ]);
    let r = run(fake, &[1], options(1, true));
    assert!(matches!(r.failure(2), Failure::Plan(FakeError(m)) if m == "cannot plan 2"));
    assert!(matches!(
        r.failure(1),
        Failure::DependencyFailed { dep: 2, root: 2 }
    ));
}

#[test]
fn panicking_run_is_contained_to_its_node() {
    let fake = Fake::new([
        (
            1,
            Spec {
                run_panic: true,
                ..Spec::default()
            },
        ),
        (2, Spec::needs(&[1])),
        (3, Spec::needs(&[]).work(10 * MS)),
    ]);
    let r = run(fake, &[2, 3], options(2, true));
    assert!(
        matches!(r.failure(1), Failure::Panicked(m) if m.contains("fake executor panics on 1"))
    );
    assert!(matches!(
        r.failure(2),
        Failure::DependencyFailed { dep: 1, .. }
    ));
    assert_eq!(r.built(), [3].into());
}

#[test]
fn late_need_of_an_already_failed_key_fails_at_plan_time() {
    // 2 fails at once; 1 asks for it only after the slow 3, when it has long failed.
    let fake = Fake::new([
        (
            1,
            Spec {
                rounds: vec![vec![3], vec![2]],
                ..Spec::default()
            },
        ),
        (2, failing(&[])),
        (3, Spec::needs(&[]).work(30 * MS)),
    ]);
    let r = run(fake, &[2, 1], options(2, true));
    assert!(matches!(
        r.failure(1),
        Failure::DependencyFailed { dep: 2, root: 2 }
    ));
    assert!(r.fake.position(&Rec::Failed(2)) < r.fake.position(&Rec::Built(3)));
}

#[test]
fn running_jobs_are_cancelled_after_a_failure_without_keep_going() {
    let slow = Spec {
        honour_cancel: true,
        work: Duration::from_secs(30),
        ..Spec::default()
    };
    let fake = Fake::new([(1, failing(&[]).work(20 * MS)), (2, slow)]);
    let r = run(fake, &[2, 1], options(2, false));
    assert!(matches!(
        r.failure(2),
        Failure::Cancelled { because: 1, error: FakeError(m) } if m == "2 cancelled"
    ));
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
}

#[test]
fn retry_pending_when_the_run_stops_is_not_attempted_and_not_waited_for() {
    let retrying = Spec {
        retries: 1,
        retry_delay: Duration::from_secs(30),
        ..Spec::default()
    };
    let fake = Fake::new([(1, failing(&[]).work(20 * MS)), (2, retrying)]);
    let r = run(fake, &[2, 1], options(2, false));
    assert!(matches!(r.failure(2), Failure::NotAttempted { because: 1 }));
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
}

/// 0 asks for the same key forever, 2 for nothing, and planning 3 panics.
struct Stubborn;

impl Executor for Stubborn {
    type Key = u32;
    type Output = ();
    type Error = FakeError;

    fn plan(&self, key: &u32, _: &Known<u32, ()>) -> Result<Plan<u32, ()>, FakeError> {
        Ok(match key {
            0 => Plan::Need(vec![1]),
            1 => Plan::Ready,
            3 => panic!("plan of 3 panics"),
            _ => Plan::Need(vec![]),
        })
    }

    fn run(
        &self,
        _: &u32,
        _: &Known<u32, ()>,
        _: &RunContext,
    ) -> Result<RunOutcome<()>, FakeError> {
        Ok(RunOutcome::Built(()))
    }
}

#[test]
fn plan_that_asks_for_nothing_new_fails_instead_of_looping() {
    let report = within(HANG_LIMIT, || {
        Scheduler::new(Stubborn, options(1, true)).run([0, 2], &mut NoopObserver)
    });
    let failure = |k| report.outcome(&k).unwrap().failure().unwrap();
    assert!(matches!(failure(0), Failure::NoProgress));
    assert!(matches!(failure(2), Failure::NoProgress));
    assert!(report.outcome(&1).unwrap().is_success());
}

#[test]
fn panicking_plan_is_contained_to_its_node() {
    let report = within(HANG_LIMIT, || {
        Scheduler::new(Stubborn, options(1, true)).run([3, 1], &mut NoopObserver)
    });
    let failure = report.outcome(&3).unwrap().failure().unwrap();
    assert!(matches!(failure, Failure::Panicked(m) if m == "plan of 3 panics"));
    assert!(report.outcome(&1).unwrap().is_success());
}

/// A panicking observer unwinds out of `run`, but not before running jobs were told to
/// stop, so the panic surfaces promptly instead of after the slowest job.
#[test]
fn observer_panic_cancels_running_jobs_and_propagates() {
    let slow = Spec {
        honour_cancel: true,
        work: Duration::from_secs(30),
        ..Spec::default()
    };
    let fake = Fake::new([(1, slow), (2, Spec::needs(&[]).work(10 * MS))]);
    let started = std::time::Instant::now();
    let result = within(HANG_LIMIT, move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut observer = |e: kiln_scheduler::Event<'_, u32, u64, FakeError>| {
                if let kiln_scheduler::Event::Built { .. } = e {
                    panic!("observer gives up");
                }
            };
            Scheduler::new(&fake, options(2, false)).run([1, 2], &mut observer)
        }))
        .is_err()
    });
    assert!(result, "the observer's panic reaches the caller");
    assert!(started.elapsed() < Duration::from_secs(5));
}
