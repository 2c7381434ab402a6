//! The container's root filesystem: the rootfs mounts from containerd, the spec's mounts,
//! devices, pivot_root, masked and read-only paths.
//!
//! The container init calls, in its own mount namespace and in this order:
//! [`prepare`] → [`pivot`] → (hostname, sysctls) → [`finish`].

mod devices;
mod mount_api;
mod mounts;
pub mod options;
mod paths;
pub mod resolve;

use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::CgroupManager;
use crate::{Error, Result};
use mounts::sys_mount;
pub(crate) use mounts::{prepare_idmapped_binds, prepared_fds};
use resolve::Root;

/// One mount of the container's rootfs as containerd passes it (overlay, bind…).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mounts containerd's rootfs mounts, in order, at `target` (in the caller's mount namespace).
/// A bind with `ro` is remounted read-only. On failure nothing stays mounted at `target`; the
/// error names the mount's type, source and the target.
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    mounts::mount_rootfs(mounts, target)
}

/// Unmounts everything at or below `target`; succeeds when nothing is mounted there or
/// `target` does not exist.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    mounts::unmount_rootfs(target)
}

/// In the container init, in its new mount namespace, before pivot_root: sets the root
/// propagation, binds `rootfs` onto itself, mounts the spec's mounts, creates devices and
/// the /dev symlinks.
///
/// Every mount destination is resolved inside `rootfs`: a symlink in the image never makes a
/// mount land on the host. Nothing is mounted inside /proc, and nothing through a symlink
/// under /dev or for proc and sysfs. A `cgroup` mount shows `cgroup`'s directories (their
/// host paths are bind sources).
pub fn prepare(spec: &Spec, rootfs: &Path, cgroup: &CgroupManager) -> Result<()> {
    let linux = spec.linux().as_ref();
    let propagation = match root_propagation(spec)? {
        // An unbindable mount cannot be bound onto itself below: that one comes after the
        // root changed ([`apply_root_propagation`]).
        Some(p) if p.contains(MsFlags::MS_UNBINDABLE) => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => p,
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    // Nothing the container mounts may propagate back to the host.
    sys_mount(None, Path::new("/"), None, propagation, None, || {
        format!("/ (linux.rootfsPropagation {propagation:?})")
    })?;

    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| Error::io("canonicalize (root.path)", rootfs, e))?;
    make_parent_mount_private(&rootfs)?;
    // pivot_root needs the new root to be a mount point.
    sys_mount(
        Some(&rootfs),
        &rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        || format!("{} on itself (bind)", rootfs.display()),
    )?;
    // Opened after the self-bind so that every mount below goes onto the new mount.
    let root = Root::open(&rootfs)?;

    let namespaces = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    let ctx = mounts::MountContext {
        cgroup,
        // Only a namespace made for the container counts: one joined by path may be the
        // host's, where a new cgroup2 mount would show the whole tree.
        cgroupns: namespaces.iter().any(|n| {
            n.typ() == LinuxNamespaceType::Cgroup
                && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
        }),
        userns: namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User),
    };
    let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
    for (index, m) in spec_mounts.iter().enumerate() {
        mounts::mount_spec_mount(&root, index, m, &ctx)?;
    }

    if !mounts::dev_is_bind_mounted(spec_mounts) {
        let spec_devices = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        let nodes = devices::device_list(spec_devices)?;
        devices::create_devices(&root, &nodes)?;
        devices::create_symlinks(&root)?;
    }
    Ok(())
}

/// The spec's `linux.rootfsPropagation` as mount flags; `None` when not set.
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        None | Some("") => Ok(None),
        Some(word) => options::propagation(word).map(Some).ok_or_else(|| {
            Error::invalid(
                "linux.rootfsPropagation",
                format!("{word:?} is not a propagation mode"),
            )
        }),
    }
}

/// Sets `linux.rootfsPropagation` on the container's root once it is `/` (after
/// [`pivot`] or [`move_root`]), as runc does: set before, on the host's `/` copy, it would
/// not carry over to the rootfs's own bind mount (a bind of a private mount is private, and
/// an unbindable one cannot be bound at all).
pub fn apply_root_propagation(spec: &Spec) -> Result<()> {
    if let Some(propagation) = root_propagation(spec)? {
        sys_mount(None, Path::new("/"), None, propagation, None, || {
            format!("/ (linux.rootfsPropagation {propagation:?}, after the root changed)")
        })?;
    }
    Ok(())
}

