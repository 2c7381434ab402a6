//! `linux.seccomp` compiled to a filter before the init reports ready, loaded just before exec.
//!
//! Compiling early means a bad profile fails `Create` with a message naming the syscall or
//! field, while loading last means the runtime's own setup calls are never filtered. Names
//! libseccomp does not know are skipped (profiles list syscalls newer than the library), as
//! runc does.

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
}

/// Parses a `linux.seccomp` object from JSON (a profile file, a test fixture).
pub fn parse(json: &str) -> Result<LinuxSeccomp> {
    serde_json::from_str(json).map_err(|e| Error::invalid("linux.seccomp", e.to_string()))
}

/// Checks what [`compile`] would refuse in the profile's actions without building a filter,
/// so that spec validation refuses it before anything is created: a notify listener or
/// action (not supported), an `errnoRet` that does not fit 16 bits, and an `errnoRet` or
/// `defaultErrnoRet` given with an action that returns no errno.
pub fn check_actions(seccomp: &LinuxSeccomp) -> Result<()> {
    if let Some(path) = seccomp.listener_path() {
        return Err(Error::invalid(
            "linux.seccomp.listenerPath",
            format!(
                "{}: seccomp user notification (SCMP_ACT_NOTIFY) is not supported",
                path.display()
            ),
        ));
    }
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
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        add_rule(&mut ctx, default_action, i, rule)?;
    }
    Ok(Filter { ctx })
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").finish_non_exhaustive()
    }
}

impl Filter {
    /// Installs the filter on the calling thread (and, with TSYNC, all threads).
    pub fn load(self) -> Result<()> {
        self.ctx.load().map_err(|e| {
            let errno = e
                .sysrawrc()
                .map(|rc| nix::errno::Errno::from_raw(rc.abs()))
                .unwrap_or(nix::errno::Errno::EINVAL);
            Error::sys(
                "seccomp",
                format!("SECCOMP_SET_MODE_FILTER (linux.seccomp): {e}"),
                errno,
            )
        })
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
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::invalid(
                field,
                "SCMP_ACT_NOTIFY (seccomp user notification) is not supported",
            ));
        }
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
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            return Err(Error::invalid(
                "linux.seccomp.flags",
                format!("{flag} only applies to SCMP_ACT_NOTIFY, which is not supported"),
            ));
        }
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
) -> Result<()> {
    let field = format!("linux.seccomp.syscalls[{index}]");
    let act = action(&format!("{field}.action"), rule.action(), rule.errno_ret())?;
    if act == default_action {
        // libseccomp refuses a rule that repeats the default action; it changes nothing.
        return Ok(());
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

    for name in rule.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            log::debug!("{field}: syscall {name} unknown to libseccomp, skipped");
            continue;
        };
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
    Ok(())
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
