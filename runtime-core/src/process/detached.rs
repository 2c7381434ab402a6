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

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
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

/// Binds the listening socket at `path` for [`super::Launcher::spawn_detached`]
/// (close-on-exec in the caller; the launcher places a copy in the helper).
pub fn bind_start_socket(path: &Path) -> Result<UnixListener> {
    UnixListener::bind(path).map_err(|e| Error::io("bind", path, e))
}

/// Lets a detached init exec the user's process: Ok once it did (the connection closes on
/// exec) or died; its error if the exec failed.
pub fn start_detached(path: &Path) -> Result<()> {
    let stream = UnixStream::connect(path).map_err(|e| Error::io("connect", path, e))?;
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
