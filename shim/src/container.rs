//! One container: its bundle, rootfs, cgroup (Pause, Resume, Update, Stats, OOM) and spec,
//! and its processes, the init and the execs (see `process`). The container ends with its
//! init: its exit watcher ends the execs and publishes `/tasks/exit`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use oci_spec::runtime::ContainerState;
use runtime_core::cgroups::CgroupManager;
use runtime_core::hooks::Stage;
use runtime_core::process::{HelperConfig, Launcher};
use runtime_core::rootfs::{self, RootfsMount};
use tokio::sync::oneshot;

use crate::errors::Failure;
use crate::events::Publisher;
use crate::process::exec::{ExecProcess, StartContext};
use crate::process::init::InitProcess;
use crate::process::{Status, send_signal, signal_number};
use crate::reaper::{Exit, ExitMonitor};
use crate::stdio;

/// What containerd asked for at Create.
pub struct CreateParams {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<RootfsMount>,
    pub stdio: stdio::Paths,
    /// Owner of the process's stdio pipes (uid, gid): a user namespace's root.
    pub io_owner: (u32, u32),
    pub no_new_keyring: bool,
    /// The runtime options' `SystemdCgroup`: place the container in a systemd scope.
    pub systemd_cgroup: bool,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// The init: its pid is the task's.
    pub init: InitProcess,
    cgroup: CgroupManager,
    /// Whether the container has a pid namespace of its own: then the kernel kills the rest of
    /// it when the init exits; otherwise the shim does.
    private_pid_ns: bool,
    /// The rootfs we mounted (from containerd's mounts), unmounted at delete.
    mounted_rootfs: Option<PathBuf>,
    /// Set for a container containerd never learnt of (its Create's caller went away): its
    /// exit is not published.
    discarded: AtomicBool,
    /// The spec the container was built from: an exec's process replaces its `process`.
    spec: oci_spec::runtime::Spec,
    /// Runs the spec's `poststart` and `poststop` hooks.
    launcher: Arc<Launcher>,
    io_owner: (u32, u32),
    no_new_keyring: bool,
    /// The exec processes, by exec id, until each is deleted.
    execs: std::sync::Mutex<HashMap<String, Arc<ExecProcess>>>,
    /// Publishes `/tasks/oom`; asked once more before `/tasks/exit`.
    oom: crate::oom::OomWatch,
    /// Held through a Delete; true once one succeeded. A Delete during or after it answers
    /// NotFound (as the stock shim's deleted state), so `/tasks/delete` goes out once.
    deleted: tokio::sync::Mutex<bool>,
    /// Set once `/tasks/create` is queued (or the container is discarded): the exit watcher
    /// publishes nothing before, so `/tasks/exit` never precedes `/tasks/create`.
    announced: tokio::sync::watch::Sender<bool>,
}

impl Container {
    /// Builds the container and leaves its init blocked before exec.
    pub async fn create(
        params: CreateParams,
        launcher: Arc<Launcher>,
        monitor: ExitMonitor,
        publisher: Publisher,
        namespace: String,
    ) -> Result<Arc<Container>, Failure> {
        let spec = runtime_core::spec::load(&params.bundle)
            .map_err(|e| Failure::Runtime("load spec", e))?;
        let spec_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        if spec_terminal != params.stdio.terminal {
            return Err(Failure::Invalid(format!(
                "process.terminal is {spec_terminal} in the spec but the task asks for terminal \
                 {}",
                params.stdio.terminal
            )));
        }
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        let cgroup = CgroupManager::for_container(
            &params.id,
            cgroups_path.as_deref(),
            params.systemd_cgroup,
        )
        .map_err(|e| Failure::Runtime("cgroup", e))?;
        // A mark left by an earlier container of this bundle would keep this one's poststop
        // hooks from running.
        if runtime_core::hooks::any(&spec, &[Stage::Poststop]) {
            let _ = std::fs::remove_file(params.bundle.join(crate::cleanup::POSTSTOP_RAN));
        }
        // Recorded before anything is created, for `delete` after this daemon died: it
        // removes this cgroup (with the driver chosen here) and no other. With cgroupfs the
        // setup helper writes it, with the directories it made (only those are ever
        // removed), before its first `mkdir`; a systemd scope is recorded here.
        let record = params.bundle.join(crate::cleanup::CGROUP_RECORD);
        if cgroup.systemd_unit().is_some() {
            cgroup
                .save(&record)
                .map_err(|e| Failure::Runtime("cgroup", e))?;
        }

        let private_pid_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|nss| {
                nss.iter().any(|ns| {
                    ns.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && ns.path().is_none()
                })
            });

