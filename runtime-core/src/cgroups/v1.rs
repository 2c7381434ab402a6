//! cgroup v1: resources written to each controller's files, in the hierarchy that carries the
//! controller (legacy hosts and the v1 part of hybrid hosts).
//!
//! Values follow runc's reading of the spec: a limit of 0 means "not set" (runc treats the Go
//! zero value so and CRI relies on it); -1 means unlimited where the kernel accepts it.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxNetwork, LinuxPids, LinuxResources, LinuxThrottleDevice,
};

use super::{CgroupDir, read_file, v1_dir, write_file};
use crate::{Error, Result};

/// Writes every resource the spec sets into the v1 hierarchies `dirs`.
pub(crate) fn apply(dirs: &[CgroupDir], r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        memory(dirs, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dirs, c)?;
    }
    if let Some(p) = r.pids() {
        pids(dirs, p)?;
    }
    if let Some(b) = r.block_io() {
        blkio(dirs, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        hugetlb(dirs, h)?;
    }
    if let Some(d) = r.devices() {
        devices(dirs, d)?;
    }
    if let Some(n) = r.network() {
        network(dirs, n)?;
    }
    Ok(())
}

/// The container's dir in the hierarchy of `controller`; an error naming `field` when the host
/// does not mount that controller (the limit could not be honoured).
fn require<'a>(dirs: &'a [CgroupDir], controller: &str, field: &str) -> Result<&'a Path> {
    v1_dir(dirs, controller).ok_or_else(|| {
        Error::invalid(
            field,
            format!("the {controller} cgroup controller is not mounted on this host"),
        )
    })
}

/// `Some(v)` unless `v` is 0, which the spec's producers use for "not set".
fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

