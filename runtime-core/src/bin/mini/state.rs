//! The state directory (`--root`): one directory per container, holding `state.json`
//! (written atomically: a temporary file renamed over it), the init's start socket, and the
//! lock: an `flock` on the container's directory serializes the commands that change it.
//!
//! Safe against concurrent commands and against a crash of any command at any point:
//!
//! - A container's directory appears under its id only whole and locked: `create` makes it
//!   under a temporary name that no id can take (`#<pid>-<id>`), locks it, writes the first
//!   record, and renames it into place with `RENAME_NOREPLACE`; of two concurrent creates of
//!   one id exactly one rename succeeds, and nothing is ever removed on a guess. Temporary
//!   directories of dead creators are swept.
//! - Removal first renames the directory away (still locked), then deletes it.
//! - After `flock` a command checks that the path still names the directory it locked (not
//!   one deleted meanwhile, nor a new one made at the same path since); else it retries.
//! - The status is read from the kernel each time, plus what `start` recorded under the lock:
//!   the init is the process with the recorded pid *and* start time (`/proc/PID/stat`); gone,
//!   or a zombie, it is stopped; alive and not yet released by `start`, it is created. The
//!   container's own program can change neither.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use runtime_core::cgroups::CgroupManager;
use serde::{Deserialize, Serialize};

use crate::Result;

const STATE_FILE: &str = "state.json";
/// The listening socket the created init waits on for `start`.
pub const START_SOCKET: &str = "start.sock";
/// Starts the name of a directory being made or removed: no id contains it.
const TEMP_MARK: char = '#';

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
    /// `start` released the init (written under the lock once it exec'd the program).
    #[serde(default)]
    pub started: bool,
    /// RFC 3339 time of the create.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup; set once the helper has placed the init in it (a cgroup the
    /// helper refused, holding others' processes, is never recorded, so never killed).
    pub cgroup: Option<CgroupManager>,
    /// The cgroup the setup helper is about to make, recorded before it runs: a `create`
    /// that crashed before recording `cgroup` may have left it (empty, its init killed with
    /// the create), and `delete` removes what of it the helper recorded it made (the state
    /// directory's `cgroup.json`) if it is empty, never killing anything in it.
    #[serde(default)]
    pub cgroup_pending: Option<CgroupManager>,
    /// The spec's `poststart` and `poststop` hooks and its `ociVersion`, kept at create for
    /// `start` and `delete`: later changes to config.json must not affect the container.
    #[serde(default)]
    pub late_hooks: Option<LateHooks>,
}

/// What `start` and `delete` need of the spec to run its `poststart` and `poststop` hooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LateHooks {
    pub oci_version: String,
    pub hooks: oci_spec::runtime::Hooks,
}

impl LateHooks {
    /// The `poststart` and `poststop` hooks of `spec`; `None` when it has neither.
    pub fn of(spec: &oci_spec::runtime::Spec) -> Option<LateHooks> {
        let all = spec.hooks().as_ref()?;
        let mut hooks = oci_spec::runtime::Hooks::default();
        hooks.set_poststart(all.poststart().clone().filter(|h| !h.is_empty()));
        hooks.set_poststop(all.poststop().clone().filter(|h| !h.is_empty()));
        (hooks.poststart().is_some() || hooks.poststop().is_some()).then(|| LateHooks {
            oci_version: spec.version().clone(),
            hooks,
        })
    }
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

