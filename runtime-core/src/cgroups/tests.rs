//! Unit tests on fixture directories (no root needed); the tests on the real host's cgroups
//! are in `host`.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use tempfile::TempDir;

use super::v1::{device_rule, memory_limit_writes};
use super::v2::{blkio_weight_to_io_weight, cpu_max, swap_max};
use super::*;

mod freeze;
mod host;
mod stats;
mod update;

/// This host's mountinfo lines for cgroups, plus unrelated mounts.
const HYBRID_MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd-style legacy host: cpu and cpuacct co-mounted, with a symlinked-name mount.
const LEGACY_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset,clone_children
";

const UNIFIED_MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("fixture resources parse")
}

#[test]
fn hybrid_mountinfo_gives_every_v1_hierarchy_and_the_unified_mount() {
    let h = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(h.layout, Layout::Hybrid);
    let names: Vec<_> = h.v1.iter().map(|h| h.controllers.join(",")).collect();
    assert_eq!(
        names,
        [
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "blkio",
            "pids",
            "name=systemd"
        ]
    );
    assert_eq!(h.v1[3].mount_point, Path::new("/sys/fs/cgroup/memory"));
    assert_eq!(h.v1[3].root, Path::new("/"));
    let unified = h.unified.unwrap();
    assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
    assert!(unified.controllers.is_empty());
}

