//! Hostile images and specs, through containerd, on 1.6, 1.7 and 2.x: each tries to reach the
//! host (a file outside the container, a kernel setting, the domainname, a device, root by an
//! out-of-range id) and each test checks that the host is unchanged and nothing is left.
//!
//! Exec does not exist in mini yet (it answers UNIMPLEMENTED), so the `/proc/self/fd` variants
//! run through `ctr run` only.

use std::fs;
use std::path::{Path, PathBuf};

use mini_e2e::{Containerd, Namespace, Version, leftovers, runtime_under_test, wait_until};
use serde_json::{Value, json};

mini_e2e::on_every_version!(
    entrypoint_through_proc_self_fd_never_runs_a_host_file,
    cwd_through_proc_self_fd_creates_nothing_on_the_host,
    image_entrypoint_and_workdir_through_proc_self_fd_stay_inside,
    sysctls_of_the_host_are_refused_and_namespaced_ones_stay_inside,
    domainname_without_a_uts_namespace_is_refused,
    ids_above_2147483647_are_refused,
    without_device_rules_a_device_node_cannot_be_opened,
    unapplied_fields_are_refused_by_name,
    the_scheduler_reaches_the_process,
    a_failed_create_leaves_a_cgroup_it_did_not_make,
    a_failed_create_leaves_an_empty_leaf_cgroup_it_did_not_make,
    a_cgroup_with_sub_cgroups_is_refused_at_create,
    a_killed_shims_delete_leaves_a_cgroup_it_did_not_make,
);

/// The fd numbers tried: every one an init could hold at setup.
const FDS: std::ops::RangeInclusive<i32> = 3..=20;
const UP: &str = "../../../../../../../../../../";
/// What the victim prints if it ever runs (`sh -c "echo $RAN"`).
const RAN: &str = "HOST-FILE-RAN";
const ECHO_RAN: &str = "echo HOST-FILE-RAN";

/// A host directory under /tmp holding `sh`, a copy of busybox (an ELF file: execve resolves
/// its path itself, before close-on-exec fds go); removed on drop.
struct Victim {
    dir: tempfile::TempDir,
    binary: Vec<u8>,
}