        let (rootfs_path, mounted_rootfs) = if params.rootfs.is_empty() {
            (runtime_core::spec::rootfs_path(&spec, &params.bundle), None)
        } else {
            let target = params.bundle.join("rootfs");
            let mounts = params.rootfs.clone();
            let t = target.clone();
            // Mounting an overlay takes milliseconds: not on the daemon's only thread.
            tokio::task::spawn_blocking(move || {
                fs::create_dir_all(&t)
                    .map_err(|e| Failure::Internal(format!("create {}: {e}", t.display())))?;
                rootfs::mount_rootfs(&mounts, &t).map_err(|e| {
                    // Whatever part of it did get mounted goes too.
                    let _ = rootfs::unmount_rootfs(&t);
                    Failure::Runtime("mount rootfs", e)
                })
            })
            .await
            .map_err(|e| Failure::Internal(format!("mount task: {e}")))??;
            (target.clone(), Some(target))
        };
        let undo_rootfs = |mounted: &Option<PathBuf>| {
            if let Some(target) = mounted
                && let Err(err) = rootfs::unmount_rootfs(target)
            {
                log::warn!("unmount {}: {err}", target.display());
            }
        };

        let owner = stdio::Owner {
            id: &params.id,
            namespace: &namespace,
            ids: params.io_owner,
        };
        let opened = stdio::open(&params.stdio, owner, &monitor).await;
        let opened = match opened {
            Ok(x) => x,
            Err(err) => {
                undo_rootfs(&mounted_rootfs);
                return Err(Failure::Invalid(format!("stdio: {err}")));
            }
        };

        let config = HelperConfig {
            id: params.id.clone(),
            bundle: params.bundle.clone(),
            rootfs: rootfs_path,
            spec: spec.clone(),
            // Resolved once, here: the helper needs the same directories we remove later.
            cgroup: Some(cgroup.clone()),
            cgroup_record: Some(record.clone()),
            no_new_keyring: params.no_new_keyring,
            // The shim always uses pivot_root.
            no_pivot: false,
            pass_fds: 0,
        };
        let created =
            InitProcess::create(config, params.stdio, opened, launcher.clone(), &monitor).await;
        let cgroup = made_by_setup(cgroup, &record);
        let (init, exit) = match created {
            Ok(created) => created,
            Err(err) => {
                // Only what the helper made, if unused: the init (which cannot have forked
                // yet) is gone, and a cgroup that was there before is not ours to remove.
                remove_cgroup(cgroup, false).await;
                undo_rootfs(&mounted_rootfs);
                // A failed create continues the lifecycle at the container's destruction,
                // then `poststop` (runtime.md steps 12 and 13), as runc does.
                let state = runtime_core::hooks::state(
                    &spec,
                    &params.id,
                    &params.bundle,
                    ContainerState::Stopped,
                    0,
                );
                if claim_poststop(&spec, &params.bundle) {
                    run_late_hooks(&launcher, &spec, Stage::Poststop, state).await;
                }
                return Err(err);
            }
        };

        let identified = identify_scope(&cgroup, init.process.pid(), &params.bundle).await;
        let cgroup = match &identified {
            Ok(identified) => identified.clone(),
            Err(_) => cgroup,
        };

