//! One container and its init process: created → running → stopped → deleted. Every RPC asks
//! the state whether it is allowed; exits reach the state through one watcher task.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use runtime_core::cgroups::CgroupManager;
use runtime_core::process::{CreatedInit, HelperConfig, Launcher};
use runtime_core::rootfs::{self, RootfsMount};
use tokio::sync::{Mutex, oneshot, watch};

use crate::events::Publisher;
use crate::exec::{ExecParams, ExecProcess, StartContext};
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio::{self, StdioCopies};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    /// Frozen by Pause (v1 freezer, v2 cgroup.freeze) until Resume.
    Paused,
    Stopped,
}

/// What containerd asked for at Create.
pub struct CreateParams {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<RootfsMount>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// Owner of the process's stdio pipes (uid, gid): a user namespace's root.
    pub io_owner: (u32, u32),
    pub no_new_keyring: bool,
    /// The runtime options' `SystemdCgroup`: place the container in a systemd scope.
    pub systemd_cgroup: bool,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub pid: i32,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    cgroup: CgroupManager,
    /// Whether the container has a pid namespace of its own: then the kernel kills the rest of
    /// it when the init exits; otherwise the shim does.
    private_pid_ns: bool,
    /// The rootfs we mounted (from containerd's mounts), unmounted at delete.
    mounted_rootfs: Option<PathBuf>,
    /// Set as soon as the init is reaped (before its output has drained): its pid may be
    /// reused from then on, so nothing may signal it.
    reaped: AtomicBool,
    /// Set for a container containerd never learnt of (its Create's caller went away): its
    /// exit is not published.
    discarded: AtomicBool,
    state: Mutex<State>,
    exit: watch::Receiver<Option<Exit>>,
    /// The spec the container was built from: an exec's process replaces its `process`.
    spec: oci_spec::runtime::Spec,
    /// A pidfd of the init, taken while it was ours for sure (see
    /// ExitMonitor::open_pidfd): execs join its namespaces through it.
    init_pidfd: Option<OwnedFd>,
    io_owner: (u32, u32),
    no_new_keyring: bool,
    /// The exec processes, by exec id, until each is deleted.
    execs: std::sync::Mutex<HashMap<String, Arc<ExecProcess>>>,
    /// Publishes `/tasks/oom`; asked once more before `/tasks/exit`.
    oom: crate::oom::OomWatch,
}

struct State {
    status: Status,
    created: Option<CreatedInit>,
    stdio: StdioCopies,
}

/// Why an operation failed: the caller maps this to a ttrpc code.
#[derive(Debug)]
pub enum Failure {
    /// The spec or request is wrong.
    Invalid(String),
    /// Building the container failed.
    Runtime(&'static str, runtime_core::Error),
    /// Not allowed in the current state.
    State(String),
    /// The id is taken.
    Exists(String),
    Internal(String),
}

impl Container {
    /// Builds the container and leaves its init blocked before exec.
    pub async fn create(
        params: CreateParams,
        launcher: Arc<Launcher>,
        monitor: ExitMonitor,
        publisher: Publisher,
        namespace: String,
    ) -> Result<Arc<Container>, Failure> {
        let spec = runtime_core::spec::load(&params.bundle)
            .map_err(|e| Failure::Runtime("load spec", e))?;
        let spec_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        if spec_terminal != params.terminal {
            return Err(Failure::Invalid(format!(
                "process.terminal is {spec_terminal} in the spec but the task asks for terminal \
                 {}",
                params.terminal
            )));
        }
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        let cgroup = CgroupManager::for_container(
            &params.id,
            cgroups_path.as_deref(),
            params.systemd_cgroup,
        )
        .map_err(|e| Failure::Runtime("cgroup", e))?;

        let private_pid_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|nss| {
                nss.iter().any(|ns| {
                    ns.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && ns.path().is_none()
                })
            });

