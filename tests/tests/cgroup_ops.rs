//! The container's cgroup as a whole: Pause/Resume (the freezer), Update (limits changed in
//! place), Stats (`ctr task metrics`, containerd's cgroups metrics) and the OOM event.
//!
//! This host is hybrid (v1 controllers): these scenarios exercise the v1 paths; the v2 ones
//! (cgroup.freeze, memory.events, v2 metrics) are covered by fixture tests in runtime-core
//! and the shim.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim_protos::cgroups::metrics::Metrics;
use mini_e2e::grpc::Grpc;
use mini_e2e::{Containerd, MINI, Namespace, Version, wait_until};
use protobuf::Message;

mini_e2e::on_every_version!(
    pause_and_resume_freeze_and_thaw_every_process_with_one_event_each,
    a_paused_container_can_be_killed_and_deleted,
    update_changes_memory_cpu_and_pids_and_a_refused_value_keeps_the_old_limits,
    metrics_report_the_cgroups_memory_cpu_and_pids,
    an_oom_kill_is_published_before_the_exit_137,
    an_oom_kill_of_another_process_is_published_while_the_container_runs,
);

/// The container's directory in the v1 hierarchy of `controller` (ctr's default cgroups
/// path is `/<namespace>/<id>`).
fn cgroup_dir(ns: &Namespace<'_>, controller: &str, id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(ns.name())
        .join(id)
}

use mini_e2e::read_trimmed as read;

/// The processes of the container, from its pids cgroup.
fn processes(ns: &Namespace<'_>, id: &str) -> Vec<i32> {
    read(&cgroup_dir(ns, "pids", id), "cgroup.procs")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The state letter of `/proc/<pid>/stat` (`S`, `R`, `D`…).
fn proc_state(pid: i32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

/// Lines of `ctr events` output naming `topic` for container `id`.
fn events_of(events: &str, topic: &str, id: &str) -> usize {
    events
        .lines()
        .filter(|l| l.contains(&format!(" {topic} ")) && l.contains(id))
        .count()
}

/// A container with two processes (a shell and its `sleep`), running.
fn run_two_processes(ns: &Namespace<'_>, id: &str) {
    ns.run_detached(MINI, &[], id, &["sh", "-c", "sleep 1000 & wait"]);
    assert!(
        wait_until(Duration::from_secs(10), || processes(ns, id).len() >= 2),
        "the container's second process did not start: {:?}",
        processes(ns, id)
    );
}

fn pause_and_resume_freeze_and_thaw_every_process_with_one_event_each(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("pause");
    let id = ns.new_id("pause");
    let events = ns.subscribe_events();
    run_two_processes(&ns, &id);
    let freezer = cgroup_dir(&ns, "freezer", &id);

    ns.ctr(&["task", "pause", &id]).expect_success();
    assert_eq!(ns.task_status(&id).as_deref(), Some("PAUSED"));
    assert_eq!(read(&freezer, "freezer.state"), "FROZEN");
    let pids = processes(&ns, &id);
    assert!(pids.len() >= 2, "{pids:?}");
    for &pid in &pids {
        assert_eq!(proc_state(pid), 'D', "process {pid} must be frozen");
    }
    // Pausing twice is refused: the container is not running.
    assert!(!ns.ctr(&["task", "pause", &id]).success());

    ns.ctr(&["task", "resume", &id]).expect_success();
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));
    assert_eq!(read(&freezer, "freezer.state"), "THAWED");
    for &pid in &pids {
        assert_ne!(proc_state(pid), 'D', "process {pid} must run again");
    }
    assert!(!ns.ctr(&["task", "resume", &id]).success());

    ns.kill_and_delete(&id);
    let out = events.stop().stdout;
    assert_eq!(events_of(&out, "/tasks/paused", &id), 1, "{out}");
    assert_eq!(events_of(&out, "/tasks/resumed", &id), 1, "{out}");
    ns.assert_nothing_left(&id);
}

