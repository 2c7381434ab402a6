//! Stats: a container's cgroup statistics as containerd's own metrics messages, the `Any`
//! of `StatsResponse.stats` — `io.containerd.cgroups.v1.Metrics` on v1 and hybrid hosts,
//! `io.containerd.cgroups.v2.Metrics` on unified ones, as the stock shim sends them.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};
use runtime_core::cgroups::stats::{
    BlkioEntry, Hugetlb, MemoryEntry, Psi, Stats, V1Blkio, V1Cpu, V1Memory, V1Stats, V2Stats,
};

/// The `Any` containerd decodes by type URL (`typeurl` takes the message's full name).
pub fn to_any(stats: &Stats) -> Result<Any, protobuf::Error> {
    let (type_url, value) = match stats {
        Stats::V1(s) => (
            "io.containerd.cgroups.v1.Metrics",
            v1_metrics(s).write_to_bytes()?,
        ),
        Stats::V2(s) => (
            "io.containerd.cgroups.v2.Metrics",
            v2_metrics(s).write_to_bytes()?,
        ),
    };
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

pub fn v1_metrics(s: &V1Stats) -> v1::Metrics {
    v1::Metrics {
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h: &Hugetlb| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: h.pagesize.clone(),
                ..Default::default()
            })
            .collect(),
        pids: s
            .pids
            .as_ref()
            .map(|p| v1::PidsStat {
                current: p.current,
                limit: p.limit,
                ..Default::default()
            })
            .into(),
        cpu: s.cpu.as_ref().map(v1_cpu).into(),
        memory: s.memory.as_ref().map(v1_memory).into(),
        blkio: s.blkio.as_ref().map(v1_blkio).into(),
        memory_oom_control: s
            .memory
            .as_ref()
            .map(|m| {
                let get = |k: &str| m.oom_control.get(k).copied().unwrap_or(0);
                v1::MemoryOomControl {
                    oom_kill_disable: get("oom_kill_disable"),
                    under_oom: get("under_oom"),
                    oom_kill: get("oom_kill"),
                    ..Default::default()
                }
            })
            .into(),
        ..Default::default()
    }
}

