//! Root tests of the rootfs setup. Each runs in a forked child with its own mount namespace
//! (made private first, so nothing reaches the host); the child's exit code is the verdict.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType, MountBuilder, RootBuilder, Spec};

use super::*;

type Check = std::result::Result<(), String>;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs `f` in a forked child inside a new, private mount namespace and asserts it succeeded.
fn in_private_mount_ns(f: impl FnOnce() -> Check) {
    // SAFETY: the child only runs `f` (mount syscalls and file checks) and leaves with
    // `_exit`, never returning into the test harness or running its destructors.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let verdict = unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))
                .and_then(|()| {
                    nix::mount::mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                    .map_err(|e| format!("make / rprivate: {e}"))
                })
                .and_then(|()| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                        .unwrap_or_else(|_| Err("panicked".to_string()))
                });
            let code = match verdict {
                Ok(()) => 0,
                Err(msg) => {
                    // Straight to fd 2: the harness's output capture does not survive fork.
                    let _ = writeln!(std::io::stderr(), "child check failed: {msg}");
                    1
                }
            };
            // SAFETY: ends the forked child without unwinding into the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let status = waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "child failed (its stderr says why)"
            );
        }
    }
}

/// A busybox rootfs in a temporary directory: /bin/busybox and /bin/sh → busybox.
fn busybox_rootfs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mini-rootfs-{}-", std::process::id()))
        .tempdir()
        .expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (busybox-static)");
    symlink("busybox", rootfs.join("bin/sh")).unwrap();
    (dir, rootfs)
}

/// [`busybox_rootfs`] and [`fixture_cgroups`] in its directory.
fn busybox_with_cgroups() -> (tempfile::TempDir, PathBuf, CgroupManager) {
    let (dir, rootfs) = busybox_rootfs();
    let cg = fixture_cgroups(dir.path());
    (dir, rootfs, cg)
}

/// ctr's default spec (oci-spec's defaults: proc, /dev tmpfs, devpts, shm, mqueue, sysfs ro,
/// cgroup ro; the usual masked and read-only paths) on `rootfs`, with a read-only root.
fn default_spec(rootfs: &Path) -> Spec {
    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(true)
            .build()
            .unwrap(),
    ));
    spec
}

/// A cgroup manager over fixture directories under `dir`: a hybrid host with a `memory` and a
/// combined `cpu,cpuacct` hierarchy; the container's directory in each exists and holds a
/// file `mark` naming its hierarchy.
fn fixture_cgroups(dir: &Path) -> CgroupManager {
    use crate::cgroups::{Hierarchies, Hierarchy, Layout, ProcessCgroups};
    let hierarchy = |name: &str, controllers: &[&str]| Hierarchy {
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        mount_point: dir.join("cgroup").join(name),
        root: PathBuf::from("/"),
    };
    let hierarchies = Hierarchies {
        layout: Layout::Hybrid,
        v1: vec![
            hierarchy("memory", &["memory"]),
            hierarchy("cpu,cpuacct", &["cpu", "cpuacct"]),
        ],
        unified: Some(hierarchy("unified", &[])),
    };
    let cg = CgroupManager::with_hierarchies(
        &hierarchies,
        &ProcessCgroups::default(),
        "ctr",
        Some(Path::new("/ctr")),
    )
    .expect("fixture cgroup manager");
    for d in cg.dirs() {
        std::fs::create_dir_all(&d.dir).unwrap();
        let name = d.mount_point.file_name().unwrap().to_string_lossy();
        std::fs::write(d.dir.join("mark"), name.as_bytes()).unwrap();
    }
    cg
}

/// A spec mount.
fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> oci_spec::runtime::Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// Runs `prepare` and `pivot` in a private mount namespace, expects `finish` to fail with an
/// error containing every one of `words`, then runs `after` (still inside).
fn assert_finish_fails(
    spec: &Spec,
    rootfs: &Path,
    cg: &CgroupManager,
    words: &[&str],
    after: impl FnOnce() -> Check,
) {
    in_private_mount_ns(|| {
        prepare(spec, rootfs, cg).map_err(|e| format!("prepare: {e}"))?;
        pivot(rootfs).map_err(|e| format!("pivot: {e}"))?;
        let err = match finish(spec) {
            Ok(()) => return Err("finish succeeded".into()),
            Err(e) => e.to_string(),
        };
        for w in words {
            check!(err.contains(w), "error does not name {w:?}: {err}");
        }
        after()
    });
}

