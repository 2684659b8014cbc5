//! Where the configuration comes from: the system file, the user files and
//! `$NIX_CONFIG`, named by environment variables.

use std::path::PathBuf;

use crate::{parse, Config, Result};

/// The environment the layers are found through (the process's own, or a test's).
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// This process's environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

pub(crate) fn apply_layers(config: &mut Config, env: &dyn EnvSource) -> Result<()> {
    let conf_dir = env
        .var("NIX_CONF_DIR")
        .unwrap_or_else(|| "/etc/nix".to_string());
    parse::apply_path(config, &PathBuf::from(conf_dir).join("nix.conf"))?;
    // The first user file named wins: apply them last to first.
    for file in user_files(env).iter().rev() {
        parse::apply_path(config, file)?;
    }
    if let Some(text) = env.var("NIX_CONFIG") {
        config.apply_text(&text, "NIX_CONFIG")?;
    }
    Ok(())
}

/// `$NIX_USER_CONF_FILES`, or `nix/nix.conf` in each XDG configuration directory.
fn user_files(env: &dyn EnvSource) -> Vec<PathBuf> {
    if let Some(files) = env.var("NIX_USER_CONF_FILES") {
        return files
            .split(':')
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let home_config = env
        .var("XDG_CONFIG_HOME")
        .or_else(|| env.var("HOME").map(|home| format!("{home}/.config")));
    let others = env
        .var("XDG_CONFIG_DIRS")
        .unwrap_or_else(|| "/etc/xdg".to_string());
    home_config
        .into_iter()
        .chain(
            others
                .split(':')
                .filter(|d| !d.is_empty())
                .map(String::from),
        )
        .map(|dir| PathBuf::from(dir).join("nix/nix.conf"))
        .collect()
}
