//! `kiln`: the command-line front end. The only crate that composes every layer; it
//! adds context to library errors and prints them for a person. Results go to stdout,
//! diagnostics to stderr; exit 1 on failure, 2 on a usage error.

mod build_cmd;
mod derivation_cmd;
mod gc_cmd;
mod hash_cmd;
mod nar_cmd;
mod store_arg;
mod store_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kiln_store::VerifyOptions;
use kiln_store_path::FileIngestionMethod;

#[derive(Parser)]
#[command(name = "kiln", version, about = "A Nix-compatible build system")]
struct Cli {
    /// Store to use: DIR, local?root=DIR, / or local (also $KILN_STORE).
    #[arg(long, global = true, env = "KILN_STORE", value_name = "STORE")]
    store: Option<String>,

    /// Set a configuration setting, over nix.conf and $NIX_CONFIG (repeatable).
    #[arg(long = "option", global = true, num_args = 2, value_names = ["NAME", "VALUE"])]
    options: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute hashes of paths and files, as nix-hash does.
    #[command(subcommand)]
    Hash(HashCommand),
    /// Read and write Nix archives (NAR).
    #[command(subcommand)]
    Nar(NarCommand),
    /// Inspect and add derivations.
    #[command(subcommand)]
    Derivation(DerivationCommand),
    /// Manipulate the store: add objects, verify, roots.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Build derivations and print their output paths.
    Build(build_cmd::BuildArgs),
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the build log of a derivation (or of the derivation that built a path).
    Log { path: String },
    /// Show metadata of store paths (NAR hash and size, references, deriver, CA).
    PathInfo {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Show the closure of the paths.
        #[arg(short, long)]
        recursive: bool,
        #[arg(long)]
        json: bool,
        /// Show the NAR size of each path.
        #[arg(short = 's', long)]
        size: bool,
        /// Show the total NAR size of each path's closure.
        #[arg(short = 'S', long)]
        closure_size: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting with its effective value, like `nix show-config`.
    Show,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Add files or trees, NAR-hashed (like `nix-store --add`); prints the store paths.
    AddPath {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Store path name (default: the file's base name); only with a single PATH.
        #[arg(long)]
        name: Option<String>,
    },
    /// Add single files, flat-hashed (like `nix-store --add-fixed sha256`).
    AddFile {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Store path name (default: the file's base name); only with a single FILE.
        #[arg(long)]
        name: Option<String>,
    },
    /// Check the database against the files.
    Verify {
        /// Re-hash every path.
        #[arg(long)]
        check_contents: bool,
        /// Fix what can be fixed locally.
        #[arg(long)]
        repair: bool,
    },
    /// Make LINK an indirect GC root for PATH.
    AddRoot { link: PathBuf, path: String },
    /// Delete unreachable paths; prints each deleted path, then a summary on stderr.
    Gc {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Stop after freeing this many bytes.
        #[arg(long, value_name = "BYTES")]
        max_freed: Option<u64>,
    },
    /// Delete the given paths if nothing alive refers to them.
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List GC roots: what roots each path.
    Roots,
}

#[derive(Subcommand)]
enum HashCommand {
    /// The hash of the NAR serialisation of each PATH (like `nix-hash --type T PATH`).
    Path(HashArgs),
    /// The hash of each FILE's bytes (like `nix-hash --flat`).
    File(HashArgs),
}

#[derive(Args)]
struct HashArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// md5, sha1, sha256 or sha512.
    #[arg(long = "type", default_value = "sha256")]
    algorithm: String,
    #[command(flatten)]
    format: hash_cmd::FormatFlags,
    /// Fold the hash to 160 bits, as `nix-hash --truncate` does.
    #[arg(long)]
    truncate: bool,
}

#[derive(Subcommand)]
enum NarCommand {
    /// Write the NAR serialisation of PATH to stdout (like `nix-store --dump`).
    Dump { path: PathBuf },
    /// Unpack a NAR read from stdin into DIR, which must not exist.
    Restore { dir: PathBuf },
    /// List the members of a NAR file.
    Ls {
        nar_file: PathBuf,
        /// Member to list (default: the root).
        path: Option<String>,
        /// List directories recursively.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Print a regular file member of a NAR file.
    Cat { nar_file: PathBuf, path: String },
}

#[derive(Subcommand)]
enum DerivationCommand {
    /// Print derivations as JSON, like `nix show-derivation` of Nix 2.8.
    Show {
        #[arg(required = true)]
        drvs: Vec<String>,
        /// Include the closure of input derivations.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Write a derivation given as JSON on stdin into the store; prints its path.
    Add,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Hash(HashCommand::Path(args)) => hash_cmd::run(
            &args.paths,
            &args.algorithm,
            args.format,
            args.truncate,
            hash_cmd::Mode::Nar,
        ),
        Command::Hash(HashCommand::File(args)) => hash_cmd::run(
            &args.paths,
            &args.algorithm,
            args.format,
            args.truncate,
            hash_cmd::Mode::Flat,
        ),
        Command::Nar(NarCommand::Dump { path }) => nar_cmd::dump(&path),
        Command::Nar(NarCommand::Restore { dir }) => nar_cmd::restore(&dir),
        Command::Nar(NarCommand::Ls {
            nar_file,
            path,
            recursive,
        }) => nar_cmd::ls(&nar_file, path.as_deref(), recursive),
        Command::Nar(NarCommand::Cat { nar_file, path }) => nar_cmd::cat(&nar_file, &path),
        Command::Derivation(DerivationCommand::Show { drvs, recursive }) => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            derivation_cmd::show(&location, &drvs, recursive)
        }
        Command::Derivation(DerivationCommand::Add) => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            derivation_cmd::add(&location)
        }
        Command::Store(cmd) => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            match cmd {
                StoreCommand::AddPath { paths, name } => store_cmd::add(
                    &location,
                    &paths,
                    name.as_deref(),
                    FileIngestionMethod::Recursive,
                ),
                StoreCommand::AddFile { files, name } => store_cmd::add(
                    &location,
                    &files,
                    name.as_deref(),
                    FileIngestionMethod::Flat,
                ),
                StoreCommand::Verify {
                    check_contents,
                    repair,
                } => store_cmd::verify(
                    &location,
                    VerifyOptions {
                        check_contents,
                        repair,
                    },
                ),
                StoreCommand::AddRoot { link, path } => {
                    store_cmd::add_root(&location, &link, &path)
                }
                StoreCommand::Gc { dry_run, max_freed } => {
                    gc_cmd::gc(&location, dry_run, max_freed, &load_config(&cli.options)?)
                }
                StoreCommand::Delete { paths } => {
                    gc_cmd::delete(&location, &paths, &load_config(&cli.options)?)
                }
                StoreCommand::Roots => gc_cmd::roots(&location),
            }
        }
        Command::Build(args) => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            build_cmd::run(&location, args, &load_config(&cli.options)?)
        }
        Command::Config(ConfigCommand::Show) => {
            use std::io::Write;
            let config = load_config(&cli.options)?;
            std::io::stdout().write_all(config.show().as_bytes())?;
            Ok(())
        }
        Command::Log { path } => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            store_cmd::log(&location, &path)
        }
        Command::PathInfo {
            paths,
            recursive,
            json,
            size,
            closure_size,
        } => {
            let location = store_arg::StoreLocation::resolve(cli.store.as_deref())?;
            store_cmd::path_info(
                &location,
                store_cmd::PathInfoArgs {
                    paths: &paths,
                    recursive,
                    json,
                    closure_size,
                    size,
                },
            )
        }
    }
}