    /// The ids of every container directory, sorted (temporary directories are no ids).
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.path)
            .map_err(|e| format!("read {}: {e}", self.path.display()))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// A new name beside the containers' that no id can take, for this process's `what`.
    fn temp_dir(&self, what: &str, id: &str) -> PathBuf {
        temp_name(&self.path, what, id)
    }

    /// Makes the directory of a new container `id` holding `record`, locked. It appears
    /// under the id only whole (see the module's doc); an id already taken fails, unless it
    /// names a directory without a record and without a lock holder (left by an older
    /// create that crashed), which is replaced.
    pub fn create(&self, id: &str, record: &Record) -> Result<Container> {
        check_id(id)?;
        self.sweep();
        let temp = self.temp_dir("create", id);
        // A leftover of an earlier process with our pid.
        let _ = fs::remove_dir_all(&temp);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&temp)
            .map_err(|e| format!("create {}: {e}", temp.display()))?;
        let made = (|| {
            let lock = open_dir(&temp).map_err(|e| format!("open {}: {e}", temp.display()))?;
            flock(&lock, &temp, libc::LOCK_EX)?;
            let mut container = Container {
                dir: temp.clone(),
                lock,
                locked: true,
            };
            // Written in place: nobody reads the directory before the rename below makes it
            // the container's, so a temporary file and a rename (a new inode each: on ext4 the
            // search for a free one costs ~1 ms when many were deleted recently) buy nothing.
            container.write_new(record)?;
            let dir = self.dir(id);
            for _ in 0..2 {
                match rename_noreplace(&temp, &dir) {
                    Ok(()) => {
                        container.dir = dir;
                        return Ok(container);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        if !self.remove_if_abandoned(&dir) {
                            return Err(format!("container with id exists: {id}"));
                        }
                    }
                    Err(e) => return Err(format!("rename {} into place: {e}", dir.display())),
                }
            }
            Err(format!("container with id exists: {id}"))
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&temp);
        }
        made
    }

    /// Removes `dir` if no command holds its lock and it has no record (an empty directory
    /// an older create left); whether it did.
    fn remove_if_abandoned(&self, dir: &Path) -> bool {
        let Ok(lock) = open_dir(dir) else {
            // Gone meanwhile: the next rename may succeed.
            return true;
        };
        if flock(&lock, dir, libc::LOCK_EX | libc::LOCK_NB).is_err() || !names(dir, &lock) {
            return false;
        }
        if dir.join(STATE_FILE).exists() {
            return false;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        Container {
            dir: dir.to_path_buf(),
            lock,
            locked: true,
        }
        .remove_as(&self.temp_dir("abandoned", name))
        .is_ok()
    }

    /// Removes temporary directories whose process is gone and whose lock is free (a create
    /// or delete that crashed midway).
    fn sweep(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_MARK)) else {
                continue;
            };
            let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(|p| p == std::process::id() as i32 || proc_stat(p).is_some()) {
                continue;
            }
            let path = entry.path();
            if let Ok(lock) = open_dir(&path)
                && flock(&lock, &path, libc::LOCK_EX | libc::LOCK_NB).is_ok()
            {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }

    /// The existing container `id`, locked exclusively (waits for a running command).
    pub fn lock(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        Container::open(self.dir(id), true)
    }

    /// The existing container `id` without taking its lock (for `state`, `list`, `ps`).
    pub fn peek(&self, id: &str) -> Result<Container> {
        check_id(id)?;
        Container::open(self.dir(id), false)
    }
}

/// One container's directory; holds its lock while this value lives, when taken.
pub struct Container {
    pub dir: PathBuf,
    lock: File,
    locked: bool,
}

impl Container {
    fn open(dir: PathBuf, exclusive: bool) -> Result<Self> {
        loop {
            let lock = match open_dir(&dir) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err("container does not exist".into());
                }
                Err(e) => return Err(format!("open {}: {e}", dir.display())),
            };
            if !exclusive {
                return Ok(Self {
                    dir,
                    lock,
                    locked: false,
                });
            }
            flock(&lock, &dir, libc::LOCK_EX)?;
            // While we waited, the directory may have been removed (and maybe another made
            // at its path): the lock is good only on what the path names now.
            if names(&dir, &lock) {
                return Ok(Self {
                    dir,
                    lock,
                    locked: true,
                });
            }
            if !dir.exists() {
                return Err("container does not exist".into());
            }
        }
    }

    /// Whether another command holds this container's lock (a create in progress).
    fn busy(&self) -> bool {
        if self.locked {
            return false;
        }
        let path = &self.dir;
        if flock(&self.lock, path, libc::LOCK_SH | libc::LOCK_NB).is_err() {
            return true;
        }
        let _ = flock(&self.lock, path, libc::LOCK_UN);
        false
    }

    /// The record; `None` for a directory without one (an older create that crashed).
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

    /// Writes the first record of a directory no other command can see yet.
    fn write_new(&self, record: &Record) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(|e| format!("encode state: {e}"))?;
        let path = self.dir.join(STATE_FILE);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut file| file.write_all(&json))
            .map_err(|e| format!("write {}: {e}", path.display()))
    }

    pub fn start_socket(&self) -> PathBuf {
        self.dir.join(START_SOCKET)
    }

    /// The status, read from the kernel and the record (see the module's doc).
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
        if !record.started {
            return Status::Created;
        }
        if record.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        Status::Running
    }

    /// Removes the directory: renamed away first (so no half-removed directory is ever seen
    /// under the id), then deleted; the lock goes with the fd when this value drops.
    pub fn remove(self) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        let name = self
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let away = temp_name(parent, "delete", name);
        self.remove_as(&away)
    }

    fn remove_as(self, away: &Path) -> Result<()> {
        let _ = fs::remove_dir_all(away);
        fs::rename(&self.dir, away)
            .map_err(|e| format!("remove {}: rename: {e}", self.dir.display()))?;
        fs::remove_dir_all(away).map_err(|e| format!("remove {}: {e}", self.dir.display()))
    }
}