impl Victim {
    fn new() -> Victim {
        let dir = mini_e2e::tmp_dir("mini-victim-");
        let binary = fs::read("/bin/busybox").unwrap();
        fs::write(dir.path().join("sh"), &binary).unwrap();
        fs::set_permissions(
            dir.path().join("sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Victim { dir, binary }
    }

    /// `/proc/self/fd/N/../../…/tmp/<victim>/<name>`.
    fn through_fd(&self, fd: i32, name: &str) -> String {
        let rel = self.dir.path().strip_prefix("/").unwrap().display();
        format!("/proc/self/fd/{fd}/{UP}{rel}/{name}")
    }

    #[track_caller]
    fn assert_untouched(&self) {
        let now = fs::read(self.dir.path().join("sh")).unwrap();
        assert!(now == self.binary, "the host file was modified");
        let entries: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, ["sh"], "something was created on the host");
    }
}

fn entrypoint_through_proc_self_fd_never_runs_a_host_file(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("hostexe");
    let victim = Victim::new();
    for fd in FDS {
        let id = ns.new_id("hostexe");
        let program = victim.through_fd(fd, "sh");
        let out = ns.run(
            &runtime_under_test(),
            &["--rm"],
            &id,
            &[&program, "-c", ECHO_RAN],
        );
        assert!(!out.success(), "fd {fd}: {out}");
        assert!(
            !out.stdout.contains(RAN),
            "fd {fd}: the host file ran: {out}"
        );
        assert_gone(&ns, &id);
    }
    victim.assert_untouched();
}

fn cwd_through_proc_self_fd_creates_nothing_on_the_host(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("hostcwd");
    let victim = Victim::new();
    for fd in FDS {
        let id = ns.new_id("hostcwd");
        let cwd = victim.through_fd(fd, "made/here");
        let out = ns.run(
            &runtime_under_test(),
            &["--rm", "--cwd", &cwd],
            &id,
            &["sh", "-c", "pwd; touch escaped"],
        );
        // Either refused, or the cwd is created inside the container's root.
        if out.success() {
            assert!(out.stdout.trim_start().starts_with('/'), "fd {fd}: {out}");
        }
        assert_gone(&ns, &id);
    }
    victim.assert_untouched();
}

fn image_entrypoint_and_workdir_through_proc_self_fd_stay_inside(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("hostimage");
    let victim = Victim::new();
    let mut variants = Vec::new();
    for fd in FDS {
        variants.push((
            format!("exe{fd}"),
            json!({"Entrypoint": [victim.through_fd(fd, "sh"), "-c", ECHO_RAN], "Cmd": []}),
        ));
        variants.push((
            format!("wd{fd}"),
            json!({"Entrypoint": ["sh", "-c", "pwd; touch escaped"], "Cmd": [],
                   "WorkingDir": victim.through_fd(fd, "made/here")}),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("hostile.tar");
    let refs: Vec<(&str, Value)> = variants
        .iter()
        .map(|(t, c)| (t.as_str(), c.clone()))
        .collect();
    mini_e2e::build_image_variants(&tar, &[], &refs);
    ns.ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/hostile",
        &tar.to_string_lossy(),
    ])
    .expect_success();
    for (tag, _) in &variants {
        let id = ns.new_id("hostimage");
        let image = format!("localhost/hostile:{tag}");
        let out = ns.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_under_test(),
            &image,
            &id,
        ]);
        assert!(!out.stdout.contains(RAN), "{tag}: the host file ran: {out}");
        if tag.starts_with("exe") {
            assert!(!out.success(), "{tag}: {out}");
        } else if out.success() {
            assert!(out.stdout.trim_start().starts_with('/'), "{tag}: {out}");
        }
        assert_gone(&ns, &id);
    }
    victim.assert_untouched();
}

/// A busybox rootfs in a temp dir, for specs given with `ctr run --config`.
struct Rootfs(tempfile::TempDir);

impl Rootfs {
    fn new() -> Rootfs {
        let dir = tempfile::Builder::new()
            .prefix("mini-rootfs-")
            .tempdir()
            .unwrap();
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        fs::copy("/bin/busybox", dir.path().join("bin/busybox")).unwrap();
        for applet in [
            "sh", "cat", "echo", "head", "mknod", "grep", "id", "ls", "true", "sleep",
        ] {
            std::os::unix::fs::symlink("busybox", dir.path().join("bin").join(applet)).unwrap();
        }
        Rootfs(dir)
    }
}

