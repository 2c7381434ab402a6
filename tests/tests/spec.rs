//! What the spec asks for, as `ctr run` builds it, checked from inside the container and from
//! the host, on containerd 1.6, 1.7 and 2.x: process (user, cwd, env, capabilities, rlimits,
//! no_new_privs, seccomp), namespaces (new user namespace, joined by path), mounts (binds,
//! read-only root), a rootfs given by path, and cpu limits.

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use mini_e2e::{Containerd, Namespace, Version, runtime_under_test};

mini_e2e::on_every_version!(
    process_settings_reach_the_process,
    seccomp_profile_is_enforced,
    user_namespace_maps_root,
    namespace_given_by_path_is_joined,
    bind_mount_options_and_read_only_root_are_applied,
    rootfs_by_path_runs_without_snapshot_mounts,
    cpu_limits_are_written_to_the_host_cgroup,
    task_ps_lists_the_container_processes_and_kill_all_stops_them,
    without_its_own_pid_namespace_the_rest_dies_with_the_init,
    log_uri_file_is_created_and_receives_the_output,
    a_cgroup_in_use_is_refused_and_its_processes_survive,
);

/// Runs `sh -c script` with `ctr run --rm [opts]`; returns its `key=value` lines. Checks that
/// nothing of the container is left.
fn inside(ns: &Namespace<'_>, opts: &[&str], script: &str) -> HashMap<String, String> {
    let id = ns.new_id("spec");
    let mut all = vec!["--rm"];
    all.extend_from_slice(opts);
    let out = ns.run(&runtime_under_test(), &all, &id, &["sh", "-c", script]);
    out.expect_success();
    ns.assert_nothing_left(&id);
    out.key_values()
}

#[track_caller]
fn get<'a>(got: &'a HashMap<String, String>, key: &str) -> &'a str {
    got.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key}= in {got:?}"))
}

fn process_settings_reach_the_process(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("process");
    let mut opts = vec![
        "--cwd",
        // Not in the image: created, as runc does.
        "/work/dir",
        "--env",
        "GREETING=hello",
        "--cap-add",
        "CAP_SYS_ADMIN",
    ];
    // ctr 1.6 has no --user.
    if version != Version::V1_6 {
        opts.extend_from_slice(&["--user", "1000:1000"]);
    }
    let got = inside(
        &ns,
        &opts,
        "echo cwd=$(pwd); echo greeting=$GREETING; echo uid=$(id -u); echo gid=$(id -g); \
         echo nofile=$(ulimit -n); echo nofile_hard=$(ulimit -Hn); echo umask=$(umask); \
         echo nnp=$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status); \
         echo capbnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status); \
         echo fds=$(ls /proc/self/fd | wc -l); \
         mknod /tmp/sda b 8 0 2>/dev/null; echo mknod=$?; \
         head -c 1 /tmp/sda >/dev/null 2>&1; echo readsda=$?; echo null=$(head -c 3 /dev/zero | wc -c)",
    );
    assert_eq!(get(&got, "cwd"), "/work/dir");
    assert_eq!(get(&got, "greeting"), "hello");
    // containerd's default spec: RLIMIT_NOFILE 1024/1024, no_new_privs, umask 0022.
    assert_eq!(get(&got, "nofile"), "1024");
    assert_eq!(get(&got, "nofile_hard"), "1024");
    assert_eq!(get(&got, "nnp"), "1");
    assert_eq!(get(&got, "umask"), "0022");
    // CAP_SYS_ADMIN (bit 21) added to the default bounding set.
    assert_eq!(get(&got, "capbnd"), "00000000a82425fb");
    // The device cgroup (runc's rules): any node may be created, but only the default
    // devices opened.
    if version == Version::V1_6 {
        assert_eq!(get(&got, "mknod"), "0", "mknod is allowed, as with runc");
        assert_ne!(
            get(&got, "readsda"),
            "0",
            "reading a block device must be denied"
        );
    }
    assert_eq!(get(&got, "null"), "3");
    // ls sees stdio and its own directory fd: nothing leaked into the process.
    assert_eq!(get(&got, "fds"), "4");
    if version != Version::V1_6 {
        assert_eq!(get(&got, "uid"), "1000");
        assert_eq!(get(&got, "gid"), "1000");
    }
}

