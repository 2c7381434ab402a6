//! A container init that outlives the command that created it (the `mini` command's
//! `create`; the shim keeps its channel open until Start instead).
//!
//! The caller binds a listening unix socket (under its state directory) and hands its fd to
//! the setup helper, which the init inherits. Once built, the init reports ready on the setup
//! channel as usual, then waits for a connection on that socket instead of a `Start` on the
//! channel, so the caller may exit. A later `start` connects and sends
//! [`Message::Start`]; that connection becomes the init's channel, so the starter learns of a
//! failed exec (an `Error`) or sees EOF once the exec happened (close-on-exec).
//!
//! A listening socket fd gives no access to any path (opening `/proc/self/fd/N` of a socket
//! fails), so holding it keeps the rule that the init has no fd leading outside the
//! container while it resolves spec paths.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use std::sync::atomic::{AtomicI32, Ordering};

use super::channel::{Channel, Message};
use crate::{Error, Result};

/// The listening socket's fd in the helper and the init; -1 for an init the caller starts
/// through the setup channel. Set by the single-threaded helper before it clones the init,
/// which inherits the value with its copy of memory.
static START_LISTENER: AtomicI32 = AtomicI32::new(-1);

pub(super) fn set_start_listener(fd: RawFd) {
    START_LISTENER.store(fd, Ordering::SeqCst);
}

/// The inherited listening socket, if this init is started through one.
pub(super) fn start_listener() -> Option<RawFd> {
    let fd = START_LISTENER.load(Ordering::SeqCst);
    (fd >= 0).then_some(fd)
}

/// In a detached init, after `Ready`: waits for a starter's `Start` and makes its connection
/// the channel (the caller's end is closed); true then. A connection that does not send
/// `Start` (a probe, a crashed starter) is dropped and the next one awaited. False at once
/// for an attached init, which reads its `Start` from the caller.
pub(super) fn wait_for_starter(channel: &mut Channel) -> Result<bool> {
    let Some(fd) = start_listener() else {
        return Ok(false);
    };
    // SAFETY: the launcher placed the listening socket at this fd number; nothing else in
    // this process owns it. It stays open until exec (close-on-exec is set before exec).
    let listener = std::mem::ManuallyDrop::new(unsafe { UnixListener::from_raw_fd(fd) });
    loop {
        let (stream, _) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("accept", "start socket", e)),
        };
        let mut starter = Channel::new(stream);
        if let Ok(Some(Message::Start)) = starter.recv() {
            *channel = starter;
            return Ok(true);
        }
    }
}

/// In a detached init, after `Ready` (and the passed fds): waits until the caller has
/// recorded it ([`super::CreatedInit::detach`]); an error if the caller went away first (the
/// init then ends, as nobody could find it).
pub(super) fn wait_for_detach(channel: &mut Channel) -> Result<()> {
    match channel.recv()? {
        Some(Message::Detach) => Ok(()),
        other => Err(Error::Setup(format!(
            "the caller went away before recording the container ({other:?})"
        ))),
    }
}

/// Binds the listening socket at `path` for [`super::Launcher::spawn_detached`]
/// (close-on-exec in the caller; the launcher places a copy in the helper).
pub fn bind_start_socket(path: &Path) -> Result<UnixListener> {
    let (short, _dir) = short_socket_path(path)?;
    UnixListener::bind(&short).map_err(|e| Error::io("bind", path, e))
}

/// Lets a detached init exec the user's process: Ok once it did (the connection closes on
/// exec) or died; its error if the exec failed. A failure to reach the init is an
/// [`Error::Io`] with `op` "connect".
pub fn start_detached(path: &Path) -> Result<()> {
    let (short, _dir) = short_socket_path(path)?;
    let stream = UnixStream::connect(&short).map_err(|e| Error::io("connect", path, e))?;
    let mut channel = Channel::new(stream);
    channel.send(&Message::Start)?;
    match channel.recv()? {
        None => Ok(()),
        Some(Message::Error { message }) => Err(Error::Setup(message)),
        Some(other) => Err(Error::Setup(format!(
            "container init sent {other:?} after start"
        ))),
    }
}

/// Longest socket path that fits `sockaddr_un.sun_path` with its NUL.
const SUN_PATH_MAX: usize = 107;

/// `path` as a socket address: itself when it fits, else `/proc/self/fd/N/<name>` through
/// an `O_PATH` fd of its directory (returned; keep it open while the path is used). State
/// directories under long roots (containerd's `/run/containerd/runc/<namespace>/<id>`) pass
/// the 107 bytes a socket path may have.
fn short_socket_path(path: &Path) -> Result<(PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((path.to_path_buf(), None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Setup(format!(
            "{}: not a socket path",
            path.display()
        )));
    };
    let dir_fd = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open", dir.display().to_string(), e))?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd())).join(name);
    if short.as_os_str().len() > SUN_PATH_MAX {
        return Err(Error::Setup(format!(
            "{}: socket name too long",
            path.display()
        )));
    }
    Ok((short, Some(dir_fd)))
}