#[test]
fn legacy_mountinfo_keeps_co_mounted_controllers_together_and_drops_mount_flags() {
    let h = parse_mountinfo(LEGACY_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(h.layout, Layout::Legacy);
    assert!(h.unified.is_none());
    assert_eq!(h.v1[0].controllers, strings(&["name=systemd"]));
    assert_eq!(h.v1[1].controllers, strings(&["cpu", "cpuacct"]));
    assert_eq!(h.v1[1].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(h.v1[3].controllers, strings(&["net_cls", "net_prio"]));
    assert_eq!(h.v1[4].controllers, strings(&["cpuset"]));
}

#[test]
fn unified_mountinfo_is_detected_as_unified() {
    let h = parse_mountinfo(UNIFIED_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(h.layout, Layout::Unified);
    assert!(h.v1.is_empty());
    assert_eq!(h.unified.unwrap().mount_point, Path::new("/sys/fs/cgroup"));
}

#[test]
fn mounts_outside_the_root_and_second_mounts_of_a_hierarchy_are_ignored() {
    let text = format!(
        "{HYBRID_MOUNTINFO}\
         90 22 0:32 /x /var/lib/other/memory rw - cgroup cgroup rw,memory\n\
         91 31 0:32 /x /sys/fs/cgroup/memory2 rw - cgroup cgroup rw,memory\n"
    );
    let h = parse_mountinfo(&text, Path::new("/sys/fs/cgroup")).unwrap();
    let memory: Vec<_> = h.v1.iter().filter(|h| h.has("memory")).collect();
    assert_eq!(memory.len(), 1);
    assert_eq!(memory[0].mount_point, Path::new("/sys/fs/cgroup/memory"));
}

#[test]
fn escaped_spaces_in_mount_points_are_decoded() {
    let text = "1 0 0:1 / /tmp/a\\040b/memory rw - cgroup cgroup rw,memory\n";
    let h = parse_mountinfo(text, Path::new("/tmp/a b")).unwrap();
    assert_eq!(h.v1[0].mount_point, Path::new("/tmp/a b/memory"));
}

#[test]
fn no_cgroup_mount_below_the_root_is_an_error_naming_the_root() {
    let err = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("/elsewhere")).unwrap_err();
    assert!(err.to_string().contains("/elsewhere"), "{err}");
}

#[test]
fn proc_cgroup_text_gives_v1_and_unified_paths() {
    let own = ProcessCgroups::parse(
        "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/user\n0::/init.scope\n",
    )
    .unwrap();
    assert_eq!(own.unified.as_deref(), Some(Path::new("/init.scope")));
    assert_eq!(
        own.v1_path(&strings(&["memory"])),
        Some(Path::new("/process_api/abc"))
    );
    assert_eq!(
        own.v1_path(&strings(&["cpuacct"])),
        Some(Path::new("/user"))
    );
    assert_eq!(
        own.v1_path(&strings(&["name=systemd"])),
        Some(Path::new("/"))
    );
}

#[test]
fn absent_cgroups_path_means_slash_id() {
    assert_eq!(
        resolve_cgroups_path("c1", None).unwrap(),
        CgroupPath::Absolute(PathBuf::from("c1"))
    );
}

#[test]
fn absolute_cgroups_path_is_kept_and_cleaned() {
    assert_eq!(
        resolve_cgroups_path("c1", Some(Path::new("/mini-test/./x/../c1"))).unwrap(),
        CgroupPath::Absolute(PathBuf::from("mini-test/c1"))
    );
}

#[test]
fn relative_cgroups_path_stays_relative() {
    assert_eq!(
        resolve_cgroups_path("c1", Some(Path::new("pod/c1"))).unwrap(),
        CgroupPath::Relative(PathBuf::from("pod/c1"))
    );
}

#[test]
fn systemd_form_without_the_systemd_driver_is_a_literal_relative_path() {
    // As runc's cgroupfs driver takes it: one component that contains colons.
    let path = "kubepods-besteffort-pod1.slice:cri-containerd:c1";
    assert_eq!(
        resolve_cgroups_path("c1", Some(Path::new(path))).unwrap(),
        CgroupPath::Relative(PathBuf::from(path))
    );
}

#[test]
fn driver_is_systemd_when_asked_or_for_the_slice_form_where_systemd_runs() {
    let slice = Some(Path::new("system.slice:mini:c1"));
    let plain = Some(Path::new("/mini/c1"));
    assert_eq!(
        choose_driver(slice, false, false).unwrap(),
        Driver::Cgroupfs
    );
    assert_eq!(choose_driver(slice, false, true).unwrap(), Driver::Systemd);
    assert_eq!(choose_driver(plain, false, true).unwrap(), Driver::Cgroupfs);
    assert_eq!(choose_driver(None, true, true).unwrap(), Driver::Systemd);
    assert_eq!(choose_driver(plain, true, true).unwrap(), Driver::Systemd);
    for path in [slice, plain, None] {
        let msg = choose_driver(path, true, false).unwrap_err().to_string();
        assert!(msg.contains("SystemdCgroup"), "{msg}");
        assert!(msg.contains("systemd is not running"), "{msg}");
    }
}

#[test]
fn systemd_scope_dir_is_in_the_expanded_slice_on_unified_hosts_only() {
    let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let h = parse_mountinfo(unified, Path::new("/sys/fs/cgroup")).unwrap();
    let path = Path::new("kubepods-besteffort-pod1.slice:cri-containerd:c1");
    let m = CgroupManager::systemd_with_hierarchies(&h, "c1", Some(path)).unwrap();
    assert_eq!(
        m.unified_path(),
        Some(Path::new(
            "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c1.scope"
        ))
    );
    assert_eq!(m.systemd_unit().unwrap().name, "cri-containerd-c1.scope");
    let hybrid = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
    let h = parse_mountinfo(hybrid, Path::new("/sys/fs/cgroup")).unwrap();
    let msg = CgroupManager::systemd_with_hierarchies(&h, "c1", Some(path))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cgroup v2 (unified) hosts only"), "{msg}");
}

#[test]
fn dot_dot_that_escapes_is_rejected() {
    for path in ["/../etc", "/a/../../b", "../sibling", "a/../../b"] {
        let err = resolve_cgroups_path("c1", Some(Path::new(path))).unwrap_err();
        assert!(err.to_string().contains("\"..\""), "{path}: {err}");
    }
}

#[test]
fn path_naming_the_root_or_own_cgroup_is_rejected() {
    for path in ["/", ".", "a/.."] {
        assert!(
            resolve_cgroups_path("c1", Some(Path::new(path))).is_err(),
            "{path}"
        );
    }
    assert!(resolve_cgroups_path("..", None).is_err());
    assert!(resolve_cgroups_path("", None).is_err());
}

#[test]
fn relative_path_is_placed_below_the_callers_cgroup_in_each_hierarchy() {
    let h = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    let own = ProcessCgroups::parse(
        "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/svc/x\n\
         3:cpuset:/\n2:cpuacct:/\n1:cpu:/a\n0::/u\n",
    )
    .unwrap();
    let m = CgroupManager::with_hierarchies(&h, &own, "c1", Some(Path::new("pod/c1"))).unwrap();
    assert_eq!(
        m.v1_path("memory"),
        Some(Path::new("/sys/fs/cgroup/memory/svc/x/pod/c1"))
    );
    assert_eq!(
        m.v1_path("cpu"),
        Some(Path::new("/sys/fs/cgroup/cpu/a/pod/c1"))
    );
    assert_eq!(
        m.v1_path("pids"),
        Some(Path::new("/sys/fs/cgroup/pids/pod/c1"))
    );
    assert_eq!(
        m.unified_path(),
        Some(Path::new("/sys/fs/cgroup/unified/u/pod/c1"))
    );
}

#[test]
fn absolute_path_is_placed_below_each_hierarchy_root() {
    let h = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    let own = ProcessCgroups::parse("4:memory:/svc/x\n0::/u\n").unwrap();
    let m = CgroupManager::with_hierarchies(&h, &own, "c1", Some(Path::new("/mini/c1"))).unwrap();
    assert_eq!(m.layout(), Layout::Hybrid);
    assert_eq!(
        m.v1_path("memory"),
        Some(Path::new("/sys/fs/cgroup/memory/mini/c1"))
    );
    assert_eq!(
        m.v1_path("name=systemd"),
        Some(Path::new("/sys/fs/cgroup/systemd/mini/c1"))
    );
    assert_eq!(m.dirs().count(), 10);
}

// ---- v1 on fixture directories ----

/// The knob files a v1 cgroup directory of each controller has (a subset of the kernel's).
fn v1_knobs(controller: &str) -> &'static [&'static str] {
    match controller {
        "memory" => &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ],
        "cpu" => &[
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "cpu.cfs_burst_us",
            "cpu.rt_runtime_us",
            "cpu.rt_period_us",
            "cpu.idle",
        ],
        "cpuset" => &["cpuset.cpus", "cpuset.mems"],
        "pids" => &["pids.max"],
        "blkio" => &[
            "blkio.weight",
            "blkio.leaf_weight",
            "blkio.weight_device",
            "blkio.leaf_weight_device",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ],
        "hugetlb" => &["hugetlb.2MB.limit_in_bytes", "hugetlb.1GB.limit_in_bytes"],
        "devices" => &["devices.allow", "devices.deny"],
        "net_cls" => &["net_cls.classid"],
        "net_prio" => &["net_prio.ifpriomap"],
        "freezer" => &["freezer.state"],
        _ => &[],
    }
}

