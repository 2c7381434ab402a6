//! The caller's side: exec the setup helper, learn the init's pid, wait for ready, start.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::HELPER_ARG;
use super::channel::{Channel, HelperConfig, Message};
use super::exec::ExecConfig;
use crate::exe_guard::ExeView;
use crate::{Error, Result};

/// How long setup may take before the caller gives up (a hung mount, a stuck hook).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The fd number of the channel in the helper.
pub(super) const CHANNEL_FD: i32 = 3;

/// The fd number of the init's pidfd in an exec's helper.
pub(super) const PIDFD_FD: i32 = 4;

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
        let id = config.id.clone();
        let (channel, helper_pid) =
            self.exec_helper(&id, &Message::Config(Box::new(config)), stdio, None)?;
        Ok(PendingInit {
            channel,
            helper_pid,
            pid: None,
        })
    }

    /// [`Launcher::spawn`] for an init that outlives the caller: once ready, it waits for a
    /// connection on `start_socket` (a listening unix socket, see [`super::bind_start_socket`])
    /// that sends `Start` ([`super::start_detached`]), not for [`CreatedInit::start`]. Until
    /// it is ready it dies with the calling thread, as with `spawn`; drop the [`CreatedInit`]
    /// that `wait_ready` returns.
    pub fn spawn_detached(
        &self,
        config: HelperConfig,
        stdio: InitStdio,
        start_socket: BorrowedFd<'_>,
    ) -> Result<PendingInit> {
        let id = config.id.clone();
        let message = Message::CreateDetached(Box::new(config));
        let (channel, helper_pid) =
            self.exec_helper(&id, &message, stdio, Some(start_socket.as_raw_fd()))?;
        Ok(PendingInit {
            channel,
            helper_pid,
            pid: None,
        })
    }

    /// Execs the helper to start a process in the running container whose init `init` (a
    /// pidfd) is: the helper joins the init's namespaces through it, so a pid reused by
    /// another process cannot redirect the exec. Call [`PendingExec::wait_pid`] then
    /// [`PendingExec::wait_exec`] from the calling thread (the setup processes die with it).
    pub fn spawn_exec(
        &self,
        config: ExecConfig,
        stdio: InitStdio,
        init: BorrowedFd<'_>,
    ) -> Result<PendingExec> {
        self.prepare_exec(config, init)?.start(stdio)
    }

    /// The first half of [`Launcher::spawn_exec`], for containerd's Exec (Start comes later):
    /// execs the helper and hands it `config`. The helper checks it and waits, in the host's
    /// namespaces and cgroups, with nothing of the container open but the init's pidfd, until
    /// [`PreparedExec::start`]; dropping the `PreparedExec` ends it. Its start-up is then off
    /// the path of Start. The helper dies with the calling thread: prepare from a thread that
    /// lives until the start (the daemon's main thread).
    pub fn prepare_exec(&self, config: ExecConfig, init: BorrowedFd<'_>) -> Result<PreparedExec> {
        let id = format!("{}/{}", config.container_id, config.exec_id);
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::io("open", "/dev/null", e))?;
        let null = OwnedFd::from(null);
        let stdio = InitStdio {
            stdin: null
                .try_clone()
                .map_err(|e| Error::io("dup", "/dev/null", e))?,
            stdout: null
                .try_clone()
                .map_err(|e| Error::io("dup", "/dev/null", e))?,
            stderr: null,
        };
        let (channel, helper_pid) = self.exec_helper(
            &id,
            &Message::Exec(Box::new(config)),
            stdio,
            Some(init.as_raw_fd()),
        )?;
        Ok(PreparedExec {
            channel,
            helper_pid,
        })
    }

    /// Execs the helper with `stdio` as its fds 0-2, the channel at [`CHANNEL_FD`] and
    /// `extra` at [`PIDFD_FD`], and sends it `message`.
    fn exec_helper(
        &self,
        id: &str,
        message: &Message,
        stdio: InitStdio,
        extra: Option<RawFd>,
    ) -> Result<(Channel, i32)> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("socketpair", "setup channel", e))?;
        let mut fds = vec![
            (stdio.stdin.as_raw_fd(), 0),
            (stdio.stdout.as_raw_fd(), 1),
            (stdio.stderr.as_raw_fd(), 2),
            (theirs.as_raw_fd(), CHANNEL_FD),
        ];
        if let Some(fd) = extra {
            fds.push((fd, PIDFD_FD));
        }
        let (arg, id) = (cstring(HELPER_ARG)?, cstring(id)?);
        let argv = [c"mini-init", arg.as_c_str(), id.as_c_str()];
        let pid = spawn(&self.exe.path(), &argv, &fds)?;
        drop(stdio);
        drop(theirs);
        ours.set_read_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| Error::io("set timeout", "setup channel", e))?;
        let mut channel = Channel::new(ours);
        channel.send(message)?;
        Ok((channel, pid))
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid("id", format!("{s:?} contains a NUL byte")))
}

