//! config-linux.md: filesystems, namespaces, id mappings, devices, cgroups, sysctl, seccomp,
//! masked and read-only paths.

use std::fs;

use serde_json::json;

use crate::bundle::{Bundle, mounts_at};

fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// config-linux.md, Default Filesystems: "The following filesystems SHOULD be made available
/// in each container's filesystem: `/proc` proc, `/sys` sysfs, `/dev/pts` devpts, `/dev/shm`
/// tmpfs".
#[test]
fn default_filesystems_are_mounted() {
    let b = Bundle::new("defaultfs", "cat /proc/self/mountinfo");
    let out = b.stdout();
    for (dir, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
    ] {
        let line = *mounts_at(&out, dir).last().unwrap_or(&"");
        assert!(line.contains(&format!(" - {fstype} ")), "{dir}: {line}");
    }
}

/// config-linux.md, Namespaces: "If `path` is not specified, the runtime MUST create a new
/// container namespace of type `type`." pid: "processes inside the container will only be
/// able to see other processes inside the same container"; network: "the container will
/// have its own network stack".
#[test]
fn each_listed_namespace_is_new() {
    let mut b = Bundle::new(
        "newns",
        "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done; \
         ls /proc | grep -c '^[0-9]'; cat /proc/net/dev | sed 1,2d | wc -l",
    );
    // The time namespace too, where the kernel has one (its offsets are another clause).
    let time = std::path::Path::new("/proc/self/ns/time").exists();
    if time {
        b.spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        b.spec["process"]["args"][2] = format!(
            "readlink /proc/self/ns/time_for_children; {}",
            b.spec["process"]["args"][2].as_str().unwrap()
        )
        .into();
    }
    let out = b.stdout();
    let mut lines: Vec<&str> = out.lines().collect();
    if time {
        // The init entered it through `time_for_children`, so its children are in it.
        assert_ne!(lines.remove(0), ns_of("self", "time"));
    }
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
        .iter()
        .enumerate()
    {
        assert_ne!(lines[i], ns_of("self", n), "{n} namespace is the host's");
    }
    // `ls` and `grep` run beside sh: 3 processes at most, none of the host's.
    assert!(lines[6].parse::<u32>().unwrap() <= 3, "{out}");
    assert_eq!(lines[7], "1", "only lo in a new network namespace: {out}");
}

/// config-linux.md, Namespaces: "If a namespace type is not specified in the `namespaces`
/// array, the container MUST inherit the runtime namespace of that type."
#[test]
fn an_unlisted_namespace_is_the_runtimes() {
    let mut b = Bundle::new(
        "inherit",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc",
    );
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network" && n["type"] != "ipc");
    assert_eq!(
        b.stdout(),
        format!("{}\n{}\n", ns_of("self", "net"), ns_of("self", "ipc"))
    );
}