const V2_KNOBS: &[&str] = &[
    "cgroup.controllers",
    "cgroup.subtree_control",
    "memory.max",
    "memory.swap.max",
    "memory.low",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
    "memory.high",
];

/// A fake cgroup tree: one directory per hierarchy under a temporary root, described by
/// mountinfo text naming those directories, as the kernel would.
struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    hierarchies: Hierarchies,
}

impl Fixture {
    fn new(mounts: &[(&str, &str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let mut text = String::new();
        for (i, (dir, fstype, options)) in mounts.iter().enumerate() {
            let mount = root.join(dir);
            fs::create_dir_all(&mount).unwrap();
            text.push_str(&format!(
                "{} 1 0:{i} / {} rw - {fstype} {fstype} {options}\n",
                100 + i,
                mount.display()
            ));
        }
        let hierarchies = parse_mountinfo(&text, &root).unwrap();
        for d in hierarchies.v1.iter() {
            if d.has("cpuset") {
                fs::write(d.mount_point.join("cpuset.cpus"), "0-3\n").unwrap();
                fs::write(d.mount_point.join("cpuset.mems"), "0\n").unwrap();
            }
        }
        Self {
            _tmp: tmp,
            root,
            hierarchies,
        }
    }

    fn v1() -> Self {
        Self::new(&[
            ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            ("cpuset", "cgroup", "rw,cpuset"),
            ("memory", "cgroup", "rw,memory"),
            ("pids", "cgroup", "rw,pids"),
            ("blkio", "cgroup", "rw,blkio"),
            ("hugetlb", "cgroup", "rw,hugetlb"),
            ("devices", "cgroup", "rw,devices"),
            ("net_cls,net_prio", "cgroup", "rw,net_cls,net_prio"),
            ("freezer", "cgroup", "rw,freezer"),
            ("systemd", "cgroup", "rw,name=systemd"),
            ("unified", "cgroup2", "rw"),
        ])
    }

    fn v2() -> Self {
        let f = Self::new(&[("", "cgroup2", "rw,nsdelegate")]);
        fs::write(
            f.root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(f.root.join("cgroup.subtree_control"), "").unwrap();
        f
    }

    /// A manager for `path`, with every level of its directories made and given the knob
    /// files the kernel would show there (the manager never creates files itself).
    fn manager(&self, path: &str) -> CgroupManager {
        let m = CgroupManager::with_hierarchies(
            &self.hierarchies,
            &ProcessCgroups::default(),
            "c1",
            Some(Path::new(path)),
        )
        .unwrap();
        for d in m.dirs() {
            for level in levels_below(&d.mount_point, &d.dir) {
                fs::create_dir_all(&level).unwrap();
                let mut knobs: Vec<&str> = vec!["cgroup.procs"];
                if d.controllers.is_empty() && self.hierarchies.layout == Layout::Unified {
                    knobs.extend(V2_KNOBS);
                }
                for c in &d.controllers {
                    knobs.extend(v1_knobs(c));
                }
                for knob in knobs {
                    fs::write(level.join(knob), "").unwrap();
                }
            }
            if self.hierarchies.layout == Layout::Unified {
                for level in levels_below(&d.mount_point, &d.dir) {
                    fs::write(level.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
                }
            }
        }
        m
    }
}

fn read(dir: Option<&Path>, file: &str) -> String {
    let dir = dir.expect("the controller's directory");
    fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn v1_create_copies_cpuset_cpus_and_mems_into_each_new_level() {
    let f = Fixture::v1();
    let m = f.manager("/mini/c1");
    m.create().unwrap();
    let parent = f.root.join("cpuset/mini");
    assert_eq!(
        fs::read_to_string(parent.join("cpuset.cpus")).unwrap(),
        "0-3"
    );
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.cpus"), "0-3");
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.mems"), "0");
}

#[test]
fn v1_memory_limits_map_to_memory_files() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432,
            "kernel": 1048576, "kernelTCP": 524288, "swappiness": 10,
            "disableOOMKiller": true}}"#,
    ))
    .unwrap();
    let dir = m.v1_path("memory");
    assert_eq!(read(dir, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(dir, "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(read(dir, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(dir, "memory.kmem.limit_in_bytes"), "1048576");
    assert_eq!(read(dir, "memory.kmem.tcp.limit_in_bytes"), "524288");
    assert_eq!(read(dir, "memory.swappiness"), "10");
    assert_eq!(read(dir, "memory.oom_control"), "1");
}

#[test]
fn v1_kernel_memory_without_its_file_is_skipped_not_failed() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let dir = m.v1_path("memory").unwrap();
    fs::remove_file(dir.join("memory.kmem.limit_in_bytes")).unwrap();
    m.apply(&resources(r#"{"memory": {"kernel": 1048576}}"#))
        .unwrap();
    assert!(!dir.join("memory.kmem.limit_in_bytes").exists());
}

#[test]
fn v1_swappiness_above_100_is_rejected_naming_the_field() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let err = m
        .apply(&resources(r#"{"memory": {"swappiness": 101}}"#))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("linux.resources.memory.swappiness"),
        "{err}"
    );
}

#[test]
fn memory_and_memsw_are_written_in_an_order_the_kernel_accepts() {
    const MEM: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let files = |w: Vec<(&'static str, String)>| w.into_iter().map(|(f, _)| f).collect::<Vec<_>>();
    // Raising (current 64 MiB, new swap above it): memsw first.
    assert_eq!(
        files(memory_limit_writes(
            Some(64 << 20),
            Some(128 << 20),
            Some(256 << 20)
        )),
        [MEMSW, MEM]
    );
    // Lowering (current 1 GiB): memory first.
    assert_eq!(
        files(memory_limit_writes(
            Some(1 << 30),
            Some(64 << 20),
            Some(128 << 20)
        )),
        [MEM, MEMSW]
    );
    // Unlimited memory without swap lifts swap too, memsw first.
    assert_eq!(
        memory_limit_writes(Some(64 << 20), Some(-1), None),
        [(MEMSW, "-1".to_string()), (MEM, "-1".to_string())]
    );
    // Unlimited memory with a finite memory+swap limit: in either order v1 refuses an
    // unlimited memory limit above the memsw one; memory gets the memsw limit, memsw first
    // when it raises the limit in place, memory first when it lowers it.
    assert_eq!(
        memory_limit_writes(Some(64 << 20), Some(-1), Some(256 << 20)),
        [
            (MEMSW, (256 << 20).to_string()),
            (MEM, (256 << 20).to_string())
        ]
    );
    assert_eq!(
        files(memory_limit_writes(
            Some(1 << 30),
            Some(-1),
            Some(256 << 20)
        )),
        [MEM, MEMSW]
    );
    assert_eq!(
        memory_limit_writes(None, Some(64 << 20), None),
        [(MEM, (64 << 20).to_string())]
    );
    assert!(memory_limit_writes(None, Some(0), Some(0)).is_empty());
}

#[test]
fn v1_cpu_values_map_to_cpu_and_cpuset_files() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.create().unwrap();
    m.apply(&resources(
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
            "realtimeRuntime": 950, "realtimePeriod": 1000, "idle": 1,
            "cpus": "1", "mems": "0"}}"#,
    ))
    .unwrap();
    let cpu = m.v1_path("cpu");
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(cpu, "cpu.cfs_burst_us"), "1000");
    assert_eq!(read(cpu, "cpu.rt_runtime_us"), "950");
    assert_eq!(read(cpu, "cpu.rt_period_us"), "1000");
    assert_eq!(read(cpu, "cpu.idle"), "1");
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.cpus"), "1");
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.mems"), "0");
    // cpu and cpuacct share one hierarchy here.
    assert_eq!(m.v1_path("cpu"), m.v1_path("cpuacct"));
}

#[test]
fn v1_pids_limit_zero_or_below_means_max() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(r#"{"pids": {"limit": 32}}"#)).unwrap();
    assert_eq!(read(m.v1_path("pids"), "pids.max"), "32");
    // 0 means "not set": the limit stays (an Update with 0 must not lift it).
    m.apply(&resources(r#"{"pids": {"limit": 0}}"#)).unwrap();
    assert_eq!(read(m.v1_path("pids"), "pids.max"), "32");
    m.apply(&resources(r#"{"pids": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(m.v1_path("pids"), "pids.max"), "max");
}

#[test]
fn v1_blkio_values_map_to_blkio_files() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"blockIO": {"weight": 300, "leafWeight": 200,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 400}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2097152}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]}}"#,
    ))
    .unwrap();
    let dir = m.v1_path("blkio");
    assert_eq!(read(dir, "blkio.weight"), "300");
    assert_eq!(read(dir, "blkio.leaf_weight"), "200");
    assert_eq!(read(dir, "blkio.weight_device"), "8:0 500");
    assert_eq!(read(dir, "blkio.leaf_weight_device"), "8:0 400");
    assert_eq!(read(dir, "blkio.throttle.read_bps_device"), "8:0 1048576");
    assert_eq!(read(dir, "blkio.throttle.write_bps_device"), "8:16 2097152");
    assert_eq!(read(dir, "blkio.throttle.read_iops_device"), "8:0 100");
    assert_eq!(read(dir, "blkio.throttle.write_iops_device"), "8:0 200");
}

