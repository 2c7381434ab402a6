//! `events`: the container's cgroup statistics in runc's JSON (`types.Event` with
//! `types.Stats` as its data, runc's field names and its `omitempty` rules), once
//! (`--stats`) or every interval, with an `oom` event whenever the kernel's OOM killer kills
//! one of the container's processes. The numbers are the library's
//! ([`runtime_core::cgroups::CgroupManager::stats`]), the same the shim reports to containerd.

use std::io::Write;
use std::time::{Duration, Instant};

use runtime_core::cgroups::CgroupManager;
use runtime_core::cgroups::stats::{
    BlkioEntry, Hugetlb, IoEntry, MemoryEntry, Stats, V1Stats, V2Stats,
};
use serde_json::{Map, Value, json};

use crate::Result;
use crate::state::{Root, Status};

/// How often the stream looks at the OOM counter and the container's status.
const POLL: Duration = Duration::from_millis(100);

/// `events [--stats] [--interval D] ID`.
pub fn run(root: &Root, id: &str, stats_only: bool, interval: Duration) -> Result<()> {
    let cgroup = running_cgroup(root, id)?;
    let mut out = std::io::stdout().lock();
    if stats_only {
        return emit(&mut out, &stats_event(id, &cgroup)?);
    }
    let mut ooms = cgroup.oom_kills().unwrap_or(0);
    let mut next_stats = Instant::now();
    loop {
        if let Some(now) = cgroup.oom_kills()
            && now > ooms
        {
            ooms = now;
            emit(&mut out, &json!({"type": "oom", "id": id}))?;
        }
        if Instant::now() >= next_stats {
            // A container that stops between the check and the read is not an error.
            if let Ok(event) = stats_event(id, &cgroup) {
                emit(&mut out, &event)?;
            }
            next_stats += interval;
        }
        if running_cgroup(root, id).is_err() {
            return Ok(());
        }
        std::thread::sleep(POLL.min(interval));
    }
}

/// The container's cgroup while it is created, running or paused.
fn running_cgroup(root: &Root, id: &str) -> Result<CgroupManager> {
    let c = root.peek(id)?;
    let record = c.record()?;
    let status = c.status(record.as_ref());
    match (status, record.and_then(|r| r.cgroup)) {
        (Status::Stopped | Status::Creating, _) | (_, None) => {
            Err(format!("container with id {id} is not running"))
        }
        (_, Some(cgroup)) => Ok(cgroup),
    }
}