        let (rootfs_path, mounted_rootfs) = if params.rootfs.is_empty() {
            (runtime_core::spec::rootfs_path(&spec, &params.bundle), None)
        } else {
            let target = params.bundle.join("rootfs");
            let mounts = params.rootfs.clone();
            let t = target.clone();
            // Mounting an overlay takes milliseconds: not on the daemon's only thread.
            tokio::task::spawn_blocking(move || {
                fs::create_dir_all(&t)
                    .map_err(|e| Failure::Internal(format!("create {}: {e}", t.display())))?;
                rootfs::mount_rootfs(&mounts, &t).map_err(|e| {
                    // Whatever part of it did get mounted goes too.
                    let _ = rootfs::unmount_rootfs(&t);
                    Failure::Runtime("mount rootfs", e)
                })
            })
            .await
            .map_err(|e| Failure::Internal(format!("mount task: {e}")))??;
            (target.clone(), Some(target))
        };
        let undo_rootfs = |mounted: &Option<PathBuf>| {
            if let Some(target) = mounted
                && let Err(err) = rootfs::unmount_rootfs(target)
            {
                log::warn!("unmount {}: {err}", target.display());
            }
        };

        let owner = stdio::Owner {
            id: &params.id,
            namespace: &namespace,
            ids: params.io_owner,
        };
        let opened = if params.terminal {
            stdio::open_terminal(&params.stdin, &params.stdout, owner, &monitor).await
        } else {
            stdio::open(
                &params.stdin,
                &params.stdout,
                &params.stderr,
                owner,
                &monitor,
            )
            .await
        };
        let (child_stdio, mut copies) = match opened {
            Ok(x) => x,
            Err(err) => {
                undo_rootfs(&mounted_rootfs);
                return Err(Failure::Invalid(format!("stdio: {err}")));
            }
        };

