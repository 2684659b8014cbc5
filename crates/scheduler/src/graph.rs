//! The node table: one node per key, the state each node is in, the edges between
//! waiting nodes, and the bookkeeping that gives every node exactly one outcome.
//!
//! No threads and no executor calls here; `scheduler` drives these transitions.
//!
//! ```text
//! Unplanned ──plan──▶ Waiting ──last need met──▶ Unplanned (plan again)
//!     │
//!     ├──Ready──▶ Ready ──▶ Running ──Retry──▶ RetryWait ──delay──▶ Ready
//!     │                        │
//!     └──Done──▶ Succeeded ◀───┘ Built           (any live state) ──▶ Failed
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::mem;
use std::sync::Arc;

use crate::cycle::{stuck_cycle, EagerCheck, WaitGraph};
use crate::executor::Plan;
use crate::known::Known;
use crate::outcome::{Failure, Outcome, Report};

pub(crate) type NodeId = usize;

enum State<K, O, E> {
    /// On the plan stack, for its first plan or because its last `Need` was met.
    Unplanned,
    /// Waiting for `pending` keys of its last `Need`.
    Waiting {
        pending: usize,
    },
    /// In the ready queue.
    Ready,
    Running,
    /// Between a `Retry` and its deadline; holds no job slot.
    RetryWait,
    Succeeded {
        output: Arc<O>,
        built: bool,
    },
    Failed(Failure<K, E>),
}

impl<K, O, E> State<K, O, E> {
    fn is_finished(&self) -> bool {
        matches!(self, State::Succeeded { .. } | State::Failed(_))
    }
}

struct Node<K, O, E> {
    key: K,
    state: State<K, O, E>,
    /// Outputs of every key this node has needed; an `Arc` so a job can read it while the
    /// coordinator goes on (it is never mutated while shared).
    known: Arc<Known<K, O>>,
    /// The keys of the current `Need` (stale once they finish).
    waits_on: Vec<NodeId>,
    /// Nodes that needed this one while it was unfinished (stale once they finish).
    dependents: Vec<NodeId>,
    /// Handed to `Executor::stage` and not taken for running since.
    staged: bool,
}

/// A terminal state, borrowed for an event.
pub(crate) enum Finished<'a, K, O, E> {
    Built(&'a O),
    Skipped(&'a O),
    Failed(&'a Failure<K, E>),
}

pub(crate) struct Graph<K, O, E> {
    nodes: Vec<Node<K, O, E>>,
    index: HashMap<K, NodeId>,
    eager: EagerCheck,
    /// A stack, so that planning goes depth-first and leaves become ready (and workers
    /// busy) early instead of after the whole graph has been planned.
    unplanned: Vec<NodeId>,
    ready: VecDeque<NodeId>,
    /// Finished since the last `drain_finished`, for events.
    finished: Vec<NodeId>,
    /// Waiting nodes that may be staged: all they wait for was running when queued.
    prospects: VecDeque<NodeId>,
    /// Staged nodes not yet taken for running.
    staged: usize,
    /// Staged nodes that finished without running, for `Executor::unstage`.
    unstaged: Vec<NodeId>,
    done: usize,
    first_failure: Option<NodeId>,
}

/// What the cycle checks may follow: from a waiting node to the unfinished keys of its
/// current `Need` (entries that finished meanwhile are skipped).
struct Waits<'a, K, O, E>(&'a [Node<K, O, E>]);

impl<K, O, E> WaitGraph for Waits<'_, K, O, E> {
    fn waits_for(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        let waiting = matches!(self.0[n].state, State::Waiting { .. });
        let waits_on = if waiting {
            &self.0[n].waits_on[..]
        } else {
            &[]
        };
        waits_on
            .iter()
            .copied()
            .filter(|&d| !self.0[d].state.is_finished())
    }
}