fn seccomp_profile_is_enforced(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("seccomp");
    let got = inside(
        &ns,
        &["--seccomp"],
        "echo mode=$(awk '/^Seccomp:/ {print $2}' /proc/self/status); \
         unshare -U true 2>/dev/null; echo unshare=$?",
    );
    assert_eq!(get(&got, "mode"), "2", "a seccomp filter must be installed");
    // containerd's default profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN.
    assert_ne!(get(&got, "unshare"), "0");
    let got = inside(
        &ns,
        &[],
        "echo mode=$(awk '/^Seccomp:/ {print $2}' /proc/self/status)",
    );
    assert_eq!(get(&got, "mode"), "0", "no profile, no filter");
}

fn user_namespace_maps_root(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("userns");
    let got = inside(
        &ns,
        &["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"],
        "echo map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'); echo uid=$(id -u); \
         touch /written && echo write=ok",
    );
    assert_eq!(get(&got, "map"), "0 100000 65536");
    assert_eq!(get(&got, "uid"), "0");
    assert_eq!(
        get(&got, "write"),
        "ok",
        "root of the user namespace owns the rootfs"
    );
}

fn namespace_given_by_path_is_joined(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("joinns");
    let first = ns.new_id("netowner");
    ns.run_detached(&runtime_under_test(), &[], &first, &["sleep", "300"]);
    let (pid, _) = ns.task(&first).expect("task listed");
    let net = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let with = format!("network:/proc/{pid}/ns/net");
    let second = ns.new_id("netjoiner");
    let out = ns.run(
        &runtime_under_test(),
        &["--rm", "--with-ns", &with],
        &second,
        &["readlink", "/proc/self/ns/net"],
    );
    out.expect_success();
    assert_eq!(out.stdout.trim(), net.to_string_lossy(), "{out}");
    ns.kill_and_delete(&first);
    ns.assert_nothing_left(&first);
    ns.assert_nothing_left(&second);
}

fn bind_mount_options_and_read_only_root_are_applied(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("binds");
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("file"), "from-host").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        src.path().display()
    );
    let got = inside(
        &ns,
        &["--mount", &mount, "--read-only"],
        "echo data=$(cat /data/file); touch /data/new 2>/dev/null; echo datawrite=$?; \
         touch /new 2>/dev/null; echo rootwrite=$?",
    );
    assert_eq!(get(&got, "data"), "from-host");
    assert_ne!(get(&got, "datawrite"), "0", "ro bind must refuse writes");
    assert_ne!(
        get(&got, "rootwrite"),
        "0",
        "--read-only root must refuse writes"
    );
    assert!(!src.path().join("new").exists());
}

fn rootfs_by_path_runs_without_snapshot_mounts(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("rootfs");
    let rootfs = tempfile::Builder::new()
        .prefix("mini-rootfs-")
        .tempdir()
        .unwrap();
    for dir in ["bin", "proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.path().join(dir)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.path().join("bin").join(applet)).unwrap();
    }
    let id = ns.new_id("rootfs");
    let root = rootfs.path().to_string_lossy().to_string();
    let out = ns.ctr(&[
        "run",
        "--rm",
        "--runtime",
        &runtime_under_test(),
        "--rootfs",
        &root,
        &id,
        // No image config: the spec's env has no PATH.
        "/bin/sh",
        "-c",
        "echo root-ok; cat /proc/1/cmdline",
    ]);
    out.expect_success();
    assert!(out.stdout.starts_with("root-ok\n"), "{out}");
    ns.assert_nothing_left(&id);
}