        let config = HelperConfig {
            id: params.id.clone(),
            bundle: params.bundle.clone(),
            rootfs: rootfs_path,
            spec: spec.clone(),
            // Resolved once, here: the helper needs the same directories we remove later.
            cgroup: Some(cgroup.clone()),
            no_new_keyring: params.no_new_keyring,
        };
        let (pid_tx, pid_rx) = oneshot::channel();
        let m = monitor.clone();
        // Exits of unknown pids are kept until the init's pid is subscribed: it may die
        // before we learn it.
        let window = monitor.spawn_window();
        let bundle = params.bundle.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut pending = spawn_helper(|| launcher.spawn(config, child_stdio))?;
            m.ignore(pending.helper_pid());
            let pid = pending.wait_pid()?;
            // Recorded at once, for `delete` after this daemon died: the helper reports the pid
            // once the init is in the container's cgroup, which it found empty, so a recorded
            // pid also says that the cgroup is ours. Until then the setup processes die with
            // this thread (see Launcher::spawn).
            record_init(&bundle, pid);
            let _ = pid_tx.send((pid, m.subscribe(pid)));
            pending.wait_ready()
        })
        .await
        .map_err(|e| Failure::Internal(format!("setup task: {e}")))
        .and_then(|r| r.map_err(|e| Failure::Runtime("create", e)));
        let subscribed = pid_rx.await.ok();
        drop(window);
        // The init's pty master comes with its ready message.
        let built = built.and_then(|mut created| {
            if let Some(master) = created.take_console() {
                copies
                    .attach_console(master)
                    .map_err(|e| Failure::Internal(format!("process.terminal: {e}")))?;
            } else if params.terminal {
                return Err(Failure::Internal(
                    "process.terminal: the container init sent no pty master".into(),
                ));
            }
            Ok(created)
        });

        let created = match built {
            Ok(created) => created,
            Err(err) => {
                if let Some((pid, exit)) = subscribed {
                    // Only while it is still our unreaped child: the failed init may be gone.
                    let _ = monitor.signal_child(pid, libc::SIGKILL);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), exit).await;
                }
                copies.close().await;
                // Only remove it: the init (which cannot have forked yet) is gone, and a cgroup
                // that already held others' processes must keep them.
                remove_cgroup(cgroup, false).await;
                undo_rootfs(&mounted_rootfs);
                return Err(err);
            }
        };
        let pid = created.pid();
        let exit_rx = match subscribed {
            Some((_, rx)) => rx,
            None => monitor.subscribe(pid),
        };
        let init_pidfd = match monitor.open_pidfd(pid) {
            Ok(fd) => Some(fd),
            Err(err) => {
                log::warn!("pidfd of {}'s init {pid}: {err}", params.id);
                None
            }
        };

        let (exit_tx, exit_watch) = watch::channel(None);
        let oom = crate::oom::OomWatch::start(&params.id, &cgroup, publisher.clone(), &namespace);
        let container = Arc::new(Container {
            id: params.id,
            bundle: params.bundle,
            pid,
            stdin: params.stdin,
            stdout: params.stdout,
            stderr: params.stderr,
            terminal: params.terminal,
            cgroup,
            private_pid_ns,
            mounted_rootfs,
            reaped: AtomicBool::new(false),
            discarded: AtomicBool::new(false),
            state: Mutex::new(State {
                status: Status::Created,
                created: Some(created),
                stdio: copies,
            }),
            exit: exit_watch,
            spec,
            init_pidfd,
            io_owner: params.io_owner,
            no_new_keyring: params.no_new_keyring,
            execs: std::sync::Mutex::new(HashMap::new()),
            oom,
        });
        tokio::spawn(watch_exit(
            container.clone(),
            exit_rx,
            exit_tx,
            publisher,
            namespace,
        ));
        release_free_memory();
        Ok(container)
    }

    /// Lets the init exec the user's process. `on_started` runs (publishing `/tasks/start`)
    /// before the exit watcher may publish `/tasks/exit`.
    pub async fn start(&self, on_started: impl FnOnce()) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        if self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State(format!(
                "container {} exited before it was started",
                self.id
            )));
        }
        if state.status != Status::Created {
            return Err(Failure::State(format!(
                "container {} is {:?}, not created",
                self.id, state.status
            )));
        }
        let created = state
            .created
            .take()
            .ok_or_else(|| Failure::State(format!("container {} is already starting", self.id)))?;
        tokio::task::spawn_blocking(move || created.start())
            .await
            .map_err(|e| Failure::Internal(format!("start task: {e}")))?
            .map_err(|e| Failure::Runtime("start", e))?;
        state.status = Status::Running;
        on_started();
        Ok(())
    }

    pub async fn status(&self) -> (Status, Option<Exit>) {
        let state = self.state.lock().await;
        (state.status, *self.exit.borrow())
    }

    /// Signals the init (or, with `all`, every process in the container's cgroup) with any
    /// signal 1–64, real-time ones included.
    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), Failure> {
        let sig = signal_number(signal)?;
        if self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State("process already finished".into()));
        }
        if all {
            let cgroup = self.cgroup.clone();
            // SIGKILL of a v1 cgroup may poll for a while: not on the daemon's only thread.
            let result = tokio::task::spawn_blocking(move || kill_cgroup(&cgroup, sig)).await;
            if let Ok(Err(err)) = result {
                log::warn!("kill all in {}: {err}", self.id);
            }
        }
        // Checked again after the await above: a reaped pid may belong to someone else now.
        if self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State("process already finished".into()));
        }
        let sent = self.signal_init(sig);
        if sig == libc::SIGKILL {
            // A frozen process acts on SIGKILL only once thawed (runc: signal, then thaw).
            self.thaw_after_kill().await;
        }
        match sent {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(Failure::State("process already finished".into())),
            Err(e) => Err(Failure::Internal(format!(
                "kill {} with signal {sig}: {e}",
                self.pid
            ))),
        }
    }

    /// Waits for the init's exit (output drained).
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        let exit = rx.wait_for(|e| e.is_some()).await.map(|e| *e);
        match exit {
            Ok(Some(exit)) => exit,
            _ => Exit {
                status: 255,
                at: std::time::SystemTime::now(),
            },
        }
    }

    /// The processes in the container's cgroup (containerd 1.7+ keeps a shim after its own
    /// restart only if this is not empty).
    pub async fn pids(&self) -> Vec<i32> {
        let cgroup = self.cgroup.clone();
        let mut pids = tokio::task::spawn_blocking(move || cgroup.pids())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if pids.is_empty() && self.exit.borrow().is_none() {
            pids.push(self.pid);
        }
        pids
    }

    /// ResizePty: the init's terminal gets `width` columns and `height` rows.
    pub async fn resize_pty(&self, width: u32, height: u32) -> Result<(), Failure> {
        let (rows, cols) = terminal_size(width, height)?;
        let state = self.state.lock().await;
        if !state.stdio.is_terminal() {
            return Err(Failure::State(format!(
                "container {} has no terminal to resize",
                self.id
            )));
        }
        state
            .stdio
            .resize(rows, cols)
            .map_err(|e| Failure::State(format!("resize terminal of {}: {e}", self.id)))
    }

    pub async fn close_stdin(&self) {
        self.state.lock().await.stdio.close_stdin();
    }

    /// Removes what the container left: kills a created init, removes the cgroup and
    /// unmounts the rootfs. Refused while the init runs.
    pub async fn delete(&self) -> Result<Exit, Failure> {
        let status = self.state.lock().await.status;
        match status {
            Status::Running | Status::Paused if self.exit.borrow().is_none() => {
                return Err(Failure::State(format!(
                    "container {} is {}; kill it first",
                    self.id,
                    if status == Status::Paused {
                        "paused"
                    } else {
                        "running"
                    }
                )));
            }
            Status::Created => {
                let _ = self.signal_init(libc::SIGKILL);
            }
            _ => {}
        }
        let exit = self.wait().await;
        let execs: Vec<_> = self.execs_table().drain().map(|(_, e)| e).collect();
        for exec in execs {
            exec.discard().await;
        }
        // Taken out: stopping a logging binary may take a while, and State must answer.
        let stdio = std::mem::take(&mut self.state.lock().await.stdio);
        stdio.close().await;
        remove_cgroup(self.cgroup.clone(), true).await;
        if let Some(target) = self.mounted_rootfs.clone() {
            tokio::task::spawn_blocking(move || rootfs::unmount_rootfs(&target))
                .await
                .map_err(|e| Failure::Internal(format!("unmount task: {e}")))?
                .map_err(|e| Failure::Runtime("unmount rootfs", e))?;
        }
        Ok(exit)
    }
}

