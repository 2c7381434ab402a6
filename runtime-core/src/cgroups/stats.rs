//! Usage statistics read from a container's cgroup files, in the shape containerd's cgroups
//! library reports them (`io.containerd.cgroups.v1.Metrics` / `v2.Metrics`): the shim maps
//! these plain types onto the protobuf messages.
//!
//! What is read, and how, follows containerd/cgroups: v1 `memory.stat` keys and the
//! `memory[.memsw|.kmem|.kmem.tcp].{usage,max_usage,limit}_in_bytes`/`failcnt` entries;
//! `cpuacct.usage`, `cpuacct.usage_percpu`, `cpuacct.stat` (ticks of 1/100 s, reported in ns)
//! and `cpu.stat` throttling; `pids.current`/`pids.max` (`max` → 0 on v1); the CFQ
//! `blkio.*_recursive` files, or the `blkio.throttle.*` ones when those are empty; hugetlb per
//! page size. On v2: `cpu.stat`, `memory.stat`, `memory.{current,max,peak}`,
//! `memory.swap.{current,max,peak}`, `memory.events`, `io.stat`, `hugetlb.<size>.*`,
//! `pids.*` (`max` → `u64::MAX`) and the pressure (PSI) files `cpu.pressure`,
//! `memory.pressure`, `io.pressure`. A file the kernel does not offer leaves its value 0.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::{Error, Result};

/// `cpuacct.stat` counts in USER_HZ ticks; containerd/cgroups assumes 100 per second.
const CLOCK_TICKS: u64 = 100;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// One `memory[.<module>].*` group of v1 files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// v1 memory controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Memory {
    /// `memory.stat`, key by key (`cache`, `rss`, `total_rss`, `hierarchical_memory_limit`…).
    pub stat: BTreeMap<String, u64>,
    pub usage: MemoryEntry,
    /// `memory.memsw.*` (memory plus swap); all 0 when swap accounting is off.
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    pub kernel_tcp: MemoryEntry,
    /// `memory.oom_control`: `oom_kill_disable`, `under_oom`, `oom_kill`.
    pub oom_control: BTreeMap<String, u64>,
}

/// v1 cpu and cpuacct controllers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Cpu {
    /// ns, `cpuacct.usage`.
    pub total: u64,
    /// ns, from `cpuacct.stat` `user`.
    pub user: u64,
    /// ns, from `cpuacct.stat` `system`.
    pub kernel: u64,
    pub per_cpu: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    /// ns, `cpu.stat` `throttled_time`.
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
}

/// One line of a v1 blkio file: `major:minor [op] value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub op: String,
    /// `/dev/<name>` from `/proc/partitions`, empty when unknown.
    pub device: String,
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
    pub io_queued_recursive: Vec<BlkioEntry>,
    pub io_service_time_recursive: Vec<BlkioEntry>,
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    pub io_merged_recursive: Vec<BlkioEntry>,
    pub io_time_recursive: Vec<BlkioEntry>,
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One hugepage size (`2MB`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hugetlb {
    pub pagesize: String,
    /// v1 `usage_in_bytes`, v2 `current`.
    pub usage: u64,
    /// v1 `max_usage_in_bytes`, v2 the limit `max`.
    pub max: u64,
    /// v1 `failcnt`, v2 the `max` count of `hugetlb.<size>.events`.
    pub failcnt: u64,
}

/// A container's statistics on a v1 (legacy or hybrid) host; a controller the host does not
/// mount is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Stats {
    pub memory: Option<V1Memory>,
    pub cpu: Option<V1Cpu>,
    pub pids: Option<Pids>,
    pub blkio: Option<V1Blkio>,
    pub hugetlb: Vec<Hugetlb>,
}

/// One device of v2 `io.stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoEntry {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// One line of a pressure file: `some avg10=0.12 avg60=0.05 avg300=0.01 total=1234`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// µs stalled in all.
    pub total: u64,
}

/// A pressure (PSI) file: its `some` and `full` lines; `None` when the kernel has no file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Psi {
    pub some: PsiData,
    pub full: PsiData,
}

