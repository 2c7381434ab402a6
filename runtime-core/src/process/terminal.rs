//! `process.terminal`: the container's process gets a pty as its stdio and controlling
//! terminal. The pty is allocated inside the container, from the container's own devpts
//! (`/dev/ptmx`, after pivot_root), as runc does: then `tty` names `/dev/pts/N` and the
//! device exists in the container. The master goes to the caller, which copies it to the
//! client's streams; the process never holds it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::pty::{posix_openpt, unlockpt};
use oci_spec::runtime::Process;

use crate::{Error, Result};

/// Makes a new pty the calling process's stdio (fds 0, 1 and 2) and controlling terminal,
/// with the process as its session leader, and returns the master. `process.consoleSize`
/// becomes the initial window size. Call after pivot_root, with no host fd open.
pub fn attach_new_console(process: &Process) -> Result<OwnedFd> {
    const FIELD: &str = "process.terminal";
    // The container's /dev/ptmx: without O_NOCTTY a session leader would take it as its
    // terminal; it is not ours to take.
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(|e| {
        Error::invalid(
            FIELD,
            format!("cannot open /dev/ptmx in the container: {e}"),
        )
    })?;
    unlockpt(&master).map_err(|e| {
        Error::invalid(
            FIELD,
            format!("/dev/ptmx in the container is not a pty multiplexer (unlockpt: {e})"),
        )
    })?;
    let master = OwnedFd::from(master);
    let slave = open_peer(&master)?;
    if let Some(size) = process.console_size() {
        set_window_size(master.as_fd(), size.height() as u16, size.width() as u16).map_err(
            |e| {
                Error::invalid(
                    "process.consoleSize",
                    format!("{}x{}: {e}", size.height(), size.width()),
                )
            },
        )?;
    }
    // The process's user owns its terminal (so it may, e.g., change its mode), as with runc;
    // the group stays devpts' own (its `gid=` option).
    let uid = process.user().uid();
    if uid != 0 {
        nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(uid)), None).map_err(|e| {
            Error::invalid(
                "process.user.uid",
                format!("cannot give the terminal to uid {uid}: {e}"),
            )
        })?;
    }
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", "terminal session", e))?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard fds; the slave stays open until dropped below.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(Error::sys(
                "dup2",
                format!("pty to fd {fd}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    drop(slave);
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from another session).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys(
            "ioctl TIOCSCTTY",
            "pty as controlling terminal",
            nix::errno::Errno::last(),
        ));
    }
    Ok(master)
}

/// Bind-mounts the pty of `master` on `/dev/console` of the container (config-linux.md,
/// Default Devices: "`/dev/console` is set up if `terminal` is enabled … by bind mounting the
/// pseudoterminal pty to `/dev/console`"), creating the mount point as an empty file. For the
/// init only, after pivot_root and before privileges are dropped.
pub fn bind_console(master: &OwnedFd) -> Result<()> {
    const FIELD: &str = "process.terminal";
    let slave = open_peer(master)?;
    let console = std::path::Path::new("/dev/console");
    // The mount point is pinned by an fd and the mount made on that fd, never on the path:
    // an image's /dev/console that is a symlink (to a /proc file, CVE-2025-52565) is refused,
    // and an existing node is only looked at (O_PATH), not opened as a device.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o666)
        .open(console);
    let target = match created {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(console)
                .map_err(|e| Error::invalid(FIELD, format!("/dev/console: {e}")))?;
            let kind = file
                .metadata()
                .map_err(|e| Error::invalid(FIELD, format!("/dev/console: {e}")))?
                .file_type();
            use std::os::unix::fs::FileTypeExt;
            if !(kind.is_file() || kind.is_char_device()) {
                return Err(Error::invalid(
                    FIELD,
                    "/dev/console in the container is neither a file nor a device node",
                ));
            }
            file
        }
        Err(e) => {
            return Err(Error::invalid(
                FIELD,
                format!("cannot create /dev/console: {e}"),
            ));
        }
    };
    let source = format!("/proc/self/fd/{}", slave.as_raw_fd());
    let target = format!("/proc/self/fd/{}", target.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        target.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::sys("mount", "the pty on /dev/console", e))
}

/// The slave of `master`, opened through the master itself (TIOCGPTPEER), not by a path a
/// container could swap.
fn open_peer(master: &OwnedFd) -> Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(Error::sys(
            "ioctl TIOCGPTPEER",
            "pty slave",
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets a pty's window size (rows, columns) through either of its ends; the foreground
/// process group gets SIGWINCH.
pub fn set_window_size(fd: impl AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
    if unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
