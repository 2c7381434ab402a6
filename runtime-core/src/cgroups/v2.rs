//! cgroup v2: resources written to the container's directory in the unified hierarchy.
//!
//! The spec speaks v1 (shares, memory+swap, blkio weights); the values are converted the way
//! runc converts them, so the same spec gives the same behaviour on either host.

use std::path::{Component, Path};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{read_file, v1, write_file};
use crate::{Error, Result};

/// Writes every resource the spec sets into the cgroup2 directory `dir`. `unified` entries go
/// last, so they override converted values.
pub(crate) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    if let Some(p) = r.pids()
        && p.limit() != 0
    {
        write_file(dir, "pids.max", &v1::pids_max(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        io(dir, b)?;
    }
    for limit in r.hugepage_limits().iter().flatten() {
        let size = v1::checked_page_size(limit.page_size())?;
        write_file(dir, &format!("hugetlb.{size}.max"), &max_or(limit.limit()))?;
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        super::devices_bpf::attach(dir, rules)?;
    }
    if let Some(n) = r.network()
        && (n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()))
    {
        log::warn!(
            "linux.resources.network ignored: net_cls/net_prio do not exist on cgroup v2 ({})",
            dir.display()
        );
    }
    for (key, value) in r.unified().iter().flatten() {
        check_unified_key(key)?;
        // Named by the spec's field, not as a failed write: the file is missing because its
        // controller is not enabled here or the kernel has no such knob.
        if !dir.join(key).exists() {
            return Err(Error::invalid(
                format!("linux.resources.unified[{key:?}]"),
                format!(
                    "names no file of the container's cgroup {} (a controller not enabled, \
                     or a knob this kernel lacks)",
                    dir.display()
                ),
            ));
        }
        write_file(dir, key, value)?;
    }
    Ok(())
}

/// `max` for a negative limit (unlimited), else the number.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|&v| v != 0);
    let swap = swap_max(limit, m.swap())?;
    if let Some(swap) = swap {
        write_file(dir, "memory.swap.max", &swap)?;
    }
    if let Some(limit) = limit {
        write_file(dir, "memory.max", &max_or(limit))?;
    }
    if let Some(reservation) = m.reservation().filter(|&v| v != 0) {
        write_file(dir, "memory.low", &max_or(reservation))?;
    }
    let ignored = [
        ("kernel", m.kernel().is_some_and(|v| v != 0)),
        ("kernelTCP", m.kernel_tcp().is_some_and(|v| v != 0)),
        ("swappiness", m.swappiness().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
    ];
    for (field, is_set) in ignored {
        if is_set {
            log::warn!(
                "linux.resources.memory.{field} ignored: cgroup v2 has no such knob ({})",
                dir.display()
            );
        }
    }
    Ok(())
}

/// `memory.swap.max` for the spec's memory and memory+swap limits. The spec's swap is v1's
/// memsw (memory plus swap), v2 limits swap alone, so the value is `swap - limit`. As on v1,
/// an unlimited memory limit with no swap given lifts the swap limit too.
pub fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    const FIELD: &str = "linux.resources.memory.swap";
    let limit = limit.filter(|&v| v != 0);
    match (limit, swap.filter(|&v| v != 0)) {
        (Some(-1), None) => Ok(Some("max".to_string())),
        (_, None) => Ok(None),
        (_, Some(-1)) => Ok(Some("max".to_string())),
        (None | Some(-1), Some(_)) => Err(Error::invalid(
            FIELD,
            "a swap limit needs a memory limit (memory.limit)",
        )),
        (Some(limit), Some(swap)) if limit < 0 || swap < limit => Err(Error::invalid(
            FIELD,
            format!("memory+swap {swap} must be at least the memory limit {limit}"),
        )),
        (Some(limit), Some(swap)) => Ok(Some((swap - limit).to_string())),
    }
}