fn cpu_limits_are_written_to_the_host_cgroup(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cpu");
    let id = ns.new_id("cpu");
    ns.run_detached(
        &runtime_under_test(),
        &["--cpus", "0.5", "--cpu-shares", "512"],
        &id,
        &["sleep", "300"],
    );
    let dir = format!("/sys/fs/cgroup/cpu/{}/{id}", ns.name());
    let read = |f: &str| {
        fs::read_to_string(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("{dir}/{f}: {e}"))
    };
    assert_eq!(read("cpu.shares").trim(), "512");
    assert_eq!(read("cpu.cfs_period_us").trim(), "100000");
    assert_eq!(read("cpu.cfs_quota_us").trim(), "50000");
    ns.kill_and_delete(&id);
    ns.assert_nothing_left(&id);
}

fn task_ps_lists_the_container_processes_and_kill_all_stops_them(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("killall");
    let id = ns.new_id("killall");
    ns.run_detached(
        &runtime_under_test(),
        &[],
        &id,
        &["sh", "-c", "sleep 300 & sleep 301; exit 0"],
    );
    let (pid, _) = ns.task(&id).expect("task listed");
    // The init (sh) and its two sleeps, from the container's cgroup.
    let mut listed = Vec::new();
    let three = mini_e2e::wait_until(Duration::from_secs(10), || {
        let out = ns.ctr(&["task", "ps", &id]);
        listed = out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
            .collect();
        listed.len() == 3
    });
    assert!(three, "ctr task ps {id}: {listed:?}");
    assert!(listed.contains(&pid), "{listed:?} lacks the init {pid}");
    ns.ctr(&["task", "kill", "--all", "-s", "SIGKILL", &id])
        .expect_success();
    assert!(ns.wait_status(&id, "STOPPED", Duration::from_secs(10)));
    let out = ns.ctr(&["task", "delete", &id]);
    assert!(
        out.stderr.contains("137") || out.stdout.contains("137"),
        "{out}"
    );
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}

fn without_its_own_pid_namespace_the_rest_dies_with_the_init(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("hostpid");
    let id = ns.new_id("hostpid");
    // In the host's pid namespace the background sleep would outlive sh and hold stdout
    // open; the shim ends it when the init exits, as the stock shim does.
    // The host's pid namespace, through a process the helper may open (not pid 1 here, which
    // holds capabilities the shim lacks).
    let host_pid = format!("pid:/proc/{}/ns/pid", std::process::id());
    let started = std::time::Instant::now();
    let out = ns.run(
        &runtime_under_test(),
        &["--rm", "--with-ns", &host_pid],
        &id,
        &["sh", "-c", "sleep 300 & echo started"],
    );
    out.expect_success();
    assert_eq!(out.stdout.trim(), "started", "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "ctr waited {:?}: the init's exit did not end the background process",
        started.elapsed()
    );
    ns.assert_nothing_left(&id);
}

fn log_uri_file_is_created_and_receives_the_output(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("loguri");
    let id = ns.new_id("loguri");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/c.log");
    let uri = format!("file://{}", log.display());
    ns.run(
        &runtime_under_test(),
        &["--rm", "--log-uri", &uri],
        &id,
        &["sh", "-c", "echo to-the-log"],
    )
    .expect_success();
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(text.contains("to-the-log"), "{text:?}");
    ns.assert_nothing_left(&id);
}

fn a_cgroup_in_use_is_refused_and_its_processes_survive(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cgshare");
    let cgroup = format!("/{}/shared", ns.name());
    let first = ns.new_id("cgowner");
    ns.run_detached(
        &runtime_under_test(),
        &["--cgroup", &cgroup],
        &first,
        &["sleep", "300"],
    );
    let second = ns.new_id("cgintruder");
    let out = ns.run(
        &runtime_under_test(),
        &["--rm", "--cgroup", &cgroup],
        &second,
        &["true"],
    );
    assert!(
        !out.success(),
        "a second container in a cgroup in use must fail: {out}"
    );
    assert!(out.stderr.contains("cgroup"), "{out}");
    assert_eq!(
        ns.task_status(&first).as_deref(),
        Some("RUNNING"),
        "the refused container must not touch the running one"
    );
    ns.kill_and_delete(&first);
    ns.assert_nothing_left(&first);
    ns.assert_nothing_left(&second);
}
