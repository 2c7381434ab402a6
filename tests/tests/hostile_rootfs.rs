//! Hostile root filesystems and the container's view of its cgroup, through the shim on
//! containerd 1.6, 1.7 and 2.x: an image whose /proc or /dev is a symlink fails closed and
//! touches nothing on the host; a user namespace without a network namespace gets no host
//! /sys; a `cgroup` mount shows the container's own cgroup, read-only.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use mini_e2e::{Containerd, Namespace, Version, leftovers, runtime_under_test};

mini_e2e::on_every_version!(
    cgroup_mount_shows_the_containers_own_limits_read_only,
    cgroup_mount_in_a_user_namespace_is_read_only_even_when_rw,
    an_idmapped_volume_in_a_user_namespace_shows_the_hosts_owners_to_the_containers_root,
    proc_symlink_in_the_image_is_refused,
    dev_symlink_in_the_image_touches_nothing_on_the_host,
    user_namespace_without_network_namespace_sees_no_host_sys,
    volume_through_a_symlink_into_proc_is_refused,
    devpts_symlink_in_the_image_is_refused,
    dev_null_symlink_is_never_used_for_masking,
);

/// A busybox root filesystem for `ctr run --rootfs`, built as the test image is (busybox and
/// a symlink per applet), in a fresh directory under /tmp; `hostile` then adds its entries.
fn busybox_rootfs(hostile: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = mini_e2e::tmp_dir("mini-hostile-");
    let root = dir.path();
    for d in ["bin", "etc", "tmp", "sys"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    hostile(root);
    dir
}

/// A directory on the host that a hostile image points at, holding one canary file.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = mini_e2e::tmp_dir("mini-canary-");
        fs::write(dir.path().join("canary"), "untouched\n").unwrap();
        Canary { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory still holds only the canary, unchanged, and nothing is mounted in it.
    #[track_caller]
    fn assert_untouched(&self) {
        let entries: Vec<PathBuf> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries, [self.path().join("canary")], "host dir changed");
        assert_eq!(
            fs::read_to_string(self.path().join("canary")).unwrap(),
            "untouched\n"
        );
        let mounted = leftovers::mounts_of(self.path(), None);
        assert!(mounted.is_empty(), "mounted on the host: {mounted:?}");
    }
}

/// `ctr run --rm <options…> --rootfs <rootfs> <id> cmd…` with the runtime under test;
/// expects it to fail with an error holding every one of `words`, and nothing of the container
/// left.
#[track_caller]
fn assert_refused(ns: &Namespace<'_>, rootfs: &Path, options: &[&str], words: &[&str]) {
    let id = ns.new_id("hostile");
    let root = rootfs.to_string_lossy();
    let runtime = runtime_under_test();
    let mut args = vec!["--runtime", &runtime];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--rootfs", &root, &id, "/bin/sh", "-c", "echo started"]);
    assert_run_refused(ns, &id, rootfs, &args, words);
}

/// `ctr run --rm <args…>` must fail with an error holding every one of `words`, leaving
/// nothing of container `id` and nothing mounted below `rootfs`.
#[track_caller]
fn assert_run_refused(ns: &Namespace<'_>, id: &str, rootfs: &Path, args: &[&str], words: &[&str]) {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    let out = ns.ctr(&all);
    assert!(!out.success(), "a hostile rootfs was accepted: {out}");
    for w in words {
        assert!(
            out.stderr.contains(w),
            "the error does not name {w:?}: {out}"
        );
    }
    // ctr leaves the container record of a failed `run`.
    ns.ctr(&["container", "delete", id]);
    ns.assert_nothing_left(id);
    let mounted = leftovers::mounts_of(rootfs, None);
    assert!(
        mounted.is_empty(),
        "left mounted in the rootfs: {mounted:?}"
    );
}

