//! Realising one derivation whose inputs are already valid: the steps of Nix's
//! `LocalDerivationGoal` around one sandboxed run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_derivation::{Derivation, DerivationType};
use kiln_sandbox::{InputPath, Network, SandboxPath, SandboxSpec};
use kiln_store::{LocalStore, PathInfo, PathLock};
use kiln_store_path::StorePath;

use crate::activity::ActivityHook;
use crate::build_user::BuildUser;
use crate::cleanup::Cleanup;
use crate::env::{builder_arguments, builder_environment, EnvContext};
use crate::error::{Error, IoContext, Result};
use crate::export_graph::{export_references_graph, export_references_json};
use crate::inputs::{
    closure_in, direct_inputs, input_closure, provisional_closure, sandbox_paths_closure,
    Provisional,
};
use crate::log::BuildLog;
use crate::outputs::{process_outputs, RawOutput};
use crate::platform::Platform;
use crate::resources::Resources;
use crate::runner::{Exit, Sandbox, Started, Stop};

/// Called with a `.drv` path when its build starts.
pub type StartHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Called with the build directory of a failed build that is kept (`--keep-failed`),
/// to tell the user where it is.
pub type KeptHook = std::sync::Arc<dyn Fn(&std::path::Path) + Send + Sync>;

/// Knobs a user sets (Nix's names in parentheses).
#[derive(Clone)]
pub struct BuildSettings {
    /// `NIX_BUILD_CORES` (`cores`; 0 passes through as 0).
    pub cores: usize,
    /// Extra bind mounts (`sandbox-paths`).
    pub sandbox_paths: Vec<SandboxPath>,
    /// Kill a build after this long (`timeout`).
    pub timeout: Option<Duration>,
    /// Kill a build after this long without output (`max-silent-time`).
    pub max_silent_time: Option<Duration>,
    /// Keep the build directory of a failed build (`--keep-failed`).
    pub keep_failed: bool,
    /// Where build directories are made (`$TMPDIR`, default `/tmp`).
    pub tmp_dir: PathBuf,
    /// What runs builders.
    pub sandbox: Arc<dyn Sandbox>,
    /// The machine's state directory, whose `userpool/` is shared by every store.
    pub global_state_dir: PathBuf,
    /// Flush the store's filesystem before registering outputs (Nix's
    /// `sync-before-registering`; default true here, false in Nix).
    pub sync_before_registering: bool,
    /// Hand built outputs to the store's background registrar (see
    /// [`LocalStore::register_valid_paths_later`]) instead of registering them before
    /// returning; whoever sets this calls [`LocalStore::finish_registrations`].
    pub register_in_background: bool,
    /// Told the `.drv` path when a build really starts (its locks are held), to print
    /// Nix's "building '…'..." line.
    pub on_start: Option<StartHook>,
    /// Told where the build directory of a failed build is kept.
    pub on_keep_failed: Option<KeptHook>,
    /// Told what builders report of their progress (downloads by `builtin:fetchurl`).
    pub on_activity: Option<ActivityHook>,
    /// What this machine can build (`system`, `extra-platforms`, `system-features`).
    pub platform: Arc<Platform>,
    /// False for `max-jobs = 0`: every derivation that needs building fails, as in Nix
    /// without remote builders; valid outputs are still reported.
    pub local_builds: bool,
}

impl BuildSettings {
    /// Settings whose builders run in the namespace sandbox, through the helper
    /// processes `sandboxes` owns.
    pub fn new(sandboxes: Arc<kiln_sandbox::Sandboxes>) -> BuildSettings {
        BuildSettings::with_sandbox(Arc::new(crate::namespace::NamespaceSandbox::new(sandboxes)))
    }

    pub fn with_sandbox(sandbox: Arc<dyn Sandbox>) -> BuildSettings {
        BuildSettings {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            sandbox_paths: Vec::new(),
            timeout: None,
            max_silent_time: None,
            keep_failed: false,
            tmp_dir: std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp")),
            sandbox,
            global_state_dir: PathBuf::from("/nix/var/nix"),
            sync_before_registering: true,
            register_in_background: false,
            on_start: None,
            on_keep_failed: None,
            on_activity: None,
            platform: Arc::new(Platform::this_machine()),
            local_builds: true,
        }
    }
}

/// What one build is given besides the derivation.
#[derive(Default)]
pub struct Job {
    /// Receives a copy of the log as it is produced.
    pub echo: Option<Box<dyn Write + Send>>,
    /// Set when the build must stop: it is killed, cleaned up, and registers nothing.
    pub stop: Stop,
}