/// A container's statistics on a unified (v2) host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct V2Stats {
    pub pids: Pids,
    /// `cpu.stat`, key by key (`usage_usec`, `nr_throttled`…).
    pub cpu: BTreeMap<String, u64>,
    /// `memory.stat`, key by key.
    pub memory: BTreeMap<String, u64>,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub memory_max_usage: u64,
    pub swap_usage: u64,
    pub swap_limit: u64,
    pub swap_max_usage: u64,
    /// `memory.events`, key by key (`oom`, `oom_kill`…).
    pub memory_events: BTreeMap<String, u64>,
    pub io: Vec<IoEntry>,
    pub hugetlb: Vec<Hugetlb>,
    pub cpu_pressure: Option<Psi>,
    pub memory_pressure: Option<Psi>,
    pub io_pressure: Option<Psi>,
}

/// Statistics of one container, by host layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Stats {
    V1(Box<V1Stats>),
    V2(Box<V2Stats>),
}

/// The content of `dir/file`, `None` when the kernel has no such file.
fn read_optional(dir: &Path, file: &str) -> Result<Option<String>> {
    match fs::read_to_string(dir.join(file)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::cgroup(dir, format!("read {file}: {e}"))),
    }
}

/// A number file; `max` reads as `max_value` (v1 pids: 0, v2: `u64::MAX`). Missing: 0.
fn read_number(dir: &Path, file: &str, max_value: u64) -> Result<u64> {
    match read_optional(dir, file)? {
        None => Ok(0),
        Some(text) => parse_number(text.trim(), max_value)
            .ok_or_else(|| Error::cgroup(dir, format!("{file}: not a number: {text:?}"))),
    }
}

fn parse_number(text: &str, max_value: u64) -> Option<u64> {
    if text == "max" {
        return Some(max_value);
    }
    // A v1 limit of "unlimited" can read as -1 on some files (cpu.cfs_quota_us); none of the
    // files read here hold one, but a negative number still must not fail the whole read.
    text.parse::<u64>()
        .ok()
        .or_else(|| text.parse::<i64>().ok().map(|_| 0))
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, cpuacct.stat).
pub fn parse_key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

fn read_key_values(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    Ok(read_optional(dir, file)?
        .map(|t| parse_key_values(&t))
        .unwrap_or_default())
}

/// v1 memory statistics from the container's memory cgroup `dir`.
pub fn v1_memory(dir: &Path) -> Result<V1Memory> {
    let entry = |prefix: &str| -> Result<MemoryEntry> {
        let n = |name: &str| read_number(dir, &format!("{prefix}.{name}"), 0);
        Ok(MemoryEntry {
            limit: n("limit_in_bytes")?,
            usage: n("usage_in_bytes")?,
            max: n("max_usage_in_bytes")?,
            failcnt: n("failcnt")?,
        })
    };
    Ok(V1Memory {
        stat: read_key_values(dir, "memory.stat")?,
        usage: entry("memory")?,
        swap: entry("memory.memsw")?,
        kernel: entry("memory.kmem")?,
        kernel_tcp: entry("memory.kmem.tcp")?,
        oom_control: read_key_values(dir, "memory.oom_control")?,
    })
}

/// v1 cpu statistics from the container's cpuacct and cpu cgroup directories.
pub fn v1_cpu(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<V1Cpu> {
    let mut out = V1Cpu::default();
    if let Some(dir) = cpuacct {
        out.total = read_number(dir, "cpuacct.usage", 0)?;
        out.per_cpu = read_optional(dir, "cpuacct.usage_percpu")?
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let stat = read_key_values(dir, "cpuacct.stat")?;
        let ns = |ticks: u64| ticks.saturating_mul(NANOS_PER_SECOND) / CLOCK_TICKS;
        out.user = ns(stat.get("user").copied().unwrap_or(0));
        out.kernel = ns(stat.get("system").copied().unwrap_or(0));
    }
    if let Some(dir) = cpu {
        let stat = read_key_values(dir, "cpu.stat")?;
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        out.periods = get("nr_periods");
        out.throttled_periods = get("nr_throttled");
        out.throttled_time = get("throttled_time");
    }
    Ok(out)
}

/// Pids of the container's pids cgroup `dir` (a limit of `max` reads as `max_value`).
pub fn pids(dir: &Path, max_value: u64) -> Result<Pids> {
    Ok(Pids {
        current: read_number(dir, "pids.current", 0)?,
        limit: read_number(dir, "pids.max", max_value)?,
    })
}

/// Device names by `(major, minor)` from `/proc/partitions` text.
pub fn parse_partitions(text: &str) -> BTreeMap<(u64, u64), String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 4 {
                return None;
            }
            let major = f[0].parse().ok()?;
            let minor = f[1].parse().ok()?;
            Some(((major, minor), format!("/dev/{}", f[3])))
        })
        .collect()
}

