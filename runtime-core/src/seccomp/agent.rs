//! The hand-over of a filter's listener to the seccomp agent at `linux.seccomp.listenerPath`
//! (config-linux.md, "Seccomp"; runtime.md's container process state).
//!
//! The runtime (the process that asked for the container) connects to the agent's `AF_UNIX`
//! `SOCK_STREAM` socket and sends one message: the container process state as JSON, with the
//! listener attached (`SCM_RIGHTS`, named `seccompFd` in `fds`); then it closes the connection
//! and its copy of the listener. This happens while the container is created, before its
//! process can make a call that only the agent answers. A failure fails the create.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{
    ContainerProcessStateBuilder, ContainerState, SECCOMP_FD_NAME, Spec, State,
};

use crate::{Error, Result};

/// How long a send may block (the message normally fits in the socket's buffer; a stuck
/// agent must not hang the create).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where, and with what, a container's listener goes.
#[derive(Debug, Clone)]
pub struct Agent {
    socket: PathBuf,
    metadata: Option<String>,
    /// The container's state, without a pid (the pid is the process's the listener is of).
    state: State,
}

impl Agent {
    /// The agent of `spec`'s profile when it has a notifying rule (a `listenerPath` without
    /// one is ignored, as config-linux.md says), for the container `id` of `bundle` in
    /// `status`.
    pub fn of(spec: &Spec, id: &str, bundle: &Path, status: ContainerState) -> Option<Agent> {
        let seccomp = spec.linux().as_ref()?.seccomp().as_ref()?;
        if !super::uses_notify(seccomp) {
            return None;
        }
        let socket = seccomp.listener_path().clone()?;
        Some(Agent {
            socket,
            metadata: seccomp.listener_metadata().clone(),
            state: crate::hooks::state(spec, id, bundle, status, 0),
        })
    }

    /// For a process other than the init (an exec): the container's state names the init's
    /// pid, the message the process's.
    pub fn with_container_pid(mut self, init: i32) -> Agent {
        self.state.set_pid(Some(init));
        self
    }

    /// Sends the container process state of `pid` with `listener` attached, then closes the
    /// connection. The error names `linux.seccomp.listenerPath`.
    pub fn send(&self, pid: i32, listener: BorrowedFd<'_>) -> Result<()> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::Setup(format!(
                "linux.seccomp.listenerPath {}: {what}: {e}",
                self.socket.display()
            ))
        };
        let mut state = self.state.clone();
        if state.pid().is_none() {
            state.set_pid(Some(pid));
        }
        let mut message = ContainerProcessStateBuilder::default()
            .version(state.version().clone())
            .fds(vec![SECCOMP_FD_NAME.to_string()])
            .pid(pid)
            .state(state);
        if let Some(metadata) = &self.metadata {
            message = message.metadata(metadata.clone());
        }
        let message = message
            .build()
            .map_err(|e| failed("build the container process state", &e))?;
        let json = serde_json::to_vec(&message)
            .map_err(|e| failed("encode the container process state", &e))?;

        let stream = connect_within(&self.socket, SEND_TIMEOUT)
            .map_err(|e| failed("connect to the seccomp agent", &e))?;
        crate::process::channel::send_with_fds(&stream, &json, &[listener.as_raw_fd()])
            .map_err(|e| failed("send the container process state with the listener", &e))?;
        // One message per connection: closing it tells the agent the state is complete.
        Ok(())
    }
}

/// Connects to the `AF_UNIX` stream socket at `path`, giving up after `timeout` (an agent
/// whose backlog is full would otherwise block the connect, and the create, for ever: Linux
/// bounds a blocking `AF_UNIX` connect by `SO_SNDTIMEO`); writes on it time out too.
fn connect_within(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, UnixAddr, connect, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let limit = nix::sys::time::TimeVal::new(
        timeout.as_secs() as libc::time_t,
        timeout.subsec_micros() as libc::suseconds_t,
    );
    setsockopt(&fd, sockopt::SendTimeout, &limit)?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// The agent's side of a connection (an agent written with this library, the tests): reads
/// its one message to the end, and returns the JSON of the container process state and the
/// fds that came with it (close-on-exec), in the order `fds` names them.
pub fn receive(conn: &mut UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut json = Vec::new();
    let mut fds = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just installed these fds for us; nothing owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Ok((json, fds));
        }
        json.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    fn spec(seccomp: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "annotations": {"a": "b"},
            "linux": {"seccomp": seccomp},
        }))
        .unwrap()
    }

    #[test]
    fn without_a_notifying_rule_there_is_no_agent() {
        let spec = spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
        }));
        assert!(Agent::of(&spec, "c", Path::new("/b"), ContainerState::Creating).is_none());
    }

    #[test]
    fn the_agent_gets_one_message_the_state_with_the_listener_attached() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let server = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let spec = spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "listenerMetadata": "meta",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }));
        let agent = Agent::of(&spec, "c1", Path::new("/bundle"), ContainerState::Creating)
            .expect("an agent");
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        agent.send(4242, file.as_fd()).unwrap();

        let (mut conn, _) = server.accept().unwrap();
        let (json, mut fds) = receive(&mut conn).unwrap();
        assert_eq!(fds.len(), 1);
        let state: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(state["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(state["pid"], 4242);
        assert_eq!(state["metadata"], "meta");
        assert_eq!(state["state"]["id"], "c1");
        assert_eq!(state["state"]["status"], "creating");
        assert_eq!(state["state"]["pid"], 4242);
        assert_eq!(state["state"]["bundle"], "/bundle");
        assert_eq!(state["state"]["annotations"]["a"], "b");
        let fd = std::fs::File::from(fds.remove(0));
        let (ours, theirs) = (file.metadata().unwrap(), fd.metadata().unwrap());
        assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()));
    }

    #[test]
    fn a_missing_agent_is_an_error_naming_listener_path() {
        let spec = spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/nonexistent/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }));
        let agent = Agent::of(&spec, "c", Path::new("/b"), ContainerState::Creating).unwrap();
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let err = agent.send(1, file.as_fd()).unwrap_err().to_string();
        assert!(
            err.contains("linux.seccomp.listenerPath") && err.contains("/nonexistent/agent.sock"),
            "{err}"
        );
    }
}