/// What realising a derivation came to.
#[derive(Debug)]
pub enum Realised {
    /// Every wanted output was valid already (possibly built by another process while
    /// we waited for its lock).
    Valid(BTreeMap<String, StorePath>),
    /// Built now, and registered (or handed to the store's background registrar, see
    /// [`BuildSettings::register_in_background`]).
    Built(BTreeMap<String, PathInfo>),
    /// Another process holds an output's lock: try again later.
    Locked,
}

/// Output name → path of the input derivations this process already knows (it
/// built them or found them valid); others are looked up in the store.
pub type KnownOutputs = BTreeMap<StorePath, Arc<BTreeMap<String, StorePath>>>;

/// Realise `drv` (stored at `drv_path`), whose input derivations' outputs and input
/// sources must be valid. What builds share (build users, background removals)
/// comes from `resources`.
pub fn realise(
    store: &LocalStore,
    settings: &BuildSettings,
    resources: &Arc<Resources>,
    drv_path: &StorePath,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    job: Job,
) -> Result<Realised> {
    let drv_str = store.layout().display(drv_path);
    let inputs = || Ok((input_closure(store, drv, known_inputs, &drv_str)?, None));
    match stage(store, settings, resources, drv_path, drv, &job.stop, inputs)? {
        Claim::Valid(outputs) => Ok(Realised::Valid(outputs)),
        Claim::Locked => Ok(Realised::Locked),
        Claim::Staged(staged) => staged.build(store, settings, drv, known_inputs, job),
    }
}

/// Sets up the build of `drv` while the derivations it needs are still being
/// built: outputs locked, build directory written, chroot made with the inputs
/// that exist already, sandbox started and waiting for the rest. `None` when
/// there is nothing to gain (already valid, locked elsewhere, or a builder
/// environment that depends on the inputs' contents). Errors are the caller's
/// to ignore: the build, when it runs, finds them again and reports them.
pub fn stage_ahead(
    store: &LocalStore,
    settings: &BuildSettings,
    resources: &Arc<Resources>,
    drv_path: &StorePath,
    drv: &Derivation,
    stop: &Stop,
) -> Result<Option<Staged>> {
    if exports_references_graph(drv_path, drv) {
        return Ok(None);
    }
    let inputs = || {
        let provisional = provisional_closure(store, drv)?;
        let closure = provisional.graph.keys().cloned().collect();
        Ok((closure, Some(provisional)))
    };
    match stage(store, settings, resources, drv_path, drv, stop, inputs)? {
        Claim::Staged(staged) => Ok(Some(*staged)),
        Claim::Valid(_) | Claim::Locked => Ok(None),
    }
}

/// `exportReferencesGraph` (either form) writes the inputs' closures into the
/// build directory before the build: nothing to stage before they exist.
fn exports_references_graph(drv_path: &StorePath, drv: &Derivation) -> bool {
    // The plain variable counts even with structured attributes: the build reads it.
    drv.env.contains_key(b"exportReferencesGraph".as_slice())
        || kiln_derivation::ParsedAttrs::parse(drv_path.base_name(), drv)
            .map_or(true, |attrs| attrs.has("exportReferencesGraph"))
}

enum Claim {
    Valid(BTreeMap<String, StorePath>),
    Locked,
    Staged(Box<Staged>),
}

/// A build with its outputs locked and its sandbox started up to the store
/// inputs (see [`Sandbox::start`]). Dropped without [`Staged::build`],
/// it ends the sandbox, removes what it made and releases the locks.
pub struct Staged {
    drv_str: String,
    drv_path: StorePath,
    kind: DerivationType,
    outputs: BTreeMap<String, StorePath>,
    locks: Vec<PathLock>,
    user: BuildUser,
    /// Taken by `build`; what `Drop` cleans up otherwise.
    build_dir: Option<PathBuf>,
    chroot_dir: PathBuf,
    sandbox: Option<Box<dyn Started>>,
    resources: Arc<Resources>,
    /// The input closure the chroot has.
    inputs: BTreeSet<StorePath>,
    /// Staged ahead: `inputs` is only what existed then, with its references, from
    /// which the real closure is found once the rest is built.
    provisional: Option<Provisional>,
}