        let oom = crate::oom::OomWatch::start(&params.id, &cgroup, publisher.clone(), &namespace);
        let container = Arc::new(Container {
            id: params.id,
            bundle: params.bundle,
            init,
            cgroup,
            private_pid_ns,
            mounted_rootfs,
            discarded: AtomicBool::new(false),
            spec,
            launcher,
            io_owner: params.io_owner,
            no_new_keyring: params.no_new_keyring,
            execs: std::sync::Mutex::new(HashMap::new()),
            oom,
            deleted: tokio::sync::Mutex::new(false),
            announced: tokio::sync::watch::channel(false).0,
        });
        tokio::spawn(watch_exit(container.clone(), exit, publisher, namespace));
        if let Err(err) = identified {
            // The init dies; its scope, left untouched, goes with it.
            if let Err(e) = container.discard().await {
                log::warn!("remove {}: {e:?}", container.id);
            }
            return Err(err);
        }
        release_free_memory();
        Ok(container)
    }

    /// Create has queued `/tasks/create`: the exit watcher may publish `/tasks/exit`.
    pub fn announced(&self) {
        self.announced.send_replace(true);
    }

    /// Lets the init exec the user's process (see [`InitProcess::start`]), then runs the
    /// spec's `poststart` hooks before answering (runtime.md step 9: a failing one is a
    /// warning).
    pub async fn start(&self, on_started: impl FnOnce(i32)) -> Result<(), Failure> {
        self.init.start(on_started).await?;
        self.run_late_hooks(Stage::Poststart, ContainerState::Running, self.pid())
            .await;
        Ok(())
    }

    async fn run_late_hooks(&self, stage: Stage, status: ContainerState, pid: i32) {
        let state = runtime_core::hooks::state(&self.spec, &self.id, &self.bundle, status, pid);
        run_late_hooks(&self.launcher, &self.spec, stage, state).await
    }

    /// The init's pid: the task's.
    pub fn pid(&self) -> i32 {
        self.init.process.pid()
    }

    /// Signals the init (or, with `all`, every process in the container's cgroup) with any
    /// signal 1–64, real-time ones included.
    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), Failure> {
        let sig = signal_number(signal)?;
        if self.init.process.is_reaped() {
            return Err(Failure::State("process already finished".into()));
        }
        if all {
            let cgroup = self.cgroup.clone();
            // SIGKILL of a v1 cgroup may poll for a while: not on the daemon's only thread.
            let result = tokio::task::spawn_blocking(move || kill_cgroup(&cgroup, sig)).await;
            if let Ok(Err(err)) = result {
                log::warn!("kill all in {}: {err}", self.id);
            }
        }
        // Checked again (by the init) after the await above: a reaped pid may belong to
        // someone else now.
        let mut sent = self.init.process.kill(signal);
        if all && matches!(sent, Err(Failure::State(_))) {
            // The cgroup's kill reached the init too, and it has finished already (a SIGKILL
            // of the cgroup waits for its processes to go): the request did what it asked.
            sent = Ok(());
        }
        if sig == libc::SIGKILL {
            // A frozen process acts on SIGKILL only once thawed (runc: signal, then thaw).
            self.thaw_after_kill().await;
        }
        sent
    }

    /// The processes in the container's cgroup (containerd 1.7+ keeps a shim after its own
    /// restart only if this is not empty).
    pub async fn pids(&self) -> Vec<i32> {
        let cgroup = self.cgroup.clone();
        let mut pids = tokio::task::spawn_blocking(move || cgroup.pids())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if pids.is_empty() && self.init.process.exit().is_none() {
            pids.push(self.pid());
        }
        pids
    }

    /// Removes what the container left: the init (a created one is killed), the execs, the
    /// cgroup and the rootfs we mounted. Refused while the init runs; NotFound once deleted
    /// (a concurrent Delete waits for the first). One that failed may be retried.
    pub async fn delete(&self) -> Result<Exit, Failure> {
        let mut deleted = self.deleted.lock().await;
        if *deleted {
            return Err(Failure::NotFound(format!(
                "container {}: deleted already",
                self.id
            )));
        }
        let exit = self.init.process.delete().await?;
        let execs: Vec<_> = self.execs_table().drain().map(|(_, e)| e).collect();
        for exec in execs {
            exec.process.discard().await;
        }
        remove_cgroup(self.cgroup.clone(), true).await;
        if let Some(target) = self.mounted_rootfs.clone() {
            tokio::task::spawn_blocking(move || rootfs::unmount_rootfs(&target))
                .await
                .map_err(|e| Failure::Internal(format!("unmount task: {e}")))?
                .map_err(|e| Failure::Runtime("unmount rootfs", e))?;
        }
        // After the container is gone, before Delete answers (runtime.md step 13).
        if claim_poststop(&self.spec, &self.bundle) {
            self.run_late_hooks(Stage::Poststop, ContainerState::Stopped, 0)
                .await;
        }
        *deleted = true;
        Ok(exit)
    }
}

/// Whether the daemon runs the poststop hooks: the spec has some, and the mark that keeps
/// the `delete` command (which containerd runs after the daemon is gone) from running them
/// again is made by this call (that command has not run them already).
fn claim_poststop(spec: &oci_spec::runtime::Spec, bundle: &Path) -> bool {
    if !runtime_core::hooks::any(spec, &[Stage::Poststop]) {
        return false;
    }
    crate::cleanup::claim_poststop(bundle).unwrap_or_else(|err| {
        log::warn!("{err}");
        true
    })
}

