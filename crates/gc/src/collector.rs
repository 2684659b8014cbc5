//! The collector: find roots, compute what is alive, then delete the rest in batches,
//! referrers before references, each batch re-checked against temp roots that arrived
//! over the socket and published as "pending" while it is deleted.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use kiln_store::{remove_tree, LocalStore};
use kiln_store_path::StorePath;

use crate::config::KeepSettings;
use crate::error::{Error, IoContext, Result};
use crate::roots::find_roots;
use crate::server::{Server, Shared};
use crate::temp_roots::{hash_part, read_temp_roots};

/// How many paths are invalidated in one database transaction. Small enough that a
/// client waiting on a pending path is not held long, large enough to amortise commits.
const BATCH: usize = 64;

#[derive(Debug, Clone)]
pub enum GcAction {
    /// Delete everything unreachable (up to `max_freed` bytes).
    Collect { max_freed: Option<u64> },
    /// Report what `Collect` would delete, deleting nothing.
    DryRun,
    /// Delete exactly these paths, refusing any that is still alive.
    Delete(Vec<StorePath>),
}

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub action: GcAction,
    pub keep: KeepSettings,
    /// Skip runtime roots (`/proc`), as `--ignore-liveness` does.
    pub ignore_runtime_roots: bool,
}

/// Points where a test can act between the collector's steps.
#[derive(Default)]
pub struct GcHooks<'a> {
    /// Called before each batch is checked and deleted (and once more at the end).
    pub before_batch: Option<Box<dyn FnMut() + 'a>>,
}

#[derive(Debug, Default, Clone)]
pub struct GcResult {
    /// Full logical paths (or store-directory entries) deleted, or that a dry run would
    /// delete, in deletion order.
    pub deleted: Vec<String>,
    pub bytes_freed: u64,
    /// Messages for the user (stale roots removed and the like).
    pub messages: Vec<String>,
}

