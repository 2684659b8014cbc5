//! Growth at run time, modelled on dynamic derivations (RFC 92): a key's plan can need a
//! key that only exists once another key's output is known (`drv^out^out`,
//! `builtins.outputOf`), to any depth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::fake::{options, run, within, Fake, Rec, Spec, HANG_LIMIT};
use kiln_scheduler::{
    Executor, Failure, Known, NoopObserver, Options, Outcome, Plan, Report, RunContext, RunOutcome,
    Scheduler,
};

/// A deriving path: a store path, or an output of the derivation another one denotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Dp {
    Opaque(String),
    Built(Box<Dp>, String),
}

fn opaque(path: &str) -> Dp {
    Dp::Opaque(path.to_owned())
}

fn out(dp: Dp) -> Dp {
    Dp::Built(Box::new(dp), "out".to_owned())
}

#[derive(Debug, Clone, Default)]
struct Drv {
    inputs: Vec<Dp>,
    /// Derivations the build writes to the store (a derivation-producing derivation).
    adds: Vec<(String, Drv)>,
    /// The output path, if it is one of the added derivations.
    out: Option<String>,
}

fn drv(inputs: Vec<Dp>) -> Drv {
    Drv {
        inputs,
        ..Drv::default()
    }
}

/// Produces `path`, itself holding `content`.
fn producer(inputs: Vec<Dp>, path: &str, content: Drv) -> Drv {
    Drv {
        inputs,
        adds: vec![(path.to_owned(), content)],
        out: Some(path.to_owned()),
    }
}