/// `cpu.weight` (1..10000) for v1 `cpu.shares` (2..262144), as runc converts it; 0 stays 0
/// ("not set").
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `cpu.max` for the spec's quota and period: `"<quota> <period>"`, `max` for no quota, and
/// the period left out when not given. `None` when neither is set.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|&q| q != 0);
    let period = period.filter(|&p| p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut value = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(period) = period {
        value.push_str(&format!(" {period}"));
    }
    Some(value)
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(Error::invalid(
            "linux.resources.cpu.realtimeRuntime",
            "realtime scheduling limits do not exist on cgroup v2",
        ));
    }
    let weight = shares_to_weight(c.shares().unwrap_or(0));
    if weight != 0 {
        write_file(dir, "cpu.weight", &weight.to_string())?;
    }
    if let Some(max) = cpu_max(c.quota(), c.period()) {
        write_file(dir, "cpu.max", &max)?;
    }
    // cpu.max.burst arrived in Linux 5.14.
    if let Some(burst) = c.burst()
        && dir.join("cpu.max.burst").exists()
    {
        write_file(dir, "cpu.max.burst", &burst.to_string())?;
    }
    if let Some(idle) = c.idle() {
        if dir.join("cpu.idle").exists() {
            write_file(dir, "cpu.idle", &idle.to_string())?;
        } else {
            log::warn!(
                "linux.resources.cpu.idle ignored: this kernel has no cpu.idle in {}",
                dir.display()
            );
        }
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write_file(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write_file(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// `io.weight` (1..10000) for a v1 blkio weight (10..1000), as runc converts it.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

fn io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // BFQ takes the v1 weight range as is; the generic io.weight needs the conversion.
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(weight) = b.weight().filter(|&w| w != 0) {
        if bfq {
            write_file(dir, "io.bfq.weight", &weight.to_string())?;
        } else {
            let value = blkio_weight_to_io_weight(weight).to_string();
            write_file(dir, "io.weight", &value)?;
        }
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        log::warn!(
            "linux.resources.blockIO.leafWeight ignored: cgroup v2 has no leaf weight ({})",
            dir.display()
        );
    }
    device_weights(dir, b)?;
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for device in list.iter().flatten() {
            let value = format!(
                "{}:{} {key}={}",
                device.major(),
                device.minor(),
                device.rate()
            );
            write_file(dir, "io.max", &value)?;
        }
    }
    Ok(())
}

/// `blockIO.weightDevice` as runc writes it on v2: one `MAJ:MIN WEIGHT` line per device to
/// `io.bfq.weight`, in the v1 range as is, where BFQ takes per-device weights (Linux 5.4+:
/// the file then reads `default N` rather than a bare number). Nothing else on v2 takes a
/// per-device proportional weight without more set-up on the host (io.weight's per-device
/// form needs the io.cost controller enabled on the device), so elsewhere the weights are
/// left out with a warning, as runc leaves them out. A device BFQ does not schedule is
/// refused by the kernel: that fails naming the device's field.
fn device_weights(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let devices: Vec<_> = b
        .weight_device()
        .iter()
        .flatten()
        .filter_map(|d| d.weight().map(|w| (d.major(), d.minor(), w)))
        .collect();
    if devices.is_empty() {
        return Ok(());
    }
    let per_device = read_file(dir, "io.bfq.weight").is_ok_and(|text| takes_device_weights(&text));
    if !per_device {
        log::warn!(
            "linux.resources.blockIO.weightDevice ignored: {} has no io.bfq.weight taking \
             per-device weights (the BFQ I/O scheduler, Linux 5.4+)",
            dir.display()
        );
        return Ok(());
    }
    for (i, (major, minor, weight)) in devices.into_iter().enumerate() {
        write_file(dir, "io.bfq.weight", &format!("{major}:{minor} {weight}")).map_err(|e| {
            Error::invalid(
                format!("linux.resources.blockIO.weightDevice[{i}]"),
                format!("device {major}:{minor}: {e} (is BFQ its I/O scheduler?)"),
            )
        })?;
    }
    Ok(())
}

/// Whether `io.bfq.weight` with contents `text` takes `MAJ:MIN WEIGHT` lines: kernels that
/// do print `default N` (and any per-device lines), older ones a bare number.
fn takes_device_weights(text: &str) -> bool {
    text.trim().parse::<u64>().is_err()
}

/// A `linux.resources.unified` key names a file in the container's own directory: no `/`,
/// no `.`/`..`, nothing empty.
pub(crate) fn check_unified_key(key: &str) -> Result<()> {
    let plain = !key.is_empty()
        && !key.contains('/')
        && matches!(
            Path::new(key).components().next(),
            Some(Component::Normal(_))
        );
    // These move, kill or freeze processes, or reshape the tree, rather than limit
    // resources (a frozen container the shim thinks is running hangs every exec):
    // `cgroup.procs` = a host pid would pull that process into the container's cgroup, where
    // Kill and Delete reach it.
    const NOT_LIMITS: [&str; 6] = [
        "cgroup.freeze",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.kill",
        "cgroup.subtree_control",
        "cgroup.type",
    ];
    if NOT_LIMITS.contains(&key) {
        return Err(Error::invalid(
            format!("linux.resources.unified[{key:?}]"),
            "is not a resource limit: mini manages the cgroup's processes itself",
        ));
    }
    if plain {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("linux.resources.unified[{key:?}]"),
            "must name a file in the container's cgroup (no \"/\" or \"..\")",
        ))
    }
}

