//! Runtime integration (root): fields of config-linux.md through the `mini` command on a
//! busybox bundle, checked from inside the container: no_pivot_root, rootfsPropagation,
//! personality, timeOffsets, LSM labels and Intel RDT where the host lacks them, and the
//! cgroup v1 memory/swap limits written in an order the kernel accepts.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const MINI: &str = env!("CARGO_BIN_EXE_mini");

/// A busybox bundle from `mini spec` with a private `--root`; force-deleted on drop.
struct Bundle {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    id: String,
}

impl Bundle {
    /// A bundle running `sh -c script`, with `edit` applied to its config.json.
    fn new(name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        let dir = common::temp_dir("mini-spec-");
        let root = common::temp_dir("mini-root-");
        common::busybox_rootfs(
            "these tests",
            &dir.path().join("rootfs"),
            &[
                "sh", "cat", "grep", "uname", "ls", "stat", "touch", "echo", "mount", "umount",
            ],
        );
        let b = Bundle {
            dir,
            root,
            id: format!("spec-{name}-{}", std::process::id()),
        };
        let out = b.mini(&["spec", "--bundle", b.dir.path().to_str().unwrap()]);
        assert!(out.status.success(), "mini spec: {out:?}");
        let path = b.dir.path().join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        spec["process"]["args"] = json!(["sh", "-c", script]);
        spec["process"]["terminal"] = json!(false);
        edit(&mut spec);
        fs::write(&path, spec.to_string()).unwrap();
        b
    }

    fn mini(&self, args: &[&str]) -> Output {
        Command::new(MINI)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `mini run [flags] ID` in the foreground: the container's output and status.
    fn run(&self, flags: &[&str]) -> Output {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.push(&self.id);
        self.mini(&args)
    }

    /// [`Bundle::run`], which must succeed; its stdout.
    fn run_ok(&self, flags: &[&str]) -> String {
        let out = self.run(flags);
        assert!(out.status.success(), "mini run {flags:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`Bundle::run`], which must fail before the container runs; its stderr.
    fn run_refused(&self) -> String {
        let out = self.run(&[]);
        assert!(!out.status.success(), "must be refused: {out:?}");
        assert!(out.stdout.is_empty(), "the container ran: {out:?}");
        assert!(
            !self.root.path().join(&self.id).exists(),
            "state left behind"
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

/// The optional fields (propagation tags) of the `/` line of a mountinfo.
fn root_mount(mountinfo: &str) -> String {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {mountinfo}"));
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-").unwrap();
    fields[6..sep].join(" ")
}

/// `mini run --no-pivot` (runc's flag, for roots pivot_root refuses): the container runs in
/// its rootfs, with its own /proc and no other full procfs reachable. pivot_root and
/// MS_MOVE + chroot look the same from inside, so this checks that the flag is honoured and
/// leaves a working container.
#[test]
fn no_pivot_moves_the_rootfs_onto_slash_and_chroots() {
    let b = Bundle::new("nopivot", "cat /proc/self/mountinfo; ls /", |_| {});
    let out = b.run_ok(&["--no-pivot"]);
    assert!(
        out.lines().any(|l| l == "bin"),
        "not the bundle's root: {out}"
    );
    let full_proc = out
        .lines()
        .filter(|l| l.contains(" - proc ") && l.split(' ').nth(3) == Some("/"))
        .count();
    assert_eq!(full_proc, 1, "{out}");
    assert!(b.root.path().read_dir().unwrap().next().is_none());
}

#[test]
fn rootfs_propagation_is_set_on_the_new_root() {
    for (mode, want) in [
        ("shared", Some("shared:")),
        ("rshared", Some("shared:")),
        ("unbindable", Some("unbindable")),
        ("private", None),
        ("rprivate", None),
    ] {
        let b = Bundle::new(&format!("prop-{mode}"), "cat /proc/self/mountinfo", |s| {
            s["linux"]["rootfsPropagation"] = json!(mode);
        });
        let tags = root_mount(&b.run_ok(&[]));
        match want {
            Some(tag) => assert!(tags.contains(tag), "{mode}: / has {tags:?}"),
            None => assert!(
                !tags.contains("shared:") && !tags.contains("unbindable"),
                "{mode}: / has {tags:?}"
            ),
        }
    }
    let b = Bundle::new("prop-bad", "true", |s| {
        s["linux"]["rootfsPropagation"] = json!("sideways");
    });
    assert!(b.run_refused().contains("linux.rootfsPropagation"));
}

#[test]
#[cfg(target_arch = "x86_64")]
fn personality_linux32_makes_uname_say_i686() {
    let b = Bundle::new("pers32", "uname -m", |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    assert_eq!(b.run_ok(&[]), "i686\n");
    let b = Bundle::new("pers64", "uname -m", |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX"});
    });
    assert_eq!(b.run_ok(&[]), "x86_64\n");
    let b = Bundle::new("persflag", "uname -r", |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["UNAME26"]});
    });
    // UNAME26 reports a 2.6.x release to old programs.
    assert!(b.run_ok(&[]).starts_with("2.6."));
    let b = Bundle::new("persbad", "true", |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["FLY"]});
    });
    let err = b.run_refused();
    assert!(
        err.contains("linux.personality.flags[0]") && err.contains("FLY"),
        "{err}"
    );
}

