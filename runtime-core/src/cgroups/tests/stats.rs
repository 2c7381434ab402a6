//! Statistics parsed from fixture cgroup files, as the kernel writes them.

use std::fs;
use std::path::Path;

use crate::cgroups::stats::*;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

const PARTITIONS: &str = "\
major minor  #blocks  name

 254        0   20971520 vda
 254        1   20970479 vda1
";

#[test]
fn v1_memory_reads_memory_stat_and_each_group_of_limit_files() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            (
                "memory.stat",
                "cache 8192\nrss 4096\npgpgin 12\nhierarchical_memory_limit 33554432\n\
                 hierarchical_memsw_limit 9223372036854771712\ntotal_rss 4096\n",
            ),
            ("memory.usage_in_bytes", "1228800\n"),
            ("memory.max_usage_in_bytes", "2457600\n"),
            ("memory.limit_in_bytes", "33554432\n"),
            ("memory.failcnt", "3\n"),
            ("memory.memsw.usage_in_bytes", "1228800\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.kmem.usage_in_bytes", "40960\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
        ],
    );
    let m = v1_memory(tmp.path()).unwrap();
    assert_eq!(m.stat["cache"], 8192);
    assert_eq!(m.stat["hierarchical_memory_limit"], 33554432);
    assert_eq!(
        m.usage,
        MemoryEntry {
            limit: 33554432,
            usage: 1228800,
            max: 2457600,
            failcnt: 3
        }
    );
    assert_eq!(m.swap.limit, 9223372036854771712);
    assert_eq!(m.kernel.usage, 40960);
    // No kmem.tcp files on this "kernel": zeros, not an error.
    assert_eq!(m.kernel_tcp, MemoryEntry::default());
    assert_eq!(m.oom_control["oom_kill"], 1);
}

#[test]
fn v1_cpu_converts_cpuacct_ticks_to_nanoseconds_and_reads_throttling() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("cpuacct.usage", "5000000000\n"),
            ("cpuacct.usage_percpu", "3000000000 2000000000 \n"),
            ("cpuacct.stat", "user 300\nsystem 150\n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n",
            ),
        ],
    );
    let c = v1_cpu(Some(tmp.path()), Some(tmp.path())).unwrap();
    assert_eq!(
        c,
        V1Cpu {
            total: 5_000_000_000,
            user: 3_000_000_000,
            kernel: 1_500_000_000,
            per_cpu: vec![3_000_000_000, 2_000_000_000],
            periods: 10,
            throttled_periods: 4,
            throttled_time: 123456,
        }
    );
}

#[test]
fn pids_max_reads_as_zero_on_v1_and_u64_max_on_v2() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("pids.current", "3\n"), ("pids.max", "max\n")],
    );
    assert_eq!(
        pids(tmp.path(), 0).unwrap(),
        Pids {
            current: 3,
            limit: 0
        }
    );
    assert_eq!(pids(tmp.path(), u64::MAX).unwrap().limit, u64::MAX);
    write(tmp.path(), &[("pids.max", "64\n")]);
    assert_eq!(pids(tmp.path(), 0).unwrap().limit, 64);
}

#[test]
fn v1_blkio_uses_throttle_files_when_the_cfq_files_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("blkio.io_serviced_recursive", "Total 0\n"),
            ("blkio.io_service_bytes_recursive", "Total 0\n"),
            (
                "blkio.throttle.io_service_bytes",
                "254:0 Read 4096\n254:0 Write 8192\n254:0 Total 12288\nTotal 12288\n",
            ),
            (
                "blkio.throttle.io_serviced",
                "254:1 Read 1\n254:1 Write 2\nTotal 3\n",
            ),
        ],
    );
    let b = v1_blkio(tmp.path(), PARTITIONS).unwrap();
    assert_eq!(b.io_service_bytes_recursive.len(), 3);
    assert_eq!(
        b.io_service_bytes_recursive[1],
        BlkioEntry {
            op: "Write".into(),
            device: "/dev/vda".into(),
            major: 254,
            minor: 0,
            value: 8192
        }
    );
    assert_eq!(b.io_serviced_recursive[0].device, "/dev/vda1");
    assert!(b.sectors_recursive.is_empty());
}

