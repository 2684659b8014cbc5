//! Stand-alone sandbox helper for kiln-sandbox's tests and benchmarks; the
//! `kiln` binary does the same dispatch on its own first argument.
//!
//! With `KILN_SANDBOX_TEST_THREAD_FIRST` set, it starts a thread before anything
//! else, so that a test can see `helper_main` refuse a multi-threaded process.
//!
//! `probe-xattr PATH` is a test aid run *inside* the sandbox: it reports what
//! `setxattr` does there (the seccomp filter must answer ENOTSUP).

use std::ffi::OsStr;

fn main() {
    if std::env::var_os("KILN_SANDBOX_TEST_THREAD_FIRST").is_some() {
        std::thread::spawn(|| loop {
            std::thread::park();
        });
    }
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref() {
        Some(a) if a == OsStr::new(kiln_sandbox::HELPER_ARG) => kiln_sandbox::helper_main(),
        Some(a) if a == OsStr::new("probe-xattr") => {
            let path = args.next().expect("probe-xattr PATH");
            let r = rustix::fs::setxattr(
                std::path::Path::new(&path),
                "user.kiln",
                b"1",
                rustix::fs::XattrFlags::empty(),
            );
            match r {
                Ok(()) => println!("setxattr succeeded"),
                Err(e) => println!("setxattr errno {}", e.raw_os_error()),
            }
        }
        _ => {
            eprintln!(
                "usage: kiln-sandbox-helper {} (started by kiln-sandbox)",
                kiln_sandbox::HELPER_ARG
            );
            std::process::exit(2);
        }
    }
}
