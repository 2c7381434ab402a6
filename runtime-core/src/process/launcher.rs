//! The caller's side: exec the setup helper, learn the init's pid, wait for ready, start.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{ContainerState, Hooks, State};

use super::HELPER_ARG;
use super::channel::{Channel, HelperConfig, Message};
use super::exec::ExecConfig;
use crate::exe_guard::ExeView;
use crate::hooks::Stage;
use crate::seccomp::agent::Agent;
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
    runner: HookRunner,
}

/// Runs hooks in the caller's namespaces through a helper exec'd for them: the hooks are
/// the runner's children, so a caller that reaps every child (the shim) cannot take their
/// exit statuses.
#[derive(Debug, Clone)]
struct HookRunner {
    exe: Arc<ExeView>,
    /// Reap the runner here; false when the caller reaps every child itself.
    reap: bool,
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
            runner: HookRunner {
                exe: Arc::new(ExeView::current()?),
                reap: true,
            },
        })
    }

    /// For a caller that reaps every child itself (a subreaper's `waitpid(-1)` loop): the
    /// hook runners' exits are left to it. The setup helpers are always the caller's to reap.
    pub fn reaped_by_caller(mut self) -> Self {
        self.runner.reap = false;
        self
    }

    /// Runs the hooks of `stage` (from the spec's `hooks`) in the caller's namespaces, each
    /// with `state` on its stdin; the error names the first that failed. For `poststart` and
    /// `poststop`; [`PendingInit::wait_ready`] runs `prestart` and `createRuntime`.
    pub fn run_hooks(&self, stage: Stage, hooks: Option<&Hooks>, state: &State) -> Result<()> {
        match hooks {
            Some(hooks) => self.runner.run(stage, hooks, state),
            None => Ok(()),
        }
    }

    /// Execs the helper and hands it `config`. The helper clones the init, which builds the
    /// container; call [`PendingInit::wait_pid`] then [`PendingInit::wait_ready`].
    ///
    /// Until the init reports ready, the helper and the init die (SIGKILL) when the calling
    /// thread ends: call `wait_ready` from the thread that called `spawn`.
    pub fn spawn(&self, config: HelperConfig, stdio: InitStdio) -> Result<PendingInit> {
        let id = config.id.clone();
        let hooks = self.init_hooks(&config);
        let agent = seccomp_agent(&config);
        let (channel, helper_pid) =
            self.exec_helper(&id, &Message::Config(Box::new(config)), stdio, None)?;
        Ok(PendingInit::new(channel, Some(helper_pid), hooks, agent))
    }

    /// What the init's `RuntimeHooks` request needs: the spec's hooks and its state.
    /// `None` when the init will not ask (no hook of the kinds it runs or asks for).
    fn init_hooks(&self, config: &HelperConfig) -> Option<InitHooks> {
        if !crate::hooks::any(&config.spec, &super::init::ASKS_FOR_HOOKS) {
            return None;
        }
        let hooks = config.spec.hooks().clone()?;
        let state = crate::hooks::state(
            &config.spec,
            &config.id,
            &config.bundle,
            ContainerState::Creating,
            0,
        );
        Some(InitHooks {
            runner: self.runner.clone(),
            hooks,
            state,
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
        let hooks = self.init_hooks(&config);
        let agent = seccomp_agent(&config);
        let message = Message::CreateDetached(Box::new(config));
        let (channel, helper_pid) =
            self.exec_helper(&id, &message, stdio, Some(start_socket.as_raw_fd()))?;
        Ok(PendingInit::new(channel, Some(helper_pid), hooks, agent))
    }

    /// [`Launcher::spawn_detached`] without a setup helper: this process does the helper's
    /// work and the init is its child (the stdio it gets is this process's 0-2). Only where
    /// [`can_build_here`] says so. Saves the helper's fork, exec and start-up, and the spec's
    /// second parse.
    pub fn build_detached_here(
        &self,
        config: HelperConfig,
        start_socket: BorrowedFd<'_>,
    ) -> Result<PendingInit> {
        let hooks = self.init_hooks(&config);
        let agent = seccomp_agent(&config);
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("socketpair", "setup channel", e))?;
        ours.set_read_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| Error::io("set timeout", "setup channel", e))?;
        super::detached::set_start_listener(start_socket.as_raw_fd());
        let mut init_side = Channel::new(theirs);
        let built = super::helper::build_in_caller(&config, &mut init_side, ours.as_raw_fd());
        super::detached::set_start_listener(-1);
        built?;
        drop(init_side);
        let mut pending = PendingInit::new(Channel::new(ours), None, hooks, agent);
        pending.wait_pid()?;
        Ok(pending)
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
        let agent = exec_agent(&config, init)?;
        let (channel, helper_pid) = self.exec_helper(
            &id,
            &Message::Exec(Box::new(config)),
            null_stdio()?,
            Some(init.as_raw_fd()),
        )?;
        Ok(PreparedExec {
            channel,
            helper_pid,
            agent,
        })
    }

    fn exec_helper(
        &self,
        id: &str,
        message: &Message,
        stdio: InitStdio,
        extra: Option<RawFd>,
    ) -> Result<(Channel, i32)> {
        exec_helper(&self.runner.exe, id, message, stdio, extra)
    }
}

