//! Progress and warnings as Nix's JSON logger writes them from inside a build:
//! lines `@nix {json}` on stderr, which the caller keeps in the log file but out of
//! the log tail and the echoed output, and may show as progress.

use std::io::Write;
use std::time::{Duration, Instant};

/// Nix's activity type `actFileTransfer`.
const ACT_FILE_TRANSFER: u32 = 101;
/// Nix's result type `resProgress`.
const RES_PROGRESS: u32 = 105;
/// Nix's `lvlTalkative`, the level of a download's start.
const LVL_TALKATIVE: u32 = 4;
/// Nix's `lvlWarn`.
const LVL_WARN: u32 = 1;

/// How often a download reports its progress (Nix's curl callback is throttled too).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// One running activity; its `stop` line is written when it is dropped.
pub struct Activity {
    id: u64,
    last_progress: Option<Instant>,
}

impl Activity {
    /// Starts the activity of downloading `url`.
    pub fn download(url: &str) -> Activity {
        // Nix numbers activities from its pid shifted into the upper half; inside the
        // sandbox this process is pid 1.
        let id = (u64::from(std::process::id()) << 32) | 1;
        let text = format!("downloading '{url}'");
        emit(&format!(
            "{{\"action\":\"start\",\"fields\":[{}],\"id\":{id},\"level\":{LVL_TALKATIVE},\"text\":{},\"type\":{ACT_FILE_TRANSFER}}}",
            json_string(url),
            json_string(&text)
        ));
        Activity {
            id,
            last_progress: None,
        }
    }

    /// Reports `done` of `expected` bytes (0: unknown), at most once a second unless
    /// `last` (the final figure) is set.
    pub fn progress(&mut self, done: u64, expected: u64, last: bool) {
        let now = Instant::now();
        if !last
            && self
                .last_progress
                .is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY)
        {
            return;
        }
        self.last_progress = Some(now);
        emit(&format!(
            "{{\"action\":\"result\",\"fields\":[{done},{expected},0,0],\"id\":{},\"type\":{RES_PROGRESS}}}",
            self.id
        ));
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        emit(&format!("{{\"action\":\"stop\",\"id\":{}}}", self.id));
    }
}

/// A warning, worded and coloured as Nix's `warn` (the text is already highlighted).
pub fn warn(text: &str) {
    let msg = format!("\x1b[35;1mwarning:\x1b[0m {text}");
    emit(&format!(
        "{{\"action\":\"msg\",\"level\":{LVL_WARN},\"msg\":{}}}",
        json_string(&msg)
    ));
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn emit(json: &str) {
    // One write per line, so that lines of a builder that also writes cannot interleave.
    let line = format!("@nix {json}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_escape_like_nix() {
        assert_eq!(super::json_string("a\"b\x1b[0m"), "\"a\\\"b\\u001b[0m\"");
    }
}
