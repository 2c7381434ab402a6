//! The Kubernetes path: containerd's CRI plugin, configured from `deploy/`, runs pods with
//! the `mini` runtime handler. A pod is one shim daemon; its containers share the
//! sandbox's namespaces, land in the cgroup parent CRI asks for, report their exit codes and
//! logs, and nothing is left once the pod is removed.

use std::fs;
use std::time::Duration;

use k8s_cri::v1::LinuxContainerResources;
use k8s_cri::v1::{ContainerState, NamespaceMode};
use mini_e2e::cri::{Cri, ExecStream, Pod, container_config, handler_under_test};
use mini_e2e::{Containerd, Version, on_every_version};

const WAIT: Duration = Duration::from_secs(30);

/// The shim binary serving the handler under test.
fn shim_binary() -> &'static str {
    if handler_under_test() == "runc" {
        "containerd-shim-runc-v2"
    } else {
        "containerd-shim-mini-v2"
    }
}

/// `/proc/<pid>/ns/<kind>` as the kernel names it (`pid:[4026531836]`).
fn ns_of(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .display()
        .to_string()
}

/// The v1 memory cgroup (or the v2 path on a pure v2 host) of `pid`.
fn cgroup_of(pid: i32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .or_else(|| text.lines().find(|l| l.starts_with("0::")));
    line.and_then(|l| l.splitn(3, ':').nth(2))
        .unwrap_or_default()
        .to_string()
}

