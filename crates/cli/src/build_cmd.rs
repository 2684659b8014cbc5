//! `kiln build INSTALLABLE…`: realise derivations (and outputs of outputs) with the
//! scheduler, print the output paths, make `result` links.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use kiln_build::{
    ActivityHook, BuildSettings, BuilderActivity, DerivationExecutor, Goal, GoalOutput, Platform,
};
use kiln_config::Config;
use kiln_derivation::{DerivedPath, OutputsSpec, SingleDerivedPath};
use kiln_scheduler::{CancelToken, Event, Options, Scheduler};
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

use crate::store_arg::StoreLocation;
use crate::store_cmd::open;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// `.drv` paths (optionally `^out,dev`, `^*`, or `^out^out` for dynamic
    /// derivations) or existing store paths.
    #[arg(required = true)]
    installables: Vec<String>,
    /// Maximum number of builds at once (`max-jobs`; 0 builds nothing).
    #[arg(short = 'j', long = "max-jobs")]
    jobs: Option<usize>,
    /// Value of NIX_BUILD_CORES for each build (`cores`; default: all CPUs).
    #[arg(long)]
    cores: Option<usize>,
    /// Go on building what does not depend on a failure.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Name of the result symlink(s).
    #[arg(
        short = 'o',
        long,
        default_value = "result",
        conflicts_with = "no_link"
    )]
    out_link: String,
    /// Make no result symlinks.
    #[arg(long)]
    no_link: bool,
    /// Print one JSON object per installable, like `nix build --json`.
    #[arg(long)]
    json: bool,
    /// Copy build logs to stderr as they are produced.
    #[arg(short = 'L', long = "print-build-logs")]
    print_build_logs: bool,
    /// Kill a build after this many seconds (0: no limit).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Kill a build after this many seconds without output (0: no limit).
    #[arg(long, value_name = "SECONDS")]
    max_silent_time: Option<u64>,
    /// Keep the build directory of a failed build.
    #[arg(long)]
    keep_failed: bool,
    /// Make a host path visible in the sandbox: `PATH`, `INSIDE=HOST`, with a trailing
    /// `?` if it may be missing (like `sandbox-paths`; repeatable). Nix.conf's
    /// `sandbox-paths` and `extra-sandbox-paths` are used too.
    #[arg(long = "sandbox-path", value_name = "SPEC")]
    sandbox_paths: Vec<String>,
}

/// What one installable asks for, and how its result is read from the report.
struct Request {
    text: String,
    drv: Option<StorePath>,
    /// (output name, goal giving its path); for a bare store path, ("", Path goal).
    wanted: Vec<(String, Goal)>,
    all_outputs_of: Option<Goal>,
}

/// On the first SIGINT/SIGTERM, cancel `interrupt`: the executor stops the running
/// builders and the run winds down (stopped builds clean up as usual); on the
/// second, exit at once.
fn handle_interrupts(interrupt: CancelToken) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the interrupt handler")?;
    std::thread::Builder::new()
        .name("kiln-signals".into())
        .spawn(move || {
            for (count, _) in signals.forever().enumerate() {
                if count > 0 {
                    std::process::exit(130);
                }
                interrupt.cancel();
            }
        })
        .context("starting the interrupt handler")?;
    Ok(())
}

