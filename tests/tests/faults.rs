//! Faults, on containerd 1.6, 1.7 and 2.x: the shim SIGKILLed at each stage of building and
//! starting a container, and containerd restarted under 50 running containers.
//!
//! After a killed shim nothing of the container may remain (process — stopped ones
//! included —, mount, cgroup, bundle, socket, fifo) and its id must work again. The stages
//! are held still with SIGSTOP so that the kill lands where it should:
//!
//! - the setup helper (`mini-init`, the shim's child that creates the cgroup and clones the
//!   init) stopped: Create waits for the init's pid;
//! - the init stopped while it builds the container: Create waits for "ready";
//! - Create done, Start not called: the init is blocked before exec. ctr cannot create a
//!   task without starting it, except that `ctr run -d --pid-file` writes the pid file
//!   between the two calls and gives up when it cannot: a pid file in a missing directory
//!   leaves the task created;
//! - the created init stopped and Start called on the shim's Task API: Start waits for the
//!   init's exec.
//!
//! These run mini whatever `MINI_E2E_RUNTIME` says: the stages are mini's own processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{StartRequest, StartResponse};
use containerd_shim_protos::shim_async::Client;
use mini_e2e::{Background, Containerd, MINI, Namespace, Version, leftovers, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mini_e2e::on_every_version!(
    shim_killed_while_the_setup_helper_runs_leaves_nothing,
    shim_killed_while_the_init_builds_the_container_leaves_nothing,
    containerd_killed_during_create_leaves_nothing,
    shim_killed_after_create_leaves_nothing,
    a_created_task_outlives_the_shim_thread_that_built_it,
    shim_killed_during_start_leaves_nothing,
    fifty_containers_survive_a_containerd_restart_and_each_exit_is_delivered_once,
);

/// How often a test tries to catch a short-lived setup process before it gives up.
const ATTEMPTS: usize = 8;

/// A process of the container's setup, as the test finds it below the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The setup helper: runs in the host's pid namespace.
    Helper,
    /// The container init: the helper clones it into the container's new pid namespace.
    Init,
}

/// The live shim daemon of container `id` (not its `start` or `delete` invocations).
fn shim_of(id: &str) -> Option<i32> {
    leftovers::processes()
        .into_iter()
        .find(|p| {
            p.comm.starts_with("containerd-shim")
                && leftovers::contains_token(&p.cmdline, id)
                && !matches!(
                    p.cmdline.split_whitespace().last(),
                    Some("start" | "delete")
                )
        })
        .map(|p| p.pid)
}

/// Children of `pid`, over all its threads (the shim forks setup helpers from worker
/// threads).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Which setup process `pid` is, if it is one: argv[0] `mini-init`; the init's pid
/// namespace is nested (two NSpid entries).
fn stage_of(pid: i32) -> Option<Stage> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if cmdline.split(|&b| b == 0).next()? != b"mini-init" {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let levels = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .count();
    Some(if levels > 1 {
        Stage::Init
    } else {
        Stage::Helper
    })
}

/// The one-letter state of `pid` (`T` when stopped), if it exists.
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.chars().next()
}

/// SIGSTOPs `pid` and waits until the kernel shows it stopped; false if it is gone.
fn stop(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_err() {
        return false;
    }
    wait_until(Duration::from_secs(2), || {
        matches!(state_of(pid), Some('T') | None)
    }) && state_of(pid) == Some('T')
}

/// While `ctr` (a `ctr run -d` of `id`) runs, watches the shim's children for the setup
/// process of `stage` and SIGSTOPs it. Returns `(shim, stopped)`, or None when ctr finished
/// first (the process came and went between two looks).
fn catch_and_stop(ctr: &mut Background, id: &str, stage: Stage) -> Option<(i32, i32)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let shim = loop {
        if let Some(shim) = shim_of(id) {
            break shim;
        }
        if ctr.finished() || Instant::now() > deadline {
            return None;
        }
    };
    while Instant::now() < deadline {
        for child in children_of(shim) {
            if stage_of(child) == Some(stage) && stop(child) {
                return Some((shim, child));
            }
        }
        if ctr.finished() {
            return None;
        }
    }
    None
}

/// Removes container `id` whatever state a missed attempt left it in.
fn force_remove(ns: &Namespace<'_>, id: &str) {
    let _ = ns.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    ns.wait_status(id, "STOPPED", Duration::from_secs(10));
    let _ = ns.ctr(&["task", "delete", "-f", id]);
    let _ = ns.ctr(&["container", "delete", id]);
    ns.assert_nothing_left(id);
}

