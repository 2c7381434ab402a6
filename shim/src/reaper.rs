//! The exit monitor: the daemon is a child subreaper and reaps every child in one place.
//! Exits are matched to subscribers by pid; an exit that arrives before anyone subscribed to
//! its pid (a container that dies during Create or Start) is kept until someone does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a process ended, as containerd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it.
    pub status: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn from_wait(status: WaitStatus) -> Option<(i32, Exit)> {
        let at = SystemTime::now();
        match status {
            WaitStatus::Exited(pid, code) => Some((
                pid.as_raw(),
                Exit {
                    status: code as u32,
                    at,
                },
            )),
            WaitStatus::Signaled(pid, sig, _) => Some((
                pid.as_raw(),
                Exit {
                    status: 128 + sig as u32,
                    at,
                },
            )),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<Exit>>,
    /// Exits nobody waited for, kept only while a process is being spawned (its pid not yet
    /// known to the caller). Other unclaimed exits (orphans re-parented to us) are dropped:
    /// kept, they would pile up and could be handed to a later process that reuses the pid.
    early: HashMap<i32, Exit>,
    spawning: usize,
}

/// While alive, exits of unknown pids are kept for [`ExitMonitor::subscribe`].
pub struct SpawnWindow {
    table: Arc<Mutex<Table>>,
}

impl Drop for SpawnWindow {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.spawning -= 1;
        if table.spawning == 0 {
            table.early.clear();
        }
    }
}

#[derive(Clone, Default)]
pub struct ExitMonitor {
    table: Arc<Mutex<Table>>,
}

impl ExitMonitor {
    /// Installs the SIGCHLD handler and the reaping task. Call before spawning children.
    pub fn start() -> std::io::Result<Self> {
        let monitor = ExitMonitor::default();
        let mut sigchld = signal(SignalKind::child())?;
        let m = monitor.clone();
        tokio::spawn(async move {
            loop {
                m.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(monitor)
    }

    /// Opens a window in which unclaimed exits are kept: hold it from before a process is
    /// spawned until its pid is subscribed.
    pub fn spawn_window(&self) -> SpawnWindow {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.spawning += 1;
        SpawnWindow {
            table: self.table.clone(),
        }
    }

    /// The exit of `pid`, whenever it happens (or already happened inside a spawn window).
    pub fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.early.remove(&pid) {
            Some(exit) => {
                let _ = tx.send(exit);
            }
            None => {
                table.waiting.insert(pid, tx);
            }
        }
        rx
    }

    /// Forgets `pid` (a helper whose exit nobody needs).
    pub fn ignore(&self, pid: i32) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.early.remove(&pid).is_none() {
            let (tx, _) = oneshot::channel();
            table.waiting.insert(pid, tx);
        }
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    if let Some((pid, exit)) = Exit::from_wait(status) {
                        self.record(pid, exit);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    log::warn!("waitpid: {err}");
                    return;
                }
            }
        }
    }

    fn record(&self, pid: i32, exit: Exit) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match table.waiting.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None if table.spawning > 0 => {
                table.early.insert(pid, exit);
            }
            None => log::debug!(
                "reaped {pid} (exit {}), which nobody waits for",
                exit.status
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_before_the_subscription_is_kept_during_a_spawn() {
        let m = ExitMonitor::default();
        let window = m.spawn_window();
        let exit = Exit {
            status: 7,
            at: SystemTime::now(),
        };
        m.record(42, exit);
        let mut rx = m.subscribe(42);
        drop(window);
        assert_eq!(rx.try_recv().unwrap(), exit);
    }

    #[test]
    fn unclaimed_exits_are_not_kept_for_a_later_process_with_the_same_pid() {
        let m = ExitMonitor::default();
        let at = SystemTime::now();
        // An orphan reaped outside any spawn, and one left over from a finished spawn.
        m.record(42, Exit { status: 1, at });
        let window = m.spawn_window();
        m.record(43, Exit { status: 2, at });
        drop(window);
        let _window = m.spawn_window();
        assert!(m.subscribe(42).try_recv().is_err());
        assert!(m.subscribe(43).try_recv().is_err());
    }

    #[test]
    fn killed_process_status_is_128_plus_signal() {
        let (_, exit) = Exit::from_wait(WaitStatus::Signaled(
            Pid::from_raw(5),
            nix::sys::signal::Signal::SIGKILL,
            false,
        ))
        .unwrap();
        assert_eq!(exit.status, 137);
    }

    #[test]
    fn an_ignored_pid_leaves_nothing_behind() {
        // The setup helper's pid is ignored inside the spawn window, before or after it exits.
        let m = ExitMonitor::default();
        let window = m.spawn_window();
        let at = SystemTime::now();
        m.ignore(9);
        m.record(9, Exit { status: 0, at });
        m.record(10, Exit { status: 0, at });
        m.ignore(10);
        drop(window);
        let t = m.table.lock().unwrap();
        assert!(t.early.is_empty() && t.waiting.is_empty() && t.spawning == 0);
    }
}