/// ctr's default spec (`ctr oci spec`) running `sh -c script` on `rootfs`, edited by `edit`.
fn default_spec(ns: &Namespace<'_>, rootfs: &Rootfs, script: &str) -> Value {
    let out = ns.ctr(&["oci", "spec"]);
    out.expect_success();
    let mut spec: Value = serde_json::from_str(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = json!({"path": rootfs.0.path(), "readonly": false});
    spec["process"]["args"] = json!(["sh", "-c", script]);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["process"]["terminal"] = json!(false);
    spec
}

/// Drops the namespace of `typ` from the spec (the container then shares the caller's).
fn without_namespace(spec: &mut Value, typ: &str) {
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

/// `ctr run --rm --config <spec>`; checks that nothing of the container is left.
fn run_config(ns: &Namespace<'_>, spec: &Value) -> mini_e2e::CtrOutput {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, spec.to_string()).unwrap();
    let id = ns.new_id("config");
    let out = ns.run_config(&path, &id);
    assert_gone(ns, &id);
    out
}

/// Nothing of container `id` is left (a refused `ctr run --rm` may leave its container
/// record, which is removed too).
#[track_caller]
fn assert_gone(ns: &Namespace<'_>, id: &str) {
    ns.assert_nothing_left(id);
    let _ = ns.ctr(&["container", "delete", id]);
}

#[track_caller]
fn assert_refused_naming(out: &mini_e2e::CtrOutput, names: &[&str]) {
    assert!(!out.success(), "must be refused: {out}");
    for name in names {
        assert!(
            out.stderr.contains(name),
            "the error does not name {name}: {out}"
        );
    }
}

/// A host file's content, restored on drop if a test changed it.
struct HostValue {
    path: PathBuf,
    original: String,
}

impl HostValue {
    fn of(path: &str) -> HostValue {
        let path = PathBuf::from(path);
        let original = fs::read_to_string(&path).unwrap();
        HostValue { path, original }
    }

    #[track_caller]
    fn assert_unchanged(&self) {
        assert_eq!(
            fs::read_to_string(&self.path).unwrap(),
            self.original,
            "{} changed on the host",
            self.path.display()
        );
    }
}

impl Drop for HostValue {
    fn drop(&mut self) {
        if fs::read_to_string(&self.path).ok().as_ref() != Some(&self.original) {
            let _ = fs::write(&self.path, self.original.trim_end());
        }
    }
}

fn sysctls_of_the_host_are_refused_and_namespaced_ones_stay_inside(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("sysctl-{}", version.tag()));
    let rootfs = Rootfs::new();
    let core_pattern = HostValue::of("/proc/sys/kernel/core_pattern");
    let domainname = HostValue::of("/proc/sys/kernel/domainname");
    let forward = HostValue::of("/proc/sys/net/ipv4/ip_forward");
    let shmmax = HostValue::of("/proc/sys/kernel/shmmax");
    let port_start = HostValue::of("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let flipped = if forward.original.trim() == "1" {
        "0"
    } else {
        "1"
    };

    let refused = [
        ("kernel.core_pattern", "core.mini-hostile", None),
        ("kernel.domainname", "hostile.example", Some("uts")),
        ("net.ipv4.ip_forward", flipped, Some("network")),
    ];
    for (key, value, drop_ns) in refused {
        let mut spec = default_spec(&ns, &rootfs, "true");
        spec["linux"]["sysctl"] = json!({ key: value });
        if let Some(typ) = drop_ns {
            without_namespace(&mut spec, typ);
        }
        assert_refused_naming(&run_config(&ns, &spec), &[key]);
    }
    core_pattern.assert_unchanged();
    domainname.assert_unchanged();
    forward.assert_unchanged();

    let mut spec = default_spec(
        &ns,
        &rootfs,
        "echo shmmax=$(cat /proc/sys/kernel/shmmax); \
         echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)",
    );
    spec["linux"]["sysctl"] = json!({
        "kernel.shmmax": "12345678",
        "net.ipv4.ip_unprivileged_port_start": "555",
    });
    let out = run_config(&ns, &spec);
    out.expect_success();
    assert!(out.stdout.contains("shmmax=12345678"), "{out}");
    assert!(out.stdout.contains("port=555"), "{out}");
    shmmax.assert_unchanged();
    port_start.assert_unchanged();
}

fn domainname_without_a_uts_namespace_is_refused(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("domain-{}", version.tag()));
    let rootfs = Rootfs::new();
    let host = HostValue::of("/proc/sys/kernel/domainname");
    let mut spec = default_spec(&ns, &rootfs, "true");
    spec["domainname"] = json!("hostile.example");
    without_namespace(&mut spec, "uts");
    assert_refused_naming(&run_config(&ns, &spec), &["domainname"]);
    host.assert_unchanged();
    // With its own UTS namespace it is set inside only.
    let mut spec = default_spec(&ns, &rootfs, "cat /proc/sys/kernel/domainname");
    spec["domainname"] = json!("inside.example");
    let out = run_config(&ns, &spec);
    out.expect_success();
    assert_eq!(out.stdout.trim(), "inside.example", "{out}");
    host.assert_unchanged();
}

