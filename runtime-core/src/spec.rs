//! Loading and validating `config.json`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Process, Spec};

use crate::{Error, Result};

/// Reads `bundle/config.json` and checks what the runtime needs before touching the kernel.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| Error::invalid("config.json", format!("{}: {e}", path.display())))?;
    validate(&spec)?;
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
    if spec.root().is_none() {
        return Err(Error::invalid("root", "missing"));
    }
    let Some(linux) = spec.linux() else {
        return Err(Error::invalid(
            "linux",
            "missing: mini runs Linux containers only",
        ));
    };
    check_ids(process, linux)?;
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
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
        let any =
            |h: &Option<Vec<oci_spec::runtime::Hook>>| h.as_ref().is_some_and(|v| !v.is_empty());
        #[allow(deprecated)]
        let prestart = any(hooks.prestart());
        if prestart
            || any(hooks.create_runtime())
            || any(hooks.create_container())
            || any(hooks.start_container())
            || any(hooks.poststart())
            || any(hooks.poststop())
        {
            return Err(Error::invalid(
                "hooks",
                "OCI hooks are not supported by mini yet",
            ));
        }
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
        refuse("linux.intelRdt", linux.intel_rdt().is_some())?;
        refuse("linux.personality", linux.personality().is_some())?;
        refuse("linux.memoryPolicy", linux.memory_policy().is_some())?;
        refuse(
            "linux.timeOffsets",
            linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()),
        )?;
        refuse(
            "linux.netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        )?;
        refuse("linux.mountLabel", non_empty(linux.mount_label()))?;
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
        refuse("process.ioPriority", process.io_priority().is_some())?;
        refuse("process.scheduler", process.scheduler().is_some())?;
        refuse(
            "process.execCPUAffinity",
            process.exec_cpu_affinity().is_some(),
        )?;
        if process
            .apparmor_profile()
            .as_deref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(Error::invalid(
                "process.apparmorProfile",
                "AppArmor profiles are not supported by mini yet",
            ));
        }
        if process
            .selinux_label()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
        {
            return Err(Error::invalid(
                "process.selinuxLabel",
                "SELinux labels are not supported by mini yet",
            ));
        }
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
    fn hooks_and_lsm_labels_are_refused_by_name() {
        let hook = oci_spec::runtime::HookBuilder::default()
            .path("/bin/true")
            .build()
            .unwrap();
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().hooks(hooks).build().unwrap();
        assert!(validate(&spec).unwrap_err().to_string().contains("hooks"));

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
            with_linux(vec![ns(LinuxNamespaceType::Mount, None)], |l| {
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
                "linux.personality",
                serde_json::json!({"linux": {"personality": {"domain": "LINUX32"}}}),
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
            (
                "process.ioPriority",
                serde_json::json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}}}),
            ),
            (
                "process.scheduler",
                serde_json::json!({"process": {"scheduler": {"policy": "SCHED_IDLE"}}}),
            ),
            (
                "process.execCPUAffinity",
                serde_json::json!({"process": {"execCPUAffinity": {"initial": "0"}}}),
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

    #[test]
    fn relative_root_is_inside_the_bundle() {
        let spec = Spec::default();
        assert_eq!(
            rootfs_path(&spec, Path::new("/b")),
            PathBuf::from("/b/rootfs")
        );
    }
}