/// The spec's `poststart` or `poststop` hooks, in the daemon's namespaces. A failing hook is
/// logged and the lifecycle goes on, as runtime.md says for these two kinds.
async fn run_late_hooks(
    launcher: &Arc<Launcher>,
    spec: &oci_spec::runtime::Spec,
    stage: Stage,
    state: oci_spec::runtime::State,
) {
    if !runtime_core::hooks::any(spec, &[stage]) {
        return;
    }
    let id = state.id().clone();
    let hooks = spec.hooks().clone();
    let launcher = launcher.clone();
    let ran =
        tokio::task::spawn_blocking(move || launcher.run_hooks(stage, hooks.as_ref(), &state))
            .await;
    match ran {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::warn!("container {id}: {err}"),
        Err(err) => log::warn!("container {id}: hooks.{}: {err}", stage.name()),
    }
}

/// Signals every process in the cgroup: SIGKILL through the cgroup's own kill (which waits
/// until the cgroup is empty), any other signal once to each process in it.
fn kill_cgroup(cgroup: &CgroupManager, signal: i32) -> Result<(), String> {
    if signal == libc::SIGKILL {
        return cgroup.kill_all(Signal::SIGKILL).map_err(|e| e.to_string());
    }
    for pid in cgroup.pids().map_err(|e| e.to_string())? {
        match send_signal(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("kill {pid} with signal {signal}: {e}")),
        }
    }
    Ok(())
}

impl Container {
    fn execs_table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecProcess>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exec: records a process to start in the running container. The exec's process (the
    /// JSON of an OCI Process) is checked against the container's spec now; the process is
    /// built at Start.
    pub async fn add_exec(
        &self,
        exec_id: &str,
        process_json: &[u8],
        stdio: stdio::Paths,
    ) -> Result<Arc<ExecProcess>, Failure> {
        if exec_id.is_empty() {
            return Err(Failure::Invalid("exec: empty exec id".into()));
        }
        self.check_running()?;
        let spec = runtime_core::process::exec_spec(&self.spec, process_json)
            .map_err(|e| Failure::Runtime("exec", e))?;
        let spec_terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        if spec_terminal != stdio.terminal {
            return Err(Failure::Invalid(format!(
                "exec {exec_id}: process.terminal is {spec_terminal} but the request asks for \
                 terminal {}",
                stdio.terminal
            )));
        }
        let mut execs = self.execs_table();
        if execs.contains_key(exec_id) {
            return Err(Failure::Exists(format!("exec {exec_id} of {}", self.id)));
        }
        let exec = ExecProcess::new(&self.id, exec_id, stdio, spec);
        execs.insert(exec_id.to_string(), exec.clone());
        Ok(exec)
    }

    /// Refused unless the init runs: an exec joins its namespaces.
    fn check_running(&self) -> Result<(), Failure> {
        if self.init.process.is_reaped() || self.init.process.exit().is_some() {
            return Err(Failure::State(format!(
                "container {} has exited: cannot exec into it",
                self.id
            )));
        }
        Ok(())
    }

    /// The exec `exec_id`, NotFound-style `None` if there is none.
    pub fn exec(&self, exec_id: &str) -> Option<Arc<ExecProcess>> {
        self.execs_table().get(exec_id).cloned()
    }

    /// Start of an exec: builds its process in the container.
    pub async fn start_exec(
        &self,
        exec: &Arc<ExecProcess>,
        launcher: Arc<Launcher>,
        monitor: ExitMonitor,
        publisher: Publisher,
        namespace: String,
        on_started: impl FnOnce(i32),
    ) -> Result<i32, Failure> {
        if self.init.process.status().await.0 != Status::Running {
            return Err(Failure::State(format!(
                "container {} is not running: cannot exec into it",
                self.id
            )));
        }
        self.check_running()?;
        let init = self.init.process.pidfd().ok_or_else(|| {
            Failure::State(format!(
                "container {}: its init is gone: cannot exec into it",
                self.id
            ))
        })?;
        let ctx = StartContext {
            launcher,
            monitor,
            publisher,
            namespace,
            cgroup: self.cgroup.clone(),
            init,
            io_owner: self.io_owner,
            no_new_keyring: self.no_new_keyring,
            bundle: self.bundle.clone(),
        };
        let pid = exec.start(ctx, on_started).await?;
        // The init may have exited while the exec was built, after its watcher ended the
        // execs it knew running: this one ends too.
        if self.init.process.is_reaped() {
            exec.process.kill_if_running();
        }
        Ok(pid)
    }

