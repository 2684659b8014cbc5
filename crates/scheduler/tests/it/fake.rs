//! A fake executor over a static description of a graph, which records what the
//! scheduler made it do, and a checker for the invariants every run must keep.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_scheduler::{
    Event, Executor, Failure, Known, Options, Outcome, Plan, Report, RunContext, RunOutcome,
    Scheduler,
};

pub type Key = u32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FakeError(pub String);

/// How one key behaves.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Needs, revealed one round per plan call: round `i + 1` is asked for only after
    /// round `i` is known, as a dynamic derivation's inputs are.
    pub rounds: Vec<Vec<Key>>,
    /// Plan answers `Done` at once (already valid; no dependencies looked at).
    pub valid: bool,
    pub plan_error: bool,
    pub run_error: bool,
    pub run_panic: bool,
    /// Answer `Retry(retry_delay)` this many times before building.
    pub retries: u32,
    pub retry_delay: Duration,
    /// Time `run` takes.
    pub work: Duration,
    /// While working, give up early and fail when the run is cancelled.
    pub honour_cancel: bool,
}

impl Spec {
    pub fn needs(deps: &[Key]) -> Self {
        Spec {
            rounds: if deps.is_empty() {
                vec![]
            } else {
                vec![deps.to_vec()]
            },
            ..Spec::default()
        }
    }

    pub fn work(mut self, d: Duration) -> Self {
        self.work = d;
        self
    }

    pub fn deps(&self) -> impl Iterator<Item = Key> + '_ {
        self.rounds.iter().flatten().copied()
    }

    /// Fails by itself, one way or another.
    pub fn fails(&self) -> bool {
        self.plan_error || (!self.valid && (self.run_error || self.run_panic))
    }
}

/// What the executor saw, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rec {
    Plan(Key),
    /// Plan answered `Done`.
    Valid(Key),
    Start(Key, usize),
    Retry(Key),
    Built(Key),
    Failed(Key),
    /// `stage` was called (the scheduler had a free slot while this waited).
    Stage(Key),
    Unstage(Key),
}

pub struct Fake {
    pub specs: HashMap<Key, Spec>,
    pub log: Mutex<Vec<(Instant, Rec)>>,
    attempts: Mutex<HashMap<Key, u32>>,
    busy_slots: Mutex<HashSet<usize>>,
    running: AtomicUsize,
    pub max_running: AtomicUsize,
}

/// The output of a key: a fingerprint of its own key and its inputs' outputs, so that a
/// run that saw wrong or missing inputs produces a visibly wrong output.
pub fn output_of(key: Key, inputs: &[u64]) -> u64 {
    inputs.iter().fold(u64::from(key) + 1, |h, &i| {
        h.wrapping_mul(31).wrapping_add(i)
    })
}

impl Fake {
    pub fn new(specs: impl IntoIterator<Item = (Key, Spec)>) -> Self {
        Fake {
            specs: specs.into_iter().collect(),
            log: Mutex::default(),
            attempts: Mutex::default(),
            busy_slots: Mutex::default(),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        }
    }

    fn record(&self, rec: Rec) {
        self.log.lock().unwrap().push((Instant::now(), rec));
    }

    pub fn records(&self) -> Vec<Rec> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn count(&self, rec: &Rec) -> usize {
        self.records().iter().filter(|r| *r == rec).count()
    }

    pub fn position(&self, rec: &Rec) -> Option<usize> {
        self.records().iter().position(|r| r == rec)
    }

    /// The output `key` must have when it and everything it needs succeeded.
    pub fn expected_output(&self, key: Key, memo: &mut HashMap<Key, u64>) -> u64 {
        if let Some(&o) = memo.get(&key) {
            return o;
        }
        let spec = &self.specs[&key];
        let inputs: Vec<u64> = if spec.valid {
            vec![]
        } else {
            let deps: BTreeSet<Key> = spec.deps().collect();
            deps.into_iter()
                .map(|d| self.expected_output(d, memo))
                .collect()
        };
        let o = output_of(key, &inputs);
        memo.insert(key, o);
        o
    }
}

