//! The Task service: what containerd asks, checked against the containers' states. Served as
//! both `containerd.task.v2.Task` (containerd 1.6, 1.7 and 2.x given a plain address) and
//! `containerd.task.v3.Task`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim_protos::api::{self, Empty};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim_protos::shim_async::{Task, create_task};
use containerd_shim_protos::types::task::{ProcessInfo, Status as ApiStatus};
use protobuf::MessageField;
use runtime_core::process::Launcher;
use tokio::sync::{Notify, oneshot};
use ttrpc::r#async::{Service, TtrpcContext};

use crate::bootstrap::SocketFile;
use crate::container::{Container, CreateParams, rootfs_mounts};
use crate::errors::{self, Failure, failure};
use crate::events::{Publisher, timestamp};
use crate::process::exec::ExecProcess;
use crate::process::{Process, Status};
use crate::reaper::ExitMonitor;
use crate::stdio;

type TtrpcResult<T> = ttrpc::Result<T>;

pub struct TaskService {
    namespace: String,
    publisher: Publisher,
    monitor: ExitMonitor,
    launcher: Mutex<Option<Arc<Launcher>>>,
    tasks: Arc<Tasks>,
}

/// The containers, the Creates under way and the daemon's end: shared with the Create
/// tasks, which outlive the request that started them.
struct Tasks {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Ids whose Create is under way: a second Create of the same id is refused, and
    /// Shutdown does not end the daemon under it.
    creating: Mutex<HashSet<String>>,
    /// Set by Shutdown: the daemon ends as soon as it has nothing left, which may be only
    /// when a Create under way ends.
    shutdown_requested: AtomicBool,
    /// Removed as soon as the daemon is shutting down: a shim started for the same id right
    /// after must be able to bind it.
    socket: Option<SocketFile>,
    shutdown: Arc<Notify>,
}

impl Tasks {
    fn is_idle(&self) -> bool {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
            && self
                .creating
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// Ends the daemon if Shutdown was asked for and nothing is left to serve.
    fn shut_down_if_idle(&self) {
        if self.shutdown_requested.load(Ordering::SeqCst) && self.is_idle() {
            if let Some(socket) = &self.socket {
                socket.remove();
            }
            self.shutdown.notify_one();
        }
    }
}

/// An id reserved for a Create. Released when the Create ends, however it ends (the
/// request gone included), after its container is either served or removed.
struct Reservation {
    tasks: Arc<Tasks>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.tasks
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.tasks.shut_down_if_idle();
    }
}

/// What a Create task hands to its request: the container (or why there is none), with its
/// id still reserved.
type Created = (Result<Arc<Container>, Failure>, Reservation);

/// The request's end of a Create task. A container that was built but never taken (the
/// request was dropped: the client went away) is removed; nobody would ever Delete it.
struct PendingCreate(oneshot::Receiver<Created>);

impl Drop for PendingCreate {
    fn drop(&mut self) {
        if let Ok(created) = self.0.try_recv() {
            tokio::spawn(abandon(created));
        }
    }
}

/// Ends a Create whose caller is gone: removes the container it built, if any, then
/// releases its id.
async fn abandon((built, reservation): Created) {
    log::warn!(
        "create {}: the caller went away; removing what was built",
        reservation.id
    );
    if let Ok(container) = built
        && let Err(err) = container.discard().await
    {
        log::warn!("remove {}: {err:?}", container.id);
    }
    // Nobody knows of this Create any more (containerd 1.6, restarted, never sends a
    // Shutdown for it): a daemon left with nothing to serve ends.
    reservation
        .tasks
        .shutdown_requested
        .store(true, Ordering::SeqCst);
    drop(reservation);
}

impl TaskService {
    pub fn new(
        namespace: String,
        publisher: Publisher,
        monitor: ExitMonitor,
        socket: Option<SocketFile>,
        shutdown: Arc<Notify>,
    ) -> Self {
        TaskService {
            namespace,
            publisher,
            monitor,
            launcher: Mutex::new(None),
            tasks: Arc::new(Tasks {
                containers: Mutex::new(HashMap::new()),
                creating: Mutex::new(HashSet::new()),
                shutdown_requested: AtomicBool::new(false),
                socket,
                shutdown,
            }),
        }
    }

    /// The service under both the v3 and the v2 name.
    pub fn services(self: Arc<Self>) -> HashMap<String, Service> {
        let mut map = create_task(self.clone());
        let v2 = create_task(self).into_iter().map(|(name, svc)| {
            (
                name.replace("containerd.task.v3.", "containerd.task.v2."),
                svc,
            )
        });
        map.extend(v2);
        map
    }

