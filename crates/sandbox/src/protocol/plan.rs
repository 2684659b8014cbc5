//! The resolved plan the helper executes, and its wire form.
//!
//! [`crate::prepare`] decides everything that needs a look at the filesystem
//! (which inputs are directories, which optional paths exist) and writes it
//! down here, so the helper and the sandboxed child only issue the mount and
//! credential syscalls. The wire form is private to this crate (caller and
//! helper are the same build), length-prefixed, and rejects anything malformed.

use std::ffi::CString;

/// Bit flags of [`Plan::flags`].
pub(crate) mod flags {
    pub const PRIVATE_NETWORK: u32 = 1 << 0;
    pub const USER_NAMESPACE: u32 = 1 << 1;
    pub const FILTER_SYSCALLS: u32 = 1 << 2;
    pub const ALLOW_NEW_PRIVILEGES: u32 = 1 << 3;
    pub const LINUX32: u32 = 1 << 4;
    pub const UNAME26: u32 = 1 << 5;
    /// Everything but the inputs found late is in the plan: pivot before `go`,
    /// which then brings those inputs as detached mounts (see `Prepared::late_inputs`).
    pub const EARLY_PIVOT: u32 = 1 << 6;
}

const MAGIC: &[u8; 8] = b"kilnsbx1";

/// One bind mount, with host paths on both sides (target already under the chroot).
/// On `go` after an early pivot, `source` is empty (the tree comes as a descriptor)
/// and `target` is the path inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bind {
    pub source: CString,
    pub target: CString,
    /// A vanished source (`ENOENT`) is skipped rather than fatal.
    pub optional: bool,
}

/// Everything the helper and the child do, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub flags: u32,
    pub host_uid: u32,
    pub host_gid: u32,
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    pub chroot: CString,
    /// `<chroot><store dir>`: bound onto itself and made shared, like Nix.
    pub chroot_store: CString,
    /// In Nix's `std::map` order (byte order of the inside path).
    pub binds: Vec<Bind>,
    pub proc_dir: CString,
    /// tmpfs on `<chroot>/dev/shm` with this `size=` option, when the host has `/dev/shm`.
    pub shm: Option<(CString, CString)>,
    /// Private devpts: `<chroot>/dev/pts`, when Nix would mount one.
    pub devpts: Option<CString>,
    /// `<chroot>/dev/ptmx`, only meaningful with `devpts`.
    pub ptmx: CString,
    pub build_dir_inside: CString,
    pub builder: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// When the clone with a user namespace is refused, Nix writes
    /// `/etc/passwd` with the host ids; `(path, contents)` of that file.
    pub passwd_fallback: Option<(CString, Vec<u8>)>,
}

impl Plan {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(4096));
        w.0.extend_from_slice(MAGIC);
        for n in [
            self.flags,
            self.host_uid,
            self.host_gid,
            self.sandbox_uid,
            self.sandbox_gid,
        ] {
            w.u32(n);
        }
        w.bytes(self.chroot.as_bytes());
        w.bytes(self.chroot_store.as_bytes());
        w.binds(&self.binds);
        w.bytes(self.proc_dir.as_bytes());
        match &self.shm {
            Some((dir, opts)) => {
                w.u32(1);
                w.bytes(dir.as_bytes());
                w.bytes(opts.as_bytes());
            }
            None => w.u32(0),
        }
        match &self.devpts {
            Some(dir) => {
                w.u32(1);
                w.bytes(dir.as_bytes());
            }
            None => w.u32(0),
        }
        w.bytes(self.ptmx.as_bytes());
        w.bytes(self.build_dir_inside.as_bytes());
        w.bytes(self.builder.as_bytes());
        w.strings(&self.argv);
        w.strings(&self.envp);
        match &self.passwd_fallback {
            Some((path, contents)) => {
                w.u32(1);
                w.bytes(path.as_bytes());
                w.bytes(contents);
            }
            None => w.u32(0),
        }
        w.0
    }

    pub fn decode(data: &[u8]) -> Result<Plan, String> {
        let rest = data
            .strip_prefix(MAGIC.as_slice())
            .ok_or("sandbox plan has a bad header (caller and helper from different builds?)")?;
        let mut r = Reader(rest);
        let flags = r.u32()?;
        let host_uid = r.u32()?;
        let host_gid = r.u32()?;
        let sandbox_uid = r.u32()?;
        let sandbox_gid = r.u32()?;
        let chroot = r.cstring()?;
        let chroot_store = r.cstring()?;
        let binds = r.binds()?;
        let proc_dir = r.cstring()?;
        let shm = if r.u32()? != 0 {
            Some((r.cstring()?, r.cstring()?))
        } else {
            None
        };
        let devpts = if r.u32()? != 0 {
            Some(r.cstring()?)
        } else {
            None
        };
        let ptmx = r.cstring()?;
        let build_dir_inside = r.cstring()?;
        let builder = r.cstring()?;
        let argv = r.strings()?;
        let envp = r.strings()?;
        let passwd_fallback = if r.u32()? != 0 {
            Some((r.cstring()?, r.bytes()?.to_vec()))
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err("sandbox plan has trailing bytes".into());
        }
        Ok(Plan {
            flags,
            host_uid,
            host_gid,
            sandbox_uid,
            sandbox_gid,
            chroot,
            chroot_store,
            binds,
            proc_dir,
            shm,
            devpts,
            ptmx,
            build_dir_inside,
            builder,
            argv,
            envp,
            passwd_fallback,
        })
    }
}