pub fn collect(
    store: &LocalStore,
    options: &GcOptions,
    hooks: &mut GcHooks<'_>,
) -> Result<GcResult> {
    let layout = store.layout().clone();
    let mut result = GcResult::default();

    // The socket is listening before the lock is taken and put in place right after:
    // a Nix 2.8 client that finds the lock taken but no socket at the path (ENOENT)
    // does not retry; it carries on believing its root registered, and this collector
    // never hears of it (observed: it lost a `.drv` nix-instantiate was writing).
    let shared = Arc::new(Shared::default());
    let mut server = Server::listen(&layout, Arc::clone(&shared))?;

    // Whole-run exclusive lock: no temp root can be appended to a file from now on
    // without going through our socket.
    let gc_lock_path = layout.gc_lock_path();
    let gc_lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&gc_lock_path)
        .ctx("opening", &gc_lock_path)?;
    if gc_lock.try_lock().is_err() {
        result
            .messages
            .push("waiting for the big garbage collector lock...".into());
        gc_lock.lock().ctx("locking", &gc_lock_path)?;
    }
    server.publish()?;
    // Fields drop in order: the server stops answering before the lock is released,
    // so no client is told "registered" by a collector that is no longer collecting.
    let _running = Running {
        _server: server,
        _gc_lock: gc_lock,
    };

    let mut log = |m: String| result.messages.push(m);
    // Temp roots first, permanent roots second. A client makes a permanent root only
    // while it holds a temp root for the path, and may exit (dropping the temp root)
    // right after. Read in Nix's order (permanent first), a root made between the two
    // reads by a client that then exits is seen by neither read: observed, it lost a
    // just-instantiated `.drv`. In this order the client is either still alive at the
    // first read, or its permanent root exists by the second.
    let temp = read_temp_roots(&layout, &mut log)?;
    shared.lock().temp_roots.extend(temp);
    let roots = find_roots(&layout, !options.ignore_runtime_roots, &mut log);

    let graph = Graph::load(store)?;
    let mut live: HashSet<StorePath> = HashSet::new();
    let mut starts: Vec<StorePath> = roots.into_iter().map(|r| r.path).collect();
    {
        let state = shared.lock();
        starts.extend(
            graph
                .paths()
                .filter(|p| state.temp_roots.contains(p.hash_part()))
                .cloned(),
        );
    }
    graph.mark_live(starts, &options.keep, &mut live);

    let (valid_dead, other_dead) = match &options.action {
        GcAction::Delete(paths) => (graph.deletion_order_of(paths, &live, store)?, Vec::new()),
        _ => {
            let dead: Vec<StorePath> = graph
                .paths()
                .filter(|p| !live.contains(*p))
                .cloned()
                .collect();
            (
                graph.deletion_order_of(&dead, &live, store)?,
                invalid_entries(store, &graph)?,
            )
        }
    };

    let dry_run = matches!(options.action, GcAction::DryRun);
    let max_freed = match options.action {
        GcAction::Collect { max_freed } => max_freed,
        _ => None,
    };
    let mut remaining: VecDeque<StorePath> = valid_dead.into();
    let mut rescued: HashSet<StorePath> = HashSet::new();
    while !remaining.is_empty() {
        if max_freed.is_some_and(|m| result.bytes_freed >= m) {
            return Ok(result);
        }
        if let Some(hook) = hooks.before_batch.as_mut() {
            hook();
        }
        let mut batch = Vec::with_capacity(BATCH);
        {
            let mut state = shared.lock();
            // Roots that arrived over the socket since the last batch keep their path and
            // everything it refers to alive.
            let fresh: Vec<String> = std::mem::take(&mut state.fresh);
            for hash in fresh {
                if let Some(p) = graph.by_hash.get(&hash) {
                    graph.mark_live([p.clone()], &options.keep, &mut rescued);
                }
            }
            while batch.len() < BATCH {
                let Some(p) = remaining.pop_front() else {
                    break;
                };
                if rescued.contains(&p) || state.temp_roots.contains(p.hash_part()) {
                    continue;
                }
                batch.push(p);
            }
            if !dry_run {
                state.pending = batch.iter().map(hash_part).collect();
            }
        }
        if dry_run {
            for p in &batch {
                result.deleted.push(layout.display(p));
                result.bytes_freed += disk_usage(&layout.real_path(p));
            }
            continue;
        }
        let outcome = delete_batch(store, &batch, &mut result);
        shared.lock().pending.clear();
        shared.deleted.notify_all();
        outcome?;
    }
    if let Some(hook) = hooks.before_batch.as_mut() {
        hook();
    }
    // Leftovers that were never valid (interrupted adds and builds, stale locks):
    // deleted unless a live process has rooted their hash part.
    for name in other_dead {
        if max_freed.is_some_and(|m| result.bytes_freed >= m) {
            break;
        }
        let full = format!("{}/{}", layout.store_dir, name);
        let real = layout.real_store_dir.join(&name);
        let hash = name.get(..32).unwrap_or("").to_string();
        {
            let mut state = shared.lock();
            if state.temp_roots.contains(&hash) {
                continue;
            }
            if !dry_run {
                state.pending = [hash].into();
            }
        }
        // The listing is a snapshot: a path registered since (by a process whose root
        // we have, or one that finished meanwhile) is valid now and must stay. Checked
        // while it is pending, so no client can start using it in between.
        let now_valid = match StorePath::from_base_name(&name) {
            Ok(p) => store.is_valid(&p),
            Err(_) => Ok(false),
        };
        if !matches!(now_valid, Ok(false)) {
            shared.lock().pending.clear();
            shared.deleted.notify_all();
            now_valid?;
            continue;
        }
        let freed = disk_usage(&real);
        if dry_run {
            result.bytes_freed += freed;
            result.deleted.push(full);
            continue;
        }
        let outcome = remove_tree(&real);
        shared.lock().pending.clear();
        shared.deleted.notify_all();
        if outcome.is_ok() {
            result.bytes_freed += freed;
            result.deleted.push(full);
        }
    }
    if !dry_run && !matches!(options.action, GcAction::Delete(_)) {
        remove_unused_links(&layout.real_store_dir.join(".links"))?;
    }
    Ok(result)
}

struct Running {
    _server: Server,
    _gc_lock: std::fs::File,
}

/// Invalidate (one transaction) then delete the files. Killed between the two, the
/// files are merely invalid garbage; the database never names a missing path.
fn delete_batch(store: &LocalStore, batch: &[StorePath], result: &mut GcResult) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    store.invalidate_paths(batch)?;
    for p in batch {
        let real = store.layout().real_path(p);
        let freed = disk_usage(&real);
        remove_tree(&real)?;
        result.bytes_freed += freed;
        result.deleted.push(store.layout().display(p));
    }
    Ok(())
}

/// Bytes of regular files and symlinks not shared through other hard links.
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
            .unwrap_or(0)
    } else if meta.nlink() <= 1 {
        meta.len()
    } else {
        0
    }
}