/// The highest signal number Linux has (`SIGRTMAX`, `_NSIG`).
const MAX_SIGNAL: u32 = 64;

/// A Kill request's signal: any of 1–64. nix's `Signal` cannot name the real-time signals
/// (`SIGRTMIN`..`SIGRTMAX`, 32–64) that systemd images stop with, so signals stay numbers.
pub(crate) fn signal_number(signal: u32) -> Result<i32, Failure> {
    if (1..=MAX_SIGNAL).contains(&signal) {
        Ok(signal as i32)
    } else {
        Err(Failure::Invalid(format!(
            "signal {signal} is not valid: Kill takes a signal number from 1 to {MAX_SIGNAL}"
        )))
    }
}

/// kill(2) with a signal number.
pub(crate) fn send_signal(pid: i32, signal: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// `pidfd_send_signal(2)`: the signal reaches the process the pidfd names, or fails.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: pidfd_send_signal with a pidfd we own, no siginfo (NULL) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Signals every process in the cgroup: SIGKILL through the cgroup's own kill (which waits
/// until the cgroup is empty), any other signal once to each process in it.
fn kill_cgroup(cgroup: &CgroupManager, signal: i32) -> Result<(), String> {
    if signal == libc::SIGKILL {
        return cgroup.kill_all(Signal::SIGKILL).map_err(|e| e.to_string());
    }
    for pid in cgroup.pids().map_err(|e| e.to_string())? {
        match send_signal(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("kill {pid} with signal {signal}: {e}")),
        }
    }
    Ok(())
}

