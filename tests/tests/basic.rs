//! The mini scenarios, each on containerd 1.6, 1.7 and 2.x, driven through `ctr` with
//! `--runtime io.containerd.mini.v2` (`MINI_E2E_RUNTIME` may name another runtime to check
//! the scenarios themselves against the stock runc shim).

use std::fs;
use std::time::Duration;

use mini_e2e::{Containerd, DEFAULT_CAP_EFF, Namespace, Version, leftovers, runtime_under_test};

mini_e2e::on_every_version!(
    stdout_stderr_and_exit_code_are_forwarded,
    stdin_reaches_the_container,
    killed_detached_task_stops_with_137_and_leaves_nothing,
    events_are_published_once_each_in_order,
    container_sees_its_own_process_proc_and_masked_paths,
    memory_limit_is_written_to_the_host_cgroup,
    bad_input_fails_naming_the_culprit_and_leaves_nothing,
    task_survives_containerd_restart,
    killing_the_shim_leaves_nothing_after_delete,
);

/// `ctr run --rm --runtime <mini> [opts] busybox <id> cmd…`.
fn run_rm(ns: &Namespace<'_>, opts: &[&str], id: &str, cmd: &[&str]) -> mini_e2e::CtrOutput {
    let mut all = vec!["--rm"];
    all.extend_from_slice(opts);
    ns.run(&runtime_under_test(), &all, id, cmd)
}

fn stdout_stderr_and_exit_code_are_forwarded(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("stdio");
    let id = ns.new_id("stdio");
    let out = run_rm(
        &ns,
        &[],
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.stdout.trim(), "out", "{out}");
    assert_eq!(out.stderr.trim(), "err", "{out}");
    ns.assert_nothing_left(&id);
}

fn stdin_reaches_the_container(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("stdin");
    let id = ns.new_id("stdin");
    let mut args = vec!["run", "--rm", "--runtime"];
    let rt = runtime_under_test();
    args.push(&rt);
    args.extend_from_slice(&[mini_e2e::IMAGE, &id, "sh", "-c", "read l; echo got-$l"]);
    let out = ns.ctr_stdin(&args, b"hello\n");
    out.expect_success();
    assert_eq!(out.stdout.trim(), "got-hello", "{out}");
    ns.assert_nothing_left(&id);
}

fn killed_detached_task_stops_with_137_and_leaves_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("kill");
    let id = ns.new_id("kill");
    ns.run_detached(&runtime_under_test(), &[], &id, &["sleep", "300"]);
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn events_are_published_once_each_in_order(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("events");
    let id = ns.new_id("events");
    let events = ns.subscribe_events();
    run_rm(&ns, &[], &id, &["true"]).expect_success();
    let topics_of = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| leftovers::contains_token(l, &id))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
            .map(String::from)
            .collect()
    };
    mini_e2e::wait_until(Duration::from_secs(15), || {
        topics_of(&events.stdout_so_far())
            .iter()
            .any(|t| t == "/tasks/delete")
    });
    // Late duplicates would show up after the delete: wait a little longer for them.
    std::thread::sleep(Duration::from_millis(500));
    let out = events.stop();
    assert_eq!(
        topics_of(&out.stdout),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "task events of {id}:\n{}",
        out.stdout
    );
    ns.assert_nothing_left(&id);
}

/// Runs `sh -c script` in a fresh container; returns its `key=value` output lines.
fn inside(ns: &Namespace<'_>, opts: &[&str], script: &str) -> Vec<(String, String)> {
    let id = ns.new_id("inside");
    let out = run_rm(ns, opts, &id, &["sh", "-c", script]);
    out.expect_success();
    ns.assert_nothing_left(&id);
    out.key_values()
}

