//! Exec (`ctr task exec`): a further process in a running container, with its own output,
//! exit code, env, cwd and user, in the container's namespaces and cgroup; its events once
//! each and in order; failures that name what was wrong and leave the container running;
//! execs ending with the init.

use std::time::Duration;

use mini_e2e::{Containerd, MINI, Namespace, Version, wait_until};

mini_e2e::on_every_version!(
    exec_output_and_exit_code_come_back,
    exec_gets_its_env_cwd_and_user,
    exec_gets_the_containers_seccomp_profile_and_its_own_capabilities,
    missing_binary_and_bad_cwd_fail_naming_them_and_the_container_keeps_running,
    twenty_concurrent_execs_get_their_own_output_and_exit_codes,
    exec_events_are_published_once_each_in_order,
    exec_after_the_init_exited_fails_cleanly,
    execs_are_killed_when_the_init_exits,
    exec_exits_and_output_come_before_the_inits_exit,
    exec_joins_the_containers_namespaces_and_cgroup,
    exec_process_holds_only_stdio,
    cwd_through_proc_self_fd_is_refused_and_creates_nothing,
);

/// A running mini container (`sleep 300`, or `cmd`).
fn running<'a>(ns: &Namespace<'a>, prefix: &str, cmd: &[&str]) -> String {
    let id = ns.new_id(prefix);
    ns.run_detached(MINI, &[], &id, cmd);
    id
}

/// `ctr task exec --exec-id <exec_id> <opts…> <id> <cmd…>`.
fn exec(
    ns: &Namespace<'_>,
    id: &str,
    exec_id: &str,
    opts: &[&str],
    cmd: &[&str],
) -> mini_e2e::CtrOutput {
    let mut args = vec!["task", "exec", "--exec-id", exec_id];
    args.extend_from_slice(opts);
    args.push(id);
    args.extend_from_slice(cmd);
    ns.ctr(&args)
}

/// The exit code ctr reports for an exec: ctr exits with it.
fn code(out: &mini_e2e::CtrOutput) -> Option<i32> {
    out.code
}

#[track_caller]
fn finish(ns: &Namespace<'_>, id: &str) {
    ns.kill_and_delete(id);
    ns.assert_nothing_left(id);
}

fn exec_output_and_exit_code_come_back(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-out");
    let id = running(&ns, "exec-out", &["sleep", "300"]);
    let out = exec(
        &ns,
        &id,
        "hello",
        &[],
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(code(&out), Some(7), "{out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err\n"), "{out}");
    let out = exec(&ns, &id, "true", &[], &["true"]);
    out.expect_success();
    // All of a large output arrives before the exit is reported (ctr 1.6 stops reading at
    // Wait's answer).
    let out = exec(&ns, &id, "seq", &[], &["seq", "1", "50000"]);
    out.expect_success();
    assert_eq!(out.stdout.lines().count(), 50000, "{}", out.stdout.len());
    assert!(out.stdout.ends_with("\n50000\n"));
    // Input reaches the process.
    let out = ns.ctr_stdin(
        &[
            "task",
            "exec",
            "--exec-id",
            "cat",
            &id,
            "sh",
            "-c",
            "read l; echo got $l",
        ],
        b"line\n",
    );
    assert_eq!(out.stdout, "got line\n", "{out}");
    finish(&ns, &id);
}

fn exec_gets_its_env_cwd_and_user(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-env");
    // ctr's exec takes the container's process (its env) with the args, cwd and user given.
    let id = ns.new_id("exec-env");
    ns.run_detached(MINI, &["--env", "GREETING=hi"], &id, &["sleep", "300"]);
    let out = exec(
        &ns,
        &id,
        "env",
        &["--cwd", "/tmp", "--user", "1000:2000"],
        &["sh", "-c", "echo $GREETING $(pwd) $(id -u) $(id -g)"],
    );
    out.expect_success();
    assert_eq!(out.stdout, "hi /tmp 1000 2000\n", "{out}");
    finish(&ns, &id);
}

