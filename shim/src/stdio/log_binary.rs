//! `binary://` log URIs: a logging process of the user's choice reads the container's output,
//! with the contract of containerd's own shims. The binary (the URI's path; each query
//! parameter becomes two arguments, key then value, and `env.NAME=value` an environment
//! variable) runs with only `CONTAINER_ID` and `CONTAINER_NAMESPACE` set, the read ends of
//! the process's stdout and stderr as fds 3 and 4, and a pipe as fd 5 that it writes to or
//! closes once it is ready: Create waits for that. At Delete it gets SIGTERM, then SIGKILL
//! if it has not exited after [`STOP_TIMEOUT`].

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::reaper::{Exit, ExitMonitor};

/// The scheme of a logging binary's URI.
pub const SCHEME: &str = "binary://";
/// How long the binary may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the binary may take to exit after SIGTERM (containerd's shims give it 12 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(12);
/// The binary's fds: the process's stdout, its stderr, and the ready pipe.
const CHILD_FDS: [RawFd; 3] = [3, 4, 5];
/// Where the fds wait between fork and exec: above the child's, so no dup2 overwrites one.
const STAGING_FD_MIN: RawFd = 10;

/// A parsed `binary:///path?key=value&…` URI.
#[derive(Debug, PartialEq, Eq)]
pub struct BinaryUri {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl BinaryUri {
    /// Parses `uri`, which starts with [`SCHEME`]. The path must be absolute (no host).
    pub fn parse(uri: &str) -> Result<BinaryUri, String> {
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("log URI {uri:?} is not a {SCHEME} URI"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = percent_decode(path, false)
            .ok_or_else(|| format!("log URI {uri:?}: bad %-escape in the path"))?;
        if !path.starts_with('/') {
            return Err(format!(
                "log URI {uri:?}: the logging binary must be an absolute path ({SCHEME}/path)"
            ));
        }
        let mut args = Vec::new();
        let mut env = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (percent_decode(key, true), percent_decode(value, true))
            else {
                return Err(format!("log URI {uri:?}: bad %-escape in {pair:?}"));
            };
            match key.strip_prefix("env.") {
                Some(name) if !name.is_empty() => env.push((name.to_string(), value)),
                _ => args.extend([key, value]),
            }
        }
        Ok(BinaryUri { path, args, env })
    }
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space). `None` on a bad escape or
/// a result that is not UTF-8.
fn percent_decode(s: &str, query: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A running logging binary.
pub struct LogBinary {
    pid: i32,
    path: String,
    exit: oneshot::Receiver<Exit>,
}

impl LogBinary {
    /// Starts the binary of `uri` on the read ends `stdout` and `stderr` and waits until it
    /// is ready. Call on the daemon's thread: the reaper then cannot take the status of a
    /// binary that failed to exec before `spawn` reads it.
    pub async fn start(
        uri: &BinaryUri,
        id: &str,
        namespace: &str,
        stdout: OwnedFd,
        stderr: OwnedFd,
        monitor: &ExitMonitor,
    ) -> io::Result<LogBinary> {
        let (ready_read, ready_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let staged = [stage(&stdout)?, stage(&stderr)?, stage(&ready_write)?];
        drop(ready_write);
        let raw: Vec<RawFd> = staged.iter().map(AsRawFd::as_raw_fd).collect();
        let mut cmd = Command::new(&uri.path);
        cmd.args(&uri.args)
            .env_clear()
            .envs(uri.env.iter().map(|(k, v)| (k, v)))
            .env("CONTAINER_ID", id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2, which is async-signal-safe; the staged
        // fds are all above the targets, so none is overwritten before it is copied.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in raw.iter().zip(CHILD_FDS) {
                    if libc::dup2(*from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let window = monitor.spawn_window();
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("start logging binary {}: {e}", uri.path))
        })?;
        let pid = child.id() as i32;
        let exit = monitor.subscribe(pid);
        drop(window);
        // Only the binary holds the pipes now: the process's output reaches it alone, and its
        // ready pipe ends when it closes fd 5.
        drop((staged, stdout, stderr));
        let logger = LogBinary {
            pid,
            path: uri.path.clone(),
            exit,
        };
        let mut ready = pipe::Receiver::from_owned_fd(ready_read)?;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(READY_TIMEOUT, ready.read(&mut byte)).await {
            Ok(Ok(_)) => Ok(logger),
            Ok(Err(e)) => {
                logger.stop().await;
                Err(io::Error::new(
                    e.kind(),
                    format!("logging binary {}: ready pipe: {e}", uri.path),
                ))
            }
            Err(_) => {
                logger.stop().await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "logging binary {} did not close or write fd 5 within {READY_TIMEOUT:?}",
                        uri.path
                    ),
                ))
            }
        }
    }

    /// Ends the binary: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; returns once it exited.
    pub async fn stop(mut self) {
        if self.exit.try_recv().is_ok() {
            return;
        }
        self.signal(libc::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.exit)
            .await
            .is_err()
        {
            log::warn!(
                "logging binary {} still runs {STOP_TIMEOUT:?} after SIGTERM; killing it",
                self.path
            );
            self.signal(libc::SIGKILL);
            let _ = self.exit.await;
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill takes plain integers. The pid is still ours: its exit was not reaped.
        unsafe { libc::kill(self.pid, signal) };
    }
}

/// A copy of `fd` numbered [`STAGING_FD_MIN`] or above, close-on-exec.
fn stage(fd: &OwnedFd) -> io::Result<OwnedFd> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(STAGING_FD_MIN))
        .map(|raw| {
            // SAFETY: fcntl just returned this new fd, owned by nobody else.
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
        })
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_key_value_arguments_and_env_dot_names_variables() {
        let uri =
            BinaryUri::parse("binary:///usr/bin/my%20logger?--driver=json&x=a+b%26c&env.TAG=t1&-v")
                .unwrap();
        assert_eq!(uri.path, "/usr/bin/my logger");
        assert_eq!(uri.args, ["--driver", "json", "x", "a b&c", "-v", ""]);
        assert_eq!(uri.env, [("TAG".to_string(), "t1".to_string())]);
    }

    #[test]
    fn a_relative_path_or_a_bad_escape_is_refused_naming_the_uri() {
        let err = BinaryUri::parse("binary://host/bin/logger").unwrap_err();
        assert!(
            err.contains("binary://host/bin/logger") && err.contains("absolute"),
            "{err}"
        );
        assert!(
            BinaryUri::parse("binary:///bin/x?a=%zz")
                .unwrap_err()
                .contains("%-escape")
        );
        assert!(BinaryUri::parse("file:///x").is_err());
    }
}