fn ids_above_2147483647_are_refused(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("ids-{}", version.tag()));
    let rootfs = Rootfs::new();
    for (field, value) in [
        ("uid", json!(4294967295u32)),
        ("gid", json!(4294967295u32)),
        ("additionalGids", json!([0, 2147483648u32])),
    ] {
        let mut spec = default_spec(&ns, &rootfs, "id");
        spec["process"]["user"][field] = value;
        let out = run_config(&ns, &spec);
        assert_refused_naming(&out, &[&format!("process.user.{field}")]);
        assert!(!out.stdout.contains("uid="), "{out}");
    }
    let mut spec = default_spec(&ns, &rootfs, "id");
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 4294967295u32, "size": 1}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    assert_refused_naming(&run_config(&ns, &spec), &["linux.uidMappings[0].hostID"]);
}

/// A host block device node root can open here, as `major minor`.
fn openable_block_device() -> (String, String) {
    fs::read_dir("/sys/dev/block")
        .unwrap()
        .flatten()
        .find_map(|e| {
            let uevent = fs::read_to_string(e.path().join("uevent")).ok()?;
            let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            fs::File::open(Path::new("/dev").join(dev)).ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let (major, minor) = name.split_once(':')?;
            Some((major.to_string(), minor.to_string()))
        })
        .expect("a block device root can open here")
}

fn without_device_rules_a_device_node_cannot_be_opened(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("devices-{}", version.tag()));
    let rootfs = Rootfs::new();
    let (major, minor) = openable_block_device();
    let script = format!(
        "mknod /dev/disk-node b {major} {minor}; echo mknod=$?; \
         head -c 1 /dev/disk-node >/dev/null 2>&1; echo open=$?; \
         echo x > /dev/null; echo null=$?"
    );
    for without in ["resources", "devices"] {
        let mut spec = default_spec(&ns, &rootfs, &script);
        match without {
            "resources" => {
                spec["linux"].as_object_mut().unwrap().remove("resources");
            }
            _ => {
                if let Some(r) = spec["linux"]["resources"].as_object_mut() {
                    r.remove("devices");
                }
            }
        }
        let out = run_config(&ns, &spec);
        out.expect_success();
        assert!(out.stdout.contains("mknod=0"), "without {without}: {out}");
        assert!(
            !out.stdout.contains("open=0"),
            "without {without}: the node opened: {out}"
        );
        assert!(out.stdout.contains("null=0"), "without {without}: {out}");
    }
}

fn unapplied_fields_are_refused_by_name(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("unapplied-{}", version.tag()));
    let rootfs = Rootfs::new();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 4] = [
        ("linux.intelRdt", |s| {
            s["linux"]["intelRdt"] = json!({"closID": "x"})
        }),
        ("linux.resources.rdma", |s| {
            s["linux"]["resources"]["rdma"] = json!({"mlx5_0": {"hcaHandles": 1}})
        }),
        // The personality is applied now; a flag mini does not know is refused.
        ("linux.personality", |s| {
            s["linux"]["personality"] = json!({"domain": "LINUX32", "flags": ["FLY"]})
        }),
        // The scheduler is applied now; a real-time policy without its priority is refused.
        ("process.scheduler.priority", |s| {
            s["process"]["scheduler"] = json!({"policy": "SCHED_FIFO"})
        }),
    ];
    for (field, edit) in cases {
        // containerd 1.6's spec type has no `process.scheduler`: ctr drops it before the shim.
        if version == Version::V1_6 && field.starts_with("process.scheduler") {
            continue;
        }
        let mut spec = default_spec(&ns, &rootfs, "true");
        edit(&mut spec);
        assert_refused_naming(&run_config(&ns, &spec), &[field]);
    }
    // ctr's default spec itself passes (nothing in it is refused).
    run_config(&ns, &default_spec(&ns, &rootfs, "true")).expect_success();
}

