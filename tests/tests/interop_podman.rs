//! The `mini` command under podman (Debian's 4.3, with conmon): `podman --runtime <mini>` runs
//! the local busybox image — output and exit codes, `podman exec`, `podman stop` (an init
//! that handles SIGTERM, and one that ignores it and is killed at the timeout), `podman rm`.
//!
//! Every podman command works in a private store (`--root`, `--runroot`, `--tmpdir` and the
//! network config under one temporary directory; the cgroupfs manager with a cgroup parent of
//! the test's own; no network). mini keeps its state in its default root, `/run/mini`: podman
//! 4.3 passes `--runtime-flag`s to create and start but not to the `delete` of its cleanup
//! process, so a private `--root` would leave every container's state behind. Container ids
//! are podman's unique 64-digit ones. The test reads mini's state (`mini state`) and its debug
//! log (`--runtime-flag debug --runtime-flag log=…`), which checks that podman drove mini and
//! not another runtime. The open-files and process limits are set explicitly: raising a hard
//! limit needs CAP_SYS_RESOURCE, which this machine's root lacks (ENVIRONMENT.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mini_e2e::{CtrOutput, leftovers, wait_until};

/// Hard limit of one podman command.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Options of every `podman run` here.
const RUN_OPTS: [&str; 6] = [
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A private podman store using `mini` as its runtime, with the busybox image loaded.
/// Dropping it removes its containers and images (and mini's state of each container it
/// ran), kills what is left of its processes, unmounts what is left below its directory and
/// removes the cgroup parent and the directory.
struct Podman {
    dir: PathBuf,
    mini: PathBuf,
    cgroup_parent: String,
    image: String,
    /// `podman run`s so far: each writes its container's id to `<dir>/cid-<n>`.
    runs: std::cell::Cell<usize>,
}

impl Podman {
    fn new() -> Podman {
        let mini = mini_e2e::mini_command();
        assert!(
            Path::new("/usr/bin/podman").is_file(),
            "podman missing: run `make deps` (deploy/install-deps.sh)"
        );
        // Short: conmon's and mini's sockets live below it.
        let dir = mini_e2e::tmp_dir("ip").keep();
        let mut p = Podman {
            dir,
            mini,
            cgroup_parent: mini_e2e::unique_name("mini-podman"),
            image: String::new(),
            runs: std::cell::Cell::new(0),
        };
        let tar = mini_e2e::busybox_image_tar();
        let out = p.podman(&["pull", "-q", &format!("oci-archive:{}", tar.display())]);
        out.expect_success();
        p.image = out.stdout.trim().to_string();
        assert!(!p.image.is_empty(), "no image id: {out}");
        p
    }

    /// The directory mini keeps its state in: its default root.
    fn mini_root(&self) -> PathBuf {
        PathBuf::from("/run/mini")
    }

    /// mini's log (`--log`, with `--debug`) of the commands podman passes its runtime flags
    /// to.
    fn mini_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mini.log")).unwrap_or_default()
    }

    /// The ids of the containers every `podman run` so far created (from `--cidfile`).
    fn container_ids(&self) -> Vec<String> {
        (0..self.runs.get())
            .filter_map(|n| std::fs::read_to_string(self.dir.join(format!("cid-{n}"))).ok())
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect()
    }

    fn command(&self, args: &[&str]) -> (Command, String) {
        let d = &self.dir;
        let mut global = vec![
            "--root".to_string(),
            d.join("root").display().to_string(),
            "--runroot".into(),
            d.join("run").display().to_string(),
            "--tmpdir".into(),
            d.join("tmp").display().to_string(),
            "--network-config-dir".into(),
            d.join("net").display().to_string(),
            "--volumepath".into(),
            d.join("volumes").display().to_string(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--storage-driver".into(),
            "overlay".into(),
            "--runtime".into(),
            self.mini.display().to_string(),
            "--runtime-flag".into(),
            "debug".into(),
            "--runtime-flag".into(),
            format!("log={}", d.join("mini.log").display()),
        ];
        global.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = Command::new("podman");
        cmd.args(&global);
        (cmd, format!("podman {}", args.join(" ")))
    }

    /// `podman <private store flags> args…`, killed after [`TIMEOUT`].
    fn podman(&self, args: &[&str]) -> CtrOutput {
        let (cmd, line) = self.command(args);
        mini_e2e::run_command(cmd, line, None, TIMEOUT)
    }

    /// `podman run <RUN_OPTS> --cgroup-parent … --cidfile … <opts…> <image> <cmd…>`.
    fn run(&self, opts: &[&str], cmd: &[&str]) -> CtrOutput {
        let parent = format!("/{}", self.cgroup_parent);
        let n = self.runs.replace(self.runs.get() + 1);
        let cidfile = self.dir.join(format!("cid-{n}")).display().to_string();
        let mut args = vec!["run", "--cgroup-parent", &parent, "--cidfile", &cidfile];
        args.extend_from_slice(&RUN_OPTS);
        args.extend_from_slice(opts);
        args.push(&self.image);
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    /// `podman run -d`; returns the container's full id once podman reports it running.
    #[track_caller]
    fn run_detached(&self, cmd: &[&str]) -> String {
        let out = self.run(&["-d"], cmd);
        out.expect_success();
        let id = out.stdout.trim().to_string();
        assert_eq!(id.len(), 64, "no container id: {out}");
        assert_eq!(self.inspect(&id, "{{.State.Status}}"), "running");
        id
    }

    /// `podman inspect --format <format> <id>`, trimmed.
    #[track_caller]
    fn inspect(&self, id: &str, format: &str) -> String {
        let out = self.podman(&["inspect", "--format", format, id]);
        out.expect_success();
        out.stdout.trim().to_string()
    }

    /// `mini state <id>` in mini's root as JSON; panics unless it succeeds.
    #[track_caller]
    fn mini_state(&self, id: &str) -> serde_json::Value {
        mini_e2e::mini_state(&self.mini_root(), id, "podman")
    }

    /// Checks that mini keeps the running container `id` with the pid podman reports.
    #[track_caller]
    fn assert_mini_runs(&self, id: &str) {
        let pid: i64 = self.inspect(id, "{{.State.Pid}}").parse().expect("a pid");
        let state = self.mini_state(id);
        assert_eq!(state["status"], "running", "{state}");
        assert_eq!(state["pid"], pid, "mini's init pid is podman's: {state}");
    }

    /// Waits until the container's process runs the script's trap (it created `/ready`).
    #[track_caller]
    fn wait_ready(&self, id: &str) {
        let ready = wait_until(Duration::from_secs(10), || {
            self.podman(&["exec", id, "test", "-e", "/ready"]).success()
        });
        assert!(ready, "container {id} did not get ready");
    }

    /// Checks that `podman rm` left nothing of `id`: not listed, no state of mini's, no
    /// process, no cgroup.
    #[track_caller]
    fn assert_removed(&self, id: &str) {
        let out = self.podman(&["ps", "-a", "-q", "--no-trunc"]);
        out.expect_success();
        assert!(!out.stdout.contains(id), "{id} still listed: {out}");
        let state = self.mini_root().join(id);
        assert!(!state.exists(), "mini's state {} left", state.display());
        let mut left = Vec::new();
        let gone = wait_until(Duration::from_secs(10), || {
            left = leftovers::processes_of(id)
                .into_iter()
                .map(|p| format!("{} {}", p.pid, p.cmdline))
                .collect();
            left.extend(
                leftovers::hierarchies()
                    .into_iter()
                    .map(|h| h.join(&self.cgroup_parent).join(format!("libpod-{id}")))
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string()),
            );
            left.is_empty()
        });
        assert!(gone, "left of {id}:\n  {}", left.join("\n  "));
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if !self.image.is_empty() {
            let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
            let _ = self.podman(&["rmi", "-a", "-f"]);
        }
        for id in self.container_ids() {
            let _ = Command::new(&self.mini)
                .args(["delete", "--force", &id])
                .output();
        }
        let dir = self.dir.to_string_lossy().into_owned();
        wait_until(Duration::from_secs(5), || {
            let left: Vec<_> = leftovers::processes()
                .into_iter()
                .filter(|p| p.cmdline.contains(&dir))
                .collect();
            left.iter().for_each(|p| leftovers::kill(p.pid));
            left.is_empty()
        });
        leftovers::unmount_below(&self.dir);
        leftovers::remove_namespace_cgroups(&self.cgroup_parent);
        if leftovers::mounts_of(&self.dir, None).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("leaving {dir} in place: mounts remain below it");
        }
    }
}

