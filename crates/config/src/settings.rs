//! The settings kiln knows: Nix 2.8's names, aliases, kinds and defaults (its manual's
//! "nix.conf" section), for the ones kiln acts on now or is about to.

use crate::machine;
use crate::value::{parse_bool, words, SandboxMode, Value};

/// How a setting's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Uint,
    Str,
    List,
    Set,
    /// A number, or `auto` for the number of CPUs (`max-jobs`).
    JobCount,
    /// `true`, `false` or `relaxed`.
    Sandbox,
}

impl Kind {
    pub(crate) fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            Kind::Bool => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("Boolean setting has invalid value '{text}'")),
            Kind::Uint => text
                .parse()
                .map(Value::Uint)
                .map_err(|_| format!("setting has invalid value '{text}'")),
            Kind::JobCount if text == "auto" => Ok(Value::Uint(machine::cpu_count())),
            Kind::JobCount => text
                .parse()
                .map(Value::Uint)
                .map_err(|_| format!("configuration setting has invalid value '{text}'")),
            Kind::Str => Ok(Value::Str(text.to_string())),
            Kind::List => Ok(Value::List(words(text).collect())),
            Kind::Set => Ok(Value::Set(words(text).collect())),
            Kind::Sandbox => match text {
                "relaxed" => Ok(Value::Sandbox(SandboxMode::Relaxed)),
                other => parse_bool(other)
                    .map(|on| {
                        Value::Sandbox(if on {
                            SandboxMode::Enabled
                        } else {
                            SandboxMode::Disabled
                        })
                    })
                    .ok_or_else(|| format!("setting has invalid value '{text}'")),
            },
        }
    }

    /// Whether `extra-NAME` adds to it.
    pub(crate) fn appendable(self) -> bool {
        matches!(self, Kind::List | Kind::Set)
    }
}

pub struct SettingDef {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub default: fn() -> Value,
}

macro_rules! text {
    ($kind:expr, $text:expr) => {
        || $kind.parse($text).expect("defaults parse")
    };
}

/// Sorted by name.
pub static SETTINGS: &[SettingDef] = &[
    def(
        "allow-import-from-derivation",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "true"),
    ),
    def(
        "allow-new-privileges",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "false"),
    ),
    def("allowed-users", &[], Kind::List, text!(Kind::List, "*")),
    def("build-users-group", &[], Kind::Str, || {
        Value::Str(
            if rustix::process::geteuid().is_root() {
                "nixbld"
            } else {
                ""
            }
            .into(),
        )
    }),
    def("builders", &[], Kind::Str, || {
        Value::Str(format!("@{}/machines", machine::nix_conf_dir().display()))
    }),
    def(
        "builders-use-substitutes",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "false"),
    ),
    def("connect-timeout", &[], Kind::Uint, text!(Kind::Uint, "0")),
    def("cores", &["build-cores"], Kind::Uint, || {
        Value::Uint(machine::cpu_count())
    }),
    def("download-attempts", &[], Kind::Uint, text!(Kind::Uint, "5")),
    def(
        "experimental-features",
        &[],
        Kind::Set,
        text!(Kind::Set, ""),
    ),
    def("extra-platforms", &[], Kind::Set, || {
        Value::Set(machine::default_extra_platforms())
    }),
    def(
        "filter-syscalls",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "true"),
    ),
    def("fsync-metadata", &[], Kind::Bool, text!(Kind::Bool, "true")),
    def("hashed-mirrors", &[], Kind::Set, text!(Kind::Set, "")),
    def(
        "keep-derivations",
        &["gc-keep-derivations"],
        Kind::Bool,
        text!(Kind::Bool, "true"),
    ),
    def("keep-failed", &[], Kind::Bool, text!(Kind::Bool, "false")),
    def("keep-going", &[], Kind::Bool, text!(Kind::Bool, "false")),
    def(
        "keep-outputs",
        &["gc-keep-outputs"],
        Kind::Bool,
        text!(Kind::Bool, "false"),
    ),
    def(
        "max-build-log-size",
        &["build-max-log-size"],
        Kind::Uint,
        text!(Kind::Uint, "0"),
    ),
    def(
        "max-jobs",
        &["build-max-jobs"],
        Kind::JobCount,
        text!(Kind::Uint, "1"),
    ),
    def(
        "max-silent-time",
        &["build-max-silent-time"],
        Kind::Uint,
        text!(Kind::Uint, "0"),
    ),
    def("netrc-file", &[], Kind::Str, || {
        Value::Str(format!("{}/netrc", machine::nix_conf_dir().display()))
    }),
    def("nix-path", &[], Kind::List, text!(Kind::List, "")),
    def("pure-eval", &[], Kind::Bool, text!(Kind::Bool, "false")),
    def("require-sigs", &[], Kind::Bool, text!(Kind::Bool, "true")),
    def("restrict-eval", &[], Kind::Bool, text!(Kind::Bool, "false")),
    // kiln always builds in the sandbox; Nix's own default on Linux is also `true`.
    def(
        "sandbox",
        &["build-use-chroot", "build-use-sandbox"],
        Kind::Sandbox,
        text!(Kind::Sandbox, "true"),
    ),
    def(
        "sandbox-build-dir",
        &[],
        Kind::Str,
        text!(Kind::Str, "/build"),
    ),
    def(
        "sandbox-fallback",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "true"),
    ),
    def(
        "sandbox-paths",
        &["build-chroot-dirs", "build-sandbox-paths"],
        Kind::Set,
        text!(Kind::Set, ""),
    ),
    def("store", &[], Kind::Str, text!(Kind::Str, "auto")),
    def(
        "substituters",
        &["binary-caches"],
        Kind::List,
        text!(Kind::List, "https://cache.nixos.org/"),
    ),
    // Deliberately true (Nix: false): a registered path never lacks its contents after
    // a power loss.
    def(
        "sync-before-registering",
        &[],
        Kind::Bool,
        text!(Kind::Bool, "true"),
    ),
    def("system", &[], Kind::Str, || {
        Value::Str(machine::native_system())
    }),
    def("system-features", &[], Kind::Set, || {
        Value::Set(machine::default_system_features())
    }),
    def(
        "timeout",
        &["build-timeout"],
        Kind::Uint,
        text!(Kind::Uint, "0"),
    ),
    def(
        "trusted-public-keys",
        &["binary-cache-public-keys"],
        Kind::List,
        text!(
            Kind::List,
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
        ),
    ),
    def("trusted-users", &[], Kind::List, text!(Kind::List, "root")),
];

const fn def(
    name: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    default: fn() -> Value,
) -> SettingDef {
    SettingDef {
        name,
        aliases,
        kind,
        default,
    }
}

/// The setting called `name`, directly or by an alias.
pub(crate) fn find(name: &str) -> Option<&'static SettingDef> {
    SETTINGS
        .iter()
        .find(|def| def.name == name || def.aliases.contains(&name))
}