fn emit(out: &mut impl Write, event: &Value) -> Result<()> {
    writeln!(out, "{event}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("write event: {e}"))
}

fn stats_event(id: &str, cgroup: &CgroupManager) -> Result<Value> {
    let stats = cgroup.stats().map_err(|e| e.to_string())?;
    Ok(json!({"type": "stats", "id": id, "data": runc_stats(&stats)}))
}

/// runc's `types.Stats` of `stats`.
fn runc_stats(stats: &Stats) -> Value {
    let (cpu, memory, pids, blkio, hugetlb) = match stats {
        Stats::V1(s) => v1(s),
        Stats::V2(s) => v2(s),
    };
    json!({
        "cpu": cpu,
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": null,
    })
}

type Sections = (Value, Value, Value, Value, Value);

fn v1(s: &V1Stats) -> Sections {
    let cpu = s.cpu.as_ref().map_or_else(
        || cpu_json(0, &[], 0, 0, (0, 0, 0)),
        |c| {
            cpu_json(
                c.total,
                &c.per_cpu,
                c.kernel,
                c.user,
                (c.periods, c.throttled_periods, c.throttled_time),
            )
        },
    );
    let memory = match &s.memory {
        Some(m) => memory_json(
            m.stat.get("cache").copied().unwrap_or(0),
            [&m.usage, &m.swap, &m.kernel, &m.kernel_tcp],
            &m.stat,
        ),
        None => memory_json(0, [&MemoryEntry::default(); 4], &Default::default()),
    };
    let pids = s
        .pids
        .as_ref()
        .map_or_else(|| pids_json(0, 0), |p| pids_json(p.current, p.limit));
    let blkio = match &s.blkio {
        Some(b) => {
            let mut out = Map::new();
            for (key, entries) in [
                ("ioServiceBytesRecursive", &b.io_service_bytes_recursive),
                ("ioServicedRecursive", &b.io_serviced_recursive),
                ("ioQueueRecursive", &b.io_queued_recursive),
                ("ioServiceTimeRecursive", &b.io_service_time_recursive),
                ("ioWaitTimeRecursive", &b.io_wait_time_recursive),
                ("ioMergedRecursive", &b.io_merged_recursive),
                ("ioTimeRecursive", &b.io_time_recursive),
                ("sectorsRecursive", &b.sectors_recursive),
            ] {
                if !entries.is_empty() {
                    out.insert(key.into(), entries.iter().map(blkio_entry).collect());
                }
            }
            Value::Object(out)
        }
        None => json!({}),
    };
    (cpu, memory, pids, blkio, hugetlb_json(&s.hugetlb))
}

fn v2(s: &V2Stats) -> Sections {
    let cpu_stat = |k: &str| s.cpu.get(k).copied().unwrap_or(0);
    let cpu = cpu_json(
        cpu_stat("usage_usec") * 1000,
        &[],
        cpu_stat("system_usec") * 1000,
        cpu_stat("user_usec") * 1000,
        (
            cpu_stat("nr_periods"),
            cpu_stat("nr_throttled"),
            cpu_stat("throttled_usec") * 1000,
        ),
    );
    let events = |k: &str| s.memory_events.get(k).copied().unwrap_or(0);
    let usage = MemoryEntry {
        limit: s.memory_limit,
        usage: s.memory_usage,
        max: s.memory_max_usage,
        failcnt: events("max"),
    };
    // As runc on cgroup2: swap reads as memory plus swap, the v1 `memsw` meaning.
    let swap = MemoryEntry {
        limit: s.swap_limit.saturating_add(s.memory_limit),
        usage: s.swap_usage.saturating_add(s.memory_usage),
        max: s.swap_max_usage,
        failcnt: 0,
    };
    let memory = memory_json(
        s.memory.get("file").copied().unwrap_or(0),
        [
            &usage,
            &swap,
            &MemoryEntry::default(),
            &MemoryEntry::default(),
        ],
        &s.memory,
    );
    let blkio = if s.io.is_empty() {
        json!({})
    } else {
        let entry = |major, minor, op: &str, value| {
            blkio_entry(&BlkioEntry {
                op: op.into(),
                device: String::new(),
                major,
                minor,
                value,
            })
        };
        // Per device, a Read and a Write entry of the pair `pick` chooses.
        let per_device = |pick: fn(&IoEntry) -> (u64, u64)| -> Vec<Value> {
            s.io.iter()
                .flat_map(|d| {
                    let (read, written) = pick(d);
                    [
                        entry(d.major, d.minor, "Read", read),
                        entry(d.major, d.minor, "Write", written),
                    ]
                })
                .collect()
        };
        let bytes = per_device(|d| (d.rbytes, d.wbytes));
        let ios = per_device(|d| (d.rios, d.wios));
        json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios})
    };
    let limit = if s.pids.limit == u64::MAX {
        0
    } else {
        s.pids.limit
    };
    (
        cpu,
        memory,
        pids_json(s.pids.current, limit),
        blkio,
        hugetlb_json(&s.hugetlb),
    )
}

/// Inserts `value` under `key` unless it is 0 (Go's `omitempty` on a number).
fn put_nonzero(map: &mut Map<String, Value>, key: &str, value: u64) {
    if value != 0 {
        map.insert(key.into(), json!(value));
    }
}

fn cpu_json(total: u64, percpu: &[u64], kernel: u64, user: u64, thr: (u64, u64, u64)) -> Value {
    let mut usage = Map::new();
    put_nonzero(&mut usage, "total", total);
    if !percpu.is_empty() {
        usage.insert("percpu".into(), json!(percpu));
    }
    usage.insert("kernel".into(), json!(kernel));
    usage.insert("user".into(), json!(user));
    let mut throttling = Map::new();
    put_nonzero(&mut throttling, "periods", thr.0);
    put_nonzero(&mut throttling, "throttledPeriods", thr.1);
    put_nonzero(&mut throttling, "throttledTime", thr.2);
    json!({"usage": usage, "throttling": throttling})
}

