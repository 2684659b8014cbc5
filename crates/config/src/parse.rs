//! `nix.conf` text: comments, tokens, `NAME = VALUE`, `include` and `!include`.

use std::path::{Path, PathBuf};

use crate::{Config, Error, Result};

/// Applies `text`, read from `origin`; `including` holds the files being read, to refuse
/// an include cycle instead of recursing forever.
pub(crate) fn apply(
    config: &mut Config,
    text: &str,
    origin: &str,
    including: &mut Vec<PathBuf>,
) -> Result<()> {
    for raw in text.split('\n') {
        let line = raw.split('#').next().unwrap_or("");
        let tokens: Vec<&str> = line
            .split([' ', '\t', '\r'])
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.is_empty() {
            continue;
        }
        let illegal = || Error::IllegalLine {
            line: line.to_string(),
            origin: origin.to_string(),
        };
        if tokens.len() < 2 {
            return Err(illegal());
        }
        if tokens[0] == "include" || tokens[0] == "!include" {
            if tokens.len() != 2 {
                return Err(illegal());
            }
            let base = Path::new(origin).parent().unwrap_or(Path::new("/"));
            let path = base.join(tokens[1]);
            match read_optional(&path)? {
                Some(text) => apply_file(config, &text, &path, including)?,
                None if tokens[0] == "!include" => {}
                None => {
                    return Err(Error::MissingInclude {
                        path,
                        origin: origin.to_string(),
                    })
                }
            }
            continue;
        }
        if tokens[1] != "=" {
            return Err(illegal());
        }
        config.set_from(tokens[0], &tokens[2..].join(" "), origin)?;
    }
    Ok(())
}

/// Applies the file at `path`, if it exists.
pub(crate) fn apply_path(config: &mut Config, path: &Path) -> Result<()> {
    match read_optional(path)? {
        Some(text) => apply_file(config, &text, path, &mut Vec::new()),
        None => Ok(()),
    }
}

fn apply_file(
    config: &mut Config,
    text: &str,
    path: &Path,
    including: &mut Vec<PathBuf>,
) -> Result<()> {
    if including.iter().any(|p| p == path) {
        return Err(Error::IncludeCycle { path: path.into() });
    }
    including.push(path.to_path_buf());
    let result = apply(config, text, &path.to_string_lossy(), including);
    including.pop();
    result
}

/// A file's text; `None` if it does not exist (Nix ignores missing configuration files).
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.into(),
            source,
        }),
    }
}