/// `ctr oci spec` (the daemon's ctr default spec) for `rootfs` running `sh -c script`, in
/// the cgroup `/<ns>/<id>`, changed by `edit`.
fn spec_for(
    ns: &Namespace<'_>,
    id: &str,
    rootfs: &Path,
    script: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::NamedTempFile {
    let out = ns.ctr(&["oci", "spec"]);
    out.expect_success();
    let mut spec: serde_json::Value = serde_json::from_str(&out.stdout).expect("spec JSON");
    spec["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", ns.name()));
    edit(&mut spec);
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    file
}

/// Runs `sh -c script` on `rootfs` through `ctr run --config` with a `cgroup` mount at
/// /sys/fs/cgroup with `options` and a 64 MiB memory limit, the spec further changed by
/// `edit`; returns the script's `key=value` lines. Checks that nothing of it is left.
fn run_with_cgroup_mount(
    ns: &Namespace<'_>,
    rootfs: &Path,
    script: &str,
    options: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> HashMap<String, String> {
    let id = ns.new_id("cgmount");
    let spec = spec_for(ns, &id, rootfs, script, |spec| {
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": options,
            }));
        spec["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 67108864 });
        edit(spec);
    });
    let out = ns.run_config(spec.path(), &id);
    out.expect_success();
    ns.assert_nothing_left(&id);
    out.key_values()
}

fn cgroup_mount_shows_the_containers_own_limits_read_only(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace("cgmount");
    let rootfs = busybox_rootfs(|_| {});
    let script = "echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
                  echo dirs=$(ls /sys/fs/cgroup | tr '\\n' ' '); \
                  echo cpu=$(test -f /sys/fs/cgroup/cpu/cpu.shares && echo yes); \
                  echo 1000000 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; \
                  echo write=$?; mkdir /sys/fs/cgroup/memory/sub 2>/dev/null; echo mkdir=$?; \
                  mkdir /sys/fs/cgroup/x 2>/dev/null; echo top=$?; \
                  echo after=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)";
    // The `cgroup` mount as CRI sends it for a container that is not privileged.
    let got = run_with_cgroup_mount(
        &ns,
        rootfs.path(),
        script,
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
        |_| {},
    );
    let line = |key: &str| {
        got.get(key)
            .unwrap_or_else(|| panic!("no {key}= in {got:?}"))
            .as_str()
    };
    assert_eq!(line("limit"), "67108864");
    let dirs = line("dirs");
    for h in [
        "blkio", "cpu", "cpuacct", "cpuset", "devices", "memory", "pids",
    ] {
        assert!(
            dirs.split(' ').any(|d| d == h),
            "no {h} in /sys/fs/cgroup: {dirs}"
        );
    }
    assert_eq!(line("cpu"), "yes");
    assert_ne!(line("write"), "0", "the cgroup is writable from inside");
    assert_ne!(
        line("mkdir"),
        "0",
        "a sub-cgroup could be created from inside"
    );
    // Stricter than runc 1.1.5, which leaves the tmpfs holding the hierarchies writable.
    assert_ne!(line("top"), "0", "/sys/fs/cgroup itself is writable");
    assert_eq!(line("after"), "67108864");
}

/// A Kubernetes pod with `hostUsers: false`: its volumes come idmapped with the pod's
/// mappings, so the container's root owns what the host's root owns, and writes as it. The
/// kernel lets only the host's side idmap a host filesystem; without it the container's root
/// sees the host's files as nobody's and cannot write them.
fn an_idmapped_volume_in_a_user_namespace_shows_the_hosts_owners_to_the_containers_root(
    version: Version,
) {
    use std::os::unix::fs::MetadataExt;
    let cd = Containerd::start(version);
    let ns = cd.namespace("idmapns");
    let rootfs = busybox_rootfs(|root| {
        for d in ["proc", "dev", "run", "vol"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    });
    // As kubelet's volume directories: below a parent only the host's root may enter (the
    // container's root is not the host's).
    let parent = mini_e2e::tmp_dir("mini-idmap-vol-");
    fs::set_permissions(
        parent.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let vol = parent.path().join("volume");
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("f"), "host\n").unwrap();
    let id = ns.new_id("idmap");
    let script = "echo owner=$(stat -c %u:%g /vol/f); touch /vol/new; echo wrote=$?";
    let map = serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    let spec = spec_for(&ns, &id, rootfs.path(), script, |spec| {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": "user" }));
        spec["linux"]["uidMappings"] = map.clone();
        spec["linux"]["gidMappings"] = map.clone();
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/vol",
                "type": "bind",
                "source": vol,
                "options": ["rbind", "rw"],
                "uidMappings": map.clone(),
                "gidMappings": map,
            }));
    });
    let out = ns.run_config(spec.path(), &id);
    out.expect_success();
    ns.assert_nothing_left(&id);
    let got: HashMap<String, String> = out.key_values();
    assert_eq!(got.get("owner").map(String::as_str), Some("0:0"), "{out}");
    assert_eq!(got.get("wrote").map(String::as_str), Some("0"), "{out}");
    let meta = fs::metadata(vol.join("new")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "written as the host's root"
    );
}

