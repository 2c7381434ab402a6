//! The runtime-spec features document (`features.json`) of this build on this host, shared
//! by the shim's `-info` and the `mini features` command. Every list in it is what the
//! runtime core accepts: each candidate name the runtime-spec defines is tried against the
//! core's parsers (the seccomp compiler, the mount option table, the capability and namespace
//! tables) and listed only when they take it.

use oci_spec::runtime::{
    Capability, Features, FeaturesBuilder, IDMapBuilder, LinuxFeatureBuilder, LinuxNamespaceType,
    MountExtensionsBuilder,
};

use crate::{Error, Result, namespaces, rootfs, seccomp};

/// The runtime-spec versions mini reads configs of.
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.2.1";

/// The runtime-spec features document of this build on this host.
pub fn features() -> Result<Features> {
    let bad = |e: oci_spec::OciSpecError| Error::Setup(format!("build runtime features: {e}"));
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespace_types())
        .capabilities(capability_names())
        .cgroup(
            oci_spec::runtime::CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(true)
                .systemd_user(false)
                .rdma(false)
                .build()
                .map_err(bad)?,
        )
        .seccomp(seccomp_features()?)
        .apparmor(
            oci_spec::runtime::ApparmorBuilder::default()
                .enabled(false)
                .build()
                .map_err(bad)?,
        )
        .selinux(
            oci_spec::runtime::SelinuxBuilder::default()
                .enabled(false)
                .build()
                .map_err(bad)?,
        )
        .intel_rdt(
            oci_spec::runtime::IntelRdtBuilder::default()
                .enabled(false)
                .build()
                .map_err(bad)?,
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                // Idmapped bind mounts, with and without a user namespace (the setup helper
                // makes them on the host's side: rootfs/mounts.rs `prepare_idmapped_binds`).
                // containerd 2.x refuses an idmapped mount itself when this is off.
                .idmap(IDMapBuilder::default().enabled(true).build().map_err(bad)?)
                .build()
                .map_err(bad)?,
        )
        .build()
        .map_err(bad)?;
    FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(OCI_VERSION_MAX)
        .hooks(
            crate::hooks::Stage::ALL
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>(),
        )
        .mount_options(mount_options())
        .linux(linux)
        .build()
        .map_err(bad)
}

/// The namespace types the runtime core can create (it has a clone flag for each).
fn namespace_types() -> Vec<LinuxNamespaceType> {
    use LinuxNamespaceType as T;
    [
        T::Mount,
        T::Cgroup,
        T::Uts,
        T::Ipc,
        T::User,
        T::Pid,
        T::Network,
        T::Time,
    ]
    .into_iter()
    .filter(|t| !namespaces::clone_flag(*t).is_empty())
    .collect()
}

/// The capability names both the spec reader (oci-spec's `Capability`) and the capability
/// code (the `caps` crate) know.
fn capability_names() -> Vec<String> {
    let mut names: Vec<String> = caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .filter(|name| serde_json::from_value::<Capability>(name.clone().into()).is_ok())
        .collect();
    names.sort();
    names
}

/// The runtime-spec's mount option words (the `mountOptions` of runc's features) that the
/// rootfs code's option table takes as flags rather than passing them on as filesystem data.
fn mount_options() -> Vec<String> {
    const CANDIDATES: &[&str] = &[
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "iversion",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "noiversion",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "ratime",
        "rbind",
        "rdev",
        "rdiratime",
        "relatime",
        "remount",
        "rexec",
        "ridmap",
        "rnoatime",
        "rnodev",
        "rnodiratime",
        "rnoexec",
        "rnorelatime",
        "rnostrictatime",
        "rnosuid",
        "rnosymfollow",
        "ro",
        "rprivate",
        "rrelatime",
        "rro",
        "rrw",
        "rshared",
        "rslave",
        "rstrictatime",
        "rsuid",
        "rsymfollow",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "tmpcopyup",
        "unbindable",
    ];
    CANDIDATES
        .iter()
        .filter(|word| rootfs::options::parse(&[**word]).data.is_empty())
        .map(|word| word.to_string())
        .collect()
}

