//! Mounting: containerd's rootfs mounts on the host, and the spec's `mounts` inside the rootfs.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use oci_spec::runtime::Mount;

use super::RootfsMount;
use super::options::{self, MountOptions};
use super::resolve::{Root, fd_path};
use crate::{Error, Result};

/// `mount(2)` with `Option<&str>`/`&Path` arguments and an error naming what was mounted where.
pub(crate) fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| Error::sys("mount", what(), e))
}

/// The per-mount flags of the mount holding `path` that a bind remount must repeat: without
/// them the kernel refuses to drop flags locked by a less privileged namespace, and they are
/// what the caller expects to keep.
pub(crate) fn kept_flags(path: &Path) -> Result<MsFlags> {
    let st = statvfs(path).map_err(|e| Error::sys("statvfs", path.display().to_string(), e))?;
    let f = st.flags();
    let map = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(map
        .iter()
        .filter(|(st, _)| f.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

/// Changes the flags of the bind mount at `target`. When the kernel refuses (`EPERM`: flags
/// locked by the mount's origin), retries with the mount's current flags added.
pub(crate) fn bind_remount(target: &Path, flags: MsFlags, what: &dyn Fn() -> String) -> Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        target,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let kept = kept_flags(target)?;
            sys_mount(None, target, None, base | flags | kept, None, || {
                format!("{} (remount)", what())
            })
        }
        Err(e) => Err(Error::sys("mount", format!("{} (remount)", what()), e)),
    }
}

// ---------------------------------------------------------------------------------------------
// containerd's rootfs