fn v1_cpu(c: &V1Cpu) -> v1::CPUStat {
    v1::CPUStat {
        usage: MessageField::some(v1::CPUUsage {
            total: c.total,
            kernel: c.kernel,
            user: c.user,
            per_cpu: c.per_cpu.clone(),
            ..Default::default()
        }),
        throttling: MessageField::some(v1::Throttle {
            periods: c.periods,
            throttled_periods: c.throttled_periods,
            throttled_time: c.throttled_time,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn memory_entry(e: &MemoryEntry) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    })
}

fn v1_memory(m: &V1Memory) -> v1::MemoryStat {
    let get = |k: &str| m.stat.get(k).copied().unwrap_or(0);
    v1::MemoryStat {
        cache: get("cache"),
        rss: get("rss"),
        rss_huge: get("rss_huge"),
        mapped_file: get("mapped_file"),
        dirty: get("dirty"),
        writeback: get("writeback"),
        pg_pg_in: get("pgpgin"),
        pg_pg_out: get("pgpgout"),
        pg_fault: get("pgfault"),
        pg_maj_fault: get("pgmajfault"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        hierarchical_memory_limit: get("hierarchical_memory_limit"),
        hierarchical_swap_limit: get("hierarchical_memsw_limit"),
        total_cache: get("total_cache"),
        total_rss: get("total_rss"),
        total_rss_huge: get("total_rss_huge"),
        total_mapped_file: get("total_mapped_file"),
        total_dirty: get("total_dirty"),
        total_writeback: get("total_writeback"),
        total_pg_pg_in: get("total_pgpgin"),
        total_pg_pg_out: get("total_pgpgout"),
        total_pg_fault: get("total_pgfault"),
        total_pg_maj_fault: get("total_pgmajfault"),
        total_inactive_anon: get("total_inactive_anon"),
        total_active_anon: get("total_active_anon"),
        total_inactive_file: get("total_inactive_file"),
        total_active_file: get("total_active_file"),
        total_unevictable: get("total_unevictable"),
        usage: memory_entry(&m.usage),
        swap: memory_entry(&m.swap),
        kernel: memory_entry(&m.kernel),
        kernel_tcp: memory_entry(&m.kernel_tcp),
        ..Default::default()
    }
}

fn blkio_entries(list: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    list.iter()
        .map(|e| v1::BlkIOEntry {
            op: e.op.clone(),
            device: e.device.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
            ..Default::default()
        })
        .collect()
}

fn v1_blkio(b: &V1Blkio) -> v1::BlkIOStat {
    v1::BlkIOStat {
        io_service_bytes_recursive: blkio_entries(&b.io_service_bytes_recursive),
        io_serviced_recursive: blkio_entries(&b.io_serviced_recursive),
        io_queued_recursive: blkio_entries(&b.io_queued_recursive),
        io_service_time_recursive: blkio_entries(&b.io_service_time_recursive),
        io_wait_time_recursive: blkio_entries(&b.io_wait_time_recursive),
        io_merged_recursive: blkio_entries(&b.io_merged_recursive),
        io_time_recursive: blkio_entries(&b.io_time_recursive),
        sectors_recursive: blkio_entries(&b.sectors_recursive),
        ..Default::default()
    }
}

fn psi(p: &Option<Psi>) -> MessageField<v2::PSIStats> {
    let data = |d: &runtime_core::cgroups::stats::PsiData| {
        MessageField::some(v2::PSIData {
            avg10: d.avg10,
            avg60: d.avg60,
            avg300: d.avg300,
            total: d.total,
            ..Default::default()
        })
    };
    p.as_ref()
        .map(|p| v2::PSIStats {
            some: data(&p.some),
            full: data(&p.full),
            ..Default::default()
        })
        .into()
}

pub fn v2_metrics(s: &V2Stats) -> v2::Metrics {
    let cpu = |k: &str| s.cpu.get(k).copied().unwrap_or(0);
    let mem = |k: &str| s.memory.get(k).copied().unwrap_or(0);
    let event = |k: &str| s.memory_events.get(k).copied().unwrap_or(0);
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: cpu("usage_usec"),
            user_usec: cpu("user_usec"),
            system_usec: cpu("system_usec"),
            nr_periods: cpu("nr_periods"),
            nr_throttled: cpu("nr_throttled"),
            throttled_usec: cpu("throttled_usec"),
            nr_bursts: cpu("nr_bursts"),
            burst_usec: cpu("burst_usec"),
            psi: psi(&s.cpu_pressure),
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: mem("anon"),
            file: mem("file"),
            kernel_stack: mem("kernel_stack"),
            slab: mem("slab"),
            sock: mem("sock"),
            shmem: mem("shmem"),
            file_mapped: mem("file_mapped"),
            file_dirty: mem("file_dirty"),
            file_writeback: mem("file_writeback"),
            anon_thp: mem("anon_thp"),
            inactive_anon: mem("inactive_anon"),
            active_anon: mem("active_anon"),
            inactive_file: mem("inactive_file"),
            active_file: mem("active_file"),
            unevictable: mem("unevictable"),
            slab_reclaimable: mem("slab_reclaimable"),
            slab_unreclaimable: mem("slab_unreclaimable"),
            pgfault: mem("pgfault"),
            pgmajfault: mem("pgmajfault"),
            workingset_refault: mem("workingset_refault"),
            workingset_activate: mem("workingset_activate"),
            workingset_nodereclaim: mem("workingset_nodereclaim"),
            pgrefill: mem("pgrefill"),
            pgscan: mem("pgscan"),
            pgsteal: mem("pgsteal"),
            pgactivate: mem("pgactivate"),
            pgdeactivate: mem("pgdeactivate"),
            pglazyfree: mem("pglazyfree"),
            pglazyfreed: mem("pglazyfreed"),
            thp_fault_alloc: mem("thp_fault_alloc"),
            thp_collapse_alloc: mem("thp_collapse_alloc"),
            usage: s.memory_usage,
            usage_limit: s.memory_limit,
            swap_usage: s.swap_usage,
            swap_limit: s.swap_limit,
            max_usage: s.memory_max_usage,
            swap_max_usage: s.swap_max_usage,
            psi: psi(&s.memory_pressure),
            ..Default::default()
        }),
        memory_events: if s.memory_events.is_empty() {
            MessageField::none()
        } else {
            MessageField::some(v2::MemoryEvents {
                low: event("low"),
                high: event("high"),
                max: event("max"),
                oom: event("oom"),
                oom_kill: event("oom_kill"),
                oom_group_kill: event("oom_group_kill"),
                ..Default::default()
            })
        },
        io: MessageField::some(v2::IOStat {
            usage: s
                .io
                .iter()
                .map(|e| v2::IOEntry {
                    major: e.major,
                    minor: e.minor,
                    rbytes: e.rbytes,
                    wbytes: e.wbytes,
                    rios: e.rios,
                    wios: e.wios,
                    ..Default::default()
                })
                .collect(),
            psi: psi(&s.io_pressure),
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v2::HugeTlbStat {
                current: h.usage,
                max: h.max,
                pagesize: h.pagesize.clone(),
                failcnt: h.failcnt,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_core::cgroups::stats::{IoEntry, Pids};

    #[test]
    fn v1_stats_become_a_v1_metrics_any_with_memory_cpu_and_pids() {
        let mut memory = V1Memory::default();
        memory.stat.insert("total_rss".into(), 4096);
        memory.stat.insert("pgpgin".into(), 7);
        memory.usage.usage = 1_000_000;
        memory.usage.limit = 33_554_432;
        memory.oom_control.insert("oom_kill".into(), 2);
        let stats = Stats::V1(Box::new(V1Stats {
            memory: Some(memory),
            cpu: Some(V1Cpu {
                total: 123,
                per_cpu: vec![100, 23],
                ..Default::default()
            }),
            pids: Some(Pids {
                current: 3,
                limit: 10,
            }),
            ..Default::default()
        }));
        let any = to_any(&stats).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 1_000_000);
        assert_eq!(m.memory.usage.limit, 33_554_432);
        assert_eq!(m.memory.total_rss, 4096);
        assert_eq!(m.memory.pg_pg_in, 7);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.cpu.usage.total, 123);
        assert_eq!(m.cpu.usage.per_cpu, [100, 23]);
        assert_eq!((m.pids.current, m.pids.limit), (3, 10));
        assert!(m.blkio.is_none(), "no blkio controller, no blkio message");
    }

    #[test]
    fn v2_stats_become_a_v2_metrics_any() {
        let mut s = V2Stats {
            pids: Pids {
                current: 2,
                limit: u64::MAX,
            },
            memory_usage: 5000,
            memory_limit: 1 << 25,
            io: vec![IoEntry {
                major: 8,
                rbytes: 512,
                ..Default::default()
            }],
            ..Default::default()
        };
        s.cpu.insert("usage_usec".into(), 77);
        s.memory.insert("anon".into(), 4000);
        s.memory_events.insert("oom_kill".into(), 1);
        s.io_pressure = Some(Psi {
            some: runtime_core::cgroups::stats::PsiData {
                avg10: 2.5,
                total: 9,
                ..Default::default()
            },
            ..Default::default()
        });
        let any = to_any(&Stats::V2(Box::new(s))).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!((m.pids.current, m.pids.limit), (2, u64::MAX));
        assert_eq!(m.cpu.usage_usec, 77);
        assert_eq!((m.memory.usage, m.memory.usage_limit), (5000, 1 << 25));
        assert_eq!(m.memory.anon, 4000);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.io.usage[0].rbytes, 512);
        assert_eq!(m.io.psi.some.avg10, 2.5);
        assert_eq!(m.io.psi.some.total, 9);
        assert!(m.cpu.psi.is_none(), "no cpu.pressure, no PSI message");
    }
}
