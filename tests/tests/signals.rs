//! Kill with any signal 1–64, real-time ones included (systemd images stop with
//! SIGRTMIN+3), by name and by number, to the init and with `--all`; a process killed by a
//! real-time signal reports 128 + n; anything outside 1–64 is refused naming the signal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mini_e2e::grpc::Grpc;
use mini_e2e::{Containerd, MINI, Namespace, Version, wait_until};

mini_e2e::on_every_version!(
    real_time_signals_by_name_and_number_reach_an_init_that_traps_them,
    kill_all_delivers_a_real_time_signal_to_every_process,
    a_real_time_signal_that_kills_the_init_is_reported_as_128_plus_n,
    signals_outside_1_to_64_are_refused_naming_the_signal,
);

/// Runs `script` detached under `sh -c`, its output in a log file; waits until the script
/// printed `ready` (its traps are set then).
fn run_until_ready(ns: &Namespace<'_>, id: &str, opts: &[&str], script: &str) -> PathBuf {
    let log = ns.daemon().dir().join(format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    let mut all = vec!["--log-uri", &uri];
    all.extend_from_slice(opts);
    ns.run_detached(MINI, &all, id, &["sh", "-c", script]);
    assert!(
        wait_until(Duration::from_secs(10), || read(&log).contains("ready")),
        "{id} never printed ready: {:?}",
        read(&log)
    );
    log
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits for the task to stop, deletes it and returns the exit code `ctr task delete`
/// reports (it warns about a non-zero one).
#[track_caller]
fn delete_and_exit_code(ns: &Namespace<'_>, id: &str) -> u32 {
    assert!(
        ns.wait_status(id, "STOPPED", Duration::from_secs(10)),
        "task {id} did not stop: {:?}",
        ns.task_status(id)
    );
    let del = ns.ctr(&["task", "delete", id]);
    del.expect_success();
    ns.ctr(&["container", "delete", id]).expect_success();
    let code = del
        .stderr
        .split("exit code ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ns.assert_nothing_left(id);
    code
}

fn real_time_signals_by_name_and_number_reach_an_init_that_traps_them(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("rtsig");
    // ctr turns the name into its number (SIGRTMIN is 34 in glibc's numbering).
    for (arg, number, code) in [("SIGRTMIN+3", 37, 3), ("64", 64, 4), ("SIGUSR1", 10, 5)] {
        let id = ns.new_id("rtsig");
        run_until_ready(
            &ns,
            &id,
            &[],
            &format!("trap 'exit {code}' {number}; echo ready; while :; do sleep 0.1; done"),
        );
        ns.ctr(&["task", "kill", "-s", arg, &id]).expect_success();
        assert_eq!(
            delete_and_exit_code(&ns, &id),
            code,
            "the init's trap for signal {number} ({arg}) must have run"
        );
    }
}

fn kill_all_delivers_a_real_time_signal_to_every_process(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("rtall");
    let id = ns.new_id("rtall");
    // A child that exits 6 on SIGRTMIN+6 (40); the init, on the same signal, waits for the
    // child and exits with its code: only a signal to both ends the task with 6.
    let script = "sh -c \"trap 'exit 6' 40; while :; do sleep 0.1; done\" & child=$!; \
                  trap 'wait $child; exit $?' 40; sleep 0.5; echo ready; \
                  while :; do sleep 0.1; done";
    run_until_ready(&ns, &id, &[], script);
    ns.ctr(&["task", "kill", "--all", "-s", "SIGRTMIN+6", &id])
        .expect_success();
    assert_eq!(delete_and_exit_code(&ns, &id), 6);
}

fn a_real_time_signal_that_kills_the_init_is_reported_as_128_plus_n(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("rtdie");
    let id = ns.new_id("rtdie");
    // In the host's pid namespace the init is no pid 1: a signal it does not handle kills
    // it, and the shim must reap an exit nix cannot name.
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    run_until_ready(
        &ns,
        &id,
        &["--with-ns", &host_pid_ns],
        "echo ready; exec sleep 300",
    );
    ns.ctr(&["task", "kill", "-s", "SIGRTMIN+6", &id])
        .expect_success();
    assert_eq!(delete_and_exit_code(&ns, &id), 128 + 40);
}

fn signals_outside_1_to_64_are_refused_naming_the_signal(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("badsig");
    let id = ns.new_id("badsig");
    ns.run_detached(MINI, &[], &id, &["sleep", "300"]);
    let out = ns.ctr(&["task", "kill", "-s", "65", &id]);
    assert!(!out.success(), "signal 65 must be refused: {out}");
    assert!(
        out.stderr.contains("signal 65 is not valid"),
        "the error must name the signal: {out}"
    );
    // ctr itself refuses 0: containerd's API does not.
    let grpc = Grpc::connect(&cd.address(), ns.name());
    for signal in [0, 65, 4242] {
        match grpc.kill(&id, signal) {
            Err(status) => assert!(
                status
                    .message()
                    .contains(&format!("signal {signal} is not valid")),
                "Kill {signal}: {status:?}"
            ),
            Ok(()) => panic!("Kill with signal {signal} must be refused"),
        }
    }
    assert_eq!(ns.task_status(&id).as_deref(), Some("RUNNING"));
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}
