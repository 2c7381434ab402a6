//! One exec process of a container (`ctr task exec`, CRI `ExecSync`): recorded by Exec,
//! built at Start (runtime-core's exec through the setup helper, in the running container's
//! namespaces and cgroup), stopped when reaped and its output drained, deleted by Delete. Its
//! state machine is the init's ([`Process`]).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::SystemTime;

use oci_spec::runtime::Spec;
use runtime_core::cgroups::CgroupManager;
use runtime_core::process::{ExecConfig, Launcher, PendingExec};
use tokio::sync::oneshot;

use super::{Launch, Pending, Process, end_failed, spawn};
use crate::errors::Failure;
use crate::events::Publisher;
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio::{self, StdioCopies};

pub struct ExecProcess {
    pub process: Process,
    /// The container's spec with the exec's process (runtime_core::process::exec_spec).
    spec: Spec,
}

/// What starting an exec needs of its container and of the daemon.
pub struct StartContext<'a> {
    pub launcher: Arc<Launcher>,
    pub monitor: ExitMonitor,
    pub publisher: Publisher,
    pub namespace: String,
    pub cgroup: CgroupManager,
    /// A pidfd of the container's init: the namespaces are joined through it.
    pub init: &'a OwnedFd,
    /// Owner of the process's stdio pipes.
    pub io_owner: (u32, u32),
    pub no_new_keyring: bool,
    /// The container's bundle (a seccomp agent's state names it).
    pub bundle: std::path::PathBuf,
}

impl Pending for PendingExec {
    /// Its pid and, with a terminal, its pty master.
    type Ready = (i32, Option<OwnedFd>);

    fn helper_pid(&self) -> Option<i32> {
        Some(PendingExec::helper_pid(self))
    }

    fn wait_pid(&mut self) -> runtime_core::Result<i32> {
        PendingExec::wait_pid(self)
    }

    fn wait_ready(self) -> runtime_core::Result<Self::Ready> {
        self.wait_exec_with_console()
    }
}

impl ExecProcess {
    pub fn new(container_id: &str, exec_id: &str, stdio: stdio::Paths, spec: Spec) -> Arc<Self> {
        let process = Process::new(container_id, exec_id, stdio, StdioCopies::default(), false);
        Arc::new(ExecProcess { process, spec })
    }

    /// Builds the process in the container and lets it exec. `on_started` (publishing
    /// `/tasks/exec-started`) runs before the exit watcher may publish its `/tasks/exit`.
    /// A failure leaves the exec stopped (status 127, no event: it never started) and the
    /// container untouched.
    pub async fn start(
        self: &Arc<Self>,
        ctx: StartContext<'_>,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, Failure> {
        let process = &self.process;
        let mut exit_rx = None;
        let launch = async |stdio: &mut StdioCopies| {
            let owner = stdio::Owner {
                id: &process.container_id,
                namespace: &ctx.namespace,
                ids: ctx.io_owner,
            };
            let (child_stdio, mut copies) = stdio::open(&process.stdio, owner, &ctx.monitor)
                .await
                .map_err(|e| Failure::Invalid(format!("exec {} stdio: {e}", process.exec_id)))?;
            let init = ctx
                .init
                .try_clone()
                .map_err(|e| Failure::Internal(format!("dup the init's pidfd: {e}")))?;
            let config = ExecConfig {
                container_id: process.container_id.clone(),
                exec_id: process.exec_id.clone(),
                spec: self.spec.clone(),
                cgroup: ctx.cgroup.clone(),
                no_new_keyring: ctx.no_new_keyring,
                pass_fds: 0,
                bundle: Some(ctx.bundle.clone()),
            };
            let launcher = ctx.launcher.clone();
            let spawn_exec = move || launcher.spawn_exec(config, child_stdio, init.as_fd());
            let (built, subscribed) = spawn("exec", &ctx.monitor, spawn_exec, |_| {}).await;
            // The process's pty master came with its ready message.
            let built = built.and_then(|(pid, console)| {
                copies.attach_console(console).map_err(|e| {
                    Failure::Internal(format!("exec {} process.terminal: {e}", process.exec_id))
                })?;
                Ok(pid)
            });
            let pid = match built {
                Ok(pid) => pid,
                Err(err) => {
                    let exit = end_failed(&ctx.monitor, subscribed).await;
                    copies.close().await;
                    let exit = exit.unwrap_or(Exit {
                        status: 127,
                        at: SystemTime::now(),
                    });
                    return Ok(Launch::Failed(exit, err));
                }
            };
            exit_rx = Some(match subscribed {
                Some((_, rx)) => rx,
                None => ctx.monitor.subscribe(pid),
            });
            // Fails only when the process is already reaped: then there is nothing to signal.
            process.set_pid(pid, ctx.monitor.open_pidfd(pid).ok());
            *stdio = copies;
            Ok(Launch::Running)
        };
        let pid = process.start(launch, on_started).await?;
        if let Some(exit) = exit_rx {
            tokio::spawn(watch_exit(self.clone(), exit, ctx.publisher, ctx.namespace));
        }
        Ok(pid)
    }
}

async fn watch_exit(
    exec: Arc<ExecProcess>,
    exit: oneshot::Receiver<Exit>,
    publisher: Publisher,
    namespace: String,
) {
    let Some(exit) = exec.process.reaped(exit).await else {
        return;
    };
    exec.process
        .stop(exit, |event| {
            publisher.publish(&namespace, "/tasks/exit", &event)
        })
        .await;
}

/// `ProcessInfo.info` of an exec's process in a Pids answer, as the stock shim fills it: a
/// `containerd.runc.v1.ProcessDetails { exec_id = 1 }`.
pub fn process_details(exec_id: &str) -> protobuf::well_known_types::any::Any {
    let mut value = Vec::new();
    {
        let mut out = protobuf::CodedOutputStream::vec(&mut value);
        // Writing into a Vec cannot fail.
        let _ = out.write_string(1, exec_id);
        let _ = out.flush();
    }
    protobuf::well_known_types::any::Any {
        type_url: "containerd.runc.v1.ProcessDetails".into(),
        value,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_details_carry_the_exec_id_as_field_1() {
        let any = process_details("probe");
        assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
        // Tag 1, wire type 2 (length-delimited), length 5.
        assert_eq!(any.value, b"\x0a\x05probe");
    }
}
