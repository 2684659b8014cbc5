//! Realising one derivation whose inputs are already valid: the steps of
//! `spec/local-store.md` §4.1 and §4.8 around one sandboxed run.

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

use crate::build_user::BuildUser;
use crate::env::{builder_environment, EnvContext};
use crate::error::{Error, IoContext, Result};
use crate::log::BuildLog;
use crate::outputs::{process_outputs, RawOutput};

/// Called with a `.drv` path when its build starts.
pub type StartHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

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
    /// The executable that serves as the sandbox helper (kiln itself).
    pub helper_exe: PathBuf,
    /// The machine's state directory, whose `userpool/` is shared by every store.
    pub global_state_dir: PathBuf,
    /// Flush the store's filesystem before registering outputs (Nix's
    /// `sync-before-registering`; default true here, false in Nix).
    pub sync_before_registering: bool,
    /// Told the `.drv` path when a build really starts (its locks are held), to print
    /// Nix's "building '…'..." line.
    pub on_start: Option<StartHook>,
}

impl BuildSettings {
    pub fn new(helper_exe: PathBuf) -> BuildSettings {
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
            helper_exe,
            global_state_dir: PathBuf::from("/nix/var/nix"),
            sync_before_registering: true,
            on_start: None,
        }
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stop: kill every running builder of this process and start no new one. Failed
/// builds clean up after themselves as usual.
pub fn interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    kiln_sandbox::kill_running_builders();
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// What realising a derivation came to.
#[derive(Debug)]
pub enum Realised {
    /// Every wanted output was valid already (possibly built by another process while
    /// we waited for its lock).
    Valid(BTreeMap<String, StorePath>),
    /// Built and registered now.
    Built(BTreeMap<String, PathInfo>),
    /// Another process holds an output's lock: try again later.
    Locked,
}

/// Output name → path of the input derivations this process already knows (it
/// built them or found them valid); others are looked up in the store.
pub type KnownOutputs = BTreeMap<StorePath, Arc<BTreeMap<String, StorePath>>>;

/// Realise `drv` (stored at `drv_path`), whose input derivations' outputs and input
/// sources must be valid. `echo` receives a copy of the log as it is produced.
pub fn realise(
    store: &LocalStore,
    settings: &BuildSettings,
    drv_path: &StorePath,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    echo: Option<Box<dyn Write + Send>>,
) -> Result<Realised> {
    let drv_str = store.layout().display(drv_path);
    let inputs = || input_closure(store, drv, known_inputs, &drv_str);
    match stage(store, settings, drv_path, drv, inputs, false)? {
        Claim::Valid(outputs) => Ok(Realised::Valid(outputs)),
        Claim::Locked => Ok(Realised::Locked),
        Claim::Staged(staged) => staged.build(store, settings, drv, known_inputs, echo),
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
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<Option<Staged>> {
    if exports_references_graph(drv) {
        return Ok(None);
    }
    let mut graph = None;
    let inputs = || {
        let provisional = provisional_closure(store, drv)?;
        let closure = provisional.keys().cloned().collect();
        graph = Some(provisional);
        Ok(closure)
    };
    match stage(store, settings, drv_path, drv, inputs, true)? {
        Claim::Staged(mut staged) => {
            staged.graph = graph;
            Ok(Some(*staged))
        }
        Claim::Valid(_) | Claim::Locked => Ok(None),
    }
}

/// `exportReferencesGraph` (either form) writes the inputs' closures into the
/// build directory before the build: nothing to stage before they exist.
fn exports_references_graph(drv: &Derivation) -> bool {
    drv.env.contains_key(b"exportReferencesGraph".as_slice())
        || drv
            .env
            .get(b"__json".as_slice())
            .is_some_and(|json| json.windows(21).any(|w| w == b"exportReferencesGraph"))
}

enum Claim {
    Valid(BTreeMap<String, StorePath>),
    Locked,
    Staged(Box<Staged>),
}

/// A build with its outputs locked and its sandbox started up to the store
/// inputs (see [`kiln_sandbox::launch`]). Dropped without [`Staged::build`],
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
    sandbox: Option<(SandboxSpec, kiln_sandbox::Prepared, kiln_sandbox::Launched)>,
    /// The input closure the chroot has.
    inputs: BTreeSet<StorePath>,
    /// `inputs` was only what existed when staged ahead.
    provisional: bool,
    /// The references among `inputs`, when staged ahead: the real closure is then
    /// found from them and the new inputs' references alone.
    graph: Option<ReferenceGraph>,
}

/// Store paths and their references.
type ReferenceGraph = BTreeMap<StorePath, BTreeSet<StorePath>>;

fn stage(
    store: &LocalStore,
    settings: &BuildSettings,
    drv_path: &StorePath,
    drv: &Derivation,
    inputs: impl FnOnce() -> Result<BTreeSet<StorePath>>,
    provisional: bool,
) -> Result<Claim> {
    let drv_str = store.layout().display(drv_path);
    if interrupted() {
        return Err(Error::Interrupted);
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
    let input_closure = inputs()?;
    let user = BuildUser::acquire(&settings.global_state_dir)?;
    let build_dir = make_build_dir(settings, drv_path, &user)?;
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
        inputs: input_closure,
        provisional,
        graph: None,
    };
    staged.sandbox = Some(start_sandbox(store, settings, drv, &staged)?);
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
        echo: Option<Box<dyn Write + Send>>,
    ) -> Result<Realised> {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        if let Some(announce) = &settings.on_start {
            announce(&self.drv_str);
        }
        let build_dir = self.build_dir.take().expect("built once");
        let outcome = self.run_builder(store, settings, drv, known_inputs, echo);
        let keep = outcome.is_err() && settings.keep_failed;
        if keep {
            let _ = std::fs::set_permissions(&build_dir, std::fs::Permissions::from_mode(0o755));
            eprintln!("note: keeping build directory '{}'", build_dir.display());
        } else {
            crate::cleanup::remove_dir_later(build_dir);
        }
        let infos = outcome?;
        store.register_valid_paths(&infos)?;
        release(std::mem::take(&mut self.locks));
        Ok(Realised::Built(
            infos
                .into_iter()
                .map(|i| (name_of(&self.outputs, &i.path), i))
                .collect(),
        ))
    }

    fn run_builder(
        &mut self,
        store: &LocalStore,
        settings: &BuildSettings,
        drv: &Derivation,
        known_inputs: &KnownOutputs,
        echo: Option<Box<dyn Write + Send>>,
    ) -> Result<Vec<PathInfo>> {
        let (spec, mut prepared, launched) = self.sandbox.take().expect("built once");
        let drv_str = self.drv_str.clone();
        let sandbox_err = |source| Error::Sandbox {
            drv: drv_str.clone(),
            source,
        };
        let result = (|| {
            if self.provisional {
                let direct = direct_inputs(store, drv, known_inputs, &self.drv_str)?;
                let found = match self.graph.as_mut() {
                    Some(graph) => closure_in(store, graph, &direct)?,
                    None => None,
                };
                let closure = match found {
                    Some(closure) => closure,
                    None => input_closure(store, drv, known_inputs, &self.drv_str)?,
                };
                if closure != self.inputs {
                    self.inputs = closure;
                    let inputs = sandbox_inputs(store, settings, &self.inputs)?;
                    prepared.replace_inputs(&inputs).map_err(sandbox_err)?;
                }
            }
            let mut log = BuildLog::create(&store.layout().log_path(&self.drv_path), echo)?;
            let outcome = launched.go(&prepared, &mut log).map_err(sandbox_err)?;
            let tail = log.tail_for_error();
            log.finish()?;
            if !outcome.success() {
                return Err(Error::BuilderFailed {
                    drv: drv_str.clone(),
                    outcome: outcome.describe(&spec),
                    log_tail: tail,
                });
            }
            let raw: Vec<RawOutput> = self
                .outputs
                .iter()
                .map(|(name, path)| RawOutput {
                    name: name.clone(),
                    path: path.clone(),
                    host_path: prepared.chroot_store().join(path.base_name()),
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
        let cleaned = crate::cleanup::remove_chroot_later(
            store,
            self.chroot_dir.clone(),
            prepared.skeleton().cloned(),
        )
        .map_err(sandbox_err);
        let infos = result?;
        cleaned?;
        if settings.sync_before_registering {
            store.sync_store()?;
        }
        Ok(infos)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let Some(build_dir) = self.build_dir.take() else {
            return;
        };
        if let Some((_, prepared, launched)) = self.sandbox.take() {
            drop(launched);
            drop(prepared);
            // What cannot be removed now is removed by the next build of this
            // derivation, as after a crash.
            let _ = kiln_sandbox::cleanup(&self.chroot_dir);
        }
        crate::cleanup::remove_dir_later(build_dir);
    }
}

/// The builder's environment and build-directory files, the chroot, and the
/// sandbox started up to its store inputs.
fn start_sandbox(
    store: &LocalStore,
    settings: &BuildSettings,
    drv: &Derivation,
    staged: &Staged,
) -> Result<(SandboxSpec, kiln_sandbox::Prepared, kiln_sandbox::Launched)> {
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
        drv,
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
    if !drv.env.contains_key(b"__json".as_slice()) {
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
    spec.args = drv.args.iter().map(|a| a.to_vec()).collect();
    spec.env = env;
    spec.inputs = sandbox_inputs(store, settings, &staged.inputs)?;
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
    let sandbox_err = |source| Error::Sandbox {
        drv: drv_str.clone(),
        source,
    };
    // A stale chroot from an interrupted build is removed first, as Nix does.
    kiln_sandbox::cleanup(&staged.chroot_dir).map_err(sandbox_err)?;
    let prepared = kiln_sandbox::prepare(&spec).map_err(sandbox_err)?;
    match kiln_sandbox::launch(&prepared, &settings.helper_exe) {
        Ok(launched) => Ok((spec, prepared, launched)),
        Err(e) => {
            let _ = kiln_sandbox::cleanup(&staged.chroot_dir);
            Err(sandbox_err(e))
        }
    }
}

/// The store paths the chroot shows: the input closure plus, as in Nix, the
/// closure of store paths among the `sandbox-paths` sources
/// (`/bin/sh=/nix/store/…-bash/bin/sh` needs bash's libraries).
fn sandbox_inputs(
    store: &LocalStore,
    settings: &BuildSettings,
    input_closure: &BTreeSet<StorePath>,
) -> Result<Vec<InputPath>> {
    let mut inputs: Vec<InputPath> = input_closure
        .iter()
        .map(|p| InputPath {
            name: p.base_name().to_string(),
            host_path: store.layout().real_path(p),
        })
        .collect();
    for p in sandbox_paths_closure(store, &settings.sandbox_paths)? {
        if !input_closure.contains(&p) {
            inputs.push(InputPath {
                name: p.base_name().to_string(),
                host_path: store.layout().real_path(&p),
            });
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

/// What of the input closure exists while input derivations are still being
/// built: the valid inputs, and for each input derivation not built yet, its
/// own valid inputs (all that its outputs can refer to besides themselves), each
/// temp-rooted before it is checked, closed under references.
fn provisional_closure(store: &LocalStore, drv: &Derivation) -> Result<ReferenceGraph> {
    let mut direct: Vec<StorePath> = Vec::new();
    let mut add_if_valid = |p: &StorePath| -> Result<()> {
        store.add_temp_root(p)?;
        if store.is_valid(p)? {
            direct.push(p.clone());
        }
        Ok(())
    };
    let output_paths = |d: &Derivation| -> Result<BTreeMap<String, StorePath>> {
        Ok(d.output_paths(store.store_dir())
            .map_err(|source| Error::Derivation {
                drv: String::new(),
                source: Box::new(source),
            })?
            .into_iter()
            .filter_map(|(n, p)| p.map(|p| (n, p)))
            .collect())
    };
    for p in &drv.input_srcs {
        add_if_valid(p)?;
    }
    for (input_drv, node) in &drv.input_drvs {
        let input = store.read_derivation(input_drv)?;
        let produced = output_paths(&input)?;
        let mut pending = false;
        for output in &node.outputs {
            match produced.get(output) {
                Some(p) if store.is_valid(p)? => add_if_valid(p)?,
                _ => pending = true,
            }
        }
        if pending {
            for p in &input.input_srcs {
                add_if_valid(p)?;
            }
            for (its_input, its_node) in &input.input_drvs {
                let produced = output_paths(&store.read_derivation(its_input)?)?;
                for output in &its_node.outputs {
                    if let Some(p) = produced.get(output) {
                        add_if_valid(p)?;
                    }
                }
            }
        }
    }
    Ok(store.query_closure_graph(&direct)?)
}

/// Input sources plus the outputs of input derivations, closed under references; each
/// temp-rooted before it is checked.
fn input_closure(
    store: &LocalStore,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    drv_str: &str,
) -> Result<BTreeSet<StorePath>> {
    let direct = direct_inputs(store, drv, known_inputs, drv_str)?;
    for p in &direct {
        store.add_temp_root(p)?;
        if !store.is_valid(p)? {
            return Err(Error::Store(kiln_store::Error::InvalidPath(
                store.layout().display(p),
            )));
        }
    }
    Ok(store.query_closure(&direct)?)
}

/// The closure of `direct` from the references in `graph`, which is closed under
/// references; paths not in it are looked up (temp-rooted first) and added.
/// `None` if one is not valid: [`input_closure`] then says which.
fn closure_in(
    store: &LocalStore,
    graph: &mut ReferenceGraph,
    direct: &[StorePath],
) -> Result<Option<BTreeSet<StorePath>>> {
    let mut closure = BTreeSet::new();
    let mut todo: Vec<StorePath> = direct.to_vec();
    while let Some(p) = todo.pop() {
        if closure.contains(&p) {
            continue;
        }
        if !graph.contains_key(&p) {
            store.add_temp_root(&p)?;
            let Some(info) = store.query_path_info(&p)? else {
                return Ok(None);
            };
            graph.insert(p.clone(), info.references);
        }
        todo.extend(graph[&p].iter().filter(|r| !closure.contains(*r)).cloned());
        closure.insert(p);
    }
    Ok(Some(closure))
}

/// Input sources and the wanted outputs of input derivations.
fn direct_inputs(
    store: &LocalStore,
    drv: &Derivation,
    known_inputs: &KnownOutputs,
    drv_str: &str,
) -> Result<Vec<StorePath>> {
    let mut direct: Vec<StorePath> = drv.input_srcs.iter().cloned().collect();
    for (input_drv, node) in &drv.input_drvs {
        let known = match known_inputs.get(input_drv) {
            Some(outputs) => (**outputs).clone(),
            None => store.query_derivation_outputs(input_drv)?,
        };
        let produced = if known.is_empty() {
            let input = store.read_derivation(input_drv)?;
            input
                .output_paths(store.store_dir())
                .map_err(|source| Error::Derivation {
                    drv: drv_str.to_string(),
                    source: Box::new(source),
                })?
                .into_iter()
                .filter_map(|(n, p)| p.map(|p| (n, p)))
                .collect()
        } else {
            known
        };
        for output in &node.outputs {
            let p = produced.get(output).ok_or_else(|| Error::Unsupported {
                drv: drv_str.to_string(),
                why: format!(
                    "input '{}' has no known output '{output}'",
                    store.layout().display(input_drv)
                ),
            })?;
            direct.push(p.clone());
        }
    }
    Ok(direct)
}

/// `exportReferencesGraph = [ name path … ]`: for each pair, a file `name` in the build
/// directory listing the closure of `path` in Nix's registration format (path, an empty
/// deriver line, the number of references, then the references), paths sorted.
fn export_references_graph(
    store: &LocalStore,
    drv: &Derivation,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(spec) = drv.env.get(b"exportReferencesGraph".as_slice()) else {
        return Ok(Vec::new());
    };
    let spec = String::from_utf8_lossy(spec);
    let words: Vec<&str> = spec.split_whitespace().collect();
    let bad = |why: String| Error::ExportReferences {
        drv: drv_str.to_string(),
        why,
    };
    if !words.len().is_multiple_of(2) {
        return Err(bad(format!(
            "odd number of tokens in 'exportReferencesGraph': '{spec}'"
        )));
    }
    let mut files = Vec::new();
    for pair in words.chunks(2) {
        let (name, path) = (pair[0], pair[1]);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid_name {
            return Err(bad(format!(
                "invalid file name '{name}' in 'exportReferencesGraph'"
            )));
        }
        let (root, _) = store.store_dir().parse_with_subpath(path).map_err(|_| {
            bad(format!(
                "'exportReferencesGraph' contains a non-store path '{path}'"
            ))
        })?;
        let mut text = String::new();
        for p in export_closure(store, input_closure, drv_str, [root])? {
            let refs = store.query_references(&p)?;
            text.push_str(&format!(
                "{}\n\n{}\n",
                store.layout().display(&p),
                refs.len()
            ));
            for r in refs {
                text.push_str(&store.layout().display(&r));
                text.push('\n');
            }
        }
        files.push((name.to_string(), text.into_bytes()));
    }
    Ok(files)
}

/// Nix's `exportReferences`: the closure of `roots`, each of which must be in the
/// input closure, plus the closure of the outputs of every derivation in it (for
/// images that carry a build's whole dependency graph); those outputs must be valid.
fn export_closure(
    store: &LocalStore,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
    roots: impl IntoIterator<Item = StorePath>,
) -> Result<BTreeSet<StorePath>> {
    let mut wanted = BTreeSet::new();
    for root in roots {
        if !input_closure.contains(&root) {
            return Err(Error::ExportReferences {
                drv: drv_str.to_string(),
                why: format!(
                    "cannot export references of path '{}' because it is not in the input closure of the derivation",
                    store.layout().display(&root)
                ),
            });
        }
        wanted.insert(root);
    }
    let mut closure = store.query_closure(&wanted)?;
    let derivations: Vec<StorePath> = closure
        .iter()
        .filter(|p| p.is_derivation())
        .cloned()
        .collect();
    for d in derivations {
        let outputs = store
            .read_derivation(&d)?
            .output_paths(store.store_dir())
            .map_err(|source| Error::Derivation {
                drv: store.layout().display(&d),
                source: Box::new(source),
            })?;
        for (_, output) in outputs {
            let output = output.ok_or_else(|| Error::ExportReferences {
                drv: drv_str.to_string(),
                why: "exportReferences on CA derivations is not yet implemented".into(),
            })?;
            closure.extend(store.query_closure([&output])?);
        }
    }
    Ok(closure)
}

/// The closure of the valid store paths that `sandbox-paths` sources lie in, each
/// temp-rooted (they are mounted for the whole build). A source may be named by its
/// logical path or, for a store whose root is not `/`, by its path on the host; paths
/// that are not valid are ignored, as Nix ignores them.
fn sandbox_paths_closure(
    store: &LocalStore,
    sandbox_paths: &[SandboxPath],
) -> Result<BTreeSet<StorePath>> {
    let real = store.layout().real_store_dir.clone();
    let mut roots = Vec::new();
    for p in sandbox_paths {
        let logical = match p.host.strip_prefix(&real) {
            Ok(rest) => std::path::Path::new(store.store_dir().as_str()).join(rest),
            Err(_) => p.host.clone(),
        };
        let Some(text) = logical.to_str() else {
            continue;
        };
        let Ok((root, _)) = store.store_dir().parse_with_subpath(text) else {
            continue;
        };
        store.add_temp_root(&root)?;
        if store.is_valid(&root)? {
            roots.push(root);
        }
    }
    if roots.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(store.query_closure(&roots)?)
}

/// Structured attributes' `exportReferencesGraph.<name>`: the closure of `paths` (which
/// must be in the input closure, as in Nix) as Nix 2.8's `pathInfoToJSON` prints it
/// without impure fields and with closure sizes, in store path order.
fn export_references_json(
    store: &LocalStore,
    input_closure: &BTreeSet<StorePath>,
    drv_str: &str,
    paths: &[String],
) -> Result<serde_json::Value> {
    let mut roots = Vec::new();
    for p in paths {
        let (root, _) =
            store
                .store_dir()
                .parse_with_subpath(p)
                .map_err(|_| Error::ExportReferences {
                    drv: drv_str.to_string(),
                    why: format!("path '{p}' is not in the Nix store"),
                })?;
        roots.push(root);
    }
    let mut infos = Vec::new();
    for p in export_closure(store, input_closure, drv_str, roots)? {
        let info = store
            .query_path_info(&p)?
            .ok_or_else(|| kiln_store::Error::InvalidPath(store.layout().display(&p)))?;
        let closure_size: u64 = store
            .query_closure([&p])?
            .iter()
            .map(|q| Ok(store.query_path_info(q)?.map_or(0, |i| i.nar_size)))
            .sum::<Result<u64>>()?;
        let mut obj = serde_json::Map::new();
        obj.insert("path".into(), store.layout().display(&p).into());
        obj.insert(
            "narHash".into(),
            format!("sha256:{}", info.nar_hash.to_nix32()).into(),
        );
        obj.insert("narSize".into(), info.nar_size.into());
        obj.insert(
            "references".into(),
            info.references
                .iter()
                .map(|r| serde_json::Value::from(store.layout().display(r)))
                .collect::<Vec<_>>()
                .into(),
        );
        if let Some(ca) = &info.ca {
            obj.insert("ca".into(), ca.to_string().into());
        }
        obj.insert("closureSize".into(), closure_size.into());
        infos.push(serde_json::Value::Object(obj));
    }
    Ok(serde_json::Value::Array(infos))
}

/// `$TMPDIR/nix-build-<drv name>-<n>`, 0700, owned by the build user.
fn make_build_dir(
    settings: &BuildSettings,
    drv_path: &StorePath,
    user: &BuildUser,
) -> Result<PathBuf> {
    for n in 0.. {
        let dir = settings
            .tmp_dir
            .join(format!("nix-build-{}-{n}", drv_path.name()));
        if crate::build_dirs::take(&dir) {
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
