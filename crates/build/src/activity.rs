//! What builders report about their progress in Nix's JSON log lines (`@nix {…}`, as
//! builtin builders write them): downloads starting, advancing and ending, for a
//! progress display. The lines themselves stay in the log file.

use std::sync::Arc;

/// One report, for the activity `id` (unique within its build).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuilderActivity {
    /// Nix's `start` action, e.g. `downloading 'URL'`.
    Started {
        id: u64,
        text: String,
    },
    /// A `resProgress` result: `done` of `expected` bytes (0: unknown).
    Progress {
        id: u64,
        done: u64,
        expected: u64,
    },
    Stopped {
        id: u64,
    },
}

/// Told the `.drv` path and each report of its builder.
pub type ActivityHook = Arc<dyn Fn(&str, &BuilderActivity) + Send + Sync>;

/// Nix's result type `resProgress`.
const RES_PROGRESS: u64 = 105;

/// The report in `json` (a log line without its `@nix ` prefix), if it is one this
/// display uses; anything else, malformed or not, is ignored as Nix ignores it.
pub fn parse(json: &[u8]) -> Option<BuilderActivity> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let id = value.get("id")?.as_u64()?;
    match value.get("action")?.as_str()? {
        "start" => Some(BuilderActivity::Started {
            id,
            text: value.get("text")?.as_str()?.to_string(),
        }),
        "stop" => Some(BuilderActivity::Stopped { id }),
        "result" if value.get("type")?.as_u64()? == RES_PROGRESS => {
            let fields = value.get("fields")?.as_array()?;
            Some(BuilderActivity::Progress {
                id,
                done: fields.first()?.as_u64()?,
                expected: fields.get(1)?.as_u64()?,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_json_log_lines_become_reports() {
        assert_eq!(
            parse(br#"{"action":"start","fields":["http://x"],"id":7,"level":4,"text":"downloading 'http://x'","type":101}"#),
            Some(BuilderActivity::Started {
                id: 7,
                text: "downloading 'http://x'".into()
            })
        );
        assert_eq!(
            parse(br#"{"action":"result","fields":[10,20,0,0],"id":7,"type":105}"#),
            Some(BuilderActivity::Progress {
                id: 7,
                done: 10,
                expected: 20
            })
        );
        assert_eq!(
            parse(br#"{"action":"stop","id":7}"#),
            Some(BuilderActivity::Stopped { id: 7 })
        );
        assert_eq!(parse(br#"{"action":"msg","level":1,"msg":"hi"}"#), None);
        assert_eq!(parse(b"{not json"), None);
    }
}
