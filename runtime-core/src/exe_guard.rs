//! CVE-2019-5736 guard: every process that enters a container runs from a read-only view of
//! the executable, so `/proc/PID/exe` of a setup process cannot be opened for writing, and is
//! non-dumpable (see [`crate::process`]), so other processes cannot open it at all.
//!
//! The view is a detached, read-only bind mount of the executable file (open_tree +
//! mount_setattr): it costs no copy of the binary and vanishes with its last reference. Where
//! the kernel lacks these calls (before 5.12) the fallback is a sealed memfd copy.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use crate::{Error, Result};

/// An fd naming the current executable on a read-only mount (or a sealed copy). Exec it by
/// [`ExeView::path`].
#[derive(Debug)]
pub struct ExeView {
    fd: OwnedFd,
    sealed_copy: bool,
}

impl ExeView {
    /// A read-only view of `/proc/self/exe`.
    pub fn current() -> Result<Self> {
        let (fd, sealed_copy) = match readonly_bind("/proc/self/exe") {
            Ok(fd) => (fd, false),
            // Already running from a view (a detached mount cannot be cloned again): that
            // very file.
            Err(_) if running_from_view() => {
                let exe = File::open("/proc/self/exe")
                    .map_err(|e| Error::io("open", "/proc/self/exe", e))?;
                (OwnedFd::from(exe), false)
            }
            Err(err) => {
                log::warn!(
                    "read-only view of the executable unavailable ({err}); using a sealed copy"
                );
                (sealed_copy("/proc/self/exe")?, true)
            }
        };
        Ok(Self {
            fd: out_of_the_way(fd)?,
            sealed_copy,
        })
    }

    /// A path that execs the view (`/proc/self/fd/N`), valid in this process and in children
    /// forked before they exec.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Whether the fallback (a memfd copy of the binary, one per view) is in use.
    pub fn is_sealed_copy(&self) -> bool {
        self.sealed_copy
    }
}

/// Whether this process runs from an executable nothing can write: the detached read-only
/// mount [`reexec_from_view`] made (an [`ExeView`], in no mount table, so nobody can remount
/// it writable) or a memfd sealed against writes. A process running from one may build a container without
/// exec'ing a setup helper first.
pub fn running_from_view() -> bool {
    // The executable of a process changes only with an exec.
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(exe_is_protected)
}

fn exe_is_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on an fd we own.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 {
        return true;
    }
    // The view reexec_from_view made: its mount id is in the mark (a read-only mount missing
    // from the mount table might also be an attached one outside a chroot's root).
    let made = std::env::var(REEXEC_MARK)
        .ok()
        .and_then(|m| m.parse::<u64>().ok());
    let readonly = nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    readonly && mount_id(&exe).is_some_and(|id| Some(id) == made && !in_mount_table(id))
}

/// The id of the mount `file` is on (`statx` `STATX_MNT_ID`; an `O_PATH` fd will do).
fn mount_id(file: &impl AsRawFd) -> Option<u64> {
    // SAFETY: statx writes into `st`, which lives across the call; the path is empty with
    // AT_EMPTY_PATH on an fd we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    (rc == 0 && st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

/// Whether mount `id` is in this process's mount table (a detached mount is not).
fn in_mount_table(id: u64) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").map_or(true, |table| {
        table
            .lines()
            .any(|line| line.split(' ').next().and_then(|f| f.parse().ok()) == Some(id))
    })
}

/// The environment variable [`reexec_from_view`] sets to the view's mount id: the new image
/// does not try again, and [`running_from_view`] knows the view it runs from.
pub const REEXEC_MARK: &str = "_MINI_EXEC_VIEW";

/// Execs this executable again through a fresh [`ExeView`], with the same arguments and
/// environment (plus [`REEXEC_MARK`]); returns only on failure. Call it before anything of
/// the command has been done: the new image starts the command over.
pub fn reexec_from_view() -> Result<std::convert::Infallible> {
    use std::os::unix::ffi::OsStrExt;
    let view = ExeView::current()?;
    let cstr = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).ok();
    let args: Vec<CString> = std::env::args_os().filter_map(|a| cstr(&a)).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != REEXEC_MARK)
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(&kv)
        })
        .collect();
    // Unknown (no STATX_MNT_ID): a mark that matches no mount, so the new image uses the
    // helper rather than trying again.
    let id = mount_id(&view.fd).map_or_else(|| "unknown".to_string(), |id| id.to_string());
    env.push(CString::new(format!("{REEXEC_MARK}={id}")).expect("no NUL"));
    let path = CString::new(view.path().as_os_str().as_bytes()).expect("no NUL");
    let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
    Err(Error::sys("execve", view.path().display().to_string(), err))
}

/// Moves `fd` above the low numbers a child's stdio and channel are dup2'ed to between fork
/// and exec, so the path `/proc/self/fd/N` still names the view when exec resolves it.
fn out_of_the_way(fd: OwnedFd) -> Result<OwnedFd> {
    const LOWEST: i32 = 64;
    if fd.as_raw_fd() >= LOWEST {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, LOWEST) };
    if new < 0 {
        return Err(Error::sys(
            "fcntl",
            "F_DUPFD_CLOEXEC",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: fcntl returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached bind mount of the file at `path`, made read-only, nosuid and nodev.
fn readonly_bind(path: &str) -> Result<OwnedFd> {
    let cpath = CString::new(path).map_err(|_| Error::invalid("path", path))?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree with a valid NUL-terminated path; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::sys("open_tree", path, nix::errno::Errno::last()));
    }
    // SAFETY: open_tree returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr on the detached mount fd with AT_EMPTY_PATH; `attr` lives across
    // the call and its size is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(Error::sys(
            "mount_setattr",
            format!("{path} read-only"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(fd)
}

/// A memfd holding a copy of `path`, sealed against every change.
fn sealed_copy(path: &str) -> Result<OwnedFd> {
    let name = c"mini-exe";
    // SAFETY: memfd_create with a valid name; returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", path, nix::errno::Errno::last()));
    }
    // SAFETY: memfd_create returned a fresh fd that nothing else owns.
    let mut copy = unsafe { File::from_raw_fd(fd) };
    let mut src = File::open(path).map_err(|e| Error::io("open", path, e))?;
    io::copy(&mut src, &mut copy).map_err(|e| Error::io("copy", path, e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::sys(
            "fcntl",
            "F_ADD_SEALS",
            nix::errno::Errno::last(),
        ));
    }
    Ok(copy.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn view_of_a_file_cannot_be_opened_for_writing() {
        // The running executable answers ETXTBSY first; the attack of CVE-2019-5736 reopens it
        // after the process is gone, which a file that is not running shows.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bin");
        std::fs::write(&file, b"binary").unwrap();
        let fd = readonly_bind(file.to_str().unwrap()).unwrap();
        let view = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let err = OpenOptions::new().write(true).open(&view).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "opening the view for writing gave {err}"
        );
        assert_eq!(std::fs::read(&view).unwrap(), b"binary");
        // The original stays writable: the guard changes nothing on the host.
        OpenOptions::new().write(true).open(&file).unwrap();
    }

    #[test]
    fn current_executable_view_uses_no_copy() {
        let view = ExeView::current().unwrap();
        assert!(
            !view.is_sealed_copy(),
            "this kernel has open_tree: the copy should not be needed"
        );
        assert!(std::fs::metadata(view.path()).unwrap().len() > 0);
    }
}
