//! The framing of Nix 2.8's GC socket (`gc-socket/socket`), both ends: while a
//! collector runs, a client that starts using a path sends the logical path and a
//! newline; the collector answers with the single byte `1` once the path is safe
//! (kept, or entirely gone if it was being deleted at that instant). Unparseable lines
//! are acknowledged too, as Nix does.
//!
//! The registrar ([`crate::temp_roots`]) is the client; `kiln-gc`'s server is the
//! other end.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{IoContext, Result};

const SEPARATOR: u8 = b'\n';
const ACK: u8 = b'1';

/// A connection to a running collector.
pub struct GcClient {
    stream: UnixStream,
}

impl GcClient {
    /// Connect to the collector listening at `socket_path`; `None` when none is (no
    /// socket file, or a dead one a finished collector left behind).
    pub fn connect(socket_path: &Path) -> Result<Option<GcClient>> {
        match UnixStream::connect(socket_path) {
            Ok(stream) => Ok(Some(GcClient { stream })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) => Err(e).ctx("connecting to the GC socket", socket_path),
        }
    }

    /// Tell the collector about `logical_path` and wait for its answer. `false` if the
    /// collector went away (EOF, a closed pipe or anything but the acknowledgement):
    /// the connection is then useless.
    pub fn register(&mut self, logical_path: &str) -> bool {
        let mut line = Vec::with_capacity(logical_path.len() + 1);
        line.extend_from_slice(logical_path.as_bytes());
        line.push(SEPARATOR);
        let mut answer = [0u8; 1];
        let exchange = self
            .stream
            .write_all(&line)
            .and_then(|()| self.stream.read_exact(&mut answer));
        matches!(exchange, Ok(()) if answer[0] == ACK)
    }
}

/// Serve one client until it hangs up: each line it sends goes to `on_root`, which
/// returns once the root is safe; then the client is acknowledged.
pub fn serve_client(conn: UnixStream, mut on_root: impl FnMut(&[u8])) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).split(SEPARATOR) {
        let Ok(line) = line else { return };
        on_root(&line);
        if writer.write_all(&[ACK]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_client_is_answered_once_per_root_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            serve_client(conn, |root| seen.push(root.to_vec()));
            seen
        });
        let mut client = GcClient::connect(&socket).unwrap().expect("listening");
        assert!(client.register("/nix/store/00000000000000000000000000000000-a"));
        assert!(client.register("not a path"));
        drop(client);
        assert_eq!(
            server.join().unwrap(),
            vec![
                b"/nix/store/00000000000000000000000000000000-a".to_vec(),
                b"not a path".to_vec()
            ]
        );
    }

    #[test]
    fn no_collector_means_no_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        assert!(GcClient::connect(&socket).unwrap().is_none());
        // A finished collector's socket is still on disk but refuses connections.
        drop(UnixListener::bind(&socket).unwrap());
        assert!(GcClient::connect(&socket).unwrap().is_none());
    }

    #[test]
    fn a_collector_that_hangs_up_is_reported_gone() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let listener = UnixListener::bind(&socket).unwrap();
        let mut client = GcClient::connect(&socket).unwrap().expect("listening");
        drop(listener.accept().unwrap());
        assert!(!client.register("/nix/store/00000000000000000000000000000000-a"));
    }
}
