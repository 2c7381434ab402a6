//! Linux namespaces of `linux.namespaces`: new ones become clone flags, ones with a path are
//! joined with setns before the clone.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType};

use crate::{Error, Result};

/// CLONE_NEWTIME; not in nix's CloneFlags. A time namespace can only be entered by the
/// children of the process that unshares it.
const CLONE_NEWTIME: libc::c_int = 0x80;

/// What the setup helper does with the spec's namespaces.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Namespaces to create with the container init's clone.
    pub clone_flags: CloneFlags,
    /// A new time namespace (unshared by the helper, so the init is born in it).
    pub new_time: bool,
    /// Namespaces to join, in the order they are joined (user first).
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
    /// `linux.timeOffsets` as `/proc/self/timens_offsets` takes them (`<clock> <secs>
    /// <nanosecs>` lines), written into the new time namespace before the init enters it.
    pub time_offsets: String,
}

impl Plan {
    /// The plan of a spec's `linux`: its namespaces and the time namespace's offsets.
    pub fn from_linux(linux: &Linux) -> Result<Self> {
        let mut plan = Self::from_spec(linux.namespaces().as_deref().unwrap_or_default())?;
        let mut clocks: Vec<_> = linux.time_offsets().iter().flatten().collect();
        clocks.sort_by_key(|(clock, _)| clock.as_str());
        for (clock, offset) in clocks {
            plan.time_offsets += &format!(
                "{clock} {} {}\n",
                offset.secs().unwrap_or(0),
                offset.nanosecs().unwrap_or(0)
            );
        }
        Ok(plan)
    }

    /// The plan of `linux.namespaces` alone.
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Self> {
        let mut plan = Plan {
            clone_flags: CloneFlags::empty(),
            new_time: false,
            join: Vec::new(),
            time_offsets: String::new(),
        };
        let mut seen = Vec::new();
        for ns in namespaces {
            let typ = ns.typ();
            if seen.contains(&typ) {
                return Err(Error::invalid(
                    "linux.namespaces",
                    format!("{typ:?} namespace listed twice"),
                ));
            }
            seen.push(typ);
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => plan.join.push((typ, path.clone())),
                _ if typ == LinuxNamespaceType::Time => plan.new_time = true,
                _ => plan.clone_flags |= clone_flag(typ),
            }
        }
        // Join the user namespace first: it decides what the others may do.
        plan.join
            .sort_by_key(|(typ, _)| *typ != LinuxNamespaceType::User);
        Ok(plan)
    }

    /// Whether the init gets a new namespace of `typ`.
    pub fn creates(&self, typ: LinuxNamespaceType) -> bool {
        if typ == LinuxNamespaceType::Time {
            return self.new_time;
        }
        self.clone_flags.contains(clone_flag(typ))
    }

    /// Whether the container lives in a namespace of `typ` other than the caller's.
    pub fn isolates(&self, typ: LinuxNamespaceType) -> bool {
        self.creates(typ) || self.join.iter().any(|(t, _)| *t == typ)
    }

    /// Joins the namespaces given by path and unshares the time namespace, in the calling
    /// (single-threaded) process, and sets the time namespace's clock offsets: the kernel
    /// takes them only until the first process enters it, i.e. before the init's clone. All
    /// paths are opened before the first setns, since joining a mount namespace changes what
    /// the later paths name.
    pub fn enter(&self) -> Result<()> {
        let mut files = Vec::with_capacity(self.join.len());
        for (typ, path) in &self.join {
            let file = File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
            files.push((typ, path, file));
        }
        for (typ, path, file) in &files {
            setns(file.as_fd(), clone_flag(**typ))
                .map_err(|e| Error::sys("setns", format!("{typ:?} {}", path.display()), e))?;
        }
        if self.new_time {
            unshare(CloneFlags::from_bits_retain(CLONE_NEWTIME))
                .map_err(|e| Error::sys("unshare", "time namespace", e))?;
            if !self.time_offsets.is_empty() {
                // The file of the caller sets the offsets of its children's time namespace.
                let rel = Path::new(&crate::procfs::ProcFs::own_dir()).join("timens_offsets");
                crate::procfs::ProcFs::open()?
                    .write(&rel, &self.time_offsets)
                    .map_err(|e| Error::invalid("linux.timeOffsets", e.to_string()))?;
            }
        } else if !self.time_offsets.is_empty() {
            return Err(Error::invalid(
                "linux.timeOffsets",
                "needs a new time namespace of the container's own",
            ));
        }
        Ok(())
    }
}

/// The clone flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(CLONE_NEWTIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags_and_paths_are_joined_user_first() {
        let plan = Plan::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
        ])
        .unwrap();
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert_eq!(plan.join[0].0, LinuxNamespaceType::User);
        assert_eq!(plan.join[1].0, LinuxNamespaceType::Network);
        assert!(plan.isolates(LinuxNamespaceType::Network));
        assert!(!plan.creates(LinuxNamespaceType::Network));
        assert!(!plan.isolates(LinuxNamespaceType::Ipc));
    }

    #[test]
    fn time_offsets_become_timens_offsets_lines() {
        let linux: Linux = serde_json::from_value(serde_json::json!({
            "namespaces": [{"type": "mount"}, {"type": "time"}],
            "timeOffsets": {
                "monotonic": {"secs": -7, "nanosecs": 3},
                "boottime": {"secs": 86400}
            }
        }))
        .unwrap();
        let plan = Plan::from_linux(&linux).unwrap();
        assert!(plan.new_time);
        assert_eq!(plan.time_offsets, "boottime 86400 0\nmonotonic -7 3\n");
    }

    #[test]
    fn a_namespace_listed_twice_is_rejected() {
        let err = Plan::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.namespaces"), "{err}");
    }
}
