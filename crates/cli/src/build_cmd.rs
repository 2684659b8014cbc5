//! `kiln build INSTALLABLE…`: realise derivations (and outputs of outputs) with the
//! scheduler, print the output paths, make `result` links.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use kiln_build::{BuildSettings, DerivationExecutor, Goal, GoalOutput, Platform};
use kiln_derivation::{DerivedPath, OutputsSpec, SingleDerivedPath};
use kiln_scheduler::{Event, Options, Scheduler};
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
    /// Maximum number of builds at once.
    #[arg(short = 'j', long = "max-jobs", default_value_t = 1)]
    jobs: usize,
    /// Value of NIX_BUILD_CORES for each build (default: all CPUs).
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
    /// Set a `nix.conf` setting for this run (repeatable); wins over `nix.conf` and
    /// `$NIX_CONFIG`.
    #[arg(long = "option", num_args = 2, value_names = ["NAME", "VALUE"])]
    options: Vec<String>,
}

/// The `nix.conf` settings `kiln build` honours, from `$NIX_CONF_DIR/nix.conf` (default
/// `/etc/nix`), then `$NIX_CONFIG`, then `--option`, later lines winning as in Nix.
#[derive(Debug, PartialEq, Eq)]
struct NixConf {
    sandbox_paths: Vec<String>,
    /// Nix's `sync-before-registering`. Nix's default is false; kiln's is true, so
    /// that no registered path can lack its contents after a crash.
    sync_before_registering: bool,
    platform: Platform,
}

impl NixConf {
    fn load(options: &[String]) -> NixConf {
        let dir = std::env::var_os("NIX_CONF_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/nix"));
        let mut texts: Vec<String> = std::fs::read_to_string(dir.join("nix.conf"))
            .into_iter()
            .collect();
        texts.extend(std::env::var("NIX_CONFIG"));
        texts.extend(
            options
                .chunks(2)
                .map(|pair| format!("{} = {}\n", pair[0], pair.get(1).map_or("", |v| v))),
        );
        NixConf::parse(&texts)
    }

    fn parse(texts: &[String]) -> NixConf {
        let mut conf = NixConf {
            sandbox_paths: Vec::new(),
            sync_before_registering: true,
            platform: Platform::this_machine(),
        };
        for text in texts {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let words = || value.split_whitespace().map(String::from);
                match key.trim() {
                    "sandbox-paths" | "build-chroot-dirs" | "build-sandbox-paths" => {
                        conf.sandbox_paths = words().collect();
                    }
                    "extra-sandbox-paths" | "build-extra-sandbox-paths" => {
                        conf.sandbox_paths.extend(words());
                    }
                    "sync-before-registering" => match value.trim() {
                        "true" => conf.sync_before_registering = true,
                        "false" => conf.sync_before_registering = false,
                        _ => {}
                    },
                    "system" => conf.platform.system = value.trim().to_string(),
                    "extra-platforms" => conf.platform.extra_platforms = words().collect(),
                    "extra-extra-platforms" => conf.platform.extra_platforms.extend(words()),
                    "system-features" => conf.platform.features = words().collect(),
                    "extra-system-features" => conf.platform.features.extend(words()),
                    _ => {}
                }
            }
        }
        conf
    }
}

/// What one installable asks for, and how its result is read from the report.
struct Request {
    text: String,
    drv: Option<StorePath>,
    /// (output name, goal giving its path); for a bare store path, ("", Path goal).
    wanted: Vec<(String, Goal)>,
    all_outputs_of: Option<Goal>,
}

/// On the first SIGINT/SIGTERM, kill the running builders and let the run wind down
/// (failed builds clean up as usual); on the second, exit at once.
fn handle_interrupts() -> anyhow::Result<()> {
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
                kiln_build::interrupt();
            }
        })
        .context("starting the interrupt handler")?;
    Ok(())
}

