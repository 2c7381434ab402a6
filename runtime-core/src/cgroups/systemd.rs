//! The systemd cgroup driver: the container's cgroup is a transient scope that systemd
//! creates and removes, asked for on its D-Bus API.
//!
//! Naming, as runc's systemd driver names it: a `slice:prefix:name` cgroupsPath becomes the
//! scope `prefix-name.scope` in the slice, whose directory systemd keeps at the slice chain's
//! path (`a-b.slice` lives in `a.slice/a-b.slice`).
//!
//! Start: `StartTransientUnit(name, "replace", properties, [])` with `Delegate=yes` (the
//! scope's files and sub-cgroups are ours to write), `PIDs=[the init]`, and the resource
//! properties systemd knows ([`resource_properties`]), so that systemd's own view agrees with
//! the files; then the cgroupfs code writes every limit to the scope's files as on any cgroup2
//! directory. The init already exists (blocked before it runs anything of the spec): systemd
//! refuses a scope without processes, so the scope cannot be made first and the init born in
//! it. Stop: `StopUnit`, `ResetFailedUnit`, then wait until the directory is gone.
//!
//! Identity: a scope is known by its name, which anyone may start again once ours is gone
//! (systemd removes a scope as soon as its last process exits). Once the init is in the
//! scope, [`invocation`] reads the scope's `InvocationID` (a new random id for each start of
//! a unit); [`stop`] and [`is_current`] act only on a unit that still has it. A unit without
//! a known identity (a Create that failed before it) is never stopped: if it was ours,
//! systemd removes it when its processes are gone.
//!
//! The connection is the system bus (`/run/dbus/system_bus_socket`), opened for each start
//! or stop and closed after: nothing stays open in the shim daemon between operations.
//! Connecting gives up after [`CONNECT_TIMEOUT`] and each call after [`CALL_TIMEOUT`], and
//! each operation has a time limit in all, short in the shim's `delete` subcommand
//! ([`limit_for_delete`]): a hung or absent systemd is an error within seconds, not a hang of
//! Create, and `delete` stays within containerd's 5 s.
//! systemd's private socket `/run/systemd/private` would spare the dbus-daemon, but systemd
//! sends its replies there with a sender that is no bus name, which zbus 5 rejects (its
//! reader thread panics and the call never returns).

use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::{Error, Result};

/// What `sd_booted(3)` checks: the directory systemd creates when it runs as the init.
pub const RUNNING_MARKER: &str = "/run/systemd/system";

/// The slice of a scope whose cgroupsPath leaves the slice empty (a system instance's).
const DEFAULT_SLICE: &str = "system.slice";
/// The scope prefix when there is no cgroupsPath at all (runc uses `runc`).
const DEFAULT_PREFIX: &str = "mini";

const FIELD: &str = "linux.cgroupsPath";

/// Whether systemd runs as this host's init.
pub fn running() -> bool {
    Path::new(RUNNING_MARKER).is_dir()
}