/// Runs `prepare` in a private mount namespace, expects it to fail, and checks that the error
/// contains every one of `words`.
fn assert_prepare_fails(spec: &Spec, rootfs: &Path, cg: &CgroupManager, words: &[&str]) {
    in_private_mount_ns(|| {
        let err = match prepare(spec, rootfs, cg) {
            Ok(()) => return Err("prepare succeeded".into()),
            Err(e) => e.to_string(),
        };
        for w in words {
            check!(err.contains(w), "error does not name {w:?}: {err}");
        }
        Ok(())
    });
}

fn mount_points() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some((fields.get(4)?.to_string(), fields.get(sep + 1)?.to_string()))
        })
        .collect()
}

#[test]
fn container_sees_its_proc_masked_paths_devices_and_readonly_mounts() {
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    let mut spec = default_spec(&rootfs);
    let device = LinuxDeviceBuilder::default()
        .path("/dev/mini-full")
        .typ(LinuxDeviceType::C)
        .major(1)
        .minor(7)
        .file_mode(0o640u32)
        .uid(1000u32)
        .gid(1001u32)
        .build()
        .unwrap();
    if let Some(linux) = spec.linux_mut() {
        linux.set_devices(Some(vec![device]));
    }
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
        pivot(&rootfs).map_err(|e| format!("pivot: {e}"))?;
        finish(&spec).map_err(|e| format!("finish: {e}"))?;

        let mounts = mount_points();
        check!(
            mounts.iter().any(|(mp, fs)| mp == "/proc" && fs == "proc"),
            "no proc at /proc: {mounts:?}"
        );
        check!(
            mounts
                .iter()
                .any(|(mp, fs)| mp == "/dev/pts" && fs == "devpts"),
            "no devpts: {mounts:?}"
        );
        check!(
            Path::new("/bin/sh").exists(),
            "/bin/sh missing: not in the busybox rootfs"
        );
        check!(!Path::new("/etc").exists(), "host /etc visible after pivot");

        let keys =
            std::fs::read_to_string("/proc/keys").map_err(|e| format!("read /proc/keys: {e}"))?;
        check!(keys.is_empty(), "/proc/keys not masked: {keys:?}");
        let firmware = std::fs::read_dir("/sys/firmware")
            .map_err(|e| format!("/sys/firmware: {e}"))?
            .count();
        check!(firmware == 0, "/sys/firmware lists {firmware} entries");
        let mut cgroup: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .map_err(|e| format!("/sys/fs/cgroup: {e}"))?
            .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
            .collect();
        cgroup.sort();
        check!(
            cgroup == ["cpu", "cpu,cpuacct", "cpuacct", "memory"],
            "/sys/fs/cgroup holds {cgroup:?}, not the fixture's hierarchies"
        );
        check!(
            std::fs::read_to_string("/sys/fs/cgroup/cpu/mark").is_ok_and(|m| m == "cpu,cpuacct"),
            "/sys/fs/cgroup/cpu does not lead to the container's cpu,cpuacct directory"
        );

        let null = std::fs::metadata("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        check!(
            null.file_type().is_char_device(),
            "/dev/null is not a char device"
        );
        check!(
            null.rdev() == nix::sys::stat::makedev(1, 3),
            "/dev/null is not 1:3"
        );
        check!(
            null.mode() & 0o777 == 0o666,
            "/dev/null mode {:o}",
            null.mode()
        );
        let custom =
            std::fs::metadata("/dev/mini-full").map_err(|e| format!("/dev/mini-full: {e}"))?;
        check!(
            custom.rdev() == nix::sys::stat::makedev(1, 7),
            "/dev/mini-full is not 1:7"
        );
        check!(
            custom.mode() & 0o7777 == 0o640,
            "/dev/mini-full mode {:o}",
            custom.mode()
        );
        check!(
            (custom.uid(), custom.gid()) == (1000, 1001),
            "/dev/mini-full owner {}:{}",
            custom.uid(),
            custom.gid()
        );

        let fd = std::fs::read_link("/dev/fd").map_err(|e| format!("/dev/fd: {e}"))?;
        check!(
            fd == Path::new("/proc/self/fd"),
            "/dev/fd -> {}",
            fd.display()
        );
        let ptmx = std::fs::read_link("/dev/ptmx").map_err(|e| format!("/dev/ptmx: {e}"))?;
        check!(
            ptmx == Path::new("pts/ptmx"),
            "/dev/ptmx -> {}",
            ptmx.display()
        );
        // This kernel has no /proc/kcore: no dangling /dev/core either.
        check!(
            std::fs::symlink_metadata("/dev/core").is_err(),
            "/dev/core exists without /proc/kcore"
        );

        let write = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/hostname");
        check!(
            write.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS),
            "writing /proc/sys: {write:?}"
        );
        let create = std::fs::File::create("/mini-written");
        check!(
            create.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS),
            "root.readonly: creating /mini-written: {create:?}"
        );
        let shm = std::fs::File::create("/dev/shm/x");
        check!(shm.is_ok(), "/dev/shm not writable: {shm:?}");
        Ok(())
    });
}