/// pivot_root refuses a new root whose parent mount is shared (the root propagation may have
/// been set to `shared` by the spec): make that one mount private.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let parent = info
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|(mount_point, _)| rootfs.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| mount_point.as_os_str().len());
    if let Some((mount_point, shared)) = parent
        && shared
    {
        sys_mount(None, &mount_point, None, MsFlags::MS_PRIVATE, None, || {
            format!("{} (private, parent of the rootfs)", mount_point.display())
        })?;
    }
    Ok(())
}

/// A mountinfo line's mount point and whether it is shared (`shared:N` among the optional
/// fields).
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, bool)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let mount_point = unescape_mountinfo(fields.get(4)?);
    let shared = fields
        .iter()
        .skip(6)
        .take_while(|f| **f != "-")
        .any(|f| f.starts_with("shared:"));
    Some((PathBuf::from(mount_point), shared))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'\\')
            .then(|| b.get(i + 1..i + 4))
            .flatten()
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes `rootfs` the root (pivot_root) and detaches the old root.
///
/// `pivot_root(".", ".")` stacks the old root on top of the new one, so no directory for it
/// is needed inside the image; it is then made a slave (so the detach does not propagate to
/// the host) and lazily unmounted.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let open_dir = |p: &Path| {
        nix::fcntl::open(
            p,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("open", p.display().to_string(), e))
    };
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root)
        .map_err(|e| Error::sys("fchdir", rootfs.display().to_string(), e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| {
        Error::sys(
            "pivot_root",
            format!("{} (new and old root \".\")", rootfs.display()),
            e,
        )
    })?;
    // "." must name the old root, stacked on top, not the new root underneath it.
    nix::unistd::fchdir(&old_root).map_err(|e| Error::sys("fchdir", "old root", e))?;
    sys_mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
        || "old root (rslave)".to_string(),
    )?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| Error::sys("umount2", "old root (MNT_DETACH)", e))?;
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir", "/", e))?;
    Ok(())
}

/// Makes `rootfs` the root without pivot_root (runc's `--no-pivot`, for a root that
/// pivot_root refuses, e.g. on a ramfs): moves the rootfs mount onto `/` and chroots into
/// it. The old root stays in the mount namespace, underneath, so first every full procfs
/// and sysfs mount of it outside the rootfs is detached (made a slave first, so the detach
/// does not propagate to the host): the kernel allows a new proc or sysfs mount only where
/// such a full mount is visible in the namespace, and would let the container mount one.
pub fn move_root(rootfs: &Path) -> Result<()> {
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| Error::io("canonicalize (root.path)", rootfs, e))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut kernel_mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = *fields.get(sep + 1)?;
            let full = *fields.get(3)? == "/";
            let at = PathBuf::from(unescape_mountinfo(fields.get(4)?));
            (full && (fstype == "proc" || fstype == "sysfs") && !at.starts_with(&rootfs))
                .then_some(at)
        })
        .collect();
    // Deepest first: a parent's detach takes its submounts along.
    kernel_mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for at in kernel_mounts {
        match nix::mount::mount(
            None::<&str>,
            &at,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            // Gone with an earlier detach.
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => continue,
            Err(e) => return Err(Error::sys("mount", format!("{} (rslave)", at.display()), e)),
        }
        match nix::mount::umount2(&at, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            // Locked by a less privileged namespace: cover it instead.
            Err(nix::errno::Errno::EPERM) => sys_mount(
                Some(Path::new("tmpfs")),
                &at,
                Some("tmpfs"),
                MsFlags::empty(),
                None,
                || format!("tmpfs over {} (no-pivot)", at.display()),
            )?,
            Err(e) => {
                return Err(Error::sys(
                    "umount2",
                    format!("{} (MNT_DETACH, no-pivot)", at.display()),
                    e,
                ));
            }
        }
    }
    nix::unistd::chdir(&rootfs)
        .map_err(|e| Error::sys("chdir", rootfs.display().to_string(), e))?;
    sys_mount(
        Some(Path::new(".")),
        Path::new("/"),
        None,
        MsFlags::MS_MOVE,
        None,
        || format!("{} onto / (MS_MOVE, no-pivot)", rootfs.display()),
    )?;
    nix::unistd::chroot(".").map_err(|e| Error::sys("chroot", rootfs.display().to_string(), e))?;
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir", "/", e))?;
    Ok(())
}

/// After pivot_root: read-only root, read-only paths, masked paths. Paths that do not exist
/// on this kernel are skipped.
pub fn finish(spec: &Spec) -> Result<()> {
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        paths::make_root_readonly()?;
    }
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        paths::make_readonly(Path::new(p))?;
    }
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        paths::mask(Path::new(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
