//! mini on a pure cgroup v2 host, on containerd 1.6 (the guest's own package) and 2.x: the
//! spec's resources as runc writes them on v2, read back from the container's cgroup
//! directory; the eBPF device program; the OOM kill from `memory.events`; v2 metrics,
//! pause/resume through `cgroup.freeze` and kill `--all`; the cgroup gone after delete, also
//! after the shim was SIGKILLed. On the guest's containerd alone (the runtime core's work,
//! whatever containerd asks): kill `--all -s KILL` as one write to `cgroup.kill`; a private
//! cgroup namespace in which the container is `/` and, with a read-write cgroup mount, makes
//! and uses sub-cgroups; per-device io weights in BFQ's `io.bfq.weight`, as runc writes them.
//!
//! This host is hybrid, so every scenario is ignored here: `tests/tests/vm.rs` boots a VM with
//! a pure cgroup v2 hierarchy and runs them there (`--ignored`). Each one fails, rather than
//! skips, when it finds itself on another layout.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::cgroups_v2::metrics::Metrics;
use mini_e2e::grpc::Grpc;
use mini_e2e::{Containerd, MINI, Namespace, Version, leftovers, wait_until};
use protobuf::Message;
use serde_json::{Value, json};

/// One test per containerd version the VM runs: the guest's 1.6 and the cached 2.x.
macro_rules! on_v2_host {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            #[ignore = "needs a pure cgroup v2 host: tests/tests/vm.rs runs it in a VM"]
            fn containerd_1_6() { super::$scenario(mini_e2e::Version::V1_6) }
            #[test]
            #[ignore = "needs a pure cgroup v2 host: tests/tests/vm.rs runs it in a VM"]
            fn containerd_2() { super::$scenario(mini_e2e::Version::V2) }
        }
    )*};
}

on_v2_host!(
    resources_are_written_to_the_v2_files_as_runc_converts_them,
    unlimited_swap_idle_cpu_and_bad_unified_keys,
    device_program_denies_what_the_rules_do_not_allow,
    oom_kill_is_counted_in_memory_events_and_published_before_the_exit,
    metrics_are_v2_pause_goes_through_cgroup_freeze_and_kill_all_reaches_every_process,
    cgroup_is_removed_after_delete_even_when_the_shim_was_killed,
);

/// One test, on the guest's containerd 1.6 only: what it checks is the runtime core's.
macro_rules! on_v2_host_guest_containerd {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            #[ignore = "needs a pure cgroup v2 host: tests/tests/vm.rs runs it in a VM"]
            fn containerd_1_6() { super::$scenario(mini_e2e::Version::V1_6) }
        }
    )*};
}

on_v2_host_guest_containerd!(
    kill_all_with_sigkill_is_one_write_to_cgroup_kill,
    cgroup_namespace_shows_the_container_as_root_and_a_rw_mount_takes_sub_cgroups,
    per_device_io_weights_go_to_bfq_as_runc_writes_them,
);

const CGROUP2: &str = "/sys/fs/cgroup";

/// Panics unless the only cgroup file system mounted is cgroup2 at /sys/fs/cgroup.
#[track_caller]
fn assert_pure_v2() {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let cgroup_mounts: Vec<(String, String)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let fstype = right.split_whitespace().next()?;
            fstype
                .starts_with("cgroup")
                .then(|| (mount_point.to_string(), fstype.to_string()))
        })
        .collect();
    assert_eq!(
        cgroup_mounts,
        [(CGROUP2.to_string(), "cgroup2".to_string())],
        "not a pure cgroup v2 host: these scenarios run in the VM of tests/tests/vm.rs"
    );
}

/// The container's cgroup directory (`/sys/fs/cgroup/<namespace>/<id>`, ctr's default path).
fn cgroup_of(ns: &Namespace<'_>, id: &str) -> PathBuf {
    Path::new(CGROUP2).join(ns.name()).join(id)
}

use mini_e2e::read_trimmed as read;