#[test]
fn bind_mount_with_missing_source_fails_naming_source_and_destination() {
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    let mut spec = default_spec(&rootfs);
    let source = format!("/nonexistent-mini-{}", std::process::id());
    let bind = MountBuilder::default()
        .destination("/data")
        .typ("bind")
        .source(&source)
        .options(vec!["rbind".to_string(), "ro".to_string()])
        .build()
        .unwrap();
    spec.set_mounts(Some(vec![bind]));
    in_private_mount_ns(|| {
        let err = match prepare(&spec, &rootfs, &cg) {
            Ok(()) => return Err("prepare succeeded with a missing bind source".into()),
            Err(e) => e.to_string(),
        };
        check!(
            err.contains(&source) && err.contains("/data"),
            "error does not name source and destination: {err}"
        );
        check!(
            err.contains("No such file or directory"),
            "error does not say why: {err}"
        );
        check!(
            !rootfs.join("data").exists(),
            "destination created for a failed mount"
        );
        Ok(())
    });
}

#[test]
fn mount_destination_through_symlink_to_etc_stays_inside_rootfs() {
    let (dir, rootfs, cg) = busybox_with_cgroups();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    symlink("/etc", rootfs.join("hostetc")).unwrap();
    symlink("../../../../../../etc", rootfs.join("bin/up")).unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "mini\n").unwrap();
    let mut spec = default_spec(&rootfs);
    spec.set_mounts(Some(vec![
        MountBuilder::default()
            .destination("/hostetc/passwd")
            .typ("bind")
            .source(&file)
            .options(vec!["bind".to_string(), "ro".to_string()])
            .build()
            .unwrap(),
        MountBuilder::default()
            .destination("/bin/up/mini-tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec!["size=1m".to_string()])
            .build()
            .unwrap(),
    ]));
    let host_passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
        let inside = std::fs::read_to_string(rootfs.join("etc/passwd"))
            .map_err(|e| format!("rootfs/etc/passwd: {e}"))?;
        check!(
            inside == "mini\n",
            "bind did not land on rootfs/etc/passwd: {inside:?}"
        );
        check!(
            std::fs::read("/etc/passwd").unwrap_or_default() == host_passwd,
            "host /etc/passwd changed"
        );
        let mounts = mount_points();
        let want_tmp = rootfs.join("etc/mini-tmp").display().to_string();
        check!(
            mounts
                .iter()
                .any(|(mp, fs)| *mp == want_tmp && fs == "tmpfs"),
            "tmpfs not at {want_tmp}: {mounts:?}"
        );
        check!(
            !mounts
                .iter()
                .any(|(mp, _)| mp == "/etc/passwd" || mp == "/etc/mini-tmp"),
            "a mount escaped to the host's /etc: {mounts:?}"
        );
        check!(
            !Path::new("/etc/mini-tmp").exists(),
            "created /etc/mini-tmp on the host"
        );
        Ok(())
    });
}