fn cgroup_mount_in_a_user_namespace_is_read_only_even_when_rw(version: Version) {
    // CVE-2023-25809: without a cgroup namespace of its own, a user namespace's root must not
    // get the cgroup tree writable, whatever the mount says (runc 1.1.5 gives it rw here).
    let cd = Containerd::start(version);
    let ns = cd.namespace("cguserns");
    let rootfs = busybox_rootfs(|root| {
        // The mount points exist: the container's root, not the host's, cannot create them.
        for d in ["proc", "dev", "run"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    });
    let script = "echo uid=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'); \
                  echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
                  awk '$5 == \"/sys/fs/cgroup/memory\" || $5 == \"/sys/fs/cgroup\" \
                       {print \"opts\" $5 \"=\" $6}' /proc/self/mountinfo";
    let map = serde_json::json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    let got = run_with_cgroup_mount(
        &ns,
        rootfs.path(),
        script,
        &["nosuid", "noexec", "nodev", "relatime", "rw"],
        |spec| {
            spec["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({ "type": "user" }));
            spec["linux"]["uidMappings"] = map.clone();
            spec["linux"]["gidMappings"] = map;
        },
    );
    let line = |key: &str| {
        got.get(key)
            .unwrap_or_else(|| panic!("no {key}= in {got:?}"))
            .as_str()
    };
    assert_eq!(line("uid"), "0 100000 65536");
    assert_eq!(line("limit"), "67108864");
    for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory"] {
        let opts = line(&format!("opts{mount}"));
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "{mount} is not read-only: {opts}"
        );
    }
}

fn proc_symlink_in_the_image_is_refused(version: Version) {
    // CVE-2019-16884 / CVE-2019-19921: proc mounted wherever the image's /proc points.
    let cd = Containerd::start(version);
    let ns = cd.namespace("procsym");
    let canary = Canary::new();
    for target in [
        canary.path().to_path_buf(),
        PathBuf::from("../../../../tmp"),
    ] {
        let rootfs = busybox_rootfs(|root| {
            fs::create_dir_all(root.join("dev")).unwrap();
            symlink(&target, root.join("proc")).unwrap();
        });
        assert_refused(
            &ns,
            rootfs.path(),
            &[],
            &["mounts[0].destination", "/proc", "symlink"],
        );
    }
    canary.assert_untouched();
}

fn dev_symlink_in_the_image_touches_nothing_on_the_host(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace("devsym");
    let canary = Canary::new();
    let relative = format!("../../../../../..{}", canary.path().display());
    for target in [canary.path().display().to_string(), relative] {
        let rootfs = busybox_rootfs(|root| {
            fs::create_dir_all(root.join("proc")).unwrap();
            symlink(&target, root.join("dev")).unwrap();
        });
        assert_refused(&ns, rootfs.path(), &[], &["destination", "/dev", "symlink"]);
    }
    canary.assert_untouched();
}

