//! The bootstrap command line as containerd drives it: `start`, `delete`, `-v`, `-info`,
//! run against the built binary (as root: the socket lives under /run/containerd/s).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{DeleteResponse, ShutdownRequest};
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::types::introspection::RuntimeInfo;
use protobuf::Message;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-mini-v2");

fn shim(bundle: &Path, args: &[&str]) -> std::process::Output {
    Command::new(SHIM)
        .args(args)
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", bundle.join("no-containerd.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn version_and_info_answer() {
    let out = Command::new(SHIM).arg("-v").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("io.containerd.mini.v2"));
    let out = Command::new(SHIM).arg("-info").output().unwrap();
    assert!(out.status.success());
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(info.name, "io.containerd.mini.v2");
    // The runtime-spec features document, as JSON in an Any (what containerd 2.x shows).
    let features = info.features.as_ref().expect("RuntimeInfo.features is set");
    assert!(
        features
            .type_url
            .ends_with("runtime-spec/1/features/Features")
    );
    let doc: serde_json::Value = serde_json::from_slice(&features.value).unwrap();
    let has = |v: &serde_json::Value, s: &str| v.as_array().unwrap().iter().any(|x| x == s);
    assert!(has(&doc["linux"]["capabilities"], "CAP_SYS_ADMIN"));
    assert!(has(&doc["linux"]["seccomp"]["actions"], "SCMP_ACT_ERRNO"));
    assert!(has(&doc["linux"]["namespaces"], "cgroup"));
    assert_eq!(doc["linux"]["seccomp"]["enabled"], true);
    assert!(has(&doc["hooks"], "createRuntime") && has(&doc["hooks"], "poststop"));
}

#[test]
fn delete_with_nothing_left_succeeds_every_time_with_status_137() {
    let bundle = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let dir = bundle.path().display().to_string();
        let out = shim(
            bundle.path(),
            &[
                "-namespace",
                "mini-unit",
                "-id",
                "gone",
                "-address",
                "/nonexistent.sock",
                "-bundle",
                &dir,
                "delete",
            ],
        );
        assert!(out.status.success(), "delete failed: {out:?}");
        let response = DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
        assert_eq!(response.exit_status, 137);
        assert!(response.exited_at.is_some());
    }
}

/// `start` prints the address and nothing else, records it in the bundle, and leaves a
/// daemon in its own session serving on a path socket, logging into the bundle's `log`
/// fifo; Shutdown ends it and removes the socket.
#[test]
fn start_prints_only_the_address_and_the_daemon_serves_until_shutdown() {
    let bundle = tempfile::tempdir().unwrap();
    let log = bundle.path().join("log");
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // containerd holds the log fifo's read end before it runs `start`.
    let mut log_reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log)
        .unwrap();
    let id = format!("unit-{}", std::process::id());
    let address = format!("/tmp/mini-unit-{}.sock", std::process::id());
    let out = shim(
        bundle.path(),
        &[
            "-namespace",
            "mini-unit",
            "-id",
            &id,
            "-address",
            &address,
            "-publish-binary",
            "/bin/true",
            "start",
        ],
    );
    assert!(out.status.success(), "start failed: {out:?}");
    // stdout and stderr together are the address (containerd reads both).
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with("unix:///run/containerd/s/"),
        "{printed:?}"
    );
    assert_eq!(
        printed.trim(),
        printed,
        "nothing but the address: {printed:?}"
    );
    assert_eq!(
        fs::read_to_string(bundle.path().join("address")).unwrap(),
        printed
    );
    let socket = printed.trim_start_matches("unix://").to_string();
    assert!(fs::metadata(&socket).unwrap().file_type().is_socket());

    let _guard = DaemonGuard {
        bundle: bundle.path().to_path_buf(),
        socket: socket.clone(),
    };
    let daemon: i32 = fs::read_to_string(bundle.path().join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        daemon.to_string(),
        "the daemon leads its own session"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = TaskClient::new(Client::connect(&printed).await.unwrap());
        let ctx = ttrpc::context::with_timeout(5_000_000_000);
        client
            .shutdown(
                ctx,
                &ShutdownRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&socket).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !Path::new(&socket).exists(),
        "the daemon removes its socket at exit"
    );
    let mut logged = String::new();
    let _ = log_reader.read_to_string(&mut logged);
    assert!(
        logged.contains("serving io.containerd.mini.v2"),
        "log: {logged:?}"
    );
}

/// Kills the daemon and removes its socket if the test ends early.
struct DaemonGuard {
    bundle: std::path::PathBuf,
    socket: String,
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(self.bundle.join("shim.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = fs::remove_file(&self.socket);
    }
}
