//! `linux.seccomp` compiled to a filter before the init reports ready, loaded just before exec.

use oci_spec::runtime::LinuxSeccomp;

use crate::Result;

/// A compiled filter, ready to load.
pub struct Filter {
    _private: (),
}

/// Compiles the spec's profile; errors name the syscall, action or architecture at fault.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
    let _ = seccomp;
    todo!("seccomp::compile")
}

impl Filter {
    /// Installs the filter on the calling thread (and, with TSYNC, all threads).
    pub fn load(self) -> Result<()> {
        todo!("seccomp::Filter::load")
    }
}
