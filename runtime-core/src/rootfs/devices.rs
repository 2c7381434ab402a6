//! Device nodes in the container's /dev and the /dev symlinks every Linux program expects.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::sys_mount;
use super::resolve::{Root, fd_path, lexical};
use crate::{Error, Result};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    /// Container path, under /dev.
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The nodes every container gets (the runtime-spec's list), mode 0666, owned by root.
pub(crate) fn default_devices() -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts `linux.devices[index]`, naming the field on a bad value.
pub(crate) fn from_spec(index: usize, d: &LinuxDevice) -> Result<DeviceNode> {
    let field = |f: &str| format!("linux.devices[{index}].{f}");
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::invalid(
                field("type"),
                "\"a\" is not a node type (c, u, b or p)",
            ));
        }
    };
    let path = d.path();
    if !path.starts_with("/dev/")
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Error::invalid(
            field("path"),
            format!("{} is not under /dev", path.display()),
        ));
    }
    let number = |v: i64, f: &str| {
        u64::try_from(v).map_err(|_| Error::invalid(field(f), format!("{v} is negative")))
    };
    Ok(DeviceNode {
        path: path.clone(),
        kind,
        major: number(d.major(), "major")?,
        minor: number(d.minor(), "minor")?,
        // The file type bits belong to `kind`; only permission bits are taken from fileMode.
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// The default devices followed by the spec's; a spec device replaces a default one at the
/// same path.
pub(crate) fn device_list(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>> {
    let spec: Vec<DeviceNode> = spec_devices
        .iter()
        .enumerate()
        .map(|(i, d)| from_spec(i, d))
        .collect::<Result<_>>()?;
    let mut all: Vec<DeviceNode> = default_devices()
        .into_iter()
        .filter(|d| !spec.iter().any(|s| s.path == d.path))
        .collect();
    all.extend(spec);
    Ok(all)
}

/// Creates each node inside `root`.
pub(crate) fn create_devices(root: &Root, nodes: &[DeviceNode]) -> Result<()> {
    for node in nodes {
        create_device(root, node)?;
    }
    Ok(())
}

fn create_device(root: &Root, node: &DeviceNode) -> Result<()> {
    let path = lexical(&node.path);
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => {
            return Err(Error::invalid(
                "linux.devices.path",
                format!("{} has no file name", node.path.display()),
            ));
        }
    };
    // The node itself may be anything of the image's (it is replaced), but not the
    // directory it goes in.
    let dir = real_dir(root, parent)?;
    let what = || {
        format!(
            "{} in rootfs {}",
            node.path.display(),
            root.path().display()
        )
    };
    // An image may ship its own /dev entries: the spec's node replaces them.
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys("unlinkat", what(), e)),
    }
    let dev = makedev(node.major, node.minor);
    match mknodat(
        dir.as_fd(),
        name,
        node.kind,
        Mode::from_bits_truncate(node.mode),
        dev,
    ) {
        Ok(()) => {}
        // In a user namespace mknod is denied: bind the host's node instead, as runc does.
        Err(Errno::EPERM) => return bind_host_device(root, node),
        Err(e) => return Err(Error::sys("mknodat", what(), e)),
    }
    // mknod applied the umask; set the exact mode asked for.
    fchmodat(
        dir.as_fd(),
        name,
        Mode::from_bits_truncate(node.mode),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| Error::sys("fchmodat", what(), e))?;
    fchownat(
        dir.as_fd(),
        name,
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::sys("fchownat", what(), e))
}

/// Creates (if missing) and opens the directory `path` of the rootfs, refusing one that the
/// image reaches through a symlink: a `/dev -> /host-dev` or `/dev/pts -> /proc/…` must not
/// decide where device nodes go.
fn real_dir(root: &Root, path: &Path) -> Result<std::os::fd::OwnedFd> {
    let resolved = root.resolve(path)?;
    if resolved != lexical(path) {
        return Err(Error::invalid(
            "linux.devices",
            format!(
                "{} is a symlink in rootfs {} (to {}): device nodes go only in a real \
                 directory",
                path.display(),
                root.path().display(),
                resolved.display()
            ),
        ));
    }
    root.mkdir_all(path)
}

fn bind_host_device(root: &Root, node: &DeviceNode) -> Result<()> {
    let fd = root.create_file(&node.path)?;
    sys_mount(
        Some(node.path.as_path()),
        &fd_path(&fd),
        None,
        MsFlags::MS_BIND,
        None,
        || {
            format!(
                "{} on {} (bind, mknod denied)",
                node.path.display(),
                node.path.display()
            )
        },
    )
}

/// /dev/fd, /dev/stdin|stdout|stderr, /dev/ptmx (to the devpts instance) and, when the
/// kernel has /proc/kcore, /dev/core.
pub(crate) fn create_symlinks(root: &Root) -> Result<()> {
    let dev = real_dir(root, Path::new("/dev"))?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        let what = || {
            format!(
                "/dev/{name} -> {target} in rootfs {}",
                root.path().display()
            )
        };
        if name == "ptmx" {
            // A ptmx node (from the image or the spec) would be the host's multiplexer, not the
            // container's devpts instance.
            match unlinkat(dev.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(Error::sys("unlinkat", what(), e)),
            }
        }
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys("symlinkat", what(), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    #[test]
    fn default_devices_are_the_six_standard_nodes() {
        let names: Vec<String> = default_devices()
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert!(
            default_devices()
                .iter()
                .all(|d| d.mode == 0o666 && d.uid == 0 && d.kind == SFlag::S_IFCHR)
        );
    }

    #[test]
    fn spec_device_replaces_the_default_at_the_same_path() {
        let d = LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o600u32)
            .uid(1000u32)
            .build()
            .unwrap();
        let list = device_list(&[d]).unwrap();
        let nulls: Vec<&DeviceNode> = list
            .iter()
            .filter(|n| n.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(nulls.len(), 1);
        assert_eq!((nulls[0].mode, nulls[0].uid), (0o600, 1000));
    }

    #[test]
    fn device_outside_dev_is_rejected_naming_the_field() {
        let d = LinuxDeviceBuilder::default()
            .path("/etc/x")
            .typ(LinuxDeviceType::C)
            .build()
            .unwrap();
        let err = device_list(&[d]).unwrap_err().to_string();
        assert!(err.contains("linux.devices[0].path"), "{err}");
    }

    #[test]
    fn device_of_type_a_is_rejected() {
        let d = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::A)
            .build()
            .unwrap();
        let err = device_list(&[d]).unwrap_err().to_string();
        assert!(err.contains("linux.devices[0].type"), "{err}");
    }
}
