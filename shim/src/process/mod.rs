//! The processes of a container: its init (`init.rs`) and its execs (`exec.rs`). Each is a
//! [`Process`]: one state machine, created → running → stopped → deleted (the init also
//! paused with its container), holding the process's stdio or pty and, once it has ended, its
//! exit. Every request asks the state whether it is allowed; the exit reaches the state
//! through one watcher per process. How a process comes to run is what differs: the init is
//! built at Create and released at Start, an exec is built at Start in the running container.

pub mod exec;
pub mod init;

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::TaskExit;
use tokio::sync::{Mutex, oneshot, watch};

use crate::errors::Failure;
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio::{self, StdioCopies};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The init built and blocked before exec, or an exec recorded but not built yet.
    Created,
    Running,
    /// The init of a container frozen by Pause (v1 freezer, v2 cgroup.freeze) until Resume.
    Paused,
    /// Reaped and its output drained (or, an exec, never run): Wait answers.
    Stopped,
    /// Deleted: its stdio is closed. A Delete again answers the same exit.
    Deleted,
}

/// One process of a container, the init or an exec.
pub struct Process {
    pub container_id: String,
    /// Empty for the init, as in containerd's requests.
    pub exec_id: String,
    pub stdio: stdio::Paths,
    /// 0 until the process exists (an exec before Start).
    pid: AtomicI32,
    /// Set as soon as the process is reaped (before its output has drained): its pid may be
    /// reused from then on, so nothing may signal it.
    reaped: AtomicBool,
    /// A pidfd of the process, taken while it was an unreaped child: signals go through it,
    /// so they never reach whoever gets the pid after the reap.
    pidfd: OnceLock<OwnedFd>,
    /// Without a pidfd, whether signals go to the pid until the reap. The init's pidfd is
    /// taken while it waits for Start, alive for sure: failing there is the kernel's doing
    /// (no pidfd_open, no fd left). An exec's fails only once it is reaped.
    signal_by_pid: bool,
    state: Mutex<State>,
    /// The exit, once stopped. Set with `send_replace`, which keeps the value even while no
    /// Wait is subscribed.
    exit: watch::Sender<Option<Exit>>,
}

struct State {
    status: Status,
    stdio: StdioCopies,
}

/// How the launch of a Start ended, when it got as far as running a process.
pub enum Launch {
    /// The process runs the user's program.
    Running,
    /// The process was built but could not run the program: it ended with this exit.
    Failed(Exit, Failure),
}

/// How long a process that failed to start may take to be reaped.
const FAILED_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

impl Process {
    /// A created process; `copies` are its stdio if it already exists (the init).
    pub fn new(
        container_id: &str,
        exec_id: &str,
        stdio: stdio::Paths,
        copies: StdioCopies,
        signal_by_pid: bool,
    ) -> Process {
        Process {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            pid: AtomicI32::new(0),
            reaped: AtomicBool::new(false),
            pidfd: OnceLock::new(),
            signal_by_pid,
            state: Mutex::new(State {
                status: Status::Created,
                stdio: copies,
            }),
            exit: watch::channel(None).0,
        }
    }

    /// The id events and State name the process by: the exec id, or the container's.
    pub fn id(&self) -> &str {
        if self.exec_id.is_empty() {
            &self.container_id
        } else {
            &self.exec_id
        }
    }

    /// The process's pid; 0 before it exists.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Records the process once it exists, with a pidfd taken while it was an unreaped child.
    fn set_pid(&self, pid: i32, pidfd: Option<OwnedFd>) {
        if let Some(pidfd) = pidfd {
            let _ = self.pidfd.set(pidfd);
        }
        self.pid.store(pid, Ordering::SeqCst);
    }

