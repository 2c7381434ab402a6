//! Runtime integration (root): the `mini` command on temporary bundles with a busybox rootfs,
//! as podman and containerd's runc shim drive runc: create, start, state, kill, delete, run,
//! and what must be left (nothing) between and after them.

mod common;

use common::{alive, processes_naming};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_core::cgroups::CgroupManager;

const MINI: &str = env!("CARGO_BIN_EXE_mini");

/// A bundle made by `mini spec` (args changed by the test) and a private `--root`; the
/// container is force-deleted and both removed on drop.
struct Bundle {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    /// The `--root` given to mini: `root` or a directory under it.
    root_dir: PathBuf,
    id: String,
}

impl Bundle {
    fn new(name: &str, args: Option<&[&str]>) -> Bundle {
        let dir = common::temp_dir("mini-cli-");
        let root = common::temp_dir("mini-root-");
        common::busybox_rootfs(
            "the cli tests",
            &dir.path().join("rootfs"),
            &["sh", "sleep", "echo", "cat"],
        );
        let b = Bundle {
            dir,
            root_dir: root.path().to_path_buf(),
            root,
            id: format!("cli-{name}-{}", std::process::id()),
        };
        let out = b.mini(&["spec", "--bundle", b.path().to_str().unwrap()]);
        assert!(out.status.success(), "mini spec: {out:?}");
        if let Some(args) = args {
            let path = b.path().join("config.json");
            let mut spec: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            spec["process"]["args"] = serde_json::json!(args);
            fs::write(&path, spec.to_string()).unwrap();
        }
        b
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes `process.args` and whatever else `edit` does to the spec.
    fn edit_spec(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.path().join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut spec);
        fs::write(&path, spec.to_string()).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MINI);
        cmd.arg("--root").arg(&self.root_dir).args(args);
        cmd.current_dir(self.path());
        cmd
    }

    /// Runs `mini --root R args…` with stdin and the container's stdio on /dev/null.
    fn mini(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `mini create`, whose container's stdio is /dev/null (a pipe would be held open by
    /// the container).
    fn create(&self) {
        let bundle = self.path().to_str().unwrap();
        let status = self.detached(&["create", "--bundle", bundle, &self.id]);
        assert!(status.success(), "mini create failed: {status}");
    }

    /// `mini create --console-socket`: the pty master it sent.
    fn create_with_console(&self) -> std::os::fd::OwnedFd {
        let socket = self.path().join("console.sock");
        let receiver = receive_console(&socket);
        self.ok(&[
            "create",
            "--console-socket",
            socket.to_str().unwrap(),
            &self.id,
        ]);
        // Unblocks the receiver if create sent nothing (it then finds no fd and fails).
        drop(std::os::unix::net::UnixStream::connect(&socket));
        receiver.join().expect("create sent the pty master")
    }

    /// Runs a command that leaves a process of the container running, with every stdio on
    /// /dev/null: a pipe would stay open as long as that process runs.
    fn detached(&self, args: &[&str]) -> std::process::ExitStatus {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    /// Runs `mini args…` with `input` on its stdin (closed after it).
    fn with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.mini(args);
        assert!(out.status.success(), "mini {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).unwrap()
    }

    fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.status() != want {
            assert!(Instant::now() < deadline, "status never became {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the host still holds of the container: its cgroup directories and state
    /// directory.
    fn leftovers(&self) -> Vec<PathBuf> {
        let cgroup = CgroupManager::new(&self.id, None).unwrap();
        cgroup
            .dirs()
            .map(|d| d.dir.clone())
            .chain([self.root_dir.join(&self.id)])
            .filter(|p| p.exists())
            .collect()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

#[test]
fn create_start_kill_delete_walk_the_runtime_spec_lifecycle() {
    let b = Bundle::new("life", Some(&["sleep", "30"]));
    b.create();
    let state = b.state();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], b.id.as_str());
    assert_eq!(
        state["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && alive(pid));

    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "sleep",
        "start made the init exec the user's program"
    );

    b.ok(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    assert_eq!(b.state()["pid"], 0);
    b.ok(&["delete", &b.id]);
    let out = b.mini(&["state", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn after_create_only_the_init_remains_and_it_holds_no_host_path() {
    let b = Bundle::new("alone", Some(&["sleep", "30"]));
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap() as i32;
    // `mini create` has exited (status() waited for it) and so has the setup helper: the
    // only process naming the container is its init, reparented away from us.
    assert_eq!(processes_naming(&b.id), vec![pid]);
    let ppid: i32 = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id() as i32);
    // While it waits for start, every fd beyond stdio is a socket: nothing that leads to a
    // host path.
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let target = fs::read_link(entry.path()).unwrap();
        if fd > 2 {
            assert!(
                target.to_str().unwrap().starts_with("socket:"),
                "fd {fd} of the created init is {}",
                target.display()
            );
        }
    }
    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
}

#[test]
fn the_created_init_runs_from_a_read_only_view_of_mini() {
    // Normally `mini create` re-execs itself from the view and the init is its own child;
    // with the re-exec skipped (the mark set), it runs from the writable binary and must
    // leave the work to an exec'd helper: either way the init holds no writable host binary
    // (CVE-2019-5736).
    for skip_reexec in [false, true] {
        let b = Bundle::new(
            if skip_reexec { "exe-mark" } else { "exe-view" },
            Some(&["sleep", "30"]),
        );
        let bundle = b.path().to_str().unwrap();
        let mut cmd = b.command(&["create", "--bundle", bundle, &b.id]);
        if skip_reexec {
            cmd.env(runtime_core::exe_guard::REEXEC_MARK, "1");
        }
        let status = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mini create (mark: {skip_reexec}): {status}"
        );
        let pid = b.state()["pid"].as_i64().unwrap();
        let exe = format!("/proc/{pid}/exe");
        let vfs = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
        assert!(
            vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
            "{exe} is on a writable mount (mark: {skip_reexec})"
        );
        // Nor does it show the command's host paths (/proc/PID/cmdline is readable by any
        // process of the container, as by `mini exec`).
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(bundle) && !cmdline.contains(b.root_dir.to_str().unwrap()),
            "the created init's command line: {cmdline:?} (mark: {skip_reexec})"
        );
        // Which path built it: `create` itself (the init's command line rewritten to
        // `mini-init <id>`) or an exec'd helper (`mini-init __mini_init <id>`).
        let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
        let expected = match skip_reexec {
            false => vec!["mini-init", b.id.as_str()],
            true => vec!["mini-init", "__mini_init", b.id.as_str()],
        };
        assert_eq!(args, expected, "the created init's command line");
        b.ok(&["start", &b.id]);
        assert_eq!(b.status(), "running");
    }
}

#[test]
fn run_detach_leaves_it_running_and_delete_without_force_refuses() {
    let b = Bundle::new("detach", Some(&["sleep", "30"]));
    let status = b.detached(&["run", "--detach", &b.id]);
    assert!(status.success());
    assert_eq!(b.status(), "running");
    let pid = b.state()["pid"].as_i64().unwrap() as i32;

    let out = b.mini(&["delete", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("that is not stopped: running"),
        "stderr: {stderr}"
    );
    assert_eq!(b.status(), "running");
    assert!(alive(pid));

    let out = b.mini(&["start", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));

    b.ok(&["delete", "--force", &b.id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the init survived delete --force"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn foreground_run_exits_with_the_containers_status_and_deletes_it() {
    let b = Bundle::new("fg", Some(&["sh", "-c", "echo out-of-the-box; exit 7"]));
    let out = b.mini(&["run", &b.id]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-of-the-box\n");
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn a_bundle_from_mini_spec_runs_unchanged() {
    let b = Bundle::new("spec", None);
    // The default process is `sh`: it reads its commands from the container's stdin.
    let out = b.with_input(&["run", &b.id], b"echo from-the-default-spec; hostname\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-the-default-spec\nmini\n"
    );
}

#[test]
fn unknown_ids_fail_as_runc_does() {
    let b = Bundle::new("unknown", None);
    for args in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope", "KILL"],
        vec!["delete", "nope"],
        vec!["pause", "nope"],
    ] {
        let out = b.mini(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("level=error msg=\"container does not exist\""),
            "{args:?}: {stderr}"
        );
    }
    // As runc: a forced delete of nothing succeeds.
    assert!(b.mini(&["delete", "--force", "nope"]).status.success());
    // The JSON log that go-runc and podman read the error from.
    let log = b.path().join("mini.log");
    let out = b.mini(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container does not exist");
    // An id that could name a path is refused before anything is made.
    let out = b.mini(&["create", "../escape"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!b.root.path().parent().unwrap().join("escape").exists());
}

#[test]
fn an_ambient_capability_that_cannot_be_raised_is_skipped_with_a_warning() {
    let b = Bundle::new(
        "ambient",
        Some(&["sh", "-c", "grep CapAmb /proc/self/status"]),
    );
    // As `runc spec` writes it: ambient capabilities that are not inheritable.
    b.edit_spec(|s| {
        s["process"]["capabilities"]["inheritable"] = serde_json::json!([]);
        s["process"]["capabilities"]["ambient"] = serde_json::json!(["CAP_KILL"]);
    });
    let log = b.path().join("mini.log");
    let out = b.mini(&["--log", log.to_str().unwrap(), "run", &b.id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CapAmb:\t0000000000000000\n"
    );
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("level=warning")
                && l.contains("process.capabilities.ambient: CAP_KILL")),
        "{log}"
    );
}

#[test]
fn pause_resume_ps_and_list_see_the_container() {
    let b = Bundle::new("pause", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let pid = b.state()["pid"].as_i64().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert_eq!(pids, vec![pid]);
    b.ok(&["pause", &b.id]);
    assert_eq!(b.status(), "paused");
    b.ok(&["resume", &b.id]);
    assert_eq!(b.status(), "running");
    let list: serde_json::Value =
        serde_json::from_str(&b.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], b.id.as_str());
    assert_eq!(list[0]["status"], "running");
}

#[test]
fn features_is_the_runtime_spec_document() {
    let b = Bundle::new("features", None);
    let doc: serde_json::Value = serde_json::from_str(&b.ok(&["features"])).unwrap();
    assert_eq!(doc["ociVersionMin"], "1.0.0");
    assert!(doc["linux"]["namespaces"].as_array().unwrap().len() >= 7);
}

#[test]
fn a_terminal_containers_pty_master_goes_to_the_console_socket() {
    let b = Bundle::new("tty", Some(&["sh", "-c", "tty; echo on-the-pty"]));
    let path = b.path().join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = serde_json::json!(true);
    fs::write(&path, spec.to_string()).unwrap();

    // Without a console socket a terminal container is refused, as runc does.
    let out = b.mini(&["create", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("console socket"));
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());

    let master = b.create_with_console();
    b.ok(&["start", &b.id]);
    let output = read_console(master);
    assert!(output.contains("/dev/pts/0"), "output: {output}");
    assert!(output.contains("on-the-pty"), "output: {output}");
}

#[test]
fn state_left_by_a_crashed_command_is_understood() {
    let b = Bundle::new("crash", Some(&["sleep", "30"]));
    // A create that crashed before recording anything: an empty directory, no lock holder.
    fs::create_dir(b.root.path().join(&b.id)).unwrap();
    b.create();
    assert_eq!(b.status(), "created");
    b.ok(&["delete", "--force", &b.id]);

    // A create that crashed after the init was cloned but before it was ready: the record
    // names a pid that is gone (here: a process that has exited).
    let gone = Command::new("/bin/true").spawn().unwrap();
    let pid = gone.id();
    let mut gone = gone;
    gone.wait().unwrap();
    let dir = b.root.path().join(&b.id);
    fs::create_dir(&dir).unwrap();
    let record = serde_json::json!({
        "id": b.id, "bundle": b.path(), "rootfs": b.path().join("rootfs"), "pid": pid,
        "start_time": 1, "ready": false, "created": "2026-01-01T00:00:00Z",
        "annotations": {}, "cgroup": null
    });
    fs::write(dir.join("state.json"), record.to_string()).unwrap();
    assert_eq!(b.status(), "stopped");
    assert_eq!(b.state()["pid"], 0);
    b.ok(&["delete", &b.id]);
    assert!(!dir.exists());

    // A directory without a record is no container to state or list; an unreadable record
    // still goes with delete --force.
    fs::create_dir(&dir).unwrap();
    assert_eq!(b.mini(&["state", &b.id]).status.code(), Some(1));
    assert_eq!(b.ok(&["list", "--format", "json"]).trim(), "[]");
    b.ok(&["delete", "--force", &b.id]);
    assert!(!dir.exists());
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("state.json"), "{\"id\": ").unwrap();
    assert_eq!(b.mini(&["delete", &b.id]).status.code(), Some(1));
    b.ok(&["delete", "--force", &b.id]);
    assert!(!dir.exists());
}

#[test]
fn exec_runs_in_the_containers_namespaces_and_returns_its_status() {
    let b = Bundle::new("exec", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    // The container's pid namespace: its init is pid 1 there.
    let out = b.mini(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "cat /proc/1/cmdline; echo; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sleep\u{0}30\u{0}\n");
    // A process given as OCI JSON, as containerd's runc shim and podman pass it, detached.
    let process = b.path().join("process.json");
    fs::write(
        &process,
        serde_json::json!({"args": ["sleep", "20"], "cwd": "/", "env": ["PATH=/bin"],
                           "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let pid_file = b.path().join("exec.pid");
    let status = b.detached(&[
        "exec",
        "--detach",
        "--process",
        process.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(status.success());
    let pid: i64 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks the exec {pid}");
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused_and_runs_once_resumed() {
    let b = Bundle::new("execpaused", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    b.ok(&["pause", &b.id]);
    let out = b.mini(&["exec", &b.id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ignore-paused"),
        "{out:?}"
    );
    // With it, the exec joins the frozen cgroup and runs once the container is resumed.
    let mut exec = b
        .command(&["exec", "--ignore-paused", &b.id, "echo", "after-resume"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        exec.try_wait().unwrap().is_none(),
        "the exec ran while paused"
    );
    b.ok(&["resume", &b.id]);
    let out = exec.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after-resume\n");
}

#[test]
fn exec_cgroup_joins_an_existing_sub_cgroup_of_the_containers() {
    let b = Bundle::new("execcg", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let cgroup = CgroupManager::new(&b.id, None).unwrap();
    let memory = cgroup.v1_path("memory").or(cgroup.unified_path()).unwrap();
    for d in cgroup.dirs() {
        fs::create_dir(d.dir.join("sub")).unwrap();
        // A v1 cpuset takes no task before it has cpus and mems (the kernel's rule).
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if d.controllers.iter().any(|c| c == "cpuset") {
                fs::write(
                    d.dir.join("sub").join(file),
                    fs::read(d.dir.join(file)).unwrap(),
                )
                .unwrap();
            }
        }
    }
    let show = "cat /proc/self/cgroup";
    // Every hierarchy: the container's cgroup namespace shows the sub-cgroup as /sub.
    let out = b.ok(&["exec", "--cgroup", "sub", &b.id, "sh", "-c", show]);
    assert!(out.lines().all(|l| l.ends_with("/sub")), "{out}");
    // One controller only, as runc's `controller:path`.
    if cgroup.v1_path("memory").is_some() {
        let out = b.ok(&["exec", "--cgroup", "memory:sub", &b.id, "sh", "-c", show]);
        for line in out.lines() {
            let in_sub = line.ends_with("/sub");
            assert_eq!(in_sub, line.contains(":memory:"), "{out}");
        }
    }
    // A path that leaves the container's cgroup, or one that does not exist: refused, named.
    for bad in ["../..", "/sub", "missing"] {
        let out = b.mini(&["exec", "--cgroup", bad, &b.id, "true"]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--cgroup"),
            "{bad}: {out:?}"
        );
    }
    assert!(memory.join("sub").is_dir());
}

#[test]
fn exec_labels_reach_the_process_and_are_refused_by_name_without_the_lsm() {
    let b = Bundle::new("execlabels", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    // This host has neither AppArmor nor SELinux: each is refused naming its field.
    for (flag, field) in [
        ("--apparmor", "process.apparmorProfile"),
        ("--process-label", "process.selinuxLabel"),
    ] {
        let out = b.mini(&["exec", flag, "some_label", &b.id, "true"]);
        assert_eq!(out.status.code(), Some(1), "{flag}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{flag}: {stderr}");
    }
}

#[test]
fn kill_all_with_sigkill_ends_every_process_and_succeeds() {
    let b = Bundle::new("killall", Some(&["sh", "-c", "sleep 300 & sleep 301"]));
    b.create();
    b.ok(&["start", &b.id]);
    let cgroup = CgroupManager::new(&b.id, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cgroup.pids().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", cgroup.pids());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The cgroup's SIGKILL waits for its processes: the init is gone (reaped) before its
    // own signal would go, and that is what was asked.
    b.ok(&["kill", "--all", &b.id, "KILL"]);
    assert!(cgroup.pids().unwrap().is_empty());
    assert_eq!(b.status(), "stopped");
}

#[test]
#[cfg(target_arch = "x86_64")]
fn an_exec_gets_the_containers_personality() {
    let b = Bundle::new("execpers", Some(&["sleep", "30"]));
    b.edit_spec(|s| s["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"}));
    b.create();
    b.ok(&["start", &b.id]);
    assert_eq!(b.ok(&["exec", &b.id, "busybox", "uname", "-m"]), "i686\n");
}

#[test]
fn foreground_run_passes_signals_on_to_the_container() {
    let b = Bundle::new(
        "signal",
        Some(&[
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready; while :; do sleep 0.05; done",
        ]),
    );
    let mut child = b
        .command(&["run", &b.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(9),
        "the container's trap ran and its status came back"
    );
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let b = Bundle::new("update", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let cgroup = CgroupManager::new(&b.id, None).unwrap();
    let pids_max = cgroup
        .v1_path("pids")
        .or(cgroup.unified_path())
        .unwrap()
        .join("pids.max");
    b.ok(&["update", "--pids-limit", "42", &b.id]);
    assert_eq!(fs::read_to_string(&pids_max).unwrap().trim(), "42");
    // The JSON document of `--resources`, from stdin as containerd's runc shim sends it.
    let out = b.with_input(
        &["update", "--resources", "-", &b.id],
        br#"{"pids": {"limit": 77}}"#,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_to_string(&pids_max).unwrap().trim(), "77");
    // A bad value names the field and changes nothing.
    let out = b.mini(&["update", "--pids-limit", "many", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pids.limit"));
    assert_eq!(fs::read_to_string(&pids_max).unwrap().trim(), "77");
    // runc's real-time and block-I/O flags.
    if let Some(cpu) = cgroup
        .v1_path("cpu")
        .filter(|d| d.join("cpu.rt_runtime_us").exists())
    {
        b.ok(&[
            "update",
            "--cpu-rt-period",
            "1000000",
            "--cpu-rt-runtime",
            "1000",
            &b.id,
        ]);
        assert_eq!(
            fs::read_to_string(cpu.join("cpu.rt_runtime_us"))
                .unwrap()
                .trim(),
            "1000"
        );
    }
    let blkio = cgroup
        .v1_path("blkio")
        .unwrap_or(cgroup.unified_path().unwrap());
    let weight = [
        "blkio.weight",
        "blkio.bfq.weight",
        "io.bfq.weight",
        "io.weight",
    ]
    .into_iter()
    .map(|f| blkio.join(f))
    .find(|f| f.exists());
    let out = b.mini(&["update", "--blkio-weight", "321", &b.id]);
    match weight {
        Some(file) => {
            assert!(out.status.success(), "{out:?}");
            assert!(fs::read_to_string(file).unwrap().contains("321"));
        }
        // This host's block I/O scheduler offers no weight: the field is named.
        None => assert!(
            String::from_utf8_lossy(&out.stderr).contains("blockIO.weight"),
            "{out:?}"
        ),
    }
}

/// The container's program cannot make a running container look created: its argv looks
/// like the setup helper's (`sh __mini_init`, a script of that name), yet after `start` the
/// status is `running`, and `exec` works.
#[test]
fn the_containers_argv_does_not_decide_its_status() {
    let b = Bundle::new("forge", Some(&["sh", "__mini_init"]));
    fs::write(b.path().join("rootfs/__mini_init"), "sleep 30\n").unwrap();
    b.create();
    assert_eq!(b.status(), "created");
    b.ok(&["start", &b.id]);
    let pid = b.state()["pid"].as_i64().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sh\0__mini_init\0");
    assert_eq!(b.status(), "running");
    let out = b.mini(&["exec", &b.id, "echo"]);
    assert!(out.status.success(), "{out:?}");
}

/// containerd's runc root with long namespaces and ids: the start socket's path passes the
/// 107 bytes a socket address holds; create, start, state, kill and delete still work.
#[test]
fn a_long_root_and_id_still_start() {
    let mut b = Bundle::new("longroot", Some(&["sleep", "30"]));
    b.root_dir = b.root.path().join("n".repeat(64));
    b.id = format!("{}-{}", "i".repeat(56), std::process::id());
    let socket = b.root_dir.join(&b.id).join("start.sock");
    assert!(socket.as_os_str().len() > 107, "{}", socket.display());
    b.create();
    assert_eq!(b.status(), "created");
    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    b.ok(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    b.ok(&["delete", &b.id]);
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

/// Concurrent creates of one id: exactly one succeeds, and its container is whole.
#[test]
fn concurrent_creates_of_one_id_leave_one_container() {
    let b = Bundle::new("race", Some(&["sleep", "30"]));
    let bundle = b.path().to_str().unwrap().to_string();
    // Each one's stderr is a file: the winner's container keeps it (a pipe would never
    // end).
    let children: Vec<_> = (0..4)
        .map(|n| {
            let log = b.path().join(format!("create-{n}.err"));
            let child = b
                .command(&["create", "--bundle", &bundle, &b.id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            (child, log)
        })
        .collect();
    let outs: Vec<(bool, String)> = children
        .into_iter()
        .map(|(mut c, log)| {
            let ok = c.wait().unwrap().success();
            (ok, fs::read_to_string(log).unwrap())
        })
        .collect();
    let won = outs.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(won, 1, "{outs:?}");
    for (_, stderr) in outs.iter().filter(|(ok, _)| !ok) {
        assert!(stderr.contains("container with id exists"), "{stderr}");
    }
    assert_eq!(b.status(), "created");
    let pid = b.state()["pid"].as_i64().unwrap() as i32;
    assert_eq!(processes_naming(&b.id), vec![pid]);
    b.ok(&["delete", "--force", &b.id]);
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}

/// A `create` killed at any point: `list --format json` stays parseable with a real
/// creation time for every row, and `delete --force` removes whatever is left (process,
/// cgroup, state).
#[test]
fn a_create_killed_at_any_point_leaves_state_that_list_and_delete_understand() {
    let b = Bundle::new("killed", Some(&["sleep", "30"]));
    let bundle = b.path().to_str().unwrap().to_string();
    for delay_ms in (0..120).step_by(8) {
        let mut child = b
            .command(&["create", "--bundle", &bundle, &b.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let out = b.ok(&["list", "--format", "json"]);
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        for row in &rows {
            let created = row["created"].as_str().unwrap();
            assert!(created.len() > 20 && created.ends_with('Z'), "{row}");
        }
        b.ok(&["delete", "--force", &b.id]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_naming(&b.id).is_empty() {
            assert!(
                Instant::now() < deadline,
                "after {delay_ms} ms: a process is left: {:?}",
                processes_naming(&b.id)
                    .iter()
                    .map(|p| fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.leftovers(), Vec::<PathBuf>::new(), "after {delay_ms} ms");
        // Nothing but (maybe) swept temporaries: a new create of the id works.
    }
    b.create();
    assert_eq!(b.status(), "created");
}

/// `--pid-file` is written through a new temporary file: a symlink planted at the name an
/// earlier version used is not followed.
#[test]
fn the_pid_file_is_not_written_through_a_planted_symlink() {
    let b = Bundle::new("pidfile", Some(&["sleep", "30"]));
    let victim = b.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let pid_file = b.path().join("init.pid");
    for name in ["init.tmp", "init.pid.tmp"] {
        std::os::unix::fs::symlink(&victim, b.path().join(name)).unwrap();
    }
    let status = b.detached(&["create", "--pid-file", pid_file.to_str().unwrap(), &b.id]);
    assert!(status.success());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    let pid: i64 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(b.state()["pid"].as_i64().unwrap(), pid);
}

/// `events --stats`: one line, runc's `{"type":"stats","id":…,"data":{…}}` with its field
/// names, from the container's cgroup.
#[test]
fn events_stats_prints_one_runc_stats_event() {
    let b = Bundle::new("stats", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let out = b.ok(&["events", "--stats", &b.id]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let event: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], b.id.as_str());
    let data = &event["data"];
    assert_eq!(data["pids"]["current"], 1, "{data}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(
        data["memory"]["usage"]["limit"].as_u64().is_some(),
        "{data}"
    );
    assert!(data["cpu"]["usage"]["kernel"].as_u64().is_some(), "{data}");
    assert!(data["memory"]["raw"].is_object(), "{data}");
    // A stopped container has no events.
    b.ok(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    let out = b.mini(&["events", "--stats", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
}

/// The stream: a stats event every `--interval`, an `oom` event when the kernel's OOM
/// killer kills a process of the container, and the end when the container stops.
#[test]
fn events_streams_stats_and_reports_an_oom_kill() {
    let b = Bundle::new(
        "oom",
        Some(&[
            "sh",
            "-c",
            "sleep 1; sh -c 'x=$(head -c 200000000 /dev/zero | tr \"\\0\" a)'; sleep 1",
        ]),
    );
    for tool in ["head", "tr"] {
        std::os::unix::fs::symlink("busybox", b.path().join("rootfs/bin").join(tool)).unwrap();
    }
    let limit = 32 << 20;
    b.edit_spec(|spec| {
        spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": limit, "swap": limit});
    });
    b.create();
    b.ok(&["start", &b.id]);
    let child = b
        .command(&["events", "--interval", "200ms", &b.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stats = events.iter().filter(|e| e["type"] == "stats").count();
    assert!(stats >= 5, "{events:?}");
    let oom: Vec<_> = events.iter().filter(|e| e["type"] == "oom").collect();
    assert_eq!(oom.len(), 1, "{events:?}");
    assert_eq!(oom[0], &serde_json::json!({"type": "oom", "id": b.id}));
}

/// Runs `mini --root R args…` through `sh -c "<shell>; exec mini …"`, so `shell` can open
/// fds and set the environment the command inherits; stdout and stderr captured.
fn mini_through_shell(b: &Bundle, shell: &str, args: &[&str]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{shell}; exec \"$@\""))
        .arg("sh")
        .arg(MINI)
        .arg("--root")
        .arg(&b.root_dir)
        .args(args)
        .current_dir(b.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `--preserve-fds N` on run and exec: the command's fds 3 .. 3+N are the process's, and
/// nothing above them is open; with `LISTEN_FDS` (and `LISTEN_PID` naming the command) those
/// fds come first and the process gets `LISTEN_FDS` and `LISTEN_PID=1`, as with runc.
#[test]
fn preserved_and_socket_activation_fds_reach_the_process() {
    let probe = "cat <&3; cat <&4; echo \"env=$LISTEN_FDS/$LISTEN_PID\"; \
                 for n in 5 6 7 8 9; do [ -e /proc/self/fd/$n ] && echo open=$n; done; true";
    let b = Bundle::new("fds", Some(&["sh", "-c", probe]));
    fs::write(b.path().join("one"), "first\n").unwrap();
    fs::write(b.path().join("two"), "second\n").unwrap();
    let out = mini_through_shell(
        &b,
        "exec 3<one 4<two",
        &["run", "--preserve-fds", "2", &b.id],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nenv=/\n"
    );

    // systemd's socket activation: one fd by LISTEN_FDS, one more preserved.
    let out = mini_through_shell(
        &b,
        "exec 3<one 4<two; export LISTEN_FDS=1 LISTEN_PID=$$",
        &["run", "--preserve-fds", "1", &b.id],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nenv=1/1\n"
    );
    // LISTEN_PID naming another process: not ours, nothing passed (as go-systemd).
    let out = mini_through_shell(
        &b,
        "exec 3<one 4<two; export LISTEN_FDS=1 LISTEN_PID=1",
        &["run", "--preserve-fds", "2", &b.id],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nenv=/\n"
    );

    // A preserved fd that is not open: refused before anything is made.
    let out = mini_through_shell(&b, "exec 3<one", &["run", "--preserve-fds", "2", &b.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("preserved-fd 1 (of 2)"));
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());

    // exec: the same for a further process.
    let c = Bundle::new("fdsexec", Some(&["sleep", "30"]));
    fs::write(c.path().join("one"), "exec-first\n").unwrap();
    c.create();
    c.ok(&["start", &c.id]);
    let out = mini_through_shell(
        &c,
        "exec 3<one",
        &[
            "exec",
            "--preserve-fds",
            "1",
            &c.id,
            "sh",
            "-c",
            "cat <&3; [ -e /proc/self/fd/4 ] || echo only-3",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec-first\nonly-3\n");
}

/// Listens on `socket` for the one message carrying a pty master that `--console-socket`
/// gets (as podman's conmon and containerd's shim do); the master, from a thread.
fn receive_console(socket: &Path) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::AsRawFd;
        let (stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([i32; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("an fd with the message");
        // SAFETY: the kernel just installed this fd for us.
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
}

/// Everything a pty master gives until its last slave closes.
fn read_console(master: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut output = Vec::new();
    // A pty master reads EIO once the last slave fd is closed.
    let _ = fs::File::from(master).read_to_end(&mut output);
    String::from_utf8_lossy(&output).into_owned()
}

/// `process.consoleSize` is the pty's window size from the start (TIOCSWINSZ before the
/// process runs), for the container's process and for an exec's.
#[test]
fn console_size_is_the_ptys_window_size() {
    let b = Bundle::new("winsize", Some(&["sh", "-c", "stty size; sleep 30"]));
    std::os::unix::fs::symlink("busybox", b.path().join("rootfs/bin/stty")).unwrap();
    b.edit_spec(|spec| {
        spec["process"]["terminal"] = serde_json::json!(true);
        spec["process"]["consoleSize"] = serde_json::json!({"height": 37, "width": 111});
    });
    let master = b.create_with_console();
    b.ok(&["start", &b.id]);
    // The first line is enough: the container sleeps on.
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(fs::File::from(master));
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line.trim(), "37 111");

    let process = b.path().join("process.json");
    fs::write(
        &process,
        serde_json::json!({"args": ["stty", "size"], "cwd": "/", "env": ["PATH=/bin"],
                           "terminal": true, "consoleSize": {"height": 25, "width": 90},
                           "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let exec_socket = b.path().join("exec-console.sock");
    let receiver = receive_console(&exec_socket);
    // The process's stdio is the pty: the command's own pipes end with the command.
    // The process's stdio is the pty: the command's own pipes end with the command.
    let out = b.mini(&[
        "exec",
        "--console-socket",
        exec_socket.to_str().unwrap(),
        "--process",
        process.to_str().unwrap(),
        &b.id,
    ]);
    assert!(out.status.success(), "{out:?}");
    let master = receiver.join().expect("exec sent the pty master");
    assert_eq!(read_console(master).trim(), "25 90");
}

#[test]
fn help_and_version_answer_as_runc_does() {
    let b = Bundle::new("help", None);
    for flag in ["--help", "-h"] {
        let out = b.ok(&[flag]);
        assert!(out.starts_with("usage: mini"), "{out}");
        for command in ["create", "start", "exec", "delete", "features"] {
            assert!(out.contains(command), "{flag} lacks {command}: {out}");
        }
    }
    let out = b.ok(&["exec", "--help"]);
    assert!(
        out.starts_with("usage: mini exec") && out.contains("--cap"),
        "{out}"
    );
    let out = b.ok(&["delete", "-h"]);
    assert!(out.contains("--force"), "{out}");
    assert!(!b.mini(&["nosuch", "--help"]).status.success());
    for flag in ["--version", "-v"] {
        let out = b.ok(&[flag]);
        assert!(out.starts_with("mini version "), "{out}");
        assert!(out.contains("\nspec: 1.2."), "{out}");
    }
}

/// The `Cap…:` lines of /proc/self/status, from a shell with only builtins and `cat`.
const CAPS_SCRIPT: &str =
    "while read k v; do case $k in Cap*) echo $k $v;; esac; done < /proc/self/status";

fn cap_set(out: &str, set: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{set}:")))
        .unwrap_or_else(|| panic!("no {set} in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn exec_cap_adds_the_capability_as_runc_does() {
    const SYS_ADMIN: u64 = 1 << 21;
    let b = Bundle::new("execcap", Some(&["sleep", "30"]));
    b.edit_spec(|s| s["process"]["noNewPrivileges"] = serde_json::json!(false));
    b.create();
    b.ok(&["start", &b.id]);
    let plain = b.ok(&["exec", &b.id, "sh", "-c", CAPS_SCRIPT]);
    assert_eq!(cap_set(&plain, "CapEff") & SYS_ADMIN, 0, "{plain}");
    let out = b.ok(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &b.id,
        "sh",
        "-c",
        CAPS_SCRIPT,
    ]);
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_ne!(cap_set(&out, set) & SYS_ADMIN, 0, "{set}: {out}");
    }
    // Not inheritable (runc's fix of CVE-2022-29162), so not ambient either.
    for set in ["CapInh", "CapAmb"] {
        assert_eq!(cap_set(&out, set) & SYS_ADMIN, 0, "{set}: {out}");
    }
    // The container's own sets are untouched.
    assert_eq!(
        cap_set(&out, "CapEff") & !SYS_ADMIN,
        cap_set(&plain, "CapEff"),
        "{out}"
    );
    // --no-new-privs, on a container whose process does not set it.
    let nnp =
        "while read k v; do case $k in NoNewPrivs:) echo $k $v;; esac; done < /proc/self/status";
    assert_eq!(b.ok(&["exec", &b.id, "sh", "-c", nnp]), "NoNewPrivs: 0\n");
    assert_eq!(
        b.ok(&["exec", "--no-new-privs", &b.id, "sh", "-c", nnp]),
        "NoNewPrivs: 1\n"
    );
    let out = b.mini(&["exec", "--cap", "CAP_NOSUCH", &b.id, "sh", "-c", "exit 0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("CAP_NOSUCH"),
        "{out:?}"
    );
}

#[test]
fn exec_user_names_come_from_the_containers_own_files() {
    let b = Bundle::new("execuser", Some(&["sleep", "30"]));
    let etc = b.path().join("rootfs/etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/:/bin/sh\nalice:x:1234:5678::/:/bin/sh\n",
    )
    .unwrap();
    fs::write(etc.join("group"), "root:x:0:\nstaff:x:4321:alice\n").unwrap();
    // A name only the host knows, behind an absolute symlink: looked up inside the
    // container root, it must not be found.
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("group"), "hostonly:x:999:\n").unwrap();
    std::os::unix::fs::symlink(host.path().join("group"), etc.join("group-link")).unwrap();
    b.create();
    b.ok(&["start", &b.id]);
    let ids = "while read k r e rest; do case $k in Uid:|Gid:) echo $k $r $e;; Groups:) echo $k $r $e $rest;; esac; done < /proc/self/status";
    // By name: the primary group from /etc/passwd, staff (which lists alice) as a
    // supplementary group.
    let out = b.ok(&["exec", "--user", "alice", &b.id, "sh", "-c", ids]);
    assert_eq!(out, "Uid: 1234 1234\nGid: 5678 5678\nGroups: 4321\n");
    let out = b.ok(&["exec", "--user", "alice:staff", &b.id, "sh", "-c", ids]);
    assert_eq!(out, "Uid: 1234 1234\nGid: 4321 4321\nGroups: 4321\n");
    // By number: the group given, else the container process's (runc's rule); a listed
    // uid still gets its supplementary groups.
    let out = b.ok(&["exec", "-u", "1234:7", &b.id, "sh", "-c", ids]);
    assert_eq!(out, "Uid: 1234 1234\nGid: 7 7\nGroups: 4321\n");
    // A number not listed is taken as it is.
    let out = b.ok(&["exec", "-u", "4242", &b.id, "sh", "-c", ids]);
    assert_eq!(out, "Uid: 4242 4242\nGid: 0 0\nGroups:\n");
    // runc's --additional-gids/-g, added to the user's own.
    let out = b.ok(&[
        "exec",
        "-u",
        "alice",
        "-g",
        "66",
        "--additional-gids",
        "55",
        &b.id,
        "sh",
        "-c",
        ids,
    ]);
    assert_eq!(out, "Uid: 1234 1234\nGid: 5678 5678\nGroups: 55 66 4321\n");
    for (user, named) in [("bob", "bob"), ("alice:wheel", "wheel")] {
        let out = b.mini(&["exec", "--user", user, &b.id, "sh", "-c", "exit 0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(named),
            "{user}: {out:?}"
        );
    }
    fs::rename(etc.join("group-link"), etc.join("group")).unwrap();
    let out = b.mini(&[
        "exec",
        "--user",
        "alice:hostonly",
        &b.id,
        "sh",
        "-c",
        "exit 0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unable to find group hostonly"),
        "the host's group file was read: {out:?}"
    );
}

#[test]
fn exec_into_a_created_container_runs_before_its_program() {
    let b = Bundle::new("execcreated", Some(&["sleep", "30"]));
    b.create();
    let out = b.mini(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "cat /proc/1/cmdline; echo; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // The init is still the runtime's, blocked before the user's program.
    let cmdline = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!cmdline.starts_with("sleep"), "{cmdline}");
    assert_eq!(b.status(), "created");
    b.ok(&["start", &b.id]);
    b.wait_status("running");
}

/// Directories nested `levels` deep in `top` through directory fds, as a container in its
/// own cgroup namespace with a writable cgroupfs can make them (their host paths may pass
/// `PATH_MAX`); removed on drop deepest first, through the fds, after killing the process
/// given to them.
struct Nested {
    fds: Vec<std::os::fd::OwnedFd>,
    name: String,
    process: Option<std::process::Child>,
}

impl Nested {
    fn new(top: &Path, name: &str, levels: usize) -> Nested {
        use nix::fcntl::{OFlag, open, openat};
        use nix::sys::stat::{Mode, mkdirat};
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut fds = vec![open(top, flags, Mode::empty()).unwrap()];
        for _ in 0..levels {
            let parent = fds.last().unwrap();
            mkdirat(parent, name, Mode::from_bits_truncate(0o755)).unwrap();
            fds.push(openat(parent, name, flags, Mode::empty()).unwrap());
        }
        Nested {
            fds,
            name: name.to_string(),
            process: None,
        }
    }

    /// Starts `sleep` and moves it into the deepest directory.
    fn put_sleeper(&mut self) -> u32 {
        use nix::fcntl::{OFlag, openat};
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        self.process = Some(child);
        let procs = openat(
            self.fds.last().unwrap(),
            "cgroup.procs",
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        use std::io::Write;
        fs::File::from(procs)
            .write_all(pid.to_string().as_bytes())
            .unwrap();
        pid
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The first fd is the top, which stays.
        while self.fds.len() > 1 {
            drop(self.fds.pop());
            let _ = nix::unistd::unlinkat(
                self.fds.last().unwrap(),
                self.name.as_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
        }
    }
}

/// Removes the container's cgroup on drop: a `delete` that failed has removed its state
/// already, so the bundle's own `delete --force` no longer finds it.
struct RemoveCgroup(CgroupManager);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        let _ = self.0.kill_all(nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.destroy();
    }
}

#[test]
fn ps_and_delete_force_reach_sub_cgroups_nested_past_path_max() {
    let b = Bundle::new("deepcg", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let cgroup = RemoveCgroup(CgroupManager::new(&b.id, None).unwrap());
    let Some(memory) = cgroup.0.v1_path("memory") else {
        return; // v1 hierarchies only: cgroup2 limits the depth (cgroup.max.depth)
    };
    // 24 levels of 200-byte names: a host path of about 4900 bytes. The process at the
    // bottom is in the v1 memory hierarchy only, where no cgroup.kill reaches it.
    let mut nested = Nested::new(memory, &"n".repeat(200), 24);
    let sleeper = nested.put_sleeper();
    let pids: Vec<u32> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert!(pids.contains(&sleeper), "{pids:?}");

    let out = b.mini(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "{out:?}");
    let child = nested.process.as_mut().unwrap();
    // Gone from the cgroup as it exits: its status may come a moment later.
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        match child.try_wait().unwrap() {
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            status => break status,
        }
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.and_then(|s| s.signal()), Some(9), "{status:?}");
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
    // The same path takes a new container.
    b.create();
    b.ok(&["delete", "--force", &b.id]);
}

#[test]
fn delete_force_kills_a_process_in_a_sub_freezer_the_container_froze_itself() {
    let b = Bundle::new("subfrz", Some(&["sleep", "30"]));
    b.create();
    b.ok(&["start", &b.id]);
    let init = b.state()["pid"].as_i64().unwrap() as i32;
    let cgroup = RemoveCgroup(CgroupManager::new(&b.id, None).unwrap());
    let Some(freezer) = cgroup.0.v1_path("freezer") else {
        return; // the v1 freezer only: cgroup2's cgroup.kill reaches frozen processes
    };
    /// Thaws and removes the sub-freezer whatever the test did.
    struct Sub(PathBuf);
    impl Drop for Sub {
        fn drop(&mut self) {
            // Its processes then die of their pending SIGKILL, and it goes with the rest.
            let _ = fs::write(self.0.join("freezer.state"), "THAWED");
        }
    }
    let sub = Sub(freezer.join("sub"));
    fs::create_dir(&sub.0).unwrap();
    fs::write(sub.0.join("cgroup.procs"), init.to_string()).unwrap();
    fs::write(sub.0.join("freezer.state"), "FROZEN").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(sub.0.join("freezer.state"))
        .unwrap()
        .trim()
        != "FROZEN"
    {
        assert!(Instant::now() < deadline, "the sub-freezer never froze");
        std::thread::sleep(Duration::from_millis(10));
    }

    let started = Instant::now();
    let out = b.mini(&["delete", "--force", &b.id]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(2), "delete -f took {took:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(init) {
        assert!(
            Instant::now() < deadline,
            "the frozen init survived delete -f"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(b.leftovers(), Vec::<PathBuf>::new());
}