#[test]
fn v1_blkio_weight_falls_back_to_bfq_weight() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let dir = m.v1_path("blkio").unwrap();
    fs::remove_file(dir.join("blkio.weight")).unwrap();
    fs::write(dir.join("blkio.bfq.weight"), "").unwrap();
    m.apply(&resources(r#"{"blockIO": {"weight": 300}}"#))
        .unwrap();
    assert_eq!(read(Some(dir), "blkio.bfq.weight"), "300");
}

#[test]
fn v1_hugepage_limits_map_to_size_named_files() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304},
                               {"pageSize": "1GB", "limit": 0}]}"#,
    ))
    .unwrap();
    assert_eq!(
        read(m.v1_path("hugetlb"), "hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
    assert_eq!(
        read(m.v1_path("hugetlb"), "hugetlb.1GB.limit_in_bytes"),
        "0"
    );
    let err = m
        .apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}"#,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("pageSize"), "{err}");
}

#[test]
fn v1_device_rules_go_to_allow_and_deny_in_spec_form() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 136, "access": "rw"},
                        {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "m"}]}"#,
    ))
    .unwrap();
    let dir = m.v1_path("devices");
    // Files hold the last rule written to them.
    assert_eq!(read(dir, "devices.allow"), "c 136:* rw");
    assert_eq!(read(dir, "devices.deny"), "b 8:0 m");
}

