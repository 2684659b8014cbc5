//! `kiln derivation show`: print `.drv` files as the JSON of Nix 2.8's
//! `nix show-derivation`, one object keyed by `.drv` path (sorted).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use kiln_derivation::Derivation;
use kiln_store::LocalStore;
use kiln_store_path::{StoreDir, StorePath};

use crate::store_arg::StoreLocation;

/// Print the derivations `drvs` (logical store paths such as `/nix/store/…-x.drv`,
/// or symlinks to them), read from the store at `location`. With `recursive`, their
/// input-derivation closure is included too.
pub fn show(location: &StoreLocation, drvs: &[String], recursive: bool) -> anyhow::Result<()> {
    let store = crate::store_cmd::open(location)?;
    let json = render(&store, drvs, recursive)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&json)?;
    stdout.flush()?;
    Ok(())
}

/// The bytes `show` prints.
fn render(store: &LocalStore, drvs: &[String], recursive: bool) -> anyhow::Result<Vec<u8>> {
    let store_dir = store.store_dir();
    let mut loaded: BTreeMap<StorePath, Arc<Derivation>> = BTreeMap::new();
    let mut queue: VecDeque<StorePath> = VecDeque::new();
    for arg in drvs {
        queue.push_back(parse_arg(store_dir, arg)?);
    }
    while let Some(path) = queue.pop_front() {
        if loaded.contains_key(&path) {
            continue;
        }
        // As Nix's `show-derivation`, only a valid `.drv` is read.
        let drv = store
            .read_derivation(&path)
            .with_context(|| format!("reading derivation '{}'", store_dir.display(&path)))?;
        if recursive {
            // The closure of a `.drv` through its references: input derivations, and
            // `.drv` files among its sources (from `drvPath` string contexts). Nix also
            // follows the references of non-`.drv` sources, which needs the database;
            // those cannot refer to `.drv`s unless built with unsafeDiscard… tricks.
            queue.extend(drv.input_drvs.keys().cloned());
            queue.extend(drv.input_srcs.iter().filter(|p| p.is_derivation()).cloned());
        }
        loaded.insert(path, drv);
    }
    Ok(kiln_derivation::json::show_derivations(
        store_dir,
        loaded.iter().map(|(p, d)| (p, &**d)),
    )?)
}

/// A logical store path, or a symlink (e.g. a GC root) pointing at one.
fn parse_arg(store_dir: &StoreDir, arg: &str) -> anyhow::Result<StorePath> {
    let path = match store_dir.parse(arg) {
        Ok(p) => p,
        Err(err) => {
            let target = std::fs::read_link(arg)
                .map_err(|_| err)
                .with_context(|| format!("'{arg}' is not a store path"))?;
            let target = target
                .to_str()
                .with_context(|| format!("'{arg}' points to a non-UTF-8 path"))?;
            store_dir.parse(target).with_context(|| {
                format!("'{arg}' points to '{target}', which is not a store path")
            })?
        }
    };
    if !path.is_derivation() {
        bail!(
            "'{}' is not a derivation (a '.drv' path); showing the deriver of an output is not supported",
            store_dir.display(&path)
        );
    }
    Ok(path)
}

/// `kiln derivation add`: one derivation as JSON (the inner object of `derivation
/// show`) on stdin; blank output paths are computed as Nix computes them, given ones
/// are checked. Prints the `.drv` path.
pub fn add(location: &StoreLocation) -> anyhow::Result<()> {
    use std::io::Read;
    let mut json = Vec::new();
    std::io::stdin()
        .read_to_end(&mut json)
        .context("reading the derivation from stdin")?;
    let store = crate::store_cmd::open(location)?;
    let drv = kiln_derivation::json::from_json_bytes(store.store_dir(), &json, None)
        .context("parsing the derivation JSON on stdin")?;
    for src in &drv.input_srcs {
        store.add_temp_root(src)?;
        if !store.is_valid(src)? {
            bail!(
                "input source '{}' is not valid in this store",
                store.store_dir().display(src)
            );
        }
    }
    let drv = store.complete_derivation(drv)?;
    let path = store.add_derivation(&drv)?;
    // Not `println!`, which panics when stdout is a closed pipe.
    writeln!(std::io::stdout(), "{}", store.store_dir().display(&path))?;
    Ok(())
}