/// Enables, at `mount` and every level below it down to `dir`'s parent, each controller that
/// level offers (`cgroup.controllers` → `cgroup.subtree_control`), so `dir` gets them all. A
/// controller a level refuses is left out with a warning: the limit that needs it then fails
/// with a clear error naming its missing file.
pub(crate) fn enable_controllers(mount: &Path, dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let mut levels: Vec<&Path> = parent
        .ancestors()
        .take_while(|a| a.starts_with(mount))
        .collect();
    levels.reverse();
    for level in levels {
        let available = read_file(level, "cgroup.controllers")?;
        let enabled = read_file(level, "cgroup.subtree_control")?;
        for controller in available.split_whitespace() {
            if enabled.split_whitespace().any(|e| e == controller) {
                continue;
            }
            if let Err(e) = write_file(level, "cgroup.subtree_control", &format!("+{controller}")) {
                log::warn!("{e}");
            }
        }
    }
    Ok(())
}

/// Writes `cgroup.freeze` and waits until `cgroup.events` reports the state reached.
pub(crate) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let (value, want) = if frozen {
        ("1", "frozen 1")
    } else {
        ("0", "frozen 0")
    };
    write_file(dir, "cgroup.freeze", value)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let events = read_file(dir, "cgroup.events")?;
        if events.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                let _ = write_file(dir, "cgroup.freeze", "0");
            }
            return Err(Error::cgroup(
                dir,
                format!("cgroup.events did not report {want:?} within 2 s"),
            ));
        }
        sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_key_naming_no_file_is_refused_by_its_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.high"), "max").unwrap();
        let r: LinuxResources =
            serde_json::from_str(r#"{"unified": {"memory.nosuch": "1"}}"#).unwrap();
        let err = apply(dir.path(), &r).unwrap_err().to_string();
        assert!(
            err.contains(r#"linux.resources.unified["memory.nosuch"]"#),
            "{err}"
        );
        assert!(!dir.path().join("memory.nosuch").exists());
        let r: LinuxResources =
            serde_json::from_str(r#"{"unified": {"memory.high": "1000"}}"#).unwrap();
        apply(dir.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("memory.high")).unwrap(),
            "1000"
        );
    }

    #[test]
    fn device_weights_go_to_bfq_only_where_it_takes_them() {
        assert!(takes_device_weights("default 100\n"));
        assert!(takes_device_weights("default 100\n254:0 300\n"));
        assert!(!takes_device_weights("100\n"));

        let r: LinuxResources = serde_json::from_str(
            r#"{"blockIO": {"weightDevice": [{"major": 254, "minor": 0, "weight": 300}]}}"#,
        )
        .unwrap();
        // No BFQ: left out, as runc does; io.weight untouched.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("io.weight"), "default 100\n").unwrap();
        apply(dir.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.weight")).unwrap(),
            "default 100\n"
        );
        // BFQ with per-device weights: the raw weight, per device.
        std::fs::write(dir.path().join("io.bfq.weight"), "default 100\n").unwrap();
        apply(dir.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.bfq.weight")).unwrap(),
            "254:0 300"
        );
        // An old BFQ (a bare number): left out.
        std::fs::write(dir.path().join("io.bfq.weight"), "100\n").unwrap();
        apply(dir.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.bfq.weight")).unwrap(),
            "100\n"
        );
    }
}
