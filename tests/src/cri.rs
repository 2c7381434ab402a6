//! The Kubernetes CRI API of a private containerd ([`Containerd::start_cri`]), driven as the
//! kubelet drives it: host-network pods with the runtime handler under test, containers in
//! them, their status and logs. Synchronous wrappers: each call runs on this client's own
//! runtime and is bounded.
//!
//! There is no kubelet: the pods' cgroup parent is a unique `/<name>` of this client (the
//! cgroupfs driver, as containerd's default `SystemdCgroup = false`), removed when the daemon
//! is dropped, and CRI writes container logs below a temporary directory of this client.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStats, ContainerStatsRequest,
    ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ExecRequest, ExecSyncRequest,
    ImageSpec, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainerStatsRequest,
    ListPodSandboxStatsRequest, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxStats, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest,
};

use crate::Containerd;

/// The namespace containerd's CRI plugin keeps its pods and images in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The sandbox ("pause") image the CRI config names; built locally from busybox.
pub const PAUSE_IMAGE: &str = "localhost/pause:latest";
/// The runtime handler (`runtimes.<name>` of the CRI config) of mini.
pub const MINI_HANDLER: &str = "mini";

/// Deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The handler the CRI scenarios run pods with: `mini`, or `runc` when `MINI_E2E_RUNTIME`
/// names the stock shim (to check a scenario itself against it).
pub fn handler_under_test() -> &'static str {
    if crate::runtime_under_test() == crate::RUNC {
        "runc"
    } else {
        MINI_HANDLER
    }
}

/// The pause image tar (busybox whose entrypoint sleeps until killed: CRI stops a sandbox
/// with SIGKILL), built once into the test cache.
pub fn pause_image_tar() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tar = crate::cache_dir().join("pause-oci.tar");
    if !tar.is_file() {
        crate::build_image(
            &tar,
            "latest",
            &[],
            serde_json::json!({"Entrypoint": ["sleep", "2147483647"], "Cmd": []}),
        );
    }
    tar
}

/// A pod made by [`Cri::run_pod`]: its sandbox id and the config CRI wants again with
/// every container created in it.
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

/// A CRI client of one daemon, with the pause and busybox images imported.
pub struct Cri<'a> {
    cd: &'a Containerd,
    runtime: tokio::runtime::Runtime,
    channel: Mutex<Channel>,
    logs: tempfile::TempDir,
    cgroup_parent: String,
}

