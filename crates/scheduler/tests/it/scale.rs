//! Thousands of nodes: the scheduler's own cost per node must stay small.

use std::time::Duration;

use crate::fake::{options, run, Fake, Key, Spec};

/// A deterministic pseudo-random sequence (no dependency needed for a test graph).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` nodes; node `i` needs 0–4 nodes among the next 200 (locality, as in real package
/// sets) and, now and then, a far one; every node is needed by some earlier node, so
/// node 0 reaches everything.
pub fn random_dag(n: u32, seed: u64) -> Fake {
    let mut rng = Lcg::new(seed);
    let mut deps: Vec<Vec<Key>> = vec![Vec::new(); n as usize];
    for i in 1..n {
        let parent = i - 1 - rng.below(u64::from(i.min(50))) as u32;
        deps[parent as usize].push(i);
    }
    for (i, d) in deps.iter_mut().enumerate() {
        let i = i as u32;
        for _ in 0..rng.below(5) {
            let far = rng.below(10) == 0;
            let span = if far { n - i } else { (n - i).min(200) };
            if span > 1 {
                d.push(i + 1 + rng.below(u64::from(span - 1)) as u32);
            }
        }
        d.sort_unstable();
        d.dedup();
    }
    Fake::new(
        deps.into_iter()
            .enumerate()
            .map(|(i, d)| (i as u32, Spec::needs(&d))),
    )
}

fn per_node(total: Duration, nodes: usize) -> Duration {
    total / nodes as u32
}

#[test]
fn five_thousand_node_dag_from_one_goal() {
    let r = run(random_dag(5000, 1), &[0], options(2, false));
    assert_eq!(r.built().len(), 5000);
    eprintln!(
        "5000-node DAG, one goal, -j2: {:?} ({:?}/node, debug build)",
        r.elapsed,
        per_node(r.elapsed, 5000)
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[test]
fn five_thousand_nodes_all_requested_in_scrambled_order() {
    // Goals in random order make many edges go against the creation order, which is the
    // expensive case for the cycle check.
    let mut rng = Lcg::new(7);
    let mut goals: Vec<Key> = (0..5000).collect();
    for i in (1..goals.len()).rev() {
        goals.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let r = run(random_dag(5000, 2), &goals, options(2, true));
    assert_eq!(r.built().len(), 5000);
    eprintln!(
        "5000-node DAG, all goals scrambled, -j2: {:?} ({:?}/node, debug build)",
        r.elapsed,
        per_node(r.elapsed, 5000)
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[test]
fn five_thousand_independent_goals_with_four_jobs() {
    let fake = Fake::new((0..5000).map(|i| (i, Spec::needs(&[]))));
    let goals: Vec<Key> = (0..5000).collect();
    let r = run(fake, &goals, options(4, false));
    assert_eq!(r.built().len(), 5000);
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}
