//! Measures the scheduler's own cost per node: a random DAG of no-op nodes.
//!
//! `cargo run --release -p kiln-scheduler --example overhead -- [NODES] [JOBS] [MODE]`
//!
//! MODE: `one` (default: node 0 is the goal), `all` (every node is a goal, in scrambled
//! order), `plan` (like `one`, but every plan answers `Done`: no job runs, so this is the
//! coordinator's own cost without any thread hand-off).

use std::time::{Duration, Instant};

use kiln_scheduler::{
    Executor, Known, NoopObserver, Options, Plan, RunContext, RunOutcome, Scheduler,
};

/// Node `i` needs `deps[i]`; `run` does nothing. With `plan_only`, plan answers `Done`
/// instead of `Ready`, so no job is run: what remains is the coordinator's bookkeeping.
struct NoOp {
    deps: Vec<Vec<u32>>,
    plan_only: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Executor for NoOp {
    type Key = u32;
    type Output = u32;
    type Error = Never;

    fn plan(&self, key: &u32, known: &Known<u32, u32>) -> Result<Plan<u32, u32>, Never> {
        let deps = &self.deps[*key as usize];
        Ok(if known.len() < deps.len() {
            Plan::Need(deps.clone())
        } else if self.plan_only {
            Plan::Done(*key)
        } else {
            Plan::Ready
        })
    }

    fn run(
        &self,
        key: &u32,
        _: &Known<u32, u32>,
        _: &RunContext,
    ) -> Result<RunOutcome<u32>, Never> {
        Ok(RunOutcome::Built(*key))
    }
}

/// Same shape as the scale tests: local edges plus a few far ones, all reachable from 0.
fn random_dag(n: u32, mut seed: u64) -> Vec<Vec<u32>> {
    let mut below = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut deps = vec![Vec::new(); n as usize];
    for i in 1..n {
        let parent = i - 1 - below(u64::from(i.min(50))) as u32;
        deps[parent as usize].push(i);
    }
    for (i, d) in deps.iter_mut().enumerate() {
        let i = i as u32;
        for _ in 0..below(5) {
            let span = if below(10) == 0 {
                n - i
            } else {
                (n - i).min(200)
            };
            if span > 1 {
                d.push(i + 1 + below(u64::from(span - 1)) as u32);
            }
        }
        d.sort_unstable();
        d.dedup();
    }
    deps
}

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: u32 = args.next().map_or(5000, |a| a.parse().expect("NODES"));
    let jobs: usize = args.next().map_or(2, |a| a.parse().expect("JOBS"));
    let mode = args.next().unwrap_or_else(|| "one".to_owned());
    let all_goals = mode == "all";
    let mut goals: Vec<u32> = if all_goals {
        (0..nodes).collect()
    } else {
        vec![0]
    };
    let mut seed = 7u64;
    for i in (1..goals.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        goals.swap(i, ((seed >> 33) % (i as u64 + 1)) as usize);
    }
    let exec = NoOp {
        deps: random_dag(nodes, 1),
        plan_only: mode == "plan",
    };
    let edges: usize = exec.deps.iter().map(Vec::len).sum();
    let scheduler = Scheduler::new(
        &exec,
        Options {
            jobs: jobs.try_into().expect("JOBS >= 1"),
            keep_going: false,
        },
    );
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let report = scheduler.run(goals.iter().copied(), &mut NoopObserver);
        best = best.min(start.elapsed());
        assert_eq!(report.nodes().count(), nodes as usize);
        assert!(report.is_success());
    }
    println!(
        "{nodes} no-op nodes, {edges} edges, -j{jobs}, {mode}: best of 5 {best:?} = {:?}/node",
        best / nodes
    );
}