/// Adds a new time namespace to the spec.
fn with_time_namespace(s: &mut Value) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
}

#[test]
fn time_offsets_move_the_clocks_of_the_containers_time_namespace() {
    const TEN_DAYS: i64 = 10 * 86400;
    let b = Bundle::new(
        "timens",
        "cat /proc/self/timens_offsets /proc/uptime",
        |s| {
            with_time_namespace(s);
            s["linux"]["timeOffsets"] = json!({
                "monotonic": {"secs": TEN_DAYS, "nanosecs": 5},
                "boottime": {"secs": TEN_DAYS},
            });
        },
    );
    let out = b.run_ok(&[]);
    let offsets: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let ten_days = TEN_DAYS.to_string();
    assert!(
        offsets.contains(&vec!["monotonic", &ten_days, "5"]),
        "{out}"
    );
    assert!(offsets.contains(&vec!["boottime", &ten_days, "0"]), "{out}");
    let uptime: f64 = out
        .lines()
        .last()
        .and_then(|l| l.split(' ').next())
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {out}"));
    let host: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        uptime >= host + TEN_DAYS as f64 - 60.0,
        "uptime {uptime}, host {host}"
    );

    let b = Bundle::new("timens-none", "true", |s| {
        s["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
    });
    assert!(b.run_refused().contains("linux.timeOffsets"));
    let b = Bundle::new("timens-clock", "true", |s| {
        with_time_namespace(s);
        s["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
    });
    let err = b.run_refused();
    assert!(
        err.contains("linux.timeOffsets[") && err.contains("realtime"),
        "{err}"
    );
}

#[test]
fn lsm_labels_and_intel_rdt_are_refused_by_name_where_the_host_lacks_them() {
    type Case = (&'static str, bool, fn(&mut Value));
    let cases: [Case; 4] = [
        (
            "process.apparmorProfile",
            Path::new("/sys/kernel/security/apparmor").exists(),
            |s| s["process"]["apparmorProfile"] = json!("docker-default"),
        ),
        (
            "process.selinuxLabel",
            Path::new("/sys/fs/selinux/enforce").exists(),
            |s| s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0"),
        ),
        (
            "linux.mountLabel",
            Path::new("/sys/fs/selinux/enforce").exists(),
            |s| s["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0"),
        ),
        (
            "linux.intelRdt",
            Path::new("/sys/fs/resctrl").exists(),
            |s| s["linux"]["intelRdt"] = json!({"closID": "mini"}),
        ),
    ];
    for (i, (field, host_has_it, edit)) in cases.into_iter().enumerate() {
        if host_has_it {
            eprintln!("{field}: the host has it; not checked");
            continue;
        }
        let b = Bundle::new(&format!("lsm{i}"), "echo ran", edit);
        let err = b.run_refused();
        assert!(err.contains(field) && err.contains("host"), "{err}");
    }
}

/// cgroup v1 checks memory.limit_in_bytes against memory.memsw.limit_in_bytes on every
/// write: raising and lowering both limits, and an unlimited memory limit with a finite
/// memory+swap one (memory -1, swap N: written as memory N), must all be accepted.
#[test]
fn v1_memory_and_swap_updates_are_written_in_an_order_the_kernel_accepts() {
    let cgroup = runtime_core::cgroups::CgroupManager::new("probe", None).unwrap();
    let Some(memory) = cgroup.v1_path("memory") else {
        eprintln!("no cgroup v1 memory hierarchy here; not checked");
        return;
    };
    if !memory
        .parent()
        .unwrap()
        .join("memory.memsw.limit_in_bytes")
        .exists()
    {
        eprintln!("no swap accounting (memory.memsw.*) here; not checked");
        return;
    }
    const MIB: i64 = 1 << 20;
    let b = Bundle::new("memsw", "sleep 30", |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB, "swap": 128 * MIB});
    });
    let status = Command::new(MINI)
        .arg("--root")
        .arg(b.root.path())
        .args(["run", "--detach", &b.id])
        .current_dir(b.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let container = runtime_core::cgroups::CgroupManager::new(&b.id, None).unwrap();
    let dir = container.v1_path("memory").unwrap().to_path_buf();
    let read = |file: &str| -> i64 {
        fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let limits = || {
        (
            read("memory.limit_in_bytes"),
            read("memory.memsw.limit_in_bytes"),
        )
    };
    assert_eq!(limits(), (64 * MIB, 128 * MIB));
    for (limit, swap, want) in [
        // Raising both above the memsw limit in place: memsw first.
        (256 * MIB, 512 * MIB, (256 * MIB, 512 * MIB)),
        // Lowering both below the memory limit in place: memory first.
        (32 * MIB, 48 * MIB, (32 * MIB, 48 * MIB)),
        // Unlimited memory, finite memory+swap, raising.
        (-1, 96 * MIB, (96 * MIB, 96 * MIB)),
        // The same, lowering.
        (-1, 40 * MIB, (40 * MIB, 40 * MIB)),
    ] {
        let doc = json!({"memory": {"limit": limit, "swap": swap}}).to_string();
        let path = b.dir.path().join("resources.json");
        fs::write(&path, doc).unwrap();
        let out = b.mini(&["update", "--resources", path.to_str().unwrap(), &b.id]);
        assert!(
            out.status.success(),
            "update memory {limit} swap {swap}: {out:?}"
        );
        assert_eq!(limits(), want, "after memory {limit} swap {swap}");
    }
}

/// A host directory with a tmpfs mounted below it (`sub`), for recursive bind mounts;
/// unmounted and removed on drop.
struct Volume {
    dir: tempfile::TempDir,
}

impl Volume {
    fn new() -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("mini-vol-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("file"), "top").unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir.path().join("sub"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        Volume { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.dir.path().join("sub"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

/// Adds a mount of `source` at /mnt with `options` (and `extra` fields) to the spec.
fn add_mount(s: &mut Value, source: &str, options: &[&str], extra: Value) {
    let mut m = json!({
        "destination": "/mnt",
        "type": "bind",
        "source": source,
        "options": options,
    });
    if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
        m.extend(extra);
    }
    s["mounts"].as_array_mut().unwrap().push(m);
}

#[test]
fn rro_makes_every_submount_of_a_recursive_bind_read_only() {
    let vol = Volume::new();
    let script = "touch /mnt/sub/x 2>/dev/null && echo sub-writable || echo sub-read-only; \
                  touch /mnt/y 2>/dev/null && echo top-writable || echo top-read-only";
    // `ro` on an rbind: the kernel makes only the top mount read-only.
    let b = Bundle::new("ro", script, |s| {
        add_mount(s, vol.path(), &["rbind", "ro"], json!({}))
    });
    assert_eq!(b.run_ok(&[]), "sub-writable\ntop-read-only\n");
    let b = Bundle::new("rro", script, |s| {
        add_mount(s, vol.path(), &["rbind", "rro"], json!({}))
    });
    assert_eq!(b.run_ok(&[]), "sub-read-only\ntop-read-only\n");
    // Nothing of the container's remounts reached the host's mounts.
    fs::write(vol.dir.path().join("sub/host"), "w").unwrap();
}

#[test]
fn recursive_access_time_options_reach_every_submount() {
    let vol = Volume::new();
    // The mount options (field 6) of /mnt and /mnt/sub as the container sees them.
    let script = "awk '$5 == \"/mnt\" || $5 == \"/mnt/sub\" { print $5, $6 }' /proc/self/mountinfo";
    let modes = |options: &[&str]| {
        let b = Bundle::new("atime", script, |s| {
            add_mount(s, vol.path(), options, json!({}))
        });
        let out = b.run_ok(&[]);
        let lines: Vec<(String, Vec<String>)> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(at, opts)| (at.to_string(), opts.split(',').map(String::from).collect()))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        lines
    };
    // `noatime` on an rbind: the kernel changes only the top mount.
    for (at, opts) in modes(&["rbind", "noatime"]) {
        assert_eq!(
            opts.contains(&"noatime".to_string()),
            at == "/mnt",
            "{at}: {opts:?}"
        );
    }
    for (at, opts) in modes(&["rbind", "rnoatime", "rnodiratime"]) {
        assert!(opts.contains(&"noatime".to_string()), "{at}: {opts:?}");
        assert!(opts.contains(&"nodiratime".to_string()), "{at}: {opts:?}");
    }
    // A later mode wins; strictatime shows as neither relatime nor noatime.
    for (at, opts) in modes(&["rbind", "rnoatime", "rstrictatime"]) {
        assert!(
            !opts.iter().any(|o| o == "noatime" || o == "relatime"),
            "{at}: {opts:?}"
        );
    }
    for (at, opts) in modes(&["rbind", "rnoatime", "ratime"]) {
        assert!(opts.contains(&"relatime".to_string()), "{at}: {opts:?}");
    }
}

/// The idmapped copy of a shared host mount is made on the host's side, in the source's peer
/// group: made a slave as a bind in the container's namespace is, so that what the
/// container mounts below it (here a later spec mount) never shows on the host.
#[test]
fn an_idmapped_bind_of_a_shared_mount_sends_nothing_back_to_the_host() {
    let vol = Volume::new();
    let shared = vol.dir.path().join("shared");
    fs::create_dir_all(shared.join("below")).unwrap();
    let bind = |flags| nix::mount::mount(Some(&shared), &shared, None::<&str>, flags, None::<&str>);
    bind(nix::mount::MsFlags::MS_BIND).unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0.join("below"), nix::mount::MntFlags::MNT_DETACH);
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(shared.clone());
    nix::mount::mount(
        None::<&str>,
        &shared,
        None::<&str>,
        nix::mount::MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let map = json!([{"containerID": 0, "hostID": 1234, "size": 1}]);
    let b = Bundle::new("idmap-shared", "echo ran", |s| {
        add_mount(
            s,
            shared.to_str().unwrap(),
            &["bind"],
            json!({"uidMappings": map.clone(), "gidMappings": map}),
        );
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt/below", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"],
        }));
    });
    assert_eq!(b.run_ok(&[]), "ran\n");
    let below = shared.join("below");
    let on_host = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", below.display()))
    };
    assert!(
        !on_host(),
        "the container's tmpfs showed on the host at {}",
        below.display()
    );
    drop(b);
    // With the container's root shared with the host's, a bind of a shared mount is the
    // host's peer: so is the idmapped copy.
    let b = Bundle::new("idmap-rshared", "echo ran", |s| {
        add_mount(
            s,
            shared.to_str().unwrap(),
            &["bind"],
            json!({"uidMappings": map.clone(), "gidMappings": map.clone()}),
        );
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt/below", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"],
        }));
        s["linux"]["rootfsPropagation"] = json!("rshared");
        // Held until the host has looked.
        s["process"]["args"] = json!(["sh", "-c", "echo ran; sleep 5"]);
    });
    let mut child = Command::new(MINI)
        .arg("--root")
        .arg(b.root.path())
        .args(["run", &b.id])
        .current_dir(b.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !on_host() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let shown = on_host();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        shown,
        "rshared: the container's tmpfs never showed on the host"
    );
}

