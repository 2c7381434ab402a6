//! Starting the container init.
//!
//! The caller (the shim daemon, or the `mini` command) may be multi-threaded, so it never
//! forks to build a container. [`Launcher`] execs a single-threaded setup helper — this same
//! executable, from a read-only view ([`crate::exe_guard`]), with [`HELPER_ARG`] — and talks to
//! it over a socket ([`channel`]). The helper creates the cgroup, joins namespaces given by path
//! and clones the container init with `CLONE_PARENT`, so the init is the caller's child. The
//! init builds the container ([`init`]), reports ready, and execs the user's process when the
//! caller says start. An exec ([`exec`]) goes through the same helper: it joins the running
//! container's namespaces through a pidfd of its init and forks the exec process. The helper
//! of an exec can be started ahead and wait for the start ([`Launcher::prepare_exec`]).

pub mod channel;
mod detached;
mod exec;
mod helper;
mod init;
mod launcher;
mod passed_fds;
pub mod terminal;

pub use channel::{HelperConfig, Message};
pub use detached::{bind_start_socket, start_detached};
pub use exec::{ExecConfig, exec_spec};
pub use helper::run_helper_if_requested;
pub(crate) use init::die_with_caller;
pub use init::join_new_session_keyring;
pub use launcher::{
    CreatedInit, InitStdio, Launcher, PendingExec, PendingInit, PreparedExec, can_build_here,
};

/// argv[1] that makes a binary linking this library run as the setup helper. Every binary
/// that uses [`Launcher`] must call [`run_helper_if_requested`] first thing in `main`.
pub const HELPER_ARG: &str = "__mini_init";
