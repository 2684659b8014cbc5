//! [`LocalStore`]: opening a store (creating it as Nix would), queries, and the
//! protocol every write follows: temp root, lock, re-check, write, sync, register.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kiln_hash::Hash;
use kiln_store_path::{StoreDir, StorePath};

use crate::background::{Job, Registrar, RegistrationFailure, UnclaimedFailureHook, SYNC_CONTEXT};
use crate::db::{Db, GraphRow, Registration, CA_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::lock::{open_lock_file, PathLock};
use crate::temp_roots::TempRoots;
use crate::PathInfo;

pub struct LocalStore {
    layout: Layout,
    db: Arc<Mutex<Db>>,
    /// Builds handed over by [`LocalStore::register_valid_paths_later`].
    registrar: Registrar,
    temp_roots: Arc<TempRoots>,
    // Hash modulo of `.drv`s never changes, so it is memoised for the store's lifetime.
    drv_hashes: Mutex<kiln_derivation::DrvHashCache>,
    /// The `.drv`s this process read after temp-rooting them: no collector deletes
    /// them while we live (only `--ignore-liveness` does, which misleads Nix's own
    /// caches as well), and a store path's contents never change while it is valid.
    derivations: Mutex<std::collections::HashMap<StorePath, Arc<kiln_derivation::Derivation>>>,
    // Held shared for as long as the database is open, as Nix requires; a Nix that
    // wants to migrate the schema waits for it.
    _big_lock: File,
}

impl LocalStore {
    /// Open (creating if needed) the store whose files live under `root`
    /// (`/` for the machine's `/nix`).
    pub fn open(root: &Path) -> Result<LocalStore> {
        Self::open_layout(Layout::under_root(root))
    }

    /// Open (creating if needed) the store whose files are where `layout` says.
    pub fn open_layout(layout: Layout) -> Result<LocalStore> {
        create_directories(&layout)?;
        let db_dir = layout.db_dir();
        let big_lock_path = db_dir.join("big-lock");
        let big_lock = open_lock_file(&big_lock_path).ctx("opening", &big_lock_path)?;
        big_lock.lock_shared().ctx("locking", &big_lock_path)?;

        let schema_path = db_dir.join("schema");
        let db_path = db_dir.join("db.sqlite");
        let mut version = read_schema(&schema_path)?;
        if version < SCHEMA_VERSION {
            // Creating (or finding a half-created) store: do it exclusively, then
            // re-read in case another process did it while we waited.
            big_lock.lock().ctx("locking", &big_lock_path)?;
            version = read_schema(&schema_path)?;
            if version == 0 {
                drop(Db::open(&db_path, true, layout.store_dir.clone())?);
                fs::write(&schema_path, SCHEMA_VERSION.to_string()).ctx("writing", &schema_path)?;
                version = SCHEMA_VERSION;
            }
            big_lock.lock_shared().ctx("locking", &big_lock_path)?;
        }
        if version != SCHEMA_VERSION {
            return Err(Error::UnsupportedSchema {
                path: schema_path,
                found: version,
            });
        }
        let db = Db::open(&db_path, false, layout.store_dir.clone())?;
        let ca_schema_path = db_dir.join("ca-schema");
        // Only if nobody else has the store open: never wait here, since a daemon may
        // hold its shared lock forever. A failed conversion may drop our shared lock,
        // so it is always re-taken.
        // Re-read under the exclusive lock: another process may have just done it.
        if read_schema(&ca_schema_path)? < CA_SCHEMA_VERSION
            && big_lock.try_lock().is_ok()
            && read_schema(&ca_schema_path)? < CA_SCHEMA_VERSION
        {
            db.create_ca_schema()?;
            fs::write(&ca_schema_path, CA_SCHEMA_VERSION.to_string())
                .ctx("writing", &ca_schema_path)?;
        }
        big_lock.lock_shared().ctx("locking", &big_lock_path)?;
        let db = Arc::new(Mutex::new(db));
        Ok(LocalStore {
            temp_roots: TempRoots::for_state_dir(&layout.state_dir),
            registrar: Registrar::new(Arc::clone(&db), layout.real_store_dir.clone()),
            layout,
            db,
            drv_hashes: Mutex::new(kiln_derivation::DrvHashCache::new()),
            derivations: Mutex::default(),
            _big_lock: big_lock,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.layout.store_dir
    }

    pub(crate) fn drv_hash_cache(&self) -> MutexGuard<'_, kiln_derivation::DrvHashCache> {
        self.drv_hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parse a logical path (`/nix/store/…`), also accepting the physical location of
    /// a chroot store's object.
    pub fn parse_path(&self, s: &str) -> Result<StorePath> {
        let real_prefix = self.layout.real_store_dir.to_string_lossy();
        if let Some(rest) = s.strip_prefix(real_prefix.as_ref()) {
            if real_prefix != self.store_dir().as_str() {
                return Ok(self
                    .store_dir()
                    .parse(&format!("{}{}", self.store_dir(), rest))?);
            }
        }
        Ok(self.store_dir().parse(s)?)
    }

    /// Protect `path` from garbage collection for the rest of this process's life.
    /// Must precede checking its validity or creating it.
    pub fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        self.temp_roots.add(&self.layout.display(path))
    }

    /// [`LocalStore::add_temp_root`], and tell a collector running now about `path`
    /// even if this process rooted it before that collector started: needed once a
    /// permanent root for `path` exists (see `TempRoots::add_and_tell_collector`).
    pub(crate) fn add_temp_root_and_tell_collector(&self, path: &StorePath) -> Result<()> {
        self.temp_roots
            .add_and_tell_collector(&self.layout.display(path))
    }

    /// Valid, or handed over by this process for registration (see
    /// [`LocalStore::register_valid_paths_later`]).
    pub fn is_valid(&self, path: &StorePath) -> Result<bool> {
        if self.registrar.known_references(path).is_some() {
            return Ok(true);
        }
        // A temp-rooted path found valid is remembered with its references.
        if self.is_temp_root(path) {
            return Ok(self.query_valid_references(path)?.is_some());
        }
        self.db().is_valid(path)
    }

    fn derivation_cache(
        &self,
    ) -> MutexGuard<'_, std::collections::HashMap<StorePath, Arc<kiln_derivation::Derivation>>>
    {
        self.derivations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A parsed `.drv` this process read before (see `derivations`).
    pub(crate) fn cached_derivation(
        &self,
        drv_path: &StorePath,
    ) -> Option<Arc<kiln_derivation::Derivation>> {
        self.derivation_cache().get(drv_path).cloned()
    }

    pub(crate) fn cache_derivation(
        &self,
        drv_path: &StorePath,
        drv: Arc<kiln_derivation::Derivation>,
    ) {
        if self.is_temp_root(drv_path) {
            self.derivation_cache().insert(drv_path.clone(), drv);
        }
    }

    /// The references of a valid (or pending) path, `None` if it is not valid.
    /// Answered from memory for paths this process knows to stay valid.
    pub fn query_valid_references(&self, path: &StorePath) -> Result<Option<BTreeSet<StorePath>>> {
        if let Some(refs) = self.registrar.known_references(path) {
            return Ok(Some(refs));
        }
        let Some(info) = self.db().query_path_info(path)? else {
            return Ok(None);
        };
        if self.is_temp_root(path) {
            self.registrar
                .protect([(path.clone(), info.references.clone())]);
        }
        Ok(Some(info.references))
    }

    fn is_temp_root(&self, path: &StorePath) -> bool {
        self.temp_roots.contains(&self.layout.display(path))
    }

    /// As [`LocalStore::is_valid`], pending registrations included.
    pub fn query_path_info(&self, path: &StorePath) -> Result<Option<PathInfo>> {
        if let Some(info) = self.registrar.pending_info(path) {
            return Ok(Some(info));
        }
        self.db().query_path_info(path)
    }

    pub fn query_references(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.query_path_info(path)?
            .map(|i| i.references)
            .ok_or_else(|| Error::InvalidPath(self.layout.display(path)))
    }

    pub fn query_referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.db().query_referrers(path)
    }

    pub fn query_valid_derivers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.db().query_valid_derivers(path)
    }

    /// Outputs of a valid `.drv` whose paths are known statically (not floating CA).
    pub fn query_derivation_outputs(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>> {
        self.db().query_derivation_outputs(drv)
    }

    pub fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        self.db().query_path_from_hash_part(hash_part)
    }

    pub fn query_all_valid_paths(&self) -> Result<Vec<StorePath>> {
        self.db().all_valid_paths()
    }

    /// The whole reference graph: (path, deriver, references) for every valid path.
    pub fn query_graph(&self) -> Result<Vec<GraphRow>> {
        self.db().graph()
    }

    /// Every (derivation, output path) pair the database records.
    pub fn query_all_derivation_outputs(&self) -> Result<Vec<(StorePath, StorePath)>> {
        self.db().all_derivation_outputs()
    }

    /// Invalidate paths in one transaction (referrers must come first or be in the
    /// batch). The files stay; deleting them is the caller's business.
    pub fn invalidate_paths(&self, paths: &[StorePath]) -> Result<()> {
        {
            let mut derivations = self.derivation_cache();
            for p in paths {
                derivations.remove(p);
            }
        }
        self.registrar.forget(paths);
        self.db().invalidate_all(paths)
    }

    /// The closure of `paths` under references (the paths themselves included).
    pub fn query_closure<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<BTreeSet<StorePath>> {
        Ok(self.query_closure_graph(paths)?.into_keys().collect())
    }

    /// The closure of `paths` (themselves included) with each member's references.
    pub fn query_closure_graph<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<BTreeMap<StorePath, BTreeSet<StorePath>>> {
        let mut graph = BTreeMap::new();
        let mut todo: Vec<StorePath> = paths.into_iter().cloned().collect();
        while let Some(p) = todo.pop() {
            if graph.contains_key(&p) {
                continue;
            }
            // Known paths (pending, or protected by a temp root) are walked in memory;
            // below anything else, one recursive query returns the whole closure (a
            // chain of builds would otherwise ask for every path of an ever longer
            // closure one by one).
            if let Some(refs) = self.registrar.known_references(&p) {
                todo.extend(refs.iter().cloned());
                graph.insert(p, refs);
                continue;
            }
            let below = self.db().closure_graph_of(&p)?;
            if !below.contains_key(&p) {
                return Err(Error::InvalidPath(self.layout.display(&p)));
            }
            if self.is_temp_root(&p) {
                self.registrar
                    .protect(below.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            graph.extend(below);
        }
        Ok(graph)
    }

    /// Register objects whose files are complete and canonical, in one transaction.
    /// Refuses reference cycles (other than self-references) and references that are
    /// neither valid nor in the batch.
    pub fn register_valid_paths(&self, infos: &[PathInfo]) -> Result<()> {
        let derivation_outputs = self.derivation_outputs_of(infos)?;
        let batch: Vec<Registration<'_>> = infos
            .iter()
            .zip(derivation_outputs)
            .map(|(info, derivation_outputs)| Registration {
                info,
                derivation_outputs,
            })
            .collect();
        self.db().register(&batch)?;
        self.registrar.protect(
            infos
                .iter()
                .filter(|i| self.is_temp_root(&i.path))
                .map(|i| (i.path.clone(), i.references.clone())),
        );
        Ok(())
    }

    /// [`LocalStore::register_valid_paths`] in the background (see `background.rs`):
    /// from now on this process sees `infos` as valid; they are registered after
    /// everything handed over before, `locks` are released (and their files deleted)
    /// once they are, and with `sync` the filesystem is flushed first. `what` names
    /// the batch in a failure, which [`LocalStore::finish_registrations`] reports.
    /// Checks that need nothing but `infos` (cycles) fail here instead.
    pub fn register_valid_paths_later(
        &self,
        what: String,
        infos: Vec<PathInfo>,
        locks: Vec<PathLock>,
        sync: bool,
    ) -> Result<()> {
        let derivation_outputs = self.derivation_outputs_of(&infos)?;
        let protected = infos.iter().map(|i| self.is_temp_root(&i.path)).collect();
        self.registrar.submit(Job {
            what,
            infos,
            derivation_outputs,
            locks,
            protected,
            sync,
        });
        Ok(())
    }

    /// Waits for every registration handed over so far; returns those that failed.
    pub fn finish_registrations(&self) -> Vec<RegistrationFailure> {
        self.registrar.finish()
    }

    /// Where registration failures go that [`LocalStore::finish_registrations`]
    /// did not collect before the store was dropped (the library does not print).
    pub fn on_unclaimed_registration_failure(&self, hook: UnclaimedFailureHook) {
        *self
            .registrar
            .on_unclaimed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Checks `infos` for cycles, and finds what to record for each `.drv` among them.
    fn derivation_outputs_of(
        &self,
        infos: &[PathInfo],
    ) -> Result<Vec<BTreeMap<String, StorePath>>> {
        check_acyclic(infos, &self.layout.store_dir)?;
        infos
            .iter()
            .map(|info| {
                if info.path.is_derivation() {
                    crate::add::derivation_outputs_to_record(self, &info.path)
                } else {
                    Ok(BTreeMap::new())
                }
            })
            .collect()
    }

    /// Flush everything written to the store's filesystem, so registered paths never
    /// lack contents after a crash. One call covers a whole batch.
    pub fn sync_store(&self) -> Result<()> {
        self.sync()
    }

    pub(crate) fn sync(&self) -> Result<()> {
        sync_dir(&self.layout.real_store_dir).ctx(SYNC_CONTEXT, &self.layout.real_store_dir)
    }

    /// A fresh name for scratch space inside the store that collectors leave alone:
    /// a random hash part, temp-rooted before anything is created under it.
    pub fn scratch_path(&self, purpose: &str) -> Result<StorePath> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!(
            "kiln-scratch:{}:{}:{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = StorePath::from_hash(&Hash::sha256(seed).fold(20), purpose)?;
        self.add_temp_root(&path)?;
        Ok(path)
    }
}

/// `syncfs` of the filesystem `dir` is on.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = File::open(dir)?;
    rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
}

fn read_schema(path: &Path) -> Result<u32> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| Error::Io {
            context: "parsing schema version",
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("'{}' is not a number", s.trim())),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).ctx("reading", path),
    }
}

