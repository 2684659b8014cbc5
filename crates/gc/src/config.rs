//! The two settings that widen what a root keeps alive (`keep-outputs`,
//! `keep-derivations`); the caller reads them from the configuration, so kiln's
//! collector keeps exactly what Nix's would.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepSettings {
    /// Keep the outputs of live derivations (Nix default: false).
    pub keep_outputs: bool,
    /// Keep the derivers of live paths (Nix default: true).
    pub keep_derivations: bool,
}

impl Default for KeepSettings {
    fn default() -> Self {
        KeepSettings {
            keep_outputs: false,
            keep_derivations: true,
        }
    }
}