fn stage(
    store: &LocalStore,
    settings: &BuildSettings,
    resources: &Arc<Resources>,
    drv_path: &StorePath,
    drv: &Derivation,
    stop: &Stop,
    inputs: impl FnOnce() -> Result<(BTreeSet<StorePath>, Option<Provisional>)>,
) -> Result<Claim> {
    let drv_str = store.layout().display(drv_path);
    if stop.is_set() {
        return Err(stopped(stop, &drv_str));
    }
    let drv_err = |source| Error::Derivation {
        drv: drv_str.clone(),
        source: Box::new(source),
    };
    let kind = drv.derivation_type().map_err(drv_err)?;
    if !matches!(
        kind,
        DerivationType::InputAddressed | DerivationType::FixedOutput
    ) {
        return Err(Error::Unsupported {
            drv: drv_str,
            why: format!("{kind:?} derivations are not supported by this version of kiln yet"),
        });
    }
    let mut outputs: BTreeMap<String, StorePath> = BTreeMap::new();
    for (name, path) in drv.output_paths(store.store_dir()).map_err(drv_err)? {
        let path = path.ok_or_else(|| Error::Unsupported {
            drv: drv_str.clone(),
            why: format!("output '{name}' has no known path"),
        })?;
        store.add_temp_root(&path)?;
        outputs.insert(name, path);
    }
    if all_valid(store, &outputs)? {
        return Ok(Claim::Valid(outputs));
    }
    if !settings.local_builds {
        return Err(Error::NoBuildSlots);
    }
    // Nix's ParsedDerivation names the derivation by its base name.
    let attrs =
        kiln_derivation::ParsedAttrs::parse(drv_path.base_name(), drv).map_err(Error::attribute)?;
    settings.platform.check(&attrs, &drv_str)?;
    // Non-blocking, in sorted order, all or nothing: a busy lock means another process
    // (kiln or Nix) is building this; the scheduler retries later.
    let mut lock_paths: Vec<PathBuf> = outputs
        .values()
        .map(|p| store.layout().lock_path(p))
        .collect();
    lock_paths.sort();
    let mut locks: Vec<PathLock> = Vec::new();
    for p in &lock_paths {
        match PathLock::try_acquire(p)? {
            Some(l) => locks.push(l),
            None => return Ok(Claim::Locked),
        }
    }
    if all_valid(store, &outputs)? {
        release(locks);
        return Ok(Claim::Valid(outputs));
    }
    for path in outputs.values() {
        kiln_store::remove_tree(&store.layout().real_path(path))?;
    }
    let (input_closure, provisional) = inputs()?;
    let user = if settings.sandbox.isolates_users() {
        BuildUser::acquire(&settings.global_state_dir, &resources.idle_users)?
    } else {
        BuildUser::caller()
    };
    let build_dir = make_build_dir(settings, &resources.cleanup, drv_path, &user)?;
    let chroot_dir = store
        .layout()
        .real_store_dir
        .join(format!("{}.chroot", drv_path.base_name()));
    let mut staged = Staged {
        drv_str,
        drv_path: drv_path.clone(),
        kind,
        outputs,
        locks,
        user,
        build_dir: Some(build_dir),
        chroot_dir,
        sandbox: None,
        resources: Arc::clone(resources),
        inputs: input_closure,
        provisional,
    };
    staged.sandbox = Some(start_sandbox(store, settings, &attrs, &staged)?);
    Ok(Claim::Staged(Box::new(staged)))
}

impl Staged {
    /// Runs the builder and registers the outputs. `known_inputs` as in [`realise`].
    pub fn build(
        mut self,
        store: &LocalStore,
        settings: &BuildSettings,
        drv: &Derivation,
        known_inputs: &KnownOutputs,
        job: Job,
    ) -> Result<Realised> {
        if job.stop.is_set() {
            return Err(stopped(&job.stop, &self.drv_str));
        }
        if let Some(announce) = &settings.on_start {
            announce(&self.drv_str);
        }
        let build_dir = self.build_dir.take().expect("built once");
        let outcome = self.run_builder(store, settings, drv, known_inputs, job);
        // Stopped builds too, as in Nix (a dropped goal's directory is kept).
        let keep = outcome.is_err() && settings.keep_failed;
        if keep {
            let _ = std::fs::set_permissions(&build_dir, std::fs::Permissions::from_mode(0o755));
            if let Some(tell) = &settings.on_keep_failed {
                tell(&build_dir);
            }
        } else {
            self.resources.cleanup.remove_dir_later(build_dir);
        }
        let infos = outcome?;
        let locks = std::mem::take(&mut self.locks);
        let built = infos
            .iter()
            .map(|i| (name_of(&self.outputs, &i.path), i.clone()))
            .collect();
        if settings.register_in_background {
            store.register_valid_paths_later(
                self.drv_str.clone(),
                infos,
                locks,
                settings.sync_before_registering,
            )?;
        } else {
            if settings.sync_before_registering {
                store.sync_store()?;
            }
            store.register_valid_paths(&infos)?;
            release(locks);
        }
        Ok(Realised::Built(built))
    }