#[test]
fn run_passes_output_and_exit_codes_through() {
    let p = Podman::new();
    for (cmd, want) in [
        (&["true"][..], 0),
        (&["false"][..], 1),
        (&["sh", "-c", "exit 42"][..], 42),
    ] {
        let out = p.run(&["--rm"], cmd);
        assert_eq!(out.code, Some(want), "{out}");
    }
    let out = p.run(
        &["--rm"],
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr\n"), "{out}");
    assert!(!out.stdout.contains("to-stderr"), "{out}");
    // mini created each container, and `--rm` left nothing of any.
    let ids = p.container_ids();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let log = p.mini_log();
    for id in &ids {
        assert!(
            log.contains(&format!("container {id}: init is pid")),
            "mini's log does not show {id} created:\n{log}"
        );
        p.assert_removed(id);
    }
}

#[test]
fn exec_stop_and_rm_of_a_detached_container() {
    let p = Podman::new();
    let id = p.run_detached(&[
        "sh",
        "-c",
        "trap 'exit 5' TERM; touch /ready; while :; do sleep 0.1; done",
    ]);
    p.wait_ready(&id);
    p.assert_mini_runs(&id);

    // exec: output, exit code, the container's pid namespace.
    let out = p.podman(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo exec-out; echo exec-err >&2; exit 7",
    ]);
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.stdout, "exec-out\n", "{out}");
    assert!(out.stderr.contains("exec-err\n"), "{out}");
    let out = p.podman(&["exec", &id, "cat", "/proc/1/cmdline"]);
    out.expect_success();
    assert!(out.stdout.starts_with("sh\0-c\0trap"), "{out}");

    // stop: SIGTERM reaches the init's trap, well within the timeout.
    let start = Instant::now();
    p.podman(&["stop", "-t", "20", &id]).expect_success();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "podman stop took {:?}",
        start.elapsed()
    );
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "5");

    p.podman(&["rm", &id]).expect_success();
    p.assert_removed(&id);
}

#[test]
fn stop_kills_an_init_that_ignores_sigterm_at_the_timeout_and_rm_force_removes() {
    let p = Podman::new();
    // A pid 1 `sleep` has no SIGTERM handler: the kernel drops the signal.
    let id = p.run_detached(&["sleep", "300"]);
    p.assert_mini_runs(&id);
    let start = Instant::now();
    let out = p.podman(&["stop", "-t", "2", &id]);
    out.expect_success();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "podman stop -t 2 took {took:?}: {out}"
    );
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "137");
    p.podman(&["rm", &id]).expect_success();
    p.assert_removed(&id);

    // rm --force of a running container.
    let id = p.run_detached(&["sleep", "300"]);
    p.assert_mini_runs(&id);
    p.podman(&["rm", "-f", "-t", "0", &id]).expect_success();
    p.assert_removed(&id);
}
