//! One exec process of a container (`ctr task exec`, CRI `ExecSync`): created by Exec,
//! started by Start (where the process is built: runtime-core's exec through the setup
//! helper), stopped when reaped and its output drained, deleted by Delete. Each RPC asks the
//! state whether it is allowed, as for the init (`container.rs`).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use oci_spec::runtime::Spec;
use runtime_core::cgroups::CgroupManager;
use runtime_core::process::{ExecConfig, Launcher, PreparedExec};
use tokio::sync::{Mutex, oneshot, watch};

use crate::container::{Failure, Status, pidfd_send_signal, signal_number, spawn_helper};
use crate::events::Publisher;
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio::{self, StdioCopies};

/// What containerd asked for at Exec.
pub struct ExecParams {
    pub exec_id: String,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// The container's spec with the exec's process (runtime_core::process::exec_spec).
    pub spec: Spec,
}

pub struct ExecProcess {
    pub id: String,
    pub container_id: String,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    spec: Spec,
    /// 0 until started.
    pid: AtomicI32,
    /// Set as soon as the process is reaped: its pid may be reused from then on.
    reaped: AtomicBool,
    /// A pidfd of the started process, taken while it was an unreaped child: signals go
    /// through it, so they never reach whoever gets the pid after the reap.
    pidfd: std::sync::Mutex<Option<OwnedFd>>,
    state: Mutex<ExecState>,
    /// The setup helper started at Exec, waiting for Start (see [`ExecProcess::prepare`]).
    prepared: std::sync::Mutex<Prepared>,
    exit_tx: watch::Sender<Option<Exit>>,
    exit: watch::Receiver<Option<Exit>>,
}

/// The setup helper of an exec, started ahead of Start.
enum Prepared {
    /// Not started (yet).
    None,
    Ready(PreparedExec),
    /// Start began: no helper is started ahead any more.
    Taken,
}

struct ExecState {
    status: Status,
    stdio: StdioCopies,
}

/// What starting an exec needs of its container and of the daemon.
pub struct StartContext<'a> {
    pub launcher: Arc<Launcher>,
    pub monitor: ExitMonitor,
    pub publisher: Publisher,
    pub namespace: String,
    pub cgroup: CgroupManager,
    /// A pidfd of the container's init: the namespaces are joined through it.
    pub init: &'a OwnedFd,
    /// Owner of the process's stdio pipes.
    pub io_owner: (u32, u32),
    pub no_new_keyring: bool,
}

/// How long a failed exec's process may take to be reaped.
const FAILED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

impl ExecProcess {
    pub fn new(container_id: &str, params: ExecParams) -> Arc<ExecProcess> {
        let (exit_tx, exit) = watch::channel(None);
        Arc::new(ExecProcess {
            id: params.exec_id,
            container_id: container_id.to_string(),
            stdin: params.stdin,
            stdout: params.stdout,
            stderr: params.stderr,
            terminal: params.terminal,
            spec: params.spec,
            pid: AtomicI32::new(0),
            reaped: AtomicBool::new(false),
            pidfd: std::sync::Mutex::new(None),
            prepared: std::sync::Mutex::new(Prepared::None),
            state: Mutex::new(ExecState {
                status: Status::Created,
                stdio: StdioCopies::default(),
            }),
            exit_tx,
            exit,
        })
    }