/// The `key value` lines of a cgroup file (`memory.events`, `cgroup.events`).
fn flat_keyed(dir: &Path, file: &str) -> HashMap<String, u64> {
    read(dir, file)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn processes(dir: &Path) -> Vec<i32> {
    read(dir, "cgroup.procs")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A busybox root directory for specs given with `ctr run --config`; removed on drop.
fn busybox_root() -> tempfile::TempDir {
    let dir = mini_e2e::tmp_dir("mini-v2root-");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(dir.path().join(d)).expect("rootfs dir");
    }
    fs::copy("/bin/busybox", dir.path().join("bin/busybox")).expect("copying /bin/busybox");
    for applet in [
        "sh", "sleep", "mknod", "head", "echo", "cat", "mkdir", "true",
    ] {
        std::os::unix::fs::symlink("busybox", dir.path().join("bin").join(applet))
            .expect("applet link");
    }
    dir
}

/// `ctr oci spec` for container `id` on `root`, running `sh -c script`, its cgroup at
/// `/<namespace>/<id>`, with `resources` as its `linux.resources`.
fn spec_with(ns: &Namespace<'_>, root: &Path, id: &str, script: &str, resources: Value) -> Value {
    let out = ns.ctr(&["oci", "spec"]);
    out.expect_success();
    let mut spec: Value = serde_json::from_str(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = json!({"path": root, "readonly": false});
    spec["process"]["args"] = json!(["sh", "-c", script]);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["process"]["terminal"] = json!(false);
    spec["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", ns.name()));
    let defaults = spec["linux"]["resources"]["devices"].take();
    spec["linux"]["resources"] = resources;
    if spec["linux"]["resources"]["devices"].is_null() {
        spec["linux"]["resources"]["devices"] = defaults;
    }
    spec
}

/// `ctr run [-d|--rm] --config <spec>` of container `id` with mini.
fn run_spec(ns: &Namespace<'_>, id: &str, spec: &Value, detach: bool) -> mini_e2e::CtrOutput {
    let dir = mini_e2e::tmp_dir("mini-v2spec-");
    let path = dir.path().join("config.json");
    fs::write(&path, spec.to_string()).expect("writing config.json");
    let path = path.to_string_lossy();
    let mode = if detach { "-d" } else { "--rm" };
    ns.ctr(&["run", mode, "--runtime", MINI, "--config", &path, id])
}

fn resources_are_written_to_the_v2_files_as_runc_converts_them(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("res-{}", version.tag()));
    let root = busybox_root();
    let id = ns.new_id("res");
    // The VM's disk (tests/src/vm.rs), for the per-device io limits.
    let vda = read(Path::new("/sys/block/vda"), "dev");
    let (major, minor) = vda.split_once(':').expect("major:minor");
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let resources = json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 77},
        "blockIO": {"weight": 500,
                    "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                    "throttleWriteIopsDevice": [{"major": major, "minor": minor, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "unified": {"memory.high": "50331648", "pids.max": "66"}
    });
    let spec = spec_with(&ns, root.path(), &id, "sleep 1000", resources);
    run_spec(&ns, &id, &spec, true).expect_success();
    assert!(ns.wait_status(&id, "RUNNING", Duration::from_secs(20)));
    let dir = cgroup_of(&ns, &id);
    let (pid, _) = ns.task(&id).expect("task listed");
    assert_eq!(processes(&dir), [pid], "the init runs in {}", dir.display());

    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "memory.low"), "33554432");
    // The spec's swap is memory+swap (v1's memsw): v2's swap alone is the difference.
    assert_eq!(read(&dir, "memory.swap.max"), "33554432");
    // runc's conversion: 1 + (512 - 2) * 9999 / 262142.
    assert_eq!(read(&dir, "cpu.weight"), "20");
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    assert_eq!(read(&dir, "cpu.max.burst"), "10000");
    assert_eq!(read(&dir, "cpuset.cpus"), "0");
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    // 1 + (500 - 10) * 9999 / 990.
    assert_eq!(read(&dir, "io.weight"), "default 4950");
    assert_eq!(
        read(&dir, "io.max"),
        format!("{vda} rbps=1048576 wbps=max riops=max wiops=100")
    );
    assert_eq!(read(&dir, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(&dir, "memory.high"), "50331648");
    // `unified` goes last: it overrides the converted pids limit.
    assert_eq!(read(&dir, "pids.max"), "66");
    // Controllers were enabled only down to the container's parent: none below it.
    assert_eq!(read(&dir, "cgroup.subtree_control"), "");

    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

fn unlimited_swap_idle_cpu_and_bad_unified_keys(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("swap-{}", version.tag()));
    let root = busybox_root();
    let id = ns.new_id("swap");
    let resources = json!({
        "memory": {"limit": 67108864, "swap": -1},
        "cpu": {"idle": 1}
    });
    let spec = spec_with(&ns, root.path(), &id, "sleep 1000", resources);
    run_spec(&ns, &id, &spec, true).expect_success();
    assert!(ns.wait_status(&id, "RUNNING", Duration::from_secs(20)));
    let dir = cgroup_of(&ns, &id);
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "memory.swap.max"), "max");
    assert_eq!(read(&dir, "cpu.idle"), "1");
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);

    // A key that leaves the container's directory, and one naming no file of it: refused
    // by name, nothing left.
    for key in ["../memory.max", "memory.nosuch"] {
        let id = ns.new_id("unified");
        let resources = json!({"unified": {key: "1"}});
        let spec = spec_with(&ns, root.path(), &id, "true", resources);
        let out = run_spec(&ns, &id, &spec, false);
        assert!(!out.success(), "unified {key:?} must be refused: {out}");
        assert!(
            out.stderr
                .contains(&format!("linux.resources.unified[{key:?}]")),
            "the error must name the key: {out}"
        );
        let _ = ns.ctr(&["container", "delete", &id]);
        ns.assert_nothing_left(&id);
    }
}