fn memory(dirs: &[CgroupDir], m: &LinuxMemory) -> Result<()> {
    let any = set(m.limit()).is_some()
        || set(m.swap()).is_some()
        || set(m.reservation()).is_some()
        || set(m.kernel()).is_some()
        || set(m.kernel_tcp()).is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true);
    if !any {
        return Ok(());
    }
    let dir = require(dirs, "memory", "linux.resources.memory")?;
    let current = read_file(dir, "memory.limit_in_bytes")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    for (file, value) in memory_limit_writes(current, m.limit(), m.swap()) {
        write_file(dir, file, &value)?;
    }
    if let Some(reservation) = set(m.reservation()) {
        write_file(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    for (value, file, field) in [
        (m.kernel(), "memory.kmem.limit_in_bytes", "kernel"),
        (
            m.kernel_tcp(),
            "memory.kmem.tcp.limit_in_bytes",
            "kernelTCP",
        ),
    ] {
        if let Some(value) = set(value) {
            if dir.join(file).exists() {
                write_file(dir, file, &value.to_string())?;
            } else {
                log::warn!(
                    "linux.resources.memory.{field} ignored: this kernel has no {file} in {}",
                    dir.display()
                );
            }
        }
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            return Err(Error::invalid(
                "linux.resources.memory.swappiness",
                format!("{swappiness} is above 100"),
            ));
        }
        write_file(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write_file(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

/// The writes of `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`, in an order the
/// kernel accepts: it refuses a memory limit above the memsw limit and a memsw limit below the
/// memory limit, so when raising, memsw goes first, and when lowering, memory goes first.
/// `current` is the memory limit in place now. A memory limit of -1 with no swap given also
/// lifts the swap limit (as runc does), or the old memsw limit would still cap the container.
/// A memory limit of -1 with a finite swap limit N (memory+swap at most N) is written as a
/// memory limit of N: v1 refuses an unlimited memory limit above a finite memsw limit in
/// either order (runc fails there with EINVAL), and the memsw limit of N keeps memory below
/// N anyway, so the container gets what the spec asks.
pub fn memory_limit_writes(
    current: Option<u64>,
    limit: Option<i64>,
    swap: Option<i64>,
) -> Vec<(&'static str, String)> {
    const MEM: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = set(limit);
    let swap = match (limit, set(swap)) {
        (Some(-1), None) => Some(-1),
        (_, swap) => swap,
    };
    let limit = match (limit, swap) {
        (Some(-1), Some(swap)) if swap > 0 => Some(swap),
        (limit, _) => limit,
    };
    match (limit, swap) {
        (Some(limit), Some(swap)) => {
            let raising = swap == -1 || current.is_some_and(|c| swap > 0 && c < swap as u64);
            if raising {
                vec![(MEMSW, swap.to_string()), (MEM, limit.to_string())]
            } else {
                vec![(MEM, limit.to_string()), (MEMSW, swap.to_string())]
            }
        }
        (Some(limit), None) => vec![(MEM, limit.to_string())],
        (None, Some(swap)) => vec![(MEMSW, swap.to_string())],
        (None, None) => Vec::new(),
    }
}

fn cpu(dirs: &[CgroupDir], c: &LinuxCpu) -> Result<()> {
    let shares = c.shares().filter(|&s| s != 0);
    let period = c.period().filter(|&p| p != 0);
    let quota = set(c.quota());
    let rt_period = c.realtime_period().filter(|&p| p != 0);
    let rt_runtime = set(c.realtime_runtime());
    let uses_cpu = shares.is_some()
        || period.is_some()
        || quota.is_some()
        || c.burst().is_some()
        || rt_period.is_some()
        || rt_runtime.is_some()
        || c.idle().is_some();
    if uses_cpu {
        let dir = require(dirs, "cpu", "linux.resources.cpu")?;
        if let Some(shares) = shares {
            write_file(dir, "cpu.shares", &shares.to_string())?;
        }
        // The kernel checks quota against period, so a new period can be refused until the new
        // quota is in; then write the quota first.
        if let Some(period) = period
            && let Err(e) = write_file(dir, "cpu.cfs_period_us", &period.to_string())
        {
            let Some(quota) = quota else { return Err(e) };
            write_file(dir, "cpu.cfs_quota_us", &quota.to_string())?;
            write_file(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
        if let Some(quota) = quota {
            write_file(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        if let Some(burst) = c.burst() {
            write_optional(dir, "cpu.cfs_burst_us", &burst.to_string(), "cpu.burst")?;
        }
        // A larger runtime than the period is refused, so the period goes first.
        if let Some(rt_period) = rt_period {
            write_file(dir, "cpu.rt_period_us", &rt_period.to_string())?;
        }
        if let Some(rt_runtime) = rt_runtime {
            write_file(dir, "cpu.rt_runtime_us", &rt_runtime.to_string())?;
        }
        if let Some(idle) = c.idle() {
            write_optional(dir, "cpu.idle", &idle.to_string(), "cpu.idle")?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = require(dirs, "cpuset", "linux.resources.cpu.cpus")?;
        if let Some(cpus) = cpus {
            write_file(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = mems {
            write_file(dir, "cpuset.mems", mems)?;
        }
    }
    Ok(())
}

/// Writes a knob that older kernels lack; without it, a warning says the field is ignored.
fn write_optional(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    if dir.join(file).exists() {
        write_file(dir, file, value)
    } else {
        log::warn!(
            "linux.resources.{field} ignored: this kernel has no {file} in {}",
            dir.display()
        );
        Ok(())
    }
}

fn pids(dirs: &[CgroupDir], p: &LinuxPids) -> Result<()> {
    // 0 means "not set" (as runc reads it): an Update with 0 leaves the limit alone.
    if p.limit() == 0 {
        return Ok(());
    }
    let dir = require(dirs, "pids", "linux.resources.pids")?;
    write_file(dir, "pids.max", &pids_max(p.limit()))
}

/// `pids.max` for a spec limit: below 0 means no limit.
pub fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

fn blkio(dirs: &[CgroupDir], b: &LinuxBlockIo) -> Result<()> {
    let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str); 4] = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    let any = b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles
            .iter()
            .any(|(list, _)| list.as_ref().is_some_and(|v| !v.is_empty()));
    if !any {
        return Ok(());
    }
    let dir = require(dirs, "blkio", "linux.resources.blockIO")?;
    // CFQ's `blkio.weight` is gone since Linux 5.0; BFQ offers `blkio.bfq.weight` instead.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists());
    let weight_device_file = ["blkio.weight_device", "blkio.bfq.weight_device"]
        .into_iter()
        .find(|f| dir.join(f).exists());
    if let Some(weight) = b.weight().filter(|&w| w != 0) {
        let file = weight_file.ok_or_else(|| {
            Error::cgroup(
                dir,
                "linux.resources.blockIO.weight: neither blkio.weight nor blkio.bfq.weight exists \
                 (the block I/O scheduler offers no proportional weight)",
            )
        })?;
        write_file(dir, file, &weight.to_string())?;
    }
    if let Some(leaf) = b.leaf_weight().filter(|&w| w != 0) {
        write_optional(
            dir,
            "blkio.leaf_weight",
            &leaf.to_string(),
            "blockIO.leafWeight",
        )?;
    }
    for device in b.weight_device().iter().flatten() {
        let node = format!("{}:{}", device.major(), device.minor());
        if let Some(weight) = device.weight() {
            let file = weight_device_file.ok_or_else(|| {
                Error::cgroup(
                    dir,
                    "linux.resources.blockIO.weightDevice: neither blkio.weight_device nor \
                     blkio.bfq.weight_device exists",
                )
            })?;
            write_file(dir, file, &format!("{node} {weight}"))?;
        }
        if let Some(leaf) = device.leaf_weight() {
            write_optional(
                dir,
                "blkio.leaf_weight_device",
                &format!("{node} {leaf}"),
                "blockIO.weightDevice.leafWeight",
            )?;
        }
    }
    for (list, file) in throttles {
        for device in list.iter().flatten() {
            let value = format!("{}:{} {}", device.major(), device.minor(), device.rate());
            write_file(dir, file, &value)?;
        }
    }
    Ok(())
}

fn hugetlb(dirs: &[CgroupDir], limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = require(dirs, "hugetlb", "linux.resources.hugepageLimits")?;
    for limit in limits {
        let size = checked_page_size(limit.page_size())?;
        let file = format!("hugetlb.{size}.limit_in_bytes");
        write_file(dir, &file, &limit.limit().to_string())?;
    }
    Ok(())
}

/// A hugepage size such as `2MB`: it becomes part of a file name, so only letters and digits.
pub(crate) fn checked_page_size(size: &str) -> Result<&str> {
    if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "linux.resources.hugepageLimits.pageSize",
            format!("{size:?} is not a page size such as 2MB"),
        ));
    }
    Ok(size)
}

fn devices(dirs: &[CgroupDir], rules: &[LinuxDeviceCgroup]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let dir = require(dirs, "devices", "linux.resources.devices")?;
    for (i, rule) in rules.iter().enumerate() {
        let value = device_rule(i, rule)?;
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write_file(dir, file, &value)?;
    }
    Ok(())
}

/// The line for `devices.allow`/`devices.deny` for rule `i`: `c 1:3 rwm`, `*` for a missing
/// major or minor.
pub fn device_rule(i: usize, rule: &LinuxDeviceCgroup) -> Result<String> {
    let field = |name: &str| format!("linux.resources.devices[{i}].{name}");
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C => "c",
        other => {
            return Err(Error::invalid(
                field("type"),
                format!(
                    "{:?}: the devices cgroup knows only a, b and c",
                    other.as_str()
                ),
            ));
        }
    };
    let number = |n: Option<i64>, name: &str| match n {
        None | Some(-1) => Ok("*".to_string()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(Error::invalid(field(name), format!("{n} is negative"))),
    };
    let major = number(rule.major(), "major")?;
    let minor = number(rule.minor(), "minor")?;
    let access = rule.access().as_deref().unwrap_or("rwm");
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::invalid(
            field("access"),
            format!("{access:?}: only r, w and m are allowed"),
        ));
    }
    Ok(format!("{typ} {major}:{minor} {access}"))
}

fn network(dirs: &[CgroupDir], n: &LinuxNetwork) -> Result<()> {
    if let Some(class_id) = n.class_id() {
        let dir = require(dirs, "net_cls", "linux.resources.network.classID")?;
        write_file(dir, "net_cls.classid", &class_id.to_string())?;
    }
    let priorities = n.priorities().as_deref().unwrap_or_default();
    if !priorities.is_empty() {
        let dir = require(dirs, "net_prio", "linux.resources.network.priorities")?;
        for p in priorities {
            if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                return Err(Error::invalid(
                    "linux.resources.network.priorities.name",
                    format!("{:?} is not an interface name", p.name()),
                ));
            }
            write_file(
                dir,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    Ok(())
}

/// Fills an empty `cpuset.cpus`/`cpuset.mems` of `dir` from `parent`: a new v1 cpuset starts
/// empty, and no task may join an empty cpuset.
pub(crate) fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_file(dir, file)?.is_empty() {
            let value = read_file(parent, file)?;
            if !value.is_empty() {
                write_file(dir, file, &value)?;
            }
        }
    }
    Ok(())
}

/// Writes `freezer.state` and waits until the kernel reports the state reached (`FREEZING`
/// lasts while tasks are being stopped); a freeze that does not settle in ~2 s is undone.
pub(crate) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let target = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        write_file(dir, "freezer.state", target)?;
        if read_file(dir, "freezer.state")? == target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                let _ = write_file(dir, "freezer.state", "THAWED");
            }
            return Err(Error::cgroup(
                dir,
                format!("freezer.state did not become {target} within 2 s"),
            ));
        }
        sleep(Duration::from_millis(10));
    }
}