#[test]
fn overlay_rootfs_mounts_layers_and_unmounts_cleanly() {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mini-overlay-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let d = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower1, lower2, upper, work, target) =
        (d("l1"), d("l2"), d("upper"), d("work"), d("rootfs"));
    std::fs::write(lower1.join("a"), "from l1").unwrap();
    std::fs::write(lower2.join("b"), "from l2").unwrap();
    std::fs::write(lower2.join("a"), "hidden by l1").unwrap();
    let overlay = RootfsMount {
        typ: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={}:{}", lower1.display(), lower2.display()),
        ],
    };
    in_private_mount_ns(|| {
        mount_rootfs(std::slice::from_ref(&overlay), &target)
            .map_err(|e| format!("mount_rootfs: {e}"))?;
        let a = std::fs::read_to_string(target.join("a")).map_err(|e| format!("a: {e}"))?;
        check!(a == "from l1", "upper lower layer does not win: {a:?}");
        check!(target.join("b").exists(), "second lower layer missing");
        std::fs::write(target.join("c"), "new").map_err(|e| format!("write c: {e}"))?;
        check!(upper.join("c").exists(), "write did not reach upperdir");
        unmount_rootfs(&target).map_err(|e| format!("unmount_rootfs: {e}"))?;
        check!(
            !target.join("a").exists(),
            "still mounted after unmount_rootfs"
        );
        unmount_rootfs(&target).map_err(|e| format!("second unmount_rootfs: {e}"))?;
        unmount_rootfs(&target.join("missing"))
            .map_err(|e| format!("unmount of a missing target: {e}"))?;
        Ok(())
    });
}

#[test]
fn readonly_bind_rootfs_rejects_writes() {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mini-bindroot-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let (source, target) = (dir.path().join("src"), dir.path().join("rootfs"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(source.join("f"), "x").unwrap();
    let bind = RootfsMount {
        typ: "bind".into(),
        source: source.display().to_string(),
        options: vec!["rbind".into(), "ro".into()],
    };
    in_private_mount_ns(|| {
        mount_rootfs(std::slice::from_ref(&bind), &target)
            .map_err(|e| format!("mount_rootfs: {e}"))?;
        check!(target.join("f").exists(), "bind source not visible");
        let w = std::fs::write(target.join("g"), "y");
        check!(
            w.as_ref().err().map(|e| e.raw_os_error()) == Some(Some(libc::EROFS)),
            "ro bind writable: {w:?}"
        );
        unmount_rootfs(&target).map_err(|e| format!("unmount_rootfs: {e}"))?;
        Ok(())
    });
}

#[test]
fn failed_rootfs_mount_names_type_source_and_target() {
    let target = std::env::temp_dir().join(format!("mini-nothing-{}", std::process::id()));
    let bad = RootfsMount {
        typ: "bind".into(),
        source: format!("/nonexistent-mini-{}", std::process::id()),
        options: vec!["rbind".into()],
    };
    let err = mount_rootfs(std::slice::from_ref(&bad), &target)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&bad.source)
            && err.contains("bind")
            && err.contains(&target.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&target).map_err(|e| e.kind()).err(),
        Some(ErrorKind::NotFound)
    );
}

#[test]
fn mountinfo_mount_points_are_unescaped_and_shared_is_seen() {
    let line =
        r"36 35 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw";
    assert_eq!(
        parse_mountinfo_line(line),
        Some((PathBuf::from("/mnt with space"), true))
    );
    let line = "36 35 98:0 / /x rw - tmpfs tmpfs rw";
    assert_eq!(
        parse_mountinfo_line(line),
        Some((PathBuf::from("/x"), false))
    );
}

#[test]
fn shared_rootfs_propagation_still_pivots() {
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    let mut spec = default_spec(&rootfs);
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some("rshared".to_string()));
    }
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
        pivot(&rootfs).map_err(|e| format!("pivot: {e}"))?;
        finish(&spec).map_err(|e| format!("finish: {e}"))?;
        check!(Path::new("/bin/sh").exists(), "/bin/sh missing after pivot");
        Ok(())
    });
}

#[test]
fn unknown_rootfs_propagation_is_rejected_naming_the_field() {
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    let mut spec = default_spec(&rootfs);
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some("sideways".to_string()));
    }
    in_private_mount_ns(|| {
        let err = match prepare(&spec, &rootfs, &cg) {
            Ok(()) => return Err("prepare accepted rootfsPropagation \"sideways\"".into()),
            Err(e) => e.to_string(),
        };
        check!(err.contains("linux.rootfsPropagation"), "{err}");
        Ok(())
    });
}