impl<'a> Cri<'a> {
    /// Imports the pause and busybox images into `k8s.io` and connects to the daemon's
    /// CRI service (on its gRPC socket).
    pub fn connect(cd: &'a Containerd) -> Cri<'a> {
        let ns = cd.cri_namespace();
        let pause = pause_image_tar();
        ns.ctr(&[
            "images",
            "import",
            "--base-name",
            "localhost/pause",
            &pause.to_string_lossy(),
        ])
        .expect_success();
        ns.import_busybox();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime");
        let address = cd.address();
        let channel = runtime
            .block_on(containerd_client::connect(&address))
            .unwrap_or_else(|e| panic!("connecting to {}: {e:?}", address.display()));
        let cgroup_parent = crate::unique_name("mini-cri");
        cd.remove_cgroup_tree_on_drop(&cgroup_parent);
        Cri {
            cd,
            runtime,
            channel: Mutex::new(channel),
            logs: tempfile::Builder::new()
                .prefix("mini-cri-logs")
                .tempdir()
                .expect("log directory"),
            cgroup_parent,
        }
    }

    /// The cgroup parent of this client's pods, as CRI gets it (`/<unique name>`).
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.cgroup_parent)
    }

    fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(
            self.channel
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Connects again, after the daemon restarted.
    pub fn reconnect(&self) {
        let address = self.cd.address();
        let channel = self
            .runtime
            .block_on(containerd_client::connect(&address))
            .unwrap_or_else(|e| panic!("connecting to {}: {e:?}", address.display()));
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = channel;
    }

    fn call<T, R, F>(
        &self,
        message: T,
        f: impl FnOnce(RuntimeServiceClient<Channel>, Request<T>) -> F,
    ) -> Result<R, Status>
    where
        F: std::future::Future<Output = Result<containerd_client::tonic::Response<R>, Status>>,
    {
        let mut req = Request::new(message);
        req.set_timeout(CALL_TIMEOUT);
        self.runtime
            .block_on(f(self.client(), req))
            .map(|r| r.into_inner())
    }

    /// RunPodSandbox with `handler`: host network, the pod's own pid, ipc and uts
    /// namespaces, this client's cgroup parent and log directory.
    #[track_caller]
    pub fn run_pod(&self, name: &str, handler: &str) -> Pod {
        self.run_pod_with_parent(name, handler, &self.cgroup_parent())
    }

    /// [`Cri::run_pod`] with the cgroup parent `parent` (e.g. the kubelet's systemd form, a
    /// slice name such as `kubepods-besteffort-pod<uid>.slice`).
    #[track_caller]
    pub fn run_pod_with_parent(&self, name: &str, handler: &str, parent: &str) -> Pod {
        let name = crate::unique_name(name);
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid: name.clone(),
                namespace: "mini-test".into(),
                attempt: 0,
            }),
            log_directory: self.logs.path().join(&name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: parent.into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let id = self
            .call(req, |mut c, r| async move { c.run_pod_sandbox(r).await })
            .unwrap_or_else(|e| panic!("RunPodSandbox {name} ({handler}): {e:?}"))
            .pod_sandbox_id;
        self.cd.track(CRI_NAMESPACE, &id);
        Pod { id, config }
    }

    /// CreateContainer of busybox running `command` in `pod`, sharing the pod's pid, ipc and
    /// uts namespaces; its log goes to [`Cri::log_path`]`(pod, name)`.
    pub fn create_container(
        &self,
        pod: &Pod,
        name: &str,
        command: &[&str],
    ) -> Result<String, Status> {
        self.create_container_in(pod, name, command, NamespaceMode::Pod)
    }

    /// [`Cri::create_container`] with the pid namespace `pid`: `Pod` (the sandbox's) or
    /// `Container` (its own, the Kubernetes default).
    pub fn create_container_in(
        &self,
        pod: &Pod,
        name: &str,
        command: &[&str],
        pid: NamespaceMode,
    ) -> Result<String, Status> {
        self.create_container_from(pod, container_config(name, command, pid))
    }

    /// CreateContainer of `config` (e.g. [`container_config`] with resources) in `pod`.
    pub fn create_container_from(
        &self,
        pod: &Pod,
        config: ContainerConfig,
    ) -> Result<String, Status> {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let id = self
            .call(req, |mut c, r| async move { c.create_container(r).await })?
            .container_id;
        self.cd.track(CRI_NAMESPACE, &id);
        Ok(id)
    }

    /// ExecSync of `cmd` in container `id`: its exit code, stdout and stderr.
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_s: i64,
    ) -> Result<(i32, String, String), Status> {
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        };
        let resp = self.call(req, |mut c, r| async move { c.exec_sync(r).await })?;
        Ok((
            resp.exit_code,
            String::from_utf8_lossy(&resp.stdout).into_owned(),
            String::from_utf8_lossy(&resp.stderr).into_owned(),
        ))
    }

    /// Exec of `cmd` in container `id` (stderr only without a terminal, as the kubelet
    /// validates it): the URL of containerd's streaming server that serves it, for
    /// [`ExecStream::connect`].
    pub fn exec(&self, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> Result<String, Status> {
        let req = ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        };
        Ok(self
            .call(req, |mut c, r| async move { c.exec(r).await })?
            .url)
    }

    /// ContainerStats of container `id`.
    pub fn container_stats(&self, id: &str) -> Result<ContainerStats, Status> {
        let req = ContainerStatsRequest {
            container_id: id.into(),
        };
        self.call(req, |mut c, r| async move { c.container_stats(r).await })?
            .stats
            .ok_or_else(|| Status::not_found(format!("no stats of {id}")))
    }

    /// ListContainerStats of every container.
    pub fn list_container_stats(&self) -> Result<Vec<ContainerStats>, Status> {
        let req = ListContainerStatsRequest::default();
        Ok(self
            .call(
                req,
                |mut c, r| async move { c.list_container_stats(r).await },
            )?
            .stats)
    }

    /// ListPodSandboxStats of every pod.
    pub fn list_pod_sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, Status> {
        let req = ListPodSandboxStatsRequest::default();
        Ok(self
            .call(
                req,
                |mut c, r| async move { c.list_pod_sandbox_stats(r).await },
            )?
            .stats)
    }

    /// UpdateContainerResources of container `id` to `resources`.
    pub fn update_resources(
        &self,
        id: &str,
        resources: LinuxContainerResources,
    ) -> Result<(), Status> {
        let req = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(resources),
            ..Default::default()
        };
        self.call(req, |mut c, r| async move {
            c.update_container_resources(r).await
        })
        .map(drop)
    }

    /// Where CRI writes the log of container `name` of `pod`.
    pub fn log_path(&self, pod: &Pod, name: &str) -> PathBuf {
        let dir = pod.config.log_directory.clone();
        Path::new(&dir).join(format!("{name}.log"))
    }

    /// The log of container `name` of `pod` so far (CRI's format: `<time> <stream> F <line>`).
    pub fn log(&self, pod: &Pod, name: &str) -> String {
        std::fs::read_to_string(self.log_path(pod, name)).unwrap_or_default()
    }

    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        self.call(req, |mut c, r| async move { c.start_container(r).await })
            .map(drop)
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus, Status> {
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call(req, |mut c, r| async move { c.container_status(r).await })?
            .status
            .ok_or_else(|| Status::not_found(format!("no status of {id}")))
    }

    /// Polls ContainerStatus until the container is in `state`; its last status.
    #[track_caller]
    pub fn wait_state(
        &self,
        id: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> ContainerStatus {
        let mut last = None;
        let reached = crate::wait_until(timeout, || {
            last = self.container_status(id).ok();
            last.as_ref().is_some_and(|s| s.state == state as i32)
        });
        assert!(
            reached,
            "container {id} not {state:?} after {timeout:?}: {last:?}"
        );
        last.expect("a status")
    }

    /// The lines of containerd's log that name `id`.
    pub fn log_lines_naming(&self, id: &str) -> String {
        self.cd.log_lines_naming(id)
    }

    /// Waits until the container has exited, then gives CRI up to `settle` to show the
    /// exit's `reason` as `want`: CRI learns of an exit from Wait and of an OOM kill from the
    /// event stream, two paths (the shim has handed containerd the event before Wait
    /// answers); the kubelet reads the status a second later. Its last status.
    #[track_caller]
    pub fn wait_exit_reason(
        &self,
        id: &str,
        want: &str,
        timeout: Duration,
        settle: Duration,
    ) -> ContainerStatus {
        let mut last = self.wait_state(id, ContainerState::ContainerExited, timeout);
        crate::wait_until(settle, || {
            if let Ok(status) = self.container_status(id) {
                last = status;
            }
            last.reason == want
        });
        last
    }

    pub fn stop_container(&self, id: &str, timeout_s: i64) -> Result<(), Status> {
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_s,
        };
        self.call(req, |mut c, r| async move { c.stop_container(r).await })
            .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(req, |mut c, r| async move { c.remove_container(r).await })
            .map(drop)
    }

    pub fn stop_pod(&self, pod: &Pod) -> Result<(), Status> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        };
        self.call(req, |mut c, r| async move { c.stop_pod_sandbox(r).await })
            .map(drop)
    }

    pub fn remove_pod(&self, pod: &Pod) -> Result<(), Status> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        };
        self.call(req, |mut c, r| async move { c.remove_pod_sandbox(r).await })
            .map(drop)
    }

    /// The pid of the task `id` (a sandbox or a container), from `ctr -n k8s.io task ls`.
    #[track_caller]
    pub fn task_pid(&self, id: &str) -> i32 {
        self.cd
            .cri_namespace()
            .task(id)
            .unwrap_or_else(|| panic!("no task {id} in {CRI_NAMESPACE}"))
            .0
    }

    /// The shim daemons of runtime `shim_binary` (e.g. `containerd-shim-mini-v2`) serving
    /// this daemon's `k8s.io` namespace.
    pub fn shims(&self, shim_binary: &str) -> Vec<crate::leftovers::Proc> {
        let address = self.cd.address().display().to_string();
        crate::leftovers::processes()
            .into_iter()
            .filter(|p| {
                p.cmdline.contains(shim_binary)
                    && crate::leftovers::contains_token(&p.cmdline, &address)
                    && crate::leftovers::contains_token(&p.cmdline, CRI_NAMESPACE)
            })
            .collect()
    }

    /// The cgroup directories left below this client's cgroup parent, in every hierarchy.
    pub fn cgroups_below_parent(&self) -> Vec<PathBuf> {
        crate::leftovers::hierarchies()
            .into_iter()
            .map(|h| h.join(&self.cgroup_parent))
            .filter_map(|top| std::fs::read_dir(top).ok())
            .flat_map(|entries| entries.filter_map(|e| e.ok()))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }
}