/// An idmapped bind of a source that is not there fails as any bind does, naming it.
#[test]
fn an_idmapped_bind_of_a_missing_source_is_refused_naming_it() {
    let map = json!([{"containerID": 0, "hostID": 1234, "size": 1}]);
    let b = Bundle::new("idmap-missing", "echo ran", |s| {
        add_mount(
            s,
            "/nonexistent-mini-idmap-source",
            &["bind"],
            json!({"uidMappings": map.clone(), "gidMappings": map}),
        );
    });
    let err = b.run_refused();
    assert!(
        err.contains("/nonexistent-mini-idmap-source") && err.contains("ENOENT"),
        "{err}"
    );
}

/// In a container with a user namespace the kernel lets only the host's side idmap a host
/// filesystem: the setup helper makes the mount before the init is born, the init attaches
/// it. The files show through both mappings (the mount's, then the container's): owned by
/// root on disk, root in the container; written by the container's root, root on disk.
/// The kernel locks these mounts as it locks every mount the container's mount namespace
/// got from the host: even with `CAP_SYS_ADMIN` the container's root can neither unmount a
/// submount of an idmapped `rbind` (to see what it covers) nor drop an idmapped mount's `ro`.
#[test]
fn an_idmapped_bind_in_a_container_with_a_user_namespace_maps_through_both() {
    use std::os::unix::fs::MetadataExt;
    let vol = Volume::new();
    // The plain bind's source is looked up from inside the user namespace.
    fs::set_permissions(
        vol.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let owned = vol.dir.path().join("owned");
    fs::write(&owned, "").unwrap();
    std::os::unix::fs::chown(&owned, Some(1000), Some(2000)).unwrap();
    let script = "stat -c '%u %g' /mnt/file /mnt/owned /plain/file; \
                  touch /mnt/new && stat -c '%u %g' /mnt/new; \
                  umount /mnt/sub 2>/dev/null; echo umount=$?; \
                  mount -o remount,bind,rw /ro 2>/dev/null; echo remount=$?; \
                  touch /ro/new 2>/dev/null; echo write=$?; \
                  mount -o remount,bind,rw /rro/sub 2>/dev/null; echo remount-sub=$?; \
                  touch /rro/sub/new 2>/dev/null; echo write-sub=$?";
    let b = Bundle::new("idmap-userns", script, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        s["linux"]["uidMappings"] = map.clone();
        s["linux"]["gidMappings"] = map.clone();
        s["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "sysfs" && m["type"] != "cgroup");
        add_mount(
            s,
            vol.path(),
            &["rbind"],
            json!({"uidMappings": map.clone(), "gidMappings": map.clone()}),
        );
        // `noatime`: the kernel locks the access-time mode too; it must be the mount's own.
        add_mount(
            s,
            vol.path(),
            &["bind", "ro", "noatime"],
            json!({"destination": "/ro", "uidMappings": map.clone(), "gidMappings": map.clone()}),
        );
        add_mount(
            s,
            vol.path(),
            &["rbind", "rro"],
            json!({"destination": "/rro", "uidMappings": map.clone(), "gidMappings": map}),
        );
        for set in ["bounding", "effective", "permitted"] {
            s["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
        // The same directory without the mount's mapping: the host's root is nobody.
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/plain", "type": "bind", "source": vol.path(), "options": ["rbind"],
        }));
    });
    // The host's root owns the rootfs: the container's root may not make mount points in it.
    for dir in ["mnt", "plain", "ro", "rro"] {
        fs::create_dir_all(b.dir.path().join("rootfs").join(dir)).unwrap();
    }
    assert_eq!(
        b.run_ok(&[]),
        "0 0\n1000 2000\n65534 65534\n0 0\numount=1\nremount=1\nwrite=1\nremount-sub=1\n\
         write-sub=1\n",
        "through the idmapped mount: /mnt/file, /mnt/owned; the plain bind: /plain/file; \
         then the container's new file, and the locks"
    );
    let meta = fs::metadata(vol.dir.path().join("new")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "written as the host's root"
    );
}

#[test]
fn an_idmapped_bind_shows_the_files_owners_through_the_mounts_mapping() {
    let vol = Volume::new();
    // Owned by root on disk (the test runs as root).
    let script = "stat -c '%u %g' /mnt/file";
    let maps = json!({
        "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 4321, "size": 1}],
    });
    let b = Bundle::new("idmap", script, |s| {
        add_mount(s, vol.path(), &["bind", "idmap"], maps.clone())
    });
    assert_eq!(b.run_ok(&[]), "1234 4321\n");
    // The host's view is unchanged.
    let meta = fs::metadata(vol.dir.path().join("file")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (0, 0)
    );
    // Half a mapping is refused by name.
    let b = Bundle::new("idmap-half", script, |s| {
        add_mount(
            s,
            vol.path(),
            &["bind"],
            json!({"uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}),
        )
    });
    let err = b.run_refused();
    assert!(err.contains("gidMappings"), "{err}");
}
