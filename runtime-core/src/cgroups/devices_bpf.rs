//! Device access on cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`, built
//! from the spec's device rules and attached to the container's cgroup2 directory. The kernel
//! runs it on every open and mknod of a device node by a process in the cgroup.
//!
//! Rules are read as the v1 device files read them, the last matching rule deciding: the
//! program checks them last to first and returns at the first match. An allow rule matches a
//! request whose access it fully grants; a deny rule, one whose access it touches at all.
//! Nothing matching means denied.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{Error, Result};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH64_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program for `rules`: r3 = type, r4 = access, r5 = major, r6 = minor.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND64_K, 3, 0, 0, 0xffff),
        insn(MOV64_X, 4, 2, 0, 0),
        insn(RSH64_K, 4, 0, 0, 16),
        insn(LDX_W, 5, 1, 4, 0),
        insn(LDX_W, 6, 1, 8, 0),
    ];
    for (i, rule) in rules.iter().enumerate().rev() {
        let block = rule_block(i, rule)?;
        let matches_all = block.len() == 2;
        prog.extend(block);
        // A rule for every device decides alone: what follows would be unreachable, which the
        // verifier refuses.
        if matches_all {
            return Ok(prog);
        }
    }
    prog.push(insn(MOV64_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// The instructions of one rule: jumps past the block when the request does not match,
/// else return allow (1) or deny (0).
fn rule_block(i: usize, rule: &LinuxDeviceCgroup) -> Result<Vec<Insn>> {
    let field = || format!("linux.resources.devices[{i}]");
    let mut access = 0;
    for c in rule.access().as_deref().unwrap_or("rwm").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            other => {
                return Err(Error::invalid(
                    field(),
                    format!("access {other:?} is not r, w or m"),
                ));
            }
        };
    }
    // Jumps carry a placeholder; each is patched to land just past the block.
    const NEXT: i16 = i16::MIN;
    let mut block = Vec::new();
    match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => {}
        LinuxDeviceType::B => block.push(insn(JNE_K, 3, 0, NEXT, DEV_BLOCK)),
        LinuxDeviceType::C | LinuxDeviceType::U => block.push(insn(JNE_K, 3, 0, NEXT, DEV_CHAR)),
        LinuxDeviceType::P => {
            return Err(Error::invalid(field(), "fifos are not device-controlled"));
        }
    }
    if access != ACC_READ | ACC_WRITE | ACC_MKNOD {
        block.push(insn(MOV64_X, 0, 4, 0, 0));
        if rule.allow() {
            // Matches only if nothing outside the rule's access is asked.
            block.push(insn(AND64_K, 0, 0, 0, !access & 7));
            block.push(insn(JNE_K, 0, 0, NEXT, 0));
        } else {
            // Matches if any of the rule's access is asked.
            block.push(insn(AND64_K, 0, 0, 0, access));
            block.push(insn(JEQ_K, 0, 0, NEXT, 0));
        }
    }
    for (reg, number) in [(5u8, rule.major()), (6u8, rule.minor())] {
        if let Some(n) = number.filter(|n| *n >= 0) {
            let n = i32::try_from(n)
                .map_err(|_| Error::invalid(field(), format!("device number {n}")))?;
            block.push(insn(JNE_K, reg, 0, NEXT, n));
        }
    }
    block.push(insn(MOV64_K, 0, 0, 0, i32::from(rule.allow())));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (at, ins) in block.iter_mut().enumerate() {
        if ins.off == NEXT {
            ins.off = (len - at - 1) as i16;
        }
    }
    Ok(block)
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`. The
/// attachment lives as long as the cgroup.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = program(rules)?;
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"mini_device");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instructions and license it points to,
    // all alive across the call; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(Error::sys(
            "bpf",
            "load the device program",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| Error::io("open cgroup", dir, e))?;
    let attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads `attach`, alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(Error::sys(
            "bpf",
            format!("attach the device program to {}", dir.display()),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn rules_are_checked_last_first_and_jumps_land_past_their_block() {
        let prog = program(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ])
        .unwrap();
        // Prologue (7), the allow rule first (type, major, minor, return: 5), then the
        // deny-all rule (return: 2), which ends the program.
        assert_eq!(prog.len(), 7 + 5 + 2);
        assert_eq!(prog[7], insn(JNE_K, 3, 0, 4, DEV_CHAR));
        assert_eq!(prog[8], insn(JNE_K, 5, 0, 3, 1));
        assert_eq!(prog[9], insn(JNE_K, 6, 0, 2, 3));
        assert_eq!(prog[10], insn(MOV64_K, 0, 0, 0, 1));
        assert_eq!(prog[12], insn(MOV64_K, 0, 0, 0, 0));
    }

    #[test]
    fn bad_access_letters_are_refused_naming_the_rule() {
        let err = program(&[rule(true, LinuxDeviceType::C, None, None, "rx")]).unwrap_err();
        assert!(
            err.to_string().contains("linux.resources.devices[0]"),
            "{err}"
        );
    }

    /// On this host's cgroup2 hierarchy (hybrid or unified): a process in a cgroup with the
    /// program may open /dev/zero, which a rule allows, and not /dev/null.
    #[test]
    fn attached_program_allows_and_denies_device_opens() {
        let Some(root) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
        else {
            panic!("no cgroup2 hierarchy on this host");
        };
        let dir = root.join(format!("mini-bpf-{}", std::process::id()));
        struct Remove<'a>(&'a Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(self.0);
            }
        }
        std::fs::create_dir(&dir).unwrap();
        let _remove = Remove(&dir);
        attach(
            &dir,
            &[
                rule(false, LinuxDeviceType::A, None, None, "rwm"),
                rule(true, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
            ],
        )
        .unwrap();
        // SAFETY: the child only makes syscalls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let joined = std::fs::write(dir.join("cgroup.procs"), "0").is_ok();
                let zero = File::open("/dev/zero").is_ok();
                let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
                let denied = matches!(null, Err(ref e) if e.raw_os_error() == Some(libc::EPERM));
                let code = if !joined {
                    2
                } else if zero && denied {
                    0
                } else {
                    1
                };
                // SAFETY: ends the forked child.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
