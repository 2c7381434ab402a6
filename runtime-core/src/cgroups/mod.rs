//! cgroups: placement by `linux.cgroupsPath` and resource limits, on v1, hybrid and v2 hosts.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use crate::Result;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 hierarchies only.
    Legacy,
    /// v1 controllers plus a cgroup2 mount (at `unified/`) without controllers.
    Hybrid,
    /// cgroup v2 only.
    Unified,
}

/// Detects the layout under `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Result<Layout> {
    let _ = root;
    todo!("cgroups::detect")
}

/// One container's cgroup, in every hierarchy the host has.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    root: PathBuf,
}

impl CgroupManager {
    /// The cgroup for container `id` at `cgroups_path` (the spec's `linux.cgroupsPath`;
    /// `None` means `/<id>`), under `/sys/fs/cgroup`.
    pub fn new(id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        Self::with_root(Path::new("/sys/fs/cgroup"), id, cgroups_path)
    }

    /// As [`CgroupManager::new`], with another cgroup root (fixture directories in tests).
    pub fn with_root(root: &Path, id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        let _ = (id, cgroups_path);
        Ok(Self { root: root.to_path_buf() })
    }

    /// Creates the cgroup directories (and missing parents).
    pub fn create(&self) -> Result<()> {
        todo!("CgroupManager::create {}", self.root.display())
    }

    /// Writes the limits in `resources`; used at create and by Update.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        let _ = resources;
        todo!("CgroupManager::apply")
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let _ = pid;
        todo!("CgroupManager::add_process")
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        todo!("CgroupManager::pids")
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn kill_all(&self, signal: Signal) -> Result<()> {
        let _ = signal;
        todo!("CgroupManager::kill_all")
    }

    /// Removes the container's cgroup directories (not shared parents). Succeeds when they
    /// are already gone.
    pub fn destroy(&self) -> Result<()> {
        todo!("CgroupManager::destroy")
    }
}