/// The configuration's files and `$NIX_CONFIG`, then `--option`s in their order; unknown
/// settings are warned about, as Nix does.
fn load_config(options: &[String]) -> anyhow::Result<kiln_config::Config> {
    let mut config = kiln_config::Config::load().context("reading the configuration")?;
    for pair in options.chunks(2) {
        if let [name, value] = pair {
            config.set(name, value)?;
        }
    }
    for name in config.unknown().keys() {
        eprintln!("warning: unknown setting '{name}'");
    }
    Ok(config)
}

fn main() -> ExitCode {
    // kiln is its own sandbox helper: a fresh single-threaded process does the
    // namespace setup, so the (multi-threaded) builder never forks into it.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(kiln_sandbox::HELPER_ARG))
    {
        // Before the helper clones its first sandbox: every clone inherits it.
        kiln_sandbox::set_builtin_runner(kiln_builtins::run);
        kiln_sandbox::helper_main();
    }
    // Nix forces this umask at startup; files kiln creates outside the store (restored
    // NARs, build directories) then get the modes Nix's would.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever reads our output has had enough of it (`| head`): that is their
        // choice, not a failure, and there is no one left to tell (ripgrep does the
        // same).
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A broken pipe in the chain, and stdout is a pipe nobody reads any more: the error
/// came from writing our output. An `EPIPE` from anything else (a socket, a helper
/// process) while stdout is fine is a real failure and is reported.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken && stdout_reader_gone()
}

fn stdout_reader_gone() -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    // A pipe without readers polls as an error; anything else (a terminal, a file, a
    // pipe still read) does not.
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok_and(|_| fds[0].revents().contains(PollFlags::ERR))
}

/// A library error with its causes, `: `-separated, as `anyhow`'s `{:#}` prints them:
/// for errors reported without going through `anyhow`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    std::iter::successors(Some(err), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
