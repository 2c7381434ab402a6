//! Loading and validating `config.json`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Process, Spec};

use crate::{Error, Result};

/// Reads `bundle/config.json` and checks what the runtime needs before touching the kernel.
pub fn load(bundle: &Path) -> Result<Spec> {
    let spec = read(bundle)?;
    validate(&spec)?;
    Ok(spec)
}

/// Reads and parses `bundle/config.json` without validating it: what cleanup needs of a
/// spec that Create may have refused. A parse error names the JSON path of the field.
pub fn read(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    parse(&bytes)
}

/// Parses a `config.json` document. An error names the field by its JSON path and says what
/// is wrong with its value, e.g. `config.json: process.capabilities.bounding[2]: no variant
/// for CAP_FOO` or `config.json: process.rlimits[0].type: unknown variant `RLIMIT_BOGUS``:
/// serde_json alone gives only a line and a column.
pub fn parse(json: &[u8]) -> Result<Spec> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "config.json".to_string()
        } else {
            format!("config.json: {path}")
        };
        Error::invalid(field, e.into_inner().to_string())
    })?;
    de.end()
        .map_err(|e| Error::invalid("config.json", e.to_string()))?;
    Ok(spec)
}

/// The spec's `process`, or an error naming the missing field.
pub fn process_of(spec: &Spec) -> Result<&oci_spec::runtime::Process> {
    spec.process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing"))
}

/// The spec's `linux`, or an error naming the missing field.
pub fn linux_of(spec: &Spec) -> Result<&oci_spec::runtime::Linux> {
    spec.linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux", "missing"))
}

/// Checks the parts of the spec that every container needs.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = process_of(spec)?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(Error::invalid("process.args", "empty: nothing to run")),
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    match spec.root() {
        None => return Err(Error::invalid("root", "missing")),
        Some(root) if root.path().as_os_str().is_empty() => {
            return Err(Error::invalid("root.path", "empty"));
        }
        Some(_) => {}
    }
    check_env(process)?;
    for warning in process
        .capabilities()
        .as_ref()
        .map(crate::capabilities::ungranted)
        .unwrap_or_default()
    {
        log::warn!("{warning}");
    }
    if let Some(adj) = process.oom_score_adj()
        && !(-1000..=1000).contains(&adj)
    {
        return Err(Error::invalid(
            "process.oomScoreAdj",
            format!("{adj} is outside -1000..=1000"),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        crate::rlimits::validate(rlimits)?;
    }
    check_mounts(spec)?;
    let Some(linux) = spec.linux() else {
        return Err(Error::invalid(
            "linux",
            "missing: mini runs Linux containers only",
        ));
    };
    check_ids(process, linux)?;
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    check_namespaces(namespaces)?;
    check_mappings(linux)?;
    check_linux_paths(linux)?;
    check_devices(linux)?;
    if let Some(path) = linux.cgroups_path() {
        // The id only matters when the path is absent.
        crate::cgroups::resolve_cgroups_path("container", Some(path))?;
    }
    if let Some(seccomp) = linux.seccomp() {
        check_seccomp(seccomp)?;
    }
    if let Some(resources) = linux.resources() {
        crate::cgroups::check_resources(resources)?;
    }
    check_time_offsets(linux, namespaces)?;
    if let Some(personality) = linux.personality() {
        crate::personality::value(personality)?;
    }
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty())
            && !has_own_namespace(namespaces, LinuxNamespaceType::Uts)?
        {
            return Err(Error::invalid(
                field,
                format!("setting {value:?} needs a UTS namespace of the container's own"),
            ));
        }
    }
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        check_sysctl(key, namespaces)?;
    }
    refuse_unsupported(spec)
}

/// `ociVersion` is REQUIRED and MUST be SemVer 2.0.0 (config.md). Any major version is
/// accepted, as runc does: the fields mini reads are checked one by one below.
fn check_version(version: &str) -> Result<()> {
    if version.is_empty() {
        return Err(Error::invalid(
            "ociVersion",
            "missing or empty: the runtime-spec version the bundle complies with is required",
        ));
    }
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let numbers: Vec<&str> = core.split('.').collect();
    let semver = numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && version[core.len()..]
            .split(['-', '+', '.'])
            .skip(1)
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !semver {
        return Err(Error::invalid(
            "ociVersion",
            format!("{version:?} is not a SemVer 2.0.0 version such as \"1.2.0\""),
        ));
    }
    Ok(())
}