/// Store-directory entries that are not valid paths.
fn invalid_entries(store: &LocalStore, graph: &Graph) -> Result<Vec<String>> {
    let dir = &store.layout().real_store_dir;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ctx("reading", dir)? {
        let entry = entry.ctx("reading", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".links" || name.starts_with('.') {
            continue;
        }
        match StorePath::from_base_name(&name) {
            Ok(p) if graph.is_valid(&p) => {}
            Ok(_) => out.push(name),
            // Not a store path: Nix 2.8 deletes these outright, including another
            // process's import spill directory. Spare anything that names a live pid.
            Err(_) if owned_by_live_process(&name) => {}
            Err(_) => out.push(name),
        }
    }
    out.sort();
    Ok(out)
}

/// `add-<pid>-<n>` / `tmp-<pid>-<n>` scratch directories of a running Nix.
fn owned_by_live_process(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("add-")
        .or_else(|| name.strip_prefix("tmp-"))
    else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    !pid.is_empty() && Path::new("/proc").join(pid).exists()
}

/// Hard-link pool entries nobody else links to any more.
fn remove_unused_links(links: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(links) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            if meta.nlink() == 1 {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// The valid paths and their edges, loaded once.
struct Graph {
    references: HashMap<StorePath, Vec<StorePath>>,
    deriver: HashMap<StorePath, StorePath>,
    outputs: HashMap<StorePath, Vec<StorePath>>,
    by_hash: HashMap<String, StorePath>,
}

impl Graph {
    fn load(store: &LocalStore) -> Result<Graph> {
        let mut g = Graph {
            references: HashMap::new(),
            deriver: HashMap::new(),
            outputs: HashMap::new(),
            by_hash: HashMap::new(),
        };
        for (path, deriver, refs) in store.query_graph()? {
            if let Some(d) = deriver {
                g.deriver.insert(path.clone(), d);
            }
            g.by_hash.insert(path.hash_part().to_string(), path.clone());
            g.references.insert(path, refs);
        }
        for (drv, out) in store.query_all_derivation_outputs()? {
            g.outputs.entry(drv).or_default().push(out);
        }
        Ok(g)
    }

    fn paths(&self) -> impl Iterator<Item = &StorePath> {
        self.references.keys()
    }

    fn is_valid(&self, p: &StorePath) -> bool {
        self.references.contains_key(p)
    }

    /// Everything `starts` keep alive: their closures, plus derivers of live paths
    /// (keep-derivations) and outputs of live derivations (keep-outputs).
    fn mark_live(
        &self,
        starts: impl IntoIterator<Item = StorePath>,
        keep: &KeepSettings,
        live: &mut HashSet<StorePath>,
    ) {
        let mut queue: VecDeque<StorePath> =
            starts.into_iter().filter(|p| self.is_valid(p)).collect();
        while let Some(p) = queue.pop_front() {
            if !live.insert(p.clone()) {
                continue;
            }
            let mut next: Vec<&StorePath> = self.references[&p].iter().collect();
            if keep.keep_derivations {
                next.extend(self.deriver.get(&p));
            }
            if keep.keep_outputs {
                next.extend(self.outputs.get(&p).into_iter().flatten());
            }
            queue.extend(
                next.into_iter()
                    .filter(|q| self.is_valid(q) && !live.contains(*q))
                    .cloned(),
            );
        }
    }

    /// `paths` ordered so every path comes after all paths that refer to it. For an
    /// explicit deletion, refuses live paths and paths still referred to from outside.
    fn deletion_order_of(
        &self,
        paths: &[StorePath],
        live: &HashSet<StorePath>,
        store: &LocalStore,
    ) -> Result<Vec<StorePath>> {
        let set: BTreeSet<&StorePath> = paths.iter().collect();
        for p in &set {
            if !self.is_valid(p) {
                return Err(Error::NotInStore(store.layout().display(p)));
            }
            if live.contains(*p) {
                return Err(Error::StillAlive(store.layout().display(p)));
            }
        }
        // Referrers within the set, to count how many must go first.
        let mut waiting_on: HashMap<&StorePath, usize> = set.iter().map(|p| (*p, 0)).collect();
        let mut referrers: HashMap<&StorePath, Vec<&StorePath>> = HashMap::new();
        for p in &set {
            for r in &self.references[*p] {
                if r != *p && set.contains(r) {
                    *waiting_on.get_mut(r).expect("in set") += 1;
                    referrers.entry(*p).or_default().push(r);
                }
            }
        }
        // A referrer outside the set keeps the path (only possible for explicit deletes,
        // since everything referring to a dead path is dead).
        for (p, refs) in &self.references {
            if set.contains(p) {
                continue;
            }
            for r in refs {
                if set.contains(r) {
                    return Err(Error::StillAlive(store.layout().display(r)));
                }
            }
        }
        let mut ready: VecDeque<&StorePath> = waiting_on
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(p, _)| *p)
            .collect();
        let mut ordered = Vec::with_capacity(set.len());
        while let Some(p) = ready.pop_front() {
            ordered.push(p.clone());
            for r in referrers.get(p).into_iter().flatten() {
                let n = waiting_on.get_mut(r).expect("in set");
                *n -= 1;
                if *n == 0 {
                    ready.push_back(r);
                }
            }
        }
        Ok(ordered)
    }
}