/// Execs `path` with `argv`, an empty environment and each `(fd, target)` of `fds` as its fd
/// `target`, without copying the caller's address space: posix_spawn (a vfork) rather than
/// fork, whose page-table copy and copy-on-write faults in a multi-threaded daemon cost more
/// than the helper's own start-up. The child runs nothing of ours before the exec (it is not
/// a fork of an async daemon running arbitrary code); the signal mask is cleared and every
/// signal is reset to its default. The helper sets its parent-death signal itself, first
/// thing, and gives up if the channel is already closed (see `init::die_with_caller`).
fn spawn(path: &Path, argv: &[&CStr], fds: &[(RawFd, RawFd)]) -> Result<i32> {
    let fail =
        |what: &'static str, rc: i32| Error::io(what, path, std::io::Error::from_raw_os_error(rc));
    let path_c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("executable", "path contains a NUL byte"))?;
    // Copies above every target first (close-on-exec, closed here after the spawn), so that
    // placing one fd cannot overwrite another that is still to be placed.
    let high = fds
        .iter()
        .map(|&(fd, target)| {
            // SAFETY: fcntl on a caller's open fd; the result is a new fd that we own.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if copy < 0 {
                return Err(Error::io(
                    "dup",
                    "setup helper fd",
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: fcntl just returned this new fd; nothing else owns it.
            Ok((unsafe { OwnedFd::from_raw_fd(copy) }, target))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut argv_p: Vec<*mut libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr() as *mut libc::c_char)
        .collect();
    argv_p.push(std::ptr::null_mut());
    let envp: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    // SAFETY: the file actions and attributes are initialised before use and destroyed on
    // every path; every pointer passed (path, argv, envp, the sets) outlives the call, and
    // argv and envp are NULL-terminated.
    unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let rc = libc::posix_spawn_file_actions_init(actions.as_mut_ptr());
        if rc != 0 {
            return Err(fail("posix_spawn_file_actions_init", rc));
        }
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        let rc = libc::posix_spawnattr_init(attr.as_mut_ptr());
        if rc != 0 {
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            return Err(fail("posix_spawnattr_init", rc));
        }
        let result = (|| {
            for (fd, target) in &high {
                // dup2 clears close-on-exec on the target.
                let rc = libc::posix_spawn_file_actions_adddup2(
                    actions.as_mut_ptr(),
                    fd.as_raw_fd(),
                    *target,
                );
                if rc != 0 {
                    return Err(fail("posix_spawn_file_actions_adddup2", rc));
                }
            }
            let mut none = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut none);
            let mut all = std::mem::zeroed::<libc::sigset_t>();
            libc::sigfillset(&mut all);
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            for rc in [
                libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), &none),
                libc::posix_spawnattr_setsigdefault(attr.as_mut_ptr(), &all),
                libc::posix_spawnattr_setflags(attr.as_mut_ptr(), flags as libc::c_short),
            ] {
                if rc != 0 {
                    return Err(fail("posix_spawnattr", rc));
                }
            }
            let mut pid: libc::pid_t = 0;
            let rc = libc::posix_spawn(
                &mut pid,
                path_c.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv_p.as_ptr(),
                envp.as_ptr(),
            );
            if rc != 0 {
                return Err(fail("exec setup helper", rc));
            }
            Ok(pid)
        })();
        libc::posix_spawnattr_destroy(attr.as_mut_ptr());
        libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
        result
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
        let pid = recv_pid(&mut self.channel, "creating the container init")?;
        self.pid = Some(pid);
        Ok(pid)
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