/// Lines `major:minor op value` or `major:minor value`; `Total` lines are skipped.
pub fn parse_blkio(
    text: &str,
    devices: &BTreeMap<(u64, u64), String>,
) -> std::result::Result<Vec<BlkioEntry>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
        if fields.len() < 3 {
            if fields.len() == 2 && fields[0] == "Total" {
                continue;
            }
            return Err(format!("malformed line {line:?}"));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("malformed line {line:?}"))
        };
        let (major, minor) = (num(fields[0])?, num(fields[1])?);
        let (op, value) = if fields.len() >= 4 {
            (fields[2].to_string(), num(fields[3])?)
        } else {
            (String::new(), num(fields[2])?)
        };
        out.push(BlkioEntry {
            op,
            device: devices.get(&(major, minor)).cloned().unwrap_or_default(),
            major,
            minor,
            value,
        });
    }
    Ok(out)
}

/// v1 blkio statistics of `dir`: the CFQ/BFQ `*_recursive` files, or, when they hold nothing
/// (no device of the cgroup uses such a scheduler), `throttle.io_serviced` and
/// `throttle.io_service_bytes`.
pub fn v1_blkio(dir: &Path, partitions: &str) -> Result<V1Blkio> {
    let devices = parse_partitions(partitions);
    let read = |file: &str| -> Result<Vec<BlkioEntry>> {
        let name = format!("blkio.{file}");
        match read_optional(dir, &name)? {
            None => Ok(Vec::new()),
            Some(text) => {
                parse_blkio(&text, &devices).map_err(|e| Error::cgroup(dir, format!("{name}: {e}")))
            }
        }
    };
    let mut out = V1Blkio {
        sectors_recursive: read("sectors_recursive")?,
        io_service_bytes_recursive: read("io_service_bytes_recursive")?,
        io_serviced_recursive: read("io_serviced_recursive")?,
        io_queued_recursive: read("io_queued_recursive")?,
        io_service_time_recursive: read("io_service_time_recursive")?,
        io_wait_time_recursive: read("io_wait_time_recursive")?,
        io_merged_recursive: read("io_merged_recursive")?,
        io_time_recursive: read("time_recursive")?,
    };
    let cfq_entries = out.sectors_recursive.len()
        + out.io_service_bytes_recursive.len()
        + out.io_serviced_recursive.len()
        + out.io_queued_recursive.len()
        + out.io_service_time_recursive.len()
        + out.io_wait_time_recursive.len()
        + out.io_merged_recursive.len()
        + out.io_time_recursive.len();
    if cfq_entries == 0 {
        out.io_serviced_recursive = read("throttle.io_serviced")?;
        out.io_service_bytes_recursive = read("throttle.io_service_bytes")?;
    }
    Ok(out)
}

