//! `verify`: check the database against the files, as `nix-store --verify` does.

use kiln_hash::{Algorithm, Hasher};
use kiln_store_path::StorePath;

use crate::error::{IoContext, Result};
use crate::lock::open_lock_file;
use crate::LocalStore;

#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Re-hash every valid path and compare with the recorded NAR hash and size.
    pub check_contents: bool,
    /// Remove rows of vanished paths nobody refers to; fill in missing NAR sizes.
    pub repair: bool,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    /// Valid paths whose files are gone.
    pub disappeared: Vec<StorePath>,
    /// (path, recorded hash, actual hash)
    pub modified: Vec<(StorePath, String, String)>,
    /// Valid paths whose recorded NAR size differs from the actual one.
    pub wrong_size: Vec<(StorePath, u64, u64)>,
    /// What `repair` fixed, as messages.
    pub repaired: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.disappeared.is_empty() && self.modified.is_empty() && self.wrong_size.is_empty()
    }
}

impl LocalStore {
    pub fn verify(&self, options: VerifyOptions) -> Result<VerifyReport> {
        // Shared gc.lock for the whole run, as Nix's verify holds it: no collector
        // deletes paths from under us while we look.
        let gc_lock_path = self.layout().gc_lock_path();
        let gc_lock = open_lock_file(&gc_lock_path).ctx("opening", &gc_lock_path)?;
        gc_lock.lock_shared().ctx("locking", &gc_lock_path)?;

        let mut report = VerifyReport::default();
        for path in self.query_all_valid_paths()? {
            report.checked += 1;
            let real = self.layout().real_path(&path);
            if std::fs::symlink_metadata(&real).is_err() {
                if options.repair && self.query_referrers(&path)?.iter().all(|r| *r == path) {
                    self.db().invalidate(&path)?;
                    report.repaired.push(format!(
                        "invalidated vanished path '{}'",
                        self.layout().display(&path)
                    ));
                } else {
                    report.disappeared.push(path);
                }
                continue;
            }
            if !options.check_contents {
                continue;
            }
            let Some(info) = self.query_path_info(&path)? else {
                continue;
            };
            let mut hasher = Hasher::new(Algorithm::Sha256);
            let size = kiln_nar::dump_path(&real, &mut hasher)?;
            let actual = hasher.finish();
            if actual != info.nar_hash {
                report
                    .modified
                    .push((path, info.nar_hash.to_string(), actual.to_string()));
            } else if info.nar_size == 0 && options.repair {
                self.db().update_nar_info(&path, &actual, size)?;
                report.repaired.push(format!(
                    "recorded NAR size of '{}'",
                    self.layout().display(&path)
                ));
            } else if info.nar_size != 0 && info.nar_size != size {
                report.wrong_size.push((path, info.nar_size, size));
            }
        }
        Ok(report)
    }
}