    /// Delete of an exec: its exit, and it is forgotten.
    pub async fn delete_exec(&self, exec: &Arc<ExecProcess>) -> Result<Exit, Failure> {
        let exit = exec.process.delete().await?;
        self.execs_table().remove(&exec.process.exec_id);
        Ok(exit)
    }

    /// The exec id of each running exec's pid.
    pub fn exec_pids(&self) -> HashMap<i32, String> {
        self.execs_table()
            .values()
            .filter(|e| e.process.pid() != 0)
            .map(|e| (e.process.pid(), e.process.exec_id.clone()))
            .collect()
    }

    /// Removes a container whose Create's caller went away, without a word to containerd:
    /// it never learnt of it.
    pub async fn discard(&self) -> Result<Exit, Failure> {
        self.discarded.store(true, Ordering::SeqCst);
        // Its watcher goes on (and publishes nothing).
        self.announced();
        self.delete().await
    }
}

/// Pause, Resume, Update and Stats: the container's cgroup as a whole.
impl Container {
    /// Freezes every process of the container; the init goes Running → Paused.
    pub async fn pause(&self) -> Result<(), Failure> {
        let init = &self.init.process;
        init.change_status(async |status| {
            if *status != Status::Running || init.is_reaped() {
                return Err(Failure::State(format!(
                    "container {} is {status:?}, not running: only a running container can be \
                     paused",
                    self.id
                )));
            }
            self.on_cgroup("pause", |cgroup| cgroup.freeze()).await?;
            *status = Status::Paused;
            Ok(())
        })
        .await
    }

    /// Thaws a paused container; the init goes Paused → Running.
    pub async fn resume(&self) -> Result<(), Failure> {
        self.init
            .process
            .change_status(async |status| {
                if *status != Status::Paused {
                    return Err(Failure::State(format!(
                        "container {} is {status:?}, not paused",
                        self.id
                    )));
                }
                self.on_cgroup("resume", |cgroup| cgroup.thaw()).await?;
                *status = Status::Running;
                Ok(())
            })
            .await
    }

    /// After a SIGKILL: thaws a paused container so that its processes can die. The init
    /// stays Paused until its exit stops it, with no `/tasks/resumed`: as with the stock
    /// shim, whose paused init leaves that state only by Resume or by its exit.
    async fn thaw_after_kill(&self) {
        self.init
            .process
            .change_status(async |status| {
                if *status != Status::Paused {
                    return;
                }
                if let Err(err) = self.on_cgroup("thaw", |cgroup| cgroup.thaw()).await {
                    log::warn!("thaw {} after SIGKILL: {err:?}", self.id);
                }
            })
            .await
    }

    /// Changes the container's limits; refused ones leave the old limits in place.
    pub async fn update(
        &self,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), Failure> {
        if self.init.process.is_reaped() {
            return Err(Failure::State(format!(
                "container {} has stopped: nothing to update",
                self.id
            )));
        }
        self.on_cgroup("update", move |cgroup| cgroup.update(&resources))
            .await
    }

    /// The container's cgroup statistics.
    pub async fn stats(&self) -> Result<runtime_core::cgroups::stats::Stats, Failure> {
        self.on_cgroup("stats", |cgroup| cgroup.stats()).await
    }

    /// Runs `op` on the container's cgroup off the daemon's only thread (freezing waits for
    /// the kernel; cgroup files can be slow).
    async fn on_cgroup<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl FnOnce(&CgroupManager) -> runtime_core::Result<T> + Send + 'static,
    ) -> Result<T, Failure> {
        let cgroup = self.cgroup.clone();
        tokio::task::spawn_blocking(move || op(&cgroup))
            .await
            .map_err(|e| Failure::Internal(format!("{what} task: {e}")))?
            .map_err(|e| Failure::Runtime(what, e))
    }
}

/// Gives the pages malloc holds free back to the kernel: Create parses the whole spec, and a
/// long-running daemon should not keep that memory.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe { libc::malloc_trim(0) };
}

