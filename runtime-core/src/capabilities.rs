//! The five capability sets of `process.capabilities`.

use oci_spec::runtime::LinuxCapabilities;

use crate::Result;

/// Drops every capability not in the bounding set. Runs before the uid changes.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let _ = caps;
    todo!("capabilities::drop_bounding")
}

/// Sets the effective, permitted, inheritable and ambient sets. Runs after the uid changes
/// (with PR_SET_KEEPCAPS), just before exec.
pub fn apply(caps: &LinuxCapabilities) -> Result<()> {
    let _ = caps;
    todo!("capabilities::apply")
}
