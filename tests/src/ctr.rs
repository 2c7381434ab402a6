//! Running `ctr` with a hard timeout.
//!
//! `ctr run` forwards SIGTERM to the container, so a stuck ctr is killed with SIGKILL.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished (or killed) ctr command produced.
#[derive(Debug, Clone)]
pub struct CtrOutput {
    /// The command line, for failure messages.
    pub cmdline: String,
    /// Exit code; `None` if it was killed by a signal (e.g. on timeout).
    pub code: Option<i32>,
    /// True if the hard timeout expired and ctr was killed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CtrOutput {
    /// True if ctr exited 0 in time.
    /// The `key=value` lines of stdout (values trimmed), in the collection the caller wants:
    /// how scenarios report what they saw inside a container.
    pub fn key_values<C: FromIterator<(String, String)>>(&self) -> C {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Panics with the whole output unless ctr exited 0.
    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        assert!(self.success(), "ctr failed: {self}");
        self
    }
}

impl std::fmt::Display for CtrOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> code {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            if self.timed_out {
                " (TIMED OUT, killed)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn command(ctr: &Path, address: &Path, ns: &str, args: &[&str]) -> (Command, String) {
    let mut cmd = Command::new(ctr);
    cmd.arg("--address")
        .arg(address)
        .arg("-n")
        .arg(ns)
        .args(args);
    let line = format!("ctr -n {ns} {}", args.join(" "));
    (cmd, line)
}

/// Runs ctr, feeding `stdin` (or an empty stdin), and kills it with SIGKILL after `timeout`.
pub(crate) fn run(
    ctr: &Path,
    address: &Path,
    ns: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CtrOutput {
    let (cmd, cmdline) = command(ctr, address, ns, args);
    run_command(cmd, cmdline, stdin, timeout)
}

/// Runs any command as [`run`] runs ctr: `stdin` fed (or an empty stdin), stdout and stderr
/// collected, SIGKILL after `timeout`. `cmdline` names it in failure messages.
pub fn run_command(
    mut cmd: Command,
    cmdline: String,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CtrOutput {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        // A writer thread: the container may not read before ctr needs its output drained.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let (code, timed_out) = wait_or_kill(&mut child, timeout);
    CtrOutput {
        cmdline,
        code,
        timed_out,
        stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
        stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
    }
}

fn wait_or_kill(child: &mut Child, timeout: Duration) -> (Option<i32>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status.code(), false),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill(); // SIGKILL
                let status = child.wait().ok();
                return (status.and_then(|s| s.code()), true);
            }
        }
    }
}

/// A ctr command left running in the background (e.g. `ctr events`).
pub struct Background {
    child: Child,
    cmdline: String,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    err: Option<JoinHandle<String>>,
}

impl Background {
    pub(crate) fn spawn(ctr: &Path, address: &Path, ns: &str, args: &[&str]) -> Background {
        let (mut cmd, cmdline) = command(ctr, address, ns, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", ctr.display()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            let out = Arc::clone(&out);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        let err = child.stderr.take().map(reader);
        Background {
            child,
            cmdline,
            out,
            readers,
            err,
        }
    }

    /// What the command printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// True once the command has exited (it is reaped then).
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the command to exit (then kills it) and returns its output.
    pub fn wait(mut self, timeout: Duration) -> CtrOutput {
        let (code, timed_out) = wait_or_kill(&mut self.child, timeout);
        let mut out = self.stop();
        out.code = code;
        out.timed_out = timed_out;
        out
    }

    /// Kills the command (SIGKILL) and returns what it printed.
    pub fn stop(mut self) -> CtrOutput {
        let _ = self.child.kill();
        let code = self.child.wait().ok().and_then(|s| s.code());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        CtrOutput {
            cmdline: self.cmdline.clone(),
            code,
            timed_out: false,
            stdout: self.stdout_so_far(),
            stderr: self
                .err
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
