//! `RunOutcome::Retry`: the slot is released while waiting.

use std::time::Duration;

use crate::fake::{options, run, Ev, Fake, Rec, Spec};

const MS: Duration = Duration::from_millis(1);

fn retrying(times: u32, delay: Duration) -> Spec {
    Spec {
        retries: times,
        retry_delay: delay,
        ..Spec::default()
    }
}

#[test]
fn retrying_node_does_not_block_an_independent_one_with_one_job() {
    let fake = Fake::new([
        (1, retrying(1, 150 * MS)),
        (2, Spec::needs(&[]).work(20 * MS)),
    ]);
    let r = run(fake, &[1, 2], options(1, false));
    assert_eq!(
        r.fake
            .records()
            .into_iter()
            .filter(|x| !matches!(x, Rec::Plan(_)))
            .collect::<Vec<_>>(),
        [
            Rec::Start(1, 0),
            Rec::Retry(1),
            Rec::Start(2, 0),
            Rec::Built(2),
            Rec::Start(1, 0),
            Rec::Built(1),
        ]
    );
    // The second attempt waited out the delay.
    let log = r.fake.log.lock().unwrap();
    let retried = log.iter().find(|(_, x)| *x == Rec::Retry(1)).unwrap().0;
    let restarted = log
        .iter()
        .filter(|(_, x)| *x == Rec::Start(1, 0))
        .nth(1)
        .unwrap()
        .0;
    assert!(restarted - retried >= 150 * MS);
}

#[test]
fn retries_repeat_until_built_and_dependents_wait_for_the_build() {
    let fake = Fake::new([(1, retrying(3, 5 * MS)), (2, Spec::needs(&[1]))]);
    let r = run(fake, &[2], options(2, false));
    assert_eq!(r.fake.count(&Rec::Retry(1)), 3);
    assert_eq!(
        r.events.iter().filter(|e| **e == Ev::Retrying(1)).count(),
        3
    );
    assert_eq!(r.built(), [1, 2].into());
}

#[test]
fn many_retrying_nodes_share_few_slots() {
    // 20 nodes that each wait once: with 2 slots, all first attempts happen before any
    // retry deadline, i.e. waiting nodes never hold a slot.
    let fake = Fake::new((0..20).map(|i| (i, retrying(1, 200 * MS))));
    let goals: Vec<u32> = (0..20).collect();
    let r = run(fake, &goals, options(2, false));
    let records = r.fake.records();
    let last_first_try = (0..20)
        .map(|k| records.iter().position(|x| *x == Rec::Retry(k)).unwrap())
        .max()
        .unwrap();
    let first_build = records
        .iter()
        .position(|x| matches!(x, Rec::Built(_)))
        .unwrap();
    assert!(last_first_try < first_build);
    assert_eq!(r.built().len(), 20);
}