/// The config of a busybox container `name` running `command` in the pid namespace `pid`
/// (`Pod` or `Container`), with the pod's ipc and uts; its log goes to `<name>.log` in the
/// pod's log directory.
pub fn container_config(name: &str, command: &[&str], pid: NamespaceMode) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: crate::IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: pid as i32,
                    ..pod_namespaces()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's own pid, ipc and uts namespaces; the host network (no CNI here).
fn pod_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The WebSocket subprotocol of the streaming server this client speaks: binary messages
/// whose first byte is the channel, the exit status as a JSON `metav1.Status` on channel 3.
pub const EXEC_SUBPROTOCOL: &str = "v4.channel.k8s.io";
const STDIN_CHANNEL: u8 = 0;
const STDOUT_CHANNEL: u8 = 1;
const STDERR_CHANNEL: u8 = 2;
const STATUS_CHANNEL: u8 = 3;
const RESIZE_CHANNEL: u8 = 4;

/// One exec session on the URL [`Cri::exec`] returned, over WebSocket as the API server
/// relays `kubectl exec` to the kubelet's (here containerd's) streaming server.
pub struct ExecStream {
    ws: tungstenite::WebSocket<TcpStream>,
    url: String,
}

/// What an exec session delivered until the server closed it.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The `metav1.Status` of the status channel, if one came.
    pub status: Option<serde_json::Value>,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The exit code the status carries: 0 for `Success`, the `ExitCode` cause of a
    /// `NonZeroExitCode` failure; `None` without a status or with another failure.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status.as_ref()?;
        if status["status"] == "Success" {
            return Some(0);
        }
        if status["reason"] != "NonZeroExitCode" {
            return None;
        }
        status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

