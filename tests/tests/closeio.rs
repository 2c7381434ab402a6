//! The shim's own Task API, called directly over its ttrpc socket (as containerd does), on
//! containerd 1.6, 1.7 and 2.x: `CloseIO` closes the container's stdin so that `cat` sees
//! EOF and exits, `State` agrees with what containerd lists, and a method mini does not
//! implement answers UNIMPLEMENTED naming itself.
//!
//! `ctr run` (foreground, no tty) copies its own stdin into the container's stdin fifo and
//! calls CloseIO itself only once that stdin reaches EOF; the test keeps ctr's stdin open and
//! calls CloseIO on its own. mini then ends the container's stdin although ctr still holds
//! its end of the fifo; the stock runc shim waits for every writer to close instead, so
//! these scenarios run mini whatever `MINI_E2E_RUNTIME` says.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, KillRequest, StartRequest, StartResponse, StateRequest, StateResponse,
};
use containerd_shim_protos::shim_async::Client;
use containerd_shim_protos::types::task::Status;
use mini_e2e::{Containerd, MINI, Namespace, Version, wait_until};
use ttrpc::Code;

mini_e2e::on_every_version!(
    close_io_v2_ends_cat_while_the_client_holds_stdin_open,
    close_io_v3_ends_cat_while_the_client_holds_stdin_open,
    state_matches_ctr_and_checkpoint_is_unimplemented_over_v2_and_v3,
);

/// Deadline of every ttrpc call: 5 s, in nanoseconds.
const CALL_TIMEOUT_NS: i64 = 5_000_000_000;

/// The shim's ttrpc address for container `id` (`unix:///run/containerd/s/<hash>`), as the
/// daemon keeps it in the task's bundle below its state directory: `bootstrap.json`
/// (containerd 2.x) or `address` (written by the shim; what containerd 1.x reads).
fn shim_address(ns: &Namespace<'_>, id: &str) -> String {
    let bundle: PathBuf = ns
        .daemon()
        .dir()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns.name())
        .join(id);
    let read = || -> Option<String> {
        if let Ok(text) = std::fs::read_to_string(bundle.join("bootstrap.json")) {
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            return json.get("address")?.as_str().map(str::to_string);
        }
        let text = std::fs::read_to_string(bundle.join("address")).ok()?;
        Some(text.trim().to_string()).filter(|a| !a.is_empty())
    };
    let mut address = None;
    wait_until(Duration::from_secs(5), || {
        address = read();
        address.is_some()
    });
    address.unwrap_or_else(|| {
        panic!(
            "no shim address in bundle {}, which holds {:?}",
            bundle.display(),
            std::fs::read_dir(&bundle)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        )
    })
}

/// The Task service's name in each API version a shim may serve: containerd 1.6 to 2.2 call
/// `v2`, callers that bootstrap with API version 3 call `v3`. mini serves both.
const TASK_V2: &str = "containerd.task.v2.Task";
const TASK_V3: &str = "containerd.task.v3.Task";

/// A client of the shim's Task service under one of its names. The generated
/// `TaskClient` only speaks v3; this one sends the same messages under either name.
struct ShimTask {
    client: Client,
    service: &'static str,
}

impl ShimTask {
    async fn close_io(&self, req: &CloseIORequest) -> ttrpc::Result<Empty> {
        let ctx = ctx();
        let mut cres = Empty::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "CloseIO", cres);
    }

    async fn state(&self, req: &StateRequest) -> ttrpc::Result<StateResponse> {
        let ctx = ctx();
        let mut cres = StateResponse::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "State", cres);
    }

    async fn create(&self, req: &CreateTaskRequest) -> ttrpc::Result<CreateTaskResponse> {
        let ctx = ctx();
        let mut cres = CreateTaskResponse::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "Create", cres);
    }

    async fn start(&self, req: &StartRequest) -> ttrpc::Result<StartResponse> {
        let ctx = ctx();
        let mut cres = StartResponse::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "Start", cres);
    }

    async fn kill(&self, req: &KillRequest) -> ttrpc::Result<Empty> {
        let ctx = ctx();
        let mut cres = Empty::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "Kill", cres);
    }

    async fn delete(&self, req: &DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        let ctx = ctx();
        let mut cres = DeleteResponse::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "Delete", cres);
    }

    async fn checkpoint(&self, req: &CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        let ctx = ctx();
        let mut cres = Empty::new();
        ttrpc::async_client_request!(self, ctx, req, self.service, "Checkpoint", cres);
    }
}