/// `process.scheduler` reaches the container's process through the shim (fields 19, nice,
/// and 41, policy, of /proc/self/stat). containerd 1.6's spec type has no such field (ctr
/// drops it), so there the process keeps the defaults.
fn the_scheduler_reaches_the_process(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("sched-{}", version.tag()));
    let rootfs = Rootfs::new();
    let mut spec = default_spec(&ns, &rootfs, "cat /proc/self/stat");
    spec["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    let out = run_config(&ns, &spec);
    out.expect_success();
    let fields: Vec<&str> = out
        .stdout
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    // After the command's name the fields are numbered from 3.
    let want = if version == Version::V1_6 {
        ("0", "0")
    } else {
        ("5", "3")
    };
    assert_eq!((fields[19 - 3], fields[41 - 3]), want, "{out}");
}

/// A cgroup made by the test in the cpu, memory and pids hierarchies (as another party
/// would; the others are left to the runtime), with the sub-cgroups named; removed on drop.
struct TheirCgroup {
    path: String,
    dirs: Vec<PathBuf>,
    subs: Vec<&'static str>,
}

impl TheirCgroup {
    fn new(name: &str, version: Version, subs: &[&'static str]) -> TheirCgroup {
        let path = format!("/mini-e2e-{name}-{}-{}", version.tag(), std::process::id());
        let dirs: Vec<PathBuf> = ["cpu", "memory", "pids"]
            .iter()
            .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&path[1..]))
            .collect();
        let theirs = TheirCgroup {
            path,
            dirs,
            subs: subs.to_vec(),
        };
        for dir in &theirs.dirs {
            fs::create_dir_all(dir).unwrap();
            for sub in subs {
                fs::create_dir(dir.join(sub)).unwrap();
            }
        }
        theirs
    }

    /// Whether the cgroup and its sub-cgroups are all still there.
    fn intact(&self) -> bool {
        self.dirs
            .iter()
            .all(|d| d.is_dir() && self.subs.iter().all(|s| d.join(s).is_dir()))
    }
}

