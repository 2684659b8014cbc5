//! Incremental cycle detection (Pearce–Kelly).
//!
//! A topological order of the unfinished part of the graph is kept and repaired as edges
//! are added, so the edge that would close a cycle is refused the moment it is added —
//! not when the run later goes quiet — and a cycle never turns into a hang. Searches are
//! confined to the nodes between the two ends of a misordered edge; an edge that already
//! agrees with the order costs O(1). New nodes get ever lower positions because the graph
//! grows downwards (a key is created by the node that needs it), which keeps the common
//! edge "existing node needs new node" in the O(1) case.

const NONE: usize = usize::MAX;

/// The graph as the order sees it. An edge `before → after` means `after` waits for
/// `before`; the adjacency lists may hold stale entries, filtered by `is_live`.
pub(crate) trait Edges {
    /// Candidates for nodes that wait for `n`.
    fn after(&self, n: usize) -> &[usize];
    /// Candidates for nodes `n` waits for.
    fn before(&self, n: usize) -> &[usize];
    fn is_live(&self, before: usize, after: usize) -> bool;
}

#[derive(Debug, Default)]
pub(crate) struct TopoOrder {
    ord: Vec<i64>,
    mark: Vec<u32>,
    parent: Vec<usize>,
    epoch: u32,
    next: i64,
    // Scratch space, kept to avoid allocating per edge.
    stack: Vec<usize>,
    forward: Vec<usize>,
    backward: Vec<usize>,
    pool: Vec<i64>,
}

impl TopoOrder {
    /// Registers node `len()`.
    pub(crate) fn add_node(&mut self) {
        self.ord.push(self.next);
        self.next -= 1;
        self.mark.push(0);
        self.parent.push(NONE);
    }

    /// Adds `before → after`, or refuses it and returns the cycle it would close, in
    /// "needs" order starting at `after`: each element waits for the next, the last for
    /// the first.
    pub(crate) fn add_edge<G: Edges>(
        &mut self,
        g: &G,
        before: usize,
        after: usize,
    ) -> Result<(), Vec<usize>> {
        if before == after {
            return Err(vec![after]);
        }
        let lower = self.ord[after];
        let upper = self.ord[before];
        if upper < lower {
            return Ok(());
        }
        self.new_epoch();

        // Everything that (transitively) waits for `after` and sits below `before`; if
        // `before` is among them, it already waits for `after`.
        self.forward.clear();
        self.visit(after, NONE);
        while let Some(n) = self.stack.pop() {
            self.forward.push(n);
            for &w in g.after(n) {
                if !g.is_live(n, w) {
                    continue;
                }
                if w == before {
                    self.stack.clear();
                    return Err(self.cycle(after, before, n));
                }
                if self.mark[w] != self.epoch && self.ord[w] < upper {
                    self.visit(w, n);
                }
            }
        }

        // Everything `before` (transitively) waits for that sits above `after`.
        self.backward.clear();
        self.visit(before, NONE);
        while let Some(n) = self.stack.pop() {
            self.backward.push(n);
            for &p in g.before(n) {
                if g.is_live(p, n) && self.mark[p] != self.epoch && self.ord[p] > lower {
                    self.visit(p, NONE);
                }
            }
        }

        self.reorder();
        Ok(())
    }

    fn visit(&mut self, n: usize, parent: usize) {
        self.mark[n] = self.epoch;
        self.parent[n] = parent;
        self.stack.push(n);
    }