fn device_program_denies_what_the_rules_do_not_allow(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("dev-{}", version.tag()));
    let root = busybox_root();
    let id = ns.new_id("dev");
    // Deny all, then writing (only) to /dev/kmsg (c 1:11); runc's defaults follow: mknod of
    // any node, and the standard devices (null, zero, ...). The serial port (c 4:64) has no
    // rule: its node can be made but not opened.
    let resources = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}
    ]});
    let script = "mknod /tmp/ttyS0 c 4 64; echo mknod=$?; \
                  (echo x >/tmp/ttyS0) 2>/dev/null; echo tty_write=$?; \
                  mknod /tmp/kmsg c 1 11; (echo mini-device-test >/tmp/kmsg) 2>/dev/null; \
                  echo kmsg_write=$?; \
                  echo x >/dev/null; echo null=$?";
    let spec = spec_with(&ns, root.path(), &id, script, resources);
    let out = run_spec(&ns, &id, &spec, false);
    out.expect_success();
    let got: HashMap<String, String> = out.key_values();
    let status = |key: &str| got.get(key).map(String::as_str);
    assert_eq!(status("mknod"), Some("0"), "{out}");
    assert_ne!(status("tty_write"), Some("0"), "{out}");
    assert!(status("tty_write").is_some(), "{out}");
    assert_eq!(status("kmsg_write"), Some("0"), "{out}");
    assert_eq!(status("null"), Some("0"), "{out}");
    ns.assert_nothing_left(&id);
}

fn oom_kill_is_counted_in_memory_events_and_published_before_the_exit(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("oom");
    let id = ns.new_id("oom");
    let events = ns.subscribe_events();
    // busybox tail keeps the current line in memory: /dev/zero has no newline.
    ns.run_mini(
        &["-d", "--memory-limit", "33554432"],
        &id,
        &["tail", "/dev/zero"],
    )
    .expect_success();
    assert!(
        ns.wait_status(&id, "STOPPED", Duration::from_secs(60)),
        "the OOM killer did not end {id}: {:?}",
        ns.task_status(&id)
    );
    let dir = cgroup_of(&ns, &id);
    let counts = flat_keyed(&dir, "memory.events");
    assert!(
        counts.get("oom_kill").is_some_and(|&n| n >= 1),
        "{counts:?}"
    );
    let del = ns.ctr(&["task", "delete", &id]);
    del.expect_success();
    assert!(del.stderr.contains("exit code 137"), "{del}");
    ns.ctr(&["container", "delete", &id]).expect_success();
    assert!(wait_until(Duration::from_secs(10), || {
        events.stdout_so_far().contains("/tasks/delete")
    }));
    let out = events.stop().stdout;
    let ours: String = out.lines().filter(|l| l.contains(&id)).collect();
    let (oom, exit) = (ours.find(" /tasks/oom "), ours.find(" /tasks/exit "));
    assert!(
        oom.is_some() && exit.is_some() && oom < exit,
        "/tasks/oom must come before /tasks/exit:\n{out}"
    );
    ns.assert_nothing_left(&id);
}