    /// Its pidfd, if one could be taken: an exec joins the init's namespaces through it.
    pub fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.get()
    }

    pub fn is_reaped(&self) -> bool {
        self.reaped.load(Ordering::SeqCst)
    }

    /// The exit, once the process has stopped.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    pub async fn status(&self) -> (Status, Option<Exit>) {
        let state = self.state.lock().await;
        (state.status, self.exit())
    }

    /// Runs `change` with the state locked: Pause and Resume freeze or thaw the container
    /// under it.
    pub async fn change_status<T>(&self, change: impl AsyncFnOnce(&mut Status) -> T) -> T {
        let mut state = self.state.lock().await;
        change(&mut state.status).await
    }

    /// Start: allowed once, from Created. `launch` runs with the state locked and sets up
    /// the process's stdio; `on_started` (publishing `/tasks/start` or
    /// `/tasks/exec-started`) runs before the lock is released, so that the exit watcher's
    /// `/tasks/exit` comes after it. A launch that fails before it ran anything leaves the
    /// process created; one that fails after leaves it stopped with its exit, and no event.
    pub async fn start(
        &self,
        launch: impl AsyncFnOnce(&mut StdioCopies) -> Result<Launch, Failure>,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, Failure> {
        let mut state = self.state.lock().await;
        match state.status {
            Status::Created if self.is_reaped() => {
                return Err(Failure::State(format!(
                    "{self} exited before it was started"
                )));
            }
            Status::Created => {}
            status => {
                return Err(Failure::State(format!("{self} is {status:?}, not created")));
            }
        }
        match launch(&mut state.stdio).await? {
            Launch::Running => {}
            Launch::Failed(exit, failure) => {
                self.reaped.store(true, Ordering::SeqCst);
                state.status = Status::Stopped;
                self.exit.send_replace(Some(exit));
                return Err(failure);
            }
        }
        state.status = Status::Running;
        let pid = self.pid();
        on_started(pid);
        Ok(pid)
    }

    /// Waits for the reaper's report of the process's exit and marks the process reaped;
    /// `None` if the report can never come.
    pub async fn reaped(&self, exit: oneshot::Receiver<Exit>) -> Option<Exit> {
        let exit = exit.await.ok()?;
        self.reaped.store(true, Ordering::SeqCst);
        Some(exit)
    }

    /// After the reap: drains the process's output, then stops it. `report` gets its
    /// `/tasks/exit` with the state locked, and only then Wait answers. Start holds the lock
    /// until its own event is queued: taking it here keeps `/tasks/exit` after it. The drain
    /// runs without it, so State and the rest answer.
    pub async fn stop(&self, exit: Exit, report: impl FnOnce(TaskExit)) {
        let outputs = self.state.lock().await.stdio.take_outputs();
        stdio::drain(outputs).await;
        let mut state = self.state.lock().await;
        state.status = Status::Stopped;
        report(TaskExit {
            container_id: self.container_id.clone(),
            id: self.id().to_string(),
            pid: self.pid() as u32,
            exit_status: exit.status,
            exited_at: protobuf::MessageField::some(crate::events::timestamp(exit.at)),
            ..Default::default()
        });
        self.exit.send_replace(Some(exit));
    }

    /// Waits for the exit (output drained). A created exec that is never started waits
    /// until it is deleted or its container goes.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        match rx.wait_for(|e| e.is_some()).await.map(|e| *e) {
            Ok(Some(exit)) => exit,
            _ => Exit {
                status: 255,
                at: SystemTime::now(),
            },
        }
    }

    /// Signals the process with any signal 1–64.
    pub fn kill(&self, signal: u32) -> Result<(), Failure> {
        let sig = signal_number(signal)?;
        let pid = self.pid();
        if pid == 0 {
            return Err(Failure::State(format!("{self} is not started")));
        }
        if self.is_reaped() {
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
        if self.pid() != 0 && !self.is_reaped() {
            let _ = self.signal(libc::SIGKILL);
        }
    }

    /// Signals the process through its pidfd, which names that process only: once it is
    /// reaped the signal fails with ESRCH instead of reaching whoever got the pid next.
    fn signal(&self, sig: i32) -> Result<(), nix::errno::Errno> {
        match self.pidfd.get() {
            Some(pidfd) => pidfd_send_signal(pidfd, sig),
            None if self.signal_by_pid && self.pid() != 0 && !self.is_reaped() => {
                send_signal(self.pid(), sig)
            }
            None => Err(nix::errno::Errno::ESRCH),
        }
    }

    /// ResizePty: the process's terminal gets `width` columns and `height` rows.
    pub async fn resize_pty(&self, width: u32, height: u32) -> Result<(), Failure> {
        let (rows, cols) = terminal_size(width, height)?;
        let state = self.state.lock().await;
        if !state.stdio.is_terminal() {
            return Err(Failure::State(format!("{self} has no terminal to resize")));
        }
        state
            .stdio
            .resize(rows, cols)
            .map_err(|e| Failure::State(format!("resize terminal of {self}: {e}")))
    }

    /// CloseIO: the process reads EOF on its stdin.
    pub async fn close_stdin(&self) {
        self.state.lock().await.stdio.close_stdin();
    }

    /// Delete: refused while the process runs. A created process that exists (the init,
    /// blocked before exec) is killed and its exit awaited; one that does not (an exec never
    /// started) ends with status 0. Its stdio is closed.
    pub async fn delete(&self) -> Result<Exit, Failure> {
        let mut state = self.state.lock().await;
        match state.status {
            status @ (Status::Running | Status::Paused) => {
                let doing = if status == Status::Paused {
                    "paused"
                } else {
                    "running"
                };
                return Err(Failure::State(format!("{self} is {doing}; kill it first")));
            }
            Status::Created if self.pid() == 0 => {
                state.status = Status::Stopped;
                self.exit.send_replace(Some(Exit {
                    status: 0,
                    at: SystemTime::now(),
                }));
            }
            Status::Created => {
                let _ = self.signal(libc::SIGKILL);
            }
            Status::Stopped | Status::Deleted => {}
        }
        drop(state);
        let exit = self.wait().await;
        let mut state = self.state.lock().await;
        state.status = Status::Deleted;
        // Taken out: stopping a logging binary may take a while, and State must answer.
        let stdio = std::mem::take(&mut state.stdio);
        drop(state);
        stdio.close().await;
        Ok(exit)
    }

    /// Ends a process left when its container goes (Delete of the init). A Wait on an exec
    /// that never started answers then (255, as containerd reports an unknown exit).
    pub async fn discard(&self) {
        self.kill_if_running();
        let mut state = self.state.lock().await;
        if state.status == Status::Created {
            state.status = Status::Stopped;
            self.exit.send_replace(Some(Exit {
                status: 255,
                at: SystemTime::now(),
            }));
        }
        let stdio = std::mem::take(&mut state.stdio);
        drop(state);
        stdio.close().await;
    }
}