/// What the test kills while Create is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    /// The container's shim.
    Shim,
    /// containerd (then started again; the setup process is let go first).
    Containerd,
}

/// Kills `victim` while the Create of a container is held at `stage`, then checks the
/// aftermath.
fn killed_during_create(version: Version, stage: Stage, victim: Victim, tag: &str) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace(tag);
    for attempt in 1..=ATTEMPTS {
        let id = ns.new_id(tag);
        let mut ctr = ns.spawn_mini_sleep(&id);
        let caught = catch_and_stop(&mut ctr, &id, stage);
        // Create must still be in flight: containerd lists a task only once it returned.
        let in_create = caught.is_some() && ns.task(&id).is_none();
        let Some((shim, stopped)) = caught.filter(|_| in_create) else {
            eprintln!("attempt {attempt}: missed the {stage:?} of {id}; again");
            if let Some((_, pid)) = caught {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            eprintln!("{}", ctr.wait(Duration::from_secs(30)));
            force_remove(&ns, &id);
            continue;
        };
        match victim {
            Victim::Shim => leftovers::kill(shim),
            Victim::Containerd => cd.crash(),
        }
        let out = ctr.wait(Duration::from_secs(30));
        assert!(
            !out.success(),
            "ctr run must fail when {victim:?} dies during Create: {out}"
        );
        if victim == Victim::Containerd {
            // Setup completes with no one waiting for it; the restarted daemon may find the
            // task (created) through its bundle: deleting it must clean up everything.
            let _ = kill(Pid::from_raw(stopped), Signal::SIGCONT);
            cd.start_again();
            if ns.task(&id).is_some() {
                let _ = ns.ctr(&["task", "delete", "-f", &id]);
            }
        }
        assert_aftermath(&ns, &id, &[stopped], victim == Victim::Shim);
        return;
    }
    panic!("could not catch the {stage:?} of a container in {ATTEMPTS} attempts");
}

/// What must hold once the shim of `id` died: containerd drops the task, nothing of the
/// container remains — `held`, the setup processes the test held or stopped, included —,
/// and the id runs a new container.
/// `ctr_cleaned`: whether ctr could still remove its stdio fifos (it cannot when it gave up
/// with the task created, or never learnt that the task went away).
#[track_caller]
fn assert_aftermath(ns: &Namespace<'_>, id: &str, held: &[i32], ctr_cleaned: bool) {
    // containerd sees the shim's connection close and runs the shim's `delete`.
    let gone = wait_until(Duration::from_secs(15), || {
        ns.task_status(id).is_none_or(|s| s == "STOPPED")
    });
    assert!(
        gone,
        "containerd still lists {id} as {:?} after its shim died",
        ns.task_status(id)
    );
    let _ = ns.ctr(&["task", "delete", id]);
    ns.ctr(&["container", "delete", id]).expect_success();
    ns.assert_nothing_left(id);
    // Zombies count as gone: orphans are reaped late here.
    for &pid in held {
        let state = state_of(pid);
        assert!(
            matches!(state, None | Some('Z' | 'X')),
            "setup process {pid} of {id} still exists (state {state:?})"
        );
    }
    if ctr_cleaned {
        ns.assert_no_client_fifos(id);
    } else {
        leftovers::remove_client_fifos(id);
    }

    let out = ns.run_mini(&["--rm"], id, &["sh", "-c", "echo reused"]);
    out.expect_success();
    assert_eq!(out.stdout.trim(), "reused", "{out}");
    ns.assert_nothing_left(id);
    ns.assert_no_client_fifos(id);
}

fn shim_killed_while_the_setup_helper_runs_leaves_nothing(version: Version) {
    killed_during_create(version, Stage::Helper, Victim::Shim, "fhelper");
}

fn containerd_killed_during_create_leaves_nothing(version: Version) {
    killed_during_create(version, Stage::Init, Victim::Containerd, "fcdkill");
}

fn shim_killed_while_the_init_builds_the_container_leaves_nothing(version: Version) {
    killed_during_create(version, Stage::Init, Victim::Shim, "finit");
}

/// `ctr run -d` that stops after Create: its pid file cannot be written. Returns the
/// init's pid; the task is CREATED, its init blocked before exec.
fn create_only(ns: &Namespace<'_>, id: &str) -> i32 {
    let pid_file = format!("/nonexistent-{id}/pid");
    let out = ns.ctr(&[
        "run",
        "-d",
        "--runtime",
        MINI,
        "--pid-file",
        &pid_file,
        mini_e2e::IMAGE,
        id,
        "sleep",
        "300",
    ]);
    assert!(!out.success(), "the pid file must not be writable: {out}");
    let task = ns.task(id);
    match task {
        Some((pid, status)) if status == "CREATED" => pid,
        other => panic!("task {id} must be CREATED, not {other:?}: {out}"),
    }
}