pub fn run(location: &StoreLocation, args: BuildArgs) -> anyhow::Result<()> {
    handle_interrupts()?;
    let helper_exe = std::env::current_exe().context("locating the kiln executable")?;
    // The helper starts while the store is opened and the graph planned; errors
    // surface at the first build.
    let helper = helper_exe.clone();
    std::thread::spawn(move || {
        let _ = kiln_sandbox::start_helper(&helper);
    });
    let store = open(location)?;
    let requests = args
        .installables
        .iter()
        .map(|i| parse_installable(&store, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut settings = BuildSettings::new(helper_exe);
    if let Some(c) = args.cores {
        settings.cores = c;
    }
    settings.keep_failed = args.keep_failed;
    let conf = NixConf::load(&args.options);
    settings.sync_before_registering = conf.sync_before_registering;
    settings.register_in_background = true;
    settings.sandbox_paths = conf
        .sandbox_paths
        .iter()
        .chain(&args.sandbox_paths)
        .map(|spec| kiln_sandbox::SandboxPath::parse(spec))
        .collect();
    // 0 means no limit, as in Nix.
    let limit = |secs: Option<u64>| secs.filter(|&s| s > 0).map(Duration::from_secs);
    settings.timeout = limit(args.timeout);
    settings.max_silent_time = limit(args.max_silent_time);
    settings.platform = Arc::new(conf.platform);
    settings.local_builds = args.jobs > 0;
    let progress = ProgressReport::new();
    let bar = progress.bar.clone();
    settings.on_start = Some(Arc::new(move |drv: &str| {
        let line = format!("building '{drv}'...");
        match &bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }));
    let mut executor = DerivationExecutor::new(&store, settings);
    if args.print_build_logs {
        executor = executor.with_log_echo(Arc::new(Mutex::new(std::io::stderr())));
    }
    let scheduler = Scheduler::new(
        executor,
        Options {
            jobs: NonZeroUsize::new(args.jobs.max(1)).expect("at least 1"),
            keep_going: args.keep_going,
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
    // Builds staged but never run drop their sandboxes and queue their directories
    // for removal; the queue is flushed next.
    drop(scheduler);
    let registration_failures = store.finish_registrations();
    kiln_build::finish_background_cleanup();
    for failure in &registration_failures {
        eprintln!(
            "error: registering the outputs of '{}': {}",
            failure.what, failure.error
        );
    }

    if kiln_build::interrupted() {
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
        kiln_scheduler::Failure::Plan(e) | kiln_scheduler::Failure::Run(e) => format!("{e}"),
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

/// A progress bar on a terminal (built/total, running).
struct ProgressReport {
    bar: Option<indicatif::ProgressBar>,
    /// Names of the derivations whose builders are running, for the bar's message.
    running: std::collections::BTreeSet<String>,
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
            running: Default::default(),
        }
    }

    fn event(&mut self, event: Event<'_, Goal, GoalOutput, kiln_build::Error>) {
        let Some(bar) = &self.bar else { return };
        match event {
            Event::Started {
                key: Goal::Derivation(p),
                ..
            } => {
                self.running.insert(p.name_without_drv_ext().to_string());
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
                self.running.remove(p.name_without_drv_ext());
            }
            Event::Progress(p) => {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
            }
            _ => {}
        }
        let names: Vec<&str> = self.running.iter().map(String::as_str).collect();
        bar.set_message(if names.is_empty() {
            String::new()
        } else {
            format!("building {}", names.join(", "))
        });
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NixConf;

    #[test]
    fn nix_conf_settings_later_lines_win() {
        let conf = NixConf::parse(&[
            "sandbox-paths = /a /b=/c # comment\nsync-before-registering = false\n".into(),
            "extra-sandbox-paths = /d?\n".into(),
        ]);
        assert_eq!(conf.sandbox_paths, ["/a", "/b=/c", "/d?"]);
        assert!(!conf.sync_before_registering);
        let conf = NixConf::parse(&["sync-before-registering = maybe\n".into()]);
        assert!(conf.sync_before_registering, "kiln's default stays");
        let conf = NixConf::parse(&[
            "extra-sandbox-paths = /x\n".into(),
            "build-chroot-dirs = /y\n".into(),
        ]);
        assert_eq!(conf.sandbox_paths, ["/y"]);
        let conf = NixConf::parse(&[
            "system-features = a b\nextra-system-features = c\n".into(),
            "system = i086-msdos\nextra-platforms = z80-cpm\n".into(),
        ]);
        assert_eq!(
            conf.platform.features,
            ["a", "b", "c"].map(String::from).into()
        );
        assert_eq!(conf.platform.system, "i086-msdos");
        assert_eq!(
            conf.platform.extra_platforms,
            ["z80-cpm".to_string()].into()
        );
    }
}
