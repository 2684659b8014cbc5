//! Nix 2.8's seccomp filter, as a hand-assembled classic BPF program.
//!
//! Nix builds it with libseccomp: default allow; the native architecture plus
//! its 32-bit companions (x86 and x32 on x86_64, ARM on aarch64), any other
//! architecture killed (libseccomp's default bad-arch action);
//! `chmod`/`fchmod`/`fchmodat` whose mode has S_ISUID or S_ISGID → EPERM;
//! `setxattr`/`lsetxattr`/`fsetxattr` → ENOTSUP. No-new-privileges is set
//! unless `allow-new-privileges`. Only the low 32 bits of the mode are tested:
//! libseccomp compares the high half against `mask >> 32 == 0`, always true.

use std::io;

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[i]` (little-endian `seccomp_data`).
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SETID_BITS: u32 = 0o6000; // S_ISUID | S_ISGID

/// Syscall numbers of the filtered calls for one ABI.
struct Abi {
    audit_arch: u32,
    /// aarch64 has no plain `chmod`.
    chmod: Option<u32>,
    fchmod: u32,
    fchmodat: u32,
    xattr: [u32; 3],
}

#[cfg(target_arch = "x86_64")]
const X86_64: Abi = Abi {
    audit_arch: 0xC000_003E,
    chmod: Some(90),
    fchmod: 91,
    fchmodat: 268,
    xattr: [188, 189, 190],
};

/// The ABIs Nix 2.8 adds for this build's native architecture. The first is
/// native; on x86_64 the x32 ABI shares its audit arch and is told apart by
/// the syscall-number bit.
#[cfg(target_arch = "x86_64")]
fn abis() -> (Abi, Option<Abi>, Vec<Abi>) {
    let x32 = Abi {
        audit_arch: X86_64.audit_arch,
        chmod: X86_64.chmod.map(|n| n | X32_SYSCALL_BIT),
        fchmod: X86_64.fchmod | X32_SYSCALL_BIT,
        fchmodat: X86_64.fchmodat | X32_SYSCALL_BIT,
        xattr: X86_64.xattr.map(|n| n | X32_SYSCALL_BIT),
    };
    let i386 = Abi {
        audit_arch: 0x4000_0003,
        chmod: Some(15),
        fchmod: 94,
        fchmodat: 306,
        xattr: [226, 227, 228],
    };
    (X86_64, Some(x32), vec![i386])
}

#[cfg(target_arch = "aarch64")]
fn abis() -> (Abi, Option<Abi>, Vec<Abi>) {
    let native = Abi {
        audit_arch: 0xC000_00B7,
        chmod: None,
        fchmod: 52,
        fchmodat: 53,
        xattr: [5, 6, 7],
    };
    let arm = Abi {
        audit_arch: 0x4000_0028,
        chmod: Some(15),
        fchmod: 94,
        fchmodat: 333,
        xattr: [226, 227, 228],
    };
    (native, None, vec![arm])
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("kiln-sandbox: the seccomp filter knows only x86_64 and aarch64 syscall numbers");

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

struct Insn {
    code: u16,
    k: u32,
    jt: Target,
    jf: Target,
}

/// A tiny assembler: instructions with symbolic forward jumps.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn ld(&mut self, offset: u32) {
        self.insns.push(Insn {
            code: LD_W_ABS,
            k: offset,
            jt: Target::Next,
            jf: Target::Next,
        });
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.insns.push(Insn { code, k, jt, jf });
    }
    fn ret(&mut self, k: u32) {
        self.insns.push(Insn {
            code: RET_K,
            k,
            jt: Target::Next,
            jf: Target::Next,
        });
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let offset = |at: usize, t: Target| -> u8 {
            match t {
                Target::Next => 0,
                Target::Label(l) => {
                    let dest = self.labels[l].expect("unbound seccomp label");
                    u8::try_from(dest - at - 1).expect("seccomp jump too far")
                }
            }
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(at, i)| libc::sock_filter {
                code: i.code,
                jt: offset(at, i.jt),
                jf: offset(at, i.jf),
                k: i.k,
            })
            .collect()
    }
}

/// The filter program, exactly as many rules as Nix 2.8 installs.
pub(crate) fn program() -> Vec<libc::sock_filter> {
    let (native, x32, compat) = abis();
    let mut a = Asm::default();
    let check_arg1 = a.new_label();
    let check_arg2 = a.new_label();
    let eperm = a.new_label();
    let enotsup = a.new_label();
    let allow = a.new_label();

    let native_label = a.new_label();
    let compat_labels: Vec<usize> = compat.iter().map(|_| a.new_label()).collect();
    a.ld(OFF_ARCH);
    a.jump(
        JEQ_K,
        native.audit_arch,
        Target::Label(native_label),
        Target::Next,
    );
    for (abi, &label) in compat.iter().zip(&compat_labels) {
        a.jump(JEQ_K, abi.audit_arch, Target::Label(label), Target::Next);
    }
    a.ret(RET_KILL_THREAD);

    let rules = |a: &mut Asm, abi: &Abi| {
        for (nr, target) in [
            (abi.chmod, check_arg1),
            (Some(abi.fchmod), check_arg1),
            (Some(abi.fchmodat), check_arg2),
            (Some(abi.xattr[0]), enotsup),
            (Some(abi.xattr[1]), enotsup),
            (Some(abi.xattr[2]), enotsup),
        ] {
            if let Some(nr) = nr {
                a.jump(JEQ_K, nr, Target::Label(target), Target::Next);
            }
        }
        a.ret(RET_ALLOW);
    };

    a.bind(native_label);
    a.ld(OFF_NR);
    if let Some(x32) = &x32 {
        let x32_label = a.new_label();
        a.jump(
            JGE_K,
            X32_SYSCALL_BIT,
            Target::Label(x32_label),
            Target::Next,
        );
        rules(&mut a, &native);
        a.bind(x32_label);
        rules(&mut a, x32);
    } else {
        rules(&mut a, &native);
    }
    for (abi, &label) in compat.iter().zip(&compat_labels) {
        a.bind(label);
        a.ld(OFF_NR);
        rules(&mut a, abi);
    }

    for (label, arg) in [(check_arg1, 1), (check_arg2, 2)] {
        a.bind(label);
        a.ld(off_arg(arg));
        a.jump(
            JSET_K,
            SETID_BITS,
            Target::Label(eperm),
            Target::Label(allow),
        );
    }
    a.bind(eperm);
    a.ret(RET_ERRNO | libc::EPERM as u32);
    a.bind(enotsup);
    a.ret(RET_ERRNO | libc::ENOTSUP as u32);
    a.bind(allow);
    a.ret(RET_ALLOW);
    a.finish()
}

/// Sets no-new-privileges (unless allowed) and loads the filter.
pub(crate) fn install(allow_new_privileges: bool) -> Result<(), String> {
    if !allow_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| {
            format!(
                "unable to set 'no new privileges': {}",
                crate::error::errno_text(e.raw_os_error())
            )
        })?;
    }
    crate::sys::install_seccomp(&program()).map_err(|e: io::Error| {
        format!(
            "unable to load seccomp BPF program: {}",
            crate::error::errno_text(e.raw_os_error().unwrap_or(0))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one `seccomp_data` like the kernel would.
    fn eval(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_decisions() {
        let p = program();
        let x64 = 0xC000_003E;
        let i386 = 0x4000_0003;
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let enotsup = RET_ERRNO | libc::ENOTSUP as u32;
        let mode = |m: u64, at: usize| {
            let mut a = [0u64; 6];
            a[at] = m;
            a
        };
        // chmod(path, 04755) / (path, 02755) / (path, 0755)
        assert_eq!(eval(&p, x64, 90, mode(0o4755, 1)), eperm);
        assert_eq!(eval(&p, x64, 90, mode(0o2755, 1)), eperm);
        assert_eq!(eval(&p, x64, 90, mode(0o1777, 1)), RET_ALLOW);
        assert_eq!(eval(&p, x64, 91, mode(0o6000, 1)), eperm);
        // fchmodat's mode is the third argument; the second is the path.
        assert_eq!(eval(&p, x64, 268, mode(0o4000, 2)), eperm);
        assert_eq!(eval(&p, x64, 268, mode(0o4000, 1)), RET_ALLOW);
        for nr in [188, 189, 190] {
            assert_eq!(eval(&p, x64, nr, [0; 6]), enotsup);
        }
        // getxattr and fchmodat2 are not filtered in 2.8.
        assert_eq!(eval(&p, x64, 191, [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, x64, 452, mode(0o4000, 2)), RET_ALLOW);
        assert_eq!(eval(&p, x64, 0, [0; 6]), RET_ALLOW);
        // x32 and i386 ABIs.
        assert_eq!(eval(&p, x64, 90 | X32_SYSCALL_BIT, mode(0o4000, 1)), eperm);
        assert_eq!(eval(&p, x64, 188 | X32_SYSCALL_BIT, [0; 6]), enotsup);
        assert_eq!(eval(&p, x64, 5 | X32_SYSCALL_BIT, [0; 6]), RET_ALLOW);
        assert_eq!(eval(&p, i386, 15, mode(0o4000, 1)), eperm);
        assert_eq!(eval(&p, i386, 306, mode(0o2000, 2)), eperm);
        assert_eq!(eval(&p, i386, 227, [0; 6]), enotsup);
        assert_eq!(eval(&p, i386, 90, mode(0o4000, 1)), RET_ALLOW);
        // Unknown architectures are killed, like libseccomp's default.
        assert_eq!(eval(&p, 0xC000_00B7, 90, [0; 6]), RET_KILL_THREAD);
    }
}
