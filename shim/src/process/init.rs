//! A container's init: built by the setup helper at Create (its cgroup, namespaces, rootfs;
//! see `runtime_core::process`) and left blocked before exec; Start lets it exec the user's
//! process. Its exit ends the container (see `container.rs`, which owns the rest of it).

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use containerd_shim_protos::events::task::TaskExit;
use runtime_core::process::{CreatedInit, HelperConfig, InitStdio, Launcher, PendingInit};
use tokio::sync::oneshot;

use super::{Launch, Pending, Process, end_failed, spawn};
use crate::errors::Failure;
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio::{self, StdioCopies};

pub struct InitProcess {
    pub process: Process,
    /// The init blocked before exec, until Start releases it or it exits.
    created: Mutex<Option<CreatedInit>>,
}

impl Pending for PendingInit {
    type Ready = CreatedInit;

    fn helper_pid(&self) -> Option<i32> {
        PendingInit::helper_pid(self)
    }

    fn wait_pid(&mut self) -> runtime_core::Result<i32> {
        PendingInit::wait_pid(self)
    }

    fn wait_ready(self) -> runtime_core::Result<CreatedInit> {
        PendingInit::wait_ready(self)
    }
}

impl InitProcess {
    /// Builds the init with `stdio` (opened from `paths`) and leaves it blocked before exec.
    /// Returns it with the receiver of its exit, for the container's exit watcher. On failure
    /// nothing of the process is left and its stdio is closed; the cgroup and the rootfs are
    /// the caller's to remove.
    pub async fn create(
        config: HelperConfig,
        paths: stdio::Paths,
        (child_stdio, mut copies): (InitStdio, StdioCopies),
        launcher: Arc<Launcher>,
        monitor: &ExitMonitor,
    ) -> Result<(InitProcess, oneshot::Receiver<Exit>), Failure> {
        let id = config.id.clone();
        let bundle = config.bundle.clone();
        let (built, subscribed) = spawn(
            "create",
            monitor,
            move || launcher.spawn(config, child_stdio),
            // Recorded at once, for `delete` after this daemon died: the helper reports the
            // pid once the init is in the container's cgroup, which it found empty, so a
            // recorded pid also says that the cgroup is ours. Until then the setup processes
            // die with this thread (see Launcher::spawn).
            move |pid| record_init(&bundle, pid),
        )
        .await;
        // The init's pty master comes with its ready message.
        let built = built.and_then(|mut created| {
            copies
                .attach_console(created.take_console())
                .map_err(|e| Failure::Internal(format!("process.terminal: {e}")))?;
            Ok(created)
        });
        let created = match built {
            Ok(created) => created,
            Err(err) => {
                end_failed(monitor, subscribed).await;
                copies.close().await;
                return Err(err);
            }
        };
        let pid = created.pid();
        let exit = match subscribed {
            Some((_, rx)) => rx,
            None => monitor.subscribe(pid),
        };
        let pidfd = match monitor.open_pidfd(pid) {
            Ok(fd) => Some(fd),
            Err(err) => {
                log::warn!("pidfd of {id}'s init {pid}: {err}");
                None
            }
        };
        let process = Process::new(&id, "", paths, copies, true);
        process.set_pid(pid, pidfd);
        let init = InitProcess {
            process,
            created: Mutex::new(Some(created)),
        };
        Ok((init, exit))
    }

    /// Lets the init exec the user's process. `on_started` runs (publishing `/tasks/start`)
    /// before the exit watcher may publish `/tasks/exit`.
    pub async fn start(&self, on_started: impl FnOnce(i32)) -> Result<(), Failure> {
        let launch = async |_: &mut StdioCopies| {
            let created = self.take_created().ok_or_else(|| {
                Failure::State(format!(
                    "container {} is already starting",
                    self.process.container_id
                ))
            })?;
            tokio::task::spawn_blocking(move || created.start())
                .await
                .map_err(|e| Failure::Internal(format!("start task: {e}")))?
                .map_err(|e| Failure::Runtime("start", e))?;
            Ok(Launch::Running)
        };
        self.process.start(launch, on_started).await.map(drop)
    }

    /// After the reap: the init stops (see [`Process::stop`]); what kept it waiting for
    /// Start goes.
    pub async fn stop(&self, exit: Exit, report: impl FnOnce(TaskExit)) {
        self.process
            .stop(exit, |event| {
                drop(self.take_created());
                report(event)
            })
            .await
    }

    fn take_created(&self) -> Option<CreatedInit> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Records the init for `delete` (see `cleanup::INIT_PID`): its start time first, so that a
/// recorded pid always comes with it.
fn record_init(bundle: &Path, pid: i32) {
    let start = crate::cleanup::start_time(pid).map(|t| t.to_string());
    let files = [
        (crate::cleanup::INIT_START, start),
        (crate::cleanup::INIT_PID, Some(pid.to_string())),
    ];
    for (name, text) in files {
        let path = bundle.join(name);
        if let Some(text) = text
            && let Err(err) = fs::write(&path, text)
        {
            log::warn!("record {}: {err}", path.display());
        }
    }
}
