//! The state directory (`--root`): one directory per container, holding `state.json`
//! (written atomically: a temporary file renamed over it), the init's start socket, and the
//! lock: an `flock` on the container's directory serializes the commands that change it.
//!
//! The status is never stored: it is read from the kernel each time, so a command that
//! crashed at any point leaves a state the next one understands. The init is the process
//! with the recorded pid *and* start time (`/proc/PID/stat`); gone, or a zombie, it is
//! stopped; still the setup helper's image (argv[1] is the helper marker), it is created.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use runtime_core::cgroups::CgroupManager;
use serde::{Deserialize, Serialize};

use crate::Result;

const STATE_FILE: &str = "state.json";
/// The listening socket the created init waits on for `start`.
pub const START_SOCKET: &str = "start.sock";

/// What `create` records of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The init's pid; 0 until the setup helper has cloned it.
    pub pid: i32,
    /// The init's start time (clock ticks after boot), which tells it from a later process
    /// with the same pid.
    pub start_time: Option<u64>,
    /// The init reported ready (blocked before exec).
    pub ready: bool,
    /// RFC 3339 time of the create.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup; set once the helper has placed the init in it (a cgroup the
    /// helper refused, holding others' processes, is never recorded, so never killed).
    pub cgroup: Option<CgroupManager>,
}

/// The runtime-spec's container status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The `--root` directory.
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// Opens `path`, creating it (mode 0700) if needed.
    pub fn open(path: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| format!("create state directory {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The ids of every container directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.path)
            .map_err(|e| format!("read {}: {e}", self.path.display()))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Makes the directory of a new container `id`, locked. A directory left by a create
    /// that crashed before recording anything (no state file, no lock held) is replaced.
    pub fn create(&self, id: &str) -> Result<Container> {
        let dir = self.dir(id);
        for _ in 0..2 {
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Container::lock(dir, id, true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let stale = Container::lock(dir.clone(), id, false)
                        .ok()
                        .filter(|c| !c.dir.join(STATE_FILE).exists());
                    match stale {
                        Some(c) => {
                            let _ = fs::remove_dir_all(&c.dir);
                        }
                        None => return Err(format!("container with id exists: {id}")),
                    }
                }
                Err(e) => return Err(format!("create {}: {e}", dir.display())),
            }
        }
        Err(format!("container with id exists: {id}"))
    }

    /// The existing container `id`, locked exclusively (waits for a running command).
    pub fn lock(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        Container::lock(self.dir(id), id, true)
    }

    /// The existing container `id` without taking its lock (for `state`, `list`, `ps`).
    pub fn peek(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        Container::lock(self.dir(id), id, false)
    }
}

/// One container's directory; holds its lock while this value lives, when taken.
pub struct Container {
    pub dir: PathBuf,
    lock: File,
    locked: bool,
}

impl Container {
    fn lock(dir: PathBuf, _id: &str, exclusive: bool) -> Result<Self> {
        let lock = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err("container does not exist".into());
            }
            Err(e) => return Err(format!("open {}: {e}", dir.display())),
        };
        if exclusive {
            // SAFETY: flock on a directory fd we own.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(format!(
                    "lock {}: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                ));
            }
            // Deleted while we waited for the lock.
            if !dir.exists() {
                return Err("container does not exist".into());
            }
        }
        Ok(Self {
            dir,
            lock,
            locked: exclusive,
        })
    }

    /// Whether another command holds this container's lock (a create in progress).
    fn busy(&self) -> bool {
        if self.locked {
            return false;
        }
        // SAFETY: flock on a directory fd we own; a shared lock taken here is released
        // right away.
        let fd = self.lock.as_raw_fd();
        if unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) } != 0 {
            return true;
        }
        // SAFETY: as above.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        false
    }

    /// The record; `None` for a create that crashed before writing it.
    pub fn record(&self) -> Result<Option<Record>> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("read {}: {e}", path.display())),
        }
    }

    /// Replaces the record atomically.
    pub fn write(&self, record: &Record) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(|e| format!("encode state: {e}"))?;
        write_atomic(&self.dir.join(STATE_FILE), &json)
    }

    pub fn start_socket(&self) -> PathBuf {
        self.dir.join(START_SOCKET)
    }

    /// The status, read from the kernel (see the module's doc).
    pub fn status(&self, record: Option<&Record>) -> Status {
        let Some(record) = record.filter(|r| r.pid > 0) else {
            return if self.busy() {
                Status::Creating
            } else {
                Status::Stopped
            };
        };
        if !init_alive(record) {
            return Status::Stopped;
        }
        if !record.ready {
            return if self.busy() {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if still_setting_up(record.pid) {
            return Status::Created;
        }
        if record.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        Status::Running
    }

    /// Removes the directory (the lock goes with the fd when this value drops).
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).map_err(|e| format!("remove {}: {e}", self.dir.display()))
    }
}

/// Writes `path` through a temporary file renamed over it: a reader sees the old or the new
/// content, never a part, also after the command crashed. Not fsync'ed (neither does runc):
/// the state lives on /run, which a reboot clears, and an fsync of each write cost a third
/// of `create` on a disk-backed /run.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(0o644)))
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", path.display()))
}

/// runc's rule for ids: letters, digits, `_ + - .`, not `.` or `..`; no path can hide in one.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid id format: {id}"))
    }
}

/// The recorded init is alive: same pid and start time, and not a zombie.
pub fn init_alive(record: &Record) -> bool {
    match proc_stat(record.pid) {
        Some((state, start)) => state != 'Z' && Some(start) == record.start_time,
        None => false,
    }
}

/// The state letter and start time (clock ticks after boot, field 22) of `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces and ')': field 3 onwards.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let start = rest.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The start time of `pid`, for the record.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// The init has not exec'd the user's program yet: it still runs the setup helper's image.
fn still_setting_up(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .nth(1)
            .is_some_and(|arg| arg == runtime_core::process::HELPER_ARG.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_name_a_path_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\n"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "my-container_1.2+x", "..."] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn our_own_process_is_alive_and_not_setting_up() {
        let pid = std::process::id() as i32;
        let start = start_time(pid);
        assert!(start.is_some());
        assert!(!still_setting_up(pid));
    }
}