/// How errors name the process: `container ID` for the init, `exec ID of CONTAINER`.
impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exec_id.is_empty() {
            write!(f, "container {}", self.container_id)
        } else {
            write!(f, "exec {} of {}", self.exec_id, self.container_id)
        }
    }
}

/// What a process being built through the setup helper hands over on the way.
pub trait Pending: Send + 'static {
    /// What it hands over once ready.
    type Ready: Send + 'static;
    fn helper_pid(&self) -> Option<i32>;
    fn wait_pid(&mut self) -> runtime_core::Result<i32>;
    fn wait_ready(self) -> runtime_core::Result<Self::Ready>;
}

/// A process that the setup helper is building, and its exit once its pid is known.
type Subscribed = Option<(i32, oneshot::Receiver<Exit>)>;

/// Builds a process through the setup helper (`spawn`, the Launcher's), off the daemon's only
/// thread. Exits of unknown pids are kept until the process's pid is subscribed: it may die
/// before we learn it. `on_pid` runs as soon as the pid is known. Returns what the process
/// handed over (failures as `what` failed) and, if its pid was learnt, its pid and exit.
async fn spawn<P: Pending>(
    what: &'static str,
    monitor: &ExitMonitor,
    spawn: impl FnOnce() -> runtime_core::Result<P> + Send + 'static,
    on_pid: impl FnOnce(i32) + Send + 'static,
) -> (Result<P::Ready, Failure>, Subscribed) {
    let (pid_tx, pid_rx) = oneshot::channel();
    let m = monitor.clone();
    let window = monitor.spawn_window();
    let built = tokio::task::spawn_blocking(move || {
        let mut pending = spawn_helper(spawn)?;
        if let Some(helper) = pending.helper_pid() {
            m.ignore(helper);
        }
        let pid = pending.wait_pid()?;
        on_pid(pid);
        let _ = pid_tx.send((pid, m.subscribe(pid)));
        pending.wait_ready()
    })
    .await
    .map_err(|e| Failure::Internal(format!("{what} task: {e}")))
    .and_then(|r| r.map_err(|e| Failure::Runtime(what, e)));
    let subscribed = pid_rx.await.ok();
    drop(window);
    (built, subscribed)
}

/// Runs `spawn` (the Launcher's). std's spawn panics if our reaper took the status of a child
/// whose exec failed: that is an error here.
fn spawn_helper<T>(spawn: impl FnOnce() -> runtime_core::Result<T>) -> runtime_core::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(spawn)).unwrap_or_else(|_| {
        Err(runtime_core::Error::Setup(
            "the setup helper could not be executed".into(),
        ))
    })
}