/// Connects to the shim at `address` and runs `call` with a Task client of `service`, on a
/// runtime of its own (the test itself is synchronous). The whole exchange is bounded.
fn with_task_client<T>(
    address: &str,
    service: &'static str,
    call: impl AsyncFnOnce(&ShimTask) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    rt.block_on(async {
        let exchange = async {
            let client = Client::connect(address)
                .await
                .unwrap_or_else(|e| panic!("connecting to the shim at {address}: {e:?}"));
            call(&ShimTask { client, service }).await
        };
        tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .unwrap_or_else(|_| panic!("ttrpc exchange with {address} took over 15 s"))
    })
}

/// Every call's deadline, as containerd sets one.
fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(CALL_TIMEOUT_NS)
}

/// A foreground `ctr run` whose stdin the test holds (the harness's background ctr has a
/// null stdin). Killed with SIGKILL on drop: ctr forwards SIGTERM to the container.
struct AttachedCtr {
    child: Child,
    cmdline: String,
    /// Held until drop: ctr must not see EOF on its stdin (it would call CloseIO itself).
    stdin: ChildStdin,
    stdout: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl AttachedCtr {
    fn spawn(ns: &Namespace<'_>, args: &[&str]) -> AttachedCtr {
        let cd = ns.daemon();
        let mut child = Command::new(cd.ctr_path())
            .arg("--address")
            .arg(cd.address())
            .arg("-n")
            .arg(ns.name())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", cd.ctr_path().display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(collect(pipe, Arc::clone(&stdout)));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(collect(pipe, Arc::clone(&stderr)));
        }
        AttachedCtr {
            stdin: child.stdin.take().expect("ctr's stdin is piped"),
            child,
            cmdline: format!("ctr -n {} {}", ns.name(), args.join(" ")),
            stdout,
            readers,
            stderr,
        }
    }

    fn write_stdin(&mut self, data: &[u8]) {
        self.stdin
            .write_all(data)
            .and_then(|()| self.stdin.flush())
            .expect("writing to ctr's stdin");
    }

    fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// Whether ctr is still running.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for ctr to exit; SIGKILLs it and returns `None` if it does not.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // The pipes close with the process: the readers finish.
                    for r in self.readers.drain(..) {
                        let _ = r.join();
                    }
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }
}

impl std::fmt::Display for AttachedCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            text(&self.stdout),
            text(&self.stderr)
        )
    }
}