fn user_namespace_without_network_namespace_sees_no_host_sys(version: Version) {
    // A new sysfs needs a network namespace owned by the container's user namespace; the
    // host's /sys instead would bring its submounts (the host's cgroup trees).
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("usernet");
    let id = ns.new_id("usernet");
    let out = ns.run(
        &runtime_under_test(),
        &[
            "--rm",
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
            "--net-host",
        ],
        &id,
        &["sh", "-c", "ls /sys/fs/cgroup/memory/ | head -3"],
    );
    assert!(
        !out.success(),
        "the container started and listed the host's cgroup tree: {out}"
    );
    assert!(
        out.stderr.contains("sysfs") && out.stderr.contains("network namespace"),
        "the error does not say why: {out}"
    );
    ns.ctr(&["container", "delete", &id]);
    ns.assert_nothing_left(&id);
}

fn volume_through_a_symlink_into_proc_is_refused(version: Version) {
    // CVE-2019-19921: a volume whose path in the image leads into /proc.
    let cd = Containerd::start(version);
    let ns = cd.namespace("procvol");
    let canary = Canary::new();
    let volume = canary.path().join("canary").to_string_lossy().into_owned();
    for (link, target, dest) in [
        ("data", "/proc/self", "/data/attr/current"),
        ("data", "/proc/sys/kernel", "/data/core_pattern"),
    ] {
        let rootfs = busybox_rootfs(|root| {
            for d in ["proc", "dev"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            symlink(target, root.join(link)).unwrap();
        });
        let mount = format!("type=bind,src={volume},dst={dest},options=rbind:ro");
        assert_refused(
            &ns,
            rootfs.path(),
            &["--mount", &mount],
            &[dest, "inside /proc"],
        );
    }
    canary.assert_untouched();
}

/// `ctr run --rm --config <spec>` of `spec_for(…, edit)` on `rootfs` must fail with an error
/// holding every one of `words`.
#[track_caller]
fn assert_config_refused(
    ns: &Namespace<'_>,
    rootfs: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
    words: &[&str],
) {
    let id = ns.new_id("hostile");
    let spec = spec_for(ns, &id, rootfs, "echo started", edit);
    let runtime = runtime_under_test();
    let config = spec.path().to_string_lossy().into_owned();
    let args = ["--runtime", &runtime, "--config", &config, &id];
    assert_run_refused(ns, &id, rootfs, &args, words);
}

/// Drops the spec's mount at `dest`.
fn drop_mount(spec: &mut serde_json::Value, dest: &str) {
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != dest);
}

fn devpts_symlink_in_the_image_is_refused(version: Version) {
    // CVE-2025-52565: with no /dev tmpfs in the spec, the image's /dev/pts would decide
    // where devpts is mounted.
    let cd = Containerd::start(version);
    let ns = cd.namespace("ptssym");
    let rootfs = busybox_rootfs(|root| {
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        symlink("/proc/sys/kernel", root.join("dev/pts")).unwrap();
    });
    assert_config_refused(
        &ns,
        rootfs.path(),
        |spec| drop_mount(spec, "/dev"),
        &["/dev/pts", "symlink"],
    );
}

fn dev_null_symlink_is_never_used_for_masking(version: Version) {
    // CVE-2025-31133: masking binds /dev/null over files; a /dev whose null is a symlink to a
    // procfs file would bind that file instead.
    let cd = Containerd::start(version);
    let ns = cd.namespace("nullsym");
    let dev = mini_e2e::tmp_dir("mini-dev-");
    symlink("/proc/sys/kernel/core_pattern", dev.path().join("null")).unwrap();
    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let rootfs = busybox_rootfs(|root| {
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
    });
    let source = dev.path().to_string_lossy().into_owned();
    assert_config_refused(
        &ns,
        rootfs.path(),
        |spec| {
            drop_mount(spec, "/dev");
            drop_mount(spec, "/dev/pts");
            drop_mount(spec, "/dev/shm");
            drop_mount(spec, "/dev/mqueue");
            spec["mounts"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "destination": "/dev",
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", "rw"],
                }));
        },
        &["linux.maskedPaths", "/dev/null", "symlink"],
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}
