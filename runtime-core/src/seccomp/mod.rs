//! `linux.seccomp` compiled to a filter before the init reports ready, loaded just before exec.
//!
//! Compiling early means a bad profile fails `Create` with a message naming the syscall or
//! field, while loading last means the runtime's own setup calls are never filtered. Names
//! libseccomp does not know are skipped (profiles list syscalls newer than the library), as
//! runc does.
//!
//! `SCMP_ACT_NOTIFY` (seccomp user notification): the filter is loaded with a listener, whose
//! fd the container's setup hands to the runtime, which passes it to the agent listening at
//! `linux.seccomp.listenerPath` ([`agent`]) while the container is created.

pub mod agent;

use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::{Error, Result};

/// A compiled filter, ready to load.
pub struct Filter {
    ctx: ScmpFilterContext,
    /// Some rule answers `SCMP_ACT_NOTIFY`: loading it makes a listener.
    notifies: bool,
}

/// Syscalls the setup uses to hand the listener to the runtime after the filter is loaded:
/// a rule notifying one of them would wait for an agent that never gets the listener (runc
/// refuses `write` for the same reason).
const HAND_OVER_SYSCALLS: &[&str] = &["write", "sendmsg"];

/// Whether some rule of the profile answers `SCMP_ACT_NOTIFY`.
pub fn uses_notify(seccomp: &LinuxSeccomp) -> bool {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .any(|rule| rule.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Parses a `linux.seccomp` object from JSON (a profile file, a test fixture).
pub fn parse(json: &str) -> Result<LinuxSeccomp> {
    serde_json::from_str(json).map_err(|e| Error::invalid("linux.seccomp", e.to_string()))
}

/// Checks what [`compile`] would refuse in the profile's actions without building a filter,
/// so that spec validation refuses it before anything is created: `SCMP_ACT_NOTIFY` without
/// `listenerPath`, as the default action or for a syscall the hand-over of the listener
/// uses, `listenerMetadata` without `listenerPath`, an `errnoRet` that does not fit 16 bits,
/// and an `errnoRet` or `defaultErrnoRet` given with an action that returns no errno. A
/// `listenerPath` without a notifying rule is ignored (config-linux.md), as runc does.
pub fn check_actions(seccomp: &LinuxSeccomp) -> Result<()> {
    check_notify(seccomp)?;
    action(
        "linux.seccomp.defaultAction",
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}].action");
        action(&field, rule.action(), rule.errno_ret())?;
    }
    Ok(())
}

/// What `SCMP_ACT_NOTIFY` and the listener fields need (see [`check_actions`]).
fn check_notify(seccomp: &LinuxSeccomp) -> Result<()> {
    let listener = seccomp
        .listener_path()
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    if listener.is_none() && seccomp.listener_metadata().is_some() {
        return Err(Error::invalid(
            "linux.seccomp.listenerMetadata",
            "set without linux.seccomp.listenerPath (config-linux.md: it MUST NOT be)",
        ));
    }
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action: the runtime's hand-over of the \
             listener would wait for an agent that does not have it yet",
        ));
    }
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        if rule.action() != LinuxSeccompAction::ScmpActNotify {
            continue;
        }
        if listener.is_none() {
            return Err(Error::invalid(
                format!("linux.seccomp.syscalls[{i}].action"),
                "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath (the agent's socket)",
            ));
        }
        if let Some(n) = rule
            .names()
            .iter()
            .position(|n| HAND_OVER_SYSCALLS.contains(&n.as_str()))
        {
            return Err(Error::invalid(
                format!("linux.seccomp.syscalls[{i}].names[{n}]"),
                format!(
                    "SCMP_ACT_NOTIFY cannot be used for {}: the runtime's setup uses it to hand \
                     the listener over once the filter is loaded",
                    rule.names()[n]
                ),
            ));
        }
    }
    Ok(())
}

/// Compiles the spec's profile; errors name the syscall, action or architecture at fault.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    check_actions(seccomp)?;
    let default_action = action(
        "linux.seccomp.defaultAction",
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;
    let mut ctx = ScmpFilterContext::new(default_action)
        .map_err(|e| Error::invalid("linux.seccomp.defaultAction", e.to_string()))?;
    // The init sets no_new_privs itself when process.noNewPrivileges says so; it loads the
    // filter as root with CAP_SYS_ADMIN, which the kernel accepts without it.
    ctx.set_ctl_nnp(false)
        .map_err(|e| Error::invalid("linux.seccomp", format!("clearing no_new_privs: {e}")))?;

    for arch in seccomp.architectures().iter().flatten() {
        add_arch(&mut ctx, *arch)?;
    }
    for flag in seccomp.flags().iter().flatten() {
        set_flag(&mut ctx, *flag)?;
    }
    // Whether a notifying rule made it into the filter: one whose syscalls libseccomp does
    // not know (a profile for a newer kernel) adds nothing, and such a filter has no listener.
    let mut notifies = false;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let added = add_rule(&mut ctx, default_action, i, rule)?;
        notifies |= added && rule.action() == LinuxSeccompAction::ScmpActNotify;
    }
    if notifies {
        // Listeners need libseccomp API level 6 (libseccomp 2.5 and a kernel with
        // SECCOMP_FILTER_FLAG_NEW_LISTENER and TSYNC_ESRCH, Linux 5.7).
        let level = libseccomp::get_api();
        if level < 6 {
            return Err(Error::invalid(
                "linux.seccomp.syscalls",
                format!(
                    "SCMP_ACT_NOTIFY needs libseccomp API level 6 (libseccomp 2.5, Linux 5.7); \
                     this host has level {level}"
                ),
            ));
        }
    }
    Ok(Filter { ctx, notifies })
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").finish_non_exhaustive()
    }
}

