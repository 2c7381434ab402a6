//! The process's stdio: containerd hands us fifo paths; the process gets pipes, and the
//! daemon copies between them, so that it knows when output has drained (Wait answers and
//! `/tasks/exit` goes out only then) and can deliver EOF on CloseIO. With a terminal the
//! process gets a pty instead ([`open`] with a terminal, then [`StdioCopies::attach_console`]), whose
//! master is copied to and from the same pipes (see `pty`). The copies between the pipes and
//! containerd's fifos are in `fifo`, a `binary://` stdout's logging binary in `log_binary`.

mod fifo;
mod log_binary;
mod pty;

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use runtime_core::process::InitStdio;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::reaper::ExitMonitor;

use self::log_binary::{BinaryUri, LogBinary};
use self::pty::Pty;

/// How long an exited process's output may take to drain (a daemonized grandchild outside
/// the container's pid namespace could hold the pipe open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's side of a process's stdio.
#[derive(Default)]
pub struct StdioCopies {
    close_stdin: Option<oneshot::Sender<()>>,
    outputs: Vec<JoinHandle<()>>,
    /// The logging binary of a `binary://` stdout, which reads the output itself.
    logger: Option<LogBinary>,
    /// With a terminal: our ends of the pipes that the pty's master is copied to and from,
    /// until the process hands the master over.
    console_ends: Option<ConsoleEnds>,
    pty: Option<Pty>,
}

struct ConsoleEnds {
    /// What the client types; `None` without a stdin.
    input: Option<OwnedFd>,
    /// `None` without a stdout: the output is read and dropped.
    output: Option<OwnedFd>,
}

/// Whose stdio it is: a logging binary is told.
pub struct Owner<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    /// Owner of the process's pipes (uid, gid): a user namespace's root.
    pub ids: (u32, u32),
}

/// The stdio containerd asked for (State reports it back): fifo paths or log URIs, empty for
/// none, and whether the process gets a terminal.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Opens containerd's fifos for a process: returns what the process gets and the daemon's
/// side. With a terminal, see [`open_terminal`].
pub async fn open(
    paths: &Paths,
    owner: Owner<'_>,
    monitor: &ExitMonitor,
) -> io::Result<(InitStdio, StdioCopies)> {
    if paths.terminal {
        open_terminal(&paths.stdin, &paths.stdout, owner, monitor).await
    } else {
        open_pipes(&paths.stdin, &paths.stdout, &paths.stderr, owner, monitor).await
    }
}

/// Opens containerd's fifos and makes the pipes for the process. Empty paths mean /dev/null;
/// a `binary://` stdout starts a logging binary that gets both stdout and stderr.
async fn open_pipes(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    owner: Owner<'_>,
    monitor: &ExitMonitor,
) -> io::Result<(InitStdio, StdioCopies)> {
    let mut copies = StdioCopies::default();
    let child_stdin = if stdin.is_empty() {
        dev_null()?
    } else {
        let (read, close) = fifo::stdin(stdin)?;
        copies.close_stdin = Some(close);
        read
    };
    let (child_stdout, child_stderr) = if stdout.starts_with(log_binary::SCHEME) {
        let uri = BinaryUri::parse(stdout)
            .map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, msg))?;
        let (out_read, out_write) = os_pipe()?;
        let (err_read, err_write) = os_pipe()?;
        let logger =
            LogBinary::start(&uri, owner.id, owner.namespace, out_read, err_read, monitor).await?;
        copies.logger = Some(logger);
        (out_write, err_write)
    } else {
        (output(stdout, &mut copies)?, output(stderr, &mut copies)?)
    };
    if owner.ids != (0, 0) {
        // The pipes belong to the user namespace's root, as the stock shim makes them.
        for fd in [&child_stdin, &child_stdout, &child_stderr] {
            let uid = Some(nix::unistd::Uid::from_raw(owner.ids.0));
            let gid = Some(nix::unistd::Gid::from_raw(owner.ids.1));
            nix::unistd::fchown(fd, uid, gid).map_err(io::Error::from)?;
        }
    }
    Ok((
        InitStdio {
            stdin: child_stdin,
            stdout: child_stdout,
            stderr: child_stderr,
        },
        copies,
    ))
}

