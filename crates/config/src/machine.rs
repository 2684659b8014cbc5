//! What this machine is, for the defaults of `system`, `extra-platforms`,
//! `system-features`, `cores` and the configuration directory.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// `$NIX_CONF_DIR`, default `/etc/nix`.
pub(crate) fn nix_conf_dir() -> PathBuf {
    std::env::var_os("NIX_CONF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/nix"))
}

pub(crate) fn cpu_count() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Nix's `system` for the platform kiln was built for.
pub fn native_system() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i686",
        other => other,
    };
    format!("{arch}-{}", std::env::consts::OS)
}

pub fn default_extra_platforms() -> BTreeSet<String> {
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

pub fn default_system_features() -> BTreeSet<String> {
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
}