fn memory_entry(e: &MemoryEntry) -> Value {
    let mut m = Map::new();
    m.insert("limit".into(), json!(e.limit));
    put_nonzero(&mut m, "usage", e.usage);
    put_nonzero(&mut m, "max", e.max);
    m.insert("failcnt".into(), json!(e.failcnt));
    Value::Object(m)
}

/// `entries`: usage, swap, kernel, kernelTCP.
fn memory_json(
    cache: u64,
    entries: [&MemoryEntry; 4],
    raw: &std::collections::BTreeMap<String, u64>,
) -> Value {
    let mut m = Map::new();
    put_nonzero(&mut m, "cache", cache);
    for (key, entry) in ["usage", "swap", "kernel", "kernelTCP"]
        .into_iter()
        .zip(entries)
    {
        m.insert(key.into(), memory_entry(entry));
    }
    if !raw.is_empty() {
        m.insert("raw".into(), json!(raw));
    }
    Value::Object(m)
}

fn pids_json(current: u64, limit: u64) -> Value {
    let mut m = Map::new();
    put_nonzero(&mut m, "current", current);
    put_nonzero(&mut m, "limit", limit);
    Value::Object(m)
}

fn blkio_entry(e: &BlkioEntry) -> Value {
    let mut m = Map::new();
    put_nonzero(&mut m, "major", e.major);
    put_nonzero(&mut m, "minor", e.minor);
    if !e.op.is_empty() {
        m.insert("op".into(), json!(e.op));
    }
    put_nonzero(&mut m, "value", e.value);
    Value::Object(m)
}

fn hugetlb_json(pages: &[Hugetlb]) -> Value {
    let mut out = Map::new();
    for page in pages {
        let mut m = Map::new();
        put_nonzero(&mut m, "usage", page.usage);
        put_nonzero(&mut m, "max", page.max);
        m.insert("failcnt".into(), json!(page.failcnt));
        out.insert(page.pagesize.clone(), Value::Object(m));
    }
    Value::Object(out)
}

/// A Go duration as runc's `--interval` takes it: `5s`, `250ms`, `1m30s`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || format!("invalid interval {text:?}: use e.g. 5s, 250ms, 1m");
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    if total <= 0.0 {
        return Err(format!("invalid interval {text:?}: must be above zero"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_core::cgroups::stats::{Pids, V1Cpu, V1Memory};

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "s", "5x", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v1_stats_take_runcs_field_names_and_omissions() {
        let mut stat = std::collections::BTreeMap::new();
        stat.insert("cache".to_string(), 4096);
        let stats = Stats::V1(Box::new(V1Stats {
            memory: Some(V1Memory {
                stat,
                usage: MemoryEntry {
                    limit: 1 << 30,
                    usage: 8192,
                    max: 9000,
                    failcnt: 0,
                },
                ..Default::default()
            }),
            cpu: Some(V1Cpu {
                total: 100,
                per_cpu: vec![60, 40],
                user: 70,
                kernel: 30,
                ..Default::default()
            }),
            pids: Some(Pids {
                current: 1,
                limit: 0,
            }),
            ..Default::default()
        }));
        let doc = runc_stats(&stats);
        assert_eq!(doc["memory"]["cache"], 4096);
        assert_eq!(
            doc["memory"]["usage"],
            json!({"limit": 1u64 << 30, "usage": 8192, "max": 9000, "failcnt": 0})
        );
        // omitempty: zero usage and max are left out, limit and failcnt never.
        assert_eq!(doc["memory"]["swap"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(doc["memory"]["raw"]["cache"], 4096);
        assert_eq!(
            doc["cpu"]["usage"],
            json!({"total": 100, "percpu": [60, 40], "kernel": 30, "user": 70})
        );
        assert_eq!(doc["cpu"]["throttling"], json!({}));
        assert_eq!(doc["pids"], json!({"current": 1}));
        assert_eq!(doc["blkio"], json!({}));
        assert_eq!(doc["hugetlb"], json!({}));
        assert_eq!(doc["network_interfaces"], Value::Null);
    }
}
