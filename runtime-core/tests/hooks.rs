//! Runtime integration (root): the spec's hooks through the `mini` command, checked against
//! runtime-spec 1.2 (config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): each kind runs
//! once, at its point of the lifecycle, in its namespaces, with the state on its stdin; a
//! failing hook before the user's process ends the container and leaves nothing; a failing
//! `poststart` or `poststop` hook is only a warning; a hook past its timeout is killed.

mod common;

use common::{alive, processes_naming};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_core::cgroups::CgroupManager;
use serde_json::{Value, json};

const MINI: &str = env!("CARGO_BIN_EXE_mini");

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A busybox bundle whose container runs `sleep 30`, with the host directory `out` bound at
/// `/out`, and a private `--root`; force-deleted on drop.
struct Bundle {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    out: tempfile::TempDir,
    id: String,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        let b = Bundle {
            dir: common::temp_dir("mini-hooks-"),
            root: common::temp_dir("mini-root-"),
            out: common::temp_dir("mini-hook-out-"),
            id: format!("hooks-{name}-{}", std::process::id()),
        };
        common::busybox_rootfs(
            "the hook tests",
            &b.rootfs(),
            &["sh", "sleep", "cat", "readlink", "test", "echo"],
        );
        fs::create_dir_all(b.rootfs().join("out")).unwrap();
        // Only the container's root has it: tells a hook's view of the files.
        fs::write(b.rootfs().join("in-the-container"), "").unwrap();
        let out = b.mini(&["spec", "--bundle", b.path().to_str().unwrap()]);
        assert!(out.status.success(), "mini spec: {out:?}");
        b.edit(|spec| {
            spec["process"]["args"] = json!(["sleep", "30"]);
            spec["annotations"] = json!({"org.example.hooks": "yes"});
            spec["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/out", "type": "bind",
                "source": b.out.path(), "options": ["rbind", "rw"]
            }));
        });
        b
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    fn edit(&self, change: impl FnOnce(&mut Value)) {
        let path = self.path().join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        change(&mut spec);
        fs::write(&path, spec.to_string()).unwrap();
    }

    /// Sets `hooks.<kind>` to one hook running `sh -c script` (the host's sh, or the
    /// container's for `startContainer`, whose path resolves in the container).
    fn hook(&self, kind: &str, script: &str, timeout: Option<i64>) {
        let mut hook = json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": ["HOOK_KIND=".to_string() + kind]
        });
        if let Some(t) = timeout {
            hook["timeout"] = json!(t);
        }
        self.edit(|spec| spec["hooks"][kind] = json!([hook]));
    }

    /// A hook of `kind` that saves its stdin to `<out>/<kind>.json` and appends to `<out>/log`
    /// its kind, mount and pid namespaces and whether it sees the container's files.
    fn recording_hook(&self, kind: &str) {
        // The startContainer hook runs in the container, where `out` is at /out.
        let out = if kind == "startContainer" {
            PathBuf::from("/out")
        } else {
            self.out.path().to_path_buf()
        };
        let script = format!(
            "cat > {o}/$HOOK_KIND.json; \
             if test -e /in-the-container; then view=container; else view=host; fi; \
             echo $HOOK_KIND $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/pid) $view \
             >> {o}/log",
            o = out.display()
        );
        self.hook(kind, &script, Some(10));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MINI);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd.current_dir(self.path());
        cmd
    }

    fn mini(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `mini create`, with the container's stdio on /dev/null (a pipe would be held open by
    /// the container) and the command's errors in a file.
    fn create(&self) -> (bool, String) {
        let errors = self.path().join("create.err");
        let status = self
            .command(&[
                "create",
                "--bundle",
                self.path().to_str().unwrap(),
                &self.id,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&errors).unwrap())
            .status()
            .unwrap();
        (status.success(), fs::read_to_string(&errors).unwrap())
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.mini(args);
        assert!(out.status.success(), "mini {args:?}: {out:?}");
        out
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&self.ok(&["state", &self.id]).stdout).unwrap()
    }

    fn log(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.out.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    fn hook_state(&self, kind: &str) -> Value {
        let path = self.out.path().join(format!("{kind}.json"));
        serde_json::from_slice(&fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{kind}'s stdin is not a state document: {e}"))
    }

    /// What the host still holds of the container: cgroup directories, its state directory,
    /// mounts under the bundle.
    fn leftovers(&self) -> Vec<String> {
        let cgroup = CgroupManager::new(&self.id, None).unwrap();
        let mut left: Vec<String> = cgroup
            .dirs()
            .map(|d| d.dir.clone())
            .chain([self.root.path().join(&self.id)])
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let bundle = self.path().display().to_string();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        left.extend(
            mountinfo
                .lines()
                .filter(|l| l.contains(&bundle))
                .map(str::to_string),
        );
        left
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

fn ns(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn each_kind_runs_once_in_order_in_its_namespaces_with_the_state_on_stdin() {
    let b = Bundle::new("all");
    for kind in KINDS {
        b.recording_hook(kind);
    }
    let (created, errors) = b.create();
    assert!(created, "create: {errors}");
    let pid = b.state()["pid"].as_i64().unwrap().to_string();
    let host = ("self", ns("self", "mnt"), ns("self", "pid"));
    let container = (ns(&pid, "mnt"), ns(&pid, "pid"));
    assert_ne!(host.1, container.0);

    let kinds = |log: &[Vec<String>]| log.iter().map(|l| l[0].clone()).collect::<Vec<_>>();
    // create returns after the first three, and only them.
    assert_eq!(
        kinds(&b.log()),
        ["prestart", "createRuntime", "createContainer"]
    );
    b.ok(&["start", &b.id]);
    // start returns after startContainer and poststart.
    assert_eq!(kinds(&b.log()), KINDS[..5]);
    b.ok(&["kill", &b.id, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.state()["status"] != "stopped" {
        assert!(Instant::now() < deadline, "the container never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.ok(&["delete", &b.id]);
    let log = b.log();
    assert_eq!(
        kinds(&log),
        KINDS,
        "each kind once, in the lifecycle's order"
    );

    for line in &log {
        let (mnt, pidns, view) = (&line[1], &line[2], line[3].as_str());
        let want = match line[0].as_str() {
            // The runtime's namespaces.
            "prestart" | "createRuntime" | "poststart" | "poststop" => (&host.1, &host.2, "host"),
            // The container's mount namespace before pivot_root: the host's files in view.
            "createContainer" => (&container.0, &container.1, "host"),
            // In the container, after pivot_root.
            "startContainer" => (&container.0, &container.1, "container"),
            other => panic!("unknown kind {other}"),
        };
        assert_eq!((mnt, pidns, view), want, "{}", line[0]);
    }

    let bundle = b.path().canonicalize().unwrap();
    for kind in KINDS {
        let state = b.hook_state(kind);
        assert_eq!(state["id"], b.id.as_str(), "{kind}");
        assert_eq!(state["bundle"], bundle.to_str().unwrap(), "{kind}");
        assert!(state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()));
        assert_eq!(state["annotations"]["org.example.hooks"], "yes", "{kind}");
        let status = match kind {
            "startContainer" => "created",
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "creating",
        };
        assert_eq!(state["status"], status, "{kind}");
        if kind != "poststop" {
            assert_eq!(state["pid"].to_string(), pid, "{kind}: the init's host pid");
        }
    }
}

/// A failing hook of `kind`: create fails naming it, and nothing of the container is left.
fn failing_hook_fails_create_and_leaves_nothing(kind: &str) {
    let b = Bundle::new(&kind.to_lowercase());
    b.hook(kind, "echo no network for you >&2; exit 7", None);
    let (created, errors) = b.create();
    assert!(!created, "create succeeded despite a failing {kind} hook");
    assert!(
        errors.contains(&format!("hooks.{kind}[0]")) && errors.contains("exit status 7"),
        "{errors}"
    );
    assert!(errors.contains("no network for you"), "{errors}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_naming(&b.id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            processes_naming(&b.id)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = b.mini(&["state", &b.id]);
    assert!(!out.status.success(), "the container is still known");
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    failing_hook_fails_create_and_leaves_nothing("createRuntime");
}

#[test]
fn a_failing_create_container_hook_fails_create_and_leaves_nothing() {
    failing_hook_fails_create_and_leaves_nothing("createContainer");
}

#[test]
fn a_failing_start_container_hook_fails_start_and_the_user_process_never_runs() {
    let b = Bundle::new("startfail");
    b.hook("startContainer", "echo refused >&2; exit 3", None);
    let (created, errors) = b.create();
    assert!(created, "create: {errors}");
    let pid = b.state()["pid"].as_i64().unwrap() as i32;
    let out = b.mini(&["start", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start succeeded despite the hook");
    assert!(
        stderr.contains("hooks.startContainer[0]") && stderr.contains("refused"),
        "{stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the init still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.state()["status"], "stopped");
    b.ok(&["delete", &b.id]);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    let b = Bundle::new("late");
    b.hook("poststart", "exit 4", None);
    b.edit(|spec| {
        spec["hooks"]["poststop"] = json!([{"path": "/bin/false"}]);
    });
    let (created, errors) = b.create();
    assert!(created, "create: {errors}");
    let out = b.ok(&["start", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hooks.poststart[0]"), "{stderr}");
    assert_eq!(b.state()["status"], "running");
    let out = b.ok(&["delete", "--force", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hooks.poststop[0]"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_fails_create() {
    let b = Bundle::new("timeout");
    let pidfile = b.out.path().join("sleep.pid");
    b.hook(
        "createRuntime",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        Some(1),
    );
    let started = Instant::now();
    let (created, errors) = b.create();
    assert!(!created, "create succeeded despite a hanging hook");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout was not kept"
    );
    assert!(
        errors.contains("hooks.createRuntime[0]") && errors.contains("timed out"),
        "{errors}"
    );
    let sleeper: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(sleeper) {
        assert!(Instant::now() < deadline, "the hook's child still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

#[test]
fn a_relative_hook_path_is_refused_by_field_before_anything_is_created() {
    let b = Bundle::new("relative");
    b.edit(|spec| spec["hooks"]["prestart"] = json!([{"path": "bin/true"}]));
    let (created, errors) = b.create();
    assert!(!created);
    assert!(errors.contains("hooks.prestart[0].path"), "{errors}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// `--preserve-fds` with hooks that make the init ask its caller (`createRuntime`): the init
/// reads the passed fds only after that exchange, and the process gets them. No hook holds
/// an fd of the caller's: not one it passes to the container, not another it has open, not
/// the init's start socket.
#[test]
fn preserved_fds_reach_the_process_past_the_hooks_and_no_hook_holds_them() {
    let b = Bundle::new("fds");
    let out = b.out.path().display().to_string();
    let probe = |kind: &str| {
        json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "r=; for n in 3 4 5 6 7 8 9 10 11 12; do [ -e /proc/self/fd/$n ] && r=\"$r $n\"; \
                 done; echo \"{kind}:$r\" >> {out}/fds")],
            "timeout": 10
        })
    };
    b.edit(|spec| {
        spec["process"]["args"] = json!(["sh", "-c", "cat <&3"]);
        spec["hooks"] = json!({
            "createRuntime": [probe("createRuntime")],
            "createContainer": [probe("createContainer")],
        });
    });
    fs::write(b.path().join("one"), "passed\n").unwrap();
    // create (the init waits on its start socket while the hooks run), then start.
    let stdout = b.path().join("stdout");
    let create = Command::new("/bin/sh")
        .arg("-c")
        .arg("exec 3<one 9</etc; exec \"$@\"")
        .arg("sh")
        .arg(MINI)
        .arg("--root")
        .arg(b.root.path())
        .args(["create", "--preserve-fds", "1", &b.id])
        .current_dir(b.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(b.path().join("create.err")).unwrap())
        .status()
        .unwrap();
    assert!(
        create.success(),
        "mini create: {:?}",
        fs::read_to_string(b.path().join("create.err"))
    );
    b.ok(&["start", &b.id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(&stdout).unwrap_or_default().is_empty()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fs::read_to_string(&stdout).unwrap(), "passed\n");
    let seen = fs::read_to_string(b.out.path().join("fds")).unwrap_or_default();
    assert_eq!(
        seen, "createRuntime:\ncreateContainer:\n",
        "hooks held fds of the caller's"
    );
}
