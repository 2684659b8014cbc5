//! The GC socket: while the collector runs, processes that start using a path send it
//! here instead of only writing their temp-roots file (which the collector already
//! read). The reply `1` is withheld while that very path is being deleted, so a client
//! that gets its answer knows the path is either still there or entirely gone.

use std::collections::HashSet;
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
    /// Where the listener is bound until [`Server::publish`] renames it into place.
    staging_path: PathBuf,
    published: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// A second handle on the listening socket, to wake the accept loop on drop
    /// whatever has become of the socket's path.
    wake: UnixListener,
}

impl Server {
    /// Bind and serve at a private name next to `gc-socket/socket`. Clients cannot
    /// reach it until [`publish`](Self::publish), which the caller does once it holds
    /// `gc.lock` (taking over the path earlier would steal a running collector's
    /// clients).
    pub fn listen(layout: &Layout, shared: Arc<Shared>) -> Result<Server> {
        let socket_path = layout.gc_socket_path();
        let dir = socket_path.parent().expect("socket has a parent");
        std::fs::create_dir_all(dir).ctx("creating", dir)?;
        // A path that exists but refuses connections makes clients retry; a missing
        // one makes Nix 2.8 give up. Leave a dead socket there if nothing is.
        if std::fs::symlink_metadata(&socket_path).is_err() {
            let placeholder = dir.join(format!("socket.placeholder-{}", std::process::id()));
            let _ = std::fs::remove_file(&placeholder);
            drop(UnixListener::bind(&placeholder).ctx("binding", &placeholder)?);
            // Losing this race to another collector's socket is fine: either way the
            // path exists.
            let _ = std::fs::hard_link(&placeholder, &socket_path);
            let _ = std::fs::remove_file(&placeholder);
        }
        let staging_path = dir.join(format!("socket.new-{}", std::process::id()));
        let _ = std::fs::remove_file(&staging_path);
        let listener = UnixListener::bind(&staging_path).ctx("binding", &staging_path)?;
        let wake = listener.try_clone().ctx("duplicating", &staging_path)?;
        // Any user's process may need to register roots.
        std::fs::set_permissions(&staging_path, std::fs::Permissions::from_mode(0o666))
            .ctx("chmod", &staging_path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let layout = layout.clone();
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gc-socket".into())
            .spawn(move || accept_loop(listener, layout, shared, stop_flag))
            .ctx("starting the GC socket thread", &staging_path)?;
        Ok(Server {
            wake,
            socket_path,
            staging_path,
            published: false,
            stop,
            thread: Some(thread),
        })
    }

    /// Atomically replace whatever is at `gc-socket/socket` with our listener, so the
    /// path never goes missing.
    pub fn publish(&mut self) -> Result<()> {
        std::fs::rename(&self.staging_path, &self.socket_path)
            .ctx("publishing the GC socket", &self.socket_path)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down makes a blocked accept() return (Linux), so
        // the thread always ends; connecting to the path would not if the path had been
        // taken over. The socket file stays, as Nix leaves it.
        let _ = rustix::net::shutdown(&self.wake, rustix::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.published {
            let _ = std::fs::remove_file(&self.staging_path);
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
    kiln_store::gc_socket::serve_client(conn, |line| {
        // Unparseable lines are acknowledged too, as Nix does.
        let Some(hash) = hash_part_of(layout, line) else {
            return;
        };
        let mut state = shared.lock();
        state.temp_roots.insert(hash.clone());
        state.fresh.push(hash.clone());
        while state.pending.contains(&hash) {
            state = shared
                .deleted
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    });
}