#[test]
fn device_rule_lines_use_star_for_missing_numbers_and_check_access() {
    let rule = |json: &str| serde_json::from_str::<LinuxDeviceCgroup>(json).unwrap();
    assert_eq!(
        device_rule(0, &rule(r#"{"allow": false, "access": "rwm"}"#)).unwrap(),
        "a *:* rwm"
    );
    assert_eq!(
        device_rule(
            1,
            &rule(r#"{"allow": true, "type": "b", "minor": 1, "access": "r"}"#)
        )
        .unwrap(),
        "b *:1 r"
    );
    let err =
        device_rule(2, &rule(r#"{"allow": true, "type": "c", "access": "rwx"}"#)).unwrap_err();
    assert!(
        err.to_string()
            .contains("linux.resources.devices[2].access"),
        "{err}"
    );
    let err = device_rule(3, &rule(r#"{"allow": true, "type": "p", "access": "r"}"#)).unwrap_err();
    assert!(
        err.to_string().contains("linux.resources.devices[3].type"),
        "{err}"
    );
}

#[test]
fn v1_network_class_id_and_priorities_map_to_net_files() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}}"#,
    ))
    .unwrap();
    assert_eq!(read(m.v1_path("net_cls"), "net_cls.classid"), "1048577");
    assert_eq!(read(m.v1_path("net_prio"), "net_prio.ifpriomap"), "eth0 5");
}

#[test]
fn v1_resource_of_an_unmounted_controller_fails_naming_the_field() {
    let f = Fixture::new(&[("memory", "cgroup", "rw,memory")]);
    let m = f.manager("/c1");
    let err = m
        .apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
        ))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("linux.resources.hugepageLimits"), "{msg}");
    assert!(msg.contains("hugetlb"), "{msg}");
}

#[test]
fn v1_unified_resources_are_rejected_on_a_hybrid_host() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let err = m
        .apply(&resources(r#"{"unified": {"memory.high": "1000"}}"#))
        .unwrap_err();
    assert!(err.to_string().contains("linux.resources.unified"), "{err}");
}

#[test]
fn failed_write_names_the_directory_file_and_value() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let dir = m.v1_path("pids").unwrap().to_path_buf();
    fs::remove_file(dir.join("pids.max")).unwrap();
    let err = m
        .apply(&resources(r#"{"pids": {"limit": 7}}"#))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cgroup {}: write pids.max=7: No such file or directory",
            dir.display()
        )
    );
}

#[test]
fn add_process_writes_the_pid_to_every_hierarchy() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.add_process(4242).unwrap();
    for d in m.dirs() {
        assert_eq!(
            fs::read_to_string(d.dir.join("cgroup.procs")).unwrap(),
            "4242"
        );
    }
}

#[test]
fn pids_are_read_from_every_hierarchy_and_their_sub_cgroups() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let dir = m.v1_path("pids").unwrap();
    fs::write(dir.join("cgroup.procs"), "10\n11\n").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/cgroup.procs"), "12\n").unwrap();
    // A process only in another hierarchy counts too; one in several counts once.
    let memory = m.v1_path("memory").unwrap();
    fs::write(memory.join("cgroup.procs"), "11\n13\n").unwrap();
    assert_eq!(m.pids().unwrap(), [10, 11, 12, 13]);
    let (first, pids) = m.occupied().unwrap().unwrap();
    assert!(first.starts_with(f.root.as_path()), "{}", first.display());
    assert!(!pids.is_empty());
}

// ---- v2 on fixture directories ----