fn metrics_are_v2_pause_goes_through_cgroup_freeze_and_kill_all_reaches_every_process(
    version: Version,
) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("killall");
    let id = ns.new_id("killall");
    ns.run_detached(
        MINI,
        &["--memory-limit", "67108864"],
        &id,
        &["sh", "-c", "sleep 1000 & wait"],
    );
    let dir = cgroup_of(&ns, &id);
    assert!(wait_until(Duration::from_secs(10), || processes(&dir)
        .len()
        >= 2));

    let grpc = Grpc::connect(&cd.address(), ns.name());
    let (type_url, value) = grpc
        .metrics(&id)
        .unwrap_or_else(|e| panic!("metrics: {e:?}"));
    assert_eq!(type_url, "io.containerd.cgroups.v2.Metrics");
    let m = Metrics::parse_from_bytes(&value).expect("v2 Metrics");
    assert_eq!(m.pids.current, 2, "{:?}", m.pids);
    assert_eq!(m.memory.usage_limit, 67108864, "{:?}", m.memory);
    assert!(m.memory.usage > 0, "{:?}", m.memory);
    assert!(m.cpu.usage_usec > 0, "{:?}", m.cpu);
    let out = ns.ctr(&["task", "metrics", &id]);
    out.expect_success();
    assert!(out.stdout.contains("pids.current"), "{out}");

    ns.ctr(&["task", "pause", &id]).expect_success();
    assert_eq!(ns.task_status(&id).as_deref(), Some("PAUSED"));
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert_eq!(flat_keyed(&dir, "cgroup.events").get("frozen"), Some(&1));
    ns.ctr(&["task", "resume", &id]).expect_success();
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));
    assert_eq!(read(&dir, "cgroup.freeze"), "0");
    assert_eq!(flat_keyed(&dir, "cgroup.events").get("frozen"), Some(&0));

    // SIGTERM: the init of a pid namespace ignores it (no handler), so the task stops only
    // if the signal reaches the sleep too; `wait` then returns and the shell exits.
    ns.ctr(&["task", "kill", "--all", "-s", "SIGTERM", &id])
        .expect_success();
    assert!(
        ns.wait_status(&id, "STOPPED", Duration::from_secs(20)),
        "kill --all did not stop {id}: {:?}",
        ns.task_status(&id)
    );
    assert!(processes(&dir).is_empty());
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

fn cgroup_is_removed_after_delete_even_when_the_shim_was_killed(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("shimkill");
    let id = ns.new_id("shimkill");
    ns.run_detached(MINI, &[], &id, &["sh", "-c", "sleep 1000 & wait"]);
    let dir = cgroup_of(&ns, &id);
    let shim_pid = ns.bundle_dir(&id).join("shim.pid");
    let shim: i32 = read(shim_pid.parent().expect("bundle"), "shim.pid")
        .parse()
        .expect("shim.pid holds a pid");
    leftovers::kill(shim);
    wait_until(Duration::from_secs(20), || {
        ns.task_status(&id).as_deref() != Some("RUNNING")
    });
    let _ = ns.ctr(&["task", "delete", &id]);
    ns.ctr(&["container", "delete", &id]).expect_success();
    assert!(
        wait_until(Duration::from_secs(10), || !dir.exists()),
        "{} left after the killed shim's delete: procs {:?}",
        dir.display(),
        fs::read_to_string(dir.join("cgroup.procs"))
    );
    ns.assert_nothing_left(&id);
}

/// Counts the writes to one file (inotify `IN_MODIFY`, which the VFS reports for cgroupfs
/// files too); closed on drop.
struct WriteWatch {
    fd: std::os::fd::OwnedFd,
}

