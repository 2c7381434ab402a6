//! containerd's gRPC API, for what a `ctr` process per call is too slow to do (creating a
//! task the moment the previous one's Delete returned). Synchronous wrappers: each call runs
//! on this client's own runtime and is bounded.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, CreateTaskRequest, DeleteTaskRequest, GetRequest, KillRequest, MetricsRequest,
    ResizePtyRequest, UpdateTaskRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use containerd_client::types::Mount;

use crate::Namespace;

/// Creates container `id` (the busybox image, runtime mini, running `args`) with ctr; returns
/// a client of its namespace and the rootfs mounts a task of it takes.
pub fn mini_container(ns: &Namespace<'_>, id: &str, args: &[&str]) -> (Grpc, Vec<Mount>) {
    let mut create = vec![
        "container",
        "create",
        "--runtime",
        crate::MINI,
        crate::IMAGE,
        id,
    ];
    create.extend_from_slice(args);
    ns.ctr(&create).expect_success();
    let grpc = Grpc::connect(&ns.daemon().address(), ns.name());
    let rootfs = grpc.rootfs_mounts(id);
    (grpc, rootfs)
}

/// Deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The snapshotter `ctr` prepares a container's rootfs with.
const SNAPSHOTTER: &str = "overlayfs";

/// A gRPC client of one daemon, in one namespace.
pub struct Grpc {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    namespace: String,
}

impl Grpc {
    /// Connects to the daemon's gRPC socket at `address`.
    pub fn connect(address: &Path, namespace: &str) -> Grpc {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let channel = runtime
            .block_on(containerd_client::connect(address))
            .unwrap_or_else(|e| panic!("connecting to {}: {e:?}", address.display()));
        Grpc {
            runtime,
            channel,
            namespace: namespace.to_string(),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        req.set_timeout(CALL_TIMEOUT);
        let ns = self.namespace.parse().expect("namespace as metadata");
        req.metadata_mut().insert("containerd-namespace", ns);
        req
    }

    /// The rootfs mounts of container `id` (created by `ctr container create`, whose
    /// snapshot key is the container id).
    pub fn rootfs_mounts(&self, id: &str) -> Vec<Mount> {
        let req = self.request(MountsRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: id.into(),
        });
        let mut client = SnapshotsClient::new(self.channel.clone());
        self.runtime
            .block_on(client.mounts(req))
            .unwrap_or_else(|e| panic!("snapshot mounts of {id}: {e:?}"))
            .into_inner()
            .mounts
    }

    /// Creates the task of container `id` (no stdio); its pid.
    pub fn create_task(&self, id: &str, rootfs: &[Mount]) -> Result<u32, Status> {
        let req = self.request(CreateTaskRequest {
            container_id: id.into(),
            rootfs: rootfs.to_vec(),
            ..Default::default()
        });
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime
            .block_on(client.create(req))
            .map(|r| r.into_inner().pid)
    }

    /// Deletes the task of container `id`; its exit status.
    pub fn delete_task(&self, id: &str) -> Result<u32, Status> {
        let req = self.request(DeleteTaskRequest {
            container_id: id.into(),
        });
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime
            .block_on(client.delete(req))
            .map(|r| r.into_inner().exit_status)
    }

    /// The task's status (`Status` of containerd's task types: 1 created, 2 running, 3
    /// stopped) and its pid.
    pub fn task_status(&self, id: &str) -> Result<(i32, u32), Status> {
        let req = self.request(GetRequest {
            container_id: id.into(),
            ..Default::default()
        });
        let mut client = TasksClient::new(self.channel.clone());
        let process = self
            .runtime
            .block_on(client.get(req))?
            .into_inner()
            .process
            .unwrap_or_default();
        Ok((process.status, process.pid))
    }

    /// CloseIO of the init's stdin (containerd forwards it to the shim).
    pub fn close_stdin(&self, id: &str) -> Result<(), Status> {
        self.close_exec_stdin(id, "")
    }

    /// CloseIO of the stdin of exec `exec_id` (the init's for an empty one).
    pub fn close_exec_stdin(&self, id: &str, exec_id: &str) -> Result<(), Status> {
        let req = self.request(CloseIoRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
            stdin: true,
        });
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime.block_on(client.close_io(req)).map(drop)
    }

    /// ResizePty of the init's terminal (`ctr` has no command for it).
    pub fn resize_pty(&self, id: &str, width: u32, height: u32) -> Result<(), Status> {
        self.resize_exec_pty(id, "", width, height)
    }

    /// ResizePty of the terminal of exec `exec_id` (the init's for an empty one).
    pub fn resize_exec_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), Status> {
        let req = self.request(ResizePtyRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
            width,
            height,
        });
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime.block_on(client.resize_pty(req)).map(drop)
    }

    /// Sends `signal` to the task's init.
    pub fn kill(&self, id: &str, signal: u32) -> Result<(), Status> {
        let req = self.request(KillRequest {
            container_id: id.into(),
            signal,
            ..Default::default()
        });
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime.block_on(client.kill(req)).map(drop)
    }

    /// `Task.Update` with `resources_json`, an OCI `LinuxResources` document, in an Any as
    /// containerd's client sends it (typeurl marshals non-protobuf types as JSON).
    pub fn update_resources(&self, id: &str, resources_json: &str) -> Result<(), Status> {
        let mut update = UpdateTaskRequest {
            container_id: id.into(),
            ..Default::default()
        };
        let any = update.resources.get_or_insert_with(Default::default);
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
        any.value = resources_json.as_bytes().to_vec();
        let req = self.request(update);
        let mut client = TasksClient::new(self.channel.clone());
        self.runtime.block_on(client.update(req)).map(drop)
    }

    /// The task's metrics (`ctr task metrics`): the type URL and bytes of its `data` Any.
    pub fn metrics(&self, id: &str) -> Result<(String, Vec<u8>), Status> {
        let req = self.request(MetricsRequest {
            filters: vec![format!("id=={id}")],
        });
        let mut client = TasksClient::new(self.channel.clone());
        let metrics = self
            .runtime
            .block_on(client.metrics(req))?
            .into_inner()
            .metrics;
        let data = metrics
            .into_iter()
            .find(|m| m.id == id)
            .and_then(|m| m.data)
            .ok_or_else(|| Status::not_found(format!("no metrics for {id}")))?;
        Ok((data.type_url, data.value))
    }
}