/// config-linux.md, Namespaces, `path`: "The runtime MUST place the container process in the
/// namespace associated with that `path`." "This value MUST be an absolute path in the
/// runtime mount namespace."
#[test]
fn a_namespace_path_is_joined() {
    let first = Bundle::new("nsowner", "sleep 30");
    first.created();
    let pid = first.pid().to_string();
    let mut b = Bundle::new(
        "nsjoin",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc",
    );
    for ns in b.spec["linux"]["namespaces"].as_array_mut().unwrap() {
        let file = match ns["type"].as_str().unwrap() {
            "network" => "net",
            "uts" => "uts",
            "ipc" => "ipc",
            _ => continue,
        };
        ns["path"] = format!("/proc/{pid}/ns/{file}").into();
    }
    b.spec.as_object_mut().unwrap().remove("hostname");
    assert_eq!(
        b.stdout(),
        format!(
            "{}\n{}\n{}\n",
            ns_of(&pid, "net"),
            ns_of(&pid, "uts"),
            ns_of(&pid, "ipc")
        )
    );
    b.spec["linux"]["namespaces"][1]["path"] = format!("proc/{pid}/ns/net").into();
    b.create_fails();
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Namespaces: "The runtime MUST generate an error if `path` is not
/// associated with a namespace of type `type`."
#[test]
fn a_namespace_path_of_another_type_is_an_error() {
    let mut b = Bundle::new("nswrong", "true");
    for ns in b.spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = "/proc/self/ns/uts".into();
        }
    }
    let stderr = b.create_fails();
    assert!(stderr.to_lowercase().contains("net"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
    // A file that is no namespace at all.
    b.spec["linux"]["namespaces"][1]["path"] = "/etc/hostname".into();
    b.create_fails();
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Namespaces: "If a `namespaces` field contains duplicated namespaces with
/// same `type`, the runtime MUST generate an error."
#[test]
fn duplicated_namespaces_are_an_error() {
    let mut b = Bundle::new("nsdup", "true");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "pid"}));
    let stderr = b.create_fails();
    assert!(stderr.contains("pid"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, User namespace mappings: "`uidMappings` … describes the user namespace
/// uid mappings from the host to the container. `gidMappings` …" ; "The runtime SHOULD NOT
/// modify the ownership of referenced filesystems to realize the mapping."
#[test]
fn user_namespace_mappings_are_applied_without_chowning_the_rootfs() {
    let mut b = Bundle::new("userns", "cat /proc/self/uid_map /proc/self/gid_map; id -u");
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // Without a cgroup namespace sysfs is not ours to mount; keep the test to the mappings.
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "sysfs" && m["type"] != "cgroup");
    let out = b.stdout();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["0", "100000", "65536"], ["0", "200000", "65536"]]);
    assert_eq!(out.lines().nth(2), Some("0"));
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(b.rootfs().join("bin/busybox")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the rootfs was chowned");
}

/// config-linux.md, Default Devices: "In addition to any devices configured with this
/// setting, the runtime MUST also supply: `/dev/null`, `/dev/zero`, `/dev/full`,
/// `/dev/random`, `/dev/urandom`, `/dev/tty`, `/dev/ptmx` (a bind-mount or symlink of the
/// container's ptmx)". (`/dev/console` with a terminal: cli.rs's terminal test.)
#[test]
fn default_devices_are_supplied() {
    let b = Bundle::new(
        "defdev",
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; \
         readlink /dev/ptmx || stat -c '%t:%T' /dev/ptmx; head -c 4 /dev/zero | wc -c",
    );
    let out = b.stdout();
    let expected = [
        "/dev/null character special file 1:3",
        "/dev/zero character special file 1:5",
        "/dev/full character special file 1:7",
        "/dev/random character special file 1:8",
        "/dev/urandom character special file 1:9",
        "/dev/tty character special file 5:0",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..6], &expected);
    assert!(
        lines[6] == "pts/ptmx" || lines[6] == "/dev/pts/ptmx" || lines[6] == "5:2",
        "{out}"
    );
    assert_eq!(lines[7], "4", "the default devices are usable");
}

/// config-linux.md, Default Devices: "`/dev/console` is set up if `terminal` is enabled in
/// the config by bind mounting the pseudoterminal pty to `/dev/console`." config.md,
/// `terminal`: "a pseudoterminal pair is allocated for the process and the pseudoterminal pty
/// is duplicated on the process's standard streams".
#[test]
fn a_terminal_is_on_stdio_and_dev_console() {
    let mut b = Bundle::new(
        "console",
        "tty; stat -L -c '%t:%T' /dev/console /proc/self/fd/0 /proc/self/fd/2; \
         grep -c ' /dev/console ' /proc/self/mountinfo",
    );
    let out = b.terminal_output();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("/dev/pts/"), "{out}");
    // The pty (major 136 = 0x88) on the console and on stdin and stderr: the same device.
    assert!(lines[1].starts_with("88:"), "{out}");
    assert_eq!(lines[1], lines[2], "{out}");
    assert_eq!(lines[1], lines[3], "{out}");
    assert_eq!(lines[4], "1", "/dev/console is not a bind mount: {out}");
}

