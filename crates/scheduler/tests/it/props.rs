//! Random graphs with random failures, retries and valid keys: every invariant of the
//! crate documentation, checked by `fake::check_invariants` after each run.

use std::time::Duration;

use proptest::prelude::*;

use crate::fake::{options, run, Fake, Key, Spec};

#[derive(Debug, Clone)]
struct NodeGen {
    deps: Vec<u32>,
    split: usize,
    roll: u8,
    retry_roll: u8,
    retries: u32,
    work_us: u64,
}

fn node_gen(n: u32) -> impl Strategy<Value = NodeGen> {
    (
        proptest::collection::vec(0..n, 0..4),
        0usize..4,
        0u8..100,
        0u8..100,
        1u32..3,
        0u64..1500,
    )
        .prop_map(
            |(deps, split, roll, retry_roll, retries, work_us)| NodeGen {
                deps,
                split,
                roll,
                retry_roll,
                retries,
                work_us,
            },
        )
}

/// Specs and goals. Without `cycles`, node `i` only needs nodes above `i`.
fn graph(max_nodes: u32, cycles: bool) -> impl Strategy<Value = (Vec<(Key, Spec)>, Vec<Key>)> {
    (1..max_nodes).prop_flat_map(move |n| {
        (
            proptest::collection::vec(node_gen(n), n as usize),
            proptest::collection::vec(0..n, 1..6),
        )
            .prop_map(move |(nodes, goals)| {
                let specs = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, g)| (i as Key, spec(i as Key, g, cycles)))
                    .collect();
                (specs, goals)
            })
    })
}

fn spec(i: Key, g: NodeGen, cycles: bool) -> Spec {
    let mut deps: Vec<Key> = g.deps.into_iter().filter(|&d| cycles || d > i).collect();
    deps.dedup();
    let split = g.split.min(deps.len());
    let second = deps.split_off(split);
    let rounds = [deps, second]
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    Spec {
        rounds,
        plan_error: g.roll < 4,
        run_error: (4..10).contains(&g.roll),
        valid: (10..20).contains(&g.roll),
        retries: if g.retry_roll < 15 { g.retries } else { 0 },
        retry_delay: Duration::from_micros(u64::from(g.retry_roll) * 20),
        work: Duration::from_micros(g.work_us),
        ..Spec::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_keep_every_invariant(
        (specs, goals) in graph(40, false),
        jobs in 1usize..5,
        keep_going in any::<bool>(),
    ) {
        run(Fake::new(specs), &goals, options(jobs, keep_going));
    }

    #[test]
    fn random_graphs_with_cycles_never_hang_or_drop_a_key(
        (specs, goals) in graph(25, true),
        jobs in 1usize..4,
        keep_going in any::<bool>(),
    ) {
        run(Fake::new(specs), &goals, options(jobs, keep_going));
    }
}