/// An exec's helper, spawned and waiting for [`PreparedExec::start`].
#[derive(Debug)]
pub struct PreparedExec {
    channel: Channel,
    helper_pid: i32,
}

impl PreparedExec {
    /// The setup helper's pid (a child of the caller, which must reap it).
    pub fn helper_pid(&self) -> i32 {
        self.helper_pid
    }

    /// Lets the helper start the process with `stdio` as its fds 0-2 (sent over the
    /// channel; closed here). Then [`PendingExec::wait_pid`] and [`PendingExec::wait_exec`].
    pub fn start(mut self, stdio: InitStdio) -> Result<PendingExec> {
        let fds = [&stdio.stdin, &stdio.stdout, &stdio.stderr].map(|fd| fd.as_raw_fd());
        self.channel.send_with_fds(&Message::Start, &fds)?;
        Ok(PendingExec {
            channel: self.channel,
            helper_pid: self.helper_pid,
            pid: None,
        })
    }
}

/// A process being started in a running container.
#[derive(Debug)]
pub struct PendingExec {
    channel: Channel,
    helper_pid: i32,
    pid: Option<i32>,
}

impl PendingExec {
    /// The setup helper's pid (a child of the caller, which must reap it).
    pub fn helper_pid(&self) -> i32 {
        self.helper_pid
    }

    /// The exec process's pid (a child of the caller), once the helper has forked it.
    pub fn wait_pid(&mut self) -> Result<i32> {
        if let Some(pid) = self.pid {
            return Ok(pid);
        }
        let pid = recv_pid(&mut self.channel, "forking the exec process")?;
        self.pid = Some(pid);
        Ok(pid)
    }

    /// Ok once the process exec'd the program (the channel closes on exec) or died (its exit
    /// is reported through the caller's reaper); the setup's error otherwise.
    pub fn wait_exec(self) -> Result<i32> {
        self.wait_exec_with_console().map(|(pid, _)| pid)
    }

    /// [`PendingExec::wait_exec`], with the master of the process's pty when its process
    /// has `terminal` (sent just before it exec'd).
    pub fn wait_exec_with_console(mut self) -> Result<(i32, Option<OwnedFd>)> {
        let pid = self.wait_pid()?;
        let mut console = None;
        let mut msg = self.channel.recv()?;
        if let Some(Message::Ready) = msg {
            console = self.channel.take_fd();
            msg = self.channel.recv()?;
        }
        match msg {
            None => Ok((pid, console)),
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            Some(other) => Err(Error::Setup(format!(
                "exec process sent {other:?} instead of exec'ing"
            ))),
        }
    }
}

/// The helper's `Pid` message; an error if it reports one or ends before `doing` is done.
fn recv_pid(channel: &mut Channel, doing: &str) -> Result<i32> {
    match channel.recv()? {
        Some(Message::Pid { pid }) => Ok(pid),
        Some(Message::Error { message }) => Err(Error::Setup(message)),
        Some(other) => Err(Error::Setup(format!(
            "setup helper sent {other:?} before the pid ({doing})"
        ))),
        None => Err(Error::Setup(format!("setup helper exited before {doing}"))),
    }
}