    /// The process's pid; 0 before it started.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    fn config(&self, cgroup: CgroupManager, no_new_keyring: bool) -> ExecConfig {
        ExecConfig {
            container_id: self.container_id.clone(),
            exec_id: self.id.clone(),
            spec: self.spec.clone(),
            cgroup,
            no_new_keyring,
        }
    }

    /// Starts the exec's setup helper ahead of Start (at Exec), so that its exec and
    /// start-up are not on Start's path: it checks the config and waits, in the host's
    /// namespaces and cgroups, for Start. Best effort: Start starts a helper itself when
    /// there is none. Call it on the daemon's thread (the helper dies with the thread that
    /// spawned it). Dropped with the exec (Delete, or the container going), it exits.
    pub fn prepare(
        &self,
        launcher: &Launcher,
        monitor: &ExitMonitor,
        cgroup: CgroupManager,
        init: &OwnedFd,
        no_new_keyring: bool,
    ) {
        let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*prepared, Prepared::None) {
            return;
        }
        let config = self.config(cgroup, no_new_keyring);
        match spawn_helper(|| launcher.prepare_exec(config, init.as_fd())) {
            Ok(helper) => {
                monitor.ignore(helper.helper_pid());
                *prepared = Prepared::Ready(helper);
            }
            Err(err) => log::debug!("exec {}: no helper ahead of start: {err}", self.id),
        }
    }

    /// Builds the process in the container and lets it exec. `on_started` (publishing
    /// `/tasks/exec-started`) runs before the exit watcher may publish its `/tasks/exit`.
    /// A failure leaves the exec stopped (status 127, no event: it never started) and the
    /// container untouched.
    pub async fn start(
        self: &Arc<Self>,
        ctx: StartContext<'_>,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, Failure> {
        let mut state = self.state.lock().await;
        if state.status != Status::Created || self.pid() != 0 {
            return Err(Failure::State(format!(
                "exec {} of {} is {:?}, not created",
                self.id, self.container_id, state.status
            )));
        }
        let owner = stdio::Owner {
            id: &self.container_id,
            namespace: &ctx.namespace,
            ids: ctx.io_owner,
        };
        let opened = if self.terminal {
            stdio::open_terminal(&self.stdin, &self.stdout, owner, &ctx.monitor).await
        } else {
            stdio::open(&self.stdin, &self.stdout, &self.stderr, owner, &ctx.monitor).await
        };
        let (child_stdio, mut copies) =
            opened.map_err(|e| Failure::Invalid(format!("exec {} stdio: {e}", self.id)))?;
        let init = ctx
            .init
            .try_clone()
            .map_err(|e| Failure::Internal(format!("dup the init's pidfd: {e}")))?;
        let prepared = match std::mem::replace(
            &mut *self.prepared.lock().unwrap_or_else(|e| e.into_inner()),
            Prepared::Taken,
        ) {
            Prepared::Ready(helper) => Some(helper),
            Prepared::None | Prepared::Taken => None,
        };
        // The helper started at Exec, or the config to start one with now.
        let helper = prepared.ok_or_else(|| self.config(ctx.cgroup, ctx.no_new_keyring));
        let (pid_tx, pid_rx) = oneshot::channel();
        let m = ctx.monitor.clone();
        // Exits of unknown pids are kept until the process's pid is subscribed.
        let window = ctx.monitor.spawn_window();
        let launcher = ctx.launcher;
        let built = tokio::task::spawn_blocking(move || {
            let helper = match helper {
                Ok(helper) => helper,
                Err(config) => {
                    let helper = spawn_helper(|| launcher.prepare_exec(config, init.as_fd()))?;
                    m.ignore(helper.helper_pid());
                    helper
                }
            };
            let mut pending = helper.start(child_stdio)?;
            let pid = pending.wait_pid()?;
            let _ = pid_tx.send((pid, m.subscribe(pid)));
            pending.wait_exec_with_console()
        })
        .await
        .map_err(|e| Failure::Internal(format!("exec task: {e}")))
        .and_then(|r| r.map_err(|e| Failure::Runtime("exec", e)));
        let subscribed = pid_rx.await.ok();
        drop(window);
        // The process's pty master came with its ready message.
        let built = built.and_then(|(pid, console)| {
            match console {
                Some(master) => copies.attach_console(master).map_err(|e| {
                    Failure::Internal(format!("exec {} process.terminal: {e}", self.id))
                })?,
                None if self.terminal => {
                    return Err(Failure::Internal(format!(
                        "exec {} process.terminal: the process sent no pty master",
                        self.id
                    )));
                }
                None => {}
            }
            Ok(pid)
        });

        let pid = match built {
            Ok(pid) => pid,
            Err(err) => {
                let mut exit = Exit {
                    status: 127,
                    at: SystemTime::now(),
                };
                if let Some((pid, rx)) = subscribed {
                    // The process reports its error, then exits: nothing of it may remain
                    // (signalled only while it is still our unreaped child).
                    let _ = ctx.monitor.signal_child(pid, libc::SIGKILL);
                    if let Ok(Ok(e)) = tokio::time::timeout(FAILED_EXIT_TIMEOUT, rx).await {
                        exit = e;
                    }
                }
                self.reaped.store(true, Ordering::SeqCst);
                copies.close().await;
                state.status = Status::Stopped;
                let _ = self.exit_tx.send(Some(exit));
                return Err(err);
            }
        };
        let exit_rx = match subscribed {
            Some((_, rx)) => rx,
            None => ctx.monitor.subscribe(pid),
        };
        // Fails only when the process is already reaped: then there is nothing to signal.
        *self.pidfd.lock().unwrap_or_else(|e| e.into_inner()) = ctx.monitor.open_pidfd(pid).ok();
        self.pid.store(pid, Ordering::SeqCst);
        state.stdio = copies;
        state.status = Status::Running;
        on_started(pid);
        tokio::spawn(watch_exit(
            self.clone(),
            exit_rx,
            ctx.publisher,
            ctx.namespace,
        ));
        Ok(pid)
    }

    pub async fn status(&self) -> (Status, Option<Exit>) {
        let state = self.state.lock().await;
        (state.status, *self.exit.borrow())
    }

    /// Signals the process with any signal 1–64.
    pub fn kill(&self, signal: u32) -> Result<(), Failure> {
        let sig = signal_number(signal)?;
        let pid = self.pid();
        if pid == 0 {
            return Err(Failure::State(format!("exec {} is not started", self.id)));
        }
        if self.reaped.load(Ordering::SeqCst) {
            return Err(Failure::State("process already finished".into()));
        }
        match self.signal(sig) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(Failure::State("process already finished".into())),
            Err(e) => Err(Failure::Internal(format!(
                "kill {pid} with signal {sig}: {e}"
            ))),
        }
    }

    /// SIGKILL if running (the container's init exited); its exit is reported as usual.
    pub fn kill_if_running(&self) {
        if self.pid() != 0 && !self.reaped.load(Ordering::SeqCst) {
            let _ = self.signal(libc::SIGKILL);
        }
    }

    /// Signals the process through its pidfd; ESRCH once it is gone.
    fn signal(&self, sig: i32) -> Result<(), nix::errno::Errno> {
        match &*self.pidfd.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(pidfd) => pidfd_send_signal(pidfd, sig),
            None => Err(nix::errno::Errno::ESRCH),
        }
    }

    /// Waits for the exit (output drained). A created exec that is never started waits
    /// until it is deleted or the container goes.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        match rx.wait_for(|e| e.is_some()).await.map(|e| *e) {
            Ok(Some(exit)) => exit,
            _ => Exit {
                status: 255,
                at: SystemTime::now(),
            },
        }
    }

    /// ResizePty with this exec's id: its terminal gets `width` columns and `height` rows.
    pub async fn resize_pty(&self, width: u32, height: u32) -> Result<(), Failure> {
        let (rows, cols) = crate::container::terminal_size(width, height)?;
        let state = self.state.lock().await;
        if !state.stdio.is_terminal() {
            return Err(Failure::State(format!(
                "exec {} of {} has no terminal to resize",
                self.id, self.container_id
            )));
        }
        state.stdio.resize(rows, cols).map_err(|e| {
            Failure::State(format!(
                "resize terminal of exec {} of {}: {e}",
                self.id, self.container_id
            ))
        })
    }

    pub async fn close_stdin(&self) {
        self.state.lock().await.stdio.close_stdin();
    }

    /// Ends the helper started ahead of Start, if it waits still (it exits on EOF).
    fn drop_prepared(&self) {
        *self.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Prepared::Taken;
    }

    /// Delete: refused while the process runs; a created exec ends without running.
    pub async fn delete(&self) -> Result<Exit, Failure> {
        let mut state = self.state.lock().await;
        match state.status {
            Status::Running | Status::Paused => {
                return Err(Failure::State(format!(
                    "exec {} of {} is running; kill it first",
                    self.id, self.container_id
                )));
            }
            Status::Created => {
                self.drop_prepared();
                state.status = Status::Stopped;
                let _ = self.exit_tx.send(Some(Exit {
                    status: 0,
                    at: SystemTime::now(),
                }));
            }
            Status::Stopped => {}
        }
        let stdio = std::mem::take(&mut state.stdio);
        drop(state);
        stdio.close().await;
        Ok(self.wait().await)
    }

    /// Ends a process left when its container goes (Delete of the init). A Wait on an exec
    /// that never started answers then (255, as containerd reports an unknown exit).
    pub async fn discard(&self) {
        self.kill_if_running();
        let mut state = self.state.lock().await;
        if state.status == Status::Created {
            self.drop_prepared();
            state.status = Status::Stopped;
            let _ = self.exit_tx.send(Some(Exit {
                status: 255,
                at: SystemTime::now(),
            }));
        }
        let stdio = std::mem::take(&mut state.stdio);
        drop(state);
        stdio.close().await;
    }
}

