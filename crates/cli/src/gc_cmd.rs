//! `kiln store gc|delete|roots`.

use std::io::{self, BufWriter, Write};

use anyhow::Context;
use kiln_gc::{collect, find_roots, GcAction, GcHooks, GcOptions, KeepSettings};

use kiln_config::Config;

use crate::store_arg::StoreLocation;
use crate::store_cmd::{open, resolve_store_path};

fn run(location: &StoreLocation, action: GcAction, config: &Config) -> anyhow::Result<()> {
    let store = open(location)?;
    let dry_run = matches!(action, GcAction::DryRun);
    let options = GcOptions {
        action,
        keep: KeepSettings {
            keep_outputs: config.bool("keep-outputs"),
            keep_derivations: config.bool("keep-derivations"),
        },
        ignore_runtime_roots: false,
    };
    let result =
        collect(&store, &options, &mut GcHooks::default()).context("collecting garbage")?;
    for message in &result.messages {
        eprintln!("{message}");
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for path in &result.deleted {
        writeln!(out, "{path}")?;
    }
    out.flush()?;
    let mib = result.bytes_freed as f64 / (1024.0 * 1024.0);
    if dry_run {
        eprintln!(
            "{} store paths would be deleted, {mib:.2} MiB would be freed",
            result.deleted.len()
        );
    } else {
        eprintln!(
            "{} store paths deleted, {mib:.2} MiB freed",
            result.deleted.len()
        );
    }
    Ok(())
}

pub fn gc(
    location: &StoreLocation,
    dry_run: bool,
    max_freed: Option<u64>,
    config: &Config,
) -> anyhow::Result<()> {
    let action = if dry_run {
        GcAction::DryRun
    } else {
        GcAction::Collect { max_freed }
    };
    run(location, action, config)
}

pub fn delete(location: &StoreLocation, paths: &[String], config: &Config) -> anyhow::Result<()> {
    let store = open(location)?;
    let paths = paths
        .iter()
        .map(|p| resolve_store_path(&store, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(store);
    run(location, GcAction::Delete(paths), config)
}

pub fn roots(location: &StoreLocation) -> anyhow::Result<()> {
    let store = open(location)?;
    let mut messages = Vec::new();
    let roots = find_roots(store.layout(), true, &mut |m| messages.push(m));
    for m in messages {
        eprintln!("{m}");
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for root in roots {
        writeln!(
            out,
            "{} -> {}",
            root.source,
            store.store_dir().display(&root.path)
        )?;
    }
    out.flush()?;
    Ok(())
}
