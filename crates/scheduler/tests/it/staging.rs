//! `Executor::stage`: a free slot sets up what waits only for running jobs, never more
//! than the free slots allow, and whatever is staged but never runs is unstaged.

use std::time::Duration;

use crate::fake::{options, run, Fake, Rec, Spec};

const WORK: Duration = Duration::from_millis(100);

fn chain() -> Fake {
    // 1 needs 2 needs 3.
    Fake::new([
        (1, Spec::needs(&[2]).work(WORK)),
        (2, Spec::needs(&[3]).work(WORK)),
        (3, Spec::needs(&[]).work(WORK)),
    ])
}

#[test]
fn a_free_slot_stages_the_next_step_of_a_chain_while_its_input_runs() {
    let r = run(chain(), &[1], options(2, false));
    assert!(r.report.is_success());
    let pos = |rec| {
        r.fake
            .position(&rec)
            .unwrap_or_else(|| panic!("no {rec:?}"))
    };
    let started_3 = r
        .fake
        .records()
        .iter()
        .position(|rec| matches!(rec, Rec::Start(3, _)))
        .unwrap();
    assert!(started_3 < pos(Rec::Stage(2)));
    assert!(pos(Rec::Stage(2)) < pos(Rec::Built(3)));
    assert!(pos(Rec::Stage(1)) < pos(Rec::Built(2)));
    assert_eq!(r.fake.count(&Rec::Stage(3)), 0, "3 was ready, not waiting");
    for k in [1, 2] {
        assert_eq!(r.fake.count(&Rec::Stage(k)), 1);
        assert_eq!(r.fake.count(&Rec::Unstage(k)), 0, "{k} ran");
    }
}

#[test]
fn one_slot_leaves_nothing_free_to_stage() {
    let r = run(chain(), &[1], options(1, false));
    assert!(r.report.is_success());
    let staged = r
        .fake
        .records()
        .into_iter()
        .filter(|rec| matches!(rec, Rec::Stage(_)))
        .count();
    assert_eq!(staged, 0);
}

#[test]
fn staging_never_holds_more_than_the_free_slots() {
    // While 10 runs, 2..=9 all wait only for it; with three slots, two may be staged.
    let mut specs = vec![(1, Spec::needs(&[2, 3, 4, 5, 6, 7, 8, 9]))];
    specs.extend((2..=9).map(|k| (k, Spec::needs(&[10]).work(WORK))));
    specs.push((10, Spec::needs(&[]).work(WORK)));
    let r = run(Fake::new(specs), &[1], options(3, false));
    assert!(r.report.is_success());
    let records = r.fake.records();
    let built_10 = r.fake.position(&Rec::Built(10)).unwrap();
    let staged_early = records[..built_10]
        .iter()
        .filter(|rec| matches!(rec, Rec::Stage(_)))
        .count();
    assert!((1..=2).contains(&staged_early), "{records:?}");
}

#[test]
fn a_staged_step_whose_input_fails_is_unstaged_and_never_runs() {
    let mut failing = Spec::needs(&[]).work(WORK);
    failing.run_error = true;
    let fake = Fake::new([(2, Spec::needs(&[3]).work(WORK)), (3, failing)]);
    let r = run(fake, &[2], options(2, false));
    assert!(!r.report.is_success());
    let pos = |rec| {
        r.fake
            .position(&rec)
            .unwrap_or_else(|| panic!("no {rec:?}"))
    };
    assert!(pos(Rec::Stage(2)) < pos(Rec::Unstage(2)));
    assert!(!r
        .fake
        .records()
        .iter()
        .any(|rec| matches!(rec, Rec::Start(2, _))));
}