/// ResizePty's width and height as (rows, columns) of a terminal.
pub fn terminal_size(width: u32, height: u32) -> Result<(u16, u16), Failure> {
    match (u16::try_from(height), u16::try_from(width)) {
        (Ok(rows), Ok(cols)) => Ok((rows, cols)),
        _ => Err(Failure::Invalid(format!(
            "terminal size {width}x{height}: width and height go up to {}",
            u16::MAX
        ))),
    }
}

impl Container {
    /// Signals the init through its pidfd, which names that process only: once it is reaped
    /// the signal fails with ESRCH instead of reaching whoever got the pid next.
    fn signal_init(&self, sig: i32) -> Result<(), nix::errno::Errno> {
        match &self.init_pidfd {
            Some(pidfd) => pidfd_send_signal(pidfd, sig),
            None if self.reaped.load(Ordering::SeqCst) => Err(nix::errno::Errno::ESRCH),
            None => send_signal(self.pid, sig),
        }
    }

    fn execs_table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecProcess>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exec: records a process to start in the running container. The exec's process (the
    /// JSON of an OCI Process) is checked against the container's spec now; the process is
    /// built at Start.
    pub async fn add_exec(
        &self,
        exec_id: &str,
        process_json: &[u8],
        stdio: [String; 3],
        terminal: bool,
    ) -> Result<Arc<ExecProcess>, Failure> {
        if exec_id.is_empty() {
            return Err(Failure::Invalid("exec: empty exec id".into()));
        }
        self.check_running()?;
        let spec = runtime_core::process::exec_spec(&self.spec, process_json)
            .map_err(|e| Failure::Runtime("exec", e))?;
        let spec_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        if spec_terminal != terminal {
            return Err(Failure::Invalid(format!(
                "exec {exec_id}: process.terminal is {spec_terminal} but the request asks for \
                 terminal {terminal}"
            )));
        }
        let [stdin, stdout, stderr] = stdio;
        let mut execs = self.execs_table();
        if execs.contains_key(exec_id) {
            return Err(Failure::Exists(format!("exec {exec_id} of {}", self.id)));
        }
        let exec = ExecProcess::new(
            &self.id,
            ExecParams {
                exec_id: exec_id.to_string(),
                stdin,
                stdout,
                stderr,
                terminal,
                spec,
            },
        );
        execs.insert(exec_id.to_string(), exec.clone());
        Ok(exec)
    }

    /// Refused unless the init runs: an exec joins its namespaces.
    fn check_running(&self) -> Result<(), Failure> {
        if self.reaped.load(Ordering::SeqCst) || self.exit.borrow().is_some() {
            return Err(Failure::State(format!(
                "container {} has exited: cannot exec into it",
                self.id
            )));
        }
        Ok(())
    }

    /// The exec `exec_id`, NotFound-style `None` if there is none.
    pub fn exec(&self, exec_id: &str) -> Option<Arc<ExecProcess>> {
        self.execs_table().get(exec_id).cloned()
    }

