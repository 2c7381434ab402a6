//! After pivot_root: masked paths, read-only paths and the read-only root.
//!
//! The paths are looked up from the container's own root, so they cannot leave it. Each is
//! opened with `O_PATH|O_NOFOLLOW` and the mount made on that open file: a path whose last
//! component is a symlink is refused, never followed to whatever it names.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, fstat, major, minor};

use super::mounts::{bind_remount, kept_flags, sys_mount};
use super::resolve::fd_path;
use crate::{Error, Result};

const MASKED: &str = "linux.maskedPaths";
const READONLY: &str = "linux.readonlyPaths";

/// Opens `path` (a `field` entry) without following a last-component symlink. `None` when it
/// does not exist (this kernel's /proc/kcore…).
fn open_entry(field: &str, path: &Path) -> Result<Option<(OwnedFd, SFlag)>> {
    if !path.is_absolute() {
        return Err(Error::invalid(
            field,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let fd = match nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => {
            return Err(Error::sys(
                "open",
                format!("{} ({field})", path.display()),
                e,
            ));
        }
    };
    let kind = file_type(&fd, path, field)?;
    if kind == SFlag::S_IFLNK {
        return Err(Error::invalid(
            field,
            format!(
                "{} is a symlink in the container: refusing to mount over what it points to",
                path.display()
            ),
        ));
    }
    Ok(Some((fd, kind)))
}

fn file_type(fd: &OwnedFd, path: &Path, field: &str) -> Result<SFlag> {
    let st =
        fstat(fd).map_err(|e| Error::sys("fstat", format!("{} ({field})", path.display()), e))?;
    Ok(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
}

/// The container's /dev/null, opened without following a symlink, and checked to be the null
/// device (character 1:3). Masking binds it over files: a /dev/null the image or a mount made
/// into a symlink or another file would bind that file instead (CVE-2025-31133).
fn open_dev_null(masked: &Path) -> Result<OwnedFd> {
    let path = Path::new("/dev/null");
    let refuse = |why: String| {
        Error::invalid(
            MASKED,
            format!(
                "cannot mask {}: /dev/null in the container {why}",
                masked.display()
            ),
        )
    };
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refuse(format!("cannot be opened ({e})")))?;
    let st = fstat(&fd).map_err(|e| Error::sys("fstat", "/dev/null", e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFCHR || (major(st.st_rdev), minor(st.st_rdev)) != (1, 3) {
        return Err(refuse(format!(
            "is not the null device (character 1:3) but {}",
            describe(kind, st.st_rdev)
        )));
    }
    Ok(fd)
}

fn describe(kind: SFlag, rdev: u64) -> String {
    match kind {
        SFlag::S_IFLNK => "a symlink".to_string(),
        SFlag::S_IFREG => "a regular file".to_string(),
        SFlag::S_IFDIR => "a directory".to_string(),
        SFlag::S_IFCHR => format!("character device {}:{}", major(rdev), minor(rdev)),
        SFlag::S_IFBLK => format!("block device {}:{}", major(rdev), minor(rdev)),
        _ => "a special file".to_string(),
    }
}

/// Hides `path` from the container: a directory gets an empty read-only tmpfs, anything else
/// /dev/null bound over it. A path that does not exist is skipped; a symlink is refused.
pub(crate) fn mask(path: &Path) -> Result<()> {
    let Some((fd, kind)) = open_entry(MASKED, path)? else {
        return Ok(());
    };
    let target = fd_path(&fd);
    if kind == SFlag::S_IFDIR {
        sys_mount(
            Some(Path::new("tmpfs")),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
            || format!("tmpfs on {} ({MASKED})", path.display()),
        )
    } else {
        let null = open_dev_null(path)?;
        sys_mount(
            Some(&fd_path(&null)),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
            || format!("/dev/null on {} ({MASKED})", path.display()),
        )
    }
}

/// Makes `path` read-only: a bind of itself, remounted read-only, keeping its nosuid/nodev/
/// noexec. A path that does not exist is skipped; a symlink is refused.
pub(crate) fn make_readonly(path: &Path) -> Result<()> {
    let what = || format!("{} on itself ({READONLY})", path.display());
    let Some((fd, _)) = open_entry(READONLY, path)? else {
        return Ok(());
    };
    let target = fd_path(&fd);
    sys_mount(
        Some(&target),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        what,
    )?;
    // The earlier handle still names the file underneath the new mount.
    let Some((top, _)) = open_entry(READONLY, path)? else {
        return Err(Error::sys("open", what(), Errno::ENOENT));
    };
    let target = fd_path(&top);
    let kept = kept_flags(&target)?;
    bind_remount(&target, MsFlags::MS_RDONLY | kept, &what)?;
    Ok(())
}

/// `root.readonly`: remounts the container's / read-only (it is a bind mount of the rootfs).
pub(crate) fn make_root_readonly() -> Result<()> {
    let root = Path::new("/");
    let kept = kept_flags(root)?;
    bind_remount(root, MsFlags::MS_RDONLY | kept, &|| {
        "/ (root.readonly)".to_string()
    })
}