fn parent_of(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// A pod with a long-running container and one that exits 3: one shim for the sandbox and
/// both containers (their parent), the sandbox's pid/ipc/uts namespaces shared, the cgroup
/// parent honoured, exit code and both output streams in CRI's log; stopping and removing
/// everything leaves no shim, process, cgroup, mount or socket.
fn pod_is_one_shim_sharing_the_sandbox(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let sandbox_pid = cri.task_pid(&pod.id);

    let sleeper = cri
        .create_container(&pod, "sleeper", &["sh", "-c", "echo ready; exec sleep 300"])
        .expect("CreateContainer sleeper");
    cri.start_container(&sleeper)
        .expect("StartContainer sleeper");
    cri.wait_state(&sleeper, ContainerState::ContainerRunning, WAIT);
    assert!(
        mini_e2e::wait_until(WAIT, || cri.log(&pod, "sleeper").contains("stdout F ready")),
        "sleeper's output not in its CRI log {}: {:?}",
        cri.log_path(&pod, "sleeper").display(),
        cri.log(&pod, "sleeper")
    );
    let sleeper_pid = cri.task_pid(&sleeper);

    // The container joined the sandbox's namespaces (host network: the host's).
    for kind in ["pid", "ipc", "uts", "net"] {
        assert_eq!(
            ns_of(sleeper_pid, kind),
            ns_of(sandbox_pid, kind),
            "{kind} namespace of the container is not the sandbox's"
        );
    }
    assert_eq!(
        ns_of(sleeper_pid, "net"),
        ns_of(std::process::id() as i32, "net"),
        "host network"
    );
    assert_ne!(
        ns_of(sleeper_pid, "pid"),
        ns_of(std::process::id() as i32, "pid"),
        "the pod's own pid namespace"
    );
    assert_ne!(
        ns_of(sleeper_pid, "mnt"),
        ns_of(sandbox_pid, "mnt"),
        "each container has its own root"
    );

    // The cgroupsPath CRI sends (cgroupfs driver: <parent>/<id>) is where the init runs.
    assert_eq!(
        cgroup_of(sleeper_pid),
        format!("{}/{sleeper}", cri.cgroup_parent()),
        "cgroup of the container"
    );
    assert_eq!(
        cgroup_of(sandbox_pid),
        format!("{}/{}", cri.cgroup_parent(), pod.id),
        "cgroup of the sandbox"
    );

    // The Kubernetes default: the container's own pid namespace, the pod's ipc and uts.
    let own = cri
        .create_container_in(&pod, "own-pid", &["sleep", "300"], NamespaceMode::Container)
        .expect("CreateContainer own-pid");
    cri.start_container(&own).expect("StartContainer own-pid");
    cri.wait_state(&own, ContainerState::ContainerRunning, WAIT);
    let own_pid = cri.task_pid(&own);
    assert_ne!(
        ns_of(own_pid, "pid"),
        ns_of(sandbox_pid, "pid"),
        "pid namespace CONTAINER must not be the sandbox's"
    );
    for kind in ["ipc", "uts"] {
        assert_eq!(
            ns_of(own_pid, kind),
            ns_of(sandbox_pid, kind),
            "{kind} of own-pid"
        );
    }
    let status = fs::read_to_string(format!("/proc/{own_pid}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "own-pid's init is not pid 1 in its namespace:\n{status}"
    );
    // pid 1 ignores SIGTERM: StopContainer kills it after the timeout.
    cri.stop_container(&own, 1).expect("StopContainer own-pid");
    let status = cri.wait_state(&own, ContainerState::ContainerExited, WAIT);
    assert_eq!(
        status.exit_code, 137,
        "own-pid after StopContainer: {status:?}"
    );
    cri.remove_container(&own).expect("RemoveContainer own-pid");

    let short = cri
        .create_container(
            &pod,
            "short",
            &["sh", "-c", "echo out-line; echo err-line >&2; exit 3"],
        )
        .expect("CreateContainer short");
    cri.start_container(&short).expect("StartContainer short");
    let status = cri.wait_state(&short, ContainerState::ContainerExited, WAIT);
    assert_eq!(status.exit_code, 3, "exit code of short: {status:?}");
    assert!(status.finished_at > 0, "finished_at of short: {status:?}");
    let log = cri.log(&pod, "short");
    assert!(
        log.contains("stdout F out-line") && log.contains("stderr F err-line"),
        "short's CRI log: {log:?}"
    );

    // One shim for the whole pod, the parent of the sandbox's and the containers' inits.
    let shims = cri.shims(shim_binary());
    assert_eq!(
        shims.len(),
        1,
        "one shim per pod expected: {:#?}",
        shims.iter().map(|p| &p.cmdline).collect::<Vec<_>>()
    );
    assert_eq!(
        parent_of(sandbox_pid),
        shims[0].pid,
        "parent of the sandbox"
    );
    assert_eq!(
        parent_of(sleeper_pid),
        shims[0].pid,
        "parent of the container"
    );

    cri.stop_container(&sleeper, 10).expect("StopContainer");
    let status = cri.wait_state(&sleeper, ContainerState::ContainerExited, WAIT);
    assert_ne!(status.exit_code, 0, "a stopped sleeper: {status:?}");
    cri.remove_container(&sleeper)
        .expect("RemoveContainer sleeper");
    cri.remove_container(&short).expect("RemoveContainer short");
    // The sandbox still runs, in the same shim.
    assert_eq!(
        cri.shims(shim_binary()).len(),
        1,
        "the pod's shim went early"
    );
    assert!(
        fs::metadata(format!("/proc/{sandbox_pid}")).is_ok(),
        "the sandbox died with its containers"
    );

    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");

    assert_pod_gone(
        &cd,
        &cri,
        &pod,
        &[&sleeper, &short],
        &[sandbox_pid, sleeper_pid],
    );
}

/// Polls (10 s) until nothing of `pod` is left: no shim of this daemon's `k8s.io`, none of
/// `pids`, no cgroup below the client's parent, no mount or shim socket of `ids`.
#[track_caller]
fn assert_pod_gone(cd: &Containerd, cri: &Cri<'_>, pod: &Pod, ids: &[&str], pids: &[i32]) {
    let mut left = Vec::new();
    let clean = mini_e2e::wait_until(Duration::from_secs(10), || {
        left.clear();
        left.extend(
            cri.shims(shim_binary())
                .into_iter()
                .map(|p| format!("shim {}: {}", p.pid, p.cmdline)),
        );
        for &pid in pids {
            if mini_e2e::leftovers::processes()
                .iter()
                .any(|p| p.pid == pid)
            {
                left.push(format!("process {pid}"));
            }
        }
        left.extend(
            cri.cgroups_below_parent()
                .into_iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        for id in ids.iter().copied().chain([pod.id.as_str()]) {
            left.extend(
                mini_e2e::leftovers::mounts_of(cd.dir(), Some(id))
                    .into_iter()
                    .map(|m| format!("mount {m}")),
            );
            let socket =
                mini_e2e::leftovers::shim_socket(&cd.address(), mini_e2e::cri::CRI_NAMESPACE, id);
            if socket.exists() {
                left.push(format!("shim socket {} of {id}", socket.display()));
            }
        }
        left.is_empty()
    });
    assert!(clean, "the removed pod left:\n  {}", left.join("\n  "));
}

/// A container of a pod whose program does not exist fails with an error naming it, and
/// takes nothing else down: the sandbox keeps running in the same shim, which then serves
/// a good container; removing the pod leaves nothing.
fn failed_container_leaves_the_pod_serving(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let sandbox_pid = cri.task_pid(&pod.id);
    let shim = cri.shims(shim_binary());
    assert_eq!(shim.len(), 1, "one shim for the sandbox");

    let bad = cri.create_container(&pod, "bad", &["/no/such/program"]);
    let err = match &bad {
        Ok(id) => cri
            .start_container(id)
            .expect_err("StartContainer of a missing program must fail"),
        Err(e) => e.clone(),
    };
    assert!(
        err.message().contains("/no/such/program"),
        "the error must name the missing program: {err:?}"
    );
    assert!(
        fs::metadata(format!("/proc/{sandbox_pid}")).is_ok(),
        "the sandbox died with the failed container"
    );
    let good = cri
        .create_container(&pod, "good", &["sh", "-c", "echo fine; exec sleep 300"])
        .expect("CreateContainer after a failed one");
    cri.start_container(&good)
        .expect("StartContainer after a failed one");
    cri.wait_state(&good, ContainerState::ContainerRunning, WAIT);
    let good_pid = cri.task_pid(&good);
    let shims = cri.shims(shim_binary());
    assert_eq!(
        shims.iter().map(|p| p.pid).collect::<Vec<_>>(),
        shim.iter().map(|p| p.pid).collect::<Vec<_>>(),
        "the pod's shim changed"
    );
    assert_eq!(
        parent_of(good_pid),
        shim[0].pid,
        "parent of the good container"
    );

    let mut ids = vec![good.as_str()];
    if let Ok(id) = &bad {
        ids.push(id);
    }
    // StopPodSandbox stops the containers too; RemovePodSandbox removes them.
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    assert_pod_gone(&cd, &cri, &pod, &ids, &[sandbox_pid, good_pid]);
}

/// A running pod outlives a restart of containerd: its shim is found again (every
/// container's bundle names the pod's socket), the container still runs and is stopped and
/// removed through the CRI as before, leaving nothing.
fn pod_survives_a_containerd_restart(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let sandbox_pid = cri.task_pid(&pod.id);
    let app = running_sleeper(&cri, &pod);
    let app_pid = cri.task_pid(&app);
    let shims: Vec<i32> = cri.shims(shim_binary()).iter().map(|p| p.pid).collect();

    cd.restart();
    cri.reconnect();
    cri.wait_state(&app, ContainerState::ContainerRunning, WAIT);
    assert_eq!(
        cri.task_pid(&app),
        app_pid,
        "the container after the restart"
    );
    assert_eq!(
        cri.shims(shim_binary())
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>(),
        shims,
        "the pod's shim after the restart"
    );

    cri.stop_container(&app, 10)
        .expect("StopContainer after the restart");
    cri.wait_state(&app, ContainerState::ContainerExited, WAIT);
    cri.remove_container(&app)
        .expect("RemoveContainer after the restart");
    cri.stop_pod(&pod)
        .expect("StopPodSandbox after the restart");
    cri.remove_pod(&pod)
        .expect("RemovePodSandbox after the restart");
    assert_pod_gone(&cd, &cri, &pod, &[&app], &[sandbox_pid, app_pid]);
}

/// Two pods have a shim each: grouping is by sandbox, and removing one pod leaves the
/// other's shim and container running. Every task of both pods (sandboxes and containers)
/// gets its create, start, exit and delete events once each, in order, under its own id.
fn two_pods_have_a_shim_each(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let events = cd.cri_namespace().subscribe_events();
    let mut apps = Vec::new();
    let pods: Vec<Pod> = (0..2)
        .map(|_| {
            let pod = cri.run_pod("pod", handler_under_test());
            let app = running_sleeper(&cri, &pod);
            apps.push(app);
            pod
        })
        .collect();
    let shims = cri.shims(shim_binary());
    assert_eq!(shims.len(), 2, "one shim per pod, two pods");
    let app_pids: Vec<i32> = apps.iter().map(|a| cri.task_pid(a)).collect();
    let parents: Vec<i32> = app_pids.iter().map(|&pid| parent_of(pid)).collect();
    assert_ne!(parents[0], parents[1], "the pods' containers share a shim");

    let pids: Vec<i32> = pods.iter().map(|p| cri.task_pid(&p.id)).collect();
    cri.stop_pod(&pods[0]).expect("StopPodSandbox");
    cri.remove_pod(&pods[0]).expect("RemovePodSandbox");
    assert!(
        mini_e2e::wait_until(Duration::from_secs(10), || {
            cri.shims(shim_binary())
                .iter()
                .map(|p| p.pid)
                .collect::<Vec<_>>()
                == [parents[1]]
        }),
        "only the second pod's shim should remain"
    );
    cri.wait_state(&apps[1], ContainerState::ContainerRunning, WAIT);
    cri.stop_pod(&pods[1]).expect("StopPodSandbox");
    cri.remove_pod(&pods[1]).expect("RemovePodSandbox");
    let all_pids: Vec<i32> = pids.iter().chain(&app_pids).copied().collect();
    for (pod, app) in pods.iter().zip(&apps) {
        assert_pod_gone(&cd, &cri, pod, &[app], &all_pids);
    }
    // Late duplicates would show up after the deletes: wait a little for them.
    std::thread::sleep(Duration::from_millis(500));
    let out = events.stop();
    for id in pods
        .iter()
        .map(|p| p.id.as_str())
        .chain(apps.iter().map(String::as_str))
    {
        let topics: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| mini_e2e::leftovers::contains_token(l, id))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
            .collect();
        assert_eq!(
            topics,
            [
                "/tasks/create",
                "/tasks/start",
                "/tasks/exit",
                "/tasks/delete"
            ],
            "task events of {id}:\n{}",
            out.stdout
        );
    }
}

/// Eight containers created and started at once in one pod are all served by the pod's
/// shim: each one's output reaches its own log and each one's exit code its own status.
fn containers_started_at_once_share_the_pods_shim(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let sandbox_pid = cri.task_pid(&pod.id);
    let shim: Vec<i32> = cri.shims(shim_binary()).iter().map(|p| p.pid).collect();
    let ids: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=8)
            .map(|n| {
                let (cri, pod) = (&cri, &pod);
                s.spawn(move || {
                    let script = format!("echo from-c{n}; exit {n}");
                    let id = cri
                        .create_container(pod, &format!("c{n}"), &["sh", "-c", &script])
                        .unwrap_or_else(|e| panic!("CreateContainer c{n}: {e:?}"));
                    cri.start_container(&id)
                        .unwrap_or_else(|e| panic!("StartContainer c{n}: {e:?}"));
                    (n, id)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a creating thread"))
            .collect()
    });
    for (n, id) in &ids {
        let status = cri.wait_state(id, ContainerState::ContainerExited, WAIT);
        assert_eq!(status.exit_code, *n as i32, "exit code of c{n}: {status:?}");
        let log = cri.log(&pod, &format!("c{n}"));
        assert_eq!(
            log.lines()
                .filter(|l| l.contains(" stdout F "))
                .map(|l| l.rsplit(' ').next().unwrap_or_default())
                .collect::<Vec<_>>(),
            [format!("from-c{n}")],
            "log of c{n}: {log:?}"
        );
    }
    assert_eq!(
        cri.shims(shim_binary())
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>(),
        shim,
        "the pod's shim"
    );
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    let ids: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    assert_pod_gone(&cd, &cri, &pod, &ids, &[sandbox_pid]);
}

/// The pod's shim SIGKILLed: containerd cleans up every container it served (the
/// sandbox's and the containers' processes, mounts and cgroups; the socket), CRI reports them
/// exited, and removing the pod leaves nothing.
fn killed_pod_shim_leaves_nothing(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let sandbox_pid = cri.task_pid(&pod.id);
    let mut apps = Vec::new();
    for name in ["a", "b"] {
        let id = cri
            .create_container(&pod, name, &["sleep", "300"])
            .expect("CreateContainer");
        cri.start_container(&id).expect("StartContainer");
        cri.wait_state(&id, ContainerState::ContainerRunning, WAIT);
        apps.push(id);
    }
    let pids: Vec<i32> = apps
        .iter()
        .map(|id| cri.task_pid(id))
        .chain([sandbox_pid])
        .collect();
    let shims = cri.shims(shim_binary());
    assert_eq!(shims.len(), 1, "one shim per pod");
    mini_e2e::leftovers::kill(shims[0].pid);

    for id in &apps {
        cri.wait_state(id, ContainerState::ContainerExited, WAIT);
    }
    for id in &apps {
        cri.remove_container(id)
            .expect("RemoveContainer after the shim died");
    }
    cri.stop_pod(&pod)
        .expect("StopPodSandbox after the shim died");
    cri.remove_pod(&pod)
        .expect("RemovePodSandbox after the shim died");
    let ids: Vec<&str> = apps.iter().map(String::as_str).collect();
    assert_pod_gone(&cd, &cri, &pod, &ids, &pids);
}

on_every_version!(
    pod_is_one_shim_sharing_the_sandbox,
    failed_container_leaves_the_pod_serving,
    pod_survives_a_containerd_restart,
    two_pods_have_a_shim_each,
    containers_started_at_once_share_the_pods_shim,
    killed_pod_shim_leaves_nothing,
    exec_sync_in_a_pod_container,
    exec_with_a_terminal_through_the_streaming_url,
    container_stats_of_a_pod_container,
    update_resources_of_a_pod_container,
    oom_killed_pod_container
);

/// ExecSync runs a command in a pod's container, in its namespaces: exit code, stdout and
/// stderr come back.
fn exec_sync_in_a_pod_container(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let app = running_sleeper(&cri, &pod);
    let app_pid = cri.task_pid(&app);
    let (code, out, err) = cri
        .exec_sync(&app, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .expect("ExecSync");
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    for kind in ["pid", "mnt", "ipc", "uts"] {
        let (code, ns, _) = cri
            .exec_sync(&app, &["readlink", &format!("/proc/self/ns/{kind}")], 10)
            .expect("ExecSync readlink");
        assert_eq!(
            (code, ns.trim().to_string()),
            (0, ns_of(app_pid, kind)),
            "{kind} of the exec"
        );
    }
    let sandbox_pid = cri.task_pid(&pod.id);
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    assert_pod_gone(&cd, &cri, &pod, &[&app], &[sandbox_pid, app_pid]);
}

/// `kubectl exec -it`: Exec with a terminal and stdin returns a URL of containerd's streaming
/// server; a WebSocket client (subprotocol `v4.channel.k8s.io`, as the API server speaks to a
/// kubelet) resizes the terminal and types into an interactive shell. The shell's stdin is a
/// `/dev/pts` device of the size sent (the resize went streaming server → containerd →
/// shim's ResizePty), and the exit code comes back in the session's status.
fn exec_with_a_terminal_through_the_streaming_url(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let app = running_sleeper(&cri, &pod);
    let url = cri.exec(&app, &["sh"], true, true).expect("Exec");
    let mut session = ExecStream::connect(&url);
    session.resize(123, 45);
    // The resize travels apart from stdin: wait (bounded) until it reached the terminal.
    // No output line of the shell can be `45 123` but the last `stty size`'s (the echoed
    // input has more on its line).
    session.stdin(
        b"i=0; while [ \"$(stty size)\" != \"45 123\" ] && [ $i -lt 100 ]; do sleep 0.1; \
          i=$((i+1)); done; tty; stty size; exit 7\n",
    );
    let output = session.finish(WAIT);
    let text = output.stdout_text();
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "`tty` names no /dev/pts device: {text:?}"
    );
    assert!(
        lines.contains(&"45 123"),
        "`stty size` is not the size sent (45 rows, 123 columns): {text:?}"
    );
    assert_eq!(output.exit_code(), Some(7), "status {:?}", output.status);
    assert!(output.stderr.is_empty(), "a terminal has no stderr channel");
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

/// ContainerStats, ListContainerStats and ListPodSandboxStats of a running container: its
/// memory working set and cpu time, listed under its pod too.
fn container_stats_of_a_pod_container(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let app = cri
        .create_container(
            &pod,
            "app",
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 300",
            ],
        )
        .expect("CreateContainer");
    cri.start_container(&app).expect("StartContainer");
    cri.wait_state(&app, ContainerState::ContainerRunning, WAIT);
    std::thread::sleep(Duration::from_secs(1));
    let stats = cri.container_stats(&app).expect("ContainerStats");
    let memory = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value);
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value);
    assert!(
        memory.is_some_and(|m| m > 0),
        "memory working set: {stats:?}"
    );
    assert!(cpu.is_some_and(|c| c > 0), "cpu usage: {stats:?}");
    // The kubelet's list calls carry the same numbers for the container and its pod.
    let listed = cri.list_container_stats().expect("ListContainerStats");
    let ours = listed
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == app))
        .unwrap_or_else(|| panic!("{app} not in ListContainerStats: {listed:?}"));
    assert!(
        ours.memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .is_some_and(|v| v.value > 0),
        "listed memory: {ours:?}"
    );
    let pods = cri.list_pod_sandbox_stats().expect("ListPodSandboxStats");
    let pod_stats = pods
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == pod.id))
        .unwrap_or_else(|| panic!("{} not in ListPodSandboxStats: {pods:?}", pod.id));
    let containers = pod_stats
        .linux
        .as_ref()
        .map(|l| l.containers.as_slice())
        .unwrap_or_default();
    assert!(
        containers
            .iter()
            .any(|c| c.attributes.as_ref().is_some_and(|a| a.id == app)),
        "{app} not among its pod's stats: {pod_stats:?}"
    );
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

