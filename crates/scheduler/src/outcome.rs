//! What became of each node, and the report of a whole run.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// Why a node did not produce an output. Every variant names, directly or through the
/// keys it carries, the failure that is ultimately responsible.
#[derive(Debug, thiserror::Error)]
pub enum Failure<K, E> {
    /// [`Executor::plan`](crate::Executor::plan) returned an error.
    #[error("{0}")]
    Plan(E),
    /// [`Executor::run`](crate::Executor::run) returned an error.
    #[error("{0}")]
    Run(E),
    /// `plan` or `run` panicked; the panic was contained to this node.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The key waits on itself through these keys: each needs the next, the last needs
    /// the first. Every key on the cycle gets this failure.
    #[error("dependency cycle: {0:?} (each needs the next, the last needs the first)")]
    Cycle(Vec<K>),
    /// `plan` returned `Need` with no key that was not already known, which would make
    /// it ask the same thing forever.
    #[error("plan asked for no key that was not already known")]
    NoProgress,
    /// A needed key failed. `dep` is the needed key, `root` the key whose own failure
    /// started the chain (equal to `dep` when that one failed by itself).
    #[error("dependency {dep:?} failed (root cause: {root:?})")]
    DependencyFailed { dep: K, root: K },
    /// Not planned or not started because `because` failed and the run does not keep
    /// going.
    #[error("not attempted: stopped after {because:?} failed")]
    NotAttempted { because: K },
    /// `run` returned an error after the run was cancelled because `because` failed;
    /// most likely the job honoured the cancellation.
    #[error("cancelled after {because:?} failed: {error}")]
    Cancelled { because: K, error: E },
    /// The node never reached an outcome although nothing was left to wake it. The
    /// scheduler's own checks make this unreachable; it exists so that a bug shows up
    /// as a failure with a name rather than as a silently dropped path.
    #[error("internal scheduler error: the node never finished")]
    Stalled,
}

impl<K, E> Failure<K, E> {
    /// True when the failure started at this node rather than being inherited.
    pub fn is_root(&self) -> bool {
        match self {
            Failure::Plan(_)
            | Failure::Run(_)
            | Failure::Panicked(_)
            | Failure::Cycle(_)
            | Failure::NoProgress
            | Failure::Stalled => true,
            Failure::DependencyFailed { .. }
            | Failure::NotAttempted { .. }
            | Failure::Cancelled { .. } => false,
        }
    }

    /// The key whose own failure this one stems from, when it is not this node's.
    pub fn caused_by(&self) -> Option<&K> {
        match self {
            Failure::DependencyFailed { root, .. } => Some(root),
            Failure::NotAttempted { because } | Failure::Cancelled { because, .. } => Some(because),
            _ => None,
        }
    }
}

/// The final state of one node.
#[derive(Debug)]
pub enum Outcome<K, O, E> {
    /// `run` produced the output in this run.
    Built(O),
    /// `plan` answered `Done`: nothing had to run for this key.
    Skipped(O),
    Failed(Failure<K, E>),
}

impl<K, O, E> Outcome<K, O, E> {
    pub fn output(&self) -> Option<&O> {
        match self {
            Outcome::Built(o) | Outcome::Skipped(o) => Some(o),
            Outcome::Failed(_) => None,
        }
    }

    pub fn failure(&self) -> Option<&Failure<K, E>> {
        match self {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
}

/// The result of [`Scheduler::run`](crate::Scheduler::run): one outcome for every node
/// that entered the graph (requested goals and everything they needed), none missing.
#[derive(Debug)]
pub struct Report<K, O, E> {
    goals: Vec<K>,
    nodes: BTreeMap<K, Outcome<K, O, E>>,
}

impl<K: Ord + Debug, O, E> Report<K, O, E> {
    pub(crate) fn new(goals: Vec<K>, nodes: BTreeMap<K, Outcome<K, O, E>>) -> Self {
        debug_assert!(goals.iter().all(|g| nodes.contains_key(g)));
        Report { goals, nodes }
    }

    /// The requested goals in request order, each once, with their outcomes.
    pub fn goals(&self) -> impl Iterator<Item = (&K, &Outcome<K, O, E>)> {
        self.goals.iter().map(|g| (g, &self.nodes[g]))
    }

    /// The outcome of any node of the run, goal or not.
    pub fn outcome(&self, key: &K) -> Option<&Outcome<K, O, E>> {
        self.nodes.get(key)
    }

    /// Every node of the run, in key order.
    pub fn nodes(&self) -> impl Iterator<Item = (&K, &Outcome<K, O, E>)> {
        self.nodes.iter()
    }

    pub fn built(&self) -> impl Iterator<Item = &K> {
        self.nodes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Built(_)))
            .map(|(k, _)| k)
    }

    pub fn skipped(&self) -> impl Iterator<Item = &K> {
        self.nodes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Skipped(_)))
            .map(|(k, _)| k)
    }

    /// Every failed node, own failures and inherited ones alike.
    pub fn failed(&self) -> impl Iterator<Item = (&K, &Failure<K, E>)> {
        self.nodes
            .iter()
            .filter_map(|(k, o)| o.failure().map(|f| (k, f)))
    }

    /// The failure that is ultimately responsible for `key` not having an output: its own,
    /// or that of the key its failure names. `None` if `key` succeeded or is unknown.
    pub fn root_cause(&self, key: &K) -> Option<(&K, &Failure<K, E>)> {
        let failure = self.nodes.get_key_value(key)?;
        let (key, failure) = (failure.0, failure.1.failure()?);
        match failure.caused_by() {
            Some(root) => {
                let (root, outcome) = self.nodes.get_key_value(root)?;
                Some((root, outcome.failure()?))
            }
            None => Some((key, failure)),
        }
    }

    /// True when every requested goal has an output.
    pub fn is_success(&self) -> bool {
        self.goals.iter().all(|g| self.nodes[g].is_success())
    }

    pub fn into_nodes(self) -> BTreeMap<K, Outcome<K, O, E>> {
        self.nodes
    }
}