/// The directories Nix creates when it opens a store, with its modes.
fn create_directories(layout: &Layout) -> Result<()> {
    let store = &layout.real_store_dir;
    let store_is_new = !store.exists();
    mkdir_p(store, 0o755)?;
    if store_is_new {
        set_store_dir_owner_and_mode(store)?;
    }
    if let Ok(canonical) = store.canonicalize() {
        if canonical != *store && std::env::var_os("NIX_IGNORE_SYMLINK_STORE").is_none() {
            return Err(Error::SymlinkedStore(store.clone()));
        }
    }
    mkdir_p(&store.join(".links"), 0o755)?;
    let state = &layout.state_dir;
    for dir in ["profiles", "temproots", "db"] {
        mkdir_p(&state.join(dir), 0o755)?;
    }
    let gcroots = layout.gc_roots_dir();
    if !gcroots.exists() {
        mkdir_p(&gcroots, 0o755)?;
        let link = gcroots.join("profiles");
        match std::os::unix::fs::symlink(layout.profiles_dir(), &link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx("creating symlink", link),
        }
    }
    let user = current_user_name();
    for base in [layout.profiles_dir(), gcroots] {
        mkdir_p(&base.join("per-user").join(&user), 0o755)?;
    }
    mkdir_p(&layout.log_dir.join("drvs"), 0o755)?;
    Ok(())
}