/// The `Seccomp`, `NoNewPrivs`, `CapEff` and `CapBnd` lines of a `/proc/PID/status`.
fn confinement(status: &str) -> String {
    status
        .lines()
        .filter(|l| {
            ["Seccomp:", "NoNewPrivs:", "CapEff:", "CapBnd:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn exec_gets_the_containers_seccomp_profile_and_its_own_capabilities(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-sec");
    let id = ns.new_id("exec-sec");
    ns.run_detached(MINI, &["--seccomp"], &id, &["sleep", "300"]);
    let (pid, _) = ns.task(&id).expect("listed");
    let init = confinement(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    assert!(
        init.contains("Seccomp:\t2"),
        "the init runs under the profile: {init}"
    );
    let out = exec(&ns, &id, "root", &[], &["cat", "/proc/self/status"]);
    out.expect_success();
    assert_eq!(
        confinement(&out.stdout),
        init,
        "an exec as root is confined as the init"
    );
    let out = exec(
        &ns,
        &id,
        "user",
        &["--user", "1000"],
        &["cat", "/proc/self/status"],
    );
    out.expect_success();
    let user = confinement(&out.stdout);
    assert!(user.contains("Seccomp:\t2"), "{user}");
    assert!(user.contains("CapEff:\t0000000000000000"), "{user}");
    finish(&ns, &id);
}

/// The container's init is still the same process and running.
#[track_caller]
fn still_running(ns: &Namespace<'_>, id: &str, pid: i32) {
    assert_eq!(
        ns.task(id),
        Some((pid, "RUNNING".to_string())),
        "container {id} must be untouched"
    );
}

fn missing_binary_and_bad_cwd_fail_naming_them_and_the_container_keeps_running(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-fail");
    let id = running(&ns, "exec-fail", &["sleep", "300"]);
    let (pid, _) = ns.task(&id).expect("listed");
    let out = exec(&ns, &id, "missing", &[], &["/no/such-binary"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("/no/such-binary"), "{out}");
    still_running(&ns, &id, pid);
    let out = exec(&ns, &id, "nopath", &[], &["no-such-program"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("no-such-program"), "{out}");
    let out = exec(&ns, &id, "badcwd", &["--cwd", "/no/such/dir"], &["true"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("/no/such/dir"), "{out}");
    assert!(out.stderr.contains("process.cwd"), "{out}");
    still_running(&ns, &id, pid);
    // And an exec still works afterwards.
    exec(&ns, &id, "after", &[], &["true"]).expect_success();
    finish(&ns, &id);
}

fn twenty_concurrent_execs_get_their_own_output_and_exit_codes(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-20");
    let id = running(&ns, "exec-20", &["sleep", "300"]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (ns, id) = (&ns, &id);
                s.spawn(move || {
                    let script = format!("echo exec-{i}; sleep 0.2; exit {}", i + 1);
                    let out = exec(ns, id, &format!("e{i}"), &[], &["sh", "-c", &script]);
                    (i, out)
                })
            })
            .collect();
        for h in handles {
            let (i, out) = h.join().unwrap();
            assert_eq!(out.stdout, format!("exec-{i}\n"), "exec {i}: {out}");
            assert_eq!(code(&out), Some(i + 1), "exec {i}: {out}");
        }
    });
    finish(&ns, &id);
}

fn exec_events_are_published_once_each_in_order(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-ev");
    let id = running(&ns, "exec-ev", &["sleep", "300"]);
    let events = ns.subscribe_events();
    let out = exec(&ns, &id, "probe", &[], &["sh", "-c", "exit 3"]);
    assert_eq!(code(&out), Some(3), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || events
            .stdout_so_far()
            .contains("/tasks/exit")),
        "no exit event: {}",
        events.stdout_so_far()
    );
    std::thread::sleep(Duration::from_millis(500));
    let text = events.stop().stdout;
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("probe"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"],
        "{text}"
    );
    let exit = text
        .lines()
        .find(|l| l.contains("/tasks/exit"))
        .unwrap_or_default();
    assert!(exit.contains("\"exit_status\":3"), "{exit}");
    finish(&ns, &id);
}

fn exec_after_the_init_exited_fails_cleanly(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-late");
    let id = running(&ns, "exec-late", &["sleep", "300"]);
    ns.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .expect_success();
    assert!(ns.wait_status(&id, "STOPPED", Duration::from_secs(10)));
    let out = exec(&ns, &id, "late", &[], &["true"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("has exited: cannot exec into it"),
        "{out}"
    );
    // containerd before 2.x prints the code with the message.
    if version != Version::V2 {
        assert!(out.stderr.contains("failed precondition"), "{out}");
    }
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

fn execs_are_killed_when_the_init_exits(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-kill");
    let id = running(&ns, "exec-kill", &["sleep", "300"]);
    let events = ns.subscribe_events();
    let bg = ns.spawn_ctr(&["task", "exec", "--exec-id", "long", &id, "sleep", "300"]);
    assert!(
        wait_until(Duration::from_secs(10), || events
            .stdout_so_far()
            .contains("/tasks/exec-started")),
        "exec never started: {}",
        events.stdout_so_far()
    );
    // `ctr task ps` names the exec's process by its exec id (as with the stock shim).
    let ps = ns.ctr(&["task", "ps", &id]);
    ps.expect_success();
    assert!(
        ps.stdout.lines().any(|l| l.contains("long")),
        "the exec id in ctr task ps: {ps}"
    );
    ns.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .expect_success();
    let out = bg.wait(Duration::from_secs(20));
    assert_eq!(code(&out), Some(137), "the exec must be killed: {out}");
    assert!(
        wait_until(Duration::from_secs(10), || events
            .stdout_so_far()
            .matches("/tasks/exit")
            .count()
            >= 2),
        "{}",
        events.stdout_so_far()
    );
    let text = events.stop().stdout;
    let exec_exits = text
        .lines()
        .filter(|l| l.contains("/tasks/exit") && l.contains("\"long\""))
        .count();
    assert_eq!(exec_exits, 1, "{text}");
    assert!(ns.wait_status(&id, "STOPPED", Duration::from_secs(10)));
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

/// The `/tasks/exit` lines of `ctr events` output, in order.
fn exit_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("/tasks/exit")).collect()
}

fn exec_exits_and_output_come_before_the_inits_exit(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-order");
    // In the host's pid namespace the kernel does not end the execs with the init (it does,
    // before the init's own exit, in a pid namespace of the container's own): the shim does.
    let id = ns.new_id("exec-order");
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    ns.run_detached(MINI, &["--with-ns", &host_pid_ns], &id, &["sleep", "300"]);
    let events = ns.subscribe_events();
    // Several, so that without the wait some exec's exit loses the race to the init's.
    const EXECS: usize = 4;
    let execs: Vec<_> = (0..EXECS)
        .map(|i| {
            let exec_id = format!("printer{i}");
            let script = format!("echo before-{i}; sleep 100");
            let bg = ns.spawn_ctr(&[
                "task",
                "exec",
                "--exec-id",
                &exec_id,
                &id,
                "sh",
                "-c",
                &script,
            ]);
            (exec_id, bg)
        })
        .collect();
    for (i, (_, bg)) in execs.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(10), || bg
                .stdout_so_far()
                .contains(&format!("before-{i}"))),
            "exec {i} never printed: {}",
            bg.stdout_so_far()
        );
    }
    ns.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .expect_success();
    assert!(
        wait_until(Duration::from_secs(20), || exit_lines(
            &events.stdout_so_far()
        )
        .len()
            > EXECS),
        "{}",
        events.stdout_so_far()
    );
    for (i, (_, bg)) in execs.into_iter().enumerate() {
        let out = bg.wait(Duration::from_secs(20));
        assert_eq!(
            out.stdout,
            format!("before-{i}\n"),
            "all of exec {i}'s output: {out}"
        );
    }
    let text = events.stop().stdout;
    let exits = exit_lines(&text);
    assert_eq!(exits.len(), EXECS + 1, "{text}");
    assert!(
        exits[EXECS].contains(&format!("\"id\":\"{id}\"")),
        "the execs' exits come before the init's: {text}"
    );
    // Delete right after the init's exit finds the execs ended and stopped.
    ns.ctr(&["task", "delete", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

const NAMESPACES: [&str; 8] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];

fn namespace_inodes(script_prefix: &str) -> String {
    let mut s = String::from(script_prefix);
    for n in NAMESPACES {
        s.push_str(&format!("echo {n} $(readlink /proc/self/ns/{n}); "));
    }
    s.push_str("echo cgroup-file; cat /proc/self/cgroup");
    s
}

fn exec_joins_the_containers_namespaces_and_cgroup(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-ns");
    // The init writes what it sees to a file, then sleeps.
    let script = format!("({}) > /tmp/init-view; sleep 300", namespace_inodes(""));
    let id = running(&ns, "exec-ns", &["sh", "-c", &script]);
    assert!(wait_until(Duration::from_secs(10), || {
        exec(
            &ns,
            &id,
            "ready",
            &[],
            &["sh", "-c", "grep -q cgroup-file /tmp/init-view"],
        )
        .success()
    }));
    let init_view = exec(&ns, &id, "read", &[], &["cat", "/tmp/init-view"]);
    init_view.expect_success();
    let exec_view = exec(&ns, &id, "view", &[], &["sh", "-c", &namespace_inodes("")]);
    exec_view.expect_success();
    assert_eq!(exec_view.stdout, init_view.stdout);
    // And differ from the host's where the container has its own.
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_pid = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert!(!exec_view.stdout.contains(&host_mnt.display().to_string()));
    assert!(!exec_view.stdout.contains(&host_pid.display().to_string()));
    finish(&ns, &id);
}

fn exec_process_holds_only_stdio(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-fds");
    let id = running(&ns, "exec-fds", &["sleep", "300"]);
    // ls runs as a child: its own fds are those of the exec'd shell, plus its directory.
    let out = exec(&ns, &id, "fds", &[], &["sh", "-c", "exec ls /proc/self/fd"]);
    out.expect_success();
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "ls's own directory is 3: {out}");
    finish(&ns, &id);
}

fn cwd_through_proc_self_fd_is_refused_and_creates_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("exec-cwd");
    let id = running(&ns, "exec-cwd", &["sleep", "300"]);
    let (pid, _) = ns.task(&id).expect("listed");
    let marker = format!("mini-exec-cwd-{}", std::process::id());
    for n in 3..=20 {
        for cwd in [
            format!("/proc/self/fd/{n}"),
            format!("/proc/self/fd/{n}/../../.."),
            format!("/proc/self/fd/{n}/../../../../../../tmp"),
        ] {
            let out = exec(
                &ns,
                &id,
                &format!("cwd{n}"),
                &["--cwd", &cwd],
                &["sh", "-c", &format!("touch {marker}; pwd")],
            );
            assert!(!out.success(), "cwd {cwd}: {out}");
            assert!(out.stderr.contains("process.cwd"), "cwd {cwd}: {out}");
        }
    }
    still_running(&ns, &id, pid);
    let found = std::process::Command::new("find")
        .args(["/", "-xdev", "-name", &marker])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout),
        "",
        "created on the host"
    );
    finish(&ns, &id);
}
