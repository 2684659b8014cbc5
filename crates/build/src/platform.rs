//! Which derivations a machine can build: its `system`, `extra-platforms` and
//! `system-features` against a derivation's `system` and `requiredSystemFeatures`, as
//! Nix 2.8's `canBuildLocally` decides. The same test places builds on remote machines.

use std::collections::BTreeSet;

use kiln_derivation::ParsedAttrs;

use crate::error::{Error, Result};

/// What a machine can build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `system`: the machine's own platform, e.g. `x86_64-linux`.
    pub system: String,
    /// `extra-platforms`: others it can run natively.
    pub extra_platforms: BTreeSet<String>,
    /// `system-features`.
    pub features: BTreeSet<String>,
}

/// What a derivation asks of the machine that builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirements {
    pub system: String,
    /// `requiredSystemFeatures`, plus `ca-derivations` for a derivation whose output
    /// paths are not known in advance.
    pub features: BTreeSet<String>,
    /// A `builtin:` builder runs inside kiln, so any `system` will do.
    pub builtin: bool,
}

impl Platform {
    /// Nix's defaults on this machine: the system kiln was built for; on x86-64 Linux
    /// also `i686-linux` and the `x86_64-vN-linux` levels the CPU supports; the
    /// features `benchmark`, `big-parallel`, `nixos-test`, and `kvm` when `/dev/kvm` is
    /// readable and writable.
    pub fn this_machine() -> Platform {
        Platform {
            system: kiln_config::native_system(),
            extra_platforms: kiln_config::default_extra_platforms(),
            features: kiln_config::default_system_features(),
        }
    }

    /// `system`, `extra-platforms` and `system-features` as configured.
    pub fn from_config(config: &kiln_config::Config) -> Platform {
        Platform {
            system: config.string("system"),
            extra_platforms: config.strings("extra-platforms").into_iter().collect(),
            features: config.strings("system-features").into_iter().collect(),
        }
    }

    pub fn can_build(&self, wants: &Requirements) -> bool {
        (wants.builtin
            || wants.system == self.system
            || self.extra_platforms.contains(&wants.system))
            && wants.features.is_subset(&self.features)
    }

    /// `Ok` if this machine can build the derivation of `attrs` (stored at
    /// `drv_path`); otherwise Nix's refusal, naming both sides.
    pub fn check(&self, attrs: &ParsedAttrs<'_>, drv_path: &str) -> Result<()> {
        let wants = Requirements::of(attrs)?;
        if self.can_build(&wants) {
            return Ok(());
        }
        Err(Error::WrongPlatform {
            system: wants.system,
            features: join(&wants.features),
            drv: drv_path.to_string(),
            this_system: self.system.clone(),
            this_features: join(&self.features),
        })
    }
}

impl Platform {
    /// Whether a builder for `system` runs under `PER_LINUX32`, as Nix decides: i686
    /// builds when this machine is (or says it is) x86-64, and 32-bit ARM builds.
    pub fn wants_linux32(&self, system: &[u8]) -> bool {
        match system {
            b"i686-linux" => self.system == "x86_64-linux" || kernel_is_x86_64(),
            b"armv7l-linux" | b"armv6l-linux" => true,
            _ => false,
        }
    }
}

fn kernel_is_x86_64() -> bool {
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        let uts = rustix::system::uname();
        uts.sysname().to_bytes() == b"Linux" && uts.machine().to_bytes() == b"x86_64"
    })
}

impl Requirements {
    pub fn of(attrs: &ParsedAttrs<'_>) -> Result<Requirements> {
        let drv = attrs.derivation();
        let mut features: BTreeSet<String> = attrs
            .strings("requiredSystemFeatures")
            .map_err(Error::attribute)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let known_paths = drv
            .derivation_type()
            .map(|t| t.has_known_output_paths())
            .unwrap_or(true);
        if !known_paths {
            features.insert("ca-derivations".to_string());
        }
        Ok(Requirements {
            system: String::from_utf8_lossy(&drv.platform).into_owned(),
            features,
            builtin: drv.builder.starts_with(b"builtin:"),
        })
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_build_anywhere_but_features_still_count() {
        let machine = Platform {
            system: "x86_64-linux".into(),
            extra_platforms: ["i686-linux".to_string()].into(),
            features: ["kvm".to_string()].into(),
        };
        let wants = |system: &str, features: &[&str], builtin| Requirements {
            system: system.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            builtin,
        };
        assert!(machine.can_build(&wants("x86_64-linux", &["kvm"], false)));
        assert!(machine.can_build(&wants("i686-linux", &[], false)));
        assert!(!machine.can_build(&wants("i086-msdos", &[], false)));
        assert!(machine.can_build(&wants("builtin", &[], true)));
        assert!(!machine.can_build(&wants("builtin", &["gpu"], true)));
        assert!(!machine.can_build(&wants("x86_64-linux", &["kvm", "gpu"], false)));
    }
}
