//! Finding which candidate store paths a byte stream mentions, by their hash parts.
//! This is how Nix discovers the runtime references of build outputs.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use kiln_hash::nix32;

use crate::{StorePath, HASH_PART_LEN};

/// A streaming scanner: write bytes to it, then ask which candidates were seen.
/// Matches may straddle write boundaries.
pub struct ReferenceScanner {
    candidates: HashMap<[u8; HASH_PART_LEN], StorePath>,
    found: HashSet<[u8; HASH_PART_LEN]>,
    // Last HASH_PART_LEN-1 bytes of the previous write, so a hash part split across
    // writes is still found.
    tail: Vec<u8>,
}

impl ReferenceScanner {
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> Self {
        let candidates = candidates
            .into_iter()
            .map(|p| {
                let mut key = [0u8; HASH_PART_LEN];
                key.copy_from_slice(p.hash_part().as_bytes());
                (key, p.clone())
            })
            .collect();
        ReferenceScanner {
            candidates,
            found: HashSet::new(),
            tail: Vec::with_capacity(2 * HASH_PART_LEN),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if self.candidates.is_empty() || self.found.len() == self.candidates.len() {
            return;
        }
        // Scan the seam between the previous tail and the start of this chunk.
        if !self.tail.is_empty() {
            let take = data.len().min(HASH_PART_LEN - 1);
            let mut seam = Vec::with_capacity(self.tail.len() + take);
            seam.extend_from_slice(&self.tail);
            seam.extend_from_slice(&data[..take]);
            self.scan(&seam);
        }
        self.scan(data);
        if data.len() >= HASH_PART_LEN - 1 {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - (HASH_PART_LEN - 1)..]);
        } else {
            self.tail.extend_from_slice(data);
            let excess = self.tail.len().saturating_sub(HASH_PART_LEN - 1);
            self.tail.drain(..excess);
        }
    }

    fn scan(&mut self, data: &[u8]) {
        let mut i = 0;
        while i + HASH_PART_LEN <= data.len() {
            // Check the window right to left so an invalid byte lets us jump past it.
            match (0..HASH_PART_LEN)
                .rev()
                .find(|&j| !nix32::is_nix32_char(data[i + j]))
            {
                Some(j) => i += j + 1,
                None => {
                    let window: &[u8; HASH_PART_LEN] = data[i..i + HASH_PART_LEN]
                        .try_into()
                        .expect("window length");
                    if self.candidates.contains_key(window) {
                        self.found.insert(*window);
                    }
                    i += 1;
                }
            }
        }
    }

    /// The candidates seen so far, sorted.
    pub fn found(&self) -> Vec<StorePath> {
        let mut v: Vec<StorePath> = self
            .found
            .iter()
            .map(|k| self.candidates[k].clone())
            .collect();
        v.sort();
        v
    }
}

impl Write for ReferenceScanner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One-shot scan of a byte slice.
pub fn scan_for_references<'a>(
    data: &[u8],
    candidates: impl IntoIterator<Item = &'a StorePath>,
) -> Vec<StorePath> {
    let mut scanner = ReferenceScanner::new(candidates);
    scanner.update(data);
    scanner.found()
}
