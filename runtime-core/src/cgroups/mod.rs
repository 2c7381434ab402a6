//! cgroups: placement by `linux.cgroupsPath` and resource limits, on v1, hybrid and v2 hosts.
//!
//! The host layout is read from `/proc/self/mountinfo` ([`discover`]): every v1 hierarchy with
//! its controllers, and the cgroup2 mount if any. A [`CgroupManager`] is one container's cgroup:
//! one directory per v1 hierarchy plus one in the cgroup2 hierarchy (hybrid and unified hosts).
//! Limits go to the v1 controller files ([`v1`]) on legacy and hybrid hosts, and to the cgroup2
//! files ([`v2`]) on unified hosts. Only the container's own path is created or removed; parents
//! may be shared with other containers and are left in place.

pub mod devices_bpf;
pub mod stats;
pub mod systemd;
mod tree;
pub mod v1;
pub mod v2;

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::{Error, Result};

pub use v2::shares_to_weight;

/// Where cgroup filesystems are mounted on a standard host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// How long `kill_all(SIGKILL)` and `destroy` wait for exiting processes to leave the cgroup.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
const SETTLE_STEP: Duration = Duration::from_millis(20);

/// The v1 controllers the kernel knows; other words in a v1 mount's options are mount flags.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// cgroup v1 hierarchies only.
    Legacy,
    /// v1 controllers plus a cgroup2 mount (at `unified/`) without controllers.
    Hybrid,
    /// cgroup v2 only.
    Unified,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The controllers bound to it (`cpu`, `cpuacct`, `name=systemd`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (mountinfo's root field): `/` unless the mount is a
    /// bind of a sub-cgroup or was made inside a cgroup namespace.
    pub root: PathBuf,
}

impl Hierarchy {
    /// Whether `controller` (e.g. `memory`) is bound to this hierarchy.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Every cgroup hierarchy mounted below a root, and the layout they form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    pub layout: Layout,
    /// v1 hierarchies, one entry per hierarchy (a hierarchy mounted twice is listed once).
    pub v1: Vec<Hierarchy>,
    /// The cgroup2 mount, if any.
    pub unified: Option<Hierarchy>,
}

/// Detects the layout under `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Result<Layout> {
    Ok(discover(root)?.layout)
}

/// Finds the cgroup hierarchies mounted at or below `root` in `/proc/self/mountinfo`.
pub fn discover(root: &Path) -> Result<Hierarchies> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    parse_mountinfo(&text, root)
}

/// Parses mountinfo text (`proc_pid_mountinfo(5)`) into the cgroup hierarchies mounted at or
/// below `root`. Pure, so layouts of other hosts can be tested from their text.
pub fn parse_mountinfo(text: &str, root: &Path) -> Result<Hierarchies> {
    let mut v1: Vec<Hierarchy> = Vec::new();
    let mut unified: Option<Hierarchy> = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let fstype = right[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mountinfo(left[4]));
        if !mount_point.starts_with(root) {
            continue;
        }
        let cgroup_root = PathBuf::from(unescape_mountinfo(left[3]));
        if fstype == "cgroup2" {
            // The first mount wins: later ones are binds of the same hierarchy.
            unified.get_or_insert(Hierarchy {
                controllers: Vec::new(),
                mount_point,
                root: cgroup_root,
            });
            continue;
        }
        let controllers: Vec<String> = right[2]
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        v1.push(Hierarchy {
            controllers,
            mount_point,
            root: cgroup_root,
        });
    }
    let layout = match (v1.is_empty(), unified.is_some()) {
        (false, true) => Layout::Hybrid,
        (false, false) => Layout::Legacy,
        (true, true) => Layout::Unified,
        (true, false) => {
            return Err(Error::cgroup(
                root,
                "no cgroup or cgroup2 filesystem is mounted here (from /proc/self/mountinfo)",
            ));
        }
    };
    Ok(Hierarchies {
        layout,
        v1,
        unified,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroups a process is in (`/proc/<pid>/cgroup`), per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCgroups {
    /// v1 entries: the hierarchy's controllers and the process's cgroup in it.
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The process's cgroup in the cgroup2 hierarchy (the `0::` line).
    pub unified: Option<PathBuf>,
}

impl ProcessCgroups {
    /// Parses `/proc/<pid>/cgroup` text: `hierarchy-id:controller-list:path` lines.
    pub fn parse(text: &str) -> Result<Self> {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::cgroup(
                    "/proc/self/cgroup",
                    format!("malformed line {line:?}"),
                ));
            };
            if id == "0" && controllers.is_empty() {
                out.unified = Some(PathBuf::from(path));
            } else {
                let list = controllers.split(',').map(str::to_string).collect();
                out.v1.push((list, PathBuf::from(path)));
            }
        }
        Ok(out)
    }

    /// The calling process's cgroups.
    pub fn of_self() -> Result<Self> {
        let path = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::parse(&text)
    }

    /// The process's cgroup in the v1 hierarchy that carries `controllers`.
    fn v1_path(&self, controllers: &[String]) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(list, _)| controllers.iter().any(|c| list.contains(c)))
            .map(|(_, p)| p.as_path())
    }
}

/// `linux.cgroupsPath` after validation, without leading `/` and without `.`/`..` components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    /// Below each hierarchy's root (the spec's path started with `/`, or was absent).
    Absolute(PathBuf),
    /// Below the calling process's own cgroup in each hierarchy (as runc does).
    Relative(PathBuf),
}

/// Validates `linux.cgroupsPath` for the cgroupfs driver (`None` means `/<id>`).
///
/// The systemd form `slice:prefix:name` is, for this driver, what runc's cgroupfs driver
/// makes of it: a relative path of one component that happens to contain colons (containerd
/// 1.6/1.7 build that form for every pod whose parent ends in `.slice`, whatever the host
/// runs). [`choose_driver`] decides when it goes to the systemd driver instead.
///
/// Fails for `..` components that would leave the hierarchy root (absolute) or the caller's
/// own cgroup (relative), and for a path naming that root or own cgroup itself.
pub fn resolve_cgroups_path(id: &str, cgroups_path: Option<&Path>) -> Result<CgroupPath> {
    const FIELD: &str = "linux.cgroupsPath";
    let Some(path) = cgroups_path else {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(Error::invalid(
                "id",
                format!("{id:?} cannot name a cgroup (linux.cgroupsPath is not set)"),
            ));
        }
        return Ok(CgroupPath::Absolute(PathBuf::from(id)));
    };
    let text = path.to_string_lossy();
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => clean.push(c),
            Component::ParentDir => {
                if !clean.pop() {
                    return Err(Error::invalid(
                        FIELD,
                        format!("{text:?}: \"..\" would leave the cgroup hierarchy"),
                    ));
                }
            }
            Component::Prefix(_) => {
                return Err(Error::invalid(FIELD, format!("{text:?}: not a Linux path")));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(Error::invalid(
            FIELD,
            format!("{text:?} names a hierarchy root or the caller's own cgroup"),
        ));
    }
    Ok(if path.is_absolute() {
        CgroupPath::Absolute(clean)
    } else {
        CgroupPath::Relative(clean)
    })
}

