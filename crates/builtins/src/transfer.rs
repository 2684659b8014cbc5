//! Opening a URL for reading as Nix 2.8's file transfer does for `builtin:fetchurl`:
//! `file://`, `http://` and `https://`, proxies from the environment, and retries
//! with exponential backoff for failures that may pass, never for a missing file.

use std::io::Read;
use std::time::Duration;

use crate::activity::{self, Activity};
use crate::error::Error;

/// Nix's `download-attempts` default: tries in all, not retries.
const ATTEMPTS: u32 = 5;
/// Nix's base delay before the first retry.
const BASE_RETRY: Duration = Duration::from_millis(250);

/// A failed attempt: its message (curl's wording where Nix shows curl's) and whether
/// trying again might help.
struct Failure {
    reason: String,
    transient: bool,
}

impl Failure {
    fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            transient: false,
        }
    }
}

/// Opens `url`, retrying transient failures; progress is reported on `activity` as
/// the returned reader is read.
pub fn open<'a>(url: &str, activity: &'a mut Activity) -> Result<Progress<'a>, Error> {
    let mut attempt = 1;
    loop {
        match open_once(url) {
            Ok((body, expected)) => {
                activity.progress(0, expected, true);
                return Ok(Progress {
                    body,
                    done: 0,
                    expected,
                    activity,
                });
            }
            Err(failure) if failure.transient && attempt < ATTEMPTS => {
                let wait = backoff(attempt);
                activity::warn(&format!(
                    "\x1b[31;1merror:\x1b[0m unable to download '{url}': {}; retrying in {} ms",
                    failure.reason,
                    wait.as_millis()
                ));
                std::thread::sleep(wait);
                attempt += 1;
            }
            Err(failure) => {
                return Err(Error::Download {
                    url: url.to_string(),
                    reason: failure.reason,
                })
            }
        }
    }
}

/// The body of a download, counting what was read.
pub struct Progress<'a> {
    body: Box<dyn Read>,
    done: u64,
    expected: u64,
    activity: &'a mut Activity,
}

impl Read for Progress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf)?;
        self.done += n as u64;
        self.activity.progress(self.done, self.expected, n == 0);
        Ok(n)
    }
}

/// Nix's delay: the base doubled per attempt, times a random factor in [1, √2).
fn backoff(attempt: u32) -> Duration {
    let jitter = random_unit() * 0.5;
    let factor = 2f64.powf(f64::from(attempt - 1) + jitter);
    BASE_RETRY.mul_f64(factor)
}

/// A number in [0, 1) that differs between runs (no generator worth a dependency).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// One attempt: the body and its announced length (0 if unknown).
fn open_once(url: &str) -> Result<(Box<dyn Read>, u64), Failure> {
    if let Some(rest) = url.strip_prefix("file://") {
        return open_file(rest);
    }
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(Failure::permanent(format!(
            "Protocol \"{scheme}\" not supported or disabled in libcurl (1)"
        )));
    }
    open_http(url, scheme)
}

fn open_file(rest: &str) -> Result<(Box<dyn Read>, u64), Failure> {
    // curl accepts an empty host or `localhost` before the path.
    let path = match rest.strip_prefix("localhost") {
        Some(p) if p.starts_with('/') => p,
        _ => rest,
    };
    if !path.starts_with('/') {
        return Err(Failure::permanent(
            "URL using bad/illegal format or missing URL (3)",
        ));
    }
    let unreadable = || Failure::permanent("Couldn't read a file:// file (37)");
    let path = percent_decode(path).ok_or_else(unreadable)?;
    let path = std::path::PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path),
    );
    let file = std::fs::File::open(&path).map_err(|_| unreadable())?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(file), len))
}

