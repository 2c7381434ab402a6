//! OCI hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle").
//!
//! Where each kind runs, and who runs it:
//!
//! | kind | namespaces | run by |
//! | --- | --- | --- |
//! | `prestart` (deprecated), `createRuntime` | the runtime's | the caller, through a hook runner ([`crate::process::Launcher::run_hooks`]), when the init has built its mounts, before pivot_root |
//! | `createContainer` | the container's (its mount namespace, before pivot_root) | the init |
//! | `startContainer` | the container's, after pivot_root, as the container's user | the init, after start, before it execs the user's process |
//! | `poststart` | the runtime's | the caller, after the user's process started, before start returns |
//! | `poststop` | the runtime's | the caller, after the container is deleted, before delete returns |
//!
//! Each hook gets the container's state (ociVersion, id, status, pid, bundle, annotations) as
//! JSON on its stdin, only its own `env`, and is killed when its `timeout` passes. A failing
//! hook of the first four kinds is an error that ends the container; the callers log a
//! failing `poststart` or `poststop` hook and go on.
//!
//! Hooks come from the spec's author and run as root in the runtime's namespaces, as with
//! runc: whoever may write a container's spec may run any program on the host.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{ContainerState, Hook, Hooks, Spec, State, StateBuilder};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The six kinds of hooks, in the order of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Prestart,
        Stage::CreateRuntime,
        Stage::CreateContainer,
        Stage::StartContainer,
        Stage::Poststart,
        Stage::Poststop,
    ];

    /// The name of the kind in `config.json` (`hooks.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::CreateRuntime => "createRuntime",
            Stage::CreateContainer => "createContainer",
            Stage::StartContainer => "startContainer",
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `hooks`, in the spec's order.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Stage::Prestart => hooks.prestart(),
            Stage::CreateRuntime => hooks.create_runtime(),
            Stage::CreateContainer => hooks.create_container(),
            Stage::StartContainer => hooks.start_container(),
            Stage::Poststart => hooks.poststart(),
            Stage::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// Whether `spec` has a hook of any of `stages`.
pub fn any(spec: &Spec, stages: &[Stage]) -> bool {
    spec.hooks()
        .as_ref()
        .is_some_and(|h| stages.iter().any(|s| !s.of(h).is_empty()))
}