/// See [`super::mount_rootfs`].
pub(crate) fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one_rootfs(m, target) {
            // Leave nothing half-mounted behind: the caller sees the error and a clean target.
            if i > 0 {
                let _ = unmount_rootfs(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one_rootfs(m: &RootfsMount, target: &Path) -> Result<()> {
    let opts = options::parse(&m.options);
    let what = || format!("rootfs {} ({}) on {}", m.source, m.typ, target.display());
    let source = Path::new(&m.source);
    if opts.is_bind || m.typ == "bind" || m.typ == "rbind" {
        let rec = if opts.recursive || m.typ == "rbind" {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        sys_mount(
            Some(source),
            target,
            None,
            MsFlags::MS_BIND | rec,
            None,
            what,
        )?;
        let extra = opts.remount_flags();
        if !extra.is_empty() {
            bind_remount(target, extra, &what)?;
        }
    } else {
        sys_mount(
            Some(source),
            target,
            Some(&m.typ),
            opts.flags(),
            opts.data(),
            what,
        )?;
    }
    apply_propagation(target, &opts, &what)
}

/// See [`super::unmount_rootfs`].
pub(crate) fn unmount_rootfs(target: &Path) -> Result<()> {
    // Several mounts may be stacked at `target`; each MNT_DETACH removes the top one and its
    // submounts. EINVAL means "not a mount point": done.
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::sys(
                    "umount2",
                    format!("{} (MNT_DETACH)", target.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::sys(
        "umount2",
        format!("{}: still mounted after 64 detaches", target.display()),
        Errno::EBUSY,
    ))
}

fn apply_propagation(target: &Path, opts: &MountOptions, what: &dyn Fn() -> String) -> Result<()> {
    for p in &opts.propagation {
        sys_mount(None, target, None, *p, None, || {
            format!("{} (propagation {p:?})", what())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// spec mounts

/// How the host mounts cgroups, which decides what a `cgroup` mount becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostCgroups {
    /// Only cgroup2 at /sys/fs/cgroup: the container gets its own cgroup2 mount.
    Unified,
    /// v1 controllers (legacy or hybrid): the container gets an empty read-only tmpfs, as
    /// runc does on such hosts.
    V1,
}

impl HostCgroups {
    pub(crate) fn detect() -> HostCgroups {
        match nix::sys::statfs::statfs("/sys/fs/cgroup") {
            Ok(st) if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => {
                HostCgroups::Unified
            }
            _ => HostCgroups::V1,
        }
    }
}

/// One `spec.mounts` entry, ready to mount.
struct SpecMount<'a> {
    dest: &'a Path,
    typ: &'a str,
    source: Option<&'a Path>,
    opts: MountOptions,
}

impl SpecMount<'_> {
    fn describe(&self) -> String {
        let src = self
            .source
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| self.typ.to_string());
        format!("{src} on {} ({})", self.dest.display(), self.typ)
    }

    fn is_bind(&self) -> bool {
        self.opts.is_bind || self.typ == "bind" || self.typ == "rbind"
    }
}

/// True when the spec bind-mounts something (normally the host's /dev) at /dev: then the
/// runtime creates no device nodes or /dev symlinks of its own.
pub(crate) fn dev_is_bind_mounted(spec_mounts: &[Mount]) -> bool {
    spec_mounts.iter().any(|m| {
        let opts = options::parse(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().as_deref().unwrap_or_default();
        super::resolve::relative(m.destination()) == Path::new("dev")
            && (opts.is_bind || typ == "bind" || typ == "rbind")
    })
}

/// Mounts one `spec.mounts` entry inside `root`.
pub(crate) fn mount_spec_mount(root: &Root, m: &Mount, cgroups: HostCgroups) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::invalid(
            "mounts.destination",
            format!("{} is not an absolute path", dest.display()),
        ));
    }
    let sm = SpecMount {
        dest,
        typ: m.typ().as_deref().unwrap_or_default(),
        source: m.source().as_deref(),
        opts: options::parse(m.options().as_deref().unwrap_or_default()),
    };
    if sm.is_bind() {
        mount_bind(root, &sm)
    } else {
        match sm.typ {
            "cgroup" | "cgroup2" => mount_cgroup(root, &sm, cgroups),
            "sysfs" => mount_sysfs(root, &sm),
            "" => Err(Error::invalid(
                "mounts.type",
                format!(
                    "mount on {} has no type and is not a bind mount",
                    dest.display()
                ),
            )),
            _ => mount_fs(
                root,
                &sm,
                sm.typ,
                sm.source,
                sm.opts.flags(),
                sm.opts.data(),
            ),
        }
    }
}

/// The destination directory, created if missing, and the `/proc/self/fd` path to mount on.
fn dest_dir(root: &Root, sm: &SpecMount) -> Result<(OwnedFd, PathBuf)> {
    let fd = root.mkdir_all(sm.dest)?;
    let path = fd_path(&fd);
    Ok((fd, path))
}

/// A fresh handle on the destination after something was mounted there (the earlier handle
/// still points to the directory underneath), for remounts and propagation changes.
fn reopen(root: &Root, sm: &SpecMount) -> Result<(OwnedFd, PathBuf)> {
    let fd = root.open_path(sm.dest)?;
    let path = fd_path(&fd);
    Ok((fd, path))
}

fn mount_fs(
    root: &Root,
    sm: &SpecMount,
    fstype: &str,
    source: Option<&Path>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    let (_fd, target) = dest_dir(root, sm)?;
    let source = source.unwrap_or(Path::new(fstype));
    sys_mount(Some(source), &target, Some(fstype), flags, data, || {
        sm.describe()
    })?;
    if !sm.opts.propagation.is_empty() {
        let (_fd, target) = reopen(root, sm)?;
        apply_propagation(&target, &sm.opts, &|| sm.describe())?;
    }
    Ok(())
}

fn mount_bind(root: &Root, sm: &SpecMount) -> Result<()> {
    let source = sm.source.ok_or_else(|| {
        Error::invalid(
            "mounts.source",
            format!("bind mount on {} has no source", sm.dest.display()),
        )
    })?;
    // Check the source first so the error names it rather than the destination we would
    // otherwise create for nothing.
    let meta = std::fs::metadata(source).map_err(|e| {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        Error::sys("mount", sm.describe(), errno)
    })?;
    let fd = if meta.is_dir() {
        root.mkdir_all(sm.dest)?
    } else {
        root.create_file(sm.dest)?
    };
    let target = fd_path(&fd);
    let rec = if sm.opts.recursive || sm.typ == "rbind" {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    sys_mount(
        Some(source),
        &target,
        None,
        MsFlags::MS_BIND | rec,
        None,
        || sm.describe(),
    )?;
    drop(fd);
    let (_fd, target) = reopen(root, sm)?;
    let extra = sm.opts.remount_flags();
    if !extra.is_empty() {
        bind_remount(&target, extra, &|| sm.describe())?;
    }
    apply_propagation(&target, &sm.opts, &|| sm.describe())
}

fn mount_sysfs(root: &Root, sm: &SpecMount) -> Result<()> {
    match mount_fs(
        root,
        sm,
        "sysfs",
        sm.source,
        sm.opts.flags(),
        sm.opts.data(),
    ) {
        // Without its own network namespace (or in a user namespace) the kernel may refuse a
        // new sysfs instance; the host's /sys, bound read-only, is what runc falls back to.
        Err(Error::Sys {
            source: Errno::EPERM,
            ..
        }) => {
            let (fd, target) = dest_dir(root, sm)?;
            let what = || format!("/sys on {} (rbind, sysfs fallback)", sm.dest.display());
            sys_mount(
                Some(Path::new("/sys")),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                what,
            )?;
            drop(fd);
            let (_fd, target) = reopen(root, sm)?;
            let flags = sm.opts.remount_flags()
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC;
            bind_remount(&target, flags, &what)
        }
        other => other,
    }
}

fn mount_cgroup(root: &Root, sm: &SpecMount, cgroups: HostCgroups) -> Result<()> {
    match cgroups {
        HostCgroups::Unified => {
            let source = sm.source.unwrap_or(Path::new("cgroup"));
            mount_fs(
                root,
                sm,
                "cgroup2",
                Some(source),
                sm.opts.flags(),
                sm.opts.data(),
            )
        }
        HostCgroups::V1 => {
            // An empty read-only tmpfs: the container sees a /sys/fs/cgroup that exists and
            // holds nothing, as with runc on a hybrid host.
            let flags = sm.opts.flags() | MsFlags::MS_RDONLY;
            mount_fs(
                root,
                sm,
                "tmpfs",
                Some(Path::new("cgroup")),
                flags,
                Some("mode=755"),
            )
        }
    }
}
