//! Writes into procfs that land on the procfs file they name (CVE-2025-52881).
//!
//! The container init writes sysctls and its own `oom_score_adj` after the spec's mounts are
//! in place: a path such as `/proc/sys/kernel/shmmax` may by then be a bind mount of another
//! file, or `/proc/self` may name something the image arranged. [`ProcFs`] opens a procfs
//! instance of its own (a detached `fsopen` mount that nothing can be mounted over) where the
//! kernel allows it, else the `/proc` mount after checking that it is the root of a procfs.
//! Each file is opened beneath it with `openat2` without following any symlink or crossing
//! any mount, and checked to be on procfs before a byte is written.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::{Error, Result};

/// `statfs.f_type` of procfs.
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;
/// The inode number of a procfs root.
const PROC_ROOT_INO: u64 = 1;

/// A handle on a procfs root.
#[derive(Debug)]
pub struct ProcFs {
    root: OwnedFd,
}

impl ProcFs {
    /// A private procfs instance of the caller's pid namespace, or `/proc` where the kernel
    /// refuses one (old kernels, some user namespaces).
    pub fn open() -> Result<Self> {
        match private_instance() {
            Ok(root) => Self::checked(root, "procfs (fsmount)"),
            Err(_) => Self::at(Path::new("/proc")),
        }
    }

    /// The procfs mounted at `path`; an error unless `path` is the root of a procfs.
    pub fn at(path: &Path) -> Result<Self> {
        let root = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("open", path.display().to_string(), e))?;
        Self::checked(root, &path.display().to_string())
    }

    fn checked(root: OwnedFd, what: &str) -> Result<Self> {
        check_procfs(&root, what)?;
        let st = nix::sys::stat::fstat(&root).map_err(|e| Error::sys("fstat", what, e))?;
        if st.st_ino != PROC_ROOT_INO {
            return Err(Error::Setup(format!(
                "{what} is not the root of a procfs (inode {})",
                st.st_ino
            )));
        }
        Ok(Self { root })
    }

    /// Opens `rel` (e.g. `sys/kernel/shmmax`) beneath the procfs root without following
    /// symlinks or crossing mounts, and checks that the file is on procfs.
    fn open_file(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            );
        let shown = format!("/proc/{}", rel.display());
        let fd = openat2(self.root.as_fd(), rel, how)
            .map_err(|e| Error::sys("openat2", format!("{shown} (no symlinks or mounts)"), e))?;
        check_procfs(&fd, &shown)?;
        Ok(fd)
    }

    /// Writes `value` to the procfs file `rel`.
    pub fn write(&self, rel: &Path, value: &str) -> Result<()> {
        let fd = self.open_file(rel, OFlag::O_WRONLY)?;
        let n = nix::unistd::write(&fd, value.as_bytes())
            .map_err(|e| Error::sys("write", format!("/proc/{} = {value:?}", rel.display()), e))?;
        if n != value.len() {
            return Err(Error::Setup(format!(
                "write /proc/{}: short write ({n} of {} bytes)",
                rel.display(),
                value.len()
            )));
        }
        Ok(())
    }

    /// Opens the procfs directory `rel` (e.g. `<pid>/ns`), for what lies beneath it that
    /// is not on procfs (namespace files).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd> {
        self.open_file(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// Reads the procfs file `rel`.
    pub fn read(&self, rel: &Path) -> Result<String> {
        let fd = self.open_file(rel, OFlag::O_RDONLY)?;
        std::io::read_to_string(std::fs::File::from(fd))
            .map_err(|e| Error::io("read", Path::new("/proc").join(rel), e))
    }

    /// The calling process's directory (`<pid>`), without the `self` symlink.
    pub fn own_dir() -> String {
        std::process::id().to_string()
    }
}

