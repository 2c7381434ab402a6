//! After pivot_root: masked paths, read-only paths and the read-only root.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::mounts::{bind_remount, kept_flags, sys_mount};
use crate::{Error, Result};

/// Hides `path` from the container: a directory gets an empty read-only tmpfs, anything else
/// /dev/null bound over it. A path that does not exist (this kernel's /proc/kcore…) is skipped.
pub(crate) fn mask(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat (linux.maskedPaths)", path, e)),
    };
    if meta.is_dir() {
        sys_mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
            || format!("tmpfs on {} (linux.maskedPaths)", path.display()),
        )
    } else {
        sys_mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
            || format!("/dev/null on {} (linux.maskedPaths)", path.display()),
        )
    }
}

/// Makes `path` read-only: a bind of itself, remounted read-only, keeping its nosuid/nodev/
/// noexec. A path that does not exist is skipped.
pub(crate) fn make_readonly(path: &Path) -> Result<()> {
    let what = || format!("{} on itself (linux.readonlyPaths)", path.display());
    match nix::mount::mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys("mount", what(), e)),
    }
    let kept = kept_flags(path)?;
    bind_remount(path, MsFlags::MS_RDONLY | kept, &what)
}

/// `root.readonly`: remounts the container's / read-only (it is a bind mount of the rootfs).
pub(crate) fn make_root_readonly() -> Result<()> {
    let root = Path::new("/");
    let kept = kept_flags(root)?;
    bind_remount(root, MsFlags::MS_RDONLY | kept, &|| {
        "/ (root.readonly)".to_string()
    })
}
