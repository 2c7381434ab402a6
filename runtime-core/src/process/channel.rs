//! Messages between the caller, the setup helper and the container init: length-prefixed JSON
//! on a unix stream socket. Both the helper and the init write to the same socket; the helper
//! writes `Pid` before the init may run.

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupManager;
use crate::{Error, Result};

/// Everything the helper needs to build the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperConfig {
    /// The container id (cgroup default path, messages).
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The root filesystem, already mounted by the caller if it came from containerd.
    pub rootfs: PathBuf,
    /// The container's spec.
    pub spec: Spec,
    /// The container's cgroup as the caller resolved it (it needs the same one to kill and
    /// remove); `None` lets the helper resolve `linux.cgroupsPath` itself.
    #[serde(default)]
    pub cgroup: Option<CgroupManager>,
    /// Where the helper records the cgroup with the directories it made
    /// ([`CgroupManager::with_made`]) as soon as it made them, before anything else can
    /// fail: the caller, and a later `delete` if the caller died, remove those and no
    /// others. `None`: not recorded (nothing the spec named is then ever removed).
    #[serde(default)]
    pub cgroup_record: Option<PathBuf>,
    /// Keep the caller's session keyring instead of joining a new one (runc's
    /// `--no-new-keyring`).
    #[serde(default)]
    pub no_new_keyring: bool,
    /// Change the root with MS_MOVE and chroot instead of pivot_root (runc's `--no-pivot`).
    #[serde(default)]
    pub no_pivot: bool,
    /// How many fds the caller passes to the process as fds 3, 4, … (runc's
    /// `--preserve-fds`, `LISTEN_FDS`): see `passed_fds`.
    #[serde(default)]
    pub pass_fds: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// caller → helper: what to build.
    Config(Box<HelperConfig>),
    /// caller → helper: what to build, for an init that waits for its start on the
    /// listening socket the launcher placed at fd 4 (see `detached`), not on this channel.
    CreateDetached(Box<HelperConfig>),
    /// caller → helper: what to start in a running container.
    Exec(Box<super::exec::ExecConfig>),
    /// helper → caller: the container init's pid.
    Pid { pid: i32 },
    /// init → caller, before `Ready`: the listener of the loaded seccomp filter (SCM_RIGHTS),
    /// for the caller to hand to the agent at `linux.seccomp.listenerPath`; the init has
    /// closed its copy.
    SeccompListener,
    /// init → caller: built; blocked before exec. With `process.terminal` it carries the
    /// pty master (SCM_RIGHTS): see [`Channel::take_fd`].
    Ready,
    /// caller → init: exec the user's process. caller → an exec's helper: start the
    /// process, with its stdin, stdout and stderr attached (SCM_RIGHTS, in that order).
    Start,
    /// caller → hook runner (a helper exec'd for it): run these hooks in the caller's
    /// namespaces; it answers `Ready` when all succeeded, `Error` otherwise.
    RunHooks {
        stage: crate::hooks::Stage,
        hooks: Vec<oci_spec::runtime::Hook>,
        state: oci_spec::runtime::State,
    },
    /// init → caller: the mounts are built, pivot_root is next: run the `prestart` and
    /// `createRuntime` hooks, then answer `HooksDone`.
    RuntimeHooks,
    /// caller → init: the runtime's hooks succeeded; the container's state for the init's
    /// own hooks (`createContainer`, `startContainer`).
    HooksDone { state: oci_spec::runtime::State },
    /// caller → detached init, after `Ready`: it is recorded, it may outlive the caller.
    /// init → caller: done (it no longer dies with the caller).
    Detach,
    /// caller → init or exec process: fds to pass to the process (SCM_RIGHTS, at most
    /// [`MAX_FDS`]), read once every spec path is resolved.
    Fds,
    /// helper or init → caller: setup failed; the message names the step.
    Error { message: String },
}

/// Most fds one message carries (an exec's stdin, stdout and stderr).
pub const MAX_FDS: usize = 3;