impl Executor for Fake {
    type Key = Key;
    type Output = u64;
    type Error = FakeError;

    fn plan(&self, key: &Key, known: &Known<Key, u64>) -> Result<Plan<Key, u64>, FakeError> {
        self.record(Rec::Plan(*key));
        let spec = self
            .specs
            .get(key)
            .ok_or_else(|| FakeError(format!("unknown key {key}")))?;
        if spec.plan_error {
            return Err(FakeError(format!("cannot plan {key}")));
        }
        // A plan sees exactly what it asked for so far, never other finished keys.
        let declared: BTreeSet<Key> = spec.deps().collect();
        if let Some(k) = known.keys().find(|k| !declared.contains(k)) {
            return Err(FakeError(format!("plan of {key} sees undeclared {k}")));
        }
        if spec.valid {
            self.record(Rec::Valid(*key));
            return Ok(Plan::Done(output_of(*key, &[])));
        }
        for round in &spec.rounds {
            let missing: Vec<Key> = round
                .iter()
                .copied()
                .filter(|d| !known.contains(d))
                .collect();
            if !missing.is_empty() {
                return Ok(Plan::Need(missing));
            }
        }
        Ok(Plan::Ready)
    }

    fn run(
        &self,
        key: &Key,
        known: &Known<Key, u64>,
        ctx: &RunContext,
    ) -> Result<RunOutcome<u64>, FakeError> {
        let spec = &self.specs[key];
        assert!(
            self.busy_slots.lock().unwrap().insert(ctx.slot()),
            "slot {} used twice at once",
            ctx.slot()
        );
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.record(Rec::Start(*key, ctx.slot()));

        let result = self.attempt(*key, spec, known, ctx);

        self.record(match &result {
            Ok(RunOutcome::Built(_)) => Rec::Built(*key),
            Ok(RunOutcome::Retry(_)) => Rec::Retry(*key),
            Err(_) => Rec::Failed(*key),
        });
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.busy_slots.lock().unwrap().remove(&ctx.slot());
        if spec.run_panic {
            panic!("fake executor panics on {key}");
        }
        result
    }

    fn stage(&self, key: &Key) {
        self.record(Rec::Stage(*key));
    }

    fn unstage(&self, key: &Key) {
        self.record(Rec::Unstage(*key));
    }
}

impl Fake {
    fn attempt(
        &self,
        key: Key,
        spec: &Spec,
        known: &Known<Key, u64>,
        ctx: &RunContext,
    ) -> Result<RunOutcome<u64>, FakeError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let a = attempts.entry(key).or_insert(0);
            *a += 1;
            *a
        };
        if attempt <= spec.retries {
            return Ok(RunOutcome::Retry(spec.retry_delay));
        }
        if spec.honour_cancel {
            if ctx.cancel_token().wait_timeout(spec.work) {
                return Err(FakeError(format!("{key} cancelled")));
            }
        } else if !spec.work.is_zero() {
            std::thread::sleep(spec.work);
        }
        if spec.run_error {
            return Err(FakeError(format!("cannot build {key}")));
        }
        // Exactly the declared inputs are visible, with their real outputs.
        let deps: BTreeSet<Key> = spec.deps().collect();
        let visible: BTreeSet<Key> = known.keys().copied().collect();
        if deps != visible {
            return Err(FakeError(format!(
                "{key} saw inputs {visible:?}, declared {deps:?}"
            )));
        }
        let inputs: Vec<u64> = known.iter().map(|(_, o)| *o).collect();
        Ok(RunOutcome::Built(output_of(key, &inputs)))
    }
}

/// An observer event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Planned(Key),
    Started(Key, usize),
    Retrying(Key),
    Built(Key),
    Skipped(Key),
    Failed(Key, String),
    Progress(usize, usize, usize),
}

