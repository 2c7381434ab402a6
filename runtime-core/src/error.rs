//! Errors of the runtime core. Each names what failed: the spec field, the path, the syscall.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec asks for something invalid or unsupported; `field` names the spec field.
    #[error("invalid spec: {field}: {msg}")]
    InvalidSpec { field: String, msg: String },
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system call failed; `detail` names its arguments (paths, flags).
    #[error("{syscall} {detail}: {source}")]
    Sys {
        syscall: &'static str,
        detail: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// A cgroup operation failed.
    #[error("cgroup {}: {msg}", path.display())]
    Cgroup { path: PathBuf, msg: String },
    /// The container's setup process reported a failure (the message names the step).
    #[error("{0}")]
    Setup(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            msg: msg.into(),
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(
        syscall: &'static str,
        detail: impl Into<String>,
        source: nix::errno::Errno,
    ) -> Self {
        Error::Sys {
            syscall,
            detail: detail.into(),
            source,
        }
    }

    pub fn cgroup(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Cgroup {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