/// Checks every hook: an absolute `path` and a positive `timeout`; the error names the
/// field (`hooks.prestart[0].path`).
pub fn validate(hooks: &Hooks) -> Result<()> {
    for stage in Stage::ALL {
        for (i, hook) in stage.of(hooks).iter().enumerate() {
            let field = |name: &str| format!("hooks.{}[{i}].{name}", stage.name());
            if !hook.path().is_absolute() {
                return Err(Error::invalid(
                    field("path"),
                    format!("{:?} is not an absolute path", hook.path()),
                ));
            }
            if let Some(timeout) = hook.timeout()
                && timeout <= 0
            {
                return Err(Error::invalid(
                    field("timeout"),
                    format!("{timeout} is not a positive number of seconds"),
                ));
            }
            for (j, env) in hook.env().as_deref().unwrap_or_default().iter().enumerate() {
                if !env.contains('=') {
                    return Err(Error::invalid(
                        field(&format!("env[{j}]")),
                        format!("{env:?} is not of the form KEY=value"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The state document a hook reads on its stdin.
pub fn state(spec: &Spec, id: &str, bundle: &Path, status: ContainerState, pid: i32) -> State {
    let annotations: Option<HashMap<String, String>> = spec
        .annotations()
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let mut builder = StateBuilder::default()
        .version(spec.version().clone())
        .id(id)
        .status(status)
        .bundle(bundle);
    if pid > 0 {
        builder = builder.pid(pid);
    }
    if let Some(annotations) = annotations {
        builder = builder.annotations(annotations);
    }
    // Every field is set: the builder cannot fail.
    builder.build().unwrap_or_default()
}

/// Runs the hooks of `stage` one after the other in this process's namespaces, each with
/// `state` on its stdin; the first that fails (exit status, timeout, not executable) ends
/// the run with an error naming it (`hooks.createRuntime[1]`) and the tail of its output.
/// For `poststart` and `poststop` the rest still run and the error names each failure.
pub fn run(stage: Stage, hooks: &[Hook], state: &State) -> Result<()> {
    run_each(stage, hooks, state, |_, hook| Some(hook.clone()))
}

/// [`run`], with each hook first passed through `adjust` (its index, the hook): the hook to
/// run instead (another timeout), or `None` to skip it and the ones after it (reported as
/// not run).
pub fn run_each(
    stage: Stage,
    hooks: &[Hook],
    state: &State,
    mut adjust: impl FnMut(usize, &Hook) -> Option<Hook>,
) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state)
        .map_err(|e| Error::Setup(format!("hooks.{}: encode state: {e}", stage.name())))?;
    // A failing poststart or poststop hook is only a warning: the remaining hooks still run
    // (runtime.md, steps 9 and 13); the error reports every one that failed.
    let keep_going = matches!(stage, Stage::Poststart | Stage::Poststop);
    let mut failed = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let Some(hook) = adjust(i, hook) else {
            failed.push(format!(
                "hooks.{}[{i}..] not run: no time left",
                stage.name()
            ));
            break;
        };
        let hook = &hook;
        if let Err(msg) = run_one(hook, &json) {
            let name = format!("hooks.{}[{i}]", stage.name());
            failed.push(format!("{name} ({}) failed: {msg}", hook.path().display()));
            if !keep_going {
                break;
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Setup(failed.join("; ")))
    }
}

/// Most of a failed hook's output kept for the error.
const OUTPUT_TAIL: usize = 1024;

fn run_one(hook: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    // Files, not pipes: a hook that does not read its stdin, or writes a lot, cannot block
    // us, and we need no second thread (the init must stay single-threaded).
    let mut stdin = memfd(c"hook-state")?;
    stdin
        .write_all(state)
        .and_then(|()| stdin.seek(SeekFrom::Start(0)).map(drop))
        .map_err(|e| format!("write state: {e}"))?;
    let mut output = memfd(c"hook-output")?;
    let dup = |f: &File| f.try_clone().map_err(|e| format!("dup: {e}"));
    let args = hook.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear()
        .envs(
            hook.env()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.split_once('=')),
        )
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(dup(&output)?))
        .stderr(Stdio::from(dup(&output)?));
    // SAFETY: the closure runs between fork and exec and only makes the setsid and
    // close_range system calls, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Its own session: a timeout kills the hook's whole process group.
            libc::setsid();
            // No fd of the caller but stdio reaches the hook (the caller's own, the fds it
            // passes to the container, a start socket): all close on exec.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("exec: {e}"))?;
    let timeout = hook.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    let status = wait(&mut child, timeout)?;
    if status.success() {
        return Ok(());
    }
    let what = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{status}"),
    };
    let mut text = String::new();
    let _ = output.seek(SeekFrom::Start(0));
    let _ = output.read_to_string(&mut text);
    let text = text.trim();
    let tail = &text[text.len() - text.len().min(OUTPUT_TAIL)..];
    let tail = tail.trim_start_matches(|c: char| !c.is_ascii());
    if tail.is_empty() {
        Err(what)
    } else {
        Err(format!("{what}: {tail}"))
    }
}

/// Waits for the hook; past `timeout` kills its process group and fails.
fn wait(child: &mut Child, timeout: Option<Duration>) -> std::result::Result<ExitStatus, String> {
    let Some(timeout) = timeout else {
        return child.wait().map_err(|e| format!("wait: {e}"));
    };
    let deadline = Instant::now() + timeout;
    let pidfd = pidfd_open(child.id() as i32);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let pid = child.id() as i32;
            // SAFETY: kill with integer arguments; the group is the hook's own (setsid), and
            // the hook is our unreaped child, so its pid (= group id) is not reused.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", timeout.as_secs()));
        }
        match &pidfd {
            // Readable once the hook has exited.
            Some(fd) => {
                let mut fds = [libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: poll on one pollfd that outlives the call.
                unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
            }
            // No pidfd (a seccomp profile refusing pidfd_open): look again shortly.
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn memfd(name: &CStr) -> std::result::Result<File, String> {
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder, SpecBuilder};

    fn hook(path: &str, args: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path(path)
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["WHO=hook".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    fn test_state() -> State {
        let spec = SpecBuilder::default().build().unwrap();
        state(&spec, "c1", Path::new("/b"), ContainerState::Creating, 42)
    }

    #[test]
    fn a_relative_path_or_a_timeout_of_zero_is_refused_by_field() {
        let hooks = HooksBuilder::default()
            .poststart(vec![hook("/bin/true", &[], None), hook("true", &[], None)])
            .build()
            .unwrap();
        let err = validate(&hooks).unwrap_err().to_string();
        assert!(err.contains("hooks.poststart[1].path"), "{err}");
        let hooks = HooksBuilder::default()
            .create_runtime(vec![hook("/bin/true", &[], Some(0))])
            .build()
            .unwrap();
        let err = validate(&hooks).unwrap_err().to_string();
        assert!(err.contains("hooks.createRuntime[0].timeout"), "{err}");
    }

    #[test]
    fn a_hook_reads_the_state_and_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {0}; echo >> {0}; echo \"$WHO $0\" >> {0}",
            out.display()
        );
        let h = hook("/bin/sh", &["argzero", "-c", &script], Some(5));
        run(Stage::Poststart, &[h], &test_state()).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let (json, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let doc: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(doc["id"], "c1");
        assert_eq!(doc["pid"], 42);
        assert_eq!(doc["status"], "creating");
        assert_eq!(doc["bundle"], "/b");
        assert_eq!(rest.trim(), "hook argzero", "{text}");
    }

    #[test]
    fn a_failing_hook_is_named_with_its_output() {
        let hooks = [
            hook("/bin/true", &[], None),
            hook(
                "/bin/sh",
                &["sh", "-c", "echo no network >&2; exit 3"],
                None,
            ),
        ];
        let err = run(Stage::CreateRuntime, &hooks, &test_state())
            .unwrap_err()
            .to_string();
        assert!(err.contains("hooks.createRuntime[1]"), "{err}");
        assert!(err.contains("exit status 3"), "{err}");
        assert!(err.contains("no network"), "{err}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let started = Instant::now();
        let h = hook("/bin/sh", &["sh", "-c", "sleep 30"], Some(1));
        let err = run(Stage::Poststop, &[h], &test_state())
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