fn shim_killed_after_create_leaves_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("fcreated");
    let id = ns.new_id("fcreated");
    let init = create_only(&ns, &id);
    assert_eq!(stage_of(init), Some(Stage::Init), "task pid {init}");
    let shim = shim_of(&id).expect("the shim of the created task runs");
    leftovers::kill(shim);
    assert_aftermath(&ns, &id, &[init], false);
}

/// The setup processes die with the shim thread that spawned them (parent-death signal)
/// only until the init is built: a created task waits for Start as long as it takes, even
/// once that thread has ended (tokio ends a blocking thread idle for 10 s).
fn a_created_task_outlives_the_shim_thread_that_built_it(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("fidle");
    let id = ns.new_id("fidle");
    let init = create_only(&ns, &id);
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(
        ns.task(&id),
        Some((init, "CREATED".to_string())),
        "the created init must still wait for Start"
    );
    assert!(
        matches!(state_of(init), Some('S' | 'R')),
        "init {init}: state {:?}",
        state_of(init)
    );
    ns.ctr(&["task", "delete", "-f", &id]).expect_success();
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(id.as_str());
    leftovers::remove_client_fifos(&id);
}

/// The shim's ttrpc address, as containerd keeps it in the bundle: `bootstrap.json`
/// (containerd 2.x) or `address` (written by the shim; what 1.x reads).
fn shim_address(ns: &Namespace<'_>, id: &str) -> String {
    let bundle = ns.bundle_dir(id);
    let from_json = std::fs::read_to_string(bundle.join("bootstrap.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j.get("address")?.as_str().map(str::to_string));
    from_json
        .or_else(|| std::fs::read_to_string(bundle.join("address")).ok())
        .map(|a| a.trim().to_string())
        .unwrap_or_else(|| panic!("no shim address in {}", bundle.display()))
}

/// Calls the shim's `containerd.task.v2.Task/Start` for `id` (what containerd 1.6 to 2.2
/// call) and returns its result; the call's deadline is 60 s.
fn shim_start(address: &str, id: &str) -> ttrpc::Result<StartResponse> {
    struct Task {
        client: Client,
    }
    impl Task {
        async fn start(&self, req: &StartRequest) -> ttrpc::Result<StartResponse> {
            let ctx = ttrpc::context::with_timeout(60_000_000_000);
            let mut cres = StartResponse::new();
            ttrpc::async_client_request!(self, ctx, req, "containerd.task.v2.Task", "Start", cres);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime");
    rt.block_on(async {
        let client = Client::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connecting to the shim at {address}: {e:?}"));
        let req = StartRequest {
            id: id.to_string(),
            ..Default::default()
        };
        Task { client }.start(&req).await
    })
}

fn shim_killed_during_start_leaves_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("fstart");
    let id = ns.new_id("fstart");
    let init = create_only(&ns, &id);
    let shim = shim_of(&id).expect("the shim of the created task runs");
    assert!(stop(init), "could not stop the init {init}");
    let address = shim_address(&ns, &id);
    let call = {
        let id = id.clone();
        std::thread::spawn(move || shim_start(&address, &id))
    };
    // Start has reached the stopped init and waits for its exec.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !call.is_finished(),
        "Start returned although the init is stopped: {:?}",
        call.join()
    );
    leftovers::kill(shim);
    let result = call.join().expect("the Start call's thread");
    assert!(
        result.is_err(),
        "Start cannot succeed when the shim dies: {result:?}"
    );
    assert_aftermath(&ns, &id, &[init], false);
}

/// Containers in the restart test, and the exit code of the first (each adds one).
const RESTART_CONTAINERS: usize = 50;
const FIRST_CODE: usize = 10;

/// `(container id, exit_status)` of every `/tasks/exit` in `ctr events` output.
fn exits(events: &str) -> Vec<(String, i64)> {
    events
        .lines()
        .filter(|l| l.contains("/tasks/exit"))
        .filter_map(|l| {
            let json: serde_json::Value = serde_json::from_str(&l[l.find('{')?..]).ok()?;
            let id = json.get("container_id")?.as_str()?.to_string();
            Some((
                id,
                json.get("exit_status")
                    .and_then(|s| s.as_i64())
                    .unwrap_or(0),
            ))
        })
        .collect()
}

/// Runs `work` on every item from a few threads (ctr start-up dominates; 2 cores).
fn in_parallel<T: Sync>(items: &[T], work: impl Fn(&T) + Sync) {
    let threads = 4;
    std::thread::scope(|s| {
        for chunk in items.chunks(items.len().div_ceil(threads)) {
            let work = &work;
            s.spawn(move || chunk.iter().for_each(work));
        }
    });
}

/// The `(pid, status)` of every task `ctr task ls` shows.
fn task_table(ns: &Namespace<'_>) -> HashMap<String, (i32, String)> {
    let out = ns.ctr(&["task", "ls"]);
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.to_string();
            let pid = f.next()?.parse().ok()?;
            Some((id, (pid, f.next()?.to_string())))
        })
        .collect()
}