impl Drop for TheirCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            for sub in &self.subs {
                let _ = fs::remove_dir(dir.join(sub));
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

/// `ctr run --rm` of `spec` placed in `theirs`' cgroup; the container record is removed
/// afterwards, and the shim's `delete` (run after the shim's disconnect) waited for.
fn run_in(ns: &Namespace<'_>, theirs: &TheirCgroup, mut spec: Value) -> mini_e2e::CtrOutput {
    spec["linux"]["cgroupsPath"] = json!(theirs.path);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    fs::write(&config, spec.to_string()).unwrap();
    let id = ns.new_id("theirs");
    let out = ns.run_config(&config, &id);
    let _ = ns.ctr(&["container", "delete", &id]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    out
}

/// A spec naming a cgroup that exists already (empty, with a sub-cgroup of its owner's) and a
/// cpu quota the kernel refuses (below 1 ms): the failed Create removes nothing of that
/// cgroup — not the directory, not its sub-cgroup (it is refused for the sub-cgroup first).
fn a_failed_create_leaves_a_cgroup_it_did_not_make(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("theirs-{}", version.tag()));
    let rootfs = Rootfs::new();
    let theirs = TheirCgroup::new("theirs", version, &["child"]);
    let mut spec = default_spec(&ns, &rootfs, "true");
    spec["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100000});
    let out = run_in(&ns, &theirs, spec);
    assert!(!out.success(), "the create must fail: {out}");
    assert!(
        theirs.intact(),
        "the failed Create removed a cgroup it did not make: {out}"
    );
}

/// The same with an *empty leaf* cgroup: the shim (its failed Create, then its `delete`)
/// cannot tell it from one it made but by the setup helper's record, and leaves it. A
/// container placed in it leaves it at Delete too.
fn a_failed_create_leaves_an_empty_leaf_cgroup_it_did_not_make(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("theirleaf-{}", version.tag()));
    let rootfs = Rootfs::new();
    let theirs = TheirCgroup::new("theirleaf", version, &[]);
    let mut spec = default_spec(&ns, &rootfs, "true");
    spec["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100000});
    let out = run_in(&ns, &theirs, spec);
    assert!(!out.success(), "the quota must be refused: {out}");
    assert!(
        theirs.intact(),
        "the failed Create removed an empty cgroup it did not make: {out}"
    );
    let out = run_in(&ns, &theirs, default_spec(&ns, &rootfs, "true"));
    out.expect_success();
    assert!(
        theirs.intact(),
        "Delete removed a cgroup the container did not make: {out}"
    );
}

/// A spec naming a cgroup with (empty) sub-cgroups is refused at Create, naming it: Delete
/// would remove them, and kill what joined them, though they are not the container's.
fn a_cgroup_with_sub_cgroups_is_refused_at_create(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("withsub-{}", version.tag()));
    let rootfs = Rootfs::new();
    let theirs = TheirCgroup::new("withsub", version, &["sub"]);
    let out = run_in(&ns, &theirs, default_spec(&ns, &rootfs, "true"));
    assert_refused_naming(
        &out,
        &["linux.cgroupsPath", &theirs.path[1..], "sub-cgroup"],
    );
    assert!(
        theirs.intact(),
        "the refused Create removed its sub-cgroups: {out}"
    );
}

/// A container placed in a cgroup that existed before (an empty leaf), its shim SIGKILLed:
/// the shim's `delete` kills the container and removes the directories the setup helper made
/// (the other hierarchies'), and leaves that cgroup, emptied.
fn a_killed_shims_delete_leaves_a_cgroup_it_did_not_make(version: Version) {
    use std::time::Duration;
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("theirkill-{}", version.tag()));
    let rootfs = Rootfs::new();
    let theirs = TheirCgroup::new("theirkill", version, &[]);
    let mut spec = default_spec(&ns, &rootfs, "sleep 300");
    spec["linux"]["cgroupsPath"] = json!(theirs.path);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    fs::write(&config, spec.to_string()).unwrap();
    let id = ns.new_id("theirkill");
    let runtime = runtime_under_test();
    let config = config.to_string_lossy();
    ns.ctr(&["run", "-d", "--runtime", &runtime, "--config", &config, &id])
        .expect_success();
    assert!(ns.wait_status(&id, "RUNNING", Duration::from_secs(10)));
    let shim = leftovers::processes()
        .into_iter()
        .find(|p| {
            p.comm.starts_with("containerd-shim")
                && leftovers::contains_token(&p.cmdline, &id)
                && !matches!(
                    p.cmdline.split_whitespace().last(),
                    Some("start" | "delete")
                )
        })
        .expect("the shim of the running task");
    leftovers::kill(shim.pid);
    // containerd sees the connection close and runs the shim's `delete`.
    assert!(wait_until(Duration::from_secs(15), || {
        ns.task_status(&id).is_none_or(|s| s == "STOPPED")
    }));
    let _ = ns.ctr(&["task", "delete", &id]);
    ns.ctr(&["container", "delete", &id]).expect_success();
    let procs = |d: &PathBuf| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
    let emptied = wait_until(Duration::from_secs(10), || {
        theirs.dirs.iter().all(|d| procs(d).trim().is_empty())
    });
    assert!(
        emptied,
        "the container's processes are left in {:?}",
        theirs.dirs
    );
    assert!(
        theirs.intact(),
        "the killed shim's delete removed a cgroup the container did not make"
    );
    // What the helper made (the other hierarchies' directories) is gone.
    let hierarchies = fs::read_dir("/sys/fs/cgroup").unwrap().flatten();
    let made: Vec<PathBuf> = hierarchies
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(&theirs.path[1..]))
        .filter(|d| {
            !theirs
                .dirs
                .iter()
                .any(|t| t.canonicalize().ok() == d.canonicalize().ok())
        })
        .collect();
    let left: Vec<&PathBuf> = made.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the made directories are left: {left:?}");
}

mini_e2e::on_every_version!(delete_kills_and_removes_sub_cgroups_nested_past_path_max);