impl WriteWatch {
    fn new(path: &Path) -> WriteWatch {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 takes no pointers; a non-negative result is a new fd we own.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            raw >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: raw is a valid fd just returned to us and owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
        // SAFETY: name is a NUL-terminated string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(raw, name.as_ptr(), libc::IN_MODIFY) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        WriteWatch { fd }
    }

    /// Whether the file was written since the watch began (unread identical events are
    /// merged by the kernel, so this cannot count them).
    fn written(&self) -> bool {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut file = std::fs::File::from(self.fd.try_clone().expect("dup inotify fd"));
        match file.read(&mut buf) {
            Ok(n) => n > 0,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("reading inotify events: {e}"),
        }
    }
}

/// `ctr task kill --all -s KILL` of a container whose shell keeps forking: the shim kills the
/// whole cgroup with one write to `cgroup.kill` (the kernel then also stops forks racing the
/// kill), not a walk over `cgroup.procs`; nothing is left.
fn kill_all_with_sigkill_is_one_write_to_cgroup_kill(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cgkill");
    let id = ns.new_id("cgkill");
    ns.run_detached(
        MINI,
        &[],
        &id,
        &["sh", "-c", "while :; do sleep 1000 & sleep 0.2; done"],
    );
    let dir = cgroup_of(&ns, &id);
    assert!(
        wait_until(Duration::from_secs(20), || processes(&dir).len() >= 4),
        "the forking loop did not start: {:?}",
        processes(&dir)
    );
    let watch = WriteWatch::new(&dir.join("cgroup.kill"));
    assert!(!watch.written());
    ns.ctr(&["task", "kill", "--all", "-s", "SIGKILL", &id])
        .expect_success();
    assert!(
        ns.wait_status(&id, "STOPPED", Duration::from_secs(20)),
        "kill --all -s KILL did not stop {id}: {:?}",
        ns.task_status(&id)
    );
    assert!(
        watch.written(),
        "kill --all -s KILL did not write {}/cgroup.kill",
        dir.display()
    );
    assert!(
        wait_until(Duration::from_secs(10), || processes(&dir).is_empty()),
        "left in {}: {:?}",
        dir.display(),
        processes(&dir)
    );
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

/// A spec with a cgroup namespace, whose `/sys/fs/cgroup` mount is read-only or not.
fn cgroupns_spec(ns: &Namespace<'_>, root: &Path, id: &str, script: &str, rw: bool) -> Value {
    let mut spec = spec_with(ns, root, id, script, json!({}));
    let namespaces = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("spec namespaces");
    if !namespaces.iter().any(|n| n["type"] == "cgroup") {
        namespaces.push(json!({"type": "cgroup"}));
    }
    // ctr's default spec has no cgroup mount (CRI adds one): as CRI mounts it, after /sys.
    let mounts = spec["mounts"].as_array_mut().expect("spec mounts");
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    mounts.push(json!({
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", if rw { "rw" } else { "ro" }]
    }));
    spec
}

/// In its own cgroup namespace the container sees its cgroup as `/`. With the cgroup mount
/// read-write (a spec that asks, as CRI does for a privileged container) it makes a
/// sub-cgroup and moves itself into it; the container's own `cgroup.subtree_control` stays
/// empty (no controller enabled below it unless it asks), and delete removes the sub-cgroup
/// with the container's. With the default read-only mount, `mkdir` fails.
fn cgroup_namespace_shows_the_container_as_root_and_a_rw_mount_takes_sub_cgroups(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("cgns-{}", version.tag()));
    let root = busybox_root();
    let script = "echo own=$(cat /proc/self/cgroup); \
                  mkdir /sys/fs/cgroup/sub 2>/dev/null; echo mkdir=$?; \
                  echo $$ >/sys/fs/cgroup/sub/cgroup.procs 2>/dev/null; echo moved=$?; \
                  echo now=$(cat /proc/self/cgroup); \
                  echo subtree=$(cat /sys/fs/cgroup/cgroup.subtree_control)";
    for rw in [true, false] {
        let id = ns.new_id(if rw { "rw" } else { "ro" });
        let spec = cgroupns_spec(&ns, root.path(), &id, script, rw);
        let out = run_spec(&ns, &id, &spec, false);
        out.expect_success();
        let got: HashMap<String, String> = out.key_values();
        let value = |key: &str| got.get(key).map(String::as_str);
        assert_eq!(value("own"), Some("0::/"), "rw {rw}: {out}");
        assert_eq!(value("subtree"), Some(""), "rw {rw}: {out}");
        if rw {
            assert_eq!(value("mkdir"), Some("0"), "{out}");
            assert_eq!(value("moved"), Some("0"), "{out}");
            assert_eq!(value("now"), Some("0::/sub"), "{out}");
        } else {
            assert_ne!(
                value("mkdir"),
                Some("0"),
                "a read-only mount took a mkdir: {out}"
            );
            assert_ne!(value("moved"), Some("0"), "{out}");
            assert_eq!(value("now"), Some("0::/"), "{out}");
        }
        let dir = cgroup_of(&ns, &id);
        assert!(
            wait_until(Duration::from_secs(10), || !dir.exists()),
            "{} (and its sub-cgroup) left after delete",
            dir.display()
        );
        ns.assert_nothing_left(&id);
    }
}

