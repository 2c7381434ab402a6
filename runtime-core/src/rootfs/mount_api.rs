//! The new mount API where `mount(2)` cannot do the job: recursive mount attributes (`rro`:
//! `mount_setattr` with `AT_RECURSIVE`) and idmapped bind mounts (`open_tree` +
//! `mount_setattr(MOUNT_ATTR_IDMAP)` + `move_mount`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::LinuxIdMapping;

use crate::{Error, Result};

/// `mount_setattr` on the mount `fd` refers to (and every mount below it with `recursive`).
pub(super) fn set_attributes(
    fd: &impl AsRawFd,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<&OwnedFd>,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    setattr(fd, recursive, &attr, what)
}

fn setattr(
    fd: &impl AsRawFd,
    recursive: bool,
    attr: &libc::mount_attr,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr on an fd with AT_EMPTY_PATH and an empty path; `attr` lives
    // across the call and its size is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(Error::sys("mount_setattr", what(), Errno::last()));
    }
    Ok(())
}

/// Sets the propagation type (`MS_SLAVE`, …) of the mount tree `fd` refers to, every mount
/// of it.
pub(super) fn set_propagation(
    fd: &impl AsRawFd,
    propagation: u64,
    what: &dyn Fn() -> String,
) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    setattr(fd, true, &attr, what)
}

/// A detached copy of the mount tree at `source` (`open_tree(OPEN_TREE_CLONE)`; with
/// `recursive`, its submounts too).
pub(super) fn clone_tree(source: &Path, recursive: bool) -> Result<OwnedFd> {
    let cpath = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("mounts.source", "contains a NUL byte"))?;
    let flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC as libc::c_uint
        | if recursive {
            libc::AT_RECURSIVE as libc::c_uint
        } else {
            0
        };
    // SAFETY: open_tree with a valid NUL-terminated path; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(Error::sys(
            "open_tree",
            source.display().to_string(),
            Errno::last(),
        ));
    }
    // SAFETY: open_tree returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the detached tree `tree` on the directory or file `target` is open on
/// (`move_mount` between two fds: no path of the target is looked up again).
pub(super) fn attach(
    tree: &OwnedFd,
    target: &impl AsRawFd,
    what: &dyn Fn() -> String,
) -> Result<()> {
    // SAFETY: move_mount between two fds with empty paths; no pointers kept.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(Error::sys("move_mount", what(), Errno::last()));
    }
    Ok(())
}

/// A user namespace with the given id maps, for `MOUNT_ATTR_IDMAP`: a child unshares it and
/// waits while this process writes its maps and opens it; the child is then ended. `proc`
/// is a procfs of this process's pid namespace (the child's pid is read there).
pub(super) fn userns_with_mappings(
    proc: &crate::procfs::ProcFs,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| Error::sys("pipe", "idmap", e))?;
    let (hold_r, hold_w) = nix::unistd::pipe().map_err(|e| Error::sys("pipe", "idmap", e))?;
    // SAFETY: the caller (the setup helper) is single-threaded; the child makes only
    // syscalls and leaves with _exit.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", "idmap", e))? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut byte = [0u8];
            // Until the parent closes its end.
            let _ = nix::unistd::read(&hold_r, &mut byte);
            // SAFETY: ends the forked child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(hold_r);
    let result = (|| {
        let mut byte = [0u8];
        match nix::unistd::read(&ready_r, &mut byte) {
            Ok(1) if byte[0] == 1 => {}
            _ => {
                return Err(Error::Setup(
                    "idmapped mount: could not create a user namespace for the mapping".into(),
                ));
            }
        }
        let dir = Path::new(&child.to_string()).to_path_buf();
        let map = |maps: &[LinuxIdMapping]| {
            maps.iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect::<String>()
        };
        proc.write(&dir.join("uid_map"), &map(uid))?;
        proc.write(&dir.join("gid_map"), &map(gid))?;
        let ns = proc.open_dir(&dir.join("ns"))?;
        nix::fcntl::openat(
            &ns,
            "user",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys("open", format!("/proc/{child}/ns/user"), e))
    })();
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(child, None);
    result
}