/// With the systemd driver: the cgroup with the identity of the scope that now holds the init
/// `pid`, recorded in the bundle; kill and delete (here and in `delete`) act on no scope
/// without it. Other drivers need nothing.
async fn identify_scope(
    cgroup: &CgroupManager,
    pid: i32,
    bundle: &Path,
) -> Result<CgroupManager, Failure> {
    if cgroup.systemd_unit().is_none() {
        return Ok(cgroup.clone());
    }
    let cgroup = cgroup.clone();
    let record = bundle.join(crate::cleanup::CGROUP_RECORD);
    tokio::task::spawn_blocking(move || {
        let identified = cgroup.identified(pid)?;
        identified.save(&record)?;
        Ok(identified)
    })
    .await
    .map_err(|e| Failure::Internal(format!("identify scope task: {e}")))?
    .map_err(|e| Failure::Runtime("cgroup", e))
}

/// `cgroup` with the directories the setup helper made for it, as the helper recorded them
/// in the bundle. Without that record (the helper stopped before making any) nothing of the
/// cgroup is known to be ours to remove after a failed Create.
fn made_by_setup(cgroup: CgroupManager, record: &Path) -> CgroupManager {
    if cgroup.systemd_unit().is_some() {
        return cgroup;
    }
    cgroup.with_recorded_made(record).unwrap_or_else(|err| {
        log::warn!("{err}");
        cgroup
    })
}

/// Removes the container's cgroup, first killing what is left in it when `kill_first`;
/// otherwise only what the setup helper made, if unused (a cgroup that was there before,
/// or holds processes, is left alone).
async fn remove_cgroup(cgroup: CgroupManager, kill_first: bool) {
    let result = tokio::task::spawn_blocking(move || {
        if kill_first {
            let _ = cgroup.kill_all(Signal::SIGKILL);
            cgroup.destroy()
        } else {
            // A failed Create: the cgroup may have been there before (with others'
            // processes or sub-cgroups); only what the helper made, unused, is removed.
            cgroup.remove_if_unused()
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::warn!("remove cgroup: {err}"),
        Err(err) => log::warn!("remove cgroup task: {err}"),
    }
}

/// How long the init's exit waits for the execs' exits after their SIGKILL.
const EXEC_EXITS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The init's exit watcher: the container ends with its init.
async fn watch_exit(
    container: Arc<Container>,
    exit: oneshot::Receiver<Exit>,
    publisher: Publisher,
    namespace: String,
) {
    let Some(exit) = container.init.process.reaped(exit).await else {
        return;
    };
    // The execs end with the init, as with the stock shim (the kernel also ends those in the
    // init's pid namespace); each exit is still reported by its own watcher.
    let execs: Vec<_> = container.execs_table().values().cloned().collect();
    for exec in &execs {
        exec.process.kill_if_running();
    }
    if !container.private_pid_ns {
        // Sharing a pid namespace, the container's other processes outlive its init unless
        // we end them (the stock shim does too); they would also hold its output open.
        let cgroup = container.cgroup.clone();
        let _ = tokio::task::spawn_blocking(move || cgroup.kill_all(Signal::SIGKILL)).await;
    }
    // Each started exec's `/tasks/exit` (its output drained) goes out before the init's, as
    // with the stock shim: clients wait for the execs' exits first, and a Delete (allowed once
    // the init stopped) would cut an exec's output short. Bounded: an exec whose output some
    // escaped process holds open does not keep the container from ending.
    let exits = async {
        // Each on its own watcher: waiting one after the other costs nothing.
        for exec in execs.iter().filter(|e| e.process.pid() != 0) {
            exec.process.wait().await;
        }
    };
    if tokio::time::timeout(EXEC_EXITS_TIMEOUT, exits)
        .await
        .is_err()
    {
        log::warn!(
            "{}: execs still running {}s after the init's exit",
            container.id,
            EXEC_EXITS_TIMEOUT.as_secs()
        );
    }
    // An init that died before Create answered: its exit waits for `/tasks/create`.
    let _ = container
        .announced
        .subscribe()
        .wait_for(|announced| *announced)
        .await;
    if !container.discarded.load(Ordering::SeqCst) {
        container
            .oom
            .deliver(exit.status == 128 + libc::SIGKILL as u32)
            .await;
    }
    container
        .init
        .stop(exit, |event| {
            if container.discarded.load(Ordering::SeqCst) {
                return;
            }
            // An OOM kill of the init is published before its exit.
            container.oom.check();
            publisher.publish(&namespace, "/tasks/exit", &event);
        })
        .await;
}

/// The rootfs mounts of a CreateTaskRequest in runtime-core's terms.
pub fn rootfs_mounts(mounts: &[containerd_shim_protos::types::mount::Mount]) -> Vec<RootfsMount> {
    mounts
        .iter()
        .map(|m| RootfsMount {
            typ: m.type_.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        })
        .collect()
}
