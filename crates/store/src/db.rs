//! The SQLite database, opened and written exactly as Nix 2.8 does: WAL, foreign keys,
//! `synchronous = normal`, a one-hour busy timeout, schema version 10.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{ContentAddress, StoreDir, StorePath};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::PathInfo;

pub(crate) const SCHEMA_VERSION: u32 = 10;

/// A valid path, its deriver and its references.
pub type GraphRow = (StorePath, Option<StorePath>, Vec<StorePath>);

/// Nix 2.8's tables, indexes and trigger (its DDL minus comments, which nothing reads).
const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// The ca-derivations extension as Nix 2.8 creates it (ca-schema 3). kiln creates it
/// up front: a Nix with `ca-derivations` that finds it missing migrates under the
/// exclusive big lock, and so would wait for as long as any kiln process is open.
const CA_SCHEMA: &str = "
create table if not exists Realisations (
    id integer primary key autoincrement not null,
    drvPath text not null,
    outputName text not null,
    outputPath integer not null,
    signatures text,
    foreign key (outputPath) references ValidPaths(id) on delete cascade
);
create index if not exists IndexRealisations on Realisations(drvPath, outputName);
create table if not exists RealisationsRefs (
    referrer integer not null,
    realisationReference integer,
    foreign key (referrer) references Realisations(id) on delete cascade,
    foreign key (realisationReference) references Realisations(id) on delete restrict
);
create index if not exists IndexRealisationsRefs on RealisationsRefs(referrer);
create index if not exists IndexRealisationsRefsOnOutputPath on Realisations(outputPath);
";

pub(crate) const CA_SCHEMA_VERSION: u32 = 3;

pub(crate) struct Db {
    conn: Connection,
    path: PathBuf,
    store_dir: StoreDir,
}

/// A row about to be written, with the derivation outputs to record for a `.drv`.
pub(crate) struct Registration<'a> {
    pub info: &'a PathInfo,
    pub derivation_outputs: BTreeMap<String, StorePath>,
}

impl Db {
    pub(crate) fn open(path: &Path, create: bool, store_dir: StoreDir) -> Result<Db> {
        let sql_err = |source| Error::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(sql_err)?;
        conn.busy_timeout(Duration::from_secs(3600))
            .map_err(sql_err)?;
        conn.execute_batch("pragma foreign_keys = 1; pragma synchronous = normal;")
            .map_err(sql_err)?;
        let mode: String = conn
            .query_row("pragma main.journal_mode", [], |r| r.get(0))
            .map_err(sql_err)?;
        if mode != "wal" {
            conn.query_row("pragma main.journal_mode = wal", [], |_| Ok(()))
                .map_err(sql_err)?;
        }
        conn.execute_batch("pragma wal_autocheckpoint = 40000;")
            .map_err(sql_err)?;
        if create {
            conn.execute_batch(SCHEMA).map_err(sql_err)?;
        }
        Ok(Db {
            conn,
            path: path.to_path_buf(),
            store_dir,
        })
    }

