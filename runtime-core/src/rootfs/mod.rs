//! The container's root filesystem: the rootfs mounts from containerd, the spec's mounts,
//! devices, pivot_root, masked and read-only paths.

pub mod options;

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::Result;

/// One mount of the container's rootfs as containerd passes it (overlay, bind…).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mounts containerd's rootfs mounts, in order, at `target` (in the caller's mount namespace).
pub fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    let _ = (mounts, target);
    todo!("rootfs::mount_rootfs")
}

/// Unmounts everything at or below `target`; succeeds when nothing is mounted there.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    let _ = target;
    todo!("rootfs::unmount_rootfs")
}

/// In the container init, in its new mount namespace, before pivot_root: sets the root
/// propagation, binds `rootfs` onto itself, mounts the spec's mounts, creates devices and
/// the /dev symlinks.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let _ = (spec, rootfs);
    todo!("rootfs::prepare")
}

/// Makes `rootfs` the root (pivot_root) and detaches the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let _ = rootfs;
    todo!("rootfs::pivot")
}

/// After pivot_root: masked paths, read-only paths, read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let _ = spec;
    todo!("rootfs::finish")
}