impl<K, O, E> Graph<K, O, E>
where
    K: Clone + Eq + Hash + Ord + Debug,
    O: Clone,
{
    pub(crate) fn new() -> Self {
        Graph {
            nodes: Vec::new(),
            index: HashMap::new(),
            eager: EagerCheck::default(),
            unplanned: Vec::new(),
            ready: VecDeque::new(),
            finished: Vec::new(),
            prospects: VecDeque::new(),
            staged: 0,
            unstaged: Vec::new(),
            done: 0,
            first_failure: None,
        }
    }

    /// The node for `key`, created unplanned (but not yet queued) if new.
    fn intern(&mut self, key: K) -> (NodeId, bool) {
        if let Some(&id) = self.index.get(&key) {
            return (id, false);
        }
        let id = self.nodes.len();
        self.index.insert(key.clone(), id);
        self.nodes.push(Node {
            key,
            state: State::Unplanned,
            known: Arc::default(),
            waits_on: Vec::new(),
            dependents: Vec::new(),
            staged: false,
        });
        (id, true)
    }

    /// Adds the goals, planned in the given order; returns their nodes, each once.
    pub(crate) fn add_goals(&mut self, goals: impl IntoIterator<Item = K>) -> Vec<NodeId> {
        let mut ids = Vec::new();
        for key in goals {
            let (id, new) = self.intern(key);
            if new {
                ids.push(id);
            }
        }
        self.unplanned.extend(ids.iter().rev());
        ids
    }

    pub(crate) fn key(&self, id: NodeId) -> &K {
        &self.nodes[id].key
    }

    pub(crate) fn known(&self, id: NodeId) -> &Known<K, O> {
        &self.nodes[id].known
    }

    pub(crate) fn known_shared(&self, id: NodeId) -> Arc<Known<K, O>> {
        Arc::clone(&self.nodes[id].known)
    }

    pub(crate) fn next_unplanned(&mut self) -> Option<NodeId> {
        self.unplanned.pop()
    }

    pub(crate) fn has_unplanned(&self) -> bool {
        !self.unplanned.is_empty()
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next ready node, now marked running.
    pub(crate) fn next_ready(&mut self) -> Option<NodeId> {
        let id = self.ready.pop_front()?;
        debug_assert!(matches!(self.nodes[id].state, State::Ready));
        self.nodes[id].state = State::Running;
        if mem::take(&mut self.nodes[id].staged) {
            self.staged -= 1;
        }
        for &w in &self.nodes[id].dependents {
            if self.may_stage(w) {
                self.prospects.push_back(w);
            }
        }
        Some(id)
    }

    /// Whether `id` waits only for running nodes (and is not staged yet).
    fn may_stage(&self, id: NodeId) -> bool {
        let node = &self.nodes[id];
        matches!(node.state, State::Waiting { .. })
            && !node.staged
            && node.waits_on.iter().all(|&d| {
                let state = &self.nodes[d].state;
                state.is_finished() || matches!(state, State::Running)
            })
    }

    /// A waiting node whose needs are all running, now counted as staged.
    pub(crate) fn next_prospect(&mut self) -> Option<NodeId> {
        while let Some(id) = self.prospects.pop_front() {
            if self.may_stage(id) {
                self.nodes[id].staged = true;
                self.staged += 1;
                return Some(id);
            }
        }
        None
    }

    pub(crate) fn has_prospects(&self) -> bool {
        !self.prospects.is_empty()
    }

    /// Staged nodes not yet taken for running.
    pub(crate) fn staged(&self) -> usize {
        self.staged
    }

    /// Moves the staged nodes that finished without running into `out`.
    pub(crate) fn drain_unstaged(&mut self, out: &mut Vec<NodeId>) {
        out.clear();
        mem::swap(out, &mut self.unstaged);
    }

    pub(crate) fn first_failure(&self) -> Option<NodeId> {
        self.first_failure
    }

    pub(crate) fn done(&self) -> usize {
        self.done
    }

    pub(crate) fn total(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn apply_plan(&mut self, id: NodeId, plan: Plan<K, O>) {
        match plan {
            Plan::Done(output) => self.succeed(id, output, false),
            Plan::Ready => {
                self.nodes[id].state = State::Ready;
                self.ready.push_back(id);
            }
            Plan::Need(keys) => self.need(id, keys),
        }
    }

    fn need(&mut self, x: NodeId, mut keys: Vec<K>) {
        keys.sort_unstable();
        keys.dedup();
        // A failed key fails `x` at once; checked before creating any node, so that a
        // doomed plan adds no orphans to the graph.
        for key in &keys {
            if let Some(&d) = self.index.get(key) {
                if let State::Failed(f) = &self.nodes[d].state {
                    let root = f.caused_by().unwrap_or(key).clone();
                    let dep = key.clone();
                    self.fail(x, Failure::DependencyFailed { dep, root });
                    return;
                }
            }
        }

        // `x` waits while its edges are added, as it will once they are.
        self.nodes[x].state = State::Waiting { pending: 0 };
        self.nodes[x].waits_on.clear();
        let mut pending = 0;
        let mut progress = false;
        let mut created = Vec::new();
        for key in keys {
            let (d, new) = self.intern(key);
            if new {
                created.push(d);
            }
            if let State::Succeeded { output, .. } = &self.nodes[d].state {
                if !self.nodes[x].known.contains(&self.nodes[d].key) {
                    let (key, output) = (self.nodes[d].key.clone(), Arc::clone(output));
                    Arc::make_mut(&mut self.nodes[x].known).insert_shared(key, output);
                    progress = true;
                }
                continue;
            }
            // A new node waits for nothing yet, so only an existing one can close a cycle.
            if !new {
                let nodes = self.nodes.len();
                if let Some(cycle) = self.eager.closing_cycle(&Waits(&self.nodes), nodes, x, d) {
                    self.unplanned.extend(created.iter().rev());
                    self.fail_cycle(&cycle);
                    return;
                }
            }
            self.nodes[d].dependents.push(x);
            self.nodes[x].waits_on.push(d);
            pending += 1;
            progress = true;
        }
        self.unplanned.extend(created.iter().rev());

        if pending > 0 {
            self.nodes[x].state = State::Waiting { pending };
        } else if progress {
            self.nodes[x].state = State::Unplanned;
            self.unplanned.push(x);
        } else {
            self.fail(x, Failure::NoProgress);
        }
    }

    pub(crate) fn succeed(&mut self, id: NodeId, output: O, built: bool) {
        let output = Arc::new(output);
        for w in mem::take(&mut self.nodes[id].dependents) {
            let State::Waiting { pending } = &mut self.nodes[w].state else {
                continue; // failed meanwhile
            };
            *pending -= 1;
            let woken = *pending == 0;
            let key = self.nodes[id].key.clone();
            let waiter = &mut self.nodes[w];
            Arc::make_mut(&mut waiter.known).insert_shared(key, Arc::clone(&output));
            if woken {
                waiter.state = State::Unplanned;
                waiter.waits_on.clear();
                self.unplanned.push(w);
            }
        }
        self.finish(id, State::Succeeded { output, built });
    }

    /// Fails `id` and, transitively, every node waiting for it.
    pub(crate) fn fail(&mut self, id: NodeId, failure: Failure<K, E>) {
        let root = match failure.caused_by() {
            Some(root) => root.clone(),
            None => self.nodes[id].key.clone(),
        };
        self.note_root_failure(id, &failure);
        self.finish(id, State::Failed(failure));
        self.propagate(vec![id], &root);
    }

    /// Fails every node of a cycle with the same failure, then their other waiters.
    fn fail_cycle(&mut self, cycle: &[NodeId]) {
        let keys: Vec<K> = cycle.iter().map(|&n| self.nodes[n].key.clone()).collect();
        let root = keys[0].clone();
        for &n in cycle {
            let failure = Failure::Cycle(keys.clone());
            self.note_root_failure(n, &failure);
            self.finish(n, State::Failed(failure));
        }
        self.propagate(cycle.to_vec(), &root);
    }

    fn propagate(&mut self, mut failed: Vec<NodeId>, root: &K) {
        while let Some(n) = failed.pop() {
            for w in mem::take(&mut self.nodes[n].dependents) {
                if matches!(self.nodes[w].state, State::Waiting { .. }) {
                    let dep = self.nodes[n].key.clone();
                    let root = root.clone();
                    self.finish(w, State::Failed(Failure::DependencyFailed { dep, root }));
                    failed.push(w);
                }
            }
        }
    }

    fn note_root_failure(&mut self, id: NodeId, failure: &Failure<K, E>) {
        if self.first_failure.is_none() && failure.is_root() {
            self.first_failure = Some(id);
        }
    }

    /// Running → RetryWait.
    pub(crate) fn park(&mut self, id: NodeId) {
        debug_assert!(matches!(self.nodes[id].state, State::Running));
        self.nodes[id].state = State::RetryWait;
    }

    /// RetryWait → Ready, unless the node was finished meanwhile (the run stopped).
    pub(crate) fn unpark(&mut self, id: NodeId) {
        if matches!(self.nodes[id].state, State::RetryWait) {
            self.nodes[id].state = State::Ready;
            self.ready.push_back(id);
        }
    }

    /// The run stops after `because` failed: everything not running or finished is
    /// finished as not attempted. Running nodes finish through their job results.
    pub(crate) fn stop(&mut self, because: NodeId) {
        let because = self.nodes[because].key.clone();
        for id in 0..self.nodes.len() {
            let live = matches!(
                self.nodes[id].state,
                State::Unplanned | State::Waiting { .. } | State::Ready | State::RetryWait
            );
            if live {
                let because = because.clone();
                self.finish(id, State::Failed(Failure::NotAttempted { because }));
            }
        }
        self.unplanned.clear();
        self.ready.clear();
    }

    fn finish(&mut self, id: NodeId, state: State<K, O, E>) {
        let node = &mut self.nodes[id];
        debug_assert!(!node.state.is_finished(), "{:?} finished twice", node.key);
        node.state = state;
        if mem::take(&mut node.staged) {
            self.staged -= 1;
            self.unstaged.push(id);
        }
        let node = &mut self.nodes[id];
        // Its inputs are no longer needed; release them early.
        node.known = Arc::default();
        node.waits_on = Vec::new();
        self.done += 1;
        self.finished.push(id);
    }

    /// Moves the nodes finished since the last call into `out`.
    pub(crate) fn drain_finished(&mut self, out: &mut Vec<NodeId>) {
        out.clear();
        mem::swap(out, &mut self.finished);
    }

    pub(crate) fn finished_state(&self, id: NodeId) -> Option<Finished<'_, K, O, E>> {
        match &self.nodes[id].state {
            State::Succeeded {
                output,
                built: true,
            } => Some(Finished::Built(output)),
            State::Succeeded {
                output,
                built: false,
            } => Some(Finished::Skipped(output)),
            State::Failed(f) => Some(Finished::Failed(f)),
            _ => None,
        }
    }

    /// True when nothing is queued for planning or running.
    pub(crate) fn is_idle(&self) -> bool {
        self.unplanned.is_empty() && self.ready.is_empty()
    }

    /// Called when nothing is left to plan, run or retry: every unfinished node now
    /// waits, directly or not, on a cycle the eager check did not see (it was too long).
    /// Fails those cycles, and with them their waiters. Returns whether it found any.
    pub(crate) fn fail_stuck_cycles(&mut self) -> bool {
        let mut found = false;
        for id in 0..self.nodes.len() {
            if self.nodes[id].state.is_finished() {
                continue;
            }
            // Failing the cycle also fails everything on the way to it, `id` included,
            // so each node is walked over at most once.
            if let Some(cycle) = stuck_cycle(&Waits(&self.nodes), id) {
                self.fail_cycle(&cycle);
                found = true;
            }
        }
        found
    }

    /// Fails whatever did not finish. The scheduler's checks make this a no-op; it is
    /// the last line of defence against dropping a path.
    pub(crate) fn fail_unfinished(&mut self) {
        for id in 0..self.nodes.len() {
            if !self.nodes[id].state.is_finished() {
                debug_assert!(false, "{:?} never finished", self.nodes[id].key);
                self.finish(id, State::Failed(Failure::Stalled));
            }
        }
    }

    pub(crate) fn into_report(self, goals: &[NodeId]) -> Report<K, O, E> {
        let goals = goals.iter().map(|&g| self.nodes[g].key.clone()).collect();
        let nodes: BTreeMap<_, _> = self
            .nodes
            .into_iter()
            .map(|node| {
                let outcome = match node.state {
                    State::Succeeded { output, built } => {
                        let output = Arc::try_unwrap(output).unwrap_or_else(|o| (*o).clone());
                        if built {
                            Outcome::Built(output)
                        } else {
                            Outcome::Skipped(output)
                        }
                    }
                    State::Failed(f) => Outcome::Failed(f),
                    _ => Outcome::Failed(Failure::Stalled),
                };
                (node.key, outcome)
            })
            .collect();
        Report::new(goals, nodes)
    }
}