    fn launcher(&self) -> TtrpcResult<Arc<Launcher>> {
        let mut slot = self.launcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        // The exit monitor reaps every child, the hook runners included.
        let launcher = Launcher::new()
            .map(Launcher::reaped_by_caller)
            .map_err(|e| errors::runtime("prepare setup helper", e))?;
        let launcher = Arc::new(launcher);
        *slot = Some(launcher.clone());
        Ok(launcher)
    }

    fn get(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<Container>> {
        if !exec_id.is_empty() {
            return Err(errors::not_found(format!("exec {exec_id} of {id}")));
        }
        self.tasks
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| errors::not_found(format!("container {id}")))
    }

    /// The container `id` and, for a non-empty `exec_id`, its exec of that id.
    fn get_process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> TtrpcResult<(Arc<Container>, Option<Arc<ExecProcess>>)> {
        let container = self.get(id, "")?;
        if exec_id.is_empty() {
            return Ok((container, None));
        }
        let exec = container
            .exec(exec_id)
            .ok_or_else(|| errors::not_found(format!("exec {exec_id} of {id}")))?;
        Ok((container, Some(exec)))
    }

    /// Reserves `id` for a Create; AlreadyExists if it is taken or being created.
    fn reserve(&self, id: &str) -> TtrpcResult<Reservation> {
        let exists = self
            .tasks
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id);
        let mut creating = self
            .tasks
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if exists || !creating.insert(id.to_string()) {
            return Err(errors::already_exists(format!("container {id}")));
        }
        // A Shutdown before this Create no longer applies; one during it ends the daemon
        // when the Create has nothing to show.
        self.tasks.shutdown_requested.store(false, Ordering::SeqCst);
        Ok(Reservation {
            tasks: self.tasks.clone(),
            id: id.to_string(),
        })
    }

    fn publish<E: protobuf::Message>(&self, topic: &str, event: &E) {
        self.publisher.publish(&self.namespace, topic, event);
    }
}

/// The process a request names: the container's init, or the exec `exec`.
fn process<'a>(container: &'a Container, exec: &'a Option<Arc<ExecProcess>>) -> &'a Process {
    match exec {
        Some(exec) => &exec.process,
        None => &container.init.process,
    }
}