impl ExecStream {
    /// Opens the WebSocket of `url` (`http://host:port/exec/<token>`) with
    /// [`EXEC_SUBPROTOCOL`].
    #[track_caller]
    pub fn connect(url: &str) -> ExecStream {
        use tungstenite::client::IntoClientRequest;
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("exec URL {url:?} is not http://host:port/…"));
        let stream = TcpStream::connect(authority)
            .unwrap_or_else(|e| panic!("connecting to the streaming server {authority}: {e}"));
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .expect("read timeout");
        let mut request = format!("ws://{}", &url["http://".len()..])
            .into_client_request()
            .unwrap_or_else(|e| panic!("WebSocket request for {url}: {e}"));
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            EXEC_SUBPROTOCOL.parse().expect("header value"),
        );
        let (ws, _) = tungstenite::client(request, stream)
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url}: {e}"));
        // Short reads from now on: [`ExecStream::finish`] keeps its own deadline.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        ExecStream {
            ws,
            url: url.to_string(),
        }
    }

    #[track_caller]
    fn send(&mut self, channel: u8, data: &[u8]) {
        let mut message = Vec::with_capacity(data.len() + 1);
        message.push(channel);
        message.extend_from_slice(data);
        self.ws
            .send(tungstenite::Message::binary(message))
            .unwrap_or_else(|e| panic!("sending on channel {channel} of {}: {e}", self.url));
    }

    /// Writes `data` to the process's stdin.
    #[track_caller]
    pub fn stdin(&mut self, data: &[u8]) {
        self.send(STDIN_CHANNEL, data);
    }

    /// Resizes the process's terminal to `width` columns and `height` rows.
    #[track_caller]
    pub fn resize(&mut self, width: u16, height: u16) {
        let size = serde_json::json!({"Width": width, "Height": height}).to_string();
        self.send(RESIZE_CHANNEL, size.as_bytes());
    }

    /// Reads until the server closes the session (after the process exited and its status
    /// was sent); panics after `timeout`, with what came so far.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> ExecOutput {
        use tungstenite::Message;
        let deadline = Instant::now() + timeout;
        let mut out = ExecOutput::default();
        loop {
            assert!(
                Instant::now() < deadline,
                "exec session {} still open after {timeout:?}: {out:?} ({:?})",
                self.url,
                out.stdout_text()
            );
            let data = match self.ws.read() {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                // The server closes the TCP connection right after its close frame.
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed)
                | Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => break,
                Err(e) => panic!("reading exec session {}: {e} (so far {out:?})", self.url),
            };
            let Some((&channel, data)) = data.split_first() else {
                continue;
            };
            match channel {
                STDOUT_CHANNEL => out.stdout.extend_from_slice(data),
                STDERR_CHANNEL => out.stderr.extend_from_slice(data),
                STATUS_CHANNEL if !data.is_empty() => {
                    out.status = Some(serde_json::from_slice(data).unwrap_or_else(|e| {
                        panic!(
                            "status of {}: {e}: {:?}",
                            self.url,
                            String::from_utf8_lossy(data)
                        )
                    }))
                }
                _ => {}
            }
        }
        out
    }
}