/// Puts BFQ on a block device for the scenario's length: loads the module, makes it the
/// device's scheduler; sets back the scheduler and unloads the module on drop (the other
/// scenarios expect `io.weight`, which `io.bfq.weight`'s presence would replace).
struct BfqOn {
    scheduler: PathBuf,
    before: String,
}

impl BfqOn {
    fn device(name: &str) -> BfqOn {
        let scheduler = Path::new("/sys/block").join(name).join("queue/scheduler");
        let text = fs::read_to_string(&scheduler).expect("reading the device's scheduler");
        // "[mq-deadline] none": the one in brackets is in use.
        let before = text
            .split_whitespace()
            .find_map(|s| s.strip_prefix('[')?.strip_suffix(']'))
            .unwrap_or("none")
            .to_string();
        let status = std::process::Command::new("modprobe")
            .arg("bfq")
            .status()
            .expect("running modprobe");
        assert!(status.success(), "modprobe bfq: {status}");
        let guard = BfqOn { scheduler, before };
        fs::write(&guard.scheduler, "bfq").expect("choosing bfq");
        guard
    }
}

impl Drop for BfqOn {
    fn drop(&mut self) {
        let _ = fs::write(&self.scheduler, &self.before);
        let _ = std::process::Command::new("modprobe")
            .args(["-r", "bfq"])
            .status();
    }
}

/// `blockIO.weightDevice` as runc writes it on v2: without BFQ it is left out (the
/// container runs; nothing else on v2 takes the weight as is); with BFQ as the device's
/// scheduler, one `MAJ:MIN WEIGHT` line in `io.bfq.weight`, the weight in the v1 range as is,
/// next to the default weight (also BFQ's there).
fn per_device_io_weights_go_to_bfq_as_runc_writes_them(version: Version) {
    assert_pure_v2();
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("iow-{}", version.tag()));
    let root = busybox_root();
    let vda = read(Path::new("/sys/block/vda"), "dev");
    let (major, minor) = vda.split_once(':').expect("major:minor");
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let resources = json!({"blockIO": {
        "weight": 500,
        "weightDevice": [{"major": major, "minor": minor, "weight": 300}]
    }});

    let id = ns.new_id("nobfq");
    let spec = spec_with(&ns, root.path(), &id, "true", resources.clone());
    let out = run_spec(&ns, &id, &spec, false);
    assert!(
        out.success(),
        "weightDevice without BFQ must be left out: {out}"
    );
    ns.assert_nothing_left(&id);

    let _bfq = BfqOn::device("vda");
    let id = ns.new_id("bfq");
    let spec = spec_with(&ns, root.path(), &id, "sleep 1000", resources);
    run_spec(&ns, &id, &spec, true).expect_success();
    assert!(ns.wait_status(&id, "RUNNING", Duration::from_secs(20)));
    let dir = cgroup_of(&ns, &id);
    let weights: Vec<String> = read(&dir, "io.bfq.weight")
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(weights, ["default 500".to_string(), format!("{vda} 300")]);
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}
