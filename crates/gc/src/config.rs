//! The two settings that widen what a root keeps alive, read from nix.conf so kiln's
//! collector keeps exactly what Nix's would.

use std::path::PathBuf;

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

impl KeepSettings {
    /// Nix's defaults overridden by `$NIX_CONF_DIR/nix.conf` (default `/etc/nix`) and
    /// `$NIX_CONFIG`, later lines winning.
    pub fn from_nix_conf() -> KeepSettings {
        let dir = std::env::var_os("NIX_CONF_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/nix"));
        let mut settings = KeepSettings::default();
        if let Ok(text) = std::fs::read_to_string(dir.join("nix.conf")) {
            settings.apply(&text);
        }
        if let Ok(text) = std::env::var("NIX_CONFIG") {
            settings.apply(&text);
        }
        settings
    }

    pub fn apply(&mut self, conf: &str) {
        for line in conf.lines() {
            let line = line.split('#').next().unwrap_or("");
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = match value.trim() {
                "true" => true,
                "false" => false,
                _ => continue,
            };
            match key.trim() {
                "keep-outputs" | "gc-keep-outputs" => self.keep_outputs = value,
                "keep-derivations" | "gc-keep-derivations" => self.keep_derivations = value,
                _ => {}
            }
        }
    }
}