/// The seccomp actions, operators, architectures and flags the seccomp compiler takes: each
/// is compiled in a one-rule profile (the filter is built, never loaded).
fn seccomp_features() -> Result<oci_spec::runtime::Seccomp> {
    const ACTIONS: &[&str] = &[
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ];
    const OPERATORS: &[&str] = &[
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    const ARCHS: &[&str] = &[
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH",
        "SCMP_ARCH_SHEB",
    ];
    const FLAGS: &[&str] = &[
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ];
    let compiles = |profile: serde_json::Value| {
        seccomp::parse(&profile.to_string())
            .ok()
            .is_some_and(|s| seccomp::compile(&s).is_ok())
    };
    let rule = |action: &str, op: &str| {
        serde_json::json!({"names": ["getpid"], "action": action,
            "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": op}]})
    };
    let actions: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| match *a {
            // A rule's action only (never the default), and only with an agent's socket.
            "SCMP_ACT_NOTIFY" => compiles(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/seccomp-agent.sock",
                "syscalls": [rule(a, "SCMP_CMP_EQ")]})),
            _ => {
                compiles(serde_json::json!({"defaultAction": a}))
                    && compiles(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [rule(a, "SCMP_CMP_EQ")]}))
            }
        })
        .collect();
    let operators: Vec<&str> = OPERATORS
        .iter()
        .copied()
        .filter(|op| {
            compiles(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [rule("SCMP_ACT_ERRNO", op)]}))
        })
        .collect();
    let archs: Vec<&str> = ARCHS
        .iter()
        .copied()
        .filter(|a| {
            compiles(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [a]}))
        })
        .collect();
    let supported: Vec<&str> = FLAGS
        .iter()
        .copied()
        .filter(|f| compiles(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [f]})))
        .collect();
    let doc = serde_json::json!({
        "enabled": true,
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": FLAGS,
        "supportedFlags": supported,
    });
    serde_json::from_value(doc).map_err(|e| Error::Setup(format!("build seccomp features: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_list_what_the_code_accepts_and_nothing_it_refuses() {
        let json = serde_json::to_value(features().unwrap()).unwrap();
        let linux = &json["linux"];
        let has = |v: &serde_json::Value, s: &str| v.as_array().unwrap().iter().any(|x| x == s);
        assert!(has(&linux["capabilities"], "CAP_SYS_ADMIN"));
        assert!(has(&linux["namespaces"], "cgroup"));
        assert!(has(&linux["seccomp"]["actions"], "SCMP_ACT_ERRNO"));
        assert!(has(&linux["seccomp"]["operators"], "SCMP_CMP_MASKED_EQ"));
        assert!(has(&linux["seccomp"]["archs"], "SCMP_ARCH_X86_64"));
        assert!(has(&json["mountOptions"], "rbind"));
        // Seccomp user notification, with an agent at linux.seccomp.listenerPath.
        assert!(has(&linux["seccomp"]["actions"], "SCMP_ACT_NOTIFY"));
        // What this host's libseccomp cannot set is not announced (2.6 is the first with it).
        let libseccomp = libseccomp::ScmpVersion::current().unwrap();
        assert_eq!(
            has(
                &linux["seccomp"]["supportedFlags"],
                "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
            ),
            (libseccomp.major, libseccomp.minor) >= (2, 6),
        );
        assert!(has(
            &linux["seccomp"]["knownFlags"],
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        ));
        assert!(!has(&json["mountOptions"], "tmpcopyup"));
        // Recursive attributes (mount_setattr with AT_RECURSIVE) and idmapped binds.
        for word in ["rro", "rnosuid", "rnoexec", "idmap", "ridmap"] {
            assert!(has(&json["mountOptions"], word), "{word}");
        }
        assert_eq!(
            json["hooks"],
            serde_json::json!([
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ])
        );
        assert_eq!(linux["cgroup"]["systemd"], true);
        assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], true);
    }
}