/// `%XX` escapes decoded, as curl does for `file://` paths.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn open_http(url: &str, scheme: &str) -> Result<(Box<dyn Read>, u64), Failure> {
    let config = ureq::Agent::config_builder()
        // Nix does not verify certificates here: the output's hash is checked
        // afterwards, which is a stronger guarantee than the server's identity.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .http_status_as_error(false)
        .proxy(proxy_for(url, scheme))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent.get(url).call().map_err(transport_failure)?;
    let status = response.status().as_u16();
    if !matches!(status, 200 | 201 | 204 | 206 | 304) {
        let reason = format!(
            "HTTP error {status} ('{}')",
            response.status().canonical_reason().unwrap_or("")
        );
        let transient = match status {
            // Gone for good, or not allowed: asking again changes nothing.
            404 | 410 | 401 | 403 | 407 | 501 | 505 | 511 => false,
            // Server timeout and rate limiting are worth another try.
            408 | 429 => true,
            400..=499 => false,
            _ => true,
        };
        return Err(Failure { reason, transient });
    }
    let expected = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((Box::new(response.into_body().into_reader()), expected))
}

/// curl's wording for the failures Nix users know; others in ureq's words.
fn transport_failure(e: ureq::Error) -> Failure {
    let transient = |reason: &str| Failure {
        reason: reason.to_string(),
        transient: true,
    };
    match e {
        ureq::Error::ConnectionFailed => transient("Couldn't connect to server (7)"),
        ureq::Error::HostNotFound => transient("Couldn't resolve host name (6)"),
        ureq::Error::Timeout(_) => transient("Timeout was reached (28)"),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NetworkUnreachable => {
                transient("Couldn't connect to server (7)")
            }
            _ => transient(&io.to_string()),
        },
        ureq::Error::BadUri(_) => {
            Failure::permanent("URL using bad/illegal format or missing URL (3)")
        }
        ureq::Error::TooManyRedirects => {
            Failure::permanent("Number of redirects hit maximum amount (47)")
        }
        ureq::Error::InvalidProxyUrl => Failure::permanent("Couldn't resolve proxy name (5)"),
        other => transient(&other.to_string()),
    }
}

/// The proxy curl would use for `url`: `http_proxy` (lower case only, as curl) or
/// `https_proxy`/`HTTPS_PROXY` by scheme, else `all_proxy`/`ALL_PROXY`; none for a
/// host on `no_proxy`/`NO_PROXY`.
fn proxy_for(url: &str, scheme: &str) -> Option<ureq::Proxy> {
    let host = host_of(url);
    let no_proxy = var(&["no_proxy", "NO_PROXY"]);
    if no_proxy.is_some_and(|list| bypasses(&list, host)) {
        return None;
    }
    let by_scheme: &[&str] = if scheme == "https" {
        &["https_proxy", "HTTPS_PROXY"]
    } else {
        &["http_proxy"]
    };
    let proxy = var(by_scheme).or_else(|| var(&["all_proxy", "ALL_PROXY"]))?;
    ureq::Proxy::new(&proxy).ok()
}

fn var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn host_of(url: &str) -> &str {
    let after = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

/// curl's `no_proxy` matching: `*` matches all, otherwise a host matches an entry
/// equal to it or of which it is a subdomain (a leading dot on the entry is ignored).
fn bypasses(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        entry == "*"
            || (!entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}"))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_out_of_urls_with_users_ports_and_brackets() {
        assert_eq!(host_of("http://u:p@example.org:8080/x"), "example.org");
        assert_eq!(host_of("https://[::1]:8/x"), "::1");
        assert_eq!(host_of("http://localhost"), "localhost");
    }

    #[test]
    fn no_proxy_matches_domains_and_their_subdomains_only() {
        assert!(bypasses("foo.org, .example.com", "a.example.com"));
        assert!(bypasses("example.com", "example.com"));
        assert!(!bypasses("example.com", "badexample.com"));
        assert!(bypasses("*", "anything"));
        assert!(!bypasses("", "anything"));
    }

    #[test]
    fn file_url_paths_are_percent_decoded() {
        assert_eq!(percent_decode("/a%20b").unwrap(), b"/a b");
        assert!(percent_decode("/a%2").is_none());
    }

    #[test]
    fn backoff_doubles_with_jitter_below_the_next_step() {
        for attempt in 1..5 {
            let ms = backoff(attempt).as_millis() as f64;
            let base = 250.0 * 2f64.powi(attempt as i32 - 1);
            assert!(
                ms >= base - 1.0 && ms < base * 2f64.sqrt() + 1.0,
                "{attempt}: {ms}"
            );
        }
    }
}