impl HookRunner {
    fn run(&self, stage: Stage, hooks: &Hooks, state: &State) -> Result<()> {
        let list = stage.of(hooks);
        if list.is_empty() {
            return Ok(());
        }
        let message = Message::RunHooks {
            stage,
            hooks: list.to_vec(),
            state: state.clone(),
        };
        let (mut channel, pid) = exec_helper(&self.exe, state.id(), &message, null_stdio()?, None)?;
        // The hooks' own timeouts bound the run (none: as long as they take, as with runc).
        let result = channel
            .stream()
            .set_read_timeout(None)
            .map_err(|e| Error::io("set timeout", "hook runner channel", e))
            .and_then(|()| channel.recv());
        drop(channel);
        if self.reap {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        match result? {
            Some(Message::Ready) => Ok(()),
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            Some(other) => Err(Error::Setup(format!(
                "hooks.{}: the hook runner sent {other:?}",
                stage.name()
            ))),
            None => Err(Error::Setup(format!(
                "hooks.{}: the hook runner exited without a result",
                stage.name()
            ))),
        }
    }
}

/// Whether [`Launcher::build_detached_here`] may build `config`'s container in this process:
/// it runs from a view of its executable nothing can write (the init inherits it, and with
/// it the CVE-2019-5736 guard the helper's exec gives), has a single thread (the init is a
/// fork of it), and the container needs nothing the helper does to its own process: joining
/// namespaces by path or a time namespace (they would stay with this process), idmapped
/// mounts (staged in the helper's own mount namespace), the systemd driver (its D-Bus
/// threads).
pub fn can_build_here(config: &HelperConfig) -> bool {
    let Some(linux) = config.spec.linux().as_ref() else {
        return false;
    };
    let namespaces_simple = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|n| {
            n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
                && n.typ() != oci_spec::runtime::LinuxNamespaceType::Time
        });
    let idmapped = config
        .spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| m.uid_mappings().is_some() || m.gid_mappings().is_some());
    let systemd = config
        .cgroup
        .as_ref()
        .is_none_or(|c| c.systemd_unit().is_some());
    namespaces_simple
        && !idmapped
        && !systemd
        && single_threaded()
        && crate::exe_guard::running_from_view()
}

/// Whether this process has one thread (`/proc/self/stat` field 20, num_threads).
fn single_threaded() -> bool {
    crate::procfs::own_stat_fields(20) == Some([1])
}

/// The seccomp agent the init's listener goes to, when its profile notifies.
fn seccomp_agent(config: &HelperConfig) -> Option<Agent> {
    Agent::of(
        &config.spec,
        &config.id,
        &config.bundle,
        ContainerState::Creating,
    )
}

/// /dev/null as fds 0-2, for a helper that needs no stdio.
fn null_stdio() -> Result<InitStdio> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    let null = OwnedFd::from(null);
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup", "/dev/null", e));
    Ok(InitStdio {
        stdin: dup(&null)?,
        stdout: dup(&null)?,
        stderr: null,
    })
}