/// Opens containerd's fifos for a process with a terminal. A tty has no stderr. The process
/// itself gets /dev/null until it has set up its pty; its master then goes to
/// [`StdioCopies::attach_console`].
async fn open_terminal(
    stdin: &str,
    stdout: &str,
    owner: Owner<'_>,
    monitor: &ExitMonitor,
) -> io::Result<(InitStdio, StdioCopies)> {
    let (ends, mut copies) = open_pipes(stdin, stdout, "", owner, monitor).await?;
    copies.console_ends = Some(ConsoleEnds {
        input: (!stdin.is_empty()).then_some(ends.stdin),
        output: (!stdout.is_empty()).then_some(ends.stdout),
    });
    let child = InitStdio {
        stdin: dev_null()?,
        stdout: dev_null()?,
        stderr: dev_null()?,
    };
    Ok((child, copies))
}

impl StdioCopies {
    /// Starts copying the pty `master` that a process sends once it is set up: one opened
    /// with a terminal must send one, any other none.
    pub fn attach_console(&mut self, master: Option<OwnedFd>) -> io::Result<()> {
        let (master, ends) = match (master, self.console_ends.take()) {
            (Some(master), Some(ends)) => (master, ends),
            (None, None) => return Ok(()),
            (Some(_), None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a pty master for a process without a terminal",
                ));
            }
            (None, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the process sent no pty master",
                ));
            }
        };
        let (pty, output) = Pty::start(master, ends.input, ends.output)?;
        self.outputs.push(output);
        self.pty = Some(pty);
        Ok(())
    }

    /// Whether the process was opened with a terminal.
    pub fn is_terminal(&self) -> bool {
        self.console_ends.is_some() || self.pty.is_some()
    }

    /// ResizePty: sets the terminal's window size.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        match &self.pty {
            Some(pty) => pty.resize(rows, cols),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the process has no terminal",
            )),
        }
    }

    /// CloseIO: the process reads EOF once what containerd already wrote has been passed on.
    pub fn close_stdin(&mut self) {
        if let Some(tx) = self.close_stdin.take() {
            let _ = tx.send(());
        }
    }

    /// The copies of the process's output, to [`drain`] without holding the process's state.
    pub fn take_outputs(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.outputs)
    }

    /// Stops every copy (Delete of a process whose output nobody reads).
    pub fn abort(&mut self) {
        self.close_stdin();
        for handle in self.outputs.drain(..) {
            handle.abort();
        }
    }

    /// [`StdioCopies::abort`], and ends the logging binary (Delete, or a failed Create).
    pub async fn close(mut self) {
        self.abort();
        if let Some(logger) = self.logger.take() {
            logger.stop().await;
        }
    }
}

/// The process's end of its stdout or stderr: /dev/null for an empty path.
fn output(path: &str, copies: &mut StdioCopies) -> io::Result<OwnedFd> {
    if path.is_empty() {
        return dev_null();
    }
    let (write, copy) = fifo::output(path)?;
    copies.outputs.push(copy);
    Ok(write)
}

/// Waits until the process's output has been copied to containerd's fifos, which are then
/// closed (ctr 1.7+ waits for their EOF). A process left outside the container's pid
/// namespace may hold the pipes open: after [`DRAIN_TIMEOUT`] in all, the copies stop.
pub async fn drain(outputs: Vec<JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    for handle in outputs {
        let abort = handle.abort_handle();
        if tokio::time::timeout_at(deadline, handle).await.is_err() {
            log::warn!("output still open {DRAIN_TIMEOUT:?} after exit; closing it");
            abort.abort();
        }
    }
}

fn os_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn dev_null() -> io::Result<OwnedFd> {
    Ok(File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}