    fn new_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
    }

    /// Gives the backward set the lowest of the positions both sets occupy and the
    /// forward set the rest, each keeping its internal order.
    fn reorder(&mut self) {
        let ord = &mut self.ord;
        self.backward.sort_unstable_by_key(|&n| ord[n]);
        self.forward.sort_unstable_by_key(|&n| ord[n]);
        self.pool.clear();
        self.pool
            .extend(self.backward.iter().chain(&self.forward).map(|&n| ord[n]));
        self.pool.sort_unstable();
        for (&n, &o) in self.backward.iter().chain(&self.forward).zip(&self.pool) {
            ord[n] = o;
        }
    }

    /// `last` was reached from `after` along the parent chain and `before` waits for it.
    fn cycle(&self, after: usize, before: usize, last: usize) -> Vec<usize> {
        let mut cycle = vec![after, before];
        let mut n = last;
        while n != after {
            cycle.push(n);
            n = self.parent[n];
        }
        cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// All edges live, no stale entries.
    #[derive(Default)]
    struct Plain {
        after: Vec<Vec<usize>>,
        before: Vec<Vec<usize>>,
    }

    impl Edges for Plain {
        fn after(&self, n: usize) -> &[usize] {
            &self.after[n]
        }
        fn before(&self, n: usize) -> &[usize] {
            &self.before[n]
        }
        fn is_live(&self, _: usize, _: usize) -> bool {
            true
        }
    }

    impl Plain {
        fn with_nodes(n: usize, order: &mut TopoOrder) -> Self {
            for _ in 0..n {
                order.add_node();
            }
            Plain {
                after: vec![Vec::new(); n],
                before: vec![Vec::new(); n],
            }
        }

        fn insert(&mut self, before: usize, after: usize) {
            self.after[before].push(after);
            self.before[after].push(before);
        }

        fn reaches(&self, from: usize, to: usize) -> bool {
            let mut seen = vec![false; self.after.len()];
            let mut stack = vec![from];
            while let Some(n) = stack.pop() {
                if n == to {
                    return true;
                }
                if !std::mem::replace(&mut seen[n], true) {
                    stack.extend(&self.after[n]);
                }
            }
            false
        }
    }

    #[test]
    fn self_edge_is_a_cycle_of_one() {
        let mut order = TopoOrder::default();
        let g = Plain::with_nodes(1, &mut order);
        assert_eq!(order.add_edge(&g, 0, 0), Err(vec![0]));
    }

    #[test]
    fn three_cycle_is_reported_in_needs_order() {
        let mut order = TopoOrder::default();
        let mut g = Plain::with_nodes(3, &mut order);
        // 0 needs 1, 1 needs 2: edges 1→0, 2→1.
        order.add_edge(&g, 1, 0).unwrap();
        g.insert(1, 0);
        order.add_edge(&g, 2, 1).unwrap();
        g.insert(2, 1);
        // 2 needs 0 closes it.
        assert_eq!(order.add_edge(&g, 0, 2), Err(vec![2, 0, 1]));
    }

    proptest! {
        /// Against a naive reachability check: an edge is refused exactly when it closes
        /// a cycle, the cycle returned is real, and accepted edges respect the order.
        #[test]
        fn matches_naive_reachability(
            n in 1usize..24,
            edges in proptest::collection::vec((0usize..24, 0usize..24), 0..80),
        ) {
            let mut order = TopoOrder::default();
            let mut g = Plain::with_nodes(n, &mut order);
            for (b, a) in edges {
                let (b, a) = (b % n, a % n);
                let closes = g.reaches(a, b);
                match order.add_edge(&g, b, a) {
                    Ok(()) => {
                        prop_assert!(!closes);
                        g.insert(b, a);
                    }
                    Err(cycle) => {
                        prop_assert!(closes);
                        prop_assert_eq!(cycle[0], a);
                        for (i, &x) in cycle.iter().enumerate() {
                            let y = cycle[(i + 1) % cycle.len()];
                            // x needs y: either the refused edge or an existing one.
                            let is_new = x == a && y == b;
                            prop_assert!(is_new || g.after[y].contains(&x));
                        }
                    }
                }
                for x in 0..n {
                    for &y in &g.after[x] {
                        prop_assert!(order.ord[x] < order.ord[y]);
                    }
                }
            }
        }
    }
}