    fn run_builder(
        &mut self,
        store: &LocalStore,
        settings: &BuildSettings,
        drv: &Derivation,
        known_inputs: &KnownOutputs,
        job: Job,
    ) -> Result<Vec<PathInfo>> {
        let mut sandbox = self.sandbox.take().expect("built once");
        let drv_str = self.drv_str.clone();
        let sandbox_err = |source| Error::Sandbox {
            drv: drv_str.clone(),
            source,
        };
        let result = (|| {
            if let Some(Provisional { graph, .. }) = self.provisional.as_mut() {
                let direct = direct_inputs(store, drv, known_inputs, &self.drv_str)?;
                let closure = match closure_in(store, graph, &direct)? {
                    Some(closure) => closure,
                    None => input_closure(store, drv, known_inputs, &self.drv_str)?,
                };
                if closure != self.inputs {
                    self.inputs = closure;
                    let inputs = sandbox_inputs(store, settings, &self.inputs, None)?;
                    sandbox.replace_inputs(&inputs).map_err(sandbox_err)?;
                }
            }
            let mut log = BuildLog::create(&store.layout().log_path(&self.drv_path), job.echo)?
                .with_activities(settings.on_activity.clone(), &self.drv_str);
            let exit = sandbox.run(&mut log, &job.stop).map_err(sandbox_err)?;
            self.user.sandbox_reaped();
            let tail = log.tail_for_error();
            log.finish()?;
            match exit {
                Exit::Succeeded => {}
                Exit::Stopped => return Err(stopped(&job.stop, &drv_str)),
                Exit::Failed(outcome) => {
                    return Err(Error::BuilderFailed {
                        drv: drv_str.clone(),
                        outcome,
                        log_tail: tail,
                    })
                }
            }
            let raw: Vec<RawOutput> = self
                .outputs
                .iter()
                .map(|(name, path)| RawOutput {
                    name: name.clone(),
                    path: path.clone(),
                    host_path: sandbox.store_on_host().join(path.base_name()),
                })
                .collect();
            process_outputs(
                store,
                &self.drv_path,
                drv,
                &raw,
                &self.inputs,
                self.user.uid,
            )
        })();
        let cleaned = sandbox
            .finish(store, &self.resources.cleanup)
            .map_err(sandbox_err);
        let infos = result?;
        cleaned?;
        Ok(infos)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let Some(build_dir) = self.build_dir.take() else {
            return;
        };
        // Ends the sandbox and removes its chroot.
        drop(self.sandbox.take());
        self.resources.cleanup.remove_dir_later(build_dir);
    }
}

