//! Runtime integration (root): seccomp user notification through the `mini` command. A
//! profile sends `mkdir` to an agent (`SCMP_ACT_NOTIFY`); the agent, a thread of the test,
//! listens at `linux.seccomp.listenerPath`, gets the container process state with the
//! filter's listener during create, and answers the container's `mkdir` with an errno.

mod common;

use common::processes_naming;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use runtime_core::cgroups::CgroupManager;

const MINI: &str = env!("CARGO_BIN_EXE_mini");

/// A bundle from `mini spec` with a writable root and a private `--root`; force-deleted on
/// drop.
struct Bundle {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    id: String,
}

impl Bundle {
    fn new(name: &str, script: &str, seccomp: serde_json::Value, no_new_privs: bool) -> Bundle {
        let b = Bundle {
            dir: common::temp_dir("mini-notify-"),
            root: common::temp_dir("mini-notify-root-"),
            id: format!("notify-{name}-{}", std::process::id()),
        };
        common::busybox_rootfs(
            "the seccomp notify tests",
            &b.rootfs(),
            &["sh", "mkdir", "readlink", "echo", "sleep", "true"],
        );
        let out = b.mini(&["spec", "--bundle", b.path().to_str().unwrap()]);
        assert!(out.status.success(), "mini spec: {out:?}");
        let path = b.path().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        spec["process"]["noNewPrivileges"] = serde_json::json!(no_new_privs);
        spec["root"]["readonly"] = serde_json::json!(false);
        spec["linux"]["seccomp"] = seccomp;
        fs::write(&path, spec.to_string()).unwrap();
        b
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// `mini --root R args…`, stdio of the container on /dev/null, stderr captured.
    fn mini(&self, args: &[&str]) -> Output {
        Command::new(MINI)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `mini create`; its stderr (and the container's) goes to a file: a pipe would stay
    /// open as long as the container's process runs.
    fn create(&self) -> Output {
        let log = self.path().join("create.err");
        let status = Command::new(MINI)
            .arg("--root")
            .arg(self.root.path())
            .args([
                "create",
                "--bundle",
                self.path().to_str().unwrap(),
                &self.id,
            ])
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: fs::read(&log).unwrap(),
        }
    }

    fn state(&self) -> serde_json::Value {
        let out = Command::new(MINI)
            .arg("--root")
            .arg(self.root.path())
            .args(["state", &self.id])
            .output()
            .unwrap();
        assert!(out.status.success(), "mini state: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits for the file `name` in the container's root to end with `end`.
    fn wait_file(&self, name: &str, end: &str) -> String {
        let path = self.rootfs().join(name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = fs::read_to_string(&path)
                && text.ends_with(end)
            {
                return text;
            }
            assert!(Instant::now() < deadline, "{name} never written");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's cgroup directories and state directory still on the host.
    fn leftovers(&self) -> Vec<PathBuf> {
        let cgroup = CgroupManager::new(&self.id, None).unwrap();
        cgroup
            .dirs()
            .map(|d| d.dir.clone())
            .chain([self.root.path().join(&self.id)])
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

/// A profile that sends mkdir to the agent at `socket`.
fn notify_mkdir(socket: &Path) -> serde_json::Value {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "agent-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    })
}

/// The agent: accepts one connection at `socket`, sends what it got there (the state JSON)
/// on `got`, then answers `answers` notifications with EDQUOT.
fn agent(
    socket: &Path,
    answers: usize,
    got: mpsc::Sender<serde_json::Value>,
) -> std::thread::JoinHandle<()> {
    let server = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        // One message per connection: the runtime closes it after the state.
        let (json, fds) = runtime_core::seccomp::agent::receive(&mut conn).unwrap();
        let mut state: serde_json::Value = serde_json::from_slice(&json).unwrap();
        state["test_fds_received"] = serde_json::json!(fds.len());
        got.send(state).unwrap();
        let listener = fds.into_iter().next().expect("the listener");
        for _ in 0..answers {
            let fd = listener.as_raw_fd();
            let req = libseccomp::ScmpNotifReq::receive(fd).unwrap();
            libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EDQUOT,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd)
            .unwrap();
        }
    })
}

fn agent_answers_the_containers_mkdir(no_new_privs: bool) {
    let name = if no_new_privs { "nnp" } else { "caps" };
    let sockets = common::temp_dir("mini-agent-");
    let socket = sockets.path().join("agent.sock");
    let script = "mkdir /made 2>/err; echo $? >/status; \
                  for f in /proc/$$/fd/*; do readlink $f; done >/fds; echo done >>/fds; \
                  exec sleep 30";
    let b = Bundle::new(name, script, notify_mkdir(&socket), no_new_privs);
    let (tx, rx) = mpsc::channel();
    let agent = agent(&socket, 1, tx);

    let out = b.create();
    assert!(out.status.success(), "mini create: {out:?}");
    // The agent has the listener before start: create waited for its hand-over.
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the agent got the state during create");
    let state = b.state();
    assert_eq!(state["status"], "created");
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(got["test_fds_received"], 1, "{got}");
    assert_eq!(got["fds"], serde_json::json!(["seccompFd"]), "{got}");
    assert_eq!(got["pid"], pid, "{got}");
    assert_eq!(got["metadata"], "agent-metadata", "{got}");
    assert_eq!(got["state"]["id"], b.id, "{got}");
    assert_eq!(got["state"]["status"], "creating", "{got}");
    assert_eq!(got["state"]["pid"], pid, "{got}");
    assert_eq!(got["state"]["bundle"], b.path().to_str().unwrap(), "{got}");
    assert!(got["ociVersion"].is_string(), "{got}");

    let out = b.mini(&["start", &b.id]);
    assert!(out.status.success(), "mini start: {out:?}");
    agent.join().expect("the agent answered");
    let status = b.wait_file("status", "\n");
    assert_eq!(status.trim(), "1", "mkdir's exit status");
    let err = fs::read_to_string(b.rootfs().join("err")).unwrap();
    assert!(
        err.contains("quota"),
        "mkdir did not fail with EDQUOT: {err}"
    );
    assert!(!b.rootfs().join("made").exists());
    let fds = b.wait_file("fds", "done\n");
    assert!(
        !fds.contains("seccomp"),
        "the container holds the listener: {fds}"
    );

    // An exec gets a listener of its own, which the agent gets (with the exec's pid and the
    // running container's state) before the exec's program runs.
    fs::remove_file(&socket).unwrap();
    let (tx, rx) = mpsc::channel();
    let agent = self::agent(&socket, 1, tx);
    let script = "mkdir /exec-made 2>/dev/null; echo status=$? >&2";
    let out = b.mini(&["exec", &b.id, "sh", "-c", script]);
    assert!(out.status.success(), "mini exec: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "status=1\n",
        "mkdir's exit status: {out:?}"
    );
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the agent got the exec's state");
    agent.join().expect("the agent answered the exec's mkdir");
    assert_eq!(got["fds"], serde_json::json!(["seccompFd"]), "{got}");
    assert_ne!(got["pid"], pid, "the exec's own pid: {got}");
    assert_eq!(got["state"]["status"], "running", "{got}");
    assert_eq!(got["state"]["pid"], pid, "{got}");
    assert_eq!(got["state"]["bundle"], b.path().to_str().unwrap(), "{got}");
    assert!(!b.rootfs().join("exec-made").exists());
    // Without the agent the exec fails naming the listener path, and its process is gone.
    fs::remove_file(&socket).unwrap();
    let out = b.mini(&["exec", &b.id, "sh", "-c", "echo RAN >&2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("listenerPath") && !stderr.contains("RAN"),
        "exec without its agent: {out:?}"
    );
    let cgroup = CgroupManager::new(&b.id, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup.pids().unwrap().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        cgroup.pids().unwrap(),
        [pid as i32],
        "only the init is left"
    );

    let out = b.mini(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "mini delete: {out:?}");
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn the_agent_gets_the_listener_at_create_and_answers_mkdir() {
    agent_answers_the_containers_mkdir(false);
}

#[test]
fn with_no_new_privileges_the_agent_still_gets_the_listener_at_create() {
    agent_answers_the_containers_mkdir(true);
}

#[test]
fn a_missing_agent_fails_create_naming_listener_path_and_leaves_nothing() {
    let sockets = common::temp_dir("mini-agent-");
    let socket = sockets.path().join("nobody.sock");
    let b = Bundle::new("noagent", "echo RAN >/ran", notify_mkdir(&socket), false);
    let out = b.create();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {out:?}");
    assert!(
        stderr.contains("linux.seccomp.listenerPath")
            && stderr.contains("nobody.sock")
            && stderr.contains("connect"),
        "{stderr}"
    );
    // Orphans are reaped by pid 1 after a while: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (!b.leftovers().is_empty() || !processes_naming(&b.id).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
    assert_eq!(processes_naming(&b.id), Vec::<i32>::new());
    assert!(!b.rootfs().join("ran").exists());
    let state = b.mini(&["state", &b.id]);
    assert!(!state.status.success(), "the container is still known");
}

#[test]
fn an_agent_that_never_accepts_fails_create_within_the_send_timeout() {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, listen, socket,
    };
    let sockets = common::temp_dir("mini-agent-");
    let socket_path = sockets.path().join("full.sock");
    // Listening, never accepting, its backlog already full: a connect blocks.
    let server = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let addr = UnixAddr::new(&socket_path).unwrap();
    bind(server.as_raw_fd(), &addr).unwrap();
    listen(&server, Backlog::new(0).unwrap()).unwrap();
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let client = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        let _ = connect(client.as_raw_fd(), &addr);
        waiting.push(client);
    }
    let b = Bundle::new("fullagent", "true", notify_mkdir(&socket_path), false);
    let started = Instant::now();
    let out = b.create();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {out:?}");
    assert!(
        stderr.contains("linux.seccomp.listenerPath") && stderr.contains("connect"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
    drop(waiting);
}