fn a_paused_container_can_be_killed_and_deleted(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("pkill");

    // Kill of the init alone (SIGKILL): signalled, then thawed, so it dies.
    let id = ns.new_id("pkill");
    run_two_processes(&ns, &id);
    ns.ctr(&["task", "pause", &id]).expect_success();
    // A paused task cannot be deleted (ctr refuses it itself, seeing PAUSED)…
    let refused = ns.ctr(&["task", "delete", &id]);
    assert!(
        !refused.success() && refused.stderr.contains("paused"),
        "{refused}"
    );
    // …and the shim refuses it too when asked directly, at once, rather than waiting for an
    // exit that cannot come.
    let grpc = Grpc::connect(&cd.address(), ns.name());
    let err = grpc
        .delete_task(&id)
        .expect_err("Delete of a paused task must be refused");
    assert!(err.message().contains("is paused"), "{err:?}");
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);

    // …and `ctr task delete --force` of a paused task kills it (with --all) and deletes it.
    let id = ns.new_id("pkill");
    run_two_processes(&ns, &id);
    ns.ctr(&["task", "pause", &id]).expect_success();
    ns.ctr(&["task", "delete", "--force", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

fn update_changes_memory_cpu_and_pids_and_a_refused_value_keeps_the_old_limits(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("update");
    let id = ns.new_id("update");
    ns.run_detached(
        MINI,
        &["--memory-limit", "67108864"],
        &id,
        &["sleep", "1000"],
    );
    let grpc = Grpc::connect(&cd.address(), ns.name());
    let memory = cgroup_dir(&ns, "memory", &id);
    let cpu = cgroup_dir(&ns, "cpu", &id);
    let cpuset = cgroup_dir(&ns, "cpuset", &id);
    let pids = cgroup_dir(&ns, "pids", &id);
    assert_eq!(read(&memory, "memory.limit_in_bytes"), "67108864");

    grpc.update_resources(
        &id,
        r#"{"memory": {"limit": 134217728, "reservation": 33554432, "swap": 268435456},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 77}}"#,
    )
    .unwrap_or_else(|e| panic!("update: {e:?}"));
    assert_eq!(read(&memory, "memory.limit_in_bytes"), "134217728");
    assert_eq!(read(&memory, "memory.soft_limit_in_bytes"), "33554432");
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(read(&memory, "memory.memsw.limit_in_bytes"), "268435456");
    }
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&pids, "pids.max"), "77");

    // CPU 999 does not exist: refused naming the field, after memory and shares would have
    // gone in; every limit stays as it was.
    let err = grpc
        .update_resources(
            &id,
            r#"{"memory": {"limit": 100663296}, "cpu": {"shares": 1024, "cpus": "999"},
                "pids": {"limit": 5}}"#,
        )
        .expect_err("cpuset cpus 999 must be refused");
    assert!(
        err.message().contains("linux.resources.cpu.cpus"),
        "the error must name the field: {err:?}"
    );
    assert_eq!(read(&memory, "memory.limit_in_bytes"), "134217728");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&pids, "pids.max"), "77");

    // Not JSON resources at all: refused, the container untouched.
    let err = grpc
        .update_resources(&id, "not json")
        .expect_err("garbage resources must be refused");
    assert!(err.message().contains("LinuxResources"), "{err:?}");
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));

    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn metrics_report_the_cgroups_memory_cpu_and_pids(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("metrics");
    let id = ns.new_id("metrics");
    ns.run_detached(
        MINI,
        &["--memory-limit", "67108864"],
        &id,
        &["sh", "-c", "sleep 1000 & wait"],
    );
    assert!(wait_until(Duration::from_secs(10), || processes(&ns, &id)
        .len()
        >= 2));

    let grpc = Grpc::connect(&cd.address(), ns.name());
    let (type_url, value) = grpc
        .metrics(&id)
        .unwrap_or_else(|e| panic!("metrics: {e:?}"));
    assert_eq!(type_url, "io.containerd.cgroups.v1.Metrics");
    let m = Metrics::parse_from_bytes(&value).expect("v1 Metrics");
    let memory = cgroup_dir(&ns, "memory", &id);
    assert_eq!(m.memory.usage.limit, 67108864);
    assert!(m.memory.usage.usage > 0, "memory usage: {:?}", m.memory);
    assert!(
        m.memory.usage.usage <= read(&memory, "memory.max_usage_in_bytes").parse().unwrap(),
        "usage within the cgroup's peak"
    );
    assert_eq!(m.pids.current, 2, "{:?}", m.pids);
    assert!(m.cpu.usage.total > 0, "cpu: {:?}", m.cpu);
    assert!(!m.cpu.usage.per_cpu.is_empty());
    assert!(m.blkio.is_some());

    // What `ctr task metrics` prints from the same message.
    let out = ns.ctr(&["task", "metrics", &id]);
    out.expect_success();
    assert!(out.stdout.contains("memory.usage_in_bytes"), "{out}");
    assert!(out.stdout.contains("pids.current"), "{out}");

    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn an_oom_kill_is_published_before_the_exit_137(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("oom");
    let id = ns.new_id("oom");
    let events = ns.subscribe_events();
    // busybox tail keeps the current line in memory: /dev/zero has no newline, so it grows
    // until the kernel kills it at the 32 MiB limit.
    ns.run_mini(
        &["-d", "--memory-limit", "33554432"],
        &id,
        &["tail", "/dev/zero"],
    )
    .expect_success();
    assert!(
        ns.wait_status(&id, "STOPPED", Duration::from_secs(30)),
        "the OOM killer did not end {id}: {:?}",
        ns.task_status(&id)
    );
    let del = ns.ctr(&["task", "delete", &id]);
    del.expect_success();
    assert!(del.stderr.contains("exit code 137"), "{del}");
    ns.ctr(&["container", "delete", &id]).expect_success();
    assert!(wait_until(Duration::from_secs(5), || {
        events_of(&events.stdout_so_far(), "/tasks/delete", &id) == 1
    }));
    let out = events.stop().stdout;
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&id)).collect();
    let position = |topic: &str| {
        lines
            .iter()
            .position(|l| l.contains(&format!(" {topic} ")))
            .unwrap_or_else(|| panic!("no {topic} event for {id}:\n{out}"))
    };
    assert_eq!(events_of(&out, "/tasks/oom", &id), 1, "{out}");
    assert!(
        position("/tasks/oom") < position("/tasks/exit"),
        "/tasks/oom must come before /tasks/exit:\n{out}"
    );
    ns.assert_nothing_left(&id);
}

fn an_oom_kill_of_another_process_is_published_while_the_container_runs(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("oomchild");
    let id = ns.new_id("oomchild");
    let events = ns.subscribe_events();
    // The OOM killer picks the biggest process, tail; the shell lives on.
    ns.run_detached(
        MINI,
        &["--memory-limit", "33554432"],
        &id,
        &["sh", "-c", "tail /dev/zero; sleep 1000"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || events_of(
            &events.stdout_so_far(),
            "/tasks/oom",
            &id
        ) == 1),
        "no /tasks/oom while {id} runs:\n{}",
        events.stdout_so_far()
    );
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));
    ns.kill_and_delete(&id);
    let out = events.stop().stdout;
    assert_eq!(events_of(&out, "/tasks/oom", &id), 1, "{out}");
    ns.assert_nothing_left(&id);
}