/// Polls until every id in `ids` has `status`; returns the last table seen.
fn wait_all(
    ns: &Namespace<'_>,
    ids: &[(String, usize)],
    status: &str,
    timeout: Duration,
) -> (bool, HashMap<String, (i32, String)>) {
    let mut table = HashMap::new();
    let ok = wait_until(timeout, || {
        table = task_table(ns);
        ids.iter()
            .all(|(id, _)| table.get(id).is_some_and(|(_, s)| s == status))
    });
    (ok, table)
}

fn fifty_containers_survive_a_containerd_restart_and_each_exit_is_delivered_once(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("frestart");
    let ids: Vec<(String, usize)> = (0..RESTART_CONTAINERS)
        .map(|i| (ns.new_id("frestart"), FIRST_CODE + i))
        .collect();
    // Each exits with its own code on SIGTERM; `wait` returns as soon as the trap fires.
    in_parallel(&ids, |(id, code)| {
        let script = format!("trap 'exit {code}' TERM; sleep 600 & wait");
        ns.run_mini(&["-d"], id, &["sh", "-c", &script])
            .expect_success();
    });
    let (running, table) = wait_all(&ns, &ids, "RUNNING", Duration::from_secs(60));
    assert!(running, "not all {RESTART_CONTAINERS} RUNNING: {table:?}");
    let pids: HashMap<String, i32> = table.into_iter().map(|(id, (pid, _))| (id, pid)).collect();

    let before = ns.subscribe_events();
    cd.restart();
    let before = before.wait(Duration::from_secs(5));
    let events = ns.subscribe_events();

    let (running, table) = wait_all(&ns, &ids, "RUNNING", Duration::from_secs(30));
    assert!(
        running,
        "not all {RESTART_CONTAINERS} RUNNING after the restart: {table:?}\n{}",
        cd.log_tail(40)
    );
    for (id, _) in &ids {
        assert_eq!(
            table.get(id).map(|(pid, _)| *pid),
            pids.get(id).copied(),
            "{id} has another pid after the restart"
        );
    }

    in_parallel(&ids, |(id, _)| {
        ns.ctr(&["task", "kill", "-s", "SIGTERM", id])
            .expect_success();
    });
    let (stopped, table) = wait_all(&ns, &ids, "STOPPED", Duration::from_secs(30));
    assert!(stopped, "not all STOPPED after SIGTERM: {table:?}");
    in_parallel(&ids, |(id, code)| {
        let del = ns.ctr(&["task", "delete", id]);
        del.expect_success();
        assert!(
            del.stderr.contains(&format!("exit code {code}")),
            "`ctr task delete {id}` must report exit code {code}: {del}"
        );
        ns.ctr(&["container", "delete", id]).expect_success();
    });
    // Late duplicates would come after the deletes: give them a moment.
    std::thread::sleep(Duration::from_millis(500));
    let events = events.stop();

    let ours = |e: &(String, i64)| ids.iter().any(|(id, _)| *id == e.0);
    let early: Vec<_> = exits(&before.stdout).into_iter().filter(ours).collect();
    assert!(
        early.is_empty(),
        "exits before anything was killed: {early:?}"
    );
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, status) in exits(&events.stdout).into_iter().filter(ours) {
        seen.entry(id).or_default().push(status);
    }
    let wrong: Vec<String> = ids
        .iter()
        .filter(|(id, code)| seen.get(id).map(Vec::as_slice) != Some(&[*code as i64][..]))
        .map(|(id, code)| format!("{id}: want [{code}], got {:?}", seen.get(id)))
        .collect();
    assert!(
        wrong.is_empty(),
        "each container's /tasks/exit must come once with its code:\n  {}",
        wrong.join("\n  ")
    );
    for (id, _) in &ids {
        ns.assert_nothing_left(id);
        ns.assert_no_client_fifos(id);
    }
}
