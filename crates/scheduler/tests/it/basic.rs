//! Shapes of graphs: dedup, order, job limits.

use std::time::Duration;

use crate::fake::{options, run, Ev, Fake, Rec, Spec};
use kiln_scheduler::{Decision, Event, NoopObserver, Outcome, Scheduler};

const MS: Duration = Duration::from_millis(1);

fn diamond() -> Fake {
    // 1 needs 2 and 3, which both need 4.
    Fake::new([
        (1, Spec::needs(&[2, 3])),
        (2, Spec::needs(&[4]).work(5 * MS)),
        (3, Spec::needs(&[4]).work(5 * MS)),
        (4, Spec::needs(&[]).work(5 * MS)),
    ])
}

#[test]
fn diamond_builds_the_shared_bottom_once_and_first() {
    for jobs in [1, 2, 4] {
        let r = run(diamond(), &[1], options(jobs, false));
        assert!(r.report.is_success());
        assert_eq!(r.built(), [1, 2, 3, 4].into());
        assert_eq!(r.fake.count(&Rec::Plan(4)), 1, "4 planned once");
        let pos = |k| r.fake.position(&Rec::Built(k)).unwrap();
        assert!(pos(4) < pos(2) && pos(4) < pos(3));
        assert!(pos(2) < pos(1) && pos(3) < pos(1));
    }
}

#[test]
fn diamond_branches_run_in_parallel_with_two_jobs() {
    let fake = Fake::new([
        (1, Spec::needs(&[2, 3])),
        (2, Spec::needs(&[]).work(100 * MS)),
        (3, Spec::needs(&[]).work(100 * MS)),
    ]);
    let r = run(fake, &[1], options(2, false));
    assert_eq!(
        r.fake.max_running.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[test]
fn long_chain_builds_bottom_up_each_once() {
    const N: u32 = 400;
    let fake = Fake::new((0..N).map(|i| {
        let deps: Vec<u32> = if i + 1 < N { vec![i + 1] } else { vec![] };
        (i, Spec::needs(&deps))
    }));
    let r = run(fake, &[0], options(3, false));
    assert_eq!(r.built().len(), N as usize);
    let order: Vec<u32> = r
        .fake
        .records()
        .into_iter()
        .filter_map(|rec| match rec {
            Rec::Built(k) => Some(k),
            _ => None,
        })
        .collect();
    assert_eq!(order, (0..N).rev().collect::<Vec<_>>());
}

#[test]
fn goals_requested_twice_and_sharing_deps_are_built_once() {
    let fake = Fake::new([
        (1, Spec::needs(&[3])),
        (2, Spec::needs(&[3])),
        (3, Spec::needs(&[])),
    ]);
    let r = run(fake, &[1, 2, 1, 3, 2], options(2, false));
    let goals: Vec<u32> = r.report.goals().map(|(k, _)| *k).collect();
    assert_eq!(goals, [1, 2, 3]);
    // 1 and 2 are planned twice (Need, then Ready), 3 once (Ready).
    for (k, plans) in [(1, 2), (2, 2), (3, 1)] {
        assert_eq!(r.fake.count(&Rec::Built(k)), 1);
        assert_eq!(r.fake.count(&Rec::Plan(k)), plans);
    }
}

#[test]
fn job_limit_is_reached_and_never_exceeded() {
    for jobs in [1, 3] {
        let fake = Fake::new((0..12).map(|i| (i, Spec::needs(&[]).work(20 * MS))));
        let goals: Vec<u32> = (0..12).collect();
        let r = run(fake, &goals, options(jobs, false));
        assert_eq!(
            r.fake.max_running.load(std::sync::atomic::Ordering::SeqCst),
            jobs
        );
        let slots: std::collections::BTreeSet<usize> = r
            .events
            .iter()
            .filter_map(|e| match e {
                Ev::Started(_, slot) => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(slots, (0..jobs).collect());
    }
}

#[test]
fn valid_key_is_skipped_without_planning_its_dependencies() {
    let mut valid = Spec::needs(&[3]);
    valid.valid = true;
    let fake = Fake::new([(1, Spec::needs(&[2])), (2, valid), (3, Spec::needs(&[]))]);
    let r = run(fake, &[1], options(1, false));
    assert!(matches!(r.outcome(2), Outcome::Skipped(_)));
    assert!(r.report.outcome(&3).is_none(), "3 was never needed");
    assert_eq!(r.fake.count(&Rec::Plan(3)), 0);
    assert_eq!(r.built(), [1].into());
}

#[test]
fn no_goals_give_an_empty_report() {
    let fake = Fake::new([]);
    let report = Scheduler::new(&fake, options(2, false)).run([], &mut NoopObserver);
    assert!(report.is_success());
    assert_eq!(report.nodes().count(), 0);
}

#[test]
fn progress_counts_grow_with_the_graph_and_end_complete() {
    let r = run(diamond(), &[1], options(2, false));
    let progress: Vec<(usize, usize)> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Progress(d, t, _) => Some((*d, *t)),
            _ => None,
        })
        .collect();
    assert!(progress
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    assert_eq!(
        progress.first().map(|p| p.1),
        Some(1),
        "starts with the goal only"
    );
    assert_eq!(progress.last(), Some(&(4, 4)));
}

#[test]
fn observer_sees_each_plan_with_its_needs_before_anything_runs_on_them() {
    let fake = diamond();
    let mut seen: Vec<String> = Vec::new();
    let mut observer = |e: Event<'_, u32, u64, crate::fake::FakeError>| match e {
        Event::Planned { key, decision } => seen.push(match decision {
            Decision::Need(keys) => format!("plan {key} need {keys:?}"),
            Decision::Ready => format!("plan {key} ready"),
            Decision::Done => format!("plan {key} done"),
        }),
        Event::Started { key, .. } => seen.push(format!("start {key}")),
        Event::Built { key, output } => seen.push(format!("built {key} {}", *output > 0)),
        _ => {}
    };
    let report = Scheduler::new(&fake, options(1, false)).run([1], &mut observer);
    assert!(report.is_success());
    let at = |event: &str| {
        let found: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == event).collect();
        assert_eq!(found.len(), 1, "{event} in {seen:?}");
        found[0]
    };
    // The first plan of each key says what it needs.
    at("plan 1 need [2, 3]");
    at("plan 2 need [4]");
    at("plan 3 need [4]");
    for (key, deps) in [(4, vec![]), (2, vec![4]), (3, vec![4]), (1, vec![2, 3])] {
        let ready = at(&format!("plan {key} ready"));
        for dep in deps {
            assert!(
                at(&format!("built {dep} true")) < ready,
                "{dep} before {key}"
            );
        }
        assert!(ready < at(&format!("start {key}")));
        assert!(at(&format!("start {key}")) < at(&format!("built {key} true")));
    }
}