/// Fields `first..first + N` (numbered from 1 as proc(5) does; `first` 3 or more) of
/// `/proc/self/stat` as numbers, read once and only from procfs. They are counted after the
/// `)` that ends the command name, which may itself hold spaces and parentheses.
pub fn own_stat_fields<const N: usize>(first: usize) -> Option<[u64; N]> {
    let file = std::fs::File::open("/proc/self/stat").ok()?;
    check_procfs(&file, "/proc/self/stat").ok()?;
    let stat = std::io::read_to_string(file).ok()?;
    let mut fields = stat
        .rsplit(')')
        .next()?
        .split_whitespace()
        .skip(first.checked_sub(3)?);
    let mut out = [0; N];
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(out)
}

fn check_procfs(fd: &impl AsFd, what: &str) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).map_err(|e| Error::sys("fstatfs", what, e))?;
    if fs.filesystem_type().0 as libc::c_long != PROC_SUPER_MAGIC {
        return Err(Error::Setup(format!(
            "{what} is not on procfs (type {:#x}): refused",
            fs.filesystem_type().0
        )));
    }
    Ok(())
}

/// `fsopen("proc")` + `fsmount`: a procfs of the caller's pid namespace, attached nowhere.
fn private_instance() -> std::result::Result<OwnedFd, Errno> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID_NODEV_NOEXEC: libc::c_uint = 0x2 | 0x4 | 0x8;
    let name = CString::new("proc").expect("no NUL");
    // SAFETY: fsopen with a valid C string and flags; returns an fd or -1.
    let ctx = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if ctx < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fsopen returned a fresh fd that nothing else owns.
    let ctx = unsafe { OwnedFd::from_raw_fd(ctx as i32) };
    // SAFETY: fsconfig(CMD_CREATE) takes no key or value pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fsmount on the configured context; returns an fd or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            ctx.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID_NODEV_NOEXEC,
        )
    };
    if mnt < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fsmount returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tests::in_child;
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};

    fn private_mounts() -> std::result::Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_procfs_file_is_read_and_written_through_a_private_instance() {
        in_child(|| {
            let proc = ProcFs::open().map_err(|e| e.to_string())?;
            let rel = Path::new(&ProcFs::own_dir()).join("oom_score_adj");
            proc.write(&rel, "321").map_err(|e| e.to_string())?;
            let got = proc.read(&rel).map_err(|e| e.to_string())?;
            if got.trim() != "321" {
                return Err(format!("oom_score_adj reads {got:?}"));
            }
            Ok(())
        });
    }

    /// A file bind-mounted over a procfs file (what CVE-2025-52881 arranges through a
    /// shared mount) is not written: the write fails closed.
    #[test]
    fn a_write_redirected_by_a_bind_mount_fails_closed() {
        in_child(|| {
            private_mounts()?;
            let decoy = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            std::fs::write(decoy.path(), "untouched").map_err(|e| e.to_string())?;
            let target = format!("/proc/{}/oom_score_adj", ProcFs::own_dir());
            mount(
                Some(decoy.path()),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            let proc = ProcFs::at(Path::new("/proc")).map_err(|e| e.to_string())?;
            let rel = Path::new(&ProcFs::own_dir()).join("oom_score_adj");
            if proc.write(&rel, "100").is_ok() {
                return Err("a write over a bind mount succeeded".into());
            }
            let left = std::fs::read_to_string(decoy.path()).map_err(|e| e.to_string())?;
            if left != "untouched" {
                return Err(format!("the decoy was written: {left:?}"));
            }
            Ok(())
        });
    }

    /// `/proc` replaced by something else (a tmpfs with a symlink where a procfs file should
    /// be) is refused before any write.
    #[test]
    fn a_proc_that_is_not_procfs_is_refused() {
        in_child(|| {
            private_mounts()?;
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| e.to_string())?;
            match ProcFs::at(dir.path()) {
                Ok(_) => Err("a tmpfs was taken for procfs".into()),
                Err(_) => Ok(()),
            }
        });
    }

    /// A symlink on the way (`self`) is not followed.
    #[test]
    fn symlinks_are_not_followed() {
        in_child(|| {
            let proc = ProcFs::at(Path::new("/proc")).map_err(|e| e.to_string())?;
            match proc.write(Path::new("self/oom_score_adj"), "100") {
                Ok(()) => Err("wrote through the self symlink".into()),
                Err(_) => Ok(()),
            }
        });
    }
}
