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
    let (_dir, rootfs) = busybox_rootfs();
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
        prepare(&spec, &rootfs).map_err(|e| format!("prepare: {e}"))?;
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
        let cgroup = std::fs::read_dir("/sys/fs/cgroup")
            .map_err(|e| format!("/sys/fs/cgroup: {e}"))?
            .count();
        check!(
            cgroup == 0,
            "/sys/fs/cgroup lists {cgroup} entries on a v1/hybrid host"
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
    let (_dir, rootfs) = busybox_rootfs();
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
        let err = match prepare(&spec, &rootfs) {
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
    let (dir, rootfs) = busybox_rootfs();
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
        prepare(&spec, &rootfs).map_err(|e| format!("prepare: {e}"))?;
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
    let (_dir, rootfs) = busybox_rootfs();
    let mut spec = default_spec(&rootfs);
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some("rshared".to_string()));
    }
    in_private_mount_ns(|| {
        prepare(&spec, &rootfs).map_err(|e| format!("prepare: {e}"))?;
        pivot(&rootfs).map_err(|e| format!("pivot: {e}"))?;
        finish(&spec).map_err(|e| format!("finish: {e}"))?;
        check!(Path::new("/bin/sh").exists(), "/bin/sh missing after pivot");
        Ok(())
    });
}

#[test]
fn unknown_rootfs_propagation_is_rejected_naming_the_field() {
    let (_dir, rootfs) = busybox_rootfs();
    let mut spec = default_spec(&rootfs);
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some("sideways".to_string()));
    }
    in_private_mount_ns(|| {
        let err = match prepare(&spec, &rootfs) {
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