pub fn recorder(events: &mut Vec<Ev>) -> impl FnMut(Event<'_, Key, u64, FakeError>) + '_ {
    move |e| {
        events.push(match e {
            Event::Planned { key, .. } => Ev::Planned(*key),
            Event::Started { key, slot } => Ev::Started(*key, slot),
            Event::Retrying { key, .. } => Ev::Retrying(*key),
            Event::Built { key, .. } => Ev::Built(*key),
            Event::Skipped { key, .. } => Ev::Skipped(*key),
            Event::Failed { key, failure } => Ev::Failed(*key, failure.to_string()),
            Event::Progress(p) => Ev::Progress(p.done, p.total, p.running),
            _ => unreachable!("new event kind"),
        })
    }
}

pub type FakeReport = Report<Key, u64, FakeError>;

pub struct Run {
    pub fake: Fake,
    pub report: FakeReport,
    pub events: Vec<Ev>,
    pub goals: Vec<Key>,
    pub options: Options,
    pub elapsed: Duration,
    doomed: HashSet<Key>,
}

pub fn options(jobs: usize, keep_going: bool) -> Options {
    Options {
        jobs: jobs.try_into().unwrap(),
        keep_going,
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than `limit`, so
/// that a scheduler that hangs fails instead of stalling the whole test suite.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        // The sender was dropped unsent: `f` panicked; pass the panic on.
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("f returned without sending"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("scheduler did not finish within {limit:?}"),
    }
}

pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// Runs, then checks every invariant that must hold whatever the graph.
pub fn run(fake: Fake, goals: &[Key], options: Options) -> Run {
    let goals_owned = goals.to_vec();
    let (fake, report, events, elapsed) = within(HANG_LIMIT, move || {
        let mut events = Vec::new();
        let start = Instant::now();
        let report = Scheduler::new(&fake, options)
            .run(goals_owned.iter().copied(), &mut recorder(&mut events));
        let elapsed = start.elapsed();
        (fake, report, events, elapsed)
    });
    let run = Run {
        fake,
        report,
        events,
        goals: goals.to_vec(),
        options,
        elapsed,
        doomed: HashSet::new(),
    };
    let mut memo = HashMap::new();
    let doomed_keys = run
        .fake
        .specs
        .keys()
        .copied()
        .filter(|&k| doomed(&run.fake.specs, k, &mut memo))
        .collect();
    let run = Run {
        doomed: doomed_keys,
        ..run
    };
    check_invariants(&run);
    run
}

impl Run {
    pub fn outcome(&self, key: Key) -> &Outcome<Key, u64, FakeError> {
        self.report
            .outcome(&key)
            .unwrap_or_else(|| panic!("{key} has no outcome"))
    }

    pub fn failure(&self, key: Key) -> &Failure<Key, FakeError> {
        self.outcome(key)
            .failure()
            .unwrap_or_else(|| panic!("{key} did not fail: {:?}", self.outcome(key)))
    }

    pub fn built(&self) -> BTreeSet<Key> {
        self.report.built().copied().collect()
    }

    /// Whether `key` depends, through the static description, on something failing.
    pub fn doomed(&self, key: Key) -> bool {
        self.doomed.contains(&key)
    }
}

/// `memo` holds `None` while a key is being looked at, so reaching it again means a
/// cycle, which dooms everything on it and above it.
fn doomed(specs: &HashMap<Key, Spec>, key: Key, memo: &mut HashMap<Key, Option<bool>>) -> bool {
    if let Some(&d) = memo.get(&key) {
        return d.unwrap_or(true);
    }
    let Some(spec) = specs.get(&key) else {
        return true;
    };
    memo.insert(key, None);
    let d = spec.fails() || (!spec.valid && spec.deps().any(|dep| doomed(specs, dep, memo)));
    memo.insert(key, Some(d));
    d
}

/// The invariants of the crate documentation, checked against the fake's log, the
/// observer's events and the report.
pub fn check_invariants(run: &Run) {
    let specs = &run.fake.specs;
    let records = run.fake.records();
    let report = &run.report;
    let nodes: BTreeMap<Key, &Outcome<Key, u64, FakeError>> =
        report.nodes().map(|(k, o)| (*k, o)).collect();

    // Every goal, once, in request order, with an outcome.
    let mut seen = HashSet::new();
    let want: Vec<Key> = run
        .goals
        .iter()
        .copied()
        .filter(|g| seen.insert(*g))
        .collect();
    let got: Vec<Key> = report.goals().map(|(k, _)| *k).collect();
    assert_eq!(got, want, "goals in the report");

    // Everything planned is in the report.
    for r in &records {
        if let Rec::Plan(k) = r {
            assert!(nodes.contains_key(k), "{k} was planned but has no outcome");
        }
    }

    // Each node ran to completion at most once; retries only as asked for.
    let mut finals: HashMap<Key, usize> = HashMap::new();
    let mut retries: HashMap<Key, u32> = HashMap::new();
    let mut finished_at: HashMap<Key, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        match r {
            Rec::Built(k) | Rec::Failed(k) => *finals.entry(*k).or_default() += 1,
            Rec::Retry(k) => *retries.entry(*k).or_default() += 1,
            _ => {}
        }
        if let Rec::Built(k) | Rec::Valid(k) = r {
            finished_at.entry(*k).or_insert(i);
        }
    }
    for (k, n) in finals {
        assert!(n <= 1, "{k} ran {n} times");
    }
    for (k, n) in retries {
        assert!(n <= specs[&k].retries, "{k} retried {n} times");
    }

    // No node started before each of its needs succeeded.
    let finished_at = |d: Key| finished_at.get(&d).copied();
    for (i, r) in records.iter().enumerate() {
        if let Rec::Start(k, slot) = r {
            assert!(*slot < run.options.jobs.get(), "slot {slot} out of range");
            for d in specs[k].deps() {
                let at = finished_at(d).unwrap_or_else(|| panic!("{k} ran, {d} never done"));
                assert!(at < i, "{k} started before {d} was done");
            }
        }
    }

    // Concurrency.
    assert!(run.fake.max_running.load(Ordering::SeqCst) <= run.options.jobs.get());

    // Outcomes agree with what the executor did, and outputs with the inputs.
    let mut counts: HashMap<&Rec, usize> = HashMap::new();
    for r in &records {
        *counts.entry(r).or_default() += 1;
    }
    let count = |r: Rec| counts.get(&r).copied().unwrap_or(0);
    let mut expected = HashMap::new();
    for (&k, outcome) in &nodes {
        match outcome {
            Outcome::Built(o) => {
                assert_eq!(count(Rec::Built(k)), 1, "{k} built");
                let want = run.fake.expected_output(k, &mut expected);
                assert_eq!(*o, want, "output of {k}");
            }
            Outcome::Skipped(_) => assert_eq!(count(Rec::Valid(k)), 1),
            Outcome::Failed(f) => check_failure(run, k, f, &nodes),
        }
        if outcome.is_success() {
            assert!(!run.doomed(k), "{k} succeeded though a dependency fails");
        }
    }

    // With keep-going, everything not downstream of a failure is built, and everything
    // they need is in the graph.
    if run.options.keep_going {
        let mut stack: Vec<Key> = run.goals.clone();
        let mut visited = HashSet::new();
        while let Some(k) = stack.pop() {
            if !visited.insert(k) || run.doomed(k) {
                continue;
            }
            let outcome = nodes.get(&k).unwrap_or_else(|| panic!("{k} missing"));
            assert!(
                outcome.is_success(),
                "{k} should have succeeded: {outcome:?}"
            );
            if !specs[&k].valid {
                stack.extend(specs[&k].deps());
            }
        }
        for (&k, outcome) in &nodes {
            if run.doomed(k) {
                assert!(!outcome.is_success(), "{k} should have failed");
            }
        }
    }

    check_events(run, &nodes);
}

fn check_failure(
    run: &Run,
    k: Key,
    f: &Failure<Key, FakeError>,
    nodes: &BTreeMap<Key, &Outcome<Key, u64, FakeError>>,
) {
    let spec = &run.fake.specs[&k];
    let root_failure = |r: &Key| {
        let o = nodes
            .get(r)
            .unwrap_or_else(|| panic!("root {r} not in report"));
        assert!(o.failure().is_some_and(|f| f.is_root()), "{r} is no root");
    };
    match f {
        Failure::Plan(_) => assert!(spec.plan_error, "{k}: unexpected plan failure"),
        Failure::Run(_) => assert!(spec.run_error, "{k}: unexpected run failure: {f}"),
        Failure::Panicked(_) => assert!(spec.run_panic),
        Failure::DependencyFailed { dep, root } => {
            assert!(
                spec.deps().any(|d| d == *dep),
                "{k}: {dep} is no dependency"
            );
            assert!(nodes[dep].failure().is_some(), "{k}: {dep} did not fail");
            root_failure(root);
            assert!(f.to_string().contains(&format!("{dep}")));
        }
        Failure::Cycle(cycle) => {
            assert!(cycle.contains(&k), "{k} is not on its cycle {cycle:?}");
            for (i, x) in cycle.iter().enumerate() {
                let y = cycle[(i + 1) % cycle.len()];
                assert!(
                    run.fake.specs[x].deps().any(|d| d == y),
                    "{x} does not need {y}"
                );
            }
        }
        Failure::NotAttempted { because } | Failure::Cancelled { because, .. } => {
            assert!(!run.options.keep_going, "{k}: stopped although keep-going");
            root_failure(because);
        }
        other => panic!("{k}: unexpected failure {other:?}"),
    }
    let (root, root_f) = run.report.root_cause(&k).unwrap();
    assert!(
        root_f.is_root(),
        "root cause of {k} is {root}, not a root: {root_f}"
    );
}

fn check_events(run: &Run, nodes: &BTreeMap<Key, &Outcome<Key, u64, FakeError>>) {
    // Exactly one terminal event per node, matching its outcome.
    let mut terminal: HashMap<Key, &Ev> = HashMap::new();
    for e in &run.events {
        if let Ev::Built(k) | Ev::Skipped(k) | Ev::Failed(k, _) = e {
            assert!(
                terminal.insert(*k, e).is_none(),
                "two terminal events for {k}"
            );
        }
    }
    assert_eq!(terminal.len(), nodes.len(), "terminal events vs report");
    for (k, e) in &terminal {
        let ok = match (e, nodes[k]) {
            (Ev::Built(_), Outcome::Built(_)) | (Ev::Skipped(_), Outcome::Skipped(_)) => true,
            (Ev::Failed(_, msg), Outcome::Failed(f)) => *msg == f.to_string(),
            _ => false,
        };
        assert!(ok, "event {e:?} vs outcome of {k}");
    }
    // Starts = retries + final attempts, and a node never starts after the run stopped.
    let first_root_failure = run.events.iter().position(|e| match e {
        Ev::Failed(k, _) => nodes[k].failure().unwrap().is_root(),
        _ => false,
    });
    for (i, e) in run.events.iter().enumerate() {
        if let (Ev::Started(k, _), Some(stop)) = (e, first_root_failure) {
            assert!(
                run.options.keep_going || i < stop,
                "{k} started after the run stopped"
            );
        }
    }
    // Progress ends complete.
    let last = run.events.iter().rev().find_map(|e| match e {
        Ev::Progress(d, t, r) => Some((*d, *t, *r)),
        _ => None,
    });
    if !nodes.is_empty() {
        assert_eq!(last, Some((nodes.len(), nodes.len(), 0)), "final progress");
    }
}
