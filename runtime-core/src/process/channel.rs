//! Messages between the caller, the setup helper and the container init: length-prefixed JSON
//! on a unix stream socket. Both the helper and the init write to the same socket; the helper
//! writes `Pid` before the init may run.

use std::io::{ErrorKind, Read, Write};
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
    /// Keep the caller's session keyring instead of joining a new one (runc's
    /// `--no-new-keyring`).
    #[serde(default)]
    pub no_new_keyring: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// caller → helper: what to build.
    Config(Box<HelperConfig>),
    /// caller → helper: what to start in a running container.
    Exec(Box<super::exec::ExecConfig>),
    /// helper → caller: the container init's pid.
    Pid { pid: i32 },
    /// init → caller: built; blocked before exec.
    Ready,
    /// caller → init: exec the user's process.
    Start,
    /// helper or init → caller: setup failed; the message names the step.
    Error { message: String },
}

/// Largest message accepted (a spec with a big seccomp profile is ~100 KiB).
const MAX_MESSAGE: usize = 16 << 20;

/// One end of the socket.
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Self {
        Self { stream }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn send(&mut self, msg: &Message) -> Result<()> {
        let body =
            serde_json::to_vec(msg).map_err(|e| Error::Setup(format!("encode message: {e}")))?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .map_err(|e| Error::io("write", "setup channel", e))
    }

    /// The next message; `None` when the other side closed the socket (for the init: it
    /// exec'd, the socket being close-on-exec, or it died).
    pub fn recv(&mut self) -> Result<Option<Message>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
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
}
