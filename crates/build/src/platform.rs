//! Which derivations a machine can build: its `system`, `extra-platforms` and
//! `system-features` against a derivation's `system` and `requiredSystemFeatures`, as
//! Nix 2.8's `canBuildLocally` decides. The same test places builds on remote machines.

use std::collections::BTreeSet;

use kiln_derivation::Derivation;

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
            system: native_system(),
            extra_platforms: default_extra_platforms(),
            features: default_features(),
        }
    }

    pub fn can_build(&self, wants: &Requirements) -> bool {
        (wants.builtin
            || wants.system == self.system
            || self.extra_platforms.contains(&wants.system))
            && wants.features.is_subset(&self.features)
    }

    /// `Ok` if this machine can build `drv` (stored at `drv_path`); otherwise Nix's
    /// refusal, naming both sides.
    pub fn check(&self, drv: &Derivation, drv_path: &str) -> Result<()> {
        let wants = Requirements::of(drv, drv_path)?;
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
    pub fn of(drv: &Derivation, drv_path: &str) -> Result<Requirements> {
        let mut features = required_system_features(drv, drv_path)?;
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

/// `requiredSystemFeatures`: words of the environment variable, or with structured
/// attributes a list of strings in `__json`.
fn required_system_features(drv: &Derivation, drv_path: &str) -> Result<BTreeSet<String>> {
    const ATTR: &str = "requiredSystemFeatures";
    let not_strings = || Error::BadAttribute {
        attr: ATTR.to_string(),
        drv: drv_path.to_string(),
        why: "must be a list of strings",
    };
    if let Some(json) = drv.env.get(b"__json".as_slice()) {
        let attrs: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| Error::StructuredAttrs(format!("__json is not valid JSON: {e}")))?;
        return match attrs.get(ATTR) {
            None => Ok(BTreeSet::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(not_strings))
                .collect(),
            Some(_) => Err(not_strings()),
        };
    }
    Ok(drv
        .env
        .get(ATTR.as_bytes())
        .map(|v| {
            v.split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        })
        .unwrap_or_default())
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn native_system() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i686",
        other => other,
    };
    format!("{arch}-{}", std::env::consts::OS)
}

fn default_extra_platforms() -> BTreeSet<String> {
    let mut platforms = BTreeSet::new();
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        platforms.insert("i686-linux".to_string());
        for level in x86_64_levels(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()) {
            platforms.insert(format!("{level}-linux"));
        }
    }
    platforms
}

/// The x86-64 micro-architecture levels a CPU supports, from the `flags` line of
/// `/proc/cpuinfo`, with the feature sets Nix 2.8 tests (it asks libcpuid; v3 there
/// does not require BMI1/BMI2).
fn x86_64_levels(cpuinfo: &str) -> Vec<&'static str> {
    let Some(flags) = cpuinfo.lines().find_map(|l| {
        l.strip_prefix("flags")
            .and_then(|r| r.trim_start().strip_prefix(':'))
    }) else {
        return Vec::new();
    };
    let flags: BTreeSet<&str> = flags.split_whitespace().collect();
    let levels: [(&str, &[&str]); 4] = [
        (
            "x86_64-v1",
            &["cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"],
        ),
        (
            "x86_64-v2",
            &[
                "cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2",
            ],
        ),
        ("x86_64-v3", &["avx", "avx2", "f16c", "fma", "abm", "movbe"]),
        (
            "x86_64-v4",
            &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"],
        ),
    ];
    levels
        .iter()
        .take_while(|(_, needs)| needs.iter().all(|f| flags.contains(f)))
        .map(|(level, _)| *level)
        .collect()
}

fn default_features() -> BTreeSet<String> {
    let mut features: BTreeSet<String> = ["benchmark", "big-parallel", "nixos-test"]
        .into_iter()
        .map(String::from)
        .collect();
    if cfg!(target_os = "linux")
        && rustix::fs::access(
            "/dev/kvm",
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
        )
        .is_ok()
    {
        features.insert("kvm".to_string());
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_stop_at_the_first_missing_feature() {
        let v2_without_ssse3 = "flags\t\t: cmov cx8 fpu fxsr mmx sse sse2 cx16 lahf_lm popcnt pni sse4_1 sse4_2 avx avx2 f16c fma abm movbe\n";
        assert_eq!(x86_64_levels(v2_without_ssse3), ["x86_64-v1"]);
        let v3 = "processor: 0\nflags : cmov cx8 fpu fxsr mmx sse sse2 cx16 lahf_lm popcnt pni ssse3 sse4_1 sse4_2 avx avx2 f16c fma abm movbe\n";
        assert_eq!(x86_64_levels(v3), ["x86_64-v1", "x86_64-v2", "x86_64-v3"]);
        assert!(x86_64_levels("no flags here").is_empty());
    }

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