fn container_sees_its_own_process_proc_and_masked_paths(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("inside");

    // The process itself is pid 1 of the container.
    let id = ns.new_id("cmdline");
    let out = run_rm(&ns, &[], &id, &["cat", "/proc/1/cmdline"]);
    out.expect_success();
    assert_eq!(out.stdout, "cat\0/proc/1/cmdline\0", "{out}");
    ns.assert_nothing_left(&id);

    let mut opts = vec![];
    if version.has_hostname_flag() {
        opts.extend_from_slice(&["--hostname", "mini-host"]);
    }
    let got = inside(
        &ns,
        &opts,
        "echo proc=$(awk '$2 == \"/proc\" {print $3}' /proc/mounts); \
         echo keys=$(wc -c < /proc/keys); \
         echo firmware=$(ls -A /sys/firmware | wc -l); \
         echo capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status); \
         echo hostname=$(hostname)",
    );
    let get = |k: &str| {
        got.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k}= in {got:?}"))
    };
    assert_eq!(get("proc"), "proc", "/proc must be a proc mount");
    assert_eq!(get("keys"), "0", "/proc/keys must be masked");
    assert_eq!(get("firmware"), "0", "/sys/firmware must be masked");
    assert_eq!(get("capeff"), DEFAULT_CAP_EFF, "default capability set");
    if version.has_hostname_flag() {
        assert_eq!(get("hostname"), "mini-host");
    }
}

fn memory_limit_is_written_to_the_host_cgroup(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("memory");
    let id = ns.new_id("memory");
    ns.run_detached(
        &runtime_under_test(),
        &["--memory-limit", "67108864"],
        &id,
        &["sleep", "300"],
    );
    let file = format!(
        "/sys/fs/cgroup/memory/{}/{id}/memory.limit_in_bytes",
        ns.name()
    );
    let limit = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    assert_eq!(limit.trim(), "67108864", "{file}");
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn bad_input_fails_naming_the_culprit_and_leaves_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("badinput");

    let id = ns.new_id("nobin");
    let out = run_rm(&ns, &[], &id, &["/nonexistent-binary"]);
    assert!(!out.success(), "running a missing binary must fail: {out}");
    assert!(
        out.stderr.contains("/nonexistent-binary") || out.stdout.contains("/nonexistent-binary"),
        "the error must name /nonexistent-binary: {out}"
    );
    ns.assert_nothing_left(&id);

    let id = ns.new_id("nosrc");
    let out = run_rm(
        &ns,
        &[
            "--mount",
            "type=bind,src=/nonexistent-src,dst=/data,options=rbind:ro",
        ],
        &id,
        &["true"],
    );
    assert!(
        !out.success(),
        "a bind mount of a missing source must fail: {out}"
    );
    assert!(
        out.stderr.contains("/nonexistent-src") || out.stdout.contains("/nonexistent-src"),
        "the error must name /nonexistent-src: {out}"
    );
    ns.assert_nothing_left(&id);
}

fn task_survives_containerd_restart(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("restart");
    let id = ns.new_id("restart");
    ns.run_detached(&runtime_under_test(), &[], &id, &["sleep", "300"]);
    cd.restart();
    assert!(
        ns.wait_status(&id, "RUNNING", Duration::from_secs(15)),
        "task {id} not RUNNING after the restart: {:?}\n{}",
        ns.task_status(&id),
        cd.log_tail(40)
    );
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn killing_the_shim_leaves_nothing_after_delete(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("shimkill");
    let id = ns.new_id("shimkill");
    ns.run_detached(&runtime_under_test(), &[], &id, &["sleep", "300"]);
    let (pid, _) = ns.task(&id).expect("task listed");
    let shim = leftovers::processes()
        .into_iter()
        .find(|p| p.pid == pid)
        .map(|p| p.ppid)
        .expect("the task's process exists");
    let comm = leftovers::processes()
        .into_iter()
        .find(|p| p.pid == shim)
        .map(|p| p.comm)
        .unwrap_or_default();
    assert!(
        comm.starts_with("containerd-shim"),
        "parent of the task is {comm:?}, not the shim"
    );
    leftovers::kill(shim);
    // Whatever these report, afterwards nothing of the container may remain.
    mini_e2e::wait_until(Duration::from_secs(10), || {
        ns.task_status(&id).as_deref() != Some("RUNNING")
    });
    let _ = ns.ctr(&["task", "ls"]);
    let _ = ns.ctr(&["task", "delete", &id]);
    ns.ctr(&["container", "delete", &id]).expect_success();
    if runtime_under_test() == mini_e2e::MINI {
        // mini's `delete` also removes the dead shim's socket.
        ns.assert_nothing_left(&id);
    } else {
        // The stock shim leaves its socket file when SIGKILLed.
        ns.assert_no_process_mount_or_cgroup(&id);
    }
}