/// `<dir>/#<pid>-<n>-<what>-<id>`: unique in this process (`n` counts), and the pid tells
/// the sweep whether its maker still runs.
fn temp_name(dir: &Path, what: &str, id: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{TEMP_MARK}{}-{n}-{what}-{id}", std::process::id()))
}

fn open_dir(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

fn flock(file: &File, path: &Path, op: i32) -> Result<()> {
    loop {
        // SAFETY: flock on a directory fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(format!("lock {}: {err}", path.display()));
        }
    }
}

/// Whether `path` still names the directory `file` is open on.
fn names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(now), Ok(ours)) => (now.dev(), now.ino()) == (ours.dev(), ours.ino()),
        _ => false,
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both strings are NUL-terminated and live for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `path` through a new temporary file in its directory, renamed over it: a reader
/// sees the old or the new content, never a part. The temporary file is created with
/// `O_EXCL | O_NOFOLLOW`, so nothing planted at its name (a symlink) is written through.
/// Not fsync'ed (neither does runc): the state lives on /run, which a reboot clears, and an
/// fsync of each write cost a third of `create` on a disk-backed /run.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?
        .to_string_lossy();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = path.with_file_name(format!(
            ".{name}.{}.{nanos:x}{attempt}.tmp",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(format!("create {}: {e}", tmp.display())),
        }
    };
    let written = file
        .write_all(bytes)
        .map_err(|e| format!("write {}: {e}", tmp.display()))
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", path.display()))
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
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

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: 0,
            start_time: None,
            ready: false,
            started: false,
            created: "2026-01-01T00:00:00Z".into(),
            annotations: BTreeMap::new(),
            cgroup: None,
            cgroup_pending: None,
            late_hooks: None,
        }
    }

    /// A command waiting for the lock while the container is deleted and a new one of the
    /// same id made must not come back holding the lock of the deleted directory.
    #[test]
    fn a_lock_taken_is_on_the_directory_the_path_names_now() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        let first = root.create("c", &record("c")).unwrap();
        let waiter = std::thread::spawn({
            let path = tmp.path().to_path_buf();
            move || {
                let root = Root::open(&path).unwrap();
                let c = root.lock("c").unwrap();
                let ours = c.lock.metadata().unwrap();
                let now = fs::metadata(path.join("c")).unwrap();
                (ours.ino(), now.ino(), c.record().unwrap().is_some())
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Delete, then a new create of the id, both while the waiter waits on the old lock.
        let again = Root::open(tmp.path()).unwrap();
        // The old directory's lock stays held (a second fd of it) until the new one exists.
        let held = first.lock.try_clone().unwrap();
        first.remove().unwrap();
        let second = again.create("c", &record("c")).unwrap();
        drop(second);
        drop(held);
        let (locked, named, has_record) = waiter.join().unwrap();
        assert_eq!(locked, named, "the lock is on a deleted directory");
        assert!(has_record);
    }

    /// Two creates of one id: exactly one wins; the loser removes nothing of the winner's.
    #[test]
    fn concurrent_creates_of_one_id_do_not_remove_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let id = format!("c{round}");
            let wins: Vec<bool> = (0..4)
                .map(|_| {
                    let path = tmp.path().to_path_buf();
                    let id = id.clone();
                    std::thread::spawn(move || {
                        let root = Root::open(&path).unwrap();
                        root.create(&id, &record(&id)).map(drop).is_ok()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
            let root = Root::open(tmp.path()).unwrap();
            assert!(root.peek(&id).unwrap().record().unwrap().is_some());
        }
        // No temporary directory is left, and none is listed.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 20, "{names:?}");
    }

    #[test]
    fn an_abandoned_directory_without_record_is_replaced_and_temporaries_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("c")).unwrap();
        // A create that crashed midway, by a process that is gone (pid 0 never is ours).
        fs::create_dir(tmp.path().join("#999999999-create-c")).unwrap();
        let root = Root::open(tmp.path()).unwrap();
        assert_eq!(root.ids().unwrap(), vec!["c".to_string()]);
        let c = root.create("c", &record("c")).unwrap();
        assert!(c.record().unwrap().is_some());
        drop(c);
        assert!(root.create("c", &record("c")).is_err());
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c")]);
    }

    #[test]
    fn a_planted_symlink_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let target = tmp.path().join("init.pid");
        // The names a careless writer would use.
        for name in ["init.tmp", "init.pid.tmp", ".init.pid.tmp"] {
            std::os::unix::fs::symlink(&victim, tmp.path().join(name)).unwrap();
        }
        write_atomic(&target, b"42").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&target).unwrap(), "42");
        assert!(
            !fs::symlink_metadata(&target)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn our_own_start_time_is_read() {
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
