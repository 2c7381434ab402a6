//! mini's runtime core: an OCI bundle (`config.json` + rootfs) in, an isolated process out.
//!
//! It knows nothing of containerd. The flow, in the order the runtime-spec gives it:
//!
//! - [`process::Launcher`] (in the caller, e.g. the shim daemon) starts a single-threaded setup
//!   helper from a read-only view of the current executable ([`exe_guard`]);
//! - the helper ([`process::helper_main`]) creates the cgroup ([`cgroups`]), joins the
//!   namespaces given by path ([`namespaces`]) and clones the container init as a sibling, so
//!   the init is the caller's child;
//! - the init builds its root filesystem ([`rootfs`]), applies rlimits ([`rlimits`]), user,
//!   capabilities ([`capabilities`]) and compiles seccomp ([`seccomp`]), reports "ready" and
//!   blocks until the caller says "start"; then it execs the user process;
//! - the spec's hooks ([`hooks`]) run at the points of the lifecycle the runtime-spec gives.

pub mod capabilities;
pub mod cgroups;
pub mod error;
pub mod exe_guard;
pub mod features;
pub mod hooks;
pub mod namespaces;
pub mod personality;
pub mod process;
pub mod procfs;
pub mod rlimits;
pub mod rootfs;
pub mod sched;
pub mod seccomp;
pub mod spec;

pub use error::{Error, Result};
