//! Build logs: written as they arrive to `<logDir>/drvs/<2 chars>/<rest>.bz2`, Nix's
//! layout, while the last lines are kept for the error message of a failed build.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::activity::{self, ActivityHook};
use crate::error::{IoContext, Result};

/// How many lines of a failed build's log an error shows (Nix's `log-lines`).
pub const LOG_LINES: usize = 10;

pub struct BuildLog {
    /// Made on the first byte of output: a compressor's state is megabytes to allocate
    /// and clear, which would dominate a trivial build that prints nothing.
    encoder: Option<bzip2::write::BzEncoder<File>>,
    file: Option<File>,
    path: PathBuf,
    tail: VecDeque<Vec<u8>>,
    partial: Vec<u8>,
    /// Also copy the log here (e.g. stderr for `-L`), without `@nix` lines.
    echo: Option<Box<dyn Write + Send>>,
    /// What is known of the line being echoed.
    echo_line: EchoLine,
    /// Told each progress report in the builder's `@nix` lines, with the `.drv` path.
    activities: Option<(ActivityHook, String)>,
}

/// Builtin builders write progress as `@nix {json}` lines (Nix's JSON logger): the
/// log file keeps them, as Nix's does, but neither the tail of a failed build nor
/// the echoed output shows them.
const JSON_LINE_PREFIX: &[u8] = b"@nix ";

/// The echo state of the current line.
enum EchoLine {
    /// Its first bytes, held back while they could still begin `@nix `.
    Start(Vec<u8>),
    Echoed,
    Hidden,
}

fn is_json_line(line: &[u8]) -> bool {
    line.starts_with(JSON_LINE_PREFIX)
}

impl BuildLog {
    pub fn create(path: &Path, echo: Option<Box<dyn Write + Send>>) -> Result<BuildLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx("creating", dir)?;
        }
        let file = File::create(path).ctx("creating build log", path)?;
        Ok(BuildLog {
            encoder: None,
            file: Some(file),
            path: path.to_path_buf(),
            tail: VecDeque::new(),
            partial: Vec::new(),
            echo,
            echo_line: EchoLine::Start(Vec::new()),
            activities: None,
        })
    }

    /// Reports the builder's progress lines to `hook`, naming `drv`.
    pub fn with_activities(mut self, hook: Option<ActivityHook>, drv: &str) -> BuildLog {
        self.activities = hook.map(|h| (h, drv.to_string()));
        self
    }

    /// The last lines, formatted as Nix appends them to an error.
    pub fn tail_for_error(&self) -> String {
        let mut lines: Vec<String> = self
            .tail
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        let keep = lines.len().saturating_sub(LOG_LINES);
        if lines.len() == keep {
            return String::new();
        }
        let mut out = format!(";\nlast {} log lines:", lines.len() - keep);
        for line in &lines[keep..] {
            out.push_str("\n> ");
            out.push_str(line.trim_end_matches('\r'));
        }
        out
    }

    pub fn finish(mut self) -> Result<()> {
        if let Some(enc) = self.encoder.take() {
            enc.finish().ctx("writing build log", &self.path)?;
        } else if let Some(mut file) = self.file.take() {
            file.write_all(empty_bzip2())
                .ctx("writing build log", &self.path)?;
        }
        Ok(())
    }
}

impl Write for BuildLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.encoder.is_none() {
            if let Some(file) = self.file.take() {
                self.encoder = Some(bzip2::write::BzEncoder::new(
                    file,
                    bzip2::Compression::fast(),
                ));
            }
        }
        if let Some(enc) = self.encoder.as_mut() {
            enc.write_all(buf)?;
        }
        self.echo(buf);
        for &b in buf {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                if is_json_line(&line) {
                    if let Some((hook, drv)) = &self.activities {
                        if let Some(report) = activity::parse(&line[JSON_LINE_PREFIX.len()..]) {
                            hook(drv, &report);
                        }
                    }
                    continue;
                }
                self.tail.push_back(line);
                if self.tail.len() > LOG_LINES {
                    self.tail.pop_front();
                }
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(echo) = self.echo.as_mut() {
            let _ = echo.flush();
        }
        Ok(())
    }
}

impl BuildLog {
    /// Copies `buf` to the echo, leaving out `@nix` lines. Bytes are passed on as
    /// they come, except the first few of a line while they could begin one.
    fn echo(&mut self, buf: &[u8]) {
        let Some(echo) = self.echo.as_mut() else {
            return;
        };
        let mut rest = buf;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let (segment, after) = rest.split_at(end);
            rest = after;
            let complete = segment.ends_with(b"\n");
            match &mut self.echo_line {
                EchoLine::Echoed => {
                    let _ = echo.write_all(segment);
                }
                EchoLine::Hidden => {}
                EchoLine::Start(held) => {
                    held.extend_from_slice(segment);
                    let decided = complete
                        || held.len() >= JSON_LINE_PREFIX.len()
                        || !JSON_LINE_PREFIX.starts_with(held);
                    if decided {
                        if held.starts_with(JSON_LINE_PREFIX) {
                            self.echo_line = EchoLine::Hidden;
                        } else {
                            let _ = echo.write_all(held);
                            self.echo_line = EchoLine::Echoed;
                        }
                    }
                }
            }
            if complete {
                self.echo_line = EchoLine::Start(Vec::new());
            }
        }
    }
}

/// A complete bzip2 stream with no data (what an encoder writes for an empty log).
fn empty_bzip2() -> &'static [u8] {
    static EMPTY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| {
        let enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        enc.finish().unwrap_or_default()
    })
}

/// Read a stored log back (for `kiln log`), looking where Nix looks.
pub fn read_log(layout: &kiln_store::Layout, drv: &kiln_store_path::StorePath) -> Option<Vec<u8>> {
    use std::io::Read;
    let candidates = layout.log_paths(drv);
    for (path, compressed) in candidates {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut out = Vec::new();
        let ok = if compressed {
            bzip2::read::BzDecoder::new(file)
                .read_to_end(&mut out)
                .is_ok()
        } else {
            io::BufReader::new(file).read_to_end(&mut out).is_ok()
        };
        if ok {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Before, a builtin's `@nix` progress lines filled the tail of a failed build and
    /// the `-L` output, hiding the builtin's error among JSON.
    #[test]
    fn json_log_lines_stay_out_of_the_tail_and_the_echo() {
        let dir = tempfile::tempdir().unwrap();
        let echo = Shared::default();
        let mut log =
            BuildLog::create(&dir.path().join("log.bz2"), Some(Box::new(echo.clone()))).unwrap();
        // Split across writes the way a pty delivers it.
        for chunk in [
            b"@n".as_slice(),
            b"ix {\"action\":\"stop\",\"id\":1}\nplain @nix line\n@",
            b"nope\n@ni",
            b"x {}\nlast",
        ] {
            log.write_all(chunk).unwrap();
        }
        assert_eq!(
            String::from_utf8(echo.0.lock().unwrap().clone()).unwrap(),
            "plain @nix line\n@nope\nlast"
        );
        assert_eq!(
            log.tail_for_error(),
            ";\nlast 3 log lines:\n> plain @nix line\n> @nope\n> last"
        );
        log.finish().unwrap();
        // The file keeps everything, as Nix's log does.
        let mut stored = String::new();
        std::io::Read::read_to_string(
            &mut bzip2::read::BzDecoder::new(File::open(dir.path().join("log.bz2")).unwrap()),
            &mut stored,
        )
        .unwrap();
        assert!(
            stored.starts_with("@nix {\"action\":\"stop\",\"id\":1}\nplain"),
            "{stored}"
        );
    }
}