#[test]
fn v1_blkio_prefers_the_cfq_recursive_files_when_they_hold_entries() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("blkio.sectors_recursive", "8:0 16\n"),
            ("blkio.io_serviced_recursive", "8:0 Read 2\nTotal 2\n"),
            ("blkio.throttle.io_serviced", "8:0 Read 99\n"),
        ],
    );
    let b = v1_blkio(tmp.path(), "").unwrap();
    assert_eq!(b.sectors_recursive[0].op, "");
    assert_eq!(b.sectors_recursive[0].value, 16);
    assert_eq!(b.io_serviced_recursive[0].value, 2);
    assert_eq!(b.io_serviced_recursive[0].device, "");
}

#[test]
fn malformed_blkio_line_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("blkio.sectors_recursive", "8:0\n")]);
    let err = v1_blkio(tmp.path(), "").unwrap_err().to_string();
    assert!(err.contains("blkio.sectors_recursive"), "{err}");
}

#[test]
fn v1_hugetlb_has_one_entry_per_page_size() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("hugetlb.2MB.usage_in_bytes", "2097152\n"),
            ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
            ("hugetlb.2MB.failcnt", "1\n"),
            ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
            ("hugetlb.1GB.usage_in_bytes", "0\n"),
        ],
    );
    // A sub-cgroup the container named like a kernel file is not a page size.
    std::fs::create_dir(tmp.path().join("hugetlb.4KB.usage_in_bytes")).unwrap();
    let h = v1_hugetlb(tmp.path()).unwrap();
    let sizes: Vec<&str> = h.iter().map(|h| h.pagesize.as_str()).collect();
    assert_eq!(sizes, ["1GB", "2MB"]);
    assert_eq!(
        h[1],
        Hugetlb {
            pagesize: "2MB".into(),
            usage: 2097152,
            max: 4194304,
            failcnt: 1
        }
    );
}

#[test]
fn v1_stats_leave_out_controllers_the_host_does_not_mount() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("pids.current", "1\n"), ("pids.max", "max\n")],
    );
    let dir = tmp.path().to_path_buf();
    let s = v1_stats(|c| (c == "pids").then_some(dir.as_path()), PARTITIONS).unwrap();
    assert_eq!(
        s.pids,
        Some(Pids {
            current: 1,
            limit: 0
        })
    );
    assert!(s.memory.is_none() && s.cpu.is_none() && s.blkio.is_none());
}

#[test]
fn v2_stats_read_every_file_with_max_as_u64_max() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
            (
                "cpu.stat",
                "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 0\n",
            ),
            ("memory.stat", "anon 4096\nfile 8192\npgfault 5\n"),
            ("memory.current", "12288\n"),
            ("memory.max", "33554432\n"),
            ("memory.peak", "20000\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
            (
                "io.stat",
                "254:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.events", "max 3\n"),
            (
                "memory.pressure",
                "some avg10=1.50 avg60=0.25 avg300=0.00 total=4242\n\
                 full avg10=0.75 avg60=0.00 avg300=0.00 total=2121\n",
            ),
        ],
    );
    let s = v2_stats(tmp.path()).unwrap();
    assert_eq!(
        s.pids,
        Pids {
            current: 2,
            limit: u64::MAX
        }
    );
    assert_eq!(s.cpu["usage_usec"], 1000);
    assert_eq!(s.memory["anon"], 4096);
    assert_eq!(
        (s.memory_usage, s.memory_limit, s.memory_max_usage),
        (12288, 33554432, 20000)
    );
    assert_eq!((s.swap_usage, s.swap_limit), (0, u64::MAX));
    assert_eq!(s.swap_max_usage, 0, "no memory.swap.peak on this kernel");
    assert_eq!(s.memory_events["oom_kill"], 1);
    assert_eq!(
        s.io,
        [IoEntry {
            major: 254,
            minor: 0,
            rbytes: 4096,
            wbytes: 512,
            rios: 1,
            wios: 2
        }]
    );
    assert_eq!(
        s.hugetlb,
        [Hugetlb {
            pagesize: "2MB".into(),
            usage: 0,
            max: u64::MAX,
            failcnt: 3
        }]
    );
}

#[test]
fn psi_without_a_full_line_leaves_full_zero() {
    let psi = parse_psi("some avg10=0.10 avg60=0.20 avg300=0.30 total=7\n");
    assert_eq!(psi.some.avg300, 0.3);
    assert_eq!(psi.some.total, 7);
    assert_eq!(psi.full, PsiData::default());
}