/// The store inputs' bind mounts, sent when the sandbox may go on (see
/// `run::Launched::go`): `u32 LE length | count | (source, target, optional)*`.
pub(crate) fn encode_binds(binds: &[Bind]) -> Vec<u8> {
    let mut w = Writer(vec![0; 4]);
    w.binds(binds);
    let len = len32(w.0.len() - 4);
    w.0[..4].copy_from_slice(&len.to_le_bytes());
    w.0
}

/// The payload of [`encode_binds`] after its length.
pub(crate) fn decode_binds(data: &[u8]) -> Result<Vec<Bind>, String> {
    let mut r = Reader(data);
    let binds = r.binds()?;
    if !r.0.is_empty() {
        return Err("sandbox inputs have trailing bytes".into());
    }
    Ok(binds)
}

fn len32(n: usize) -> u32 {
    // A plan is built from in-memory data far below 4 GiB; a larger one would
    // not fit through the pipe in any sensible time either.
    u32::try_from(n).expect("sandbox plan field larger than 4 GiB")
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(len32(b.len()));
        self.0.extend_from_slice(b);
    }
    fn binds(&mut self, binds: &[Bind]) {
        self.u32(len32(binds.len()));
        for b in binds {
            self.bytes(b.source.as_bytes());
            self.bytes(b.target.as_bytes());
            self.u32(u32::from(b.optional));
        }
    }
    fn strings(&mut self, list: &[CString]) {
        self.u32(len32(list.len()));
        for s in list {
            self.bytes(s.as_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("sandbox plan is truncated".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn cstring(&mut self) -> Result<CString, String> {
        CString::new(self.bytes()?).map_err(|_| "sandbox plan string contains NUL".to_string())
    }
    fn binds(&mut self) -> Result<Vec<Bind>, String> {
        let n = self.u32()?;
        (0..n)
            .map(|_| {
                Ok(Bind {
                    source: self.cstring()?,
                    target: self.cstring()?,
                    optional: self.u32()? != 0,
                })
            })
            .collect()
    }
    fn strings(&mut self) -> Result<Vec<CString>, String> {
        let n = self.u32()?;
        (0..n).map(|_| self.cstring()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn round_trip() {
        let plan = Plan {
            flags: flags::PRIVATE_NETWORK | flags::USER_NAMESPACE,
            host_uid: 999,
            host_gid: 994,
            sandbox_uid: 1000,
            sandbox_gid: 100,
            chroot: c("/s/x.chroot"),
            chroot_store: c("/s/x.chroot/nix/store"),
            binds: vec![Bind {
                source: c("/dev/null"),
                target: c("/s/x.chroot/dev/null"),
                optional: true,
            }],
            proc_dir: c("/s/x.chroot/proc"),
            shm: Some((c("/s/x.chroot/dev/shm"), c("size=50%"))),
            devpts: None,
            ptmx: c("/s/x.chroot/dev/ptmx"),
            build_dir_inside: c("/build"),
            builder: c("/bin/sh"),
            argv: vec![c("sh"), c("-c"), c("")],
            envp: vec![c("A=\u{e9}")],
            passwd_fallback: Some((c("/s/x.chroot/etc/passwd"), b"x\0y".to_vec())),
        };
        let bytes = plan.encode();
        assert_eq!(Plan::decode(&bytes).unwrap(), plan);
        let binds = encode_binds(&plan.binds);
        assert_eq!(
            u32::from_le_bytes(binds[..4].try_into().unwrap()) as usize,
            binds.len() - 4
        );
        assert_eq!(decode_binds(&binds[4..]).unwrap(), plan.binds);
        for cut in 4..binds.len() {
            assert!(
                decode_binds(&binds[4..cut]).is_err(),
                "accepted binds cut at {cut}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(
                Plan::decode(&bytes[..cut]).is_err(),
                "accepted a plan cut at {cut}"
            );
        }
    }
}