/// The page sizes that have `hugetlb.<size>.<suffix>` files in `dir`, sorted.
fn hugepage_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::cgroup(dir, format!("readdir: {e}"))),
    };
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok())
        // Only the kernel's files: a sub-cgroup the container made and named like one
        // (`hugetlb.X.current`) is a directory, which would make every Stats fail.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            // `hugetlb.2MB.rsvd.max` and friends are other files.
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// v1 hugetlb statistics of `dir`, one entry per page size.
pub fn v1_hugetlb(dir: &Path) -> Result<Vec<Hugetlb>> {
    hugepage_sizes(dir, ".usage_in_bytes")?
        .into_iter()
        .map(|size| {
            let n = |name: &str| read_number(dir, &format!("hugetlb.{size}.{name}"), 0);
            Ok(Hugetlb {
                usage: n("usage_in_bytes")?,
                max: n("max_usage_in_bytes")?,
                failcnt: n("failcnt")?,
                pagesize: size,
            })
        })
        .collect()
}

/// The statistics of a v1 container. `dir_of(controller)` gives the container's directory in
/// the hierarchy carrying `controller`; `partitions` is `/proc/partitions`.
pub fn v1_stats<'a>(
    dir_of: impl Fn(&str) -> Option<&'a Path>,
    partitions: &str,
) -> Result<V1Stats> {
    Ok(V1Stats {
        memory: dir_of("memory").map(v1_memory).transpose()?,
        cpu: if dir_of("cpuacct").is_some() || dir_of("cpu").is_some() {
            Some(v1_cpu(dir_of("cpuacct"), dir_of("cpu"))?)
        } else {
            None
        },
        pids: dir_of("pids").map(|d| pids(d, 0)).transpose()?,
        blkio: dir_of("blkio")
            .map(|d| v1_blkio(d, partitions))
            .transpose()?,
        hugetlb: match dir_of("hugetlb") {
            Some(d) => v1_hugetlb(d)?,
            None => Vec::new(),
        },
    })
}

/// v2 `io.stat`: `major:minor rbytes=… wbytes=… rios=… wios=… …` per device.
pub fn parse_io_stat(text: &str) -> Vec<IoEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut entry = IoEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let value = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => entry.rbytes = value,
                    "wbytes" => entry.wbytes = value,
                    "rios" => entry.rios = value,
                    "wios" => entry.wios = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

/// A pressure file's text (`some …` and `full …` lines; `full` is missing for cpu on older
/// kernels and stays zero).
pub fn parse_psi(text: &str) -> Psi {
    let mut psi = Psi::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let data = match fields.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => data.avg10 = value.parse().unwrap_or(0.0),
                "avg60" => data.avg60 = value.parse().unwrap_or(0.0),
                "avg300" => data.avg300 = value.parse().unwrap_or(0.0),
                "total" => data.total = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    psi
}

/// The statistics of the container's cgroup2 directory `dir`.
pub fn v2_stats(dir: &Path) -> Result<V2Stats> {
    let n = |file: &str| read_number(dir, file, u64::MAX);
    let hugetlb = hugepage_sizes(dir, ".current")?
        .into_iter()
        .map(|size| {
            let events = read_key_values(dir, &format!("hugetlb.{size}.events"))?;
            Ok(Hugetlb {
                usage: n(&format!("hugetlb.{size}.current"))?,
                max: n(&format!("hugetlb.{size}.max"))?,
                failcnt: events.get("max").copied().unwrap_or(0),
                pagesize: size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(V2Stats {
        pids: pids(dir, u64::MAX)?,
        cpu: read_key_values(dir, "cpu.stat")?,
        memory: read_key_values(dir, "memory.stat")?,
        memory_usage: n("memory.current")?,
        memory_limit: n("memory.max")?,
        memory_max_usage: n("memory.peak")?,
        swap_usage: n("memory.swap.current")?,
        swap_limit: n("memory.swap.max")?,
        swap_max_usage: n("memory.swap.peak")?,
        memory_events: read_key_values(dir, "memory.events")?,
        io: read_optional(dir, "io.stat")?
            .map(|t| parse_io_stat(&t))
            .unwrap_or_default(),
        hugetlb,
        cpu_pressure: read_optional(dir, "cpu.pressure")?.map(|t| parse_psi(&t)),
        memory_pressure: read_optional(dir, "memory.pressure")?.map(|t| parse_psi(&t)),
        io_pressure: read_optional(dir, "io.pressure")?.map(|t| parse_psi(&t)),
    })
}