#[test]
fn v2_create_enables_the_available_controllers_in_each_parent() {
    let f = Fixture::v2();
    let m = f.manager("/mini/c1");
    m.create().unwrap();
    // Fixture files hold only the last write; the controllers are enabled one by one.
    assert_eq!(
        fs::read_to_string(f.root.join("cgroup.subtree_control")).unwrap(),
        "+pids"
    );
    assert_eq!(
        fs::read_to_string(f.root.join("mini/cgroup.subtree_control")).unwrap(),
        "+pids"
    );
    // The leaf's own subtree is left alone: processes live there.
    assert_eq!(read(m.unified_path(), "cgroup.subtree_control"), "");
}

#[test]
fn v2_memory_maps_to_memory_max_swap_max_and_low() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"memory": {"limit": 67108864, "swap": 100663296, "reservation": 33554432}}"#,
    ))
    .unwrap();
    let dir = m.unified_path();
    assert_eq!(read(dir, "memory.max"), "67108864");
    assert_eq!(read(dir, "memory.swap.max"), "33554432");
    assert_eq!(read(dir, "memory.low"), "33554432");
    m.apply(&resources(r#"{"memory": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(dir, "memory.max"), "max");
    assert_eq!(read(dir, "memory.swap.max"), "max");
}

#[test]
fn v2_swap_is_memory_plus_swap_minus_memory() {
    assert_eq!(swap_max(Some(100), Some(300)).unwrap(), Some("200".into()));
    assert_eq!(swap_max(Some(100), Some(-1)).unwrap(), Some("max".into()));
    assert_eq!(swap_max(Some(-1), None).unwrap(), Some("max".into()));
    assert_eq!(swap_max(Some(100), None).unwrap(), None);
    assert!(swap_max(None, Some(300)).is_err());
    assert!(swap_max(Some(300), Some(100)).is_err());
}

#[test]
fn shares_convert_to_weight_like_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    // Out-of-range shares are clamped rather than wrapping.
    assert_eq!(shares_to_weight(1), 1);
    assert_eq!(shares_to_weight(1 << 40), 10_000);
}

#[test]
fn cpu_max_is_quota_and_period_or_max() {
    assert_eq!(
        cpu_max(Some(50_000), Some(100_000)).as_deref(),
        Some("50000 100000")
    );
    assert_eq!(
        cpu_max(Some(-1), Some(100_000)).as_deref(),
        Some("max 100000")
    );
    assert_eq!(cpu_max(Some(20_000), None).as_deref(), Some("20000"));
    assert_eq!(cpu_max(None, None), None);
}

#[test]
fn v2_cpu_pids_io_hugetlb_map_to_v2_files() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.apply(&resources(
        r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
                    "idle": 1, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": -1},
            "blockIO": {"weight": 500,
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
    ))
    .unwrap();
    let dir = m.unified_path();
    assert_eq!(read(dir, "cpu.weight"), "39");
    assert_eq!(read(dir, "cpu.max"), "50000 100000");
    assert_eq!(read(dir, "cpu.max.burst"), "1000");
    assert_eq!(read(dir, "cpu.idle"), "1");
    assert_eq!(read(dir, "cpuset.cpus"), "0-1");
    assert_eq!(read(dir, "cpuset.mems"), "0");
    assert_eq!(read(dir, "pids.max"), "max");
    assert_eq!(
        read(dir, "io.weight"),
        blkio_weight_to_io_weight(500).to_string()
    );
    assert_eq!(read(dir, "io.max"), "8:0 wiops=200");
    assert_eq!(read(dir, "hugetlb.2MB.max"), "4194304");
}

#[test]
fn blkio_weight_converts_to_io_weight_range() {
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
}