#[test]
fn a_dev_mount_of_type_rbind_counts_as_a_bind_of_the_hosts_dev() {
    // Else the runtime would create (and replace) device nodes in the host's /dev.
    let rbind = MountBuilder::default()
        .destination("/dev")
        .typ("rbind")
        .source("/dev")
        .build()
        .unwrap();
    assert!(mounts::dev_is_bind_mounted(&[rbind]));
    let tmpfs = MountBuilder::default()
        .destination("/dev")
        .typ("tmpfs")
        .source("tmpfs")
        .build()
        .unwrap();
    assert!(!mounts::dev_is_bind_mounted(&[tmpfs]));
}

/// The spec's mounts with the one at `dest` removed.
fn without_mount(spec: &mut Spec, dest: &str) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| m.destination() != Path::new(dest));
    spec.set_mounts(Some(mounts));
}

/// Appends `m` to the spec's mounts.
fn add_mount(spec: &mut Spec, m: oci_spec::runtime::Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(m);
    spec.set_mounts(Some(mounts));
}

/// The mount points of the calling process that were not there before (`before`) and lie
/// outside `rootfs` or below `rootfs/proc`.
fn new_mounts_misplaced(rootfs: &Path, before: &[(String, String)]) -> Vec<String> {
    let proc = rootfs.join("proc");
    mount_points()
        .into_iter()
        .filter(|m| !before.contains(m))
        .map(|(mp, _)| PathBuf::from(mp))
        .filter(|mp| !mp.starts_with(rootfs) || (mp.starts_with(&proc) && *mp != proc))
        .map(|mp| mp.display().to_string())
        .collect()
}

#[test]
fn cgroup_mount_on_v1_binds_the_containers_own_cgroup_read_only() {
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
    let (dir, rootfs) = busybox_rootfs();
    let name = format!("mini-rootfs-test-{}", std::process::id());
    let cg = CgroupManager::new(&name, Some(&Path::new("/").join(&name))).expect("cgroup");
    struct Destroy<'a>(&'a CgroupManager);
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            let _ = self.0.destroy();
        }
    }
    cg.create().expect("create cgroup");
    let _destroy = Destroy(&cg);
    let limit = 64 * 1024 * 1024;
    let resources = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(limit).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&resources).expect("memory limit");
    let spec = default_spec(&rootfs);
    let _ = dir;
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
        pivot(&rootfs).map_err(|e| format!("pivot: {e}"))?;
        let got = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes")
            .map_err(|e| format!("memory.limit_in_bytes: {e}"))?;
        check!(
            got.trim() == limit.to_string(),
            "memory.limit_in_bytes {got:?}"
        );
        for h in ["cpu", "cpuacct", "cpuset", "devices", "pids", "systemd"] {
            let procs = Path::new("/sys/fs/cgroup").join(h).join("cgroup.procs");
            check!(procs.exists(), "{} missing", procs.display());
        }
        check!(
            !Path::new("/sys/fs/cgroup/unified").exists(),
            "cgroup2 shown on a hybrid host (runc does not)"
        );
        let write = std::fs::write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "1000000");
        check!(
            write.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS),
            "memory.limit_in_bytes writable: {write:?}"
        );
        let mkdir = std::fs::create_dir("/sys/fs/cgroup/x");
        check!(
            mkdir.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS),
            "/sys/fs/cgroup writable: {mkdir:?}"
        );
        Ok(())
    });
}

#[test]
fn proc_symlink_in_the_image_is_refused() {
    // CVE-2019-16884 / CVE-2019-19921: proc must land on the image's real /proc.
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    std::fs::create_dir_all(rootfs.join("tmp/x")).unwrap();
    symlink("/tmp/x", rootfs.join("proc")).unwrap();
    let spec = default_spec(&rootfs);
    assert_prepare_fails(
        &spec,
        &rootfs,
        &cg,
        &["mounts[0].destination", "/proc", "symlink", "/tmp/x"],
    );
}