/// Directories nested in a cgroup through directory fds, as a container with a writable
/// cgroupfs in its own cgroup namespace can make them (their host paths pass `PATH_MAX`), with
/// a `sleep` of the test's at the bottom; on drop the sleep is killed, the directories are
/// removed deepest first through the fds, and then the container's cgroup in every hierarchy.
struct Nested {
    fds: Vec<std::os::fd::OwnedFd>,
    name: String,
    sleeper: Option<std::process::Child>,
    cgroup: String,
}

impl Nested {
    fn new(cgroup: &str, hierarchy: &str, levels: usize) -> Nested {
        use nix::fcntl::{OFlag, open, openat};
        use nix::sys::stat::{Mode, mkdirat};
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let top = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(&cgroup[1..]);
        let mut nested = Nested {
            fds: vec![open(&top, flags, Mode::empty()).unwrap()],
            name: "n".repeat(200),
            sleeper: None,
            cgroup: cgroup.to_string(),
        };
        for _ in 0..levels {
            let parent = nested.fds.last().unwrap();
            mkdirat(
                parent,
                nested.name.as_str(),
                Mode::from_bits_truncate(0o755),
            )
            .unwrap();
            let fd = openat(parent, nested.name.as_str(), flags, Mode::empty()).unwrap();
            nested.fds.push(fd);
        }
        let sleeper = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let procs = openat(
            nested.fds.last().unwrap(),
            "cgroup.procs",
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let pid = sleeper.id().to_string();
        nested.sleeper = Some(sleeper);
        std::io::Write::write_all(&mut fs::File::from(procs), pid.as_bytes()).unwrap();
        nested
    }

    /// The container's cgroup directories still present, in any hierarchy.
    fn cgroup_left(&self) -> Vec<PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path().join(&self.cgroup[1..]))
            .filter(|d| d.exists())
            .collect()
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        if let Some(mut sleeper) = self.sleeper.take() {
            let _ = sleeper.kill();
            let _ = sleeper.wait();
        }
        while self.fds.len() > 1 {
            drop(self.fds.pop());
            let _ = nix::unistd::unlinkat(
                self.fds.last().unwrap(),
                self.name.as_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
        }
        self.fds.clear();
        for dir in self.cgroup_left() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A container's cgroup with sub-cgroups nested 24 levels of 200-byte names deep (a host path
/// of about 4900 bytes) in the v1 memory hierarchy, a process at the bottom that only the
/// memory hierarchy holds (no `cgroup.kill` reaches it): Delete kills it and removes the
/// whole tree in every hierarchy (before the fix: "File name too long", all left).
fn delete_kills_and_removes_sub_cgroups_nested_past_path_max(version: Version) {
    use std::time::Duration;
    if !Path::new("/sys/fs/cgroup/memory").is_dir() {
        return; // v1 hierarchies only: cgroup2 bounds the depth (cgroup.max.depth)
    }
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("deep-{}", version.tag()));
    let rootfs = Rootfs::new();
    let path = format!("/mini-e2e-deep-{}-{}", version.tag(), std::process::id());
    let mut spec = default_spec(&ns, &rootfs, "sleep 300");
    spec["linux"]["cgroupsPath"] = json!(path);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    fs::write(&config, spec.to_string()).unwrap();
    let id = ns.new_id("deep");
    let runtime = runtime_under_test();
    let config = config.to_string_lossy();
    ns.ctr(&["run", "-d", "--runtime", &runtime, "--config", &config, &id])
        .expect_success();
    assert!(ns.wait_status(&id, "RUNNING", Duration::from_secs(10)));
    let mut nested = Nested::new(&path, "memory", 24);

    ns.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .expect_success();
    assert!(ns.wait_status(&id, "STOPPED", Duration::from_secs(10)));
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    let sleeper = nested.sleeper.as_mut().unwrap();
    let mut status = None;
    assert!(wait_until(Duration::from_secs(5), || {
        status = sleeper.try_wait().unwrap();
        status.is_some()
    }));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.and_then(|s| s.signal()), Some(9), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || nested.cgroup_left().is_empty()),
        "the container's cgroup is left: {:?}",
        nested.cgroup_left()
    );
    ns.assert_nothing_left(&id);
}
