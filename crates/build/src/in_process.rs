//! A [`Sandbox`] for tests: "the builder" is a Rust closure run on the build's own
//! thread, as the caller, writing its outputs into a directory that stands in for
//! the chroot's store. No namespaces, no root, no builder executable.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_sandbox::{InputPath, SandboxSpec};
use kiln_store::LocalStore;

use crate::cleanup::Cleanup;
use crate::runner::{Exit, Sandbox, Started, Stop};

/// The closure's view of its build: its exit code is what it returns.
pub struct BuilderCall<'a> {
    /// The builder's environment (as the real builder would get it).
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
    /// The build directory on the host.
    pub build_dir: &'a Path,
    pub log: &'a mut dyn Write,
    /// Set when the build must stop; a well-behaved closure then returns.
    pub stop: &'a Stop,
    store_dir: &'a Path,
    store_on_host: &'a Path,
}

impl BuilderCall<'_> {
    /// Where a path the builder sees (e.g. `$out`) is on the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        let rest = Path::new(inside)
            .strip_prefix(self.store_dir)
            .unwrap_or_else(|_| panic!("'{inside}' is not in the store"));
        self.store_on_host.join(rest)
    }

    /// The host path of the output whose environment variable is `name` (`out`).
    pub fn output(&self, name: &str) -> PathBuf {
        self.host_path(&self.env[name])
    }
}

type Builder = dyn Fn(&mut BuilderCall<'_>) -> i32 + Send + Sync;

/// Runs `builder` in place of each build's builder.
pub struct InProcessSandbox {
    builder: Arc<Builder>,
}

impl InProcessSandbox {
    pub fn new(builder: impl Fn(&mut BuilderCall<'_>) -> i32 + Send + Sync + 'static) -> Self {
        InProcessSandbox {
            builder: Arc::new(builder),
        }
    }
}

impl Sandbox for InProcessSandbox {
    fn isolates_users(&self) -> bool {
        false
    }

    fn start(&self, spec: &SandboxSpec) -> Result<Box<dyn Started>, kiln_sandbox::Error> {
        let io = |what: &str, path: &Path, e: std::io::Error| {
            kiln_sandbox::Error::Setup(format!("{what} '{}': {e}", path.display()))
        };
        let _ = kiln_store::remove_tree(&spec.chroot_dir);
        let inside = spec.store_dir.strip_prefix("/").unwrap_or(&spec.store_dir);
        let store_on_host = spec.chroot_dir.join(inside);
        std::fs::create_dir_all(&store_on_host).map_err(|e| io("creating", &store_on_host, e))?;
        Ok(Box::new(InProcessRun {
            spec: spec.clone(),
            store_on_host,
            builder: Arc::clone(&self.builder),
            finished: false,
        }))
    }
}

struct InProcessRun {
    spec: SandboxSpec,
    store_on_host: PathBuf,
    builder: Arc<Builder>,
    finished: bool,
}

impl Started for InProcessRun {
    fn store_on_host(&self) -> &Path {
        &self.store_on_host
    }

    fn replace_inputs(&mut self, _inputs: &[InputPath]) -> Result<(), kiln_sandbox::Error> {
        Ok(())
    }

    fn run(&mut self, log: &mut dyn Write, stop: &Stop) -> Result<Exit, kiln_sandbox::Error> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut call = BuilderCall {
            env: self
                .spec
                .env
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            args: self.spec.args.iter().map(|a| text(a)).collect(),
            build_dir: &self.spec.build_dir,
            log,
            stop,
            store_dir: &self.spec.store_dir,
            store_on_host: &self.store_on_host,
        };
        let code = (self.builder)(&mut call);
        Ok(if stop.is_set() {
            Exit::Stopped
        } else if code == 0 {
            Exit::Succeeded
        } else {
            Exit::Failed(format!("failed with exit code {code}"))
        })
    }

    fn finish(
        mut self: Box<Self>,
        _store: &LocalStore,
        _cleanup: &Cleanup,
    ) -> Result<(), kiln_sandbox::Error> {
        self.finished = true;
        kiln_store::remove_tree(&self.spec.chroot_dir)
            .map_err(|e| kiln_sandbox::Error::Setup(format!("removing the chroot: {e}")))
    }
}

impl Drop for InProcessRun {
    fn drop(&mut self) {
        if !self.finished {
            let _ = kiln_store::remove_tree(&self.spec.chroot_dir);
        }
    }
}