#[test]
fn mounts_through_a_symlink_into_proc_are_refused() {
    // CVE-2019-19921: a volume path that resolves into /proc (here through /proc/self).
    let (dir, rootfs, cg) = busybox_with_cgroups();
    symlink("/proc/self", rootfs.join("data")).unwrap();
    symlink("/proc/sys/kernel", rootfs.join("bin/k")).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for (dest, typ, source, opts) in [
        ("/data/attr", "tmpfs", "tmpfs", &[][..]),
        (
            "/bin/k/core_pattern",
            "bind",
            file.to_str().unwrap(),
            &["bind"][..],
        ),
        ("/proc/sys", "tmpfs", "tmpfs", &[][..]),
        ("/proc", "bind", file.to_str().unwrap(), &["rbind"][..]),
    ] {
        let mut spec = default_spec(&rootfs);
        add_mount(&mut spec, mount(dest, typ, source, opts));
        let index = spec.mounts().as_ref().unwrap().len() - 1;
        let field = format!("mounts[{index}].destination");
        assert_prepare_fails(&spec, &rootfs, &cg, &[&field, dest, "inside /proc"]);
    }
}

#[test]
fn a_bind_over_an_lxcfs_file_in_proc_is_allowed() {
    let (dir, rootfs, cg) = busybox_with_cgroups();
    let file = dir.path().join("meminfo");
    std::fs::write(&file, "MemTotal: 1 kB\n").unwrap();
    let mut spec = default_spec(&rootfs);
    add_mount(
        &mut spec,
        mount(
            "/proc/meminfo",
            "bind",
            file.to_str().unwrap(),
            &["bind", "ro"],
        ),
    );
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
        let got = std::fs::read_to_string(rootfs.join("proc/meminfo"))
            .map_err(|e| format!("meminfo: {e}"))?;
        check!(got == "MemTotal: 1 kB\n", "meminfo {got:?}");
        Ok(())
    });
}

#[test]
fn devpts_symlink_in_the_image_is_refused() {
    // CVE-2025-52565: without a /dev tmpfs, the image's /dev/pts decides where devpts goes.
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    symlink("/proc/sys/kernel", rootfs.join("dev/pts")).unwrap();
    let mut spec = default_spec(&rootfs);
    without_mount(&mut spec, "/dev");
    let index = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .position(|m| m.destination() == Path::new("/dev/pts"))
        .unwrap();
    let field = format!("mounts[{index}].destination");
    assert_prepare_fails(&spec, &rootfs, &cg, &[&field, "/dev/pts", "symlink"]);
}

#[test]
fn dev_symlink_in_the_image_is_refused_and_touches_nothing_outside() {
    let (dir, rootfs, cg) = busybox_with_cgroups();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    symlink("../outside", rootfs.join("dev")).unwrap();
    // With ctr's /dev tmpfs: the mount is refused.
    let spec = default_spec(&rootfs);
    let index = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .position(|m| m.destination() == Path::new("/dev"))
        .unwrap();
    let field = format!("mounts[{index}].destination");
    assert_prepare_fails(&spec, &rootfs, &cg, &[&field, "/dev", "symlink"]);
    // Without a /dev mount: creating the device nodes is refused.
    let mut spec = default_spec(&rootfs);
    spec.set_mounts(Some(vec![mount(
        "/proc",
        "proc",
        "proc",
        &["nosuid", "noexec", "nodev"],
    )]));
    assert_prepare_fails(&spec, &rootfs, &cg, &["linux.devices", "/dev", "symlink"]);
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(left.is_empty(), "created outside the rootfs: {left:?}");
    assert!(!rootfs.join("outside").exists());
}

#[test]
fn dev_null_that_is_not_the_null_device_is_not_used_for_masking() {
    // CVE-2025-31133: masking binds /dev/null over files.
    let (dir, rootfs, cg) = busybox_with_cgroups();
    // The spec made /dev/null /dev/zero's number.
    let mut as_zero = default_spec(&rootfs);
    let zero = LinuxDeviceBuilder::default()
        .path("/dev/null")
        .typ(LinuxDeviceType::C)
        .major(1)
        .minor(5)
        .build()
        .unwrap();
    if let Some(linux) = as_zero.linux_mut() {
        linux.set_devices(Some(vec![zero]));
    }
    // A bound /dev whose null is a symlink to a procfs file.
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let mut as_link = default_spec(&rootfs);
    without_mount(&mut as_link, "/dev");
    let mut mounts = as_link.mounts().clone().unwrap_or_default();
    mounts.insert(1, mount("/dev", "bind", dev.to_str().unwrap(), &["rbind"]));
    as_link.set_mounts(Some(mounts));
    for (spec, why) in [(as_zero, "1:5"), (as_link, "a symlink")] {
        assert_finish_fails(
            &spec,
            &rootfs,
            &cg,
            &["linux.maskedPaths", "/dev/null", why],
            || Ok(()),
        );
    }
}