/// A container's transient scope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// The scope's unit name, e.g. `cri-containerd-abc.scope`.
    pub name: String,
    /// The slice it is started in, e.g. `kubepods-besteffort-pod1.slice`.
    pub slice: String,
    /// Its cgroup below the cgroup2 root, e.g.
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope`.
    pub cgroup: PathBuf,
    /// The scope's `InvocationID` (32 hex digits), once it is known to hold the container's
    /// init ([`invocation`]): only a unit with this identity is stopped or killed.
    #[serde(default)]
    pub invocation: Option<String>,
}

impl Unit {
    /// The scope for container `id` at `cgroups_path`: `slice:prefix:name`, or none for
    /// `system.slice` and `mini-<id>.scope`. An empty slice means `system.slice`; an empty
    /// prefix gives `name.scope`.
    pub fn for_container(id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        let (slice, prefix, name) = match cgroups_path {
            None => (DEFAULT_SLICE.to_string(), DEFAULT_PREFIX, id.to_string()),
            Some(path) => {
                let text = path.to_string_lossy();
                let parts: Vec<&str> = text.split(':').collect();
                let [slice, prefix, name] = parts[..] else {
                    return Err(Error::invalid(
                        FIELD,
                        format!(
                            "{text:?}: the systemd cgroup driver takes the form \
                             slice:prefix:name, e.g. system.slice:mini:{id}"
                        ),
                    ));
                };
                let slice = if slice.is_empty() {
                    DEFAULT_SLICE
                } else {
                    slice
                };
                return Self::build(slice.to_string(), prefix, name, &text);
            }
        };
        Self::build(slice, prefix, &name, id)
    }

    fn build(slice: String, prefix: &str, name: &str, shown: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::invalid(
                FIELD,
                format!("{shown:?}: the name part of slice:prefix:name is empty"),
            ));
        }
        if name.ends_with(".slice") {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "{shown:?}: a name ending in .slice asks for a slice unit; mini places a \
                     container in a scope only"
                ),
            ));
        }
        let unit = if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        check_scope_name(&unit).map_err(|msg| {
            Error::invalid(FIELD, format!("{shown:?}: systemd unit {unit:?}: {msg}"))
        })?;
        let mut cgroup = expand_slice(&slice)
            .map_err(|msg| Error::invalid(FIELD, format!("{shown:?}: slice {slice:?}: {msg}")))?;
        cgroup.push(&unit);
        Ok(Self {
            name: unit,
            slice,
            cgroup,
            invocation: None,
        })
    }

    /// Checks that this is a scope mini builds: `name` a valid `*.scope` unit name (never
    /// systemd's own `init.scope`), `slice` a valid slice name, `cgroup` the scope's
    /// directory in that slice, and the identity, if any, an `InvocationID`. Every request to
    /// systemd checks its unit first: a unit read back from a bundle's record is not trusted.
    pub fn validate(&self) -> Result<()> {
        let check = || -> std::result::Result<(), String> {
            check_scope_name(&self.name)?;
            let mut cgroup = expand_slice(&self.slice)
                .map_err(|msg| format!("slice {:?}: {msg}", self.slice))?;
            cgroup.push(&self.name);
            if cgroup != self.cgroup {
                return Err(format!(
                    "its cgroup {} is not {}",
                    self.cgroup.display(),
                    cgroup.display()
                ));
            }
            match &self.invocation {
                Some(id) if !is_invocation_id(id) => {
                    Err(format!("{id:?} is not an InvocationID (32 hex digits)"))
                }
                _ => Ok(()),
            }
        };
        check().map_err(|msg| Error::invalid(FIELD, format!("systemd unit {:?}: {msg}", self.name)))
    }
}

/// systemd's longest unit name (`UNIT_NAME_MAX` without the NUL).
const UNIT_NAME_MAX: usize = 255;
/// systemd's own scope, where PID 1 lives: never a container's.
const SYSTEMD_OWN_SCOPE: &str = "init.scope";

/// Whether `name` is a scope unit name systemd accepts and mini may own.
fn check_scope_name(name: &str) -> std::result::Result<(), String> {
    let Some(stem) = name.strip_suffix(".scope") else {
        return Err("mini places a container in a .scope unit only".into());
    };
    if stem.is_empty() {
        return Err("empty name before .scope".into());
    }
    if name.len() > UNIT_NAME_MAX {
        return Err(format!("longer than systemd's {UNIT_NAME_MAX} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !valid_unit_char(*c)) {
        return Err(format!("{bad:?} cannot be part of a unit name"));
    }
    if name == SYSTEMD_OWN_SCOPE {
        return Err("systemd's own scope".into());
    }
    Ok(())
}

fn is_invocation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Characters systemd accepts in a unit name (`unit_name_is_valid`); `\` escapes aside.
fn valid_unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')
}

/// The cgroup of a slice below the cgroup2 root, as systemd nests slices: every `-` in the
/// name is one level (`a-b.slice` is `a.slice/a-b.slice`); `-.slice` is the root itself.
pub fn expand_slice(slice: &str) -> std::result::Result<PathBuf, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err("a slice name ends in .slice".into());
    };
    if stem.is_empty() || slice.contains('/') {
        return Err("not a slice unit name".into());
    }
    if slice.len() > UNIT_NAME_MAX {
        return Err(format!("longer than systemd's {UNIT_NAME_MAX} characters"));
    }
    if let Some(bad) = slice.chars().find(|c| !valid_unit_char(*c)) {
        return Err(format!("{bad:?} cannot be part of a unit name"));
    }
    let mut path = PathBuf::new();
    if stem == "-" {
        return Ok(path);
    }
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err("empty component between dashes".into());
        }
        path.push(format!("{prefix}{component}.slice"));
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// A property value of a transient unit, in the D-Bus type systemd expects for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    /// `t`
    U64(u64),
    /// `b`
    Bool(bool),
    /// `s`
    Str(String),
    /// `ay`: a CPU or NUMA node bitmask, bit `n % 8` of byte `n / 8` for CPU `n`.
    Bytes(Vec<u8>),
    /// `au`
    Pids(Vec<u32>),
}

impl Prop {
    fn to_value(&self) -> Value<'static> {
        match self {
            Prop::U64(v) => Value::from(*v),
            Prop::Bool(v) => Value::from(*v),
            Prop::Str(v) => Value::from(v.clone()),
            Prop::Bytes(v) => Value::from(v.clone()),
            Prop::Pids(v) => Value::from(v.clone()),
        }
    }
}

/// systemd's "infinity" for limits (`USEC_INFINITY`, `CGROUP_LIMIT_MAX`).
const INFINITY: u64 = u64::MAX;
/// The kernel's default CFS period, for a quota without a period.
const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// The properties of `linux.resources` that systemd knows, as runc's systemd driver maps them
/// on cgroup v2. The cgroupfs code writes every limit to the scope's files afterwards anyway:
/// these keep systemd from setting other values back (on `daemon-reload`) and make
/// `systemctl status` tell the truth. A pids limit is always given (infinity when the spec has
/// none): otherwise systemd's `DefaultTasksMax` would cap the container.
pub fn resource_properties(r: &LinuxResources) -> Result<Vec<(&'static str, Prop)>> {
    let mut props = Vec::new();
    let limit = |v: i64| if v < 0 { INFINITY } else { v as u64 };
    if let Some(m) = r.memory() {
        if let Some(v) = m.limit().filter(|&v| v != 0) {
            props.push(("MemoryMax", Prop::U64(limit(v))));
        }
        if let Some(v) = m.reservation().filter(|&v| v > 0) {
            props.push(("MemoryLow", Prop::U64(v as u64)));
        }
        match super::v2::swap_max(m.limit(), m.swap())?.as_deref() {
            None => {}
            Some("max") => props.push(("MemorySwapMax", Prop::U64(INFINITY))),
            Some(v) => props.push(("MemorySwapMax", Prop::U64(v.parse().unwrap_or(INFINITY)))),
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
            props.push(("CPUWeight", Prop::U64(super::v2::shares_to_weight(shares))));
        }
        let period = cpu.period().filter(|&p| p != 0);
        let quota = cpu.quota().filter(|&q| q != 0);
        if let Some(period) = period {
            props.push(("CPUQuotaPeriodUSec", Prop::U64(period)));
        }
        if quota.is_some() || period.is_some() {
            let per_sec = match quota {
                Some(q) if q > 0 => {
                    let period = period.unwrap_or(DEFAULT_CPU_PERIOD);
                    // systemd keeps the quota per second in 10 ms steps: round up, never
                    // below what the spec asks.
                    (q as u64 * 1_000_000 / period).div_ceil(10_000) * 10_000
                }
                _ => INFINITY,
            };
            props.push(("CPUQuotaPerSecUSec", Prop::U64(per_sec)));
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.trim().is_empty()) {
            let mask = list_to_mask(cpus, "linux.resources.cpu.cpus")?;
            props.push(("AllowedCPUs", Prop::Bytes(mask)));
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|c| !c.trim().is_empty()) {
            let mask = list_to_mask(mems, "linux.resources.cpu.mems")?;
            props.push(("AllowedMemoryNodes", Prop::Bytes(mask)));
        }
    }
    let pids = r.pids().map(|p| p.limit()).filter(|&l| l > 0);
    props.push(("TasksMax", Prop::U64(pids.map_or(INFINITY, |l| l as u64))));
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        props.push((
            "IOWeight",
            Prop::U64(super::v2::blkio_weight_to_io_weight(w)),
        ));
    }
    Ok(props)
}

/// A cpuset list (`0-3,8`) as systemd's bitmask: bit `n % 8` of byte `n / 8` for `n`.
fn list_to_mask(list: &str, field: &str) -> Result<Vec<u8>> {
    const MAX: u32 = 8192;
    let bad = || Error::invalid(field, format!("{list:?} is not a list such as 0-3,8"));
    let mut mask = Vec::new();
    for part in list.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (part.trim().parse::<u32>(), part.trim().parse::<u32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            return Err(bad());
        };
        if first > last || last >= MAX {
            return Err(bad());
        }
        for n in first..=last {
            let byte = (n / 8) as usize;
            if mask.len() <= byte {
                mask.resize(byte + 1, 0);
            }
            mask[byte] |= 1 << (n % 8);
        }
    }
    Ok(mask)
}

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
/// How long a start or a stop may take before it counts as failed (runc waits 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);
/// How long connecting to the bus (socket, authentication, `Hello`) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one D-Bus call may take: a hung systemd fails a start or a delete within
/// seconds (containerd gives `delete` 5 s for all of its work).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a stop first waits for systemd to remove an emptied scope by itself.
const EMPTY_SCOPE_GRACE: Duration = Duration::from_millis(500);
/// In a process that [`limit_for_delete`] marked: how long a stop may take in all, the
/// wait for an emptied scope included. With [`IDENTIFY_WITHIN`] (a kill asks first whether
/// the scope is ours) and `delete`'s own second for the processes to go, a slow systemd keeps
/// the shim's `delete` within containerd's 5 s.
pub const STOP_WITHIN: Duration = Duration::from_secs(2);
/// In such a process: how long asking whether a scope still is the container's
/// ([`is_current`]) may take.
pub const IDENTIFY_WITHIN: Duration = Duration::from_millis(1500);
/// How long an operation may take in all elsewhere (a start includes the wait for its job;
/// a stop the wait for the scope to go): a slow but healthy systemd (a long daemon-reload)
/// still gets its answers in, and a kill is not skipped for want of one.
const OTHERS_WITHIN: Duration = JOB_TIMEOUT;

/// Set by [`limit_for_delete`].
static DELETE_LIMITS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks this process as the shim's `delete` subcommand, which containerd ends after 5 s:
/// a stop gets [`STOP_WITHIN`] and an identity check [`IDENTIFY_WITHIN`] instead of
/// [`OTHERS_WITHIN`], so that the rest of its clean-up still runs when systemd is slow.
pub fn limit_for_delete() {
    DELETE_LIMITS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `short` in a process [`limit_for_delete`] marked, [`OTHERS_WITHIN`] elsewhere.
fn limit(short: Duration) -> Duration {
    if DELETE_LIMITS.load(std::sync::atomic::Ordering::SeqCst) {
        short
    } else {
        OTHERS_WITHIN
    }
}

/// The time one operation on systemd may take in all: connecting, each call, and waiting
/// for a job take from it, each also bounded by its own limit.
#[derive(Clone, Copy, Debug)]
struct Budget {
    end: Instant,
}

impl Budget {
    fn of(total: Duration) -> Self {
        Budget {
            end: Instant::now() + total,
        }
    }

    /// How long the next step may take: `cap`, or less if less is left.
    fn step(&self, cap: Duration) -> Duration {
        cap.min(self.end.saturating_duration_since(Instant::now()))
    }

    fn spent(&self) -> bool {
        Instant::now() >= self.end
    }
}

/// A connection to systemd's manager, and the time left for the operation using it.
struct Manager {
    conn: Connection,
    budget: Budget,
}

impl Manager {
    fn connect(unit: &str, budget: Budget) -> Result<Self> {
        let builder = zbus::connection::Builder::system()
            .map_err(|e| dbus_error(unit, "connect to systemd on the system bus for", e))?;
        Self::connect_with(builder, unit, budget)
    }

    /// Connects through `builder`, giving up after [`CONNECT_TIMEOUT`] or when `budget` is
    /// spent (zbus itself waits for a silent peer forever).
    fn connect_with(
        builder: zbus::connection::Builder<'_>,
        unit: &str,
        budget: Budget,
    ) -> Result<Self> {
        const OP: &str = "connect to systemd on the system bus for";
        let limit = budget.step(CONNECT_TIMEOUT);
        let conn = within(limit, builder.method_timeout(CALL_TIMEOUT).build())
            .ok_or_else(|| {
                dbus_error(
                    unit,
                    OP,
                    format!("no answer within {} ms", limit.as_millis()),
                )
            })?
            .map_err(|e| dbus_error(unit, OP, e))?;
        Ok(Self {
            conn: conn.into(),
            budget,
        })
    }

    fn call<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::message::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.call_at(MANAGER_PATH, MANAGER, method, body)
    }

    /// Calls `method` of `interface` at `path`, giving up after [`CALL_TIMEOUT`] or when the
    /// operation's budget is spent.
    fn call_at<B>(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> zbus::Result<zbus::message::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let limit = self.budget.step(CALL_TIMEOUT);
        let call =
            self.conn
                .inner()
                .call_method(Some(DESTINATION), path, Some(interface), method, body);
        within(limit, call).unwrap_or_else(|| {
            Err(zbus::Error::Failure(format!(
                "{method}: no answer within {} ms",
                limit.as_millis()
            )))
        })
    }

    /// The unit's property `name`, `None` once systemd no longer knows the unit.
    fn unit_property(&self, unit: &str, name: &str) -> zbus::Result<Option<OwnedValue>> {
        let path: OwnedObjectPath = match self.call("GetUnit", &(unit,)) {
            Ok(reply) => reply.body().deserialize()?,
            Err(e) if is_error(&e, "NoSuchUnit") => return Ok(None),
            Err(e) => return Err(e),
        };
        let reply = self.call_at(path.as_str(), PROPERTIES, "Get", &(UNIT, name))?;
        Ok(Some(reply.body().deserialize()?))
    }

    /// The unit's `ActiveState`, `None` once systemd no longer knows it.
    fn active_state(&self, unit: &str) -> zbus::Result<Option<String>> {
        Ok(self
            .unit_property(unit, "ActiveState")?
            .map(|v| String::try_from(v).unwrap_or_default()))
    }

    /// The unit's `InvocationID` in hex, `None` once systemd no longer knows it.
    fn invocation_id(&self, unit: &str) -> zbus::Result<Option<String>> {
        let Some(value) = self.unit_property(unit, "InvocationID")? else {
            return Ok(None);
        };
        let bytes = Vec::<u8>::try_from(value)?;
        Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Whether the job at `job` is still queued or running.
    fn job_pending(&self, job: &OwnedObjectPath) -> bool {
        self.call_at(
            job.as_str(),
            PROPERTIES,
            "Get",
            &("org.freedesktop.systemd1.Job", "State"),
        )
        .is_ok()
    }

    fn reset_failed(&self, unit: &str) {
        let _ = self.call("ResetFailedUnit", &(unit,));
    }
}

/// Runs `future` to its end on this thread, or gives up after `timeout` (`None`; the future
/// is dropped, which closes what it opened).
fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer = async_io::Timer::after(timeout);
    async_io::block_on(std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }))
}

/// Whether `e` is systemd's error `org.freedesktop.systemd1.<name>`.
fn is_error(e: &zbus::Error, name: &str) -> bool {
    matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str().ends_with(name))
}

fn dbus_error(unit: &str, op: &str, e: impl std::fmt::Display) -> Error {
    Error::cgroup(
        Path::new("/run/systemd").join(unit),
        format!("systemd: {op} {unit}: {e}"),
    )
}

/// Starts `unit` as a transient scope holding `pid`, with `resources`' properties and
/// delegation, and waits until it is active and its cgroup `dir` exists. A leftover failed
/// unit of the same name is reset first; an active one makes the start fail.
pub fn start(unit: &Unit, dir: &Path, pid: i32, resources: &LinuxResources) -> Result<()> {
    unit.validate()?;
    on_bus(unit, "start", || {
        start_here(unit, dir, pid, resources).map(|()| String::new())
    })
    .map(drop)
}

/// The `InvocationID` of `unit`, read once the container's init `pid` (alive, blocked before
/// its exec) is in it, and checked to be the scope that holds that init: the identity that
/// [`stop`] and [`is_current`] later require.
pub fn invocation(unit: &Unit, pid: i32) -> Result<String> {
    unit.validate()?;
    let want = format!("0::{}", Path::new("/").join(&unit.cgroup).display());
    on_bus(unit, "identify", || {
        let manager = Manager::connect(&unit.name, Budget::of(OTHERS_WITHIN))?;
        let id = manager
            .invocation_id(&unit.name)
            .map_err(|e| dbus_error(&unit.name, "read InvocationID of", e))?
            .ok_or_else(|| dbus_error(&unit.name, "identify", "systemd knows no such unit"))?;
        // Read after the id: a scope that replaced ours before the read cannot hold our init.
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !own.lines().any(|l| l == want) {
            return Err(dbus_error(
                &unit.name,
                "identify",
                format!(
                    "the container's init {pid} is not in the scope (its cgroup: {:?})",
                    own.trim()
                ),
            ));
        }
        Ok(id)
    })
}

/// Whether `unit` still is the scope the container got: systemd knows a unit of that name
/// with the recorded `InvocationID`. A unit without a recorded identity never is.
pub fn is_current(unit: &Unit) -> Result<bool> {
    let Some(ours) = &unit.invocation else {
        return Ok(false);
    };
    unit.validate()?;
    on_bus(unit, "identify", || {
        let manager = Manager::connect(&unit.name, Budget::of(limit(IDENTIFY_WITHIN)))?;
        let theirs = manager
            .invocation_id(&unit.name)
            .map_err(|e| dbus_error(&unit.name, "read InvocationID of", e))?;
        Ok(if theirs.as_ref() == Some(ours) {
            "yes"
        } else {
            "no"
        }
        .to_string())
    })
    .map(|answer| answer == "yes")
}

/// After an Update: sets the properties of `resources` that systemd knows on the running
/// scope `unit` (runtime only, as `systemctl set-property --runtime`), so that systemd's view
/// is the files' and a `daemon-reload` does not set the old limits back. Only while the unit
/// is the container's scope (its recorded identity); a pids limit only when `resources` has
/// one (an Update that does not mention it keeps the current one).
pub fn set_properties(unit: &Unit, resources: &LinuxResources) -> Result<()> {
    let Some(ours) = &unit.invocation else {
        return Ok(());
    };
    unit.validate()?;
    let props: Vec<(&str, Value<'static>)> = resource_properties(resources)?
        .into_iter()
        .filter(|(name, _)| *name != "TasksMax" || resources.pids().is_some())
        .map(|(name, prop)| (name, prop.to_value()))
        .collect();
    if props.is_empty() {
        return Ok(());
    }
    on_bus(unit, "set the properties of", || {
        let manager = Manager::connect(&unit.name, Budget::of(OTHERS_WITHIN))?;
        let current = manager
            .invocation_id(&unit.name)
            .map_err(|e| dbus_error(&unit.name, "read InvocationID of", e))?;
        if current.as_deref() != Some(ours.as_str()) {
            return Err(dbus_error(
                &unit.name,
                "set the properties of",
                "the scope is no longer the container's",
            ));
        }
        manager
            .call("SetUnitProperties", &(unit.name.as_str(), true, props))
            .map_err(|e| dbus_error(&unit.name, "SetUnitProperties", e))?;
        Ok(String::new())
    })
    .map(drop)
}

/// Runs `f`, which talks to systemd, here when this process may create threads (zbus runs
/// one for its connection), otherwise in a forked child.
fn on_bus(unit: &Unit, op: &str, f: impl FnOnce() -> Result<String>) -> Result<String> {
    if threads_possible() {
        f()
    } else {
        in_child(unit, op, f)
    }
}

/// Whether this process may create threads: its children's pid namespace is its own.
fn threads_possible() -> bool {
    let ns = |f: &str| std::fs::read_link(format!("/proc/self/ns/{f}")).ok();
    ns("pid") == ns("pid_for_children")
}

/// Runs `f` in a forked child (of a single-threaded caller) and returns its result; an error
/// comes back as its message. The child dies with its caller (PR_SET_PDEATHSIG): killed
/// setup never leaves it behind, and its calls are bounded by the timeouts above.
fn in_child(unit: &Unit, op: &str, f: impl FnOnce() -> Result<String>) -> Result<String> {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().map_err(|e| dbus_error(&unit.name, &format!("pipe to {op}"), e))?;
    // SAFETY: the caller has one thread (it cannot create others), so the child may run any
    // code; it leaves with _exit.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(dbus_error(&unit.name, &format!("fork to {op}"), e)),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read);
            if crate::process::die_with_caller(write.as_raw_fd()).is_err() {
                // SAFETY: _exit is always safe to call.
                unsafe { libc::_exit(1) };
            }
            let message = match f() {
                Ok(out) => format!("+{out}"),
                Err(e) => format!("-{e}"),
            };
            let _ = std::fs::File::from(write).write_all(message.as_bytes());
            // SAFETY: _exit is always safe to call.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write);
            let mut message = String::new();
            let read_result = std::fs::File::from(read).read_to_string(&mut message);
            let status = nix::sys::wait::waitpid(child, None);
            let exited = matches!(status, Ok(nix::sys::wait::WaitStatus::Exited(_, 0)));
            match (read_result, message.split_at_checked(1)) {
                (Ok(_), Some(("+", out))) if exited => Ok(out.to_string()),
                // The child's error names the unit and the operation already.
                (Ok(_), Some(("-", err))) if exited => Err(Error::cgroup(
                    Path::new("/run/systemd").join(&unit.name),
                    err.to_string(),
                )),
                _ => Err(dbus_error(
                    &unit.name,
                    op,
                    format!("the child that talks to systemd ended with {status:?}"),
                )),
            }
        }
    }
}

fn start_here(unit: &Unit, dir: &Path, pid: i32, resources: &LinuxResources) -> Result<()> {
    let mut props: Vec<(&str, Value<'static>)> = vec![
        (
            "Description",
            Value::from(format!("mini container {}", unit.name)),
        ),
        ("Slice", Value::from(unit.slice.clone())),
        ("Delegate", Value::from(true)),
        ("PIDs", Value::from(vec![pid as u32])),
        // As runc: no ordering against shutdown.target and the like; the shim stops it.
        ("DefaultDependencies", Value::from(false)),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("IOAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
    ];
    for (name, prop) in resource_properties(resources)? {
        props.push((name, prop.to_value()));
    }
    let aux: Vec<(&str, Vec<(&str, Value<'static>)>)> = Vec::new();
    let manager = Manager::connect(&unit.name, Budget::of(JOB_TIMEOUT))?;
    let body = (unit.name.as_str(), "replace", props, aux);
    let reply = match manager.call("StartTransientUnit", &body) {
        Err(e) if is_error(&e, "UnitExists") => {
            manager.reset_failed(&unit.name);
            manager.call("StartTransientUnit", &body)
        }
        other => other,
    };
    let job: OwnedObjectPath = reply
        .and_then(|r| r.body().deserialize())
        .map_err(|e| dbus_error(&unit.name, "StartTransientUnit", e))?;
    loop {
        let state = manager
            .active_state(&unit.name)
            .map_err(|e| dbus_error(&unit.name, "read ActiveState of", e))?;
        let pending = manager.job_pending(&job);
        match state.as_deref() {
            Some("active") if dir.is_dir() => return Ok(()),
            Some("failed") => break,
            _ if !pending && state.as_deref() != Some("active") => break,
            _ => {}
        }
        if manager.budget.spent() {
            break;
        }
        sleep(POLL);
    }
    // The clean-up of a start that ran out of time gets time of its own.
    let manager = Manager {
        budget: Budget::of(CONNECT_TIMEOUT),
        ..manager
    };
    let state = manager.active_state(&unit.name).ok().flatten();
    manager.reset_failed(&unit.name);
    let _ = manager.call("StopUnit", &(unit.name.as_str(), "replace"));
    Err(dbus_error(
        &unit.name,
        "start",
        format!(
            "the scope did not become active with its cgroup {} (state {state:?})",
            dir.display()
        ),
    ))
}

/// Stops `unit` if it still is the scope the container got (its recorded `InvocationID`),
/// resets it if it failed, and waits until its cgroup `dir` is gone, all within
/// [`STOP_WITHIN`] (a slow systemd fails the stop; it removes an emptied scope by itself
/// later). A unit already gone, one
/// that another start of the same name has replaced, or one whose identity was never
/// recorded is left alone: systemd removes a scope of ours by itself once its processes are
/// gone.
pub fn stop(unit: &Unit, dir: &Path) -> Result<()> {
    let Some(ours) = &unit.invocation else {
        return Ok(());
    };
    unit.validate()?;
    let budget = Budget::of(limit(STOP_WITHIN));
    // A scope whose processes are all gone is stopped and removed by systemd itself (it
    // watches `cgroup.events`): then there is nothing to ask, which keeps `delete` (5 s
    // for all of its work) quick.
    let grace = Instant::now() + EMPTY_SCOPE_GRACE;
    while dir.exists() && is_empty(dir) && Instant::now() < grace {
        sleep(POLL);
    }
    if !dir.exists() {
        return Ok(());
    }
    on_bus(unit, "stop", || {
        let manager = Manager::connect(&unit.name, budget)?;
        stop_here(&manager, unit, ours, dir).map(|()| String::new())
    })
    .map(drop)
}

fn stop_here(manager: &Manager, unit: &Unit, ours: &str, dir: &Path) -> Result<()> {
    let current = manager
        .invocation_id(&unit.name)
        .map_err(|e| dbus_error(&unit.name, "read InvocationID of", e))?;
    if current.as_deref() != Some(ours) {
        // Gone, or a unit someone else started under the name since.
        return Ok(());
    }
    match manager.call("StopUnit", &(unit.name.as_str(), "replace")) {
        Ok(_) => {}
        Err(e) if is_error(&e, "NoSuchUnit") => {}
        Err(e) => return Err(dbus_error(&unit.name, "StopUnit", e)),
    }
    loop {
        let state = manager.active_state(&unit.name).ok().flatten();
        if state.as_deref() == Some("failed") {
            manager.reset_failed(&unit.name);
        }
        if !dir.exists() && matches!(state.as_deref(), None | Some("inactive")) {
            return Ok(());
        }
        if manager.budget.spent() {
            return Err(dbus_error(
                &unit.name,
                "stop",
                format!(
                    "the scope is still {state:?} or its cgroup {} still exists",
                    dir.display()
                ),
            ));
        }
        sleep(POLL);
    }
}

/// Whether the cgroup at `dir` holds no process (`cgroup.events` says `populated 0`).
fn is_empty(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|l| l == "populated 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    fn prop(props: &[(&str, Prop)], name: &str) -> Option<Prop> {
        props
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
    }

    #[test]
    fn resources_map_to_the_properties_systemd_knows() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .swap(96 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(25_000i64)
                    .period(100_000u64)
                    .cpus("0-2,9")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let props = resource_properties(&r).unwrap();
        let get = |name: &str| prop(&props, name);
        assert_eq!(get("MemoryMax"), Some(Prop::U64(64 << 20)));
        assert_eq!(get("MemoryLow"), Some(Prop::U64(32 << 20)));
        assert_eq!(get("MemorySwapMax"), Some(Prop::U64(32 << 20)));
        assert_eq!(get("CPUWeight"), Some(Prop::U64(20)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Prop::U64(100_000)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(250_000)));
        assert_eq!(
            get("AllowedCPUs"),
            Some(Prop::Bytes(vec![0b0000_0111, 0b0000_0010]))
        );
        assert_eq!(get("AllowedMemoryNodes"), Some(Prop::Bytes(vec![1])));
        assert_eq!(get("TasksMax"), Some(Prop::U64(42)));
        assert_eq!(get("IOWeight"), Some(Prop::U64(4950)));
    }

    #[test]
    fn unlimited_values_are_infinity_and_quotas_round_up_to_10ms() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(-1)
                    .swap(-1)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(12_345i64)
                    .period(50_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let props = resource_properties(&r).unwrap();
        let get = |name: &str| prop(&props, name);
        assert_eq!(get("MemoryMax"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get("MemorySwapMax"), Some(Prop::U64(u64::MAX)));
        // 12345 us per 50 ms = 246900 us per second, kept by systemd as 250 ms.
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(250_000)));
        // No pids limit in the spec: not systemd's DefaultTasksMax either.
        assert_eq!(get("TasksMax"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get("CPUWeight"), None);
    }

    #[test]
    fn bad_cpu_lists_are_named() {
        for bad in ["a", "3-1", "1,,2", "99999"] {
            let r = LinuxResourcesBuilder::default()
                .cpu(LinuxCpuBuilder::default().cpus(bad).build().unwrap())
                .build()
                .unwrap();
            let msg = resource_properties(&r).unwrap_err().to_string();
            assert!(msg.contains("linux.resources.cpu.cpus"), "{bad}: {msg}");
        }
    }

    #[test]
    fn slices_nest_at_each_dash() {
        assert_eq!(
            expand_slice("kubepods-besteffort-pod12ab.slice").unwrap(),
            Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12ab.slice")
        );
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            Path::new("system.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new(""));
        for bad in [
            "system",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            "a b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cri_path_gives_a_prefixed_scope_in_the_pods_slice() {
        let unit = Unit::for_container(
            "abc",
            Some(Path::new(
                "kubepods-burstable-pod1.slice:cri-containerd:abc",
            )),
        )
        .unwrap();
        assert_eq!(unit.name, "cri-containerd-abc.scope");
        assert_eq!(unit.slice, "kubepods-burstable-pod1.slice");
        assert_eq!(
            unit.cgroup,
            Path::new(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
            )
        );
    }

    #[test]
    fn empty_slice_is_system_slice_and_empty_prefix_drops_the_dash() {
        let unit = Unit::for_container("c1", Some(Path::new(":mini-test:c1"))).unwrap();
        assert_eq!(unit.cgroup, Path::new("system.slice/mini-test-c1.scope"));
        let unit = Unit::for_container("c1", Some(Path::new("system.slice::c1"))).unwrap();
        assert_eq!(unit.name, "c1.scope");
        let unit = Unit::for_container("c1", None).unwrap();
        assert_eq!(unit.cgroup, Path::new("system.slice/mini-c1.scope"));
    }

    #[test]
    fn paths_not_in_the_systemd_form_are_named_in_the_error() {
        for bad in [
            "/mini/c1",
            "a.slice:b",
            "system.slice:mini:",
            "system.slice:mini:x.slice",
            "system:mini:c1",
            "system.slice:mi/ni:c1",
            "system.slice:mini:c 1",
        ] {
            let err = Unit::for_container("c1", Some(Path::new(bad))).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("linux.cgroupsPath"), "{bad}: {msg}");
            assert!(msg.contains(bad), "{bad}: {msg}");
        }
    }

    fn scope(name: &str, slice: &str) -> Unit {
        let mut cgroup = expand_slice(slice).unwrap_or_default();
        cgroup.push(name);
        Unit {
            name: name.into(),
            slice: slice.into(),
            cgroup,
            invocation: None,
        }
    }

    #[test]
    fn only_scopes_mini_builds_pass_validation() {
        let mut good = scope("cri-containerd-abc.scope", "kubepods-besteffort-pod1.slice");
        good.validate().unwrap();
        good.invocation = Some("0123456789abcdef0123456789ABCDEF".into());
        good.validate().unwrap();
        let long = format!("{}.scope", "a".repeat(250));
        for bad in [
            scope("system.slice", "-.slice"),
            scope("init.scope", "-.slice"),
            scope("ssh.service", "system.slice"),
            scope(".scope", "system.slice"),
            scope("a b.scope", "system.slice"),
            scope("a/b.scope", "system.slice"),
            scope(&long, "system.slice"),
            scope("mini-c1.scope", "system"),
            scope("mini-c1.scope", "a--b.slice"),
            Unit {
                cgroup: PathBuf::from("system.slice"),
                ..scope("mini-c1.scope", "system.slice")
            },
            Unit {
                invocation: Some("not-an-id".into()),
                ..scope("mini-c1.scope", "system.slice")
            },
        ] {
            let msg = bad.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("{:?}", bad.name)), "{bad:?}: {msg}");
        }
        // systemd's own scope is never a container's, whatever the path says.
        let msg = Unit::for_container("c1", Some(Path::new("-.slice::init")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("init.scope"), "{msg}");
    }

    #[test]
    fn a_scope_without_a_recorded_identity_is_never_stopped_or_ours() {
        // A Create that failed before it learnt the scope's identity: the scope of that name
        // may be someone else's. Nothing is asked of systemd (there is none on this host:
        // a connection attempt would fail).
        let dir = tempfile::tempdir().unwrap();
        let unit = scope("mini-c1.scope", "system.slice");
        stop(&unit, dir.path()).unwrap();
        assert!(!is_current(&unit).unwrap());
        assert!(dir.path().exists());
    }

    #[test]
    fn a_silent_bus_fails_the_connection_within_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // Accepts and never answers, like a hung dbus-daemon or systemd.
        let silent = std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(30));
            drop(held);
        });
        let address = format!("unix:path={}", socket.display());
        let (tx, rx) = std::sync::mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let builder = zbus::connection::Builder::address(address.as_str()).unwrap();
            let budget = Budget::of(Duration::from_secs(60));
            let _ = tx.send(Manager::connect_with(builder, "mini-c1.scope", budget).map(drop));
        });
        let result = rx
            .recv_timeout(CONNECT_TIMEOUT + Duration::from_secs(8))
            .expect("the connection to a silent bus did not give up");
        let msg = result.unwrap_err().to_string();
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
        assert!(msg.contains("no answer within"), "{msg}");
        assert!(msg.contains("mini-c1.scope"), "{msg}");
        drop(silent);
    }

    /// A private bus (dbus-daemon) on which a connection owns systemd's name and never
    /// answers: a systemd that hangs after the connection is made. Dropped, the bus goes.
    struct HungSystemd {
        daemon: std::process::Child,
        _owner: Connection,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl HungSystemd {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let address = format!("unix:path={}", dir.path().join("bus").display());
            let daemon = std::process::Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile"])
                .arg(format!("--address={address}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("dbus-daemon (Debian package dbus-daemon; make deps installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            let owner = loop {
                let connected = zbus::blocking::connection::Builder::address(address.as_str())
                    .and_then(|b| b.name(DESTINATION))
                    .and_then(|b| b.build());
                match connected {
                    Ok(conn) => break conn,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "private bus: {e}");
                        sleep(Duration::from_millis(20));
                    }
                }
            };
            HungSystemd {
                daemon,
                _owner: owner,
                address,
                _dir: dir,
            }
        }
    }

    impl Drop for HungSystemd {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    /// Set for `stop_with_a_hung_systemd`: the hung bus is the system bus.
    const HUNG_BUS: &str = "MINI_TEST_HUNG_SYSTEMD_BUS";
    /// Set for `stop_with_a_hung_systemd`: run as the shim's `delete` subcommand.
    const DELETE_SUBCOMMAND: &str = "MINI_TEST_DELETE_SUBCOMMAND";

    /// Run by `stop_against_a_hung_systemd` in a process of its own, whose system bus
    /// is the hung systemd's: stops a scope whose cgroup still holds a process, and prints
    /// how long the stop took.
    #[test]
    #[ignore = "run as a child process by stop_against_a_hung_systemd"]
    fn stop_with_a_hung_systemd() {
        if std::env::var_os(HUNG_BUS).is_none() {
            return;
        }
        if std::env::var_os(DELETE_SUBCOMMAND).is_some() {
            limit_for_delete();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let unit = Unit {
            invocation: Some("0123456789abcdef0123456789abcdef".into()),
            ..scope("mini-c1.scope", "system.slice")
        };
        let started = Instant::now();
        let result = stop(&unit, dir.path());
        println!("stop took {} ms: {result:?}", started.elapsed().as_millis());
    }

    /// Runs `stop_with_a_hung_systemd` in a child process (as the shim's `delete` subcommand
    /// when `delete`): how long the stop took, and its result line.
    fn stop_against_a_hung_systemd(delete: bool) -> (u64, String) {
        let bus = HungSystemd::start();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "cgroups::systemd::tests::stop_with_a_hung_systemd",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HUNG_BUS, "1")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        if delete {
            cmd.env(DELETE_SUBCOMMAND, "1");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("stop took ").map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "no result: {stdout} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let ms: u64 = line.split(' ').next().and_then(|n| n.parse().ok()).unwrap();
        // The stop fails: systemd never answers.
        assert!(line.contains("Err("), "{line}");
        assert!(line.contains("mini-c1.scope"), "{line}");
        (ms, line)
    }

    #[test]
    fn a_stop_in_the_delete_subcommand_ends_within_its_time_limit() {
        let (ms, line) = stop_against_a_hung_systemd(true);
        assert!(
            ms < (STOP_WITHIN + Duration::from_millis(700)).as_millis() as u64,
            "{line}"
        );
    }

    #[test]
    fn a_stop_elsewhere_gives_a_slow_systemd_each_calls_full_time() {
        // The identity call gets its whole CALL_TIMEOUT: a slow but healthy systemd would
        // have answered, and the kill or stop would not have been skipped.
        let (ms, line) = stop_against_a_hung_systemd(false);
        assert!(
            ms >= (CALL_TIMEOUT - Duration::from_millis(100)).as_millis() as u64,
            "{line}"
        );
    }

    /// Where the child of `the_bus_child_dies_with_its_caller` writes its pid.
    const PDEATHSIG_PID_FILE: &str = "MINI_TEST_BUS_CHILD_PID_FILE";

    /// Run by `the_bus_child_dies_with_its_caller` in a process of its own: a bus child
    /// that would block for a minute.
    #[test]
    #[ignore = "run as a child process by the_bus_child_dies_with_its_caller"]
    fn bus_child_that_blocks() {
        let Some(file) = std::env::var_os(PDEATHSIG_PID_FILE) else {
            return;
        };
        let unit = scope("mini-c1.scope", "system.slice");
        let _ = in_child(&unit, "test", || {
            std::fs::write(&file, std::process::id().to_string()).unwrap();
            sleep(Duration::from_secs(60));
            Ok(String::new())
        });
    }

    #[test]
    fn the_bus_child_dies_with_its_caller() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        let mut caller = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cgroups::systemd::tests::bus_child_that_blocks",
                "--ignored",
                "--test-threads=1",
            ])
            .env(PDEATHSIG_PID_FILE, &file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let child: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the bus child never started");
            sleep(Duration::from_millis(20));
        };
        caller.kill().unwrap();
        caller.wait().unwrap();
        // Dead (gone, or a zombie until its new parent reaps it).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .starts_with('Z')
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        let still = alive();
        if still {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(!still, "the bus child {child} outlived its caller");
    }

    #[test]
    fn the_cgroup_record_round_trips_and_a_tampered_one_is_refused() {
        use super::super::{CgroupManager, parse_mountinfo};
        let mountinfo = "31 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hierarchies = parse_mountinfo(mountinfo, Path::new("/sys/fs/cgroup")).unwrap();
        let manager = CgroupManager::systemd_with_hierarchies(
            &hierarchies,
            "c1",
            Some(Path::new("system.slice:mini-test:c1")),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("cgroup.json");
        assert!(CgroupManager::load(&record).unwrap().is_none());
        manager.save(&record).unwrap();
        let loaded = CgroupManager::load(&record).unwrap().unwrap();
        assert_eq!(loaded.systemd_unit(), manager.systemd_unit());
        assert_eq!(loaded.unified_path(), manager.unified_path());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );

        let text = std::fs::read_to_string(&record).unwrap();
        for (from, to) in [
            ("\"mini-test-c1.scope\"", "\"system.slice\""),
            (
                "/sys/fs/cgroup/system.slice/mini-test-c1.scope",
                "/sys/fs/cgroup/system.slice",
            ),
        ] {
            assert!(text.contains(from), "{text}");
            std::fs::write(&record, text.replace(from, to)).unwrap();
            assert!(CgroupManager::load(&record).is_err(), "{from} -> {to}");
        }
    }
}
