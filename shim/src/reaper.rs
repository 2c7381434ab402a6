//! The exit monitor: the daemon is a child subreaper and reaps every child in one place.
//! Exits are matched to subscribers by pid; an exit that arrives before anyone subscribed to
//! its pid (a container that dies during Create or Start) is kept until someone does.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::errno::Errno;
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
    /// The exit of a raw wait status (as `waitpid(2)` returns it); `None` for a stop or
    /// continue. Decoded here rather than through nix's `WaitStatus`, which cannot name a
    /// real-time signal and fails on a process killed by one, after the kernel already
    /// handed over (and forgot) its status.
    pub fn from_raw_status(status: i32) -> Option<Exit> {
        let at = SystemTime::now();
        if libc::WIFEXITED(status) {
            Some(Exit {
                status: libc::WEXITSTATUS(status) as u32,
                at,
            })
        } else if libc::WIFSIGNALED(status) {
            Some(Exit {
                status: 128 + libc::WTERMSIG(status) as u32,
                at,
            })
        } else {
            None
        }
    }
}

/// One `waitpid(-1, WNOHANG)`: `Ok(None)` when no child has changed state.
fn reap_one() -> Result<Option<(i32, i32)>, Errno> {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`, a local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    match pid {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some((pid, status))),
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

    /// A pidfd of `pid`, a subscribed child not reaped yet. Children are reaped only with the
    /// table locked (see [`ExitMonitor::reap_all`]): while this holds the lock the pid cannot
    /// have been freed and reused, so the pidfd names our child, alive or a zombie.
    pub fn open_pidfd(&self, pid: i32) -> std::io::Result<OwnedFd> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.waiting.contains_key(&pid) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        drop(table);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pidfd_open returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Sends `signal` to `pid`, a subscribed child, only if it is not reaped yet: children
    /// are reaped only with the table locked, so under the lock the pid is still ours.
    pub fn signal_child(&self, pid: i32, signal: i32) -> std::io::Result<()> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.waiting.contains_key(&pid) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: kill takes plain integers and touches no memory of ours.
        let rc = unsafe { libc::kill(pid, signal) };
        drop(table);
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn reap_all(&self) {
        loop {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            match reap_one() {
                Ok(None) | Err(Errno::ECHILD) => return,
                Ok(Some((pid, status))) => {
                    if let Some(exit) = Exit::from_raw_status(status) {
                        record(&mut table, pid, exit);
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

    #[cfg(test)]
    fn record(&self, pid: i32, exit: Exit) {
        record(
            &mut self.table.lock().unwrap_or_else(|e| e.into_inner()),
            pid,
            exit,
        );
    }
}

fn record(table: &mut Table, pid: i32, exit: Exit) {
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
    fn killed_process_status_is_128_plus_signal_real_time_ones_too() {
        // Raw wait statuses: the signal in the low 7 bits (0x80 is the core-dump flag).
        assert_eq!(Exit::from_raw_status(9).unwrap().status, 137);
        assert_eq!(Exit::from_raw_status(37).unwrap().status, 165);
        assert_eq!(Exit::from_raw_status(64).unwrap().status, 192);
        assert_eq!(Exit::from_raw_status(6 | 0x80).unwrap().status, 134);
    }

    #[test]
    fn exit_code_is_the_high_byte_and_stops_are_not_exits() {
        assert_eq!(Exit::from_raw_status(7 << 8).unwrap().status, 7);
        // Stopped by SIGSTOP (0x7f in the low byte), continued (0xffff).
        assert!(Exit::from_raw_status((19 << 8) | 0x7f).is_none());
        assert!(Exit::from_raw_status(0xffff).is_none());
    }

    #[test]
    fn a_child_killed_by_a_real_time_signal_is_reaped_with_its_status() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // SAFETY: kill with plain integers.
        assert_eq!(unsafe { libc::kill(child.id() as i32, 40) }, 0);
        let status = child.wait().unwrap().into_raw();
        assert_eq!(Exit::from_raw_status(status).unwrap().status, 168);
    }

    #[test]
    fn a_pidfd_is_opened_only_for_a_subscribed_pid_not_yet_reaped() {
        let m = ExitMonitor::default();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Not subscribed: the monitor cannot vouch that the pid is still this child.
        assert!(m.open_pidfd(pid).is_err());
        let _rx = m.subscribe(pid);
        assert!(m.open_pidfd(pid).is_ok());
        // Reaped (recorded): the pid may be reused from now on.
        m.record(
            pid,
            Exit {
                status: 0,
                at: SystemTime::now(),
            },
        );
        assert!(m.open_pidfd(pid).is_err());
        let _ = child.kill();
        let _ = child.wait();
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