/// The builder's environment and build-directory files, the chroot, and the
/// sandbox started up to its store inputs.
fn start_sandbox(
    store: &LocalStore,
    settings: &BuildSettings,
    attrs: &kiln_derivation::ParsedAttrs<'_>,
    staged: &Staged,
) -> Result<Box<dyn Started>> {
    let drv = attrs.derivation();
    let drv_str = &staged.drv_str;
    let build_dir = staged.build_dir.as_deref().expect("staged has a build dir");
    let user = &staged.user;
    let output_strings: BTreeMap<String, String> = staged
        .outputs
        .iter()
        .map(|(n, p)| (n.clone(), store.layout().display(p)))
        .collect();
    let fixed = staged.kind == DerivationType::FixedOutput;
    let export = |paths: &[String]| export_references_json(store, &staged.inputs, drv_str, paths);
    let (env, files) = builder_environment(
        attrs,
        &EnvContext {
            cores: settings.cores,
            sandbox_build_dir: "/build",
            host_build_dir: build_dir,
            store_dir: store.store_dir().as_str(),
            fixed_output: fixed,
            outputs: &output_strings,
            export_references: Some(&export),
        },
    )?;
    for (name, contents) in files {
        let path = build_dir.join(&name);
        std::fs::write(&path, contents).ctx("writing", &path)?;
        chown(&path, user)?;
    }
    if attrs.structured().is_none() {
        // Nix leaves these owned by itself (root), unlike the other files.
        for (name, contents) in export_references_graph(store, drv, &staged.inputs, drv_str)? {
            let path = build_dir.join(&name);
            std::fs::write(&path, contents).ctx("writing", &path)?;
        }
    }
    let mut spec = SandboxSpec::new(
        drv.builder.to_vec(),
        &staged.chroot_dir,
        build_dir,
        user.uid,
        user.gid,
    );
    spec.args = builder_arguments(drv, &output_strings);
    spec.env = env;
    let settled = staged.provisional.as_ref().map(|p| &p.settled);
    spec.inputs = sandbox_inputs(store, settings, &staged.inputs, settled)?;
    // A source named by its logical store path is where the store really is (for a
    // store whose root is not `/`; Nix 2.8 would bind the logical path of the host).
    spec.sandbox_paths = settings
        .sandbox_paths
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Ok(rest) = p.host.strip_prefix(store.store_dir().as_str()) {
                p.host = store.layout().real_store_dir.join(rest);
            }
            p
        })
        .collect();
    spec.network = if fixed {
        Network::Host
    } else {
        Network::Private
    };
    spec.timeout = settings.timeout;
    spec.max_silent_time = settings.max_silent_time;
    spec.personality.linux32 = settings.platform.wants_linux32(&drv.platform);
    spec.kvm = settings.platform.features.contains("kvm");
    settings
        .sandbox
        .start(&spec)
        .map_err(|source| Error::Sandbox {
            drv: drv_str.clone(),
            source,
        })
}

/// The error of a build that was stopped: by the user, or by the scheduler.
fn stopped(stop: &Stop, drv: &str) -> Error {
    if stop.by_user() {
        Error::Interrupted
    } else {
        Error::Cancelled {
            drv: drv.to_string(),
        }
    }
}

/// The store paths the chroot shows: the input closure plus, as in Nix, the
/// closure of store paths among the `sandbox-paths` sources
/// (`/bin/sh=/nix/store/…-bash/bin/sh` needs bash's libraries). With `settled`,
/// the closure is a guess of which only those are certain.
fn sandbox_inputs(
    store: &LocalStore,
    settings: &BuildSettings,
    input_closure: &BTreeSet<StorePath>,
    settled: Option<&BTreeSet<StorePath>>,
) -> Result<Vec<InputPath>> {
    let mut inputs: Vec<InputPath> = input_closure
        .iter()
        .map(|p| InputPath {
            provisional: settled.is_some_and(|s| !s.contains(p)),
            ..InputPath::new(p.base_name(), store.layout().real_path(p))
        })
        .collect();
    for p in sandbox_paths_closure(store, &settings.sandbox_paths)? {
        if !input_closure.contains(&p) {
            inputs.push(InputPath::new(p.base_name(), store.layout().real_path(&p)));
        }
    }
    Ok(inputs)
}

fn name_of(outputs: &BTreeMap<String, StorePath>, path: &StorePath) -> String {
    outputs
        .iter()
        .find(|(_, p)| *p == path)
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}

fn all_valid(store: &LocalStore, outputs: &BTreeMap<String, StorePath>) -> Result<bool> {
    for p in outputs.values() {
        if !store.is_valid(p)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Release output locks; once the outputs are valid the lock files are deleted, as
/// Nix does (after a failure they stay, also as Nix does).
fn release(locks: Vec<PathLock>) {
    for l in locks {
        l.release_and_delete();
    }
}

/// `$TMPDIR/nix-build-<drv name>-<n>`, 0700, owned by the build user.
fn make_build_dir(
    settings: &BuildSettings,
    cleanup: &Cleanup,
    drv_path: &StorePath,
    user: &BuildUser,
) -> Result<PathBuf> {
    for n in 0.. {
        let dir = settings
            .tmp_dir
            .join(format!("nix-build-{}-{n}", drv_path.name()));
        if cleanup.dirs.take(&dir) {
            chown(&dir, user)?;
            return Ok(dir);
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                chown(&dir, user)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).ctx("creating build directory", dir),
        }
    }
    unreachable!("the counter is unbounded")
}

fn chown(path: &std::path::Path, user: &BuildUser) -> Result<()> {
    if rustix::process::geteuid().as_raw() == user.uid {
        return Ok(());
    }
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(user.uid)),
        Some(rustix::fs::Gid::from_raw(user.gid)),
    )
    .map_err(std::io::Error::from)
    .ctx("chown", path)
}