/// Every `process.env` entry is `NAME=value` with a non-empty name (runc refuses the rest).
fn check_env(process: &Process) -> Result<()> {
    for (i, entry) in process.env().iter().flatten().enumerate() {
        match entry.split_once('=') {
            Some((name, _)) if !name.is_empty() && !name.contains('\0') => {}
            _ => {
                return Err(Error::invalid(
                    format!("process.env[{i}]"),
                    format!("{entry:?} is not NAME=value"),
                ));
            }
        }
    }
    Ok(())
}

/// Each `mounts[i].destination` is an absolute path in the container (the path the init
/// resolves below the root; runc 1.1+ also takes a relative one, with a warning).
fn check_mounts(spec: &Spec) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::invalid(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
        check_mount_mappings(i, m)?;
    }
    Ok(())
}

/// An idmapped mount (config.md): `uidMappings` and `gidMappings` both or neither, only on a
/// bind mount, and the `idmap`/`ridmap` options only with them.
fn check_mount_mappings(i: usize, m: &oci_spec::runtime::Mount) -> Result<()> {
    let non_empty = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v: &Vec<_>| !v.is_empty());
    let uid = non_empty(m.uid_mappings());
    let gid = non_empty(m.gid_mappings());
    let opts = crate::rootfs::options::parse(m.options().as_deref().unwrap_or_default());
    if uid != gid {
        let missing = if uid { "gidMappings" } else { "uidMappings" };
        return Err(Error::invalid(
            format!("mounts[{i}].{missing}"),
            "missing: an idmapped mount gives both uidMappings and gidMappings",
        ));
    }
    let typ = m.typ().as_deref().unwrap_or_default();
    let bind = opts.is_bind || typ == "bind" || typ == "rbind";
    if uid && !bind {
        return Err(Error::invalid(
            format!("mounts[{i}].uidMappings"),
            "idmapped mounts are bind mounts (options \"bind\" or \"rbind\")",
        ));
    }
    if opts.idmap.is_some() && !uid {
        return Err(Error::invalid(
            format!("mounts[{i}].options"),
            "\"idmap\"/\"ridmap\" need the mount's uidMappings and gidMappings",
        ));
    }
    for (name, maps) in [
        ("uidMappings", m.uid_mappings()),
        ("gidMappings", m.gid_mappings()),
    ] {
        for (j, map) in maps.iter().flatten().enumerate() {
            if map.size() == 0 {
                return Err(Error::invalid(
                    format!("mounts[{i}].{name}[{j}].size"),
                    "0: an empty range",
                ));
            }
        }
    }
    Ok(())
}

