//! The caller's side: exec the setup helper, learn the init's pid, wait for ready, start.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::HELPER_ARG;
use super::channel::{Channel, HelperConfig, Message};
use crate::exe_guard::ExeView;
use crate::{Error, Result};

/// How long setup may take before the caller gives up (a hung mount, a stuck hook).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The fd number of the channel in the helper.
pub(super) const CHANNEL_FD: i32 = 3;

/// Starts setup helpers from a read-only view of the current executable.
#[derive(Debug)]
pub struct Launcher {
    exe: ExeView,
}

/// The standard streams the container's process gets as fds 0, 1 and 2.
#[derive(Debug)]
pub struct InitStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Launcher {
    pub fn new() -> Result<Self> {
        Ok(Self {
            exe: ExeView::current()?,
        })
    }

    /// Execs the helper and hands it `config`. The helper clones the init, which builds the
    /// container; call [`PendingInit::wait_pid`] then [`PendingInit::wait_ready`].
    ///
    /// Until the init reports ready, the helper and the init die (SIGKILL) when the calling
    /// thread ends: call `wait_ready` from the thread that called `spawn`.
    pub fn spawn(&self, config: HelperConfig, stdio: InitStdio) -> Result<PendingInit> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("socketpair", "setup channel", e))?;
        let theirs_fd = theirs.as_raw_fd();
        let caller = std::process::id() as libc::pid_t;
        let mut cmd = Command::new(self.exe.path());
        cmd.arg0("mini-init")
            .arg(HELPER_ARG)
            .arg(&config.id)
            .env_clear()
            .stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        // SAFETY: the closure runs between fork and exec and only calls prctl/getppid/dup2/
        // fcntl, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // Dies with the calling thread from before its exec on: a helper stopped or
                // stuck in setup would otherwise outlive its caller (the helper sets it again,
                // see init::die_with_caller). A caller already gone is our parent no more.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != caller {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                if theirs_fd == CHANNEL_FD {
                    let flags = libc::fcntl(CHANNEL_FD, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(CHANNEL_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_fd, CHANNEL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("exec setup helper", self.exe.path(), e))?;
        drop(theirs);
        ours.set_read_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| Error::io("set timeout", "setup channel", e))?;
        let mut channel = Channel::new(ours);
        channel.send(&Message::Config(Box::new(config)))?;
        Ok(PendingInit {
            channel,
            helper_pid: child.id() as i32,
            pid: None,
        })
    }
}

/// A container being built.
#[derive(Debug)]
pub struct PendingInit {
    channel: Channel,
    helper_pid: i32,
    pid: Option<i32>,
}

impl PendingInit {
    /// The setup helper's pid (a child of the caller, which must reap it).
    pub fn helper_pid(&self) -> i32 {
        self.helper_pid
    }

    /// The container init's pid, once the helper has cloned it.
    pub fn wait_pid(&mut self) -> Result<i32> {
        if let Some(pid) = self.pid {
            return Ok(pid);
        }
        match self.channel.recv()? {
            Some(Message::Pid { pid }) => {
                self.pid = Some(pid);
                Ok(pid)
            }
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            Some(other) => Err(Error::Setup(format!(
                "setup helper sent {other:?} before the init's pid"
            ))),
            None => Err(Error::Setup(
                "setup helper exited before creating the container init".into(),
            )),
        }
    }

    /// Waits until the init has built the container and blocks before exec.
    pub fn wait_ready(mut self) -> Result<CreatedInit> {
        let pid = self.wait_pid()?;
        match self.channel.recv()? {
            Some(Message::Ready) => Ok(CreatedInit {
                console: self.channel.take_fd(),
                channel: self.channel,
                pid,
            }),
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            Some(other) => Err(Error::Setup(format!(
                "container init sent {other:?} instead of ready"
            ))),
            None => Err(Error::Setup("container init exited during setup".into())),
        }
    }
}

/// A built container whose init waits for [`CreatedInit::start`].
#[derive(Debug)]
pub struct CreatedInit {
    channel: Channel,
    pid: i32,
    console: Option<OwnedFd>,
}

impl CreatedInit {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The master of the init's pty (`process.terminal`), once.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Lets the init exec the user's process. Ok once the exec happened (the channel closes
    /// on exec) or the init died (its exit is reported through the caller's reaper).
    pub fn start(mut self) -> Result<()> {
        self.channel.send(&Message::Start)?;
        match self.channel.recv()? {
            None => Ok(()),
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            Some(other) => Err(Error::Setup(format!(
                "container init sent {other:?} after start"
            ))),
        }
    }
}