impl Drop for AttachedCtr {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn close_io_v2_ends_cat_while_the_client_holds_stdin_open(version: Version) {
    close_io_ends_cat(version, TASK_V2);
}

fn close_io_v3_ends_cat_while_the_client_holds_stdin_open(version: Version) {
    close_io_ends_cat(version, TASK_V3);
}

/// `cat` in a foreground `ctr run`, fed "hello" through ctr's stdin, which stays open: only
/// CloseIO (called on `service`) can give cat its EOF. Before CloseIO cat must keep
/// running; after it cat exits 0 having echoed hello.
fn close_io_ends_cat(version: Version, service: &'static str) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("closeio");
    let id = ns.new_id("closeio");
    let mut ctr = AttachedCtr::spawn(
        &ns,
        &[
            "run",
            "--rm",
            "--runtime",
            MINI,
            mini_e2e::IMAGE,
            &id,
            "cat",
        ],
    );
    ctr.write_stdin(b"hello\n");
    assert!(
        ns.wait_status(&id, "RUNNING", Duration::from_secs(15)),
        "task {id} not RUNNING: {:?}\n{ctr}",
        ns.task_status(&id)
    );
    assert!(
        wait_until(Duration::from_secs(10), || ctr.stdout().contains("hello")),
        "cat did not echo what was written to its stdin:\n{ctr}"
    );

    // Control: without CloseIO, cat keeps waiting for input.
    std::thread::sleep(Duration::from_secs(1));
    assert!(ctr.running(), "ctr exited before CloseIO:\n{ctr}");
    assert_eq!(
        ns.task_status(&id).as_deref(),
        Some("RUNNING"),
        "cat must still be running before CloseIO:\n{ctr}"
    );

    let address = shim_address(&ns, &id);
    let req = CloseIORequest {
        id: id.clone(),
        stdin: true,
        ..Default::default()
    };
    with_task_client(&address, service, async |task| task.close_io(&req).await)
        .unwrap_or_else(|e| panic!("{service}/CloseIO of {id} failed: {e:?}"));

    let status = ctr.wait(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "ctr did not exit within 10 s of {service}/CloseIO (killed):\n{ctr}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "cat must exit 0 on EOF:\n{ctr}"
    );
    assert_eq!(ctr.stdout(), "hello\n", "{ctr}");
    drop(ctr);
    ns.assert_nothing_left(&id);
}

fn state_matches_ctr_and_checkpoint_is_unimplemented_over_v2_and_v3(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("state");
    let id = ns.new_id("state");
    ns.run_mini(&["-d"], &id, &["sleep", "300"])
        .expect_success();
    assert!(
        ns.wait_status(&id, "RUNNING", Duration::from_secs(10)),
        "task {id} not RUNNING: {:?}",
        ns.task_status(&id)
    );
    let (pid, _) = ns.task(&id).expect("task listed by ctr task ls");

    let address = shim_address(&ns, &id);
    let state_req = StateRequest {
        id: id.clone(),
        ..Default::default()
    };
    let checkpoint_req = CheckpointTaskRequest {
        id: id.clone(),
        ..Default::default()
    };
    for service in [TASK_V2, TASK_V3] {
        let (state, checkpoint) = with_task_client(&address, service, async |task| {
            (
                task.state(&state_req).await,
                task.checkpoint(&checkpoint_req).await,
            )
        });

        let state = state.unwrap_or_else(|e| panic!("{service}/State of {id} failed: {e:?}"));
        assert_eq!(state.id, id, "{service}/State");
        assert_eq!(
            state.status.enum_value(),
            Ok(Status::RUNNING),
            "{service}/State of {id}: {state:?}"
        );
        assert_eq!(
            i64::from(state.pid),
            i64::from(pid),
            "{service}/State's pid vs `ctr task ls`"
        );

        match checkpoint {
            Err(ttrpc::Error::RpcStatus(s)) => {
                assert_eq!(
                    s.code(),
                    Code::UNIMPLEMENTED,
                    "{service}/Checkpoint answered {s:?}"
                );
                assert!(
                    s.message.contains("Checkpoint"),
                    "the UNIMPLEMENTED message must name Checkpoint: {:?}",
                    s.message
                );
            }
            other => {
                panic!("{service}/Checkpoint of {id} must fail with UNIMPLEMENTED, got {other:?}")
            }
        }
    }
    // Checkpoint did nothing: the task still runs.
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));

    // Each error comes back with its code.
    let (unknown, duplicate, restart, bad_signal, delete_running) =
        with_task_client(&address, TASK_V2, async |task| {
            let unknown = task
                .state(&StateRequest {
                    id: "no-such-container".into(),
                    ..Default::default()
                })
                .await;
            let duplicate = task
                .create(&CreateTaskRequest {
                    id: id.clone(),
                    bundle: "/nonexistent".into(),
                    ..Default::default()
                })
                .await;
            let restart = task
                .start(&StartRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await;
            let bad_signal = task
                .kill(&KillRequest {
                    id: id.clone(),
                    signal: 4242,
                    ..Default::default()
                })
                .await;
            let delete_running = task
                .delete(&DeleteRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await;
            (unknown, duplicate, restart, bad_signal, delete_running)
        });
    assert_code(unknown.map(drop), Code::NOT_FOUND, "State of an unknown id");
    assert_code(
        duplicate.map(drop),
        Code::ALREADY_EXISTS,
        "Create of an existing id",
    );
    assert_code(
        restart.map(drop),
        Code::FAILED_PRECONDITION,
        "Start of a running task",
    );
    assert_code(
        bad_signal.map(drop),
        Code::INVALID_ARGUMENT,
        "Kill with signal 4242",
    );
    assert_code(
        delete_running.map(drop),
        Code::FAILED_PRECONDITION,
        "Delete of a running task",
    );
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));

    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

#[track_caller]
fn assert_code(result: ttrpc::Result<()>, code: Code, what: &str) {
    match result {
        Err(ttrpc::Error::RpcStatus(s)) => assert_eq!(s.code(), code, "{what}: {s:?}"),
        other => panic!("{what} must fail with {code:?}, got {other:?}"),
    }
}
