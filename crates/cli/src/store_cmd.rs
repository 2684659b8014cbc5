//! `kiln store …` and `kiln path-info`: adding objects, verifying, roots, metadata.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context};
use kiln_hash::Algorithm;
use kiln_store::{LocalStore, PathInfo, VerifyOptions};
use kiln_store_path::{FileIngestionMethod, StorePath};

use crate::store_arg::StoreLocation;

pub fn open(location: &StoreLocation) -> anyhow::Result<LocalStore> {
    LocalStore::open_layout(location.layout.clone())
        .with_context(|| format!("opening the store at '{}'", location.layout.root.display()))
}

/// The name a path gets in the store when none is given: its base name.
fn default_name(path: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(path)?;
    let name = abs
        .file_name()
        .with_context(|| format!("'{}' has no file name; pass --name", path.display()))?;
    Ok(name.to_string_lossy().into_owned())
}

pub fn add(
    location: &StoreLocation,
    paths: &[std::path::PathBuf],
    name: Option<&str>,
    method: FileIngestionMethod,
) -> anyhow::Result<()> {
    if name.is_some() && paths.len() > 1 {
        bail!("--name can only be used when adding a single path");
    }
    // Check every argument before touching the store, so a typo adds nothing.
    let mut jobs = Vec::with_capacity(paths.len());
    for path in paths {
        std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        let name = match name {
            Some(n) => n.to_string(),
            None => default_name(path)?,
        };
        kiln_store_path::validate_name(&name)
            .with_context(|| format!("cannot add '{}'", path.display()))?;
        jobs.push((path, name));
    }
    let store = open(location)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (path, name) in jobs {
        let info = store
            .add_path(path, &name, method, Algorithm::Sha256)
            .with_context(|| format!("adding '{}' to the store", path.display()))?;
        writeln!(out, "{}", store.store_dir().display(&info.path))?;
    }
    Ok(())
}

pub fn verify(location: &StoreLocation, options: VerifyOptions) -> anyhow::Result<()> {
    let store = open(location)?;
    let report = store.verify(options)?;
    for message in &report.repaired {
        eprintln!("repaired: {message}");
    }
    let show = |p: &StorePath| store.store_dir().display(p);
    for p in &report.disappeared {
        eprintln!(
            "error: path '{}' disappeared, but it still has valid referrers!",
            show(p)
        );
    }
    for (p, expected, got) in &report.modified {
        eprintln!(
            "error: path '{}' was modified! expected hash '{expected}', got '{got}'",
            show(p)
        );
    }
    for (p, expected, got) in &report.wrong_size {
        eprintln!(
            "error: path '{}' has NAR size {got}, but the database says {expected}",
            show(p)
        );
    }
    eprintln!("checked {} valid paths", report.checked);
    if !report.is_clean() {
        bail!("the store has problems; see above");
    }
    Ok(())
}

pub fn add_root(location: &StoreLocation, link: &Path, path: &str) -> anyhow::Result<()> {
    let store = open(location)?;
    let path = resolve_store_path(&store, path)?;
    // Root first, then check: checked the other way round, a collector could delete
    // the path between the check and the root.
    store.add_temp_root(&path)?;
    if !store.is_valid(&path)? {
        bail!("path '{}' is not valid", store.store_dir().display(&path));
    }
    let link = store.add_indirect_root(link, &path)?;
    // Not `println!`, which panics when stdout is a closed pipe.
    writeln!(io::stdout(), "{}", link.display())?;
    Ok(())
}

/// A store path given on the command line: logical or physical, or a symlink to one
/// (such as a `result` link).
pub fn resolve_store_path(store: &LocalStore, arg: &str) -> anyhow::Result<StorePath> {
    if let Ok(p) = store.parse_path(arg) {
        return Ok(p);
    }
    if let Ok(target) = std::fs::read_link(arg) {
        let target = target.to_string_lossy().into_owned();
        if let Ok(p) = store.parse_path(&target) {
            return Ok(p);
        }
    }
    // Report the parser's own complaint: it names what is wrong with the path.
    store
        .parse_path(arg)
        .with_context(|| format!("'{arg}' is not a store path"))
}