/// Execs the helper from `exe` with `stdio` as its fds 0-2, the channel at [`CHANNEL_FD`]
/// and `extra` at [`PIDFD_FD`], and sends it `message`.
fn exec_helper(
    exe: &ExeView,
    id: &str,
    message: &Message,
    stdio: InitStdio,
    extra: Option<RawFd>,
) -> Result<(Channel, i32)> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("socketpair", "setup channel", e))?;
    let theirs_fd = theirs.as_raw_fd();
    let caller = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(exe.path());
    cmd.arg0("mini-init")
        .arg(HELPER_ARG)
        .arg(id)
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
            // Copies above the target numbers first (close-on-exec), so that placing
            // one cannot overwrite the other; dup2 clears close-on-exec on the target.
            let place = |fd: RawFd, target: RawFd| {
                let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok((high, target))
            };
            let mut moves = vec![place(theirs_fd, CHANNEL_FD)?];
            if let Some(fd) = extra {
                moves.push(place(fd, PIDFD_FD)?);
            }
            for (high, target) in moves {
                if libc::dup2(high, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("exec setup helper", exe.path(), e))?;
    drop(theirs);
    ours.set_read_timeout(Some(SETUP_TIMEOUT))
        .map_err(|e| Error::io("set timeout", "setup channel", e))?;
    let mut channel = Channel::new(ours);
    channel.send(message)?;
    Ok((channel, child.id() as i32))
}

/// A container being built.
#[derive(Debug)]
pub struct PendingInit {
    channel: Channel,
    /// `None` when the caller built the container itself.
    helper_pid: Option<i32>,
    pid: Option<i32>,
    hooks: Option<InitHooks>,
    /// Passed fds held back until the init's hooks exchange is over (it reads them after).
    deferred_fds: Vec<OwnedFd>,
    /// Where the listener of the init's seccomp filter goes (`SCMP_ACT_NOTIFY`).
    agent: Option<Agent>,
}

/// The hooks of a container being built, for its init's `RuntimeHooks` request.
#[derive(Debug)]
struct InitHooks {
    runner: HookRunner,
    hooks: Hooks,
    /// Its state, `creating`, without the pid (known at the request).
    state: State,
}

