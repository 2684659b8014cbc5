//! The GC socket: while the collector runs, processes that start using a path send it
//! here instead of only writing their temp-roots file (which the collector already
//! read). The reply `1` is withheld while that very path is being deleted, so a client
//! that gets its answer knows the path is either still there or entirely gone.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use kiln_store::Layout;

use crate::error::{IoContext, Result};
use crate::temp_roots::hash_part_of;

/// What the collector and the socket clients share.
#[derive(Default)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when a batch of deletions finishes.
    pub deleted: Condvar,
}

#[derive(Default)]
pub(crate) struct State {
    /// Hash parts that are temp roots (from files and from the socket).
    pub temp_roots: HashSet<String>,
    /// Hash parts registered over the socket and not yet looked at by the collector.
    pub fresh: Vec<String>,
    /// Hash parts of the batch being deleted right now.
    pub pending: HashSet<String>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Server {
    socket_path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(layout: &Layout, shared: Arc<Shared>) -> Result<Server> {
        let socket_path = layout.gc_socket_path();
        let dir = socket_path.parent().expect("socket has a parent");
        std::fs::create_dir_all(dir).ctx("creating", dir)?;
        match std::fs::remove_file(&socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("removing old socket", &socket_path),
        }
        let listener = UnixListener::bind(&socket_path).ctx("binding", &socket_path)?;
        // Any user's process may need to register roots.
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666))
            .ctx("chmod", &socket_path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let layout = layout.clone();
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gc-socket".into())
            .spawn(move || accept_loop(listener, layout, shared, stop_flag))
            .ctx("starting the GC socket thread", &socket_path)?;
        Ok(Server {
            socket_path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the socket file stays, as Nix leaves it.
        let _ = UnixStream::connect(&self.socket_path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: UnixListener, layout: Layout, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let layout = layout.clone();
        let shared = Arc::clone(&shared);
        // One thread per client, as Nix does: a client blocked on a pending path must
        // not hold up the others.
        let _ = std::thread::Builder::new()
            .name("gc-client".into())
            .spawn(move || serve_client(conn, &layout, &shared));
    }
}

fn serve_client(conn: UnixStream, layout: &Layout, shared: &Shared) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let reader = BufReader::new(conn);
    for line in reader.split(b'\n') {
        let Ok(line) = line else { return };
        if let Some(hash) = hash_part_of(layout, &line) {
            let mut state = shared.lock();
            state.temp_roots.insert(hash.clone());
            state.fresh.push(hash.clone());
            while state.pending.contains(&hash) {
                state = shared
                    .deleted
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        // Unparseable lines are acknowledged too, as Nix does.
        if writer.write_all(b"1").is_err() {
            return;
        }
    }
}