pub struct PathInfoArgs<'a> {
    pub paths: &'a [String],
    pub recursive: bool,
    pub json: bool,
    pub closure_size: bool,
    pub size: bool,
}

pub fn path_info(location: &StoreLocation, args: PathInfoArgs<'_>) -> anyhow::Result<()> {
    let store = open(location)?;
    let mut roots = BTreeSet::new();
    for p in args.paths {
        let path = resolve_store_path(&store, p)?;
        store.add_temp_root(&path)?;
        if !store.is_valid(&path)? {
            bail!("path '{}' is not valid", store.store_dir().display(&path));
        }
        roots.insert(path);
    }
    let paths = if args.recursive {
        store.query_closure(&roots)?
    } else {
        roots
    };
    let mut infos = Vec::new();
    for p in &paths {
        let info = store
            .query_path_info(p)?
            .with_context(|| format!("path '{}' is not valid", store.store_dir().display(p)))?;
        let closure = if args.closure_size {
            let mut total = 0;
            for q in store.query_closure([p])? {
                total += store.query_path_info(&q)?.map(|i| i.nar_size).unwrap_or(0);
            }
            Some(total)
        } else {
            None
        };
        infos.push((info, closure));
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let list: Vec<serde_json::Value> = infos
            .iter()
            .map(|(info, closure)| path_info_json(&store, info, *closure))
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else {
        for (info, closure) in &infos {
            let mut line = store.store_dir().display(&info.path);
            if args.size {
                line.push_str(&format!("\t{}", info.nar_size));
            }
            if let Some(c) = closure {
                line.push_str(&format!("\t{c}"));
            }
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The object `nix path-info --json` (2.8) prints, keys in its order.
fn path_info_json(store: &LocalStore, info: &PathInfo, closure: Option<u64>) -> serde_json::Value {
    let dir = store.store_dir();
    let mut m = serde_json::Map::new();
    m.insert("path".into(), dir.display(&info.path).into());
    m.insert("narHash".into(), info.nar_hash.to_sri().into());
    m.insert("narSize".into(), info.nar_size.into());
    m.insert(
        "references".into(),
        info.references
            .iter()
            .map(|r| dir.display(r))
            .collect::<Vec<_>>()
            .into(),
    );
    if let Some(ca) = &info.ca {
        m.insert("ca".into(), ca.to_string().into());
    }
    if let Some(c) = closure {
        m.insert("closureSize".into(), c.into());
    }
    if let Some(d) = &info.deriver {
        m.insert("deriver".into(), dir.display(d).into());
    }
    if info.registration_time != 0 {
        m.insert("registrationTime".into(), info.registration_time.into());
    }
    if info.ultimate {
        m.insert("ultimate".into(), true.into());
    }
    if !info.signatures.is_empty() {
        m.insert(
            "signatures".into(),
            info.signatures.iter().cloned().collect::<Vec<_>>().into(),
        );
    }
    serde_json::Value::Object(m)
}

/// `kiln log`: the stored build log of a `.drv`, or of the deriver of an output.
pub fn log(location: &StoreLocation, arg: &str) -> anyhow::Result<()> {
    let store = open(location)?;
    let path = resolve_store_path(&store, arg)?;
    let drv = if path.is_derivation() {
        path
    } else {
        store
            .query_path_info(&path)?
            .and_then(|i| i.deriver)
            .with_context(|| format!("'{arg}' has no known deriver, so no build log"))?
    };
    let log = kiln_build::read_log(store.layout(), &drv).with_context(|| {
        format!(
            "build log of '{}' is not available",
            store.store_dir().display(&drv)
        )
    })?;
    io::stdout().write_all(&log)?;
    Ok(())
}
