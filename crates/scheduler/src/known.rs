//! The outputs a node may look at: those of the keys it has needed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Outputs of the keys a node has needed so far, in key order (so an executor that
/// iterates them, e.g. to build an environment, is deterministic).
///
/// Outputs are shared (`Arc`) between all the nodes that needed the same key.
pub struct Known<K, O> {
    map: BTreeMap<K, Arc<O>>,
}

impl<K: Ord, O> Known<K, O> {
    pub fn new() -> Self {
        Known {
            map: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<&O> {
        self.map.get(key).map(|o| &**o)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &O)> {
        self.map.iter().map(|(k, o)| (k, &**o))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    /// For executors' own unit tests; the scheduler fills it itself.
    pub fn insert(&mut self, key: K, output: O) {
        self.map.insert(key, Arc::new(output));
    }

    pub(crate) fn insert_shared(&mut self, key: K, output: Arc<O>) {
        self.map.insert(key, output);
    }
}

impl<K: Ord, O> Default for Known<K, O> {
    fn default() -> Self {
        Self::new()
    }
}

// Manual so that cloning shares the outputs and needs no `O: Clone`.
impl<K: Clone, O> Clone for Known<K, O> {
    fn clone(&self) -> Self {
        Known {
            map: self.map.clone(),
        }
    }
}

impl<K: fmt::Debug, O: fmt::Debug> fmt::Debug for Known<K, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<K: Ord, O> FromIterator<(K, O)> for Known<K, O> {
    fn from_iter<I: IntoIterator<Item = (K, O)>>(iter: I) -> Self {
        Known {
            map: iter.into_iter().map(|(k, o)| (k, Arc::new(o))).collect(),
        }
    }
}