/// No namespace type twice (config-linux.md: "duplicated namespaces ... MUST generate an
/// error"), and a namespace `path` is absolute. Whether it exists and names a namespace of
/// the right type is checked when it is joined: an exec validates the container's spec
/// again, and a path such as a removed `/run/netns/x` must not stop it.
fn check_namespaces(namespaces: &[LinuxNamespace]) -> Result<()> {
    for (i, ns) in namespaces.iter().enumerate() {
        if let Some(first) = namespaces[..i].iter().position(|n| n.typ() == ns.typ()) {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}].type"),
                format!(
                    "{:?} is listed twice (also linux.namespaces[{first}])",
                    ns_file(ns.typ())
                ),
            ));
        }
        if let Some(path) = ns.path()
            && !path.as_os_str().is_empty()
        {
            let field = format!("linux.namespaces[{i}].path");
            if !path.is_absolute() {
                return Err(Error::invalid(
                    field,
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
    }
    Ok(())
}

/// The ranges of one id mapping list do not overlap, neither in the container nor on the
/// host (the kernel would refuse the map file later, after the namespaces exist). Mappings
/// without a user namespace are ignored, as runc 1.1 ignores them.
fn check_mappings(linux: &Linux) -> Result<()> {
    for (name, maps) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        let maps = maps.as_deref().unwrap_or_default();
        let range = |start: u32, size: u32| (u64::from(start), u64::from(start) + u64::from(size));
        let overlap = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
        for (i, m) in maps.iter().enumerate() {
            for (j, earlier) in maps[..i].iter().enumerate() {
                for (side, this, other) in [
                    (
                        "containerID",
                        range(m.container_id(), m.size()),
                        range(earlier.container_id(), earlier.size()),
                    ),
                    (
                        "hostID",
                        range(m.host_id(), m.size()),
                        range(earlier.host_id(), earlier.size()),
                    ),
                ] {
                    if overlap(this, other) {
                        return Err(Error::invalid(
                            format!("{name}[{i}].{side}"),
                            format!(
                                "{}..{} overlaps {name}[{j}] ({}..{})",
                                this.0, this.1, other.0, other.1
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `linux.maskedPaths` and `linux.readonlyPaths` entries MUST be absolute paths in the
/// container (config-linux.md).
fn check_linux_paths(linux: &Linux) -> Result<()> {
    for (name, paths) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, path) in paths.iter().flatten().enumerate() {
            if !Path::new(path).is_absolute() {
                return Err(Error::invalid(
                    format!("{name}[{i}]"),
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
    }
    Ok(())
}

/// A `linux.devices` entry is a node to create: an absolute path and a node type (c, b, u
/// or p; "a" exists only for cgroup device rules).
fn check_devices(linux: &Linux) -> Result<()> {
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() {
            return Err(Error::invalid(
                format!("linux.devices[{i}].path"),
                format!("{:?} is not an absolute path", d.path()),
            ));
        }
        if d.typ() == oci_spec::runtime::LinuxDeviceType::A {
            return Err(Error::invalid(
                format!("linux.devices[{i}].type"),
                "\"a\" is not a node type (c, b, u or p)",
            ));
        }
    }
    Ok(())
}

/// What `linux.seccomp` must hold beyond its types (actions, architectures and operators are
/// checked by parsing): actions mini can load (`SCMP_ACT_NOTIFY` with a listener, see
/// `seccomp::check_actions`) with an `errnoRet` that fits, every
/// rule naming at least one syscall (config-linux.md), each name non-empty, and argument
/// indexes 0..=5.
fn check_seccomp(seccomp: &oci_spec::runtime::LinuxSeccomp) -> Result<()> {
    crate::seccomp::check_actions(seccomp)?;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        if rule.names().is_empty() {
            return Err(Error::invalid(
                format!("linux.seccomp.syscalls[{i}].names"),
                "empty: a rule names at least one syscall",
            ));
        }
        if let Some(n) = rule.names().iter().position(|n| n.is_empty()) {
            return Err(Error::invalid(
                format!("linux.seccomp.syscalls[{i}].names[{n}]"),
                "an empty syscall name",
            ));
        }
        for (a, arg) in rule.args().iter().flatten().enumerate() {
            if arg.index() > 5 {
                return Err(Error::invalid(
                    format!("linux.seccomp.syscalls[{i}].args[{a}].index"),
                    format!("{} is not an argument 0..=5", arg.index()),
                ));
            }
        }
    }
    Ok(())
}

/// The clocks a time namespace offsets, as `/proc/self/timens_offsets` names them.
pub const TIME_NAMESPACE_CLOCKS: &[&str] = &["monotonic", "boottime"];

/// `linux.timeOffsets` needs a new time namespace (offsets can only be written before the
/// first process enters one, so not for a joined one), names only the clocks a time
/// namespace has, and `nanosecs` below one second.
fn check_time_offsets(linux: &Linux, namespaces: &[LinuxNamespace]) -> Result<()> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let new_time = namespaces.iter().any(|n| {
        n.typ() == LinuxNamespaceType::Time
            && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
    });
    if !new_time {
        return Err(Error::invalid(
            "linux.timeOffsets",
            "needs a new time namespace of the container's own (type \"time\" without a path \
             in linux.namespaces)",
        ));
    }
    for (clock, offset) in offsets {
        let field = format!("linux.timeOffsets[{clock:?}]");
        if !TIME_NAMESPACE_CLOCKS.contains(&clock.as_str()) {
            return Err(Error::invalid(
                field,
                format!(
                    "not a clock of a time namespace ({})",
                    TIME_NAMESPACE_CLOCKS.join(", ")
                ),
            ));
        }
        if offset.nanosecs().is_some_and(|n| n >= 1_000_000_000) {
            return Err(Error::invalid(
                format!("{field}.nanosecs"),
                "must be below 1000000000",
            ));
        }
    }
    Ok(())
}

/// The largest uid or gid mini accepts (runc's rule): ids above it are -1 or negative to
/// some kernel interfaces, and `setresuid(4294967295)` changes nothing, leaving root.
pub const MAX_ID: u32 = i32::MAX as u32;

/// Every id of the process and of the id mappings lies in 0..=[`MAX_ID`], mapped ranges
/// included.
fn check_ids(process: &Process, linux: &Linux) -> Result<()> {
    let check = |field: String, id: u32| {
        if id > MAX_ID {
            return Err(Error::invalid(
                field,
                format!("{id} is outside 0..={MAX_ID}"),
            ));
        }
        Ok(())
    };
    let user = process.user();
    check("process.user.uid".into(), user.uid())?;
    check("process.user.gid".into(), user.gid())?;
    for (i, gid) in user.additional_gids().iter().flatten().enumerate() {
        check(format!("process.user.additionalGids[{i}]"), *gid)?;
    }
    for (name, maps) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        for (i, m) in maps.iter().flatten().enumerate() {
            let field = |f: &str| format!("{name}[{i}].{f}");
            if m.size() == 0 {
                return Err(Error::invalid(field("size"), "0: an empty range"));
            }
            let last = |start: u32| u64::from(start) + u64::from(m.size()) - 1;
            for (f, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
                check(field(f), start)?;
                if last(start) > u64::from(MAX_ID) {
                    return Err(Error::invalid(
                        field("size"),
                        format!("{f} {start} + size {} ends above {MAX_ID}", m.size()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The `/proc/self/ns` name of a namespace type.
fn ns_file(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Whether the container gets a namespace of `typ` that is not the caller's: a new one, or
/// one joined by a path that names another namespace than the caller's own.
pub fn has_own_namespace(namespaces: &[LinuxNamespace], typ: LinuxNamespaceType) -> Result<bool> {
    let Some(ns) = namespaces.iter().find(|ns| ns.typ() == typ) else {
        return Ok(false);
    };
    let Some(path) = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(true);
    };
    let id = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| Error::io("stat namespace", p, e))
    };
    let own = format!("/proc/self/ns/{}", ns_file(typ));
    Ok(id(path)? != id(Path::new(&own))?)
}

/// IPC sysctls the kernel keeps per IPC namespace (besides `fs.mqueue.*`).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A `linux.sysctl` key may be set only if the kernel keeps it per namespace and the
/// container has that namespace of its own (runc's rule): anything else would change the
/// host (`kernel.core_pattern` runs a program as root on the host).
pub fn check_sysctl(key: &str, namespaces: &[LinuxNamespace]) -> Result<()> {
    let field = format!("linux.sysctl[{key:?}]");
    if key.is_empty()
        || key.starts_with(['.', '/'])
        || key
            .split(['.', '/'])
            .any(|part| part.is_empty() || part == "..")
    {
        return Err(Error::invalid(field, "not a sysctl name"));
    }
    // `net/ipv4/ip_forward` is `net.ipv4.ip_forward`.
    let dotted = if key.contains('/') {
        key.replace('/', ".")
    } else {
        key.to_string()
    };
    let needs = if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if dotted.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if dotted == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else if dotted == "kernel.hostname" {
        return Err(Error::invalid(
            field,
            "set the hostname with the `hostname` field",
        ));
    } else {
        return Err(Error::invalid(
            field,
            "not a namespaced sysctl: it would change the host's kernel",
        ));
    };
    if !has_own_namespace(namespaces, needs)? {
        return Err(Error::invalid(
            field,
            format!(
                "needs a {} namespace of the container's own; it would change the host's",
                ns_file(needs)
            ),
        ));
    }
    Ok(())
}

/// The path below `/proc/sys` of a sysctl key checked by [`check_sysctl`].
pub fn sysctl_path(key: &str) -> PathBuf {
    if key.contains('/') {
        PathBuf::from(key)
    } else {
        PathBuf::from(key.replace('.', "/"))
    }
}

/// What mini cannot do yet fails here, by name, rather than being silently ignored.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks)?;
    }
    let refuse = |field: &str, present: bool| {
        if present {
            Err(Error::invalid(
                field,
                "not supported by mini; refused rather than ignored",
            ))
        } else {
            Ok(())
        }
    };
    refuse("solaris", spec.solaris().is_some())?;
    refuse("windows", spec.windows().is_some())?;
    refuse("vm", spec.vm().is_some())?;
    refuse("zos", spec.zos().is_some())?;
    if let Some(linux) = spec.linux() {
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        if linux.intel_rdt().is_some() {
            return Err(Error::invalid(
                "linux.intelRdt",
                if Path::new(RESCTRL).exists() {
                    "Intel RDT (resctrl) is not supported by mini yet"
                } else {
                    "this host has no Intel RDT: /sys/fs/resctrl is not there"
                },
            ));
        }
        refuse("linux.memoryPolicy", linux.memory_policy().is_some())?;
        refuse(
            "linux.netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        )?;
        if non_empty(linux.mount_label()) {
            return Err(Error::invalid(
                "linux.mountLabel",
                if selinux_enabled() {
                    "SELinux mount labels are not supported by mini yet"
                } else {
                    "SELinux is not enabled on this host (no /sys/fs/selinux)"
                },
            ));
        }
        refuse(
            "linux.resources.rdma",
            linux
                .resources()
                .as_ref()
                .and_then(|r| r.rdma().as_ref())
                .is_some_and(|r| !r.is_empty()),
        )?;
    }
    if let Some(process) = spec.process() {
        crate::sched::validate(process)?;
        // `execCPUAffinity` applies to execs only (config.md); the init ignores it.
        check_lsm_labels(process)?;
    }
    Ok(())
}

/// Where the resctrl filesystem of Intel RDT is mounted.
const RESCTRL: &str = "/sys/fs/resctrl";

/// Whether AppArmor is enabled on this host (as runc and libapparmor tell).
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").is_dir()
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.trim() == "Y")
}

/// Whether SELinux is enabled on this host (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// A process's AppArmor profile or SELinux label needs that LSM on the host: refused by
/// name where it is not there, rather than run unconfined.
pub fn check_lsm_labels(process: &Process) -> Result<()> {
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
        && !apparmor_enabled()
    {
        return Err(Error::invalid(
            "process.apparmorProfile",
            format!(
                "{profile:?}: AppArmor is not enabled on this host \
                 (no /sys/kernel/security/apparmor)"
            ),
        ));
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty())
        && !selinux_enabled()
    {
        return Err(Error::invalid(
            "process.selinuxLabel",
            format!("{label:?}: SELinux is not enabled on this host (no /sys/fs/selinux)"),
        ));
    }
    Ok(())
}

/// The container's root filesystem on the host: `root.path`, relative to the bundle unless
/// absolute.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, SpecBuilder};

    #[test]
    fn default_spec_is_valid() {
        validate(&Spec::default()).unwrap();
    }

    #[test]
    fn empty_args_are_rejected_naming_the_field() {
        let process = ProcessBuilder::default()
            .args(Vec::<String>::new())
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn lsm_labels_are_refused_by_name_and_bad_hooks_name_their_field() {
        let hook = oci_spec::runtime::HookBuilder::default()
            .path("bin/true")
            .build()
            .unwrap();
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().hooks(hooks).build().unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("hooks.createRuntime[0].path"), "{err}");

        let process = ProcessBuilder::default()
            .apparmor_profile("docker-default")
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        assert!(
            validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("process.apparmorProfile")
        );
    }

    fn ns(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut b = oci_spec::runtime::LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().unwrap()
    }

    /// The default spec with `namespaces` and `edit` applied to its `linux`.
    fn with_linux(namespaces: Vec<LinuxNamespace>, edit: impl FnOnce(&mut Linux)) -> Spec {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_namespaces(Some(namespaces));
        edit(&mut linux);
        spec.set_linux(Some(linux));
        spec.set_hostname(None);
        spec
    }

    fn sysctl_spec(key: &str, namespaces: Vec<LinuxNamespace>) -> Spec {
        with_linux(namespaces, |l| {
            l.set_sysctl(Some([(key.to_string(), "1".to_string())].into()));
        })
    }

    #[track_caller]
    fn refused_naming(spec: &Spec, names: &[&str]) {
        let err = validate(spec).expect_err("must be refused").to_string();
        for name in names {
            assert!(err.contains(name), "{err} does not name {name}");
        }
    }

    #[test]
    fn sysctls_of_the_host_are_refused_naming_the_key() {
        let all_new = || {
            [
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Pid,
            ]
            .into_iter()
            .map(|t| ns(t, None))
            .collect::<Vec<_>>()
        };
        for key in [
            "kernel.core_pattern",
            "vm.overcommit_memory",
            "kernel/core_pattern",
        ] {
            refused_naming(&sysctl_spec(key, all_new()), &["linux.sysctl", key]);
        }
        refused_naming(
            &sysctl_spec("kernel.hostname", all_new()),
            &["kernel.hostname"],
        );
        for key in ["", "net..x", "net/../kernel/core_pattern", ".net.x"] {
            refused_naming(&sysctl_spec(key, all_new()), &["linux.sysctl"]);
        }
        let mount_only = || vec![ns(LinuxNamespaceType::Mount, None)];
        for key in [
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "kernel.domainname",
            "net.ipv4.ip_forward",
        ] {
            refused_naming(&sysctl_spec(key, mount_only()), &["linux.sysctl", key]);
            validate(&sysctl_spec(key, all_new())).unwrap();
        }
        // A namespace joined by path counts only if it is not the caller's own.
        let joined_host = vec![
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
        ];
        refused_naming(
            &sysctl_spec("net.ipv4.ip_forward", joined_host),
            &["net.ipv4.ip_forward"],
        );
    }

    #[test]
    fn hostname_and_domainname_need_a_uts_namespace_of_their_own() {
        for field in ["hostname", "domainname"] {
            let set = |spec: &mut Spec| {
                if field == "hostname" {
                    spec.set_hostname(Some("box".into()));
                } else {
                    spec.set_domainname(Some("box".into()));
                }
            };
            let mut spec = with_linux(vec![ns(LinuxNamespaceType::Mount, None)], |_| {});
            set(&mut spec);
            refused_naming(&spec, &[field]);
            let mut spec = with_linux(
                vec![
                    ns(LinuxNamespaceType::Mount, None),
                    ns(LinuxNamespaceType::Uts, Some("/proc/self/ns/uts")),
                ],
                |_| {},
            );
            set(&mut spec);
            refused_naming(&spec, &[field]);
            let mut spec = with_linux(
                vec![
                    ns(LinuxNamespaceType::Mount, None),
                    ns(LinuxNamespaceType::Uts, None),
                ],
                |_| {},
            );
            set(&mut spec);
            validate(&spec).unwrap();
        }
    }

    #[test]
    fn ids_above_2147483647_are_refused_naming_the_field() {
        let user_spec = |uid: u32, gid: u32, extra: Vec<u32>| {
            let mut spec = Spec::default();
            let mut process = spec.process().clone().unwrap();
            let mut user = process.user().clone();
            user.set_uid(uid)
                .set_gid(gid)
                .set_additional_gids(Some(extra));
            process.set_user(user);
            spec.set_process(Some(process));
            spec
        };
        refused_naming(
            &user_spec(u32::MAX, 0, vec![]),
            &["process.user.uid", "4294967295"],
        );
        refused_naming(
            &user_spec(0, 1 << 31, vec![]),
            &["process.user.gid", "2147483648"],
        );
        refused_naming(
            &user_spec(0, 0, vec![1, u32::MAX]),
            &["process.user.additionalGids[1]"],
        );
        validate(&user_spec(MAX_ID, MAX_ID, vec![MAX_ID])).unwrap();

        let map = |container: u32, host: u32, size: u32| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(container)
                .host_id(host)
                .size(size)
                .build()
                .unwrap()
        };
        let mapped = |uids: Vec<oci_spec::runtime::LinuxIdMapping>, gids| {
            let namespaces = vec![
                ns(LinuxNamespaceType::Mount, None),
                ns(LinuxNamespaceType::User, None),
            ];
            with_linux(namespaces, |l| {
                l.set_uid_mappings(Some(uids)).set_gid_mappings(Some(gids));
            })
        };
        let ok = || vec![map(0, 100000, 65536)];
        validate(&mapped(ok(), ok())).unwrap();
        refused_naming(
            &mapped(vec![map(u32::MAX, 0, 1)], ok()),
            &["linux.uidMappings[0].containerID"],
        );
        refused_naming(
            &mapped(ok(), vec![map(0, u32::MAX, 1)]),
            &["linux.gidMappings[0].hostID"],
        );
        refused_naming(
            &mapped(vec![map(0, MAX_ID, 2)], ok()),
            &["linux.uidMappings[0].size"],
        );
        refused_naming(
            &mapped(vec![map(0, 0, 0)], ok()),
            &["linux.uidMappings[0].size"],
        );
    }

    #[test]
    fn fields_mini_does_not_apply_are_refused_by_name() {
        let json = |patch: serde_json::Value| {
            let mut spec = serde_json::to_value(Spec::default()).unwrap();
            merge(&mut spec, patch);
            serde_json::from_value::<Spec>(spec).unwrap()
        };
        let cases = [
            (
                "linux.intelRdt",
                serde_json::json!({"linux": {"intelRdt": {"closID": "x"}}}),
            ),
            (
                "linux.resources.rdma",
                serde_json::json!({"linux": {"resources": {"rdma": {"mlx5_0": {"hcaHandles": 3}}}}}),
            ),
            (
                "linux.timeOffsets",
                serde_json::json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1}}}}),
            ),
            (
                "linux.memoryPolicy",
                serde_json::json!({"linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}}}),
            ),
            (
                "linux.mountLabel",
                serde_json::json!({"linux": {"mountLabel": "system_u:x"}}),
            ),
            (
                "linux.netDevices",
                serde_json::json!({"linux": {"netDevices": {"eth1": {}}}}),
            ),
            ("vm", serde_json::json!({"vm": {"kernel": {"path": "/k"}}})),
            (
                "windows",
                serde_json::json!({"windows": {"layerFolders": []}}),
            ),
        ];
        for (field, patch) in cases {
            refused_naming(&json(patch), &[field]);
        }
        // Applied now: a personality, and time offsets of a new time namespace.
        validate(&json(serde_json::json!({
            "linux": {"personality": {"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]}}
        })))
        .unwrap();
        let time = |offsets: serde_json::Value| {
            json(serde_json::json!({"linux": {
                "namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "time"}],
                "timeOffsets": offsets,
            }}))
        };
        validate(&time(
            serde_json::json!({"monotonic": {"secs": -5}, "boottime": {"secs": 9}}),
        ))
        .unwrap();
        refused_naming(
            &time(serde_json::json!({"realtime": {"secs": 1}})),
            &["linux.timeOffsets[\"realtime\"]"],
        );
        refused_naming(
            &time(serde_json::json!({"boottime": {"nanosecs": 1_000_000_000u32}})),
            &["linux.timeOffsets[\"boottime\"].nanosecs"],
        );
        // What ctr and CRI send when these are unset: empty values are fine.
        validate(&json(serde_json::json!({
            "linux": {"mountLabel": "", "timeOffsets": {}, "resources": {"rdma": {}}}
        })))
        .unwrap();
    }

    fn merge(into: &mut serde_json::Value, patch: serde_json::Value) {
        match (into, patch) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// The default spec as JSON with `patch` merged in, then parsed and validated.
    fn load_patched(patch: serde_json::Value) -> Result<Spec> {
        let mut json = serde_json::to_value(Spec::default()).unwrap();
        merge(&mut json, patch);
        let spec = parse(json.to_string().as_bytes())?;
        validate(&spec)?;
        Ok(spec)
    }

    #[track_caller]
    fn refused_with(patch: serde_json::Value, names: &[&str]) {
        let err = load_patched(patch.clone())
            .expect_err(&format!("{patch} must be refused"))
            .to_string();
        for name in names {
            assert!(err.contains(name), "{patch}: {err} does not name {name}");
        }
    }

    #[test]
    fn parse_errors_name_the_json_path_and_the_value() {
        use serde_json::json;
        let caps = json!(["CAP_CHOWN", "CAP_KILL", "CAP_FOO"]);
        refused_with(
            json!({"process": {"capabilities": {"bounding": caps}}}),
            &["config.json: process.capabilities.bounding[2]", "CAP_FOO"],
        );
        refused_with(
            json!({"process": {"rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}}),
            &["process.rlimits[0].type", "RLIMIT_BOGUS"],
        );
        refused_with(
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_MAYBE"}}}),
            &["linux.seccomp.defaultAction", "SCMP_ACT_MAYBE"],
        );
        refused_with(
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]}}}),
            &["linux.seccomp.architectures[1]", "SCMP_ARCH_Z80"],
        );
        refused_with(
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE"}]}}}),
            &["linux.seccomp.syscalls[0].action", "SCMP_ACT_NOPE"],
        );
        refused_with(
            json!({"linux": {"personality": {"domain": "LINUX64"}}}),
            &["linux.personality.domain", "LINUX64"],
        );
        refused_with(
            json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "bogus"}]}}),
            &["linux.namespaces[1].type", "bogus"],
        );
        refused_with(
            json!({"linux": {"devices": [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}]}}),
            &["linux.devices[0].type", "z"],
        );
        refused_with(
            json!({"process": {"user": {"uid": "root"}}}),
            &["process.user.uid", "root"],
        );
        refused_with(json!({"process": {"args": "sh"}}), &["process.args"]);
        let err = parse(b"{\"ociVersion\": \"1.0.0\",")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        let err = parse(b"{} []").unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn read_tells_a_missing_file_from_one_that_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Err(Error::Io { .. })));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process": {"args": 1}}"#,
        )
        .unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json: process.args"), "{err}");
    }

    #[test]
    fn malformed_fields_are_refused_by_name() {
        use serde_json::json;
        let cases = [
            (json!({"ociVersion": ""}), "ociVersion"),
            (json!({"ociVersion": "1.0"}), "ociVersion"),
            (json!({"ociVersion": "one"}), "ociVersion"),
            (json!({"root": {"path": ""}}), "root.path"),
            (
                json!({"process": {"env": ["PATH=/bin", "NOEQUALS"]}}),
                "process.env[1]",
            ),
            (json!({"process": {"env": ["=x"]}}), "process.env[0]"),
            (
                json!({"mounts": [{"destination": "tmp", "type": "tmpfs", "source": "tmpfs"}]}),
                "mounts[0].destination",
            ),
            (
                json!({"linux": {"maskedPaths": ["/proc/kcore", "proc/keys"]}}),
                "linux.maskedPaths[1]",
            ),
            (
                json!({"linux": {"readonlyPaths": ["proc/sys"]}}),
                "linux.readonlyPaths[0]",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "mount"}]}}),
                "linux.namespaces[2].type",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "net", "path": "run/netns/x"}]}}),
                "linux.namespaces[1]",
            ),
            (
                json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1}}}}),
                "linux.timeOffsets",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 100},
                                    {"containerID": 50, "hostID": 200000, "size": 10}],
                    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}]}}),
                "linux.uidMappings[1].containerID",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}],
                    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 10},
                                    {"containerID": 10, "hostID": 100005, "size": 10}]}}),
                "linux.gidMappings[1].hostID",
            ),
            (
                json!({"linux": {"devices": [{"path": "/dev/all", "type": "a"}]}}),
                "linux.devices[0].type",
            ),
            (
                json!({"linux": {"devices": [{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]}}),
                "linux.devices[0].path",
            ),
            (
                json!({"linux": {"cgroupsPath": "/../../etc"}}),
                "linux.cgroupsPath",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}}}),
                "linux.seccomp.syscalls[0].names",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]}}}),
                "linux.seccomp.syscalls[0].names[1]",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}}}),
                "linux.seccomp.syscalls[0].args[0].index",
            ),
            (
                json!({"process": {"rlimits": [
                    {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                    {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2}]}}),
                "process.rlimits[1].type",
            ),
            (
                json!({"process": {"rlimits": [{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]}}),
                "process.rlimits[0].soft",
            ),
            (
                json!({"process": {"oomScoreAdj": 1001}}),
                "process.oomScoreAdj",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}}}),
                "linux.seccomp.syscalls[0].action",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}}),
                "linux.seccomp.defaultAction",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}}}),
                "linux.seccomp.listenerMetadata",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}}),
                "linux.seccomp.syscalls[0].action",
            ),
        ];
        for (patch, field) in cases {
            refused_with(patch, &[field]);
        }
    }

    #[test]
    fn what_the_spec_and_runc_accept_passes() {
        use serde_json::json;
        for patch in [
            json!({"ociVersion": "1.0.2-dev"}),
            json!({"ociVersion": "1.2.0"}),
            json!({"ociVersion": "2.0.0"}),
            json!({"ociVersion": "1.1.0-rc.1+build.5"}),
            // Ignored without a notifying rule (config-linux.md).
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l"}}}),
            json!({"process": {"user": {"uid": 0, "gid": 0, "umask": 18}}}),
            json!({"process": {"env": ["EMPTY=", "A=b=c"]}}),
            json!({"linux": {"resources": {"memory": {}, "cpu": {}, "pids": null, "devices": []}}}),
            json!({"hostname": null, "linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 10},
                                {"containerID": 10, "hostID": 100010, "size": 10}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}]}}),
            json!({"linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}}),
            json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["no_such_syscall_yet"], "action": "SCMP_ACT_ERRNO"}]}}}),
            json!({"process": {"capabilities": {"ambient": ["CAP_KILL"], "bounding": ["CAP_KILL"]}}}),
            json!({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
        ] {
            load_patched(patch.clone()).unwrap_or_else(|e| panic!("{patch}: {e}"));
        }
    }

    #[test]
    fn relative_root_is_inside_the_bundle() {
        let spec = Spec::default();
        assert_eq!(
            rootfs_path(&spec, Path::new("/b")),
            PathBuf::from("/b/rootfs")
        );
    }
}