/// (Security, with the clause above) An image whose `/dev/console` is a symlink, here to a
/// file of the bundle standing for a host file: the pty is not mounted through it, and
/// create fails naming `/dev/console` (CVE-2025-52565).
#[test]
fn a_dev_console_symlink_in_the_image_is_refused() {
    let mut b = Bundle::new("consolelink", "true");
    // No tmpfs on /dev: the image's own /dev is what the container gets.
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    let victim = b.rootfs().join("victim");
    fs::write(&victim, "untouched").unwrap();
    fs::create_dir_all(b.rootfs().join("dev")).unwrap();
    std::os::unix::fs::symlink("/victim", b.rootfs().join("dev/console")).unwrap();
    let (out, _) = b.create_with_terminal();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "create followed the symlink: {stderr}"
    );
    assert!(stderr.contains("/dev/console"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
}

/// (With the clause above) runc sets up the console before it makes the root read-only: a
/// terminal container whose root is read-only and whose `/dev` is the image's own (no tmpfs
/// on it) still gets its pty on `/dev/console`.
#[test]
fn a_read_only_root_without_a_dev_tmpfs_still_gets_its_console() {
    let mut b = Bundle::new("roconsole", "grep -c ' /dev/console ' /proc/self/mountinfo");
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    b.spec["root"]["readonly"] = true.into();
    fs::create_dir_all(b.rootfs().join("dev")).unwrap();
    let out = b.terminal_output();
    assert_eq!(out.trim(), "1", "/dev/console is not a bind mount: {out}");
}

/// config-linux.md, Devices: "`type` … `c`, `b`, `u` or `p`", "`path` … full path to device
/// inside container", "`major, minor` … REQUIRED unless `type` is `p`", "`fileMode` … file
/// mode for the device", "`uid` … `gid` … id of device owner/group in the container
/// namespace". "`devices` (array of objects, OPTIONAL) lists devices that MUST be available
/// in the container."
#[test]
fn configured_devices_are_created_as_described() {
    let mut b = Bundle::new(
        "devices",
        "stat -c '%n %F %t:%T %a %u %g' /dev/conf-null /dev/conf-loop /dev/conf-u /dev/conf-p",
    );
    b.spec["linux"]["devices"] = json!([
        {"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 12, "gid": 34},
        {"path": "/dev/conf-loop", "type": "b", "major": 7, "minor": 0, "fileMode": 384},
        {"path": "/dev/conf-u", "type": "u", "major": 1, "minor": 5},
        {"path": "/dev/conf-p", "type": "p"}
    ]);
    let out = b.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "/dev/conf-null character special file 1:3 660 12 34"
    );
    assert_eq!(lines[1], "/dev/conf-loop block special file 7:0 600 0 0");
    assert!(
        lines[2].starts_with("/dev/conf-u character special file 1:5"),
        "{out}"
    );
    assert!(lines[3].starts_with("/dev/conf-p fifo"), "{out}");
}

/// config-linux.md, Devices, `path`: "If a file already exists at `path` that does not match
/// the requested device, the runtime MUST generate an error."
#[test]
fn a_device_path_taken_by_another_file_is_an_error() {
    let mut b = Bundle::new("devclash", "true");
    // A regular file at the device's path once the mounts are made.
    let file = b.path().join("regular");
    fs::write(&file, "a regular file").unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/dev/taken", "type": "none", "source": file, "options": ["bind"]}),
    );
    b.spec["linux"]["devices"] =
        json!([{"path": "/dev/taken", "type": "c", "major": 1, "minor": 3}]);
    let stderr = b.create_fails();
    assert!(stderr.contains("/dev/taken"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
    assert_eq!(fs::read_to_string(&file).unwrap(), "a regular file");
}

/// config-linux.md, Cgroups Path: "In the case of an absolute path (starting with `/`), the
/// runtime MUST take the path to be relative to the cgroups mount point." "The cgroups will
/// be created if they don't exist." "If the value is specified, the runtime MUST
/// consistently attach to the same place in the cgroups hierarchy given the same value of
/// `cgroupsPath`." "Runtimes MAY consider certain `cgroupsPath` values to be invalid, and
/// MUST generate an error if this is the case."
#[test]
fn cgroups_path_is_where_the_container_is_placed() {
    let mut b = Bundle::new("cgpath", "sleep 30");
    b.spec["linux"]["cgroupsPath"] = format!("/mini-conf-{}/placed", std::process::id()).into();
    for _ in 0..2 {
        b.created();
        let pid = b.pid();
        let cgroup = b.cgroup();
        for dir in cgroup.dirs() {
            // Absolute: under the hierarchy's mount point, not under our own cgroup.
            assert_eq!(
                dir.dir,
                dir.mount_point
                    .join(format!("mini-conf-{}/placed", std::process::id()))
            );
            let procs = fs::read_to_string(dir.dir.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|p| p == pid.to_string()),
                "{}: {procs}",
                dir.dir.display()
            );
        }
        b.ok(&["delete", "--force", &b.id]);
    }
    for dir in b.cgroup().dirs() {
        let _ = fs::remove_dir(dir.dir.parent().unwrap());
    }
    b.spec["linux"]["cgroupsPath"] = "/../../escape".into();
    let stderr = b.create_fails();
    assert!(stderr.contains("cgroupsPath"), "{stderr}");
}

/// config-linux.md, Control groups: "A runtime MAY, during a particular container operation,
/// such as create, … check if the container cgroup is fit for purpose, and MUST generate an
/// error if such a check fails. For example, … (for create operation) a non-empty cgroup."
#[test]
fn create_into_an_occupied_cgroup_is_an_error() {
    let path = format!("/mini-conf-busy-{}", std::process::id());
    let mut first = Bundle::new("busy1", "sleep 30");
    first.spec["linux"]["cgroupsPath"] = path.clone().into();
    first.created();
    // A sub-cgroup the first container's processes made: not the second's to remove.
    let subs: Vec<_> = first.cgroup().dirs().map(|d| d.dir.join("sub")).collect();
    for sub in &subs {
        fs::create_dir(sub).unwrap();
    }
    let mut second = Bundle::new("busy2", "true");
    second.spec["linux"]["cgroupsPath"] = path.into();
    let started = std::time::Instant::now();
    let stderr = second.create_fails();
    let took = started.elapsed();
    let subs_kept = subs.iter().all(|s| s.exists());
    for sub in &subs {
        let _ = fs::remove_dir(sub);
    }
    assert!(stderr.contains("cgroup"), "{stderr}");
    assert!(
        subs_kept,
        "the refused create removed the other container's sub-cgroups"
    );
    assert!(took.as_secs() < 5, "the refusal took {took:?}");
    assert_eq!(
        first.status(),
        "created",
        "the first container was disturbed"
    );
    assert!(!second.state_dir().exists());
}

/// (With the clause above) A create refused because the cgroup holds another container's
/// processes (no sub-cgroups this time) is refused at once, and leaves that cgroup alone.
#[test]
fn create_into_an_occupied_leaf_cgroup_is_refused_at_once() {
    let path = format!("/mini-conf-busyleaf-{}", std::process::id());
    let mut first = Bundle::new("busyleaf1", "sleep 30");
    first.spec["linux"]["cgroupsPath"] = path.clone().into();
    first.created();
    let mut second = Bundle::new("busyleaf2", "true");
    second.spec["linux"]["cgroupsPath"] = path.into();
    let started = std::time::Instant::now();
    let stderr = second.create_fails();
    let took = started.elapsed();
    assert!(stderr.contains("cgroup"), "{stderr}");
    assert!(took.as_secs() < 5, "the refusal took {took:?}");
    assert_eq!(
        first.status(),
        "created",
        "the first container was disturbed"
    );
}

/// runtime.md, Delete: "resources associated with the container, but not created by this
/// container, MUST NOT be deleted" — here a failed create into a cgroup that existed before
/// (empty, with a sub-cgroup of its owner's, and a cpu quota the kernel refuses): the create
/// fails (refused for the sub-cgroup first), and the cgroup and its sub-cgroup stay.
#[test]
fn a_failed_create_leaves_a_cgroup_it_did_not_make() {
    let path = format!("/mini-conf-theirs-{}", std::process::id());
    let mut b = Bundle::new("theirs", "true");
    b.spec["linux"]["cgroupsPath"] = path.into();
    let theirs: Vec<_> = b.cgroup().dirs().map(|d| d.dir.clone()).collect();
    for dir in &theirs {
        fs::create_dir_all(dir.join("child")).unwrap();
    }
    // Below the kernel's minimum of 1 ms: the write fails after the cgroup is joined.
    b.spec["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 500, "period": 100000});
    let stderr = b.create_fails();
    let kept = theirs.iter().all(|d| d.join("child").is_dir());
    for dir in &theirs {
        let _ = fs::remove_dir(dir.join("child"));
        let _ = fs::remove_dir(dir);
    }
    assert!(stderr.contains("cpu"), "{stderr}");
    assert!(kept, "the failed create removed a cgroup it did not make");
}

/// A cgroup made by the test (as another party would), in every hierarchy, with the
/// sub-cgroups named; removed on drop.
struct TheirCgroup {
    dirs: Vec<std::path::PathBuf>,
    subs: Vec<&'static str>,
}

impl TheirCgroup {
    fn new(b: &Bundle, subs: &[&'static str]) -> TheirCgroup {
        let dirs: Vec<_> = b.cgroup().dirs().map(|d| d.dir.clone()).collect();
        let theirs = TheirCgroup {
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

/// (With the clause above) A failed create into an *empty leaf* cgroup that existed before
/// leaves it: only what the runtime made goes. And a container placed in such a cgroup
/// leaves it at delete, emptied of what the container put there.
#[test]
fn a_failed_create_leaves_an_empty_leaf_cgroup_it_did_not_make() {
    let mut b = Bundle::new("theirleaf", "true");
    b.spec["linux"]["cgroupsPath"] = format!("/mini-conf-theirleaf-{}", std::process::id()).into();
    let theirs = TheirCgroup::new(&b, &[]);
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100000});
    let stderr = b.create_fails();
    assert!(stderr.contains("cpu"), "{stderr}");
    assert!(
        theirs.intact(),
        "the failed create removed an empty cgroup it did not make"
    );
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000});
    b.spec["process"]["args"] = json!(["sleep", "30"]);
    b.created();
    b.ok(&["delete", "--force", &b.id]);
    assert!(
        theirs.intact(),
        "delete removed a cgroup the container did not make"
    );
}

/// config-linux.md, Control groups: "… MUST generate an error if such a check fails" — a
/// cgroup with sub-cgroups (empty ones) is refused at create, naming it: delete would remove
/// them and kill what joined them, though they are not the container's.
#[test]
fn create_into_a_cgroup_with_sub_cgroups_is_refused_naming_it() {
    let path = format!("/mini-conf-withsub-{}", std::process::id());
    let mut b = Bundle::new("withsub", "sleep 30");
    b.spec["linux"]["cgroupsPath"] = path.clone().into();
    let theirs = TheirCgroup::new(&b, &["sub"]);
    let stderr = b.create_fails();
    assert!(
        stderr.contains("linux.cgroupsPath") && stderr.contains(&path[1..]),
        "{stderr}"
    );
    assert!(stderr.contains("sub-cgroup"), "{stderr}");
    assert!(
        theirs.intact(),
        "the refused create removed the sub-cgroups"
    );
    assert!(!b.state_dir().exists());
}

/// config-linux.md, Cgroup ownership: "Runtimes SHOULD NOT change the ownership of container
/// cgroups when cgroups v1 is in use." (a container of a non-root user on this v1 host)
#[test]
fn cgroups_are_not_chowned_on_v1() {
    use std::os::unix::fs::MetadataExt;
    let mut b = Bundle::new("cgowner", "sleep 30");
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.created();
    for dir in b.cgroup().dirs() {
        for file in [dir.dir.clone(), dir.dir.join("cgroup.procs")] {
            let meta = fs::metadata(&file).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", file.display());
        }
    }
}

/// config-linux.md, Control groups: "You can configure a container's cgroups via the
/// `resources` field of the Linux configuration." Memory: "`limit` … sets limit of memory
/// usage in bytes"; CPU: "`shares` … `quota` … `period`"; pids: "`limit` … specifies the
/// maximum number of tasks in the cgroup". (What the kernel holds in the container's
/// cgroup files.)
#[test]
fn resources_are_written_to_the_containers_cgroup() {
    let mut b = Bundle::new("resources", "sleep 30");
    b.spec["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    b.spec["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 20000, "period": 100000});
    b.spec["linux"]["resources"]["pids"] = json!({"limit": 64});
    b.created();
    let cgroup = b.cgroup();
    let read = |controller: &str, file: &str| {
        fs::read_to_string(cgroup.v1_path(controller).unwrap().join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("pids", "pids.max"), "64");
}

/// config-linux.md, Memory: "Values for memory specify the limit in bytes, or `-1` for
/// unlimited memory."
#[test]
fn memory_minus_one_is_unlimited() {
    let mut b = Bundle::new("memunlimited", "sleep 30");
    b.spec["linux"]["resources"]["memory"] = json!({"limit": -1, "swap": -1});
    b.created();
    let dir = b.cgroup().v1_path("memory").unwrap().to_owned();
    let limit: u64 = fs::read_to_string(dir.join("memory.limit_in_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The kernel's "unlimited": PAGE_COUNTER_MAX pages, in bytes.
    assert!(limit >= 1 << 62, "{limit}");
}

/// config-linux.md, Allowed Device List: "`allow` (boolean, REQUIRED) whether the entry is
/// allowed or denied", "`type` … `major`, `minor` … `access` … `r`(ead), `w`(rite), and
/// `m`(knod)." (A device the runtime created is still unusable where the list denies it.)
#[test]
fn the_device_allow_list_is_enforced_in_order() {
    // 99:99 has no driver: opening it gives ENXIO where the cgroup allows it, EPERM where not.
    // The node is bound in from the host: the devices of `linux.devices` are always allowed.
    let mut b = Bundle::new("devcgroup", "head -c 1 /dev/conf-dev 2>&1");
    let node = b.path().join("node");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(99, 99),
    )
    .unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/dev/conf-dev", "type": "none", "source": node, "options": ["bind"]}),
    );
    b.spec["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 99, "minor": 99, "access": "rw"},
        {"allow": false, "type": "c", "major": 99, "minor": 99, "access": "r"}
    ]);
    let out = b.run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Operation not permitted"), "{out:?}");
    // Without the last entry the earlier allow holds.
    b.spec["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .pop();
    let out = b.run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("No such device or address"), "{out:?}");
}

/// config-linux.md, Unified: "Each key in the map refers to a file in the cgroup unified
/// hierarchy. … The runtime MUST generate an error when the configuration refers to a
/// cgroup controller that is not present or that cannot be enabled." (On this host's
/// hybrid layout no controller is in the unified hierarchy.)
#[test]
fn unified_keys_for_a_missing_controller_are_an_error() {
    let mut b = Bundle::new("unified", "true");
    b.spec["linux"]["resources"]["unified"] = json!({"bogus.max": "1"});
    let stderr = b.create_fails();
    assert!(
        stderr.contains("bogus.max") || stderr.contains("unified"),
        "{stderr}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Sysctl: "`sysctl` (object, OPTIONAL) allows kernel parameters to be
/// modified at runtime for the container." (namespaced parameters, set in the container's
/// own namespaces; the host's are unchanged)
#[test]
fn sysctls_are_set_in_the_container() {
    let mut b = Bundle::new(
        "sysctl",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax",
    );
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"});
    let host_msgmax = fs::read_to_string("/proc/sys/kernel/msgmax").unwrap();
    assert_eq!(b.stdout(), "1\n12345\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/msgmax").unwrap(),
        host_msgmax
    );
}

/// config-linux.md, Seccomp: "`defaultAction` (string, REQUIRED) - the default action for
/// seccomp." "`names` … the names of the syscalls." "`action` … the action for seccomp
/// rules." "`errnoRet` (uint, OPTIONAL) - the errno return code to use. Some actions like
/// `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` allow to specify the errno code to return. When the action doesn't support an errno, the runtime MUST print and
/// error and fail. If not specified its default value is `EPERM`." (`errnoRet` and
/// `defaultErrnoRet` alike)
#[test]
fn seccomp_rules_and_errno_returns() {
    let mut b = Bundle::new(
        "seccomp",
        "mkdir /a 2>&1; touch /b 2>&1; ln -s x /c 2>&1; echo done",
    );
    fs::create_dir_all(b.rootfs().join("bin")).unwrap();
    let _ = std::os::unix::fs::symlink("busybox", b.rootfs().join("bin/ln"));
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}
        ]
    });
    let out = b.stdout();
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.ends_with("done\n"));
    assert!(b.rootfs().join("b").exists() && !b.rootfs().join("a").exists());
    // An errnoRet with an action that returns no errno is an error.
    b.spec["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_KILL".into();
    b.spec["linux"]["seccomp"]["syscalls"][0]["errnoRet"] = 1.into();
    let stderr = b.create_fails();
    assert!(
        stderr.contains("syscalls[0].action") && stderr.contains("errnoRet"),
        "{stderr}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
    // The same for defaultErrnoRet with a default action that returns no errno.
    b.spec["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_ERRNO".into();
    b.spec["linux"]["seccomp"]["defaultErrnoRet"] = 1.into();
    let stderr = b.create_fails();
    assert!(
        stderr.contains("defaultAction") && stderr.contains("errnoRet"),
        "{stderr}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Seccomp: "`names` MUST contain at least one entry." "A valid list of
/// constants as of libseccomp v2.5.0 is shown below." (an empty `names` and an unknown
/// action are invalid values: an error naming seccomp; an unknown syscall name is skipped,
/// as runc does, so one profile serves kernels of different ages)
#[test]
fn invalid_seccomp_rules_are_errors() {
    for rule in [
        json!({"names": [], "action": "SCMP_ACT_ERRNO"}),
        json!({"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}),
    ] {
        let mut b = Bundle::new("badseccomp", "true");
        b.spec["linux"]["seccomp"] =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule.clone()]});
        let stderr = b.create_fails();
        assert!(stderr.contains("seccomp"), "{rule}: {stderr}");
        assert_eq!(b.leftovers(), Vec::<String>::new());
    }
}

/// config-linux.md, Masked Paths: "`maskedPaths` … will mask over the provided paths inside
/// the container so that they cannot be read. The values MUST be absolute paths in the
/// container namespace."
#[test]
fn masked_paths_cannot_be_read() {
    let mut b = Bundle::new(
        "masked",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; cat /secret/file 2>&1 | wc -c; \
         cat /secret-file | wc -c",
    );
    fs::create_dir_all(b.rootfs().join("secret")).unwrap();
    fs::write(b.rootfs().join("secret/file"), "hidden").unwrap();
    fs::write(b.rootfs().join("secret-file"), "hidden").unwrap();
    b.spec["linux"]["maskedPaths"] = json!([
        "/proc/timer_list",
        "/sys/firmware",
        "/secret",
        "/secret-file"
    ]);
    let out = b.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    assert_ne!(lines[2], "6", "the masked directory's file was read");
    assert_eq!(lines[3], "0");
}

/// config-linux.md, Readonly Paths: "`readonlyPaths` … will set the provided paths as
/// readonly inside the container. The values MUST be absolute paths in the container
/// namespace."
#[test]
fn readonly_paths_cannot_be_written() {
    let mut b = Bundle::new(
        "rodirs",
        "(echo 1 > /proc/sys/kernel/domainname) 2>&1; touch /data/new 2>&1; \
         touch /data/sub 2>&1; cat /data/file",
    );
    fs::create_dir_all(b.rootfs().join("data")).unwrap();
    fs::write(b.rootfs().join("data/file"), "still-readable\n").unwrap();
    b.spec["linux"]["readonlyPaths"] = json!(["/proc/sys", "/data"]);
    let out = b.stdout();
    assert_eq!(out.matches("Read-only file system").count(), 3, "{out}");
    assert!(out.ends_with("still-readable\n"));
    assert!(!b.rootfs().join("data/new").exists());
}

/// config-linux.md, Masked Paths and Readonly Paths: "The values MUST be absolute paths in
/// the container namespace." (a relative entry is an invalid value: an error)
#[test]
fn relative_masked_or_readonly_paths_are_errors() {
    for field in ["maskedPaths", "readonlyPaths"] {
        let mut b = Bundle::new("relpaths", "true");
        b.spec["linux"][field] = json!(["proc/kcore"]);
        let stderr = b.create_fails();
        assert!(stderr.contains(field), "{stderr}");
        assert_eq!(b.leftovers(), Vec::<String>::new());
    }
}

/// config-linux.md, CPU: "`quota` … MUST be no smaller than `burst`"; "`burst` … MUST be no
/// larger than any positive `quota`" (runtimes may refuse such a spec): refused before
/// anything is made, naming the field.
#[test]
fn a_cpu_burst_larger_than_the_quota_is_an_error() {
    let mut b = Bundle::new("burst", "true");
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000, "burst": 20000});
    let stderr = b.create_fails();
    assert!(stderr.contains("linux.resources.cpu.burst"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Block IO, `weightDevice`: "You MUST specify at least one of `weight` or
/// `leafWeight` in a given entry": an entry with neither is refused, naming it.
#[test]
fn a_weight_device_without_a_weight_is_an_error() {
    let mut b = Bundle::new("weightdev", "true");
    b.spec["linux"]["resources"]["blockIO"] = json!({"weightDevice": [{"major": 8, "minor": 0}]});
    let stderr = b.create_fails();
    assert!(
        stderr.contains("linux.resources.blockIO.weightDevice[0]"),
        "{stderr}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config-linux.md, Memory, `checkBeforeUpdate`: "If set to true, the runtime … MUST reject
/// the new limit" when it is below the current usage; the old limit stays.
#[test]
fn an_update_below_the_memory_usage_is_rejected_with_check_before_update() {
    let b = Bundle::new("checkupdate", "sleep 30");
    b.created();
    b.ok(&["start", &b.id]);
    let cgroup = b.cgroup();
    let (dir, limit_file) = match cgroup.v1_path("memory") {
        Some(dir) => (dir.to_path_buf(), "memory.limit_in_bytes"),
        None => (cgroup.unified_path().unwrap().to_path_buf(), "memory.max"),
    };
    let before = fs::read_to_string(dir.join(limit_file)).unwrap();
    let update = |check: bool| {
        let doc = json!({"memory": {"limit": 4096, "checkBeforeUpdate": check}});
        let path = b.path().join("update.json");
        fs::write(&path, doc.to_string()).unwrap();
        b.mini(&["update", "--resources", path.to_str().unwrap(), &b.id])
    };
    let out = update(true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("linux.resources.memory.limit") && stderr.contains("checkBeforeUpdate"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(dir.join(limit_file)).unwrap(), before);
}