/// UpdateContainerResources sets the memory limit of a running container's cgroup.
fn update_resources_of_a_pod_container(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let app = running_sleeper(&cri, &pod);
    cri.update_resources(
        &app,
        LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        },
    )
    .expect("UpdateContainerResources");
    let limit = format!(
        "/sys/fs/cgroup/memory{}/{app}/memory.limit_in_bytes",
        cri.cgroup_parent()
    );
    assert_eq!(
        fs::read_to_string(&limit).unwrap_or_default().trim(),
        "67108864",
        "{limit}"
    );
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

/// A container over its memory limit is OOM-killed: CRI shows reason OOMKilled, exit 137.
fn oom_killed_pod_container(version: Version) {
    let cd = Containerd::start_cri(version);
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("pod", handler_under_test());
    let mut config = container_config("hog", &["tail", "/dev/zero"], NamespaceMode::Pod);
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        });
    }
    let hog = cri
        .create_container_from(&pod, config)
        .expect("CreateContainer");
    cri.start_container(&hog).expect("StartContainer");
    let status = cri.wait_state(&hog, ContainerState::ContainerExited, WAIT);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "{status:?}"
    );
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
}

/// A container `app` running `sleep 300` in `pod`, once CRI reports it running.
fn running_sleeper(cri: &Cri<'_>, pod: &Pod) -> String {
    let app = cri
        .create_container(pod, "app", &["sleep", "300"])
        .expect("CreateContainer");
    cri.start_container(&app).expect("StartContainer");
    cri.wait_state(&app, ContainerState::ContainerRunning, WAIT);
    app
}