impl PendingInit {
    /// Queues the fds the process gets as 3, 4, … (as many as the config's `pass_fds`);
    /// call right after spawning. The init takes them once built, not while it resolves
    /// the spec's paths.
    pub fn pass_fds(&mut self, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if self.hooks.is_some() {
            // The init first asks for its hooks and waits for `HooksDone`: the fds follow
            // that answer (wait_ready), not precede it.
            self.deferred_fds = fds
                .iter()
                .map(|fd| fd.try_clone_to_owned())
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io("dup", "passed fd", e))?;
            return Ok(());
        }
        super::passed_fds::send(&mut self.channel, fds)
    }

    /// The setup helper's pid (a child of the caller, which must reap it); `None` when the
    /// caller did the helper's work itself ([`Launcher::build_detached_here`]).
    pub fn helper_pid(&self) -> Option<i32> {
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

    /// Waits until the init has built the container and blocks before exec. On the way,
    /// when the init has built its mounts, runs the spec's `prestart` then `createRuntime`
    /// hooks in the caller's namespaces (runtime.md's lifecycle, steps 3 and 4); a failing
    /// one is the error (the init then ends as the caller drops or kills it). With a
    /// notifying seccomp profile, hands the filter's listener to the agent at
    /// `linux.seccomp.listenerPath` before the init is ready; failing that is the error.
    pub fn wait_ready(mut self) -> Result<CreatedInit> {
        let pid = self.wait_pid()?;
        let mut msg = self.channel.recv()?;
        if let Some(Message::RuntimeHooks) = msg {
            let state = self.run_runtime_hooks(pid)?;
            self.channel.send(&Message::HooksDone { state })?;
            let deferred = std::mem::take(&mut self.deferred_fds);
            if !deferred.is_empty() {
                let fds: Vec<BorrowedFd<'_>> = deferred.iter().map(|fd| fd.as_fd()).collect();
                super::passed_fds::send(&mut self.channel, &fds)?;
            }
            msg = self.channel.recv()?;
        }
        if let Some(Message::SeccompListener) = msg {
            hand_listener_to_agent(self.agent.as_ref(), &mut self.channel, pid)?;
            msg = self.channel.recv()?;
        }
        match msg {
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

impl PendingInit {
    fn new(
        channel: Channel,
        helper_pid: Option<i32>,
        hooks: Option<InitHooks>,
        agent: Option<Agent>,
    ) -> PendingInit {
        PendingInit {
            channel,
            helper_pid,
            pid: None,
            hooks,
            deferred_fds: Vec::new(),
            agent,
        }
    }

    fn run_runtime_hooks(&self, pid: i32) -> Result<State> {
        let Some(init) = &self.hooks else {
            return Err(Error::Setup(
                "container init asked for hooks the spec does not have".into(),
            ));
        };
        let mut state = init.state.clone();
        state.set_pid(Some(pid));
        for stage in [Stage::Prestart, Stage::CreateRuntime] {
            init.runner.run(stage, &init.hooks, &state)?;
        }
        Ok(state)
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

    /// For an init of [`Launcher::spawn_detached`]: the caller has recorded it (its pid,
    /// ready), so it may outlive the caller now. Until then it still dies with the caller,
    /// which would otherwise leave an init nobody knows of.
    pub fn detach(mut self) -> Result<()> {
        self.channel.send(&Message::Detach)?;
        match self.channel.recv()? {
            Some(Message::Detach) => Ok(()),
            Some(Message::Error { message }) => Err(Error::Setup(message)),
            other => Err(Error::Setup(format!(
                "container init sent {other:?} instead of detaching"
            ))),
        }
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

/// The agent an exec's listener goes to, when the container's profile notifies.
fn exec_agent(config: &ExecConfig, init: BorrowedFd<'_>) -> Result<Option<Agent>> {
    let notifies = config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_some_and(crate::seccomp::uses_notify);
    if !notifies {
        return Ok(None);
    }
    let bundle = config.bundle.as_deref().ok_or_else(|| {
        Error::invalid(
            "linux.seccomp.listenerPath",
            "an exec with a notifying seccomp profile needs the container's bundle",
        )
    })?;
    let agent = Agent::of(
        &config.spec,
        &config.container_id,
        bundle,
        ContainerState::Running,
    );
    Ok(agent.map(|a| match pidfd_pid(init) {
        Some(pid) => a.with_container_pid(pid),
        None => a,
    }))
}

/// The pid a pidfd refers to (its `fdinfo`), if the process still runs.
fn pidfd_pid(fd: BorrowedFd<'_>) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()
        .filter(|pid: &i32| *pid > 0)
}

/// An exec's helper, spawned and waiting for [`PreparedExec::start`].
#[derive(Debug)]
pub struct PreparedExec {
    channel: Channel,
    helper_pid: i32,
    agent: Option<Agent>,
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
            agent: self.agent,
        })
    }
}

/// A process being started in a running container.
#[derive(Debug)]
pub struct PendingExec {
    channel: Channel,
    helper_pid: i32,
    pid: Option<i32>,
    agent: Option<Agent>,
}

impl PendingExec {
    /// Queues the fds the process gets as 3, 4, … (as many as the config's `pass_fds`);
    /// call right after starting. The process takes them once its paths are resolved.
    pub fn pass_fds(&mut self, fds: &[BorrowedFd<'_>]) -> Result<()> {
        super::passed_fds::send(&mut self.channel, fds)
    }

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
        if let Some(Message::SeccompListener) = msg {
            hand_listener_to_agent(self.agent.as_ref(), &mut self.channel, pid)?;
            self.channel.send(&Message::Ready).map_err(|e| {
                Error::Setup(format!(
                    "the exec process ended before its seccomp listener was handed over: {e}"
                ))
            })?;
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

/// The listener that came with `SeccompListener` (the process `pid`'s), to the agent; our
/// copy is closed after.
fn hand_listener_to_agent(agent: Option<&Agent>, channel: &mut Channel, pid: i32) -> Result<()> {
    match (agent, channel.take_fd()) {
        (Some(agent), Some(listener)) => agent.send(pid, listener.as_fd()),
        (None, _) => Err(Error::Setup(
            "the process sent a seccomp listener the spec has no listenerPath for".into(),
        )),
        (_, None) => Err(Error::Setup(
            "the process sent no fd with its seccomp listener message".into(),
        )),
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
