//! Finding keys that wait for themselves.
//!
//! Two checks, so that the common case costs nearly nothing and no case can hang:
//!
//! * [`EagerCheck::closing_cycle`], when a plan adds an edge: a breadth-first search of at most
//!   [`EAGER_BUDGET`] nodes from the needed key along what it waits for. It catches the
//!   cycles that occur in practice (a produced derivation that needs its own deriving
//!   path is two or three nodes) at once, so a run without keep-going stops right away.
//! * [`stuck_cycle`], when the run has gone quiet (nothing to plan, run or retry) yet nodes
//!   are unfinished. Then every unfinished node waits for another unfinished one, so
//!   following waits from any of them must come back to a node already seen. This
//!   catches every cycle the bounded search gave up on, in O(nodes + edges) for the
//!   whole run.
//!
//! An exact incremental check (keeping a topological order, Pearce–Kelly) was tried
//! first: on a 5,000-node DAG planned depth-first it moved ~1,000 nodes per edge and made
//! the scheduler quadratic (60–160 µs per node instead of ~8), for no gain on acyclic
//! graphs.

use std::collections::HashMap;

/// How many nodes the eager check may look at per edge. Cycles met in practice are two
/// or three nodes; a larger budget costs every edge into an already planned node (on a
/// 20,000-node DAG, 32 instead of 1 doubled the scheduler's CPU time).
pub(crate) const EAGER_BUDGET: usize = 16;

/// The wait-for relation between unfinished nodes.
pub(crate) trait WaitGraph {
    /// The unfinished nodes `n` waits for (empty unless `n` is waiting); may repeat.
    fn waits_for(&self, n: usize) -> impl Iterator<Item = usize> + '_;
}

/// The eager check, with its scratch space kept between calls so that an edge costs no
/// allocation.
#[derive(Debug, Default)]
pub(crate) struct EagerCheck {
    /// `mark[n] == epoch` when `n` was seen in the current search.
    mark: Vec<u32>,
    epoch: u32,
    /// Nodes seen, each with the index of the entry it was reached from.
    seen: Vec<(usize, usize)>,
}

impl EagerCheck {
    /// If `x` is about to wait for `d` and `d` already (transitively) waits for `x`, the
    /// cycle in "needs" order starting at `x`: each element waits for the next, the last
    /// for `x`. `None` if there is none within the budget. `nodes` bounds the node ids.
    pub(crate) fn closing_cycle<G: WaitGraph>(
        &mut self,
        g: &G,
        nodes: usize,
        x: usize,
        d: usize,
    ) -> Option<Vec<usize>> {
        if x == d {
            return Some(vec![x]);
        }
        self.start(nodes);
        self.visit(d, usize::MAX);
        // Breadth-first, so the cycle reported is a shortest one.
        let mut next = 0;
        while let Some(&(n, _)) = self.seen.get(next) {
            for w in g.waits_for(n) {
                if w == x {
                    return Some(self.cycle(x, next));
                }
                if self.mark[w] != self.epoch {
                    if self.seen.len() == EAGER_BUDGET {
                        return None;
                    }
                    self.visit(w, next);
                }
            }
            next += 1;
        }
        None
    }

    fn start(&mut self, nodes: usize) {
        self.mark.resize(nodes, 0);
        self.seen.clear();
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
    }

    fn visit(&mut self, n: usize, from: usize) {
        self.mark[n] = self.epoch;
        self.seen.push((n, from));
    }

    /// `x`, then the chain of entries from `d` to the entry at `last`.
    fn cycle(&self, x: usize, last: usize) -> Vec<usize> {
        let mut cycle = Vec::new();
        let mut i = last;
        while i != usize::MAX {
            cycle.push(self.seen[i].0);
            i = self.seen[i].1;
        }
        cycle.push(x);
        cycle.reverse();
        cycle
    }
}

/// In a graph where nothing can make progress, follows waits from `start` until a node
/// repeats and returns that cycle in "needs" order. `None` only if a node on the way
/// waits for nothing, which a stuck graph cannot contain.
pub(crate) fn stuck_cycle<G: WaitGraph>(g: &G, start: usize) -> Option<Vec<usize>> {
    let mut path = vec![start];
    let mut position = HashMap::from([(start, 0)]);
    loop {
        let n = *path.last()?;
        let next = g.waits_for(n).next()?;
        if let Some(&i) = position.get(&next) {
            return Some(path.split_off(i));
        }
        position.insert(next, path.len());
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `edges[n]` = what `n` waits for.
    struct Adj(Vec<Vec<usize>>);

    impl WaitGraph for Adj {
        fn waits_for(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
            self.0[n].iter().copied()
        }
    }

    fn closing_cycle(g: &Adj, x: usize, d: usize) -> Option<Vec<usize>> {
        EagerCheck::default().closing_cycle(g, g.0.len(), x, d)
    }

    #[test]
    fn self_wait_is_a_cycle_of_one() {
        assert_eq!(closing_cycle(&Adj(vec![vec![]]), 0, 0), Some(vec![0]));
    }

    #[test]
    fn scratch_space_is_reset_between_searches() {
        let g = Adj(vec![vec![], vec![2], vec![0], vec![2]]);
        let mut check = EagerCheck::default();
        assert_eq!(check.closing_cycle(&g, 4, 0, 1), Some(vec![0, 1, 2]));
        assert_eq!(check.closing_cycle(&g, 4, 0, 3), Some(vec![0, 3, 2]));
        assert_eq!(check.closing_cycle(&g, 4, 1, 3), None);
    }

    #[test]
    fn closing_edge_reports_the_shortest_cycle_in_needs_order() {
        // 1 waits for 2 and 3, 2 for 0, 3 for 4, 4 for 0. 0 now needs 1.
        let g = Adj(vec![vec![], vec![3, 2], vec![0], vec![4], vec![0]]);
        assert_eq!(closing_cycle(&g, 0, 1), Some(vec![0, 1, 2]));
    }

    #[test]
    fn acyclic_edge_is_accepted() {
        let g = Adj(vec![vec![], vec![2], vec![]]);
        assert_eq!(closing_cycle(&g, 0, 1), None);
    }

    #[test]
    fn long_cycle_is_left_to_the_stuck_check() {
        // 1 → 2 → … → 99 → 0: longer than the budget.
        let mut edges: Vec<Vec<usize>> = (0..100).map(|i| vec![i + 1]).collect();
        edges[99] = vec![0];
        edges[0] = vec![];
        let g = Adj(edges);
        assert_eq!(closing_cycle(&g, 0, 1), None);
        let mut closed = g.0.clone();
        closed[0] = vec![1];
        let cycle = stuck_cycle(&Adj(closed), 0).unwrap();
        assert_eq!(cycle, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn stuck_walk_from_a_waiter_of_a_cycle_returns_only_the_cycle() {
        // 0 waits for 1; 1 → 2 → 3 → 1.
        let g = Adj(vec![vec![1], vec![2], vec![3], vec![1]]);
        assert_eq!(stuck_cycle(&g, 0), Some(vec![1, 2, 3]));
    }

    #[test]
    fn stuck_walk_reaching_a_node_that_waits_for_nothing_finds_nothing() {
        assert_eq!(stuck_cycle(&Adj(vec![vec![1], vec![]]), 0), None);
    }
}