#[test]
fn masked_and_readonly_symlinks_and_relative_entries_are_refused() {
    let (_dir, rootfs, cg) = busybox_with_cgroups();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/secret"), "s").unwrap();
    symlink("/etc/secret", rootfs.join("etc/link")).unwrap();
    for (masked, readonly, words) in [
        (
            vec!["/etc/link"],
            vec![],
            ["linux.maskedPaths", "/etc/link"],
        ),
        (
            vec![],
            vec!["/etc/link"],
            ["linux.readonlyPaths", "/etc/link"],
        ),
        (
            vec!["proc/keys"],
            vec![],
            ["linux.maskedPaths", "proc/keys"],
        ),
        (
            vec![],
            vec!["proc/sys"],
            ["linux.readonlyPaths", "proc/sys"],
        ),
    ] {
        let mut spec = default_spec(&rootfs);
        if let Some(linux) = spec.linux_mut() {
            linux.set_masked_paths(Some(masked.iter().map(|p| p.to_string()).collect()));
            linux.set_readonly_paths(Some(readonly.iter().map(|p| p.to_string()).collect()));
        }
        assert_finish_fails(&spec, &rootfs, &cg, &words, || {
            let secret = std::fs::read_to_string("/etc/secret").unwrap_or_default();
            check!(secret == "s", "the symlink's target was masked: {secret:?}");
            Ok(())
        });
    }
}

#[test]
fn symlink_exchange_race_on_a_shared_volume_never_mounts_elsewhere() {
    // CVE-2021-30465: a volume shared with a hostile container, whose mount-point directory
    // is swapped for a symlink to /proc/sys/kernel while the runtime mounts on it. Followed
    // on the host, the mount lands on the host's /proc/sys/kernel; followed inside the rootfs
    // after the destination was checked, on the container's, where nothing may be mounted.
    let (dir, rootfs, cg) = busybox_with_cgroups();
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(volume.join("mnt")).unwrap();
    symlink("/proc/sys/kernel", volume.join("swap")).unwrap();
    let mut spec = default_spec(&rootfs);
    add_mount(
        &mut spec,
        mount("/vol", "bind", volume.to_str().unwrap(), &["rbind"]),
    );
    add_mount(&mut spec, mount("/vol/mnt", "tmpfs", "tmpfs", &["size=1m"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (stop, volume) = (stop.clone(), volume.clone());
        std::thread::spawn(move || {
            let (a, b) = (volume.join("mnt"), volume.join("swap"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
            }
        })
    };
    let (mut mounted, mut refused) = (0, 0);
    for _ in 0..300 {
        // SAFETY: see in_private_mount_ns; the child only mounts, checks and _exits.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = (|| -> std::result::Result<i32, ()> {
                    unshare(CloneFlags::CLONE_NEWNS).map_err(|_| ())?;
                    nix::mount::mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )
                    .map_err(|_| ())?;
                    let before = mount_points();
                    let ok = prepare(&spec, &rootfs, &cg).is_ok();
                    let misplaced = new_mounts_misplaced(&rootfs, &before);
                    if !misplaced.is_empty() {
                        let _ = writeln!(std::io::stderr(), "misplaced: {misplaced:?}");
                        return Ok(3);
                    }
                    Ok(if ok { 0 } else { 1 })
                })()
                .unwrap_or(4);
                // SAFETY: ends the forked child without unwinding.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, 0) => mounted += 1,
                WaitStatus::Exited(_, 1) => refused += 1,
                other => {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = racer.join();
                    panic!("a mount landed in /proc or outside (or the child failed): {other:?}");
                }
            },
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    racer.join().unwrap();
    eprintln!("race: {mounted} mounted, {refused} refused");
}