    /// Create the ca-derivations tables (idempotent).
    pub(crate) fn create_ca_schema(&self) -> Result<()> {
        self.conn.execute_batch(CA_SCHEMA).map_err(|e| self.err(e))
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn full(&self, p: &StorePath) -> String {
        self.store_dir.display(p)
    }

    pub(crate) fn is_valid(&self, path: &StorePath) -> Result<bool> {
        self.path_id(path).map(|id| id.is_some())
    }

    fn path_id(&self, path: &StorePath) -> Result<Option<i64>> {
        self.conn
            .prepare_cached("select id from ValidPaths where path = ?1")
            .and_then(|mut s| s.query_row([self.full(path)], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    pub(crate) fn query_path_info(&self, path: &StorePath) -> Result<Option<PathInfo>> {
        let full = self.full(path);
        let row = self
            .conn
            .prepare_cached(
                "select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca \
                 from ValidPaths where path = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&full], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some((id, hash, time, deriver, nar_size, ultimate, sigs, ca)) = row else {
            return Ok(None);
        };
        let corrupt = |why: String| Error::CorruptRow {
            path: full.clone(),
            why,
        };
        let nar_hash = Hash::parse(&hash, Some(Algorithm::Sha256))
            .map_err(|e| corrupt(format!("hash '{hash}': {e}")))?;
        let deriver = match deriver.filter(|d| !d.is_empty()) {
            Some(d) => Some(
                self.store_dir
                    .parse(&d)
                    .map_err(|e| corrupt(format!("deriver: {e}")))?,
            ),
            None => None,
        };
        let ca = match ca.filter(|c| !c.is_empty()) {
            Some(c) => Some(
                c.parse::<ContentAddress>()
                    .map_err(|e| corrupt(format!("ca: {e}")))?,
            ),
            None => None,
        };
        Ok(Some(PathInfo {
            path: path.clone(),
            deriver,
            nar_hash,
            nar_size: nar_size.unwrap_or(0).max(0) as u64,
            references: self.references_of_id(id, &full)?,
            registration_time: time,
            ultimate: ultimate.unwrap_or(0) != 0,
            signatures: sigs
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            ca,
        }))
    }

    fn references_of_id(&self, id: i64, full: &str) -> Result<BTreeSet<StorePath>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "select path from Refs join ValidPaths on reference = id where referrer = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut refs = BTreeSet::new();
        for row in rows {
            let p = row.map_err(|e| self.err(e))?;
            refs.insert(self.store_dir.parse(&p).map_err(|e| Error::CorruptRow {
                path: full.to_string(),
                why: format!("reference '{p}': {e}"),
            })?);
        }
        Ok(refs)
    }

    pub(crate) fn query_referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.query_paths(
            "select v.path from Refs r join ValidPaths v on r.referrer = v.id \
             where r.reference = (select id from ValidPaths where path = ?1)",
            &self.full(path),
        )
    }

    /// Valid `.drv`s that list `path` as one of their outputs.
    pub(crate) fn query_valid_derivers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.query_paths(
            "select v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id \
             where d.path = ?1",
            &self.full(path),
        )
    }

    pub(crate) fn query_derivation_outputs(
        &self,
        drv: &StorePath,
    ) -> Result<BTreeMap<String, StorePath>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "select d.id, d.path from DerivationOutputs d join ValidPaths v on d.drv = v.id \
                 where v.path = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([self.full(drv)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, p) = row.map_err(|e| self.err(e))?;
            out.insert(name, self.store_dir.parse(&p)?);
        }
        Ok(out)
    }

    pub(crate) fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        let prefix = format!("{}/{}", self.store_dir, hash_part);
        let found: Option<String> = self
            .conn
            .prepare_cached("select path from ValidPaths where path >= ?1 limit 1")
            .and_then(|mut s| s.query_row([&prefix], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        match found {
            Some(p) if p.starts_with(&prefix) => Ok(Some(self.store_dir.parse(&p)?)),
            _ => Ok(None),
        }
    }

    pub(crate) fn all_valid_paths(&self) -> Result<Vec<StorePath>> {
        Ok(self
            .query_paths(
                "select path from ValidPaths where ?1 = ?1 order by path",
                "",
            )?
            .into_iter()
            .collect())
    }

    fn query_paths(&self, sql: &str, arg: &str) -> Result<BTreeSet<StorePath>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([arg], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = BTreeSet::new();
        for row in rows {
            out.insert(self.store_dir.parse(&row.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }

    /// The closure of `path` with each member's references, in one statement; empty if
    /// `path` is not valid.
    pub(crate) fn closure_graph_of(
        &self,
        path: &StorePath,
    ) -> Result<BTreeMap<StorePath, BTreeSet<StorePath>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "with recursive closure(id) as ( \
                   select id from ValidPaths where path = ?1 \
                   union \
                   select reference from Refs join closure on referrer = closure.id) \
                 select v.path, r.path from closure c \
                   join ValidPaths v on v.id = c.id \
                   left join Refs x on x.referrer = c.id \
                   left join ValidPaths r on r.id = x.reference",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([self.full(path)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut graph: BTreeMap<StorePath, BTreeSet<StorePath>> = BTreeMap::new();
        for row in rows {
            let (member, reference) = row.map_err(|e| self.err(e))?;
            let refs = graph.entry(self.store_dir.parse(&member)?).or_default();
            if let Some(reference) = reference {
                refs.insert(self.store_dir.parse(&reference)?);
            }
        }
        Ok(graph)
    }

    /// Register a batch in one transaction: rows first, then references (each must be
    /// valid already or in the batch), so the closure invariant holds at commit.
    pub(crate) fn register(&mut self, batch: &[Registration<'_>]) -> Result<()> {
        let store_dir = self.store_dir.clone();
        let path = self.path.clone();
        let err = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut ids: HashMap<&StorePath, i64> = HashMap::new();
        for reg in batch {
            let info = reg.info;
            let full = store_dir.display(&info.path);
            let hash = format!("sha256:{}", info.nar_hash.to_base16());
            let sigs = (!info.signatures.is_empty()).then(|| {
                info.signatures
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let ca = info.ca.as_ref().map(|c| c.to_string());
            // Nix writes NULL, never 0, for an unknown size or a false `ultimate`.
            let nar_size = (info.nar_size != 0).then_some(info.nar_size as i64);
            let ultimate = info.ultimate.then_some(1i64);
            let existing: Option<i64> = tx
                .prepare_cached("select id from ValidPaths where path = ?1")
                .and_then(|mut s| s.query_row([&full], |r| r.get(0)).optional())
                .map_err(err)?;
            let id = match existing {
                Some(id) => {
                    tx.prepare_cached(
                        "update ValidPaths set narSize = ?1, hash = ?2, ultimate = ?3, sigs = ?4, ca = ?5 \
                         where id = ?6",
                    )
                    .and_then(|mut s| s.execute(params![nar_size, hash, ultimate, sigs, ca, id]))
                    .map_err(err)?;
                    id
                }
                None => {
                    tx.prepare_cached(
                        "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) \
                         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            full,
                            hash,
                            info.registration_time,
                            info.deriver.as_ref().map(|d| store_dir.display(d)),
                            nar_size,
                            ultimate,
                            sigs,
                            ca
                        ])
                    })
                    .map_err(err)?;
                    tx.last_insert_rowid()
                }
            };
            ids.insert(&info.path, id);
            for (output, out_path) in &reg.derivation_outputs {
                tx.prepare_cached(
                    "insert or replace into DerivationOutputs (drv, id, path) values (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![id, output, store_dir.display(out_path)]))
                .map_err(err)?;
            }
        }
        for reg in batch {
            let referrer = ids[&reg.info.path];
            for reference in &reg.info.references {
                let reference_id = match ids.get(reference) {
                    Some(&id) => id,
                    None => tx
                        .prepare_cached("select id from ValidPaths where path = ?1")
                        .and_then(|mut s| {
                            s.query_row([store_dir.display(reference)], |r| r.get(0))
                                .optional()
                        })
                        .map_err(err)?
                        .ok_or_else(|| Error::missing_reference(&reg.info.path, reference))?,
                };
                tx.prepare_cached(
                    "insert or replace into Refs (referrer, reference) values (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![referrer, reference_id]))
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The whole reference graph, for the collector: (path, deriver, references).
    pub(crate) fn graph(&self) -> Result<Vec<GraphRow>> {
        let mut by_id: HashMap<i64, (StorePath, Option<StorePath>, Vec<StorePath>)> =
            HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("select id, path, deriver from ValidPaths")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (id, path, deriver) = row.map_err(|e| self.err(e))?;
                let path = self.store_dir.parse(&path)?;
                let deriver = match deriver.filter(|d| !d.is_empty()) {
                    Some(d) => self.store_dir.parse(&d).ok(),
                    None => None,
                };
                by_id.insert(id, (path, deriver, Vec::new()));
            }
        }
        let mut stmt = self
            .conn
            .prepare("select referrer, reference from Refs")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut edges = Vec::new();
        for row in rows {
            edges.push(row.map_err(|e| self.err(e))?);
        }
        for (referrer, reference) in edges {
            if let Some(target) = by_id.get(&reference).map(|t| t.0.clone()) {
                if let Some(entry) = by_id.get_mut(&referrer) {
                    entry.2.push(target);
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// Every (derivation, output path) pair recorded in `DerivationOutputs`.
    pub(crate) fn all_derivation_outputs(&self) -> Result<Vec<(StorePath, StorePath)>> {
        let mut stmt = self
            .conn
            .prepare(
                "select v.path, d.path from DerivationOutputs d join ValidPaths v on d.drv = v.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (drv, path) = row.map_err(|e| self.err(e))?;
            if let (Ok(drv), Ok(path)) = (self.store_dir.parse(&drv), self.store_dir.parse(&path)) {
                out.push((drv, path));
            }
        }
        Ok(out)
    }

    /// Invalidate several paths in one transaction, referrers before references.
    /// The `restrict` foreign key makes the whole batch fail if anything outside it still
    /// refers to one of them, so the closure invariant can never be broken here.
    pub(crate) fn invalidate_all(&mut self, paths: &[StorePath]) -> Result<()> {
        let store_dir = self.store_dir.clone();
        let path = self.path.clone();
        let err = |source| Error::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for p in paths {
            tx.prepare_cached("delete from ValidPaths where path = ?1")
                .and_then(|mut s| s.execute([store_dir.display(p)]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Remove a path's row (its references and derivation outputs cascade). Fails if
    /// another valid path still refers to it.
    pub(crate) fn invalidate(&mut self, path: &StorePath) -> Result<()> {
        let full = self.full(path);
        self.conn
            .execute("delete from ValidPaths where path = ?1", [&full])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) fn update_nar_info(
        &mut self,
        path: &StorePath,
        nar_hash: &Hash,
        nar_size: u64,
    ) -> Result<()> {
        let full = self.full(path);
        self.conn
            .execute(
                "update ValidPaths set hash = ?1, narSize = ?2 where path = ?3",
                params![
                    format!("sha256:{}", nar_hash.to_base16()),
                    nar_size as i64,
                    full
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