/// Largest message accepted (a spec with a big seccomp profile is ~100 KiB).
const MAX_MESSAGE: usize = 16 << 20;

/// One end of the socket.
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    /// The fds that came with the last message received.
    received_fds: Vec<OwnedFd>,
}

/// Sends `data` on `stream` with `fds` attached to its first byte (SCM_RIGHTS), then the
/// rest of it: the setup channel, the seccomp agent and the console socket all pass fds so.
pub fn send_with_fds(stream: &UnixStream, data: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(data)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    (&*stream).write_all(&data[sent..])
}

impl Channel {
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            received_fds: Vec::new(),
        }
    }

    /// The (first) fd that came with the last message received, if any.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.take_fds().into_iter().next()
    }

    /// The fds that came with the last message received, in the order they were sent.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.received_fds)
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.stream
            .write_all(&frame(msg)?)
            .map_err(|e| Error::io("write", "setup channel", e))
    }

    /// Sends `msg` with `fd` attached to its first byte.
    pub fn send_with_fd(&mut self, msg: &Message, fd: RawFd) -> Result<()> {
        self.send_with_fds(msg, &[fd])
    }

    /// Sends `msg` with `fds` (at most [`MAX_FDS`]) attached to its first byte.
    pub fn send_with_fds(&mut self, msg: &Message, fds: &[RawFd]) -> Result<()> {
        let frame = frame(msg)?;
        send_with_fds(&self.stream, &frame, fds).map_err(|e| Error::io("send", "setup channel", e))
    }

    /// Reads the length prefix with recvmsg, so that an fd sent with the message is kept.
    fn read_prefix(&mut self, len: &mut [u8; 4]) -> std::io::Result<()> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let mut got = 0;
        while got < len.len() {
            let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut len[got..])];
            let msg = match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let n = msg.bytes;
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for fd in fds {
                        // SAFETY: the kernel just installed this fd for us; nothing owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                        // More than a message may carry are closed.
                        if self.received_fds.len() < MAX_FDS {
                            self.received_fds.push(fd);
                        }
                    }
                }
            }
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        Ok(())
    }

    /// The next message; `None` when the other side closed the socket (for the init: it
    /// exec'd, the socket being close-on-exec, or it died).
    pub fn recv(&mut self) -> Result<Option<Message>> {
        let mut len = [0u8; 4];
        self.received_fds.clear();
        match self.read_prefix(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(Error::io("read", "setup channel", e)),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(Error::Setup(format!(
                "setup channel: message of {len} bytes"
            )));
        }
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| Error::io("read", "setup channel", e))?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Error::Setup(format!("decode message: {e}")))
    }
}

fn frame(msg: &Message) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(msg).map_err(|e| Error::Setup(format!("encode message: {e}")))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_socket_and_eof_is_none() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        a.send(&Message::Pid { pid: 42 }).unwrap();
        a.send(&Message::Error {
            message: "mount /x: ENOENT".into(),
        })
        .unwrap();
        drop(a);
        assert!(matches!(b.recv().unwrap(), Some(Message::Pid { pid: 42 })));
        assert!(
            matches!(b.recv().unwrap(), Some(Message::Error { message }) if message.contains("/x"))
        );
        assert!(b.recv().unwrap().is_none());
    }

    #[test]
    fn an_fd_sent_with_a_message_arrives_with_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        a.send(&Message::Pid { pid: 1 }).unwrap();
        a.send_with_fd(&Message::Ready, file.as_raw_fd()).unwrap();
        assert!(matches!(b.recv().unwrap(), Some(Message::Pid { pid: 1 })));
        assert!(b.take_fd().is_none());
        assert!(matches!(b.recv().unwrap(), Some(Message::Ready)));
        let fd = b.take_fd().expect("the fd sent with Ready");
        let (ours, theirs) = (
            std::fs::metadata("/proc/self/exe").unwrap(),
            std::fs::File::from(fd).metadata().unwrap(),
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
    }
}