#[test]
fn cgroup_mount_is_read_only_in_a_user_namespace_without_a_cgroup_namespace() {
    // CVE-2023-25809: `rw` must not give a user namespace's root a writable cgroup tree.
    let (_dir, _rootfs, cg) = busybox_with_cgroups();
    let ctx = |userns, cgroupns| mounts::MountContext {
        cgroup: &cg,
        cgroupns,
        userns,
    };
    let rw = options::parse(&["rw", "nosuid"]);
    let ro = options::parse(&["ro", "nosuid"]);
    assert!(mounts::cgroup_readonly(&rw, &ctx(true, false)));
    assert!(!mounts::cgroup_readonly(&rw, &ctx(true, true)));
    assert!(!mounts::cgroup_readonly(&rw, &ctx(false, false)));
    assert!(mounts::cgroup_readonly(&ro, &ctx(false, true)));
}

#[test]
fn cgroup2_mount_shows_only_the_containers_cgroup_with_or_without_a_cgroup_namespace() {
    // A new cgroup2 mount outside a cgroup namespace would show the host's whole tree. This
    // host's cgroup2 (at /sys/fs/cgroup/unified) stands in for a unified host's.
    use crate::cgroups::{Hierarchies, Hierarchy, Layout, ProcessCgroups};
    let (_dir, rootfs) = busybox_rootfs();
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !unified.is_dir() {
        eprintln!("no cgroup2 at {}: skipped", unified.display());
        return;
    }
    let name = format!("mini-rootfs-test-{}-v2", std::process::id());
    let sibling = unified.join(format!("{name}-sibling"));
    struct Remove(Vec<PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    std::fs::create_dir(unified.join(&name)).unwrap();
    let _remove = Remove(vec![unified.join(&name)]);
    std::fs::create_dir(&sibling).unwrap();
    let _remove_sibling = Remove(vec![sibling.clone()]);
    let hierarchies = Hierarchies {
        layout: Layout::Unified,
        v1: Vec::new(),
        unified: Some(Hierarchy {
            controllers: Vec::new(),
            mount_point: unified.to_path_buf(),
            root: PathBuf::from("/"),
        }),
    };
    let cg = CgroupManager::with_hierarchies(
        &hierarchies,
        &ProcessCgroups::default(),
        &name,
        Some(&Path::new("/").join(&name)),
    )
    .unwrap();
    let mut spec = default_spec(&rootfs);
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts
        .iter_mut()
        .filter(|m| m.typ().as_deref() == Some("cgroup"))
    {
        // Even `rw`: a bind of the container's own directory, not the host's tree.
        m.set_options(Some(vec!["nosuid".into(), "rw".into()]));
    }
    spec.set_mounts(Some(mounts));
    let sibling_name = sibling.file_name().unwrap().to_owned();
    let cgroupns = |path: Option<&str>| {
        let mut b = oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::Cgroup);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().unwrap()
    };
    // No cgroup namespace, the host's joined by path (both: a bind of the container's
    // directory), and one of its own, made in the container's cgroup as the init does (a new
    // cgroup2 mount, rooted there).
    for (ns, own) in [
        (None, false),
        (Some(cgroupns(Some("/proc/1/ns/cgroup"))), false),
        (Some(cgroupns(None)), true),
    ] {
        if let Some(linux) = spec.linux_mut() {
            let mut namespaces = linux.namespaces().clone().unwrap_or_default();
            namespaces.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Cgroup);
            namespaces.extend(ns);
            linux.set_namespaces(Some(namespaces));
        }
        in_private_mount_ns(|| {
            if own {
                std::fs::write(
                    unified.join(&name).join("cgroup.procs"),
                    std::process::id().to_string(),
                )
                .map_err(|e| format!("join the test cgroup: {e}"))?;
                unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| format!("unshare: {e}"))?;
            }
            prepare(&spec, &rootfs, &cg).map_err(|e| format!("prepare: {e}"))?;
            pivot(&rootfs).map_err(|e| format!("pivot: {e}"))?;
            let entries: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
                .map_err(|e| format!("/sys/fs/cgroup: {e}"))?
                .filter_map(|e| Some(e.ok()?.file_name()))
                .collect();
            check!(
                entries.iter().any(|e| e == "cgroup.procs"),
                "no cgroup.procs: {entries:?}"
            );
            check!(
                !entries.contains(&sibling_name),
                "the host's cgroup tree is visible: {entries:?}"
            );
            Ok(())
        });
    }
}