fn mkdir_p(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .ctx("creating directory", path)
}

/// `root:nixbld` and `01775` when running as root with a `nixbld` group, as Nix does;
/// otherwise the store belongs to the user, 0755.
fn set_store_dir_owner_and_mode(store: &Path) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    if let Some(gid) = group_id("nixbld") {
        rustix::fs::chown(store, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(std::io::Error::from)
            .ctx("chown", store)?;
        fs::set_permissions(store, fs::Permissions::from_mode(0o1775)).ctx("chmod", store)?;
    }
    Ok(())
}

fn group_id(name: &str) -> Option<u32> {
    let groups = fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1)?.parse().ok())?
    })
}

fn current_user_name() -> String {
    let uid = rustix::process::geteuid().as_raw();
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_string())
            })
        })
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// Nix aborts a registration whose references form a cycle within the batch.
fn check_acyclic(infos: &[PathInfo], store_dir: &StoreDir) -> Result<()> {
    let index: HashMap<&StorePath, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.path, i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; infos.len()];
    for start in 0..infos.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, infos[start].references.iter())];
        state[start] = 1;
        while let Some((node, refs)) = stack.last_mut() {
            let node = *node;
            match refs.next() {
                Some(r) if *r == infos[node].path => {}
                Some(r) => {
                    if let Some(&next) = index.get(r) {
                        match state[next] {
                            0 => {
                                state[next] = 1;
                                stack.push((next, infos[next].references.iter()));
                            }
                            1 => return Err(Error::ReferenceCycle(store_dir.display(r))),
                            _ => {}
                        }
                    }
                }
                None => {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    Ok(())
}