/// Which code places the container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// mini creates and removes the directories itself (`linux.cgroupsPath` is a path).
    Cgroupfs,
    /// A transient systemd scope (`linux.cgroupsPath` is `slice:prefix:name`).
    Systemd,
}

/// Whether `linux.cgroupsPath` has the systemd form `slice:prefix:name`.
pub fn is_systemd_form(path: &Path) -> bool {
    !path.is_absolute() && path.to_string_lossy().split(':').count() == 3
}

/// The driver for a container: systemd when the runtime options ask for it
/// (`systemd_requested`, runc's and mini's `SystemdCgroup`), or for a `slice:prefix:name`
/// path on a host where systemd runs (`systemd_running`); cgroupfs otherwise, where that form
/// is a literal relative path as runc's cgroupfs driver takes it. Asking for systemd on a
/// host without it fails naming the option.
pub fn choose_driver(
    cgroups_path: Option<&Path>,
    systemd_requested: bool,
    systemd_running: bool,
) -> Result<Driver> {
    if systemd_requested && !systemd_running {
        return Err(Error::invalid(
            "SystemdCgroup",
            format!(
                "SystemdCgroup = true in the runtime options selects the systemd cgroup driver, \
                 but systemd is not running on this host (no {}); set SystemdCgroup = false",
                systemd::RUNNING_MARKER
            ),
        ));
    }
    let slice_form = cgroups_path.is_some_and(is_systemd_form);
    Ok(if systemd_requested || (slice_form && systemd_running) {
        Driver::Systemd
    } else {
        Driver::Cgroupfs
    })
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupDir {
    /// The hierarchy's controllers (empty for cgroup2).
    pub controllers: Vec<String>,
    /// The hierarchy's mount point; creation starts below it.
    pub mount_point: PathBuf,
    /// The container's cgroup directory.
    pub dir: PathBuf,
}

impl CgroupDir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The container's dir in the v1 hierarchy that carries `controller`.
pub(crate) fn v1_dir<'a>(dirs: &'a [CgroupDir], controller: &str) -> Option<&'a Path> {
    dirs.iter()
        .find(|d| d.has(controller))
        .map(|d| d.dir.as_path())
}

/// Writes `value` to `dir/file`; the error names the directory, the file and the value.
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    // No O_CREAT: a missing file means the kernel lacks the knob, which must be an error,
    // not a new regular file in a fixture or a confusing EACCES on cgroupfs. O_TRUNC is
    // ignored by cgroupfs and keeps a fixture file holding exactly the last value written.
    let result = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|e| Error::cgroup(dir, format!("write {file}={value}: {}", describe(&e))))
}

/// Reads `dir/file`, trimmed.
pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String> {
    fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::cgroup(dir, format!("read {file}: {}", describe(&e))))
}

/// The errno's plain description ("Device or resource busy"), as the kernel's users know it.
fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// The device rules every container gets, whatever its spec holds (no `linux.resources`,
/// no `devices`): deny all, then the spec's `linux.resources.devices`, then runc's default
/// allow list — mknod of any node, the standard character devices, ptys and tun — and rwm on
/// each of the spec's `linux.devices`. The defaults come after the spec's rules, as runc
/// orders them: CRI's specs deny everything and rely on them (`ctr` lists them itself).
pub fn with_default_devices(
    resources: Option<&LinuxResources>,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let rule = |typ: T, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_string()));
        r
    };
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all
        .set_allow(false)
        .set_access(Some("rwm".to_string()));
    let mut all = vec![deny_all];
    all.extend(
        resources
            .and_then(|r| r.devices().clone())
            .unwrap_or_default(),
    );
    all.push(rule(T::C, None, None, "m"));
    all.push(rule(T::B, None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 8),
        (1, 7),
        (5, 0),
        (1, 5),
        (1, 9),
        (5, 2),
        (10, 200),
    ] {
        all.push(rule(T::C, Some(major), Some(minor), "rwm"));
    }
    all.push(rule(T::C, Some(136), None, "rwm"));
    for d in devices {
        let typ = match d.typ() {
            T::B => T::B,
            T::C | T::U => T::C,
            // FIFOs are not covered by the device cgroup.
            T::P | T::A => continue,
        };
        all.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    let mut out = resources.cloned().unwrap_or_default();
    out.set_devices(Some(all));
    out
}

/// One container's cgroup, in every hierarchy the host has.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CgroupManager {
    layout: Layout,
    /// One entry per v1 hierarchy (legacy and hybrid hosts).
    v1: Vec<CgroupDir>,
    /// The cgroup2 directory (hybrid and unified hosts).
    unified: Option<CgroupDir>,
    /// With the systemd driver: the transient scope whose directory `unified` is. systemd
    /// creates and removes that directory; limits go to its files as with cgroupfs.
    #[serde(default)]
    systemd: Option<systemd::Unit>,
    /// The cgroupfs directories the setup helper made for this container, parents first
    /// ([`CgroupManager::with_made`]): only these are ever removed. A directory the spec
    /// named that existed before stays, as do parents shared with others. `None` when not
    /// known (a manager built rather than read from the helper's record, or a record written
    /// before this was kept): [`CgroupManager::destroy`] then removes the container's
    /// directories, [`CgroupManager::remove_if_unused`] nothing.
    #[serde(default)]
    made: Option<Vec<PathBuf>>,
}

impl CgroupManager {
    /// The cgroup for container `id` at `cgroups_path` (the spec's `linux.cgroupsPath`;
    /// `None` means `/<id>`), under `/sys/fs/cgroup`, with the driver [`choose_driver`]
    /// picks for this host; `systemd_requested` is the runtime options' `SystemdCgroup`.
    pub fn for_container(
        id: &str,
        cgroups_path: Option<&Path>,
        systemd_requested: bool,
    ) -> Result<Self> {
        match choose_driver(cgroups_path, systemd_requested, systemd::running())? {
            Driver::Cgroupfs => Self::new(id, cgroups_path),
            Driver::Systemd => Self::systemd(Path::new(DEFAULT_ROOT), id, cgroups_path),
        }
    }