/// A store holding derivations; builds add to it.
#[derive(Default)]
struct DynStore {
    drvs: Mutex<HashMap<String, Drv>>,
    /// "start X" / "built X" per derivation built, in order.
    log: Mutex<Vec<String>>,
    failing: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StoreError(String);

impl DynStore {
    fn new(drvs: impl IntoIterator<Item = (&'static str, Drv)>) -> Self {
        DynStore {
            drvs: Mutex::new(drvs.into_iter().map(|(p, d)| (p.to_owned(), d)).collect()),
            ..DynStore::default()
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn pos(&self, entry: &str) -> usize {
        let log = self.log();
        let found: Vec<usize> = (0..log.len()).filter(|&i| log[i] == entry).collect();
        assert_eq!(found.len(), 1, "{entry} in {log:?}");
        found[0]
    }
}

impl Executor for DynStore {
    type Key = Dp;
    type Output = String;
    type Error = StoreError;

    fn plan(&self, key: &Dp, known: &Known<Dp, String>) -> Result<Plan<Dp, String>, StoreError> {
        match key {
            Dp::Opaque(path) => match self.drvs.lock().unwrap().contains_key(path) {
                true => Ok(Plan::Done(path.clone())),
                false => Err(StoreError(format!("path '{path}' is not valid"))),
            },
            // One output of a derivation that exists in the store: its inputs, then build.
            Dp::Built(inner, _) if matches!(**inner, Dp::Opaque(_)) => {
                let Dp::Opaque(path) = &**inner else {
                    unreachable!()
                };
                let drvs = self.drvs.lock().unwrap();
                let d = drvs
                    .get(path)
                    .ok_or_else(|| StoreError(format!("no derivation {path}")))?;
                let missing: Vec<Dp> = d
                    .inputs
                    .iter()
                    .filter(|i| !known.contains(i))
                    .cloned()
                    .collect();
                Ok(if missing.is_empty() {
                    Plan::Ready
                } else {
                    Plan::Need(missing)
                })
            }
            // The trampoline: obtain the derivation through the same machinery, then
            // forward the output of the derivation it turned out to be.
            Dp::Built(inner, output) => {
                let Some(path) = known.get(inner) else {
                    return Ok(Plan::Need(vec![(**inner).clone()]));
                };
                let target = Dp::Built(Box::new(opaque(path)), output.clone());
                Ok(match known.get(&target) {
                    Some(o) => Plan::Done(o.clone()),
                    None => Plan::Need(vec![target]),
                })
            }
        }
    }

    fn run(
        &self,
        key: &Dp,
        known: &Known<Dp, String>,
        _: &RunContext,
    ) -> Result<RunOutcome<String>, StoreError> {
        let Dp::Built(inner, output) = key else {
            panic!("only derivation outputs run: {key:?}");
        };
        let Dp::Opaque(path) = &**inner else {
            panic!("trampolines never run: {key:?}");
        };
        self.log.lock().unwrap().push(format!("start {path}"));
        std::thread::sleep(Duration::from_millis(3));
        let d = self.drvs.lock().unwrap()[path].clone();
        for input in &d.inputs {
            assert!(known.contains(input), "{path} built without {input:?}");
        }
        if self.failing.contains(path) {
            return Err(StoreError(format!("builder for '{path}' failed")));
        }
        self.drvs.lock().unwrap().extend(d.adds.iter().cloned());
        self.log.lock().unwrap().push(format!("built {path}"));
        Ok(RunOutcome::Built(
            d.out.unwrap_or_else(|| format!("{path}^{output}:result")),
        ))
    }
}

fn realise(store: &DynStore, goals: Vec<Dp>, options: Options) -> Report<Dp, String, StoreError> {
    Scheduler::new(store, options).run(goals, &mut NoopObserver)
}

/// `p1` produces `p2`, which produces `p3`, which needs `lib`. `app` needs
/// `p1^out^out^out`; `app2` needs `p1^out^out` (the produced `p3.drv` itself).
fn three_levels() -> DynStore {
    let p3 = drv(vec![out(opaque("lib.drv"))]);
    let p2 = producer(vec![], "p3.drv", p3);
    DynStore::new([
        ("lib.drv", drv(vec![])),
        ("p1.drv", producer(vec![], "p2.drv", p2)),
        (
            "app.drv",
            drv(vec![
                out(out(out(opaque("p1.drv")))),
                out(opaque("lib.drv")),
            ]),
        ),
        ("app2.drv", drv(vec![out(out(opaque("p1.drv")))])),
    ])
}

#[test]
fn three_level_dynamic_chain_in_several_goals_builds_each_derivation_once() {
    for jobs in [1, 3] {
        let report = within(HANG_LIMIT, move || {
            let store = three_levels();
            let goals = vec![
                out(opaque("app.drv")),
                out(opaque("app2.drv")),
                out(out(out(opaque("p1.drv")))),
                out(out(out(opaque("p1.drv")))),
                out(out(opaque("p1.drv"))),
            ];
            let report = realise(&store, goals, options(jobs, false));
            (
                store.log(),
                report_summary(&report),
                store_positions(&store),
            )
        });
        let (log, summary, pos) = report;
        assert!(summary.success, "{summary:?}");
        assert_eq!(log.len(), 12, "six builds, each once: {log:?}");
        let built = |p: &str| pos[&format!("built {p}")];
        let start = |p: &str| pos[&format!("start {p}")];
        assert!(built("p1.drv") < start("p2.drv"));
        assert!(built("p2.drv") < start("p3.drv"));
        assert!(built("lib.drv") < start("p3.drv"));
        assert!(built("p3.drv") < start("app.drv"));
        assert!(built("p2.drv") < start("app2.drv"));
        assert_eq!(
            summary.goal_outputs,
            [
                "app.drv^out:result",
                "app2.drv^out:result",
                "p3.drv^out:result",
                "p3.drv",
            ]
        );
    }
}

#[derive(Debug)]
struct Summary {
    success: bool,
    goal_outputs: Vec<String>,
}

fn report_summary(report: &Report<Dp, String, StoreError>) -> Summary {
    Summary {
        success: report.is_success(),
        goal_outputs: report
            .goals()
            .map(|(_, o)| o.output().cloned().unwrap_or_default())
            .collect(),
    }
}

fn store_positions(store: &DynStore) -> HashMap<String, usize> {
    let log = store.log();
    for entry in &log {
        store.pos(entry); // each entry exactly once
    }
    log.into_iter().enumerate().map(|(i, e)| (e, i)).collect()
}

#[test]
fn trampolines_forward_the_produced_derivations_output() {
    let store = three_levels();
    let goal = out(out(out(opaque("p1.drv"))));
    let report = realise(&store, vec![goal.clone()], options(2, false));
    // The goal itself ran nothing: it forwards the output of `p3.drv^out`.
    assert!(matches!(report.outcome(&goal), Some(Outcome::Skipped(o)) if o == "p3.drv^out:result"));
    let real = out(opaque("p3.drv"));
    assert!(matches!(report.outcome(&real), Some(Outcome::Built(_))));
    assert_eq!(report.built().count(), 4, "lib, p1, p2, p3");
}

#[test]
fn producer_adding_a_diamond_builds_each_produced_derivation_once() {
    // The producer adds a…e (b,c→a; d→b,c; e→b,c,d) and outputs e.
    let a = drv(vec![]);
    let b = drv(vec![out(opaque("a.drv"))]);
    let c = drv(vec![out(opaque("a.drv"))]);
    let d = drv(vec![out(opaque("b.drv")), out(opaque("c.drv"))]);
    let e = drv(vec![
        out(opaque("b.drv")),
        out(opaque("c.drv")),
        out(opaque("d.drv")),
    ]);
    let make = Drv {
        inputs: vec![],
        adds: vec![
            ("a.drv".into(), a),
            ("b.drv".into(), b),
            ("c.drv".into(), c),
            ("d.drv".into(), d),
            ("e.drv".into(), e),
        ],
        out: Some("e.drv".into()),
    };
    let store = DynStore::new([("make.drv", make)]);
    let outputs_of_e = out(out(opaque("make.drv")));
    let report = realise(
        &store,
        vec![outputs_of_e.clone(), outputs_of_e],
        options(3, false),
    );
    assert!(report.is_success());
    let pos = store_positions(&store);
    assert_eq!(pos.len(), 12, "make and a…e, each once");
    let (built, start) = (
        |p: &str| pos[&format!("built {p}.drv")],
        |p: &str| pos[&format!("start {p}.drv")],
    );
    assert!(built("make") < start("a"));
    assert!(built("a") < start("b") && built("a") < start("c"));
    assert!(built("b") < start("d") && built("c") < start("d"));
    assert!(built("d") < start("e"));
}

#[test]
fn failing_producer_fails_the_outputs_of_what_it_would_produce() {
    // As Nix words it: "failed to obtain derivation of …" — here, the dependency failure
    // names `producer.drv^out`, the derivation that could not be obtained.
    let mut store = DynStore::new([
        ("producer.drv", producer(vec![], "inner.drv", drv(vec![]))),
        ("wrapper.drv", drv(vec![out(out(opaque("producer.drv")))])),
    ]);
    store.failing.push("producer.drv".into());
    let report = realise(
        &store,
        vec![out(opaque("wrapper.drv")), out(out(opaque("producer.drv")))],
        options(2, true),
    );
    let failure = |k: &Dp| report.outcome(k).unwrap().failure().unwrap();
    let obtain = out(opaque("producer.drv"));
    assert!(matches!(failure(&obtain), Failure::Run(StoreError(m)) if m.contains("producer.drv")));
    let Failure::DependencyFailed { dep, root } = failure(&out(out(opaque("producer.drv")))) else {
        panic!()
    };
    assert_eq!((dep, root), (&obtain, &obtain));
    assert!(failure(&out(opaque("wrapper.drv")))
        .to_string()
        .contains("producer.drv"));
    let (root, _) = report.root_cause(&out(opaque("wrapper.drv"))).unwrap();
    assert_eq!(root, &obtain);
}

#[test]
fn produced_derivation_needing_its_own_deriving_path_is_a_cycle() {
    // `self.drv` produces `q.drv`, whose input is `self.drv^out^out`,
    // i.e. q's own output. The trampoline waits for q, which waits for the trampoline.
    let q = drv(vec![out(out(opaque("self.drv")))]);
    let store = DynStore::new([("self.drv", producer(vec![], "q.drv", q))]);
    let goal = out(out(opaque("self.drv")));
    let report = within(HANG_LIMIT, move || {
        let report = realise(&store, vec![goal.clone()], options(2, true));
        let failure = report
            .outcome(&goal)
            .unwrap()
            .failure()
            .map(|f| f.to_string());
        (failure, report.built().cloned().collect::<Vec<_>>())
    });
    let (failure, built) = report;
    let failure = failure.expect("the goal must fail");
    assert!(failure.starts_with("dependency cycle"), "{failure}");
    assert!(failure.contains("q.drv"), "{failure}");
    assert_eq!(
        built,
        [out(opaque("self.drv"))],
        "the producer itself builds"
    );
}

/// Regression for the bug that got RFC 92's scheduler reverted in Nix 2.18.1 (issue
/// #9052): a request for another output of a derivation whose first requested output had
/// just finished was acknowledged but never scheduled, and the requester then found the
/// path invalid. Here keys are per output, so the late request is a new key: it must be
/// built before the requester runs. 10 is `M^a`, 11 is `M^b`.
#[test]
fn late_request_for_another_output_of_a_finished_derivation_is_scheduled() {
    for (name, rounds) in [
        // asks for M^b at the very moment M^a finishes
        ("immediately", vec![vec![10], vec![11]]),
        // asks for M^b long after M^a and its parent finished
        ("later", vec![vec![1], vec![11]]),
    ] {
        let fake = Fake::new([
            (1, Spec::needs(&[10]).work(Duration::from_millis(20))),
            (
                2,
                Spec {
                    rounds,
                    ..Spec::default()
                },
            ),
            (10, Spec::needs(&[])),
            (11, Spec::needs(&[])),
        ]);
        let r = run(fake, &[1, 2], options(2, false));
        assert!(r.report.is_success(), "{name}");
        let built_b = r.fake.position(&Rec::Built(11)).expect("M^b built");
        let start_y = r
            .fake
            .records()
            .iter()
            .position(|x| matches!(x, Rec::Start(2, _)));
        assert!(
            built_b < start_y.unwrap(),
            "{name}: M^b built before its requester"
        );
    }
}