#[test]
fn v2_realtime_cpu_limits_are_rejected() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    let err = m
        .apply(&resources(r#"{"cpu": {"realtimeRuntime": 950}}"#))
        .unwrap_err();
    assert!(err.to_string().contains("realtime"), "{err}");
}

#[test]
fn v2_unified_values_are_written_as_given_and_bad_keys_rejected() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.apply(&resources(r#"{"unified": {"memory.high": "50000000"}}"#))
        .unwrap();
    assert_eq!(read(m.unified_path(), "memory.high"), "50000000");
    // Keys that move or kill processes are no limits: a host pid in `cgroup.procs` would
    // pull that process into the container's cgroup.
    for key in [
        "../memory.high",
        "sub/memory.high",
        "..",
        "",
        "cgroup.procs",
        "cgroup.kill",
        "cgroup.freeze",
        "cgroup.threads",
    ] {
        let json = format!(r#"{{"unified": {{"{key}": "1"}}}}"#);
        let err = m.apply(&resources(&json)).unwrap_err();
        assert!(
            err.to_string().contains("linux.resources.unified"),
            "{key}: {err}"
        );
    }
}

#[test]
fn v2_device_rules_are_enforced_not_skipped() {
    // A fixture directory is no cgroup: attaching the device program must fail loudly
    // rather than leave the container with every device.
    let f = Fixture::v2();
    let m = f.manager("/c1");
    let err = m
        .apply(&resources(
            r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bpf"), "{err}");
}

#[test]
fn device_rules_are_deny_all_the_spec_rules_then_the_defaults() {
    use oci_spec::runtime::{
        LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources,
    };
    let fuse = LinuxDeviceBuilder::default()
        .path("/dev/fuse")
        .typ(LinuxDeviceType::C)
        .major(10)
        .minor(229)
        .build()
        .unwrap();
    let mut allow_sda = LinuxDeviceCgroup::default();
    allow_sda
        .set_allow(true)
        .set_typ(Some(LinuxDeviceType::B))
        .set_major(Some(8))
        .set_minor(Some(0))
        .set_access(Some("r".into()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![allow_sda]));
    let out = super::with_default_devices(Some(&resources), &[fuse]);
    let lines: Vec<String> = out
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} {}", r.allow(), super::v1::device_rule(i, r).unwrap()))
        .collect();
    assert_eq!(lines[0], "false a *:* rwm");
    assert_eq!(lines[1], "true b 8:0 r");
    assert!(lines.contains(&"true c 1:3 rwm".to_string()), "{lines:?}");
    assert!(lines.contains(&"true c 136:* rwm".to_string()), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "true c 10:229 rwm");
    // No linux.resources, or no device rules in it: the same deny-all and defaults.
    let expect = |out: LinuxResources| {
        let rules = out.devices().clone().unwrap();
        assert!(!rules[0].allow(), "{rules:?}");
        assert_eq!(rules[0].typ(), None);
        assert!(rules[1..].iter().all(|r| r.allow()), "{rules:?}");
        assert!(rules.len() > 8, "{rules:?}");
    };
    expect(super::with_default_devices(None, &[]));
    expect(super::with_default_devices(
        Some(&LinuxResources::default()),
        &[],
    ));
}

/// The hybrid fixture's hierarchies, a manager for `/pod/c1` in them, and where a test
/// records it (in the temporary directory, kept alive by the caller).
fn pod_c1_record() -> (Hierarchies, CgroupManager, TempDir, PathBuf) {
    let h = parse_mountinfo(HYBRID_MOUNTINFO, Path::new("/sys/fs/cgroup")).unwrap();
    let own = ProcessCgroups::parse("4:memory:/\n0::/\n").unwrap();
    let manager =
        CgroupManager::with_hierarchies(&h, &own, "c1", Some(Path::new("/pod/c1"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("cgroup.json");
    (h, manager, dir, record)
}

#[test]
fn a_cgroupfs_record_naming_a_hierarchy_root_or_a_climbing_path_is_refused() {
    let (_, manager, _dir, record) = pod_c1_record();
    manager.save(&record).unwrap();
    let loaded = CgroupManager::load(&record).unwrap().unwrap();
    assert_eq!(loaded.unified_path(), manager.unified_path());
    let text = std::fs::read_to_string(&record).unwrap();
    for tampered in [
        text.replace("/pod/c1\"", "\""),
        text.replace("/pod/c1", "/pod/../../../etc"),
    ] {
        std::fs::write(&record, tampered).unwrap();
        let err = CgroupManager::load(&record).unwrap_err().to_string();
        assert!(err.contains("not a cgroup below"), "{err}");
    }
}

#[test]
fn a_record_whose_mount_point_is_not_a_cgroup_hierarchy_of_the_host_is_refused() {
    let (h, manager, _dir, record) = pod_c1_record();
    manager.save(&record).unwrap();
    let loaded = CgroupManager::load(&record).unwrap().unwrap();
    loaded.check_hierarchies(&h, &record).unwrap();
    // A bundle writer names `/sys` as the memory hierarchy's mount point: the directory is
    // below "its" mount point, but no cgroup hierarchy is mounted there.
    let text = fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"/sys/fs/cgroup/memory\""), "{text}");
    let tampered = text
        .replace("\"/sys/fs/cgroup/memory\"", "\"/sys\"")
        .replace("/sys/fs/cgroup/memory/pod/c1", "/sys/kernel/pod/c1");
    fs::write(&record, tampered).unwrap();
    let loaded = CgroupManager::load(&record).unwrap().unwrap();
    let err = loaded
        .check_hierarchies(&h, &record)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not one of this host's cgroup hierarchies"),
        "{err}"
    );
    assert!(err.contains("/sys "), "{err}");
}

/// The same through [`CgroupManager::load_on_host`], against this host's own mounts.
#[test]
fn load_on_host_checks_the_records_mount_points_against_this_hosts_mounts() {
    let manager = CgroupManager::new("c1", Some(Path::new("/mini-unit/c1"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("cgroup.json");
    manager
        .with_made(vec![manager.dirs().next().unwrap().dir.clone()])
        .save(&record)
        .unwrap();
    let loaded = CgroupManager::load_on_host(&record).unwrap().unwrap();
    assert!(loaded.made_any());
    let first = manager.dirs().next().unwrap();
    let text = fs::read_to_string(&record).unwrap();
    let mount = format!("\"{}\"", first.mount_point.display());
    assert!(text.contains(&mount), "{text}");
    fs::write(&record, text.replace(&mount, "\"/sys\"")).unwrap();
    let err = CgroupManager::load_on_host(&record)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not one of this host's cgroup hierarchies"),
        "{err}"
    );
}

#[test]
fn a_record_whose_made_directory_is_not_on_the_way_to_its_cgroup_is_refused() {
    let (_, manager, _dir, record) = pod_c1_record();
    let parent = PathBuf::from("/sys/fs/cgroup/memory/pod");
    for (made, ok) in [
        (parent.clone(), true),
        (parent.join("c1"), true),
        (PathBuf::from("/sys/fs/cgroup/memory"), false),
        (PathBuf::from("/sys/fs/cgroup/memory/other"), false),
        (parent.join("c1/../../other"), false),
    ] {
        manager.with_made(vec![made.clone()]).save(&record).unwrap();
        let loaded = CgroupManager::load(&record);
        assert_eq!(loaded.is_ok(), ok, "{}: {loaded:?}", made.display());
    }
}

// ---- trees deeper than PATH_MAX, walked through directory fds ----

/// Makes `levels` nested directories named `name` in `top` through directory fds, as a
/// container in its own cgroup namespace can (their host paths may pass `PATH_MAX`); the fd
/// of each level, top-most first.
fn nest(top: &Path, name: &str, levels: usize) -> Vec<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fds = vec![open(top, flags, Mode::empty()).unwrap()];
    for _ in 0..levels {
        let parent = fds.last().unwrap();
        mkdirat(parent, name, Mode::from_bits_truncate(0o755)).unwrap();
        let fd = openat(parent, name, flags, Mode::empty()).unwrap();
        fds.push(fd);
    }
    fds.remove(0);
    fds
}

/// Writes `text` to a new file `name` in directory `dir`.
fn create_at(dir: &std::os::fd::OwnedFd, name: &str, text: &str) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o644)).unwrap();
    std::io::Write::write_all(&mut fs::File::from(fd), text.as_bytes()).unwrap();
}

#[test]
fn pids_are_found_in_sub_cgroups_nested_past_path_max() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let dir = m.v1_path("pids").unwrap();
    // 30 levels of 200-byte names: a 6000-byte path, and more levels than a walk keeps open.
    let levels = nest(dir, &"d".repeat(200), 30);
    let mut want = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let pid = 1000 + i as i32;
        create_at(level, "cgroup.procs", &format!("{pid}\n"));
        // A sibling taken after the deep chain: its parent's fd was closed meanwhile.
        nix::sys::stat::mkdirat(level, "z", nix::sys::stat::Mode::from_bits_truncate(0o755))
            .unwrap();
        let side = nix::fcntl::openat(
            level,
            "z",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        create_at(&side, "cgroup.procs", &format!("{}\n", 5000 + i));
        want.extend([pid, 5000 + i as i32]);
    }
    want.sort_unstable();
    assert_eq!(m.pids().unwrap(), want);
    let (first, pids) = m.occupied().unwrap().unwrap();
    assert_eq!((first.as_path(), pids.len()), (dir, want.len()));
}

#[test]
fn a_walk_keeps_a_bounded_number_of_directories_open() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    fs::create_dir(&top).unwrap();
    drop(nest(&top, "d", 3 * tree::OPEN_WINDOW));
    // Open fds that lead into this tree (other tests run alongside in this process).
    let open_here = || {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| fs::read_link(e.path()).is_ok_and(|l| l.starts_with(&top)))
            .count()
    };
    let (mut most, mut visited) = (0, 0);
    tree::walk(&top, tree::Order::Pre, |_| {
        most = most.max(open_here());
        visited += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(visited, 3 * tree::OPEN_WINDOW + 1);
    assert!(
        (tree::OPEN_WINDOW..=tree::OPEN_WINDOW + 2).contains(&most),
        "{most} fds open at once"
    );
}

#[test]
fn remove_tree_removes_sub_cgroups_nested_past_path_max_deepest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    fs::create_dir(&top).unwrap();
    drop(nest(&top, &"d".repeat(200), 30));
    fs::create_dir(top.join("side")).unwrap();
    // keep_top: what the spec named and existed before stays, emptied.
    remove_tree(&top, true, std::time::Instant::now()).unwrap();
    assert_eq!(fs::read_dir(&top).unwrap().count(), 0);
    drop(nest(&top, &"d".repeat(200), 30));
    remove_tree(&top, false, std::time::Instant::now()).unwrap();
    assert!(!top.exists());
}

#[test]
fn a_walk_goes_on_when_a_closed_ancestor_was_moved_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    fs::create_dir(&top).unwrap();
    drop(nest(&top, "d", 3 * tree::OPEN_WINDOW));
    let mut moved = false;
    tree::walk(&top, tree::Order::Post, |visit| {
        let tree::Visit::Leave { parent, name } = visit else {
            return Ok(());
        };
        if !moved {
            // Only a plain directory tree allows this (cgroupfs renames within a parent):
            // `..` of the moved directory no longer leads to the parent the walk saw.
            fs::rename(top.join("d/d"), top.join("moved")).unwrap();
            moved = true;
        }
        tree::rmdir_at(parent, name).map_err(|e| e.to_string())
    })
    .unwrap();
    // Everything was emptied through the fds; the moved directory stays where it went.
    let left: Vec<_> = fs::read_dir(&top)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["moved"]);
    assert_eq!(fs::read_dir(top.join("moved")).unwrap().count(), 0);
}