    /// Start of an exec: builds its process in the container.
    pub async fn start_exec(
        &self,
        exec: &Arc<ExecProcess>,
        launcher: Arc<Launcher>,
        monitor: ExitMonitor,
        publisher: Publisher,
        namespace: String,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, Failure> {
        if self.state.lock().await.status != Status::Running {
            return Err(Failure::State(format!(
                "container {} is not running: cannot exec into it",
                self.id
            )));
        }
        self.check_running()?;
        let init = self.init_pidfd.as_ref().ok_or_else(|| {
            Failure::State(format!(
                "container {}: its init is gone: cannot exec into it",
                self.id
            ))
        })?;
        let ctx = StartContext {
            launcher,
            monitor,
            publisher,
            namespace,
            cgroup: self.cgroup.clone(),
            init,
            io_owner: self.io_owner,
            no_new_keyring: self.no_new_keyring,
        };
        let pid = exec.start(ctx, on_started).await?;
        // The init may have exited while the exec was built, after its watcher ended the
        // execs it knew running: this one ends too.
        if self.reaped.load(Ordering::SeqCst) {
            exec.kill_if_running();
        }
        Ok(pid)
    }

    /// Delete of an exec: its exit, and it is forgotten.
    pub async fn delete_exec(&self, exec: &Arc<ExecProcess>) -> Result<Exit, Failure> {
        let exit = exec.delete().await?;
        self.execs_table().remove(&exec.id);
        Ok(exit)
    }

    /// The exec id of each running exec's pid.
    pub fn exec_pids(&self) -> HashMap<i32, String> {
        self.execs_table()
            .values()
            .filter(|e| e.pid() != 0)
            .map(|e| (e.pid(), e.id.clone()))
            .collect()
    }

    /// Removes a container whose Create's caller went away, without a word to containerd:
    /// it never learnt of it.
    pub async fn discard(&self) -> Result<Exit, Failure> {
        self.discarded.store(true, Ordering::SeqCst);
        self.delete().await
    }
}

/// Runs `spawn` (the Launcher's). std's spawn panics if our reaper took the status of a child
/// whose exec failed: that is an error here.
pub(crate) fn spawn_helper<T>(
    spawn: impl FnOnce() -> runtime_core::Result<T>,
) -> runtime_core::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(spawn)).unwrap_or_else(|_| {
        Err(runtime_core::Error::Setup(
            "the setup helper could not be executed".into(),
        ))
    })
}

/// Pause, Resume, Update and Stats: the container's cgroup as a whole.
impl Container {
    /// Freezes every process of the container; Running → Paused.
    pub async fn pause(&self) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        if state.status != Status::Running || self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State(format!(
                "container {} is {:?}, not running: only a running container can be paused",
                self.id, state.status
            )));
        }
        self.on_cgroup("pause", |cgroup| cgroup.freeze()).await?;
        state.status = Status::Paused;
        Ok(())
    }

    /// Thaws a paused container; Paused → Running.
    pub async fn resume(&self) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        if state.status != Status::Paused {
            return Err(Failure::State(format!(
                "container {} is {:?}, not paused",
                self.id, state.status
            )));
        }
        self.on_cgroup("resume", |cgroup| cgroup.thaw()).await?;
        state.status = Status::Running;
        Ok(())
    }

    /// After a SIGKILL: thaws a paused container so that its processes can die.
    async fn thaw_after_kill(&self) {
        let mut state = self.state.lock().await;
        if state.status != Status::Paused {
            return;
        }
        match self.on_cgroup("thaw", |cgroup| cgroup.thaw()).await {
            Ok(()) => state.status = Status::Running,
            Err(err) => log::warn!("thaw {} after SIGKILL: {err:?}", self.id),
        }
    }

    /// Changes the container's limits; refused ones leave the old limits in place.
    pub async fn update(
        &self,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), Failure> {
        if self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State(format!(
                "container {} has stopped: nothing to update",
                self.id
            )));
        }
        self.on_cgroup("update", move |cgroup| cgroup.update(&resources))
            .await
    }

    /// The container's cgroup statistics.
    pub async fn stats(&self) -> Result<runtime_core::cgroups::stats::Stats, Failure> {
        self.on_cgroup("stats", |cgroup| cgroup.stats()).await
    }

    /// Runs `op` on the container's cgroup off the daemon's only thread (freezing waits for
    /// the kernel; cgroup files can be slow).
    async fn on_cgroup<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl FnOnce(&CgroupManager) -> runtime_core::Result<T> + Send + 'static,
    ) -> Result<T, Failure> {
        let cgroup = self.cgroup.clone();
        tokio::task::spawn_blocking(move || op(&cgroup))
            .await
            .map_err(|e| Failure::Internal(format!("{what} task: {e}")))?
            .map_err(|e| Failure::Runtime(what, e))
    }
}

