//! `process.scheduler` (sched_setattr(2)) and `process.ioPriority` (ioprio_set(2)): set on
//! the container's process (the init, or an exec) before it drops its privileges, so that a
//! real-time policy or I/O class the spec asks for can still be granted; inherited by what
//! it forks. `process.execCPUAffinity` (sched_setaffinity(2)) for an exec: `initial` before
//! it joins the container's cgroup, `final` after (a cpuset may narrow it on the way).
//! Checked with the spec first, each bad value named by its field.

use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process, Scheduler,
};

use crate::{Error, Result};

/// The kernel's `struct sched_attr` as of its first version (`SCHED_ATTR_SIZE_VER0`, 48
/// bytes): the spec has no utilisation clamp values.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// `IOPRIO_WHO_PROCESS`: the `who` of ioprio_set(2) is a thread id (0: the caller).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The class sits above the 13 bits of the level in an I/O priority value.
const IOPRIO_CLASS_SHIFT: u32 = 13;

fn policy_number(policy: LinuxSchedulerPolicy) -> Result<u32> {
    use LinuxSchedulerPolicy as P;
    Ok(match policy {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
        P::SchedIso => {
            return Err(Error::invalid(
                "process.scheduler.policy",
                "SCHED_ISO is not implemented by Linux",
            ));
        }
    })
}

fn flag_bits(flags: &[LinuxSchedulerFlag]) -> u64 {
    use LinuxSchedulerFlag as F;
    flags
        .iter()
        .map(|f| match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        })
        .fold(0, |all, bit| all | bit)
}

/// The checks of runtime-spec and the kernel that do not need the kernel: a nice value in
/// -20..=19, a static priority 1..=99 for the real-time policies and none for the others,
/// the deadline policy's runtime ≤ deadline ≤ period; an I/O priority level 0..=7.
pub fn validate(process: &Process) -> Result<()> {
    if let Some(s) = process.scheduler() {
        scheduler_attr(s)?;
    }
    if let Some(p) = process.io_priority() {
        io_priority_value(p)?;
    }
    if let Some(a) = process.exec_cpu_affinity() {
        if let Some(list) = a.initial() {
            cpu_set(list, "process.execCPUAffinity.initial")?;
        }
        if let Some(list) = a.cpu_affinity_final() {
            cpu_set(list, "process.execCPUAffinity.final")?;
        }
    }
    Ok(())
}

/// A CPU list (`0-3,7`) as the kernel's set; `field` names it in errors.
fn cpu_set(list: &str, field: &str) -> Result<nix::sched::CpuSet> {
    let bad = |why: String| Error::invalid(field, format!("{list:?}: {why}"));
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{part:?} is not a CPU number or range")))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(bad(format!("{part:?} is an empty range")));
        }
        for cpu in first..=last {
            set.set(cpu)
                .map_err(|_| bad(format!("CPU {cpu} is beyond what this system can name")))?;
        }
    }
    Ok(set)
}

/// Which of an exec's CPU affinities to set.
#[derive(Clone, Copy)]
pub enum AffinityStage {
    /// Before the exec joins the container's cgroup.
    Initial,
    /// After it joined, before its program runs.
    Final,
}

/// Sets the calling process's CPU affinity from `process.execCPUAffinity` at `stage`.
pub fn apply_exec_affinity(process: &Process, stage: AffinityStage) -> Result<()> {
    let Some(a) = process.exec_cpu_affinity() else {
        return Ok(());
    };
    let (list, field) = match stage {
        AffinityStage::Initial => (a.initial(), "process.execCPUAffinity.initial"),
        AffinityStage::Final => (a.cpu_affinity_final(), "process.execCPUAffinity.final"),
    };
    let Some(list) = list else {
        return Ok(());
    };
    let set = cpu_set(list, field)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| Error::sys("sched_setaffinity", field, e))
}

fn scheduler_attr(s: &Scheduler) -> Result<SchedAttr> {
    let policy = policy_number(*s.policy())?;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(Error::invalid(
            "process.scheduler.nice",
            format!("{nice} is outside -20..=19"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let real_time = matches!(
        s.policy(),
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    if real_time && !(1..=99).contains(&priority) {
        return Err(Error::invalid(
            "process.scheduler.priority",
            format!("{priority}: {} needs a priority in 1..=99", s.policy()),
        ));
    }
    if !real_time && priority != 0 {
        return Err(Error::invalid(
            "process.scheduler.priority",
            format!("{priority}: only SCHED_FIFO and SCHED_RR take a priority"),
        ));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if *s.policy() == LinuxSchedulerPolicy::SchedDeadline {
        let deadline_or_period = if deadline == 0 { period } else { deadline };
        if runtime == 0 || runtime > deadline_or_period || (period != 0 && deadline > period) {
            return Err(Error::invalid(
                "process.scheduler",
                format!(
                    "SCHED_DEADLINE needs 0 < runtime ≤ deadline ≤ period \
                     (runtime {runtime}, deadline {deadline}, period {period})"
                ),
            ));
        }
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags: flag_bits(s.flags().as_deref().unwrap_or_default()),
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
    })
}

fn io_priority_value(p: &LinuxIOPriority) -> Result<libc::c_int> {
    let class: libc::c_int = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = p.priority();
    if !(0..=7).contains(&level) {
        return Err(Error::invalid(
            "process.ioPriority.priority",
            format!("{level} is outside 0..=7"),
        ));
    }
    Ok((class << IOPRIO_CLASS_SHIFT) | level as libc::c_int)
}

/// Sets the calling process's scheduling policy and I/O priority from the spec.
pub fn apply(process: &Process) -> Result<()> {
    if let Some(s) = process.scheduler() {
        let attr = scheduler_attr(s)?;
        // SAFETY: sched_setattr reads `attr.size` bytes of a live, initialised struct.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if rc != 0 {
            return Err(Error::sys(
                "sched_setattr",
                "process.scheduler",
                nix::errno::Errno::last(),
            ));
        }
    }
    if let Some(p) = process.io_priority() {
        let value = io_priority_value(p)?;
        // SAFETY: ioprio_set takes integers only.
        let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
        if rc != 0 {
            return Err(Error::sys(
                "ioprio_set",
                "process.ioPriority",
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: serde_json::Value) -> Process {
        let mut base =
            serde_json::json!({"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn bad_values_are_named() {
        for (json, field) in [
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}),
                "process.scheduler.nice",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_FIFO"}}),
                "process.scheduler.priority",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_BATCH", "priority": 5}}),
                "process.scheduler.priority",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_ISO"}}),
                "process.scheduler.policy",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 2000,
                                                 "deadline": 1000, "period": 3000}}),
                "process.scheduler",
            ),
            (
                serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}),
                "process.ioPriority.priority",
            ),
        ] {
            let err = validate(&process(json.clone())).unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn values_are_the_kernels() {
        let p = process(serde_json::json!({
            "scheduler": {"policy": "SCHED_RR", "priority": 10,
                          "flags": ["SCHED_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS"]},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 7},
        }));
        validate(&p).unwrap();
        let attr = scheduler_attr(p.scheduler().as_ref().unwrap()).unwrap();
        assert_eq!(
            (attr.size, attr.policy, attr.priority, attr.flags),
            (48, 2, 10, 0x11)
        );
        let value = io_priority_value(p.io_priority().as_ref().unwrap()).unwrap();
        assert_eq!(value, (3 << 13) | 7);
    }
}
