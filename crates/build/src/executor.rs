//! The scheduler's executor for derivations: how a goal (a `.drv`, an output to any
//! depth such as `drv^out^out`, or a plain store path) turns into plans and builds.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_derivation::{Derivation, SingleDerivedPath};
use kiln_scheduler::{CancelToken, Executor, Known, Plan, RunContext, RunOutcome};
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

use crate::error::{Error, Result};
use crate::realise::{realise, stage_ahead, BuildSettings, Job, KnownOutputs, Realised, Staged};
use crate::resources::Resources;
use crate::runner::Stop;

/// A node of the build graph.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Goal {
    /// Every output of a `.drv` that is (or, for a dynamic derivation, becomes) valid.
    Derivation(StorePath),
    /// The path a derived path names: an existing path, or an output of a derivation
    /// that may itself be an output of another (`drv^out^out`).
    Path(SingleDerivedPath),
}

/// Output name → path for `Derivation` goals; `{"": path}` for `Path` goals.
pub type GoalOutput = Arc<BTreeMap<String, StorePath>>;

/// How often a build whose output lock is held elsewhere is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(200);

/// A build set up ahead (see [`Executor::stage`]); locked while the setup runs,
/// so that `run` waits for it rather than racing it.
type StagedSlot = Arc<Mutex<Option<Staged>>>;

/// Owns everything its builds share: dropping it ends staged sandboxes, then waits
/// for the background removals of every build it ran (fields drop in order).
pub struct DerivationExecutor<'a> {
    store: &'a LocalStore,
    staged: Mutex<HashMap<StorePath, StagedSlot>>,
    settings: BuildSettings,
    /// Where each build's log is copied as it runs (`-L`), if anywhere.
    echo: Option<Arc<Mutex<dyn Write + Send>>>,
    /// Set by the user (Ctrl-C): running builds are stopped, none starts.
    interrupt: CancelToken,
    resources: Arc<Resources>,
}

impl<'a> DerivationExecutor<'a> {
    pub fn new(store: &'a LocalStore, settings: BuildSettings) -> Self {
        DerivationExecutor {
            store,
            settings,
            staged: Mutex::new(HashMap::new()),
            echo: None,
            interrupt: CancelToken::new(),
            resources: Arc::new(Resources::new()),
        }
    }

    /// Builds stop, and none starts, once `interrupt` is cancelled (from a signal
    /// handler, say); they then fail with [`Error::Interrupted`].
    pub fn interrupted_by(mut self, interrupt: CancelToken) -> Self {
        self.interrupt = interrupt;
        self
    }

    pub fn with_log_echo(mut self, echo: Arc<Mutex<dyn Write + Send>>) -> Self {
        self.echo = Some(echo);
        self
    }

    pub fn store(&self) -> &LocalStore {
        self.store
    }

    /// The slot staged for `drv_path`, removed; waits for staging under way.
    fn take_staged(&self, drv_path: &StorePath) -> Option<Staged> {
        let slot = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(drv_path)?;
        let staged = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        staged
    }

    /// The store keeps the parsed `.drv`s (one cache for the whole process).
    fn derivation(&self, path: &StorePath) -> Result<Arc<Derivation>> {
        Ok(self.store.read_derivation(path)?)
    }

    /// The known output paths of a derivation, if they are all valid.
    fn valid_outputs(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
    ) -> Result<Option<BTreeMap<String, StorePath>>> {
        let paths =
            drv.output_paths(self.store.store_dir())
                .map_err(|source| Error::Derivation {
                    drv: self.store.layout().display(drv_path),
                    source: Box::new(source),
                })?;
        let mut out = BTreeMap::new();
        for (name, path) in paths {
            let Some(path) = path else { return Ok(None) };
            self.store.add_temp_root(&path)?;
            if !self.store.is_valid(&path)? {
                return Ok(None);
            }
            out.insert(name, path);
        }
        Ok(Some(out))
    }

    fn plan_derivation(
        &self,
        drv_path: &StorePath,
        known: &Known<Goal, GoalOutput>,
    ) -> Result<Plan<Goal, GoalOutput>> {
        let drv = self.derivation(drv_path)?;
        // Valid outputs make the inputs irrelevant: nothing below is built.
        if let Some(outputs) = self.valid_outputs(drv_path, &drv)? {
            return Ok(Plan::Done(Arc::new(outputs)));
        }
        if drv.has_dynamic_inputs() {
            return Err(Error::Unsupported {
                drv: self.store.layout().display(drv_path),
                why: "inputs that are outputs of dynamic derivations are not supported yet".into(),
            });
        }
        let needed: Vec<Goal> = drv
            .input_drvs
            .keys()
            .map(|p| Goal::Derivation(p.clone()))
            .filter(|g| !known.contains(g))
            .collect();
        if needed.is_empty() {
            Ok(Plan::Ready)
        } else {
            Ok(Plan::Need(needed))
        }
    }