/// Records the init for `delete` (see `cleanup::INIT_PID`): its start time first, so that a
/// recorded pid always comes with it.
fn record_init(bundle: &std::path::Path, pid: i32) {
    let start = crate::cleanup::start_time(pid).map(|t| t.to_string());
    let files = [
        (crate::cleanup::INIT_START, start),
        (crate::cleanup::INIT_PID, Some(pid.to_string())),
    ];
    for (name, text) in files {
        let path = bundle.join(name);
        if let Some(text) = text
            && let Err(err) = fs::write(&path, text)
        {
            log::warn!("record {}: {err}", path.display());
        }
    }
}

/// Gives the pages malloc holds free back to the kernel: Create parses the whole spec, and a
/// long-running daemon should not keep that memory.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// Removes the container's cgroup, first killing what is left in it when `kill_first`;
/// otherwise a cgroup that still holds processes (not ours) is left alone.
async fn remove_cgroup(cgroup: CgroupManager, kill_first: bool) {
    let result = tokio::task::spawn_blocking(move || {
        if kill_first {
            let _ = cgroup.kill_all(Signal::SIGKILL);
        } else if cgroup.pids().is_ok_and(|pids| !pids.is_empty()) {
            return Ok(());
        }
        cgroup.destroy()
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::warn!("remove cgroup: {err}"),
        Err(err) => log::warn!("remove cgroup task: {err}"),
    }
}

async fn watch_exit(
    container: Arc<Container>,
    exit: oneshot::Receiver<Exit>,
    exit_tx: watch::Sender<Option<Exit>>,
    publisher: Publisher,
    namespace: String,
) {
    let Ok(exit) = exit.await else { return };
    container.reaped.store(true, Ordering::SeqCst);
    // The execs end with the init, as with the stock shim (the kernel also ends those in the
    // init's pid namespace); each exit is still reported by its own watcher.
    let execs: Vec<_> = container.execs_table().values().cloned().collect();
    for exec in execs {
        exec.kill_if_running();
    }
    if !container.private_pid_ns {
        // Sharing a pid namespace, the container's other processes outlive its init unless
        // we end them (the stock shim does too); they would also hold its output open.
        let cgroup = container.cgroup.clone();
        let _ = tokio::task::spawn_blocking(move || cgroup.kill_all(Signal::SIGKILL)).await;
    }
    // Start holds the state lock until `/tasks/start` is queued: taking it here keeps
    // `/tasks/exit` after it. The drain runs without it, so State and the rest answer.
    let outputs = container.state.lock().await.stdio.take_outputs();
    stdio::drain(outputs).await;
    let mut state = container.state.lock().await;
    state.status = Status::Stopped;
    state.created = None;
    if container.discarded.load(Ordering::SeqCst) {
        let _ = exit_tx.send(Some(exit));
        return;
    }
    // An OOM kill of the init is published before its exit.
    container.oom.check();
    publisher.publish(
        &namespace,
        "/tasks/exit",
        &containerd_shim_protos::events::task::TaskExit {
            container_id: container.id.clone(),
            id: container.id.clone(),
            pid: container.pid as u32,
            exit_status: exit.status,
            exited_at: protobuf::MessageField::some(crate::events::timestamp(exit.at)),
            ..Default::default()
        },
    );
    let _ = exit_tx.send(Some(exit));
}

/// The rootfs mounts of a CreateTaskRequest in runtime-core's terms.
pub fn rootfs_mounts(mounts: &[containerd_shim_protos::types::mount::Mount]) -> Vec<RootfsMount> {
    mounts
        .iter()
        .map(|m| RootfsMount {
            typ: m.type_.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_from_1_to_64_is_accepted_and_nothing_else() {
        for n in 1..=64 {
            assert_eq!(signal_number(n).ok(), Some(n as i32));
        }
        for n in [0, 65, 4242, u32::MAX] {
            match signal_number(n) {
                Err(Failure::Invalid(msg)) => {
                    assert!(msg.contains(&format!("signal {n} ")), "{msg}")
                }
                other => panic!("signal {n}: {other:?}"),
            }
        }
    }
}