fn status_of(status: Status) -> ApiStatus {
    match status {
        Status::Created => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Paused => ApiStatus::PAUSED,
        Status::Stopped | Status::Deleted => ApiStatus::STOPPED,
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        log::info!("create {}", req.id);
        if req.id.is_empty() {
            return Err(errors::invalid_argument("create: empty container id"));
        }
        let reservation = self.reserve(&req.id)?;
        let options = mini_protos::decode_task_options(req.options.as_ref())
            .map_err(errors::invalid_argument)?;
        if options.no_pivot_root {
            return Err(errors::invalid_argument(
                "no_pivot_root is not supported by mini",
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(errors::unimplemented("Create from a checkpoint"));
        }
        let params = CreateParams {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: rootfs_mounts(&req.rootfs),
            stdio: stdio::Paths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            io_owner: (options.io_uid, options.io_gid),
            no_new_keyring: options.no_new_keyring,
            systemd_cgroup: options.systemd_cgroup,
        };
        // The build runs as a task of its own: if the client goes away (ttrpc then drops this
        // request), it still ends, and what it built is removed.
        let (tx, rx) = oneshot::channel::<Created>();
        let mut pending = PendingCreate(rx);
        let create = Container::create(
            params,
            self.launcher()?,
            self.monitor.clone(),
            self.publisher.clone(),
            self.namespace.clone(),
        );
        tokio::spawn(async move {
            let built = create.await;
            if let Err(created) = tx.send((built, reservation)) {
                abandon(created).await;
            }
        });
        let (built, _reservation) = (&mut pending.0)
            .await
            .map_err(|_| errors::internal(format!("create {}: the build task ended", req.id)))?;
        let container = built.map_err(failure)?;
        let pid = container.pid() as u32;
        {
            let mut map = self
                .tasks
                .containers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.insert(req.id.clone(), container.clone());
        }
        self.publish(
            "/tasks/create",
            &TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            },
        );
        container.announced();
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        if let Some(exec) = exec {
            let pid = container
                .start_exec(
                    &exec,
                    self.launcher()?,
                    self.monitor.clone(),
                    self.publisher.clone(),
                    self.namespace.clone(),
                    |pid| {
                        self.publish(
                            "/tasks/exec-started",
                            &TaskExecStarted {
                                container_id: req.id.clone(),
                                exec_id: req.exec_id.clone(),
                                pid: pid as u32,
                                ..Default::default()
                            },
                        )
                    },
                )
                .await
                .map_err(failure)?;
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        let pid = container.pid() as u32;
        container
            .start(|_| {
                self.publish(
                    "/tasks/start",
                    &TaskStart {
                        container_id: req.id.clone(),
                        pid,
                        ..Default::default()
                    },
                )
            })
            .await
            .map_err(failure)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        let process = process(&container, &exec);
        let (status, exit) = process.status().await;
        Ok(api::StateResponse {
            id: process.id().to_string(),
            bundle: container.bundle.display().to_string(),
            pid: process.pid() as u32,
            status: status_of(status).into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or_default(),
            exited_at: exit.map(|e| timestamp(e.at)).into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        let exit = process(&container, &exec).wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        let result = match exec {
            Some(exec) => exec.process.kill(req.signal),
            None => container.kill(req.signal, req.all).await,
        };
        match result {
            Ok(()) => Ok(Empty::new()),
            // containerd treats NotFound from Kill as "already finished".
            Err(Failure::State(msg)) => Err(errors::not_found(msg)),
            Err(e) => Err(failure(e)),
        }
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        if let Some(exec) = exec {
            // No `/tasks/delete` for an exec (the stock shim sends none either).
            let exit = container.delete_exec(&exec).await.map_err(failure)?;
            return Ok(api::DeleteResponse {
                pid: exec.process.pid() as u32,
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            });
        }
        let exit = container.delete().await.map_err(failure)?;
        self.tasks
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.id);
        self.publish(
            "/tasks/delete",
            &TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: container.pid() as u32,
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        );
        Ok(api::DeleteResponse {
            pid: container.pid() as u32,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        if req.stdin {
            process(&container, &exec).close_stdin().await;
        }
        Ok(Empty::new())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self
            .tasks
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&req.id)
            .map(|c| c.pid() as u32)
            .unwrap_or_default();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: crate::info::VERSION.to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<Empty> {
        // The socket goes before this answers (when nothing is left to serve); otherwise
        // when the last Create under way ends.
        self.tasks.shutdown_requested.store(true, Ordering::SeqCst);
        self.tasks.shut_down_if_idle();
        Ok(Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let container = self.get(&req.id, "")?;
        // As the stock shim: an exec's process carries its exec id.
        let execs = container.exec_pids();
        let processes = container
            .pids()
            .await
            .into_iter()
            .map(|pid| ProcessInfo {
                pid: pid as u32,
                info: execs
                    .get(&pid)
                    .map(|exec_id| crate::process::exec::process_details(exec_id))
                    .into(),
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let container = self.get(&req.id, "")?;
        container.pause().await.map_err(failure)?;
        self.publish(
            "/tasks/paused",
            &TaskPaused {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let container = self.get(&req.id, "")?;
        container.resume().await.map_err(failure)?;
        self.publish(
            "/tasks/resumed",
            &TaskResumed {
                container_id: req.id,
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(errors::unimplemented("Checkpoint"))
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        log::info!("exec {} in {}", req.exec_id, req.id);
        let container = self.get(&req.id, "")?;
        let process_json = req.spec.as_ref().map(|s| s.value.as_slice()).unwrap_or(b"");
        container
            .add_exec(
                &req.exec_id,
                process_json,
                stdio::Paths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
            )
            .await
            .map_err(failure)?;
        self.publish(
            "/tasks/exec-added",
            &TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<Empty> {
        let (container, exec) = self.get_process(&req.id, &req.exec_id)?;
        process(&container, &exec)
            .resize_pty(req.width, req.height)
            .await
            .map_err(failure)?;
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let container = self.get(&req.id, "")?;
        // containerd's typeurl carries the OCI `LinuxResources` (not a protobuf message) as
        // JSON in the Any's value.
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&req.resources.value).map_err(|e| {
                errors::invalid_argument(format!(
                    "update {}: resources ({}) are not OCI LinuxResources JSON: {e}",
                    req.id, req.resources.type_url
                ))
            })?;
        container.update(resources).await.map_err(failure)?;
        Ok(Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let container = self.get(&req.id, "")?;
        let stats = container.stats().await.map_err(failure)?;
        let any = crate::metrics::to_any(&stats)
            .map_err(|e| errors::internal(format!("stats {}: encode: {e}", req.id)))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }
}