    fn plan_path(
        &self,
        path: &SingleDerivedPath,
        known: &Known<Goal, GoalOutput>,
    ) -> Result<Plan<Goal, GoalOutput>> {
        match path {
            SingleDerivedPath::Opaque(p) => {
                self.store.add_temp_root(p)?;
                if !self.store.is_valid(p)? {
                    return Err(Error::Store(kiln_store::Error::InvalidPath(
                        self.store.layout().display(p),
                    )));
                }
                Ok(Plan::Done(Arc::new([(String::new(), p.clone())].into())))
            }
            SingleDerivedPath::Built { drv_path, output } => {
                // First the derivation itself must be a path (for `drv^out^out`, the
                // output of the inner derivation), then that derivation must be built.
                let inner = Goal::Path((**drv_path).clone());
                let Some(drv_file) = known.get(&inner).and_then(|o| o.get("").cloned()) else {
                    return Ok(Plan::Need(vec![inner]));
                };
                let build = Goal::Derivation(drv_file.clone());
                let Some(outputs) = known.get(&build) else {
                    return Ok(Plan::Need(vec![build]));
                };
                let p = outputs.get(output).ok_or_else(|| Error::Unsupported {
                    drv: self.store.layout().display(&drv_file),
                    why: format!("it has no output named '{output}'"),
                })?;
                Ok(Plan::Done(Arc::new([(String::new(), p.clone())].into())))
            }
        }
    }
}

impl Executor for DerivationExecutor<'_> {
    type Key = Goal;
    type Output = GoalOutput;
    type Error = Error;

    fn plan(&self, key: &Goal, known: &Known<Goal, GoalOutput>) -> Result<Plan<Goal, GoalOutput>> {
        match key {
            Goal::Derivation(p) => self.plan_derivation(p, known),
            Goal::Path(p) => self.plan_path(p, known),
        }
    }

    fn run(
        &self,
        key: &Goal,
        known: &Known<Goal, GoalOutput>,
        ctx: &RunContext,
    ) -> Result<RunOutcome<GoalOutput>> {
        let Goal::Derivation(drv_path) = key else {
            unreachable!("path goals are always Done or Need when planned")
        };
        let drv = self.derivation(drv_path)?;
        let echo: Option<Box<dyn Write + Send>> = self
            .echo
            .as_ref()
            .map(|e| Box::new(SharedWriter(Arc::clone(e))) as Box<dyn Write + Send>);
        let known_inputs: KnownOutputs = known
            .iter()
            .filter_map(|(goal, outputs)| match goal {
                Goal::Derivation(p) => Some((p.clone(), Arc::clone(outputs))),
                Goal::Path(_) => None,
            })
            .collect();
        let job = Job {
            echo,
            stop: Stop::new(ctx.cancel_token().clone(), self.interrupt.clone()),
        };
        let realised = match self.take_staged(drv_path) {
            Some(staged) => staged.build(self.store, &self.settings, &drv, &known_inputs, job),
            None => realise(
                self.store,
                &self.settings,
                &self.resources,
                drv_path,
                &drv,
                &known_inputs,
                job,
            ),
        };
        match realised? {
            Realised::Locked => Ok(RunOutcome::Retry(LOCK_RETRY)),
            Realised::Valid(outputs) => Ok(RunOutcome::Built(Arc::new(outputs))),
            Realised::Built(infos) => Ok(RunOutcome::Built(Arc::new(
                infos
                    .into_iter()
                    .map(|(name, info)| (name, info.path))
                    .collect(),
            ))),
        }
    }

    fn stage(&self, key: &Goal) {
        let Goal::Derivation(drv_path) = key else {
            return;
        };
        let slot: StagedSlot = Arc::default();
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut all = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            if all.contains_key(drv_path) {
                return;
            }
            all.insert(drv_path.clone(), Arc::clone(&slot));
        }
        // Failures are found again, and reported, when the build runs.
        if let Ok(drv) = self.derivation(drv_path) {
            let stop = Stop::new(CancelToken::new(), self.interrupt.clone());
            if let Ok(staged) = stage_ahead(
                self.store,
                &self.settings,
                &self.resources,
                drv_path,
                &drv,
                &stop,
            ) {
                *guard = staged;
            }
        }
    }

    fn unstage(&self, key: &Goal) {
        if let Goal::Derivation(drv_path) = key {
            drop(self.take_staged(drv_path));
        }
    }
}

struct SharedWriter(Arc<Mutex<dyn Write + Send>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::Derivation(p) => write!(f, "/nix/store/{p}"),
            Goal::Path(p) => write!(f, "{p:?}"),
        }
    }
}