impl Filter {
    /// Whether loading makes a listener (some rule answers `SCMP_ACT_NOTIFY`).
    pub fn notifies(&self) -> bool {
        self.notifies
    }

    /// Installs the filter on the calling thread (and, with TSYNC, all threads). With a
    /// notifying rule, returns the listener: the fd the agent receives notifications on
    /// (close-on-exec; the container's process must not hold it).
    pub fn load(self) -> Result<Option<OwnedFd>> {
        let errno_of = |e: &libseccomp::error::SeccompError| {
            e.sysrawrc()
                .map(|rc| nix::errno::Errno::from_raw(rc.abs()))
                .unwrap_or(nix::errno::Errno::EINVAL)
        };
        self.ctx.load().map_err(|e| {
            Error::sys(
                "seccomp",
                format!("SECCOMP_SET_MODE_FILTER (linux.seccomp): {e}"),
                errno_of(&e),
            )
        })?;
        if !self.notifies {
            return Ok(None);
        }
        let fd = self.ctx.get_notify_fd().map_err(|e| {
            Error::sys(
                "seccomp_notify_fd",
                format!("the listener of linux.seccomp: {e}"),
                errno_of(&e),
            )
        })?;
        // SAFETY: the kernel made this fd for this process at the load (the filter's
        // listener); libseccomp only remembers its number and never closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel makes it close-on-exec; say so here too, whatever the library did.
        nix::fcntl::fcntl(&fd, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| Error::sys("fcntl", "FD_CLOEXEC on the seccomp listener", e))?;
        Ok(Some(fd))
    }
}

/// The libseccomp action for a spec action; `errno_ret` is the ERRNO value (default EPERM)
/// or the TRACE message.
fn action(field: &str, act: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    let ret = |what: &str| -> Result<u16> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v)
                .map_err(|_| Error::invalid(field, format!("{what} {v} does not fit in 16 bits"))),
        }
    };
    if errno_ret.is_some()
        && !matches!(
            act,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        // The runtime-spec: "When the action doesn't support an errno, the runtime MUST print
        // an error and fail."
        return Err(Error::invalid(
            field,
            format!(
                "errnoRet is set but {} returns no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)",
                serde_json::to_string(&act).unwrap_or_default()
            ),
        ));
    }
    Ok(match act {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret("errnoRet")?)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret("errnoRet (trace value)")?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn add_arch(ctx: &mut ScmpFilterContext, arch: Arch) -> Result<()> {
    let field = "linux.seccomp.architectures";
    let scmp = match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    };
    // The native architecture is in every new filter; adding it again is an error.
    let present = ctx
        .is_arch_present(scmp)
        .map_err(|e| Error::invalid(field, format!("{arch}: {e}")))?;
    if !present {
        ctx.add_arch(scmp).map_err(|e| {
            Error::invalid(field, format!("{arch} is not supported by libseccomp: {e}"))
        })?;
    }
    Ok(())
}

fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<()> {
    let result = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        // Needs libseccomp 2.6 (API level 7); older ones answer with an error naming it.
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
    };
    result
        .map(|_| ())
        .map_err(|e| Error::invalid("linux.seccomp.flags", format!("{flag}: {e}")))
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    default_action: ScmpAction,
    index: usize,
    rule: &LinuxSyscall,
) -> Result<bool> {
    let field = format!("linux.seccomp.syscalls[{index}]");
    let act = action(&format!("{field}.action"), rule.action(), rule.errno_ret())?;
    if act == default_action {
        // libseccomp refuses a rule that repeats the default action; it changes nothing.
        return Ok(false);
    }
    let args = rule.args().as_deref().unwrap_or_default();
    let conditions = args
        .iter()
        .enumerate()
        .map(|(i, arg)| condition(&format!("{field}.args[{i}]"), arg))
        .collect::<Result<Vec<_>>>()?;
    // libseccomp ANDs the conditions of one rule and allows one condition per argument.
    // runc's reading of a profile that tests one argument several times is "any of them":
    // one rule per condition.
    let repeats_an_argument =
        (1..args.len()).any(|i| args[..i].iter().any(|a| a.index() == args[i].index()));

    let mut any = false;
    for name in rule.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            log::debug!("{field}: syscall {name} unknown to libseccomp, skipped");
            continue;
        };
        any = true;
        let added = if repeats_an_argument {
            conditions.iter().try_for_each(|c| {
                ctx.add_rule_conditional(act, syscall, std::slice::from_ref(c))
                    .map(|_| ())
            })
        } else {
            ctx.add_rule_conditional(act, syscall, &conditions)
                .map(|_| ())
        };
        added.map_err(|e| Error::invalid(field.clone(), format!("syscall {name}: {e}")))?;
    }
    Ok(any)
}

fn condition(field: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("index {} is not an argument 0..=5", arg.index()),
            )
        })?;
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec's `value` is the mask and `valueTwo` the value the masked argument must
        // equal (runc and libseccomp's datum_a/datum_b order).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ));
        }
    };
    Ok(ScmpArgCompare::new(index, op, arg.value()))
}

#[cfg(test)]
mod tests;