async fn watch_exit(
    exec: Arc<ExecProcess>,
    exit: oneshot::Receiver<Exit>,
    publisher: Publisher,
    namespace: String,
) {
    let Ok(exit) = exit.await else { return };
    exec.reaped.store(true, Ordering::SeqCst);
    // Start holds the state lock until `/tasks/exec-started` is queued: taking it here keeps
    // `/tasks/exit` after it. The drain runs without it, so State and the rest answer.
    let outputs = exec.state.lock().await.stdio.take_outputs();
    stdio::drain(outputs).await;
    let mut state = exec.state.lock().await;
    state.status = Status::Stopped;
    publisher.publish(
        &namespace,
        "/tasks/exit",
        &containerd_shim_protos::events::task::TaskExit {
            container_id: exec.container_id.clone(),
            id: exec.id.clone(),
            pid: exec.pid() as u32,
            exit_status: exit.status,
            exited_at: protobuf::MessageField::some(crate::events::timestamp(exit.at)),
            ..Default::default()
        },
    );
    let _ = exec.exit_tx.send(Some(exit));
}

/// `ProcessInfo.info` of an exec's process in a Pids answer, as the stock shim fills it: a
/// `containerd.runc.v1.ProcessDetails { exec_id = 1 }`.
pub fn process_details(exec_id: &str) -> protobuf::well_known_types::any::Any {
    let mut value = Vec::new();
    {
        let mut out = protobuf::CodedOutputStream::vec(&mut value);
        // Writing into a Vec cannot fail.
        let _ = out.write_string(1, exec_id);
        let _ = out.flush();
    }
    protobuf::well_known_types::any::Any {
        type_url: "containerd.runc.v1.ProcessDetails".into(),
        value,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Arc<ExecProcess> {
        ExecProcess::new(
            "c1",
            ExecParams {
                exec_id: "e1".into(),
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                terminal: false,
                spec: Spec::default(),
            },
        )
    }

    #[tokio::test]
    async fn a_created_exec_cannot_be_signalled_and_deletes_without_running() {
        let exec = created();
        assert_eq!(exec.status().await, (Status::Created, None));
        assert!(matches!(exec.kill(9), Err(Failure::State(_))));
        let exit = exec.delete().await.unwrap();
        assert_eq!(exit.status, 0);
        assert_eq!(exec.status().await.0, Status::Stopped);
        // Wait answers once deleted.
        assert_eq!(exec.wait().await, exit);
    }

    #[tokio::test]
    async fn a_created_exec_left_when_its_container_goes_answers_wait() {
        let exec = created();
        let waiter = tokio::spawn({
            let exec = exec.clone();
            async move { exec.wait().await }
        });
        exec.discard().await;
        let exit = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("Wait answered")
            .unwrap();
        assert_eq!(exit.status, 255);
    }

    #[tokio::test]
    async fn a_running_exec_is_not_deleted_and_a_stopped_one_deletes_with_its_exit() {
        let exec = created();
        exec.state.lock().await.status = Status::Running;
        assert!(matches!(exec.delete().await, Err(Failure::State(_))));
        // Reaped with status 3 (what the exit watcher records).
        exec.state.lock().await.status = Status::Stopped;
        let exit = Exit {
            status: 3,
            at: SystemTime::now(),
        };
        let _ = exec.exit_tx.send(Some(exit));
        assert_eq!(exec.delete().await.unwrap(), exit);
        assert!(matches!(exec.kill(0), Err(Failure::Invalid(_))));
    }

    #[test]
    fn process_details_carry_the_exec_id_as_field_1() {
        let any = process_details("probe");
        assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
        // Tag 1, wire type 2 (length-delimited), length 5.
        assert_eq!(any.value, b"\x0a\x05probe");
    }
}