pub fn run(location: &StoreLocation, args: BuildArgs, config: &Config) -> anyhow::Result<()> {
    let interrupt = CancelToken::new();
    handle_interrupts(interrupt.clone())?;
    let helper_exe = std::env::current_exe().context("locating the kiln executable")?;
    // Dropped last (after the background cleanup that may still recycle chroots
    // into it): stops the helpers and deletes the kept chroot skeletons.
    let sandboxes = Arc::new(kiln_sandbox::Sandboxes::new(helper_exe));
    // The helper starts while the store is opened and the graph planned; errors
    // surface at the first build.
    let starting = Arc::clone(&sandboxes);
    std::thread::spawn(move || {
        let _ = starting.start_helper();
    });
    let store = open(location)?;
    store.on_unclaimed_registration_failure(Box::new(|failure| {
        eprintln!(
            "error: registering the outputs of '{}': {}",
            failure.what, failure.error
        );
    }));
    let requests = args
        .installables
        .iter()
        .map(|i| parse_installable(&store, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut settings = BuildSettings::new(Arc::clone(&sandboxes));
    // Flags win over the configuration, as Nix's do.
    settings.cores = args
        .cores
        .unwrap_or(config.uint("cores").try_into().unwrap_or(usize::MAX));
    settings.keep_failed = args.keep_failed || config.bool("keep-failed");
    settings.sync_before_registering = config.bool("sync-before-registering");
    settings.register_in_background = true;
    settings.sandbox_paths = config
        .strings("sandbox-paths")
        .iter()
        .chain(&args.sandbox_paths)
        .map(|spec| kiln_sandbox::SandboxPath::parse(spec))
        .collect();
    // 0 means no limit, as in Nix.
    let limit = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
    settings.timeout = limit(args.timeout.unwrap_or(config.uint("timeout")));
    settings.max_silent_time = limit(
        args.max_silent_time
            .unwrap_or(config.uint("max-silent-time")),
    );
    settings.platform = Arc::new(Platform::from_config(config));
    let jobs = args
        .jobs
        .unwrap_or(config.uint("max-jobs").try_into().unwrap_or(usize::MAX));
    settings.local_builds = jobs > 0;
    let progress = ProgressReport::new();
    settings.on_activity = progress.activity_hook();
    let bar = progress.bar.clone();
    settings.on_start = Some(Arc::new(move |drv: &str| {
        let line = format!("building '{drv}'...");
        match &bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }));
    let bar = progress.bar.clone();
    settings.on_keep_failed = Some(Arc::new(move |dir: &std::path::Path| {
        let line = format!("note: keeping build directory '{}'", dir.display());
        match &bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }));
    let mut executor = DerivationExecutor::new(&store, settings).interrupted_by(interrupt.clone());
    if args.print_build_logs {
        executor = executor.with_log_echo(Arc::new(Mutex::new(std::io::stderr())));
    }
    let scheduler = Scheduler::new(
        executor,
        Options {
            jobs: NonZeroUsize::new(jobs.max(1)).expect("at least 1"),
            keep_going: args.keep_going || config.bool("keep-going"),
        },
    );
    let goals: Vec<Goal> = requests
        .iter()
        .flat_map(|r| {
            r.wanted
                .iter()
                .map(|(_, g)| g.clone())
                .chain(r.all_outputs_of.clone())
        })
        .collect();
    let mut progress = progress;
    let report = scheduler.run(goals, &mut |e: Event<
        '_,
        Goal,
        GoalOutput,
        kiln_build::Error,
    >| progress.event(e));
    progress.finish();
    // The executor goes with the scheduler: builds staged but never run drop their
    // sandboxes, and every background removal is waited for.
    drop(scheduler);
    let registration_failures = store.finish_registrations();
    for failure in &registration_failures {
        eprintln!(
            "error: registering the outputs of '{}': {}",
            failure.what, failure.error
        );
    }

    if interrupt.is_cancelled() {
        bail!("interrupted by the user");
    }
    let mut failed = false;
    for (key, failure) in report.failed() {
        if failure.is_root() {
            eprintln!("error: {}", describe_failure(&store, key, failure));
            failed = true;
        }
    }
    if failed || !report.is_success() || !registration_failures.is_empty() {
        bail!("build failed");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut json = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let mut outputs: BTreeMap<String, StorePath> = BTreeMap::new();
        if let Some(goal) = &request.all_outputs_of {
            let o = report
                .outcome(goal)
                .and_then(|o| o.output())
                .context("missing outcome")?;
            outputs.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        for (name, goal) in &request.wanted {
            let o = report
                .outcome(goal)
                .and_then(|o| o.output())
                .context("missing outcome")?;
            let path = match goal {
                Goal::Derivation(_) => o.get(name).cloned(),
                Goal::Path(_) => o.get("").cloned(),
            }
            .with_context(|| format!("'{}' has no output '{name}'", request.text))?;
            outputs.insert(name.clone(), path);
        }
        for (name, path) in &outputs {
            if !args.json {
                writeln!(out, "{}", store.store_dir().display(path))?;
            }
            if !args.no_link {
                let mut link = if index == 0 {
                    args.out_link.clone()
                } else {
                    format!("{}-{index}", args.out_link)
                };
                if !name.is_empty() && name != "out" {
                    link = format!("{link}-{name}");
                }
                store.add_indirect_root(&PathBuf::from(link), path)?;
            }
        }
        if args.json {
            let mut obj = serde_json::Map::new();
            if let Some(drv) = &request.drv {
                obj.insert("drvPath".into(), store.store_dir().display(drv).into());
            }
            let outs: serde_json::Map<String, serde_json::Value> = outputs
                .iter()
                .map(|(n, p)| {
                    (
                        if n.is_empty() {
                            "out".to_string()
                        } else {
                            n.clone()
                        },
                        store.store_dir().display(p).into(),
                    )
                })
                .collect();
            obj.insert("outputs".into(), outs.into());
            json.push(serde_json::Value::Object(obj));
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::Value::Array(json))?;
    }
    Ok(())
}

fn describe_failure(
    store: &LocalStore,
    key: &Goal,
    failure: &kiln_scheduler::Failure<Goal, kiln_build::Error>,
) -> String {
    match failure {
        kiln_scheduler::Failure::Plan(e) | kiln_scheduler::Failure::Run(e) => crate::error_chain(e),
        other => format!("{}: {other}", goal_text(store, key)),
    }
}

fn goal_text(store: &LocalStore, goal: &Goal) -> String {
    match goal {
        Goal::Derivation(p) => store.store_dir().display(p),
        Goal::Path(p) => p.to_string(store.store_dir()),
    }
}

fn parse_installable(store: &LocalStore, text: &str) -> anyhow::Result<Request> {
    if text.contains('^') {
        let parsed = DerivedPath::parse(store.store_dir(), text)
            .with_context(|| format!("'{text}' is not an installable"))?;
        return Ok(match parsed {
            DerivedPath::Opaque(p) => opaque(store, text, p),
            DerivedPath::Built { drv_path, outputs } => match (drv_path, outputs) {
                (SingleDerivedPath::Opaque(drv), OutputsSpec::All) => Request {
                    text: text.to_string(),
                    all_outputs_of: Some(Goal::Derivation(drv.clone())),
                    drv: Some(drv),
                    wanted: Vec::new(),
                },
                (SingleDerivedPath::Opaque(drv), OutputsSpec::Names(names)) => Request {
                    text: text.to_string(),
                    wanted: names.into_iter().map(|n| (n, Goal::Derivation(drv.clone()))).collect(),
                    drv: Some(drv),
                    all_outputs_of: None,
                },
                (inner, OutputsSpec::Names(names)) => Request {
                    text: text.to_string(),
                    drv: None,
                    wanted: names
                        .into_iter()
                        .map(|n| {
                            let goal = Goal::Path(SingleDerivedPath::Built {
                                drv_path: Box::new(inner.clone()),
                                output: n.clone(),
                            });
                            (n, goal)
                        })
                        .collect(),
                    all_outputs_of: None,
                },
                (_, OutputsSpec::All) => bail!("'{text}': '^*' of a dynamic derivation's output is not supported yet; name the outputs"),
            },
        });
    }
    let path = crate::store_cmd::resolve_store_path(store, text)?;
    if path.is_derivation() {
        // A bare `.drv` means all its outputs, as `nix-store --realise` does.
        return Ok(Request {
            text: text.to_string(),
            all_outputs_of: Some(Goal::Derivation(path.clone())),
            drv: Some(path),
            wanted: Vec::new(),
        });
    }
    Ok(opaque(store, text, path))
}

fn opaque(_store: &LocalStore, text: &str, path: StorePath) -> Request {
    Request {
        text: text.to_string(),
        drv: None,
        wanted: vec![(String::new(), Goal::Path(SingleDerivedPath::Opaque(path)))],
        all_outputs_of: None,
    }
}

/// A progress bar on a terminal: built/total, the builds running, and their downloads.
struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    state: Arc<Mutex<ProgressState>>,
}

#[derive(Default)]
struct ProgressState {
    /// Names of the derivations whose builders are running.
    running: std::collections::BTreeSet<String>,
    /// Downloads under way, by (`.drv`, activity id): what, bytes done, bytes expected.
    downloads: BTreeMap<(String, u64), (String, u64, u64)>,
}

impl ProgressState {
    fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.running.is_empty() {
            let names: Vec<&str> = self.running.iter().map(String::as_str).collect();
            parts.push(format!("building {}", names.join(", ")));
        }
        for (text, done, expected) in self.downloads.values() {
            let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
            parts.push(if *expected > 0 {
                format!("{text} ({:.1}/{:.1} MiB)", mib(*done), mib(*expected))
            } else {
                format!("{text} ({:.1} MiB)", mib(*done))
            });
        }
        parts.join("; ")
    }

    fn activity(&mut self, drv: &str, report: &BuilderActivity) {
        match report {
            BuilderActivity::Started { id, text } => {
                self.downloads
                    .insert((drv.to_string(), *id), (text.clone(), 0, 0));
            }
            BuilderActivity::Progress { id, done, expected } => {
                if let Some(entry) = self.downloads.get_mut(&(drv.to_string(), *id)) {
                    entry.1 = *done;
                    entry.2 = *expected;
                }
            }
            BuilderActivity::Stopped { id } => {
                self.downloads.remove(&(drv.to_string(), *id));
            }
        }
    }
}

impl ProgressReport {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("[{pos}/{len} built] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        ProgressReport {
            bar,
            state: Arc::default(),
        }
    }

    /// What builders report of their downloads, shown on the bar (only on a terminal).
    fn activity_hook(&self) -> Option<ActivityHook> {
        let bar = self.bar.clone()?;
        let state = self.state.clone();
        Some(Arc::new(move |drv: &str, report: &BuilderActivity| {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.activity(drv, report);
            bar.set_message(state.message());
        }))
    }

    fn event(&mut self, event: Event<'_, Goal, GoalOutput, kiln_build::Error>) {
        let Some(bar) = &self.bar else { return };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started {
                key: Goal::Derivation(p),
                ..
            } => {
                state.running.insert(p.name_without_drv_ext().to_string());
            }
            Event::Built {
                key: Goal::Derivation(p),
                ..
            }
            | Event::Failed {
                key: Goal::Derivation(p),
                ..
            }
            | Event::Retrying {
                key: Goal::Derivation(p),
                ..
            } => {
                state.running.remove(p.name_without_drv_ext());
            }
            Event::Progress(p) => {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
            }
            _ => {}
        }
        bar.set_message(state.message());
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_running_builds_and_their_downloads() {
        let mut state = ProgressState::default();
        state.running.insert("hello".into());
        let started = BuilderActivity::Started {
            id: 1,
            text: "downloading 'http://x/a.tar'".into(),
        };
        state.activity("/nix/store/d-a.drv", &started);
        assert_eq!(
            state.message(),
            "building hello; downloading 'http://x/a.tar' (0.0 MiB)"
        );
        let progress = BuilderActivity::Progress {
            id: 1,
            done: 1024 * 1024,
            expected: 4 * 1024 * 1024,
        };
        state.activity("/nix/store/d-a.drv", &progress);
        assert_eq!(
            state.message(),
            "building hello; downloading 'http://x/a.tar' (1.0/4.0 MiB)"
        );
        state.activity("/nix/store/d-a.drv", &BuilderActivity::Stopped { id: 1 });
        state.running.clear();
        assert_eq!(state.message(), "");
    }
}