/// Ends a process whose setup failed after its pid was known: it reports its error, then
/// exits, and nothing of it may remain (signalled only while it is still our unreaped child).
/// Its exit, if it came in time.
async fn end_failed(monitor: &ExitMonitor, subscribed: Subscribed) -> Option<Exit> {
    let (pid, exit) = subscribed?;
    let _ = monitor.signal_child(pid, libc::SIGKILL);
    tokio::time::timeout(FAILED_EXIT_TIMEOUT, exit)
        .await
        .ok()?
        .ok()
}

/// The highest signal number Linux has (`SIGRTMAX`, `_NSIG`).
const MAX_SIGNAL: u32 = 64;

/// A Kill request's signal: any of 1–64. nix's `Signal` cannot name the real-time signals
/// (`SIGRTMIN`..`SIGRTMAX`, 32–64) that systemd images stop with, so signals stay numbers.
pub fn signal_number(signal: u32) -> Result<i32, Failure> {
    if (1..=MAX_SIGNAL).contains(&signal) {
        Ok(signal as i32)
    } else {
        Err(Failure::Invalid(format!(
            "signal {signal} is not valid: Kill takes a signal number from 1 to {MAX_SIGNAL}"
        )))
    }
}

/// kill(2) with a signal number.
pub fn send_signal(pid: i32, signal: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// `pidfd_send_signal(2)`: the signal reaches the process the pidfd names, or fails.
fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), nix::errno::Errno> {
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

/// ResizePty's width and height as (rows, columns) of a terminal.
fn terminal_size(width: u32, height: u32) -> Result<(u16, u16), Failure> {
    match (u16::try_from(height), u16::try_from(width)) {
        (Ok(rows), Ok(cols)) => Ok((rows, cols)),
        _ => Err(Failure::Invalid(format!(
            "terminal size {width}x{height}: width and height go up to {}",
            u16::MAX
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created_exec() -> Process {
        Process::new(
            "c1",
            "e1",
            stdio::Paths::default(),
            StdioCopies::default(),
            false,
        )
    }

    #[tokio::test]
    async fn a_created_exec_cannot_be_signalled_and_deletes_without_running() {
        let exec = created_exec();
        assert_eq!(exec.status().await, (Status::Created, None));
        assert!(matches!(exec.kill(9), Err(Failure::State(_))));
        let exit = exec.delete().await.unwrap();
        assert_eq!(exit.status, 0);
        assert_eq!(exec.status().await.0, Status::Deleted);
        // Wait answers once deleted, and so does a second Delete.
        assert_eq!(exec.wait().await, exit);
        assert_eq!(exec.delete().await.unwrap(), exit);
    }

    #[tokio::test]
    async fn a_created_exec_left_when_its_container_goes_answers_wait() {
        let exec = std::sync::Arc::new(created_exec());
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
    async fn a_running_process_is_not_deleted_and_a_stopped_one_deletes_with_its_exit() {
        let exec = created_exec();
        exec.state.lock().await.status = Status::Running;
        assert!(matches!(exec.delete().await, Err(Failure::State(_))));
        // Reaped with status 3.
        let exit = Exit {
            status: 3,
            at: SystemTime::now(),
        };
        let mut published = None;
        exec.stop(exit, |event| published = Some(event)).await;
        let event = published.expect("/tasks/exit");
        assert_eq!((event.id.as_str(), event.exit_status), ("e1", 3));
        assert_eq!(exec.status().await, (Status::Stopped, Some(exit)));
        assert_eq!(exec.delete().await.unwrap(), exit);
        assert!(matches!(exec.kill(0), Err(Failure::Invalid(_))));
    }

    #[tokio::test]
    async fn a_process_starts_once_and_a_failed_launch_stops_it_with_its_exit() {
        let exec = created_exec();
        let exit = Exit {
            status: 127,
            at: SystemTime::now(),
        };
        let failed = exec
            .start(
                async |_| Ok(Launch::Failed(exit, Failure::Internal("no".into()))),
                |_| panic!("no event for a process that never ran"),
            )
            .await;
        assert!(matches!(failed, Err(Failure::Internal(_))));
        assert_eq!(exec.status().await, (Status::Stopped, Some(exit)));
        let again = exec.start(async |_| Ok(Launch::Running), |_| {}).await;
        match again {
            Err(Failure::State(msg)) => assert_eq!(msg, "exec e1 of c1 is Stopped, not created"),
            other => panic!("{other:?}"),
        }
    }

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