    /// The cgroupfs driver's cgroup for container `id` at `cgroups_path` (the spec's
    /// `linux.cgroupsPath`; `None` means `/<id>`), under `/sys/fs/cgroup`.
    pub fn new(id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        Self::with_root(Path::new(DEFAULT_ROOT), id, cgroups_path)
    }

    /// As [`CgroupManager::new`], with the hierarchies mounted below another root.
    pub fn with_root(root: &Path, id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        let hierarchies = discover(root)?;
        let own = ProcessCgroups::of_self()?;
        Self::with_hierarchies(&hierarchies, &own, id, cgroups_path)
    }

    /// As [`CgroupManager::new`], for given hierarchies and caller cgroups (relative paths are
    /// resolved against `own`). Tests use it with fixture directories.
    pub fn with_hierarchies(
        hierarchies: &Hierarchies,
        own: &ProcessCgroups,
        id: &str,
        cgroups_path: Option<&Path>,
    ) -> Result<Self> {
        let path = resolve_cgroups_path(id, cgroups_path)?;
        let v1 = hierarchies
            .v1
            .iter()
            .map(|h| {
                let dir = dir_in(h, own.v1_path(&h.controllers), &path)?;
                Ok(CgroupDir {
                    controllers: h.controllers.clone(),
                    mount_point: h.mount_point.clone(),
                    dir,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let unified = match &hierarchies.unified {
            Some(h) => Some(CgroupDir {
                controllers: Vec::new(),
                mount_point: h.mount_point.clone(),
                dir: dir_in(h, own.unified.as_deref(), &path)?,
            }),
            None => None,
        };
        Ok(Self {
            layout: hierarchies.layout,
            v1,
            unified,
            systemd: None,
            made: None,
        })
    }

    /// The systemd driver's cgroup for container `id`: the scope [`systemd::Unit`] names for
    /// `cgroups_path`, in the cgroup2 hierarchy under `root`. cgroup v2 (unified) hosts only.
    pub fn systemd(root: &Path, id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        let hierarchies = discover(root)?;
        Self::systemd_with_hierarchies(&hierarchies, id, cgroups_path)
    }

    /// As [`CgroupManager::systemd`], for given hierarchies (tests use fixture layouts).
    pub fn systemd_with_hierarchies(
        hierarchies: &Hierarchies,
        id: &str,
        cgroups_path: Option<&Path>,
    ) -> Result<Self> {
        let unit = systemd::Unit::for_container(id, cgroups_path)?;
        let h = match (&hierarchies.unified, hierarchies.layout) {
            (Some(h), Layout::Unified) => h,
            _ => {
                return Err(Error::invalid(
                    "SystemdCgroup",
                    format!(
                        "the systemd cgroup driver (asked for by SystemdCgroup = true or a \
                         slice:prefix:name linux.cgroupsPath) works on cgroup v2 (unified) \
                         hosts only; this host's layout is {:?}",
                        hierarchies.layout
                    ),
                ));
            }
        };
        Ok(Self {
            layout: Layout::Unified,
            v1: Vec::new(),
            unified: Some(CgroupDir {
                controllers: Vec::new(),
                mount_point: h.mount_point.clone(),
                dir: h.mount_point.join(&unit.cgroup),
            }),
            systemd: Some(unit),
            made: None,
        })
    }

    /// The transient scope, when the systemd driver places this container.
    pub fn systemd_unit(&self) -> Option<&systemd::Unit> {
        self.systemd.as_ref()
    }

    /// With the systemd driver: starts the container's scope holding `pid` (systemd moves it
    /// there), with the properties of `resources` systemd knows, and waits until its cgroup
    /// exists. [`CgroupManager::apply`] then writes the limits to the scope's files. Without
    /// the systemd driver this does nothing.
    pub fn start_scope(&self, pid: i32, resources: &LinuxResources) -> Result<()> {
        match (&self.systemd, self.unified_path()) {
            (Some(unit), Some(dir)) => systemd::start(unit, dir, pid, resources),
            _ => Ok(()),
        }
    }

    /// With the systemd driver: this manager with the identity (`InvocationID`) of the scope
    /// that holds the container's init `pid`, just placed and not yet running anything of the
    /// spec. [`CgroupManager::kill_all`] and [`CgroupManager::destroy`] act on a scope only
    /// when it still has that identity. Without the systemd driver: a plain copy.
    pub fn identified(&self, pid: i32) -> Result<Self> {
        let mut out = self.clone();
        if let Some(unit) = &mut out.systemd {
            unit.invocation = Some(systemd::invocation(unit, pid)?);
        }
        Ok(out)
    }

    /// Whether the cgroup still is the one the container got: always with cgroupfs; with
    /// the systemd driver, when the scope has the identity [`CgroupManager::identified`]
    /// recorded (a scope started again under the name since is someone else's).
    pub fn is_ours(&self) -> Result<bool> {
        match &self.systemd {
            None => Ok(true),
            Some(unit) => systemd::is_current(unit),
        }
    }

    /// Records this manager (driver, directories, scope and its identity) at `path` as JSON:
    /// written to a temporary file and renamed, so a reader sees a whole record or none.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::cgroup(path, format!("encode the cgroup record: {e}")))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io("write", path, e)
            })
    }

    /// Reads a record written by [`CgroupManager::save`], for acting on it: `None` when
    /// there is none. Each of its directories must be a cgroup strictly below the mount point
    /// of one of this host's cgroup hierarchies (`/proc/self/mountinfo`), with that
    /// hierarchy's controllers: whoever could write the record (the bundle) cannot make
    /// `delete` empty and remove anything else. A systemd scope in it must be a valid unit
    /// of mini's ([`systemd::Unit::validate`]) whose directory is the record's cgroup2
    /// directory.
    pub fn load_on_host(path: &Path) -> Result<Option<Self>> {
        let Some(manager) = Self::load(path)? else {
            return Ok(None);
        };
        manager.check_hierarchies(&discover(Path::new(DEFAULT_ROOT))?, path)?;
        Ok(Some(manager))
    }

    /// Fails unless each directory's mount point and controllers are those of one of
    /// `host`'s hierarchies (`record` names the record in the error).
    fn check_hierarchies(&self, host: &Hierarchies, record: &Path) -> Result<()> {
        for d in self.dirs() {
            let mounted = match d.controllers.is_empty() {
                true => host.unified.iter().any(|h| h.mount_point == d.mount_point),
                false => host
                    .v1
                    .iter()
                    .any(|h| h.mount_point == d.mount_point && h.controllers == d.controllers),
            };
            if !mounted {
                return Err(Error::cgroup(
                    record,
                    format!(
                        "the record's mount point {} (controllers {:?}) is not one of this \
                         host's cgroup hierarchies",
                        d.mount_point.display(),
                        d.controllers
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads a record written by [`CgroupManager::save`] and checks its form (what
    /// [`CgroupManager::load_on_host`] checks, but against the record's own mount points):
    /// `None` when there is none.
    fn load(path: &Path) -> Result<Option<Self>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let manager: Self = serde_json::from_slice(&bytes)
            .map_err(|e| Error::cgroup(path, format!("decode the cgroup record: {e}")))?;
        // Every directory strictly below its hierarchy's mount point, with no `..`: what
        // `delete` empties and removes is a container's cgroup, never a hierarchy's root or
        // a path that climbs out of it.
        for d in manager.dirs() {
            let plain = d.dir.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
            if !plain || !d.dir.starts_with(&d.mount_point) || d.dir == d.mount_point {
                return Err(Error::cgroup(
                    path,
                    format!(
                        "the record's directory {} is not a cgroup below {}",
                        d.dir.display(),
                        d.mount_point.display()
                    ),
                ));
            }
        }
        // What it made lies on the way from a mount point to the container's directory.
        for made in manager.made.iter().flatten() {
            let on_the_way = manager
                .dirs()
                .any(|d| levels_below(&d.mount_point, &d.dir).contains(made));
            if !on_the_way {
                return Err(Error::cgroup(
                    path,
                    format!(
                        "the record's made directory {} is not on the way to its cgroup",
                        made.display()
                    ),
                ));
            }
        }
        if let Some(unit) = &manager.systemd {
            unit.validate()?;
            let dir_matches = manager
                .unified
                .as_ref()
                .is_some_and(|d| d.dir == d.mount_point.join(&unit.cgroup));
            if !dir_matches || !manager.v1.is_empty() {
                return Err(Error::cgroup(
                    path,
                    format!("the record's directories are not those of {}", unit.name),
                ));
            }
        }
        Ok(Some(manager))
    }

    /// The host layout this manager works on.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The container's directory in the v1 hierarchy carrying `controller` (e.g. `memory`).
    pub fn v1_path(&self, controller: &str) -> Option<&Path> {
        v1_dir(&self.v1, controller)
    }

    /// The container's directory in the cgroup2 hierarchy (hybrid and unified hosts).
    pub fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|d| d.dir.as_path())
    }

    /// Every directory of the container's cgroup, v1 hierarchies first.
    pub fn dirs(&self) -> impl Iterator<Item = &CgroupDir> {
        self.v1.iter().chain(self.unified.iter())
    }

    /// The cgroup an exec joins with runc's `exec --cgroup`: each of `specs` is
    /// `[CONTROLLER[,CONTROLLER…]:]PATH`, a sub-cgroup of the container's that must exist.
    /// A spec without controllers applies to every hierarchy a spec with them does not name
    /// (on a unified host only that form makes sense: the cgroup2 directory has no
    /// controllers of its own name). A hierarchy no spec applies to keeps the container's
    /// directory. The path is relative and stays below the container's cgroup (no `..`).
    pub fn for_exec_in(&self, specs: &[String]) -> Result<CgroupManager> {
        const FIELD: &str = "--cgroup";
        let mut default: Option<PathBuf> = None;
        let mut named: Vec<(Vec<String>, PathBuf)> = Vec::new();
        for spec in specs {
            let (controllers, path) = match spec.split_once(':') {
                Some((c, p)) => (c.split(',').map(str::to_string).collect::<Vec<_>>(), p),
                None => (Vec::new(), spec.as_str()),
            };
            let rel = PathBuf::from(path);
            if path.is_empty()
                || !rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::invalid(
                    FIELD,
                    format!(
                        "{spec:?}: the sub-cgroup must be a relative path below the container's cgroup"
                    ),
                ));
            }
            if controllers.is_empty() || controllers.iter().all(String::is_empty) {
                default = Some(rel);
            } else {
                named.push((controllers, rel));
            }
        }
        let mut out = self.clone();
        out.systemd = None;
        out.made = None;
        for d in out.v1.iter_mut().chain(out.unified.iter_mut()) {
            let sub = named
                .iter()
                .find(|(controllers, _)| controllers.iter().any(|c| d.has(c)))
                .map(|(_, p)| p)
                .or(default.as_ref());
            if let Some(sub) = sub {
                let dir = d.dir.join(sub);
                if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                    return Err(Error::invalid(
                        FIELD,
                        format!("sub-cgroup {} does not exist", dir.display()),
                    ));
                }
                d.dir = dir;
            }
        }
        for (controllers, _) in &named {
            for c in controllers {
                if !self.v1.iter().any(|d| d.has(c)) {
                    return Err(Error::invalid(
                        FIELD,
                        format!("no cgroup v1 hierarchy with the controller {c:?} on this host"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Creates the cgroup directories (and missing parents). On v1 `cpuset`, empty
    /// `cpuset.cpus`/`cpuset.mems` along the path are copied from the parent (a task cannot
    /// join a cpuset without them). On a unified host, the controllers available at each
    /// parent are enabled in its `cgroup.subtree_control`. Returns the directories this call
    /// created (parents first), for [`CgroupManager::remove_created`]; on failure they are
    /// removed again.
    pub fn create(&self) -> Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        match self.create_inner(&mut created) {
            Ok(()) => Ok(created),
            Err(e) => {
                Self::remove_created(&created);
                Err(e)
            }
        }
    }

    /// This manager, recording `made` (what [`CgroupManager::create`] returned) as the
    /// directories it made: the only ones [`CgroupManager::remove_if_unused`] and
    /// [`CgroupManager::destroy`] may remove.
    pub fn with_made(&self, made: Vec<PathBuf>) -> Self {
        Self {
            made: Some(made),
            ..self.clone()
        }
    }

    /// The directories [`CgroupManager::create`] would make now (those missing, parents
    /// first): recorded before it runs, so that a helper killed right after a `mkdir` leaves
    /// nothing unrecorded.
    pub fn missing(&self) -> Vec<PathBuf> {
        self.dirs()
            .flat_map(|d| levels_below(&d.mount_point, &d.dir))
            .filter(|level| !level.exists())
            .collect()
    }

    /// This manager with the directories the setup helper recorded it made in `record` (its
    /// cgroup record, [`CgroupManager::with_made`]), when the record names this manager's
    /// directories; this manager unchanged (nothing known made) without such a record. The
    /// directories are this manager's own, found on this host: only the record's form and
    /// its made list (each on the way to them) are checked, no mount table is read.
    pub fn with_recorded_made(&self, record: &Path) -> Result<Self> {
        Ok(match Self::load(record)? {
            Some(recorded) if recorded.dirs().eq(self.dirs()) => match recorded.made {
                Some(made) => self.with_made(made),
                None => self.clone(),
            },
            _ => self.clone(),
        })
    }

    /// Whether the setup helper recorded that it made directories for this container.
    pub fn made_any(&self) -> bool {
        self.made.as_ref().is_some_and(|m| !m.is_empty())
    }

    /// Whether `dir`, one of the container's directories, may be removed: one the setup
    /// helper made, or any when that is not known (`made` is `None`).
    fn may_remove(&self, dir: &Path) -> bool {
        self.made
            .as_ref()
            .is_none_or(|made| made.iter().any(|m| m == dir))
    }

    /// The first sub-cgroup of the container's cgroup, in any hierarchy. At create there must
    /// be none: Delete removes everything below the cgroup (a container with its own cgroup
    /// namespace and a writable cgroupfs makes sub-cgroups), so what was there before would
    /// be killed and removed with it.
    pub fn sub_cgroup(&self) -> Result<Option<PathBuf>> {
        for d in self.dirs() {
            if let Some(sub) = sub_cgroups(&d.dir)?.into_iter().next() {
                return Ok(Some(sub));
            }
        }
        Ok(None)
    }

    /// Removes directories [`CgroupManager::create`] made, deepest first, and only while
    /// they are empty (`rmdir`): what another process put there since is left alone.
    pub fn remove_created(created: &[PathBuf]) {
        for dir in created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }

    fn create_inner(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for d in self.dirs() {
            let levels = levels_below(&d.mount_point, &d.dir);
            for (i, level) in levels.iter().enumerate() {
                match fs::create_dir(level) {
                    Ok(()) => created.push(level.clone()),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(Error::cgroup(level, format!("mkdir: {}", describe(&e))));
                    }
                }
                if d.has("cpuset") {
                    let parent = if i == 0 {
                        &d.mount_point
                    } else {
                        &levels[i - 1]
                    };
                    v1::inherit_cpuset(parent, level)?;
                }
            }
        }
        if self.layout == Layout::Unified
            && let Some(d) = &self.unified
        {
            v2::enable_controllers(&d.mount_point, &d.dir)?;
        }
        Ok(())
    }

    /// Writes the limits in `resources`; used at create and by Update.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        check_resources(resources)?;
        match self.layout {
            Layout::Legacy | Layout::Hybrid => {
                if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
                    return Err(Error::invalid(
                        "linux.resources.unified",
                        "needs cgroup v2 controllers, but this host's controllers are on cgroup v1",
                    ));
                }
                v1::apply(&self.v1, resources)
            }
            Layout::Unified => match &self.unified {
                Some(d) => v2::apply(&d.dir, resources),
                None => Err(Error::cgroup(DEFAULT_ROOT, "no cgroup2 hierarchy")),
            },
        }
    }

    /// Changes the limits of a running container (Task.Update) through the same code as
    /// [`CgroupManager::apply`]: memory, cpu (shares/weight, quota/period, cpuset cpus and
    /// mems, realtime), pids, block I/O and, on v2, unified keys. Devices, hugepage and network
    /// settings in `resources` are left as they are (as `runc update` does; CRI sends the
    /// whole spec's resources). A value the kernel refuses fails naming its spec field, and
    /// every limit file written before it is set back to what it held, so the old limits stay.
    /// With the systemd driver the scope's unit properties are then set to match
    /// ([`systemd::set_properties`]).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.check_before_update(resources)?;
        let mut wanted = LinuxResources::default();
        wanted
            .set_memory(*resources.memory())
            .set_cpu(resources.cpu().clone())
            .set_pids(*resources.pids())
            .set_block_io(resources.block_io().clone())
            .set_unified(resources.unified().clone());
        let saved = self.limit_files(&wanted);
        if let Err(err) = self.apply(&wanted) {
            restore(&saved);
            return Err(name_update_field(err));
        }
        // systemd's view of its scope follows the files (its own units' limits it would
        // otherwise set back on a daemon-reload).
        match &self.systemd {
            Some(unit) => systemd::set_properties(unit, &wanted),
            None => Ok(()),
        }
    }

    /// `memory.checkBeforeUpdate`: a memory limit below what the container uses now is
    /// refused (config-linux.md: the runtime "MUST reject the new limit"); v1 kernels refuse
    /// it themselves, v2 ones would reclaim or OOM-kill to get there.
    fn check_before_update(&self, resources: &LinuxResources) -> Result<()> {
        let Some(memory) = resources.memory() else {
            return Ok(());
        };
        let Some(limit) = memory.limit().filter(|l| *l > 0) else {
            return Ok(());
        };
        if memory.check_before_update() != Some(true) {
            return Ok(());
        }
        let usage = match (self.v1_path("memory"), self.unified_path()) {
            (Some(dir), _) => read_file(dir, "memory.usage_in_bytes"),
            (None, Some(dir)) => read_file(dir, "memory.current"),
            (None, None) => return Ok(()),
        };
        if let Some(usage) = usage.ok().and_then(|u| u.parse::<i64>().ok())
            && limit < usage
        {
            return Err(Error::invalid(
                "linux.resources.memory.limit",
                format!(
                    "{limit} is below the container's current memory usage {usage} \
                     (checkBeforeUpdate)"
                ),
            ));
        }
        Ok(())
    }

    /// The current content of every limit file an update may write.
    fn limit_files(&self, resources: &LinuxResources) -> Vec<(PathBuf, String, String)> {
        let mut places: Vec<(&Path, Vec<String>)> = Vec::new();
        match self.layout {
            Layout::Legacy | Layout::Hybrid => {
                for d in &self.v1 {
                    let files: Vec<String> = UPDATE_FIELDS
                        .iter()
                        .filter(|(file, _)| d.controllers.iter().any(|c| owns(c, file)))
                        .map(|(file, _)| file.to_string())
                        .collect();
                    places.push((&d.dir, files));
                }
            }
            Layout::Unified => {
                if let Some(d) = &self.unified {
                    let mut files: Vec<String> =
                        UPDATE_FIELDS.iter().map(|(f, _)| f.to_string()).collect();
                    // Only keys apply would write: never `cgroup.procs` and the like.
                    files.extend(
                        resources
                            .unified()
                            .iter()
                            .flatten()
                            .filter(|(k, _)| v2::check_unified_key(k).is_ok())
                            .map(|(k, _)| k.clone()),
                    );
                    places.push((&d.dir, files));
                }
            }
        }
        let mut saved = Vec::new();
        for (dir, files) in places {
            for file in files {
                if let Ok(value) = fs::read_to_string(dir.join(&file)) {
                    saved.push((dir.to_path_buf(), file, value.trim().to_string()));
                }
            }
        }
        saved
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    /// Moves `pid` into one cgroup directory.
    pub fn add_to(dir: &Path, pid: i32) -> Result<()> {
        write_file(dir, "cgroup.procs", &pid.to_string())
    }

    pub fn add_process(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        for d in self.dirs() {
            write_file(&d.dir, "cgroup.procs", &value)?;
        }
        Ok(())
    }

    /// Moves the calling thread into the container's cgroup in every v1 hierarchy by writing
    /// `0` to each `tasks` file. For a single-threaded caller that moves the process; the
    /// kernel then skips the global threadgroup lock whose first writer waits for an RCU grace
    /// period (5–15 ms here) — a write of another pid to `cgroup.procs` pays that wait.
    pub fn join_v1_self(&self) -> Result<()> {
        for d in &self.v1 {
            write_file(&d.dir, "tasks", "0")?;
        }
        Ok(())
    }

    /// The container's cgroup2 directory, opened for `clone3(CLONE_INTO_CGROUP)`, which places
    /// a child at birth without a migration.
    pub fn open_unified(&self) -> Result<Option<std::fs::File>> {
        let Some(d) = &self.unified else {
            return Ok(None);
        };
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&d.dir)
            .map(Some)
            .map_err(|e| Error::io("open cgroup", &d.dir, e))
    }

    /// The pids in the cgroup and its sub-cgroups, in every hierarchy (sorted, each once).
    /// Empty when the cgroup is gone. Every hierarchy counts: a process placed in only one of
    /// them (say the cgroup2 directory of a hybrid host) still makes the cgroup someone's.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let (pids, error) = self.pids_found();
        error.map_or(Ok(pids), Err)
    }

    /// The pids [`CgroupManager::pids`] finds, and the first cgroup it could not read: every
    /// hierarchy and sub-cgroup is read whatever failed before.
    fn pids_found(&self) -> (Vec<i32>, Option<Error>) {
        let mut pids = Vec::new();
        let mut first_error = None;
        for d in self.dirs() {
            if let Err(e) = collect_pids(&d.dir, &mut pids) {
                first_error.get_or_insert(e);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        (pids, first_error)
    }

    /// The first directory of the cgroup (or a sub-cgroup of it), in any hierarchy, that
    /// holds processes, with their pids.
    pub fn occupied(&self) -> Result<Option<(PathBuf, Vec<i32>)>> {
        for d in self.dirs() {
            let mut pids = Vec::new();
            collect_pids(&d.dir, &mut pids)?;
            if !pids.is_empty() {
                return Ok(Some((d.dir.clone(), pids)));
            }
        }
        Ok(None)
    }

    /// Sends `signal` to every process in the cgroup and its sub-cgroups, in every hierarchy.
    /// SIGKILL goes first through `cgroup.kill` where the cgroup2 directory has it; each
    /// process listed in any hierarchy is then signalled, and for SIGKILL again until the
    /// cgroup is empty (up to about 2 s, then an error naming the survivors).
    ///
    /// Processes frozen by the v1 freezer cannot act on SIGKILL, so after a SIGKILL the
    /// container's v1 freezer cgroup and every sub-cgroup frozen by itself are thawed (runc
    /// thaws the top one); cgroup2's `cgroup.kill` handles frozen tasks itself. A step that
    /// fails does not stop the others: what can be killed is, and the first error is
    /// returned if processes are left.
    ///
    /// With the systemd driver only a scope that [`CgroupManager::is_ours`] is signalled.
    pub fn kill_all(&self, signal: Signal) -> Result<()> {
        if !self.is_ours()? {
            return Ok(());
        }
        let mut first_error = None;
        if signal == Signal::SIGKILL
            && let Some(dir) = self.unified_path()
            && dir.join("cgroup.kill").exists()
            && let Err(e) = write_file(dir, "cgroup.kill", "1")
        {
            first_error = Some(e);
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let (pids, listed) = self.pids_found();
            for &pid in &pids {
                match kill(Pid::from_raw(pid), signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => {
                        first_error.get_or_insert(Error::sys(
                            "kill",
                            format!("pid {pid} {signal}"),
                            e,
                        ));
                    }
                }
            }
            if signal != Signal::SIGKILL {
                return listed.or(first_error).map_or(Ok(()), Err);
            }
            if let Err(e) = self.thaw_v1_after_kill() {
                first_error.get_or_insert(e);
            }
            if pids.is_empty() && listed.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Nothing listed means some cgroup could not be read: that error says it.
                let why = listed.or(first_error);
                return Err(match why {
                    Some(e) if pids.is_empty() => e,
                    why => Error::cgroup(
                        self.pids_dir_for_errors(),
                        format!(
                            "processes {pids:?} still present after SIGKILL{}",
                            why.map(|e| format!(" ({e})")).unwrap_or_default()
                        ),
                    ),
                });
            }
            sleep(SETTLE_STEP);
        }
    }

    /// Thaws the container's v1 freezer cgroup and its sub-cgroups ([`thaw_tree`]) so that
    /// killed processes can run to their exit.
    fn thaw_v1_after_kill(&self) -> Result<()> {
        match self.v1_path("freezer") {
            Some(dir) => thaw_tree(dir),
            None => Ok(()),
        }
    }

    fn pids_dir_for_errors(&self) -> PathBuf {
        self.dirs()
            .next()
            .map(|d| d.dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// Removes the container's cgroup directories (not shared parents) that the setup helper
    /// made, and every sub-cgroup below them (the container made those: a cgroup with
    /// sub-cgroups is refused at create); a directory the spec named that existed before is
    /// emptied of sub-cgroups and stays. With the systemd driver, stops the scope and waits
    /// until systemd removed its cgroup, only if it still is the scope the container got
    /// ([`systemd::stop`]). Succeeds when they are already gone. A directory still busy after
    /// about 2 s (processes still exiting) fails naming the directory.
    pub fn destroy(&self) -> Result<()> {
        if let (Some(unit), Some(dir)) = (&self.systemd, self.unified_path()) {
            // systemd removes the scope's cgroup (and what the container made below it); the
            // directory is systemd's, never removed behind its back.
            return systemd::stop(unit, dir);
        }
        let mut first_error = None;
        // One wait for all hierarchies: a process stuck in one holds up each of them alike.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        for d in self.dirs() {
            let removed = remove_tree(&d.dir, !self.may_remove(&d.dir), deadline);
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the container's cgroup after a Create that failed, or for a container whose
    /// init was never recorded: only the directories the setup helper made (the container's
    /// and the parents it had to make, deepest first), each only if it is unused — no process
    /// and no sub-cgroup (`rmdir`, never recursive). A cgroup the spec named that existed
    /// before is never removed, nor anything in it. A systemd scope goes as with
    /// [`CgroupManager::destroy`] (only the one this container started).
    pub fn remove_if_unused(&self) -> Result<()> {
        if self.systemd.is_some() {
            return self.destroy();
        }
        let mut first_error = None;
        for dir in self.made.iter().flatten().rev() {
            // A parent we made may hold another container's cgroup by now: left quietly.
            let own = self.dirs().any(|d| d.dir == *dir);
            // One plain rmdir, no waiting: a cgroup that holds processes or sub-cgroups is
            // left as it is, at once.
            let busy = fs::read_to_string(dir.join("cgroup.procs"))
                .is_ok_and(|procs| !procs.trim().is_empty());
            let removed = match sub_cgroups(dir) {
                _ if busy => Err(Error::cgroup(dir, "holds processes: left in place")),
                Ok(subs) if subs.is_empty() => match fs::remove_dir(dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::cgroup(dir, format!("rmdir: {}", describe(&e)))),
                },
                Ok(_) => Err(Error::cgroup(dir, "has sub-cgroups: left in place")),
                Err(e) => Err(e),
            };
            if let Err(e) = removed
                && own
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The container's usage statistics: v1 on legacy and hybrid hosts, v2 on unified ones.
    pub fn stats(&self) -> Result<stats::Stats> {
        match self.layout {
            Layout::Legacy | Layout::Hybrid => {
                let partitions = fs::read_to_string("/proc/partitions").unwrap_or_default();
                stats::v1_stats(|c| self.v1_path(c), &partitions)
                    .map(|s| stats::Stats::V1(Box::new(s)))
            }
            Layout::Unified => match self.unified_path() {
                Some(dir) => stats::v2_stats(dir).map(|s| stats::Stats::V2(Box::new(s))),
                None => Err(Error::cgroup(DEFAULT_ROOT, "no cgroup2 hierarchy")),
            },
        }
    }

    /// How many processes of the container the kernel's OOM killer has killed so far: v1
    /// `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`. `None` when the host
    /// does not count them.
    pub fn oom_kills(&self) -> Option<u64> {
        let (dir, file) = self.oom_counter()?;
        let text = fs::read_to_string(dir.join(file)).ok()?;
        stats::parse_key_values(&text).get("oom_kill").copied()
    }

    /// The file whose `oom_kill` line counts the container's OOM kills, and its directory.
    pub fn oom_counter(&self) -> Option<(&Path, &'static str)> {
        match self.layout {
            Layout::Legacy | Layout::Hybrid => {
                Some((self.v1_path("memory")?, "memory.oom_control"))
            }
            Layout::Unified => Some((self.unified_path()?, "memory.events")),
        }
    }

    /// Whether the container is frozen (v1 `freezer.state`, else cgroup2 `cgroup.freeze`).
    pub fn is_frozen(&self) -> bool {
        if let Some(dir) = self.v1_path("freezer") {
            return read_file(dir, "freezer.state").is_ok_and(|s| s != "THAWED");
        }
        self.unified_path()
            .is_some_and(|dir| read_file(dir, "cgroup.freeze").is_ok_and(|s| s == "1"))
    }

    /// Freezes every process in the cgroup (v1 `freezer.state`, else cgroup2 `cgroup.freeze`)
    /// and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup frozen by [`CgroupManager::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        if let Some(dir) = self.v1_path("freezer") {
            return v1::set_frozen(dir, frozen);
        }
        if let Some(dir) = self.unified_path() {
            return v2::set_frozen(dir, frozen);
        }
        Err(Error::cgroup(
            self.pids_dir_for_errors(),
            "no freezer: neither a v1 freezer hierarchy nor cgroup2 is mounted",
        ))
    }
}

/// The limit files an update writes, with the spec field each carries (v1 and v2 names).
const UPDATE_FIELDS: &[(&str, &str)] = &[
    ("memory.limit_in_bytes", "linux.resources.memory.limit"),
    ("memory.memsw.limit_in_bytes", "linux.resources.memory.swap"),
    (
        "memory.soft_limit_in_bytes",
        "linux.resources.memory.reservation",
    ),
    ("memory.swappiness", "linux.resources.memory.swappiness"),
    ("memory.max", "linux.resources.memory.limit"),
    ("memory.swap.max", "linux.resources.memory.swap"),
    ("memory.low", "linux.resources.memory.reservation"),
    ("cpu.shares", "linux.resources.cpu.shares"),
    ("cpu.weight", "linux.resources.cpu.shares"),
    ("cpu.cfs_period_us", "linux.resources.cpu.period"),
    ("cpu.cfs_quota_us", "linux.resources.cpu.quota"),
    ("cpu.cfs_burst_us", "linux.resources.cpu.burst"),
    ("cpu.max", "linux.resources.cpu.quota"),
    ("cpu.max.burst", "linux.resources.cpu.burst"),
    ("cpu.rt_period_us", "linux.resources.cpu.realtimePeriod"),
    ("cpu.rt_runtime_us", "linux.resources.cpu.realtimeRuntime"),
    ("cpu.idle", "linux.resources.cpu.idle"),
    ("cpuset.cpus", "linux.resources.cpu.cpus"),
    ("cpuset.mems", "linux.resources.cpu.mems"),
    ("pids.max", "linux.resources.pids.limit"),
    ("blkio.weight", "linux.resources.blockIO.weight"),
    ("blkio.bfq.weight", "linux.resources.blockIO.weight"),
    ("blkio.leaf_weight", "linux.resources.blockIO.leafWeight"),
    ("io.weight", "linux.resources.blockIO.weight"),
    ("io.bfq.weight", "linux.resources.blockIO.weight"),
];

/// Whether `file` belongs to v1 controller `controller` (`cpuset.cpus` to `cpuset`, not `cpu`).
fn owns(controller: &str, file: &str) -> bool {
    file.split('.').next() == Some(controller)
}

/// Writes back the saved limit files that changed. Two rounds: the kernel refuses some
/// orders (a memory limit above the memsw limit, a cpu period below the quota) that the
/// second round then finds possible.
fn restore(saved: &[(PathBuf, String, String)]) {
    for round in 0..2 {
        for (dir, file, value) in saved {
            if read_file(dir, file).is_ok_and(|now| now == *value) {
                continue;
            }
            if let Err(e) = write_file(dir, file, value)
                && round == 1
            {
                log::warn!("update: could not restore the old limit: {e}");
            }
        }
    }
}

/// Constraints of `linux.resources` that hold whatever the host (config-linux.md): a cpu
/// `burst` no larger than a positive `quota`, and each block-I/O `weightDevice` entry with a
/// `weight` or a `leafWeight`. Checked with the spec and again before limits are written.
pub fn check_resources(resources: &LinuxResources) -> Result<()> {
    if let Some(cpu) = resources.cpu()
        && let (Some(quota), Some(burst)) = (cpu.quota().filter(|q| *q > 0), cpu.burst())
        && burst > quota as u64
    {
        return Err(Error::invalid(
            "linux.resources.cpu.burst",
            format!("{burst} is larger than the quota {quota}"),
        ));
    }
    let devices = resources
        .block_io()
        .as_ref()
        .and_then(|b| b.weight_device().as_ref());
    for (i, d) in devices.into_iter().flatten().enumerate() {
        if d.weight().is_none() && d.leaf_weight().is_none() {
            return Err(Error::invalid(
                format!("linux.resources.blockIO.weightDevice[{i}]"),
                format!(
                    "{}:{} has neither weight nor leafWeight",
                    d.major(),
                    d.minor()
                ),
            ));
        }
    }
    Ok(())
}

/// A refused update's error, naming the spec field of the file the kernel refused.
fn name_update_field(err: Error) -> Error {
    let Error::Cgroup { path, msg } = &err else {
        return err;
    };
    // write_file's message starts with `write <file>=<value>`.
    let field = msg
        .strip_prefix("write ")
        .and_then(|rest| rest.split_once('='))
        .and_then(|(file, _)| UPDATE_FIELDS.iter().find(|(f, _)| *f == file))
        .map(|(_, field)| *field);
    match field {
        Some(field) => Error::invalid(
            field,
            format!(
                "refused by the kernel ({}: {msg}); the old limits stay",
                path.display()
            ),
        ),
        None => err,
    }
}

/// The container's directory in hierarchy `h`.
fn dir_in(h: &Hierarchy, own: Option<&Path>, path: &CgroupPath) -> Result<PathBuf> {
    match path {
        CgroupPath::Absolute(p) => Ok(h.mount_point.join(p)),
        CgroupPath::Relative(p) => {
            let own = own.ok_or_else(|| {
                Error::cgroup(
                    &h.mount_point,
                    "relative linux.cgroupsPath: the caller's cgroup in this hierarchy is not in /proc/self/cgroup",
                )
            })?;
            let inside = own.strip_prefix(&h.root).map_err(|_| {
                Error::cgroup(
                    &h.mount_point,
                    format!(
                        "relative linux.cgroupsPath: the caller's cgroup {} is outside this mount's root {}",
                        own.display(),
                        h.root.display()
                    ),
                )
            })?;
            Ok(h.mount_point.join(inside).join(p))
        }
    }
}

/// Every directory from just below `mount` down to `dir`, top first.
fn levels_below(mount: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut levels: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| *a != mount && a.starts_with(mount))
        .map(Path::to_path_buf)
        .collect();
    levels.reverse();
    levels
}

/// Reads `cgroup.procs` of `dir` and of every cgroup below it (through directory fds: a
/// container can nest its sub-cgroups past `PATH_MAX`). The pids found are kept even when
/// some cgroup could not be read; the first such error is returned.
fn collect_pids(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    tree::walk(dir, tree::Order::Pre, |visit| {
        let tree::Visit::Enter { dir } = visit else {
            return Ok(());
        };
        let text = tree::read_at(dir, c"cgroup.procs")?.unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let pid = line
                .trim()
                .parse()
                .map_err(|_| format!("cgroup.procs: bad pid {line:?}"))?;
            pids.push(pid);
        }
        Ok(())
    })
}

/// Thaws the v1 freezer cgroup `dir` and every sub-cgroup of it frozen by itself (its own
/// `freezer.self_freezing`; one frozen only because an ancestor is thaws with it): thawing a
/// parent leaves a child the container froze itself frozen.
fn thaw_tree(dir: &Path) -> Result<()> {
    tree::walk(dir, tree::Order::Pre, |visit| {
        let tree::Visit::Enter { dir } = visit else {
            return Ok(());
        };
        let frozen = match tree::read_at(dir, c"freezer.self_freezing")? {
            Some(own) => own.trim() == "1",
            // Kernels before 3.13 show only the effective state.
            None => tree::read_at(dir, c"freezer.state")?.is_some_and(|s| s.trim() != "THAWED"),
        };
        match frozen {
            true => tree::write_at(dir, c"freezer.state", "THAWED"),
            false => Ok(()),
        }
    })
}

/// The sub-cgroup directories of `dir` (none when `dir` is gone).
fn sub_cgroups(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::cgroup(dir, format!("readdir: {}", describe(&e)))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::cgroup(dir, format!("readdir: {}", describe(&e))))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes every cgroup below `dir`, deepest first, and then `dir` itself unless `keep_top`;
/// through directory fds, as [`collect_pids`]. `rmdir` is retried on EBUSY until `deadline`:
/// processes that were just killed leave their cgroup only once they have exited.
fn remove_tree(dir: &Path, keep_top: bool, deadline: Instant) -> Result<()> {
    let below = tree::walk(dir, tree::Order::Post, |visit| {
        let tree::Visit::Leave { parent, name } = visit else {
            return Ok(());
        };
        loop {
            match tree::rmdir_at(parent, name) {
                Ok(()) => return Ok(()),
                Err(Errno::EBUSY) if Instant::now() < deadline => sleep(SETTLE_STEP),
                Err(e) => return Err(format!("rmdir: {}", e.desc())),
            }
        }
    });
    if keep_top {
        return below;
    }
    // The top's rmdir still runs: its error says what is left when the walk could not.
    let top = remove_leaf(dir, deadline);
    below.and(top)
}

/// `rmdir` of a cgroup without sub-cgroups, retrying EBUSY until `deadline` while its last
/// processes exit.
fn remove_leaf(dir: &Path, deadline: Instant) -> Result<()> {
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(SETTLE_STEP);
            }
            Err(e) => return Err(Error::cgroup(dir, format!("rmdir: {}", describe(&e)))),
        }
    }
}

#[cfg(test)]
mod tests;
