//! The `mini` command under containerd's stock runc shim (`io.containerd.runc.v2` with
//! `ctr run --runc-binary <mini> --runc-root <dir>`, i.e. the runc options' `BinaryName` and
//! `Root`): the first issue's scenarios — exit codes, stdout/stderr, kill (SIGTERM,
//! SIGKILL), delete, exec, pause/resume, ps — pass with mini in runc's place.
//!
//! Each scenario also checks that the shim really drove mini: the shim passes
//! `--root <runc-root>/<namespace>` to the binary, and `mini state` reads the container there
//! (with runc in its place, the state directory would hold runc's state, which `mini state`
//! cannot read).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mini_e2e::{Containerd, CtrOutput, Namespace, RUNC, Version, wait_until};

mini_e2e::on_every_version!(
    exit_codes_and_stdio_pass_through,
    exec_ps_pause_and_resume_of_a_running_container,
    sigterm_and_sigkill_stop_the_container_and_delete_removes_it,
);

/// A namespace on `cd` with the busybox image, and the `--runc-root` its containers use.
struct Setup<'a> {
    ns: Namespace<'a>,
    runc_root: PathBuf,
    mini: PathBuf,
}

impl<'a> Setup<'a> {
    fn new(cd: &'a Containerd, test: &str) -> Setup<'a> {
        // Below the daemon's directory: removed with it. Short: the state holds a socket.
        let runc_root = cd.dir().join("mr");
        std::fs::create_dir_all(&runc_root).expect("creating the runc root");
        Setup {
            ns: cd.busybox_namespace(test),
            runc_root,
            mini: mini_e2e::mini_command(),
        }
    }

    /// `ctr run --runtime io.containerd.runc.v2 --runc-binary <mini> --runc-root <root>
    /// <opts…> busybox <id> <cmd…>`.
    fn run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> CtrOutput {
        let mini = self.mini.to_string_lossy();
        let root = self.runc_root.to_string_lossy();
        let mut all = vec!["--runc-binary", &mini, "--runc-root", &root];
        all.extend_from_slice(opts);
        self.ns.run(RUNC, &all, id, cmd)
    }

    /// [`Setup::run`] detached; waits until the task is RUNNING.
    #[track_caller]
    fn run_detached(&self, id: &str, cmd: &[&str]) {
        self.run(&["-d"], id, cmd).expect_success();
        assert!(
            self.ns.wait_status(id, "RUNNING", Duration::from_secs(10)),
            "task {id} not RUNNING: {:?}",
            self.ns.task_status(id)
        );
    }

    /// The directory the shim hands to the binary as `--root`.
    fn mini_root(&self) -> PathBuf {
        self.runc_root.join(self.ns.name())
    }

    /// `mini state <id>` in mini's root as JSON; panics unless it succeeds.
    #[track_caller]
    fn mini_state(&self, id: &str) -> serde_json::Value {
        mini_e2e::mini_state(&self.mini_root(), id, "the runc shim")
    }

    /// Checks that mini keeps container `id`, in `status`, with the init pid containerd
    /// reports.
    #[track_caller]
    fn assert_mini_has(&self, id: &str, status: &str) {
        let (pid, _) = self.ns.task(id).expect("task listed");
        let state = self.mini_state(id);
        assert_eq!(state["status"], status, "{state}");
        assert_eq!(
            state["pid"], pid,
            "mini's init pid is containerd's: {state}"
        );
    }

    /// Checks that nothing of `id` is left: containerd's view (processes, mounts, cgroups,
    /// bundle, socket) and mini's state directory.
    #[track_caller]
    fn assert_nothing_left(&self, id: &str) {
        self.ns.assert_nothing_left(id);
        let dir = self.mini_root().join(id);
        assert!(!dir.exists(), "mini's state {} left behind", dir.display());
    }

    /// `ctr task exec --exec-id <exec_id> <id> <cmd…>`.
    fn exec(&self, id: &str, exec_id: &str, cmd: &[&str]) -> CtrOutput {
        let mut args = vec!["task", "exec", "--exec-id", exec_id, id];
        args.extend_from_slice(cmd);
        self.ns.ctr(&args)
    }
}

/// The container's v1 freezer state (`FROZEN`, `THAWED`), in ctr's `/<ns>/<id>` cgroup.
fn freezer_state(ns: &Namespace<'_>, id: &str) -> String {
    let dir = Path::new("/sys/fs/cgroup/freezer").join(ns.name()).join(id);
    mini_e2e::read_trimmed(&dir, "freezer.state")
}

fn exit_codes_and_stdio_pass_through(version: Version) {
    let cd = Containerd::start(version);
    let s = Setup::new(&cd, "ir-exit");
    for (cmd, want) in [
        (&["true"][..], 0),
        (&["false"][..], 1),
        (&["sh", "-c", "exit 42"][..], 42),
    ] {
        let id = s.ns.new_id("ir-exit");
        let out = s.run(&["--rm"], &id, cmd);
        assert_eq!(out.code, Some(want), "{out}");
        s.assert_nothing_left(&id);
    }
    let id = s.ns.new_id("ir-stdio");
    let out = s.run(
        &["--rm"],
        &id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr\n"), "{out}");
    assert!(!out.stdout.contains("to-stderr"), "{out}");
    s.assert_nothing_left(&id);

    // A create that fails: the shim passes on the error mini wrote to its `--log` (JSON),
    // mini's own words (runc's start "runc create failed: unable to start container
    // process"), and nothing is left.
    let id = s.ns.new_id("ir-enoent");
    let out = s.run(&["--rm"], &id, &["/nonexistent"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("OCI runtime create failed")
            && out.stderr.contains("exec: \"/nonexistent\"")
            && !out.stderr.contains("runc create failed"),
        "not mini's error about the executable: {out}"
    );
    s.ns.ctr(&["container", "delete", &id]);
    s.assert_nothing_left(&id);
}

fn exec_ps_pause_and_resume_of_a_running_container(version: Version) {
    let cd = Containerd::start(version);
    let s = Setup::new(&cd, "ir-exec");
    let id = s.ns.new_id("ir-exec");
    s.run_detached(&id, &["sleep", "300"]);
    s.assert_mini_has(&id, "running");
    let (init, _) = s.ns.task(&id).expect("task listed");

    // exec: output, exit code, and the container's pid namespace.
    let out = s.exec(
        &id,
        "e1",
        &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 7"],
    );
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.stdout, "exec-out\n", "{out}");
    assert!(out.stderr.contains("exec-err\n"), "{out}");
    let out = s.exec(&id, "e2", &["cat", "/proc/1/cmdline"]);
    out.expect_success();
    assert_eq!(out.stdout, "sleep\x00300\x00", "{out}");

    // ps (the shim's `mini ps --format json`): the init.
    let out = s.ns.ctr(&["task", "ps", &id]);
    out.expect_success();
    let pids: Vec<i32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(pids, vec![init], "{out}");

    // pause / resume: containerd's status, mini's and the freezer's.
    s.ns.ctr(&["task", "pause", &id]).expect_success();
    assert_eq!(s.ns.task_status(&id).as_deref(), Some("PAUSED"));
    s.assert_mini_has(&id, "paused");
    assert_eq!(freezer_state(&s.ns, &id), "FROZEN");
    s.ns.ctr(&["task", "resume", &id]).expect_success();
    assert_eq!(s.ns.task_status(&id).as_deref(), Some("RUNNING"));
    s.assert_mini_has(&id, "running");
    assert_eq!(freezer_state(&s.ns, &id), "THAWED");
    s.exec(&id, "e3", &["true"]).expect_success();

    s.ns.kill_and_delete(&id);
    s.assert_nothing_left(&id);
}

fn sigterm_and_sigkill_stop_the_container_and_delete_removes_it(version: Version) {
    let cd = Containerd::start(version);
    let s = Setup::new(&cd, "ir-kill");

    // SIGTERM (ctr's default) reaches an init that handles it; its exit code comes back.
    let id = s.ns.new_id("ir-term");
    s.run_detached(
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; touch /ready; while :; do sleep 0.1; done",
        ],
    );
    let ready = wait_until(Duration::from_secs(10), || {
        s.exec(&id, "ready", &["test", "-e", "/ready"]).success()
    });
    assert!(ready, "the init did not set its trap");
    s.assert_mini_has(&id, "running");
    s.ns.ctr(&["task", "kill", &id]).expect_success();
    assert!(
        s.ns.wait_status(&id, "STOPPED", Duration::from_secs(10)),
        "SIGTERM did not stop {id}: {:?}",
        s.ns.task_status(&id)
    );
    assert_eq!(s.mini_state(&id)["status"], "stopped");
    let del = s.ns.ctr(&["task", "delete", &id]);
    del.expect_success();
    assert!(del.stderr.contains("exit code 3"), "{del}");
    s.ns.ctr(&["container", "delete", &id]).expect_success();
    s.assert_nothing_left(&id);

    // SIGKILL of an init that ignores SIGTERM (pid 1 `sleep`): status 137, then delete.
    let id = s.ns.new_id("ir-kill");
    s.run_detached(&id, &["sleep", "300"]);
    s.assert_mini_has(&id, "running");
    s.ns.kill_and_delete(&id);
    s.assert_nothing_left(&id);

    // `task delete --force` of a running container.
    let id = s.ns.new_id("ir-force");
    s.run_detached(&id, &["sleep", "300"]);
    s.ns.ctr(&["task", "delete", "--force", &id])
        .expect_success();
    assert!(s.ns.task(&id).is_none(), "task {id} still listed");
    s.ns.ctr(&["container", "delete", &id]).expect_success();
    s.assert_nothing_left(&id);
}
