//! The systemd cgroup driver, on a host where systemd is PID 1 and the hierarchy is pure
//! cgroup v2: a QEMU VM (`mini_e2e::vm`, booted with systemd) runs the `guest::` scenarios of
//! this file against the guest's containerd 1.6 (the CRI pods also on the cached 2.x, outside `make vm-test`).
//!
//! - `SystemdCgroup = true` in mini's options (ctr's `--runtime-config-path`) and the path
//!   `system.slice:mini-test:<id>`: the container runs in the transient scope
//!   `mini-test-<id>.scope`, its limits in that scope's files, systemd shows it active, and
//!   after delete both the unit and its directory are gone.
//! - The same form without the option picks the driver by itself (systemd runs), here with a
//!   kubelet-style nested slice (`minitest-burstable-pod….slice`).
//! - A shim killed with SIGKILL leaves a scope that the shim's `delete` stops: the init is
//!   killed, the scope and its directory are gone.
//! - The same with `SystemdCgroup = true`, no `cgroupsPath` and a process outside the init's
//!   pid namespace: `delete` (which is not given the option) finds `mini-<id>.scope` from the
//!   bundle's record, kills what is in it and stops it.
//! - A scope started by someone else under the container's scope name, after the container's
//!   own scope went, is left alone by `delete` after a killed shim and by the Delete RPC.
//! - A CRI pod whose cgroup parent is the kubelet's systemd slice name
//!   (`kubepods-besteffort-pod<uid>.slice`), with `SystemdCgroup = true` on mini's handler:
//!   the sandbox and the container in `cri-containerd-<id>.scope` under
//!   `kubepods.slice/kubepods-besteffort.slice/…`, ExecSync, stats, and no scope left after
//!   RemovePodSandbox.
//! - A Burstable CRI pod (`kubepods-burstable-pod<uid>.slice`), on the same daemon: a
//!   container's memory and cpu limits in its scope's files, a container over its memory
//!   limit reported `OOMKilled`, no scope left after the pod's removal.
//!
//! Everything is ignored in a plain `cargo test` (this host has no systemd and is hybrid):
//! `make vm-test` builds this binary and runs `tests/tests/vm.rs`, whose systemd boot runs
//! these scenarios together with the cgroupfs driver's.

/// The scenarios, run inside the VM.
mod guest {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use mini_e2e::cri::{Cri, MINI_HANDLER};
    use mini_e2e::{Containerd, MINI, Namespace, Version, leftovers, wait_until};

    const WAIT: Duration = Duration::from_secs(20);

    /// The guest's containerd 1.6, tried twice: the first start after the boot (cold caches
    /// over 9p under TCG) sometimes needs more than the harness's 30 s.
    fn containerd() -> Containerd {
        std::panic::catch_unwind(|| Containerd::start(Version::V1_6))
            .unwrap_or_else(|_| Containerd::start(Version::V1_6))
    }

    /// Panics unless systemd runs as PID 1 on a pure cgroup v2 hierarchy.
    #[track_caller]
    fn assert_systemd_on_v2() {
        assert!(
            Path::new("/run/systemd/system").is_dir(),
            "systemd is not running: these scenarios run in the VM of this file's host test"
        );
        assert!(
            Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            "/sys/fs/cgroup is not a cgroup2 mount"
        );
    }

    fn systemctl(args: &[&str]) -> String {
        let out = Command::new("systemctl")
            .args(args)
            .output()
            .expect("running systemctl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    use mini_e2e::read_trimmed as read;

    /// A file with mini's runtime options, for `ctr run --runtime-config-path`.
    fn options_file(cd: &Containerd, keys: &str) -> String {
        let path = cd.dir().join("mini-options.toml");
        fs::write(&path, keys).expect("writing the options file");
        path.display().to_string()
    }

    /// `ctr run -d` of `id` with mini in cgroup `path`, a 64 MiB memory limit, 512 cpu shares
    /// and a 50 ms per 100 ms quota, with `extra` ctr options.
    fn run_limited(ns: &Namespace<'_>, id: &str, path: &str, extra: &[&str]) {
        let mut opts = vec![
            "--cgroup",
            path,
            "--memory-limit",
            "67108864",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
        ];
        opts.extend_from_slice(extra);
        ns.run_detached(MINI, &opts, id, &["sh", "-c", "sleep 1000 & wait"]);
        assert!(ns.wait_status(id, "RUNNING", WAIT), "{id} not running");
    }

    /// The scope's limits as the cgroupfs code and systemd wrote them, and systemd's view.
    #[track_caller]
    fn assert_scope_with_limits(ns: &Namespace<'_>, id: &str, unit: &str, dir: &Path) {
        let (pid, _) = ns.task(id).expect("task listed");
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let want = format!(
            "0::/{}",
            dir.strip_prefix("/sys/fs/cgroup").unwrap().display()
        );
        assert_eq!(own.trim(), want, "the init's cgroup");
        assert_eq!(read(dir, "memory.max"), "67108864");
        // runc's conversion: 1 + (512 - 2) * 9999 / 262142.
        assert_eq!(read(dir, "cpu.weight"), "20");
        assert_eq!(read(dir, "cpu.max"), "50000 100000");
        // No pids limit in the spec: not systemd's DefaultTasksMax either.
        assert_eq!(read(dir, "pids.max"), "max");
        assert_eq!(systemctl(&["is-active", unit]), "active");
        assert_eq!(
            systemctl(&["show", "-p", "MemoryMax", "--value", unit]),
            "67108864"
        );
        let status = systemctl(&["status", "--no-pager", unit]);
        assert!(status.contains(&format!("{pid}")), "{status}");
    }

    #[track_caller]
    fn assert_scope_gone(unit: &str, dir: &Path) {
        assert!(
            wait_until(WAIT, || !dir.exists()),
            "{} left after delete: cgroup.procs {:?}, {}",
            dir.display(),
            fs::read_to_string(dir.join("cgroup.procs")),
            systemctl(&["status", "--no-pager", "--full", unit])
        );
        let listed = systemctl(&["list-units", "--all", "--no-legend", "--plain", unit]);
        assert!(listed.is_empty(), "{unit} still known to systemd: {listed}");
    }

    /// What the shim's `delete` for `id` is doing during containerd's 5 s for it: each
    /// thread's kernel wait channel, every 250 ms (for a failure message).
    fn watch_delete(id: &str) -> String {
        let mut seen = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            for p in leftovers::processes() {
                if !(p.cmdline.contains(" delete") && p.cmdline.contains(id)) {
                    continue;
                }
                let tasks = fs::read_dir(format!("/proc/{}/task", p.pid));
                let waits: Vec<String> = tasks
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|t| {
                        let read =
                            |f: &str| fs::read_to_string(t.path().join(f)).unwrap_or_default();
                        format!(
                            "{}:{}:{}:{}",
                            read("comm").trim(),
                            read("wchan"),
                            read("syscall").trim(),
                            read("stat").split_whitespace().nth(13).unwrap_or("")
                        )
                    })
                    .collect();
                seen += &format!("\n{} {:?}", p.pid, waits);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        seen
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn scope_from_the_systemd_cgroup_option_holds_the_container_and_its_limits() {
        assert_systemd_on_v2();
        let cd = containerd();
        let ns = cd.busybox_namespace("sdopt");
        let id = ns.new_id("sd");
        let options = options_file(&cd, "SystemdCgroup = true\n");
        let path = format!("system.slice:mini-test:{id}");
        run_limited(&ns, &id, &path, &["--runtime-config-path", &options]);
        let unit = format!("mini-test-{id}.scope");
        let dir = PathBuf::from("/sys/fs/cgroup/system.slice").join(&unit);
        assert_scope_with_limits(&ns, &id, &unit, &dir);

        // Update (the Task API: ctr 1.6 has no `task update`): the files and the unit's
        // properties (systemd's view) both change.
        mini_e2e::grpc::Grpc::connect(&cd.address(), ns.name())
            .update_resources(&id, r#"{"memory": {"limit": 134217728}}"#)
            .expect("Task.Update");
        assert_eq!(read(&dir, "memory.max"), "134217728");
        assert_eq!(
            systemctl(&["show", "-p", "MemoryMax", "--value", &unit]),
            "134217728",
            "systemd's MemoryMax after the update"
        );
        assert_eq!(read(&dir, "pids.max"), "max", "pids limit kept");

        ns.kill_and_delete(&id);
        assert_scope_gone(&unit, &dir);
        ns.assert_nothing_left(&id);
    }

    /// `ctr run` of `id` in the kubelet-style cgroupsPath `<pod slice>:cri-containerd:<id>`
    /// without `SystemdCgroup`; the scope's name and directory.
    fn run_in_pod_slice(ns: &Namespace<'_>, id: &str) -> (String, PathBuf) {
        // A dash in a slice name is one level of nesting: none in the pod's part.
        let pod = format!("minitest-burstable-pod{}.slice", id.replace('-', "_"));
        run_limited(ns, id, &format!("{pod}:cri-containerd:{id}"), &[]);
        let unit = format!("cri-containerd-{id}.scope");
        let dir = PathBuf::from("/sys/fs/cgroup/minitest.slice/minitest-burstable.slice")
            .join(&pod)
            .join(&unit);
        assert_scope_with_limits(ns, id, &unit, &dir);
        (unit, dir)
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn scope_from_the_slice_form_alone_where_systemd_runs() {
        assert_systemd_on_v2();
        let cd = containerd();
        let ns = cd.busybox_namespace("sdauto");
        let id = ns.new_id("sd");
        let (unit, dir) = run_in_pod_slice(&ns, &id);
        ns.kill_and_delete(&id);
        assert_scope_gone(&unit, &dir);
        ns.assert_nothing_left(&id);
        // The slices systemd made for the scope stay, as the kubelet's pod slices do.
        systemctl(&["stop", "minitest.slice"]);
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn killed_shim_delete_stops_the_scope() {
        assert_systemd_on_v2();
        let cd = containerd();
        let ns = cd.busybox_namespace("sdkill");
        let id = ns.new_id("sd");
        let (unit, dir) = run_in_pod_slice(&ns, &id);
        leftovers::kill(shim_of(&ns, &id));
        let seen = watch_delete(&id);
        wait_until(WAIT, || ns.task_status(&id).as_deref() != Some("RUNNING"));
        let _ = ns.ctr(&["task", "delete", &id]);
        ns.ctr(&["container", "delete", &id]).expect_success();
        assert!(
            wait_until(WAIT, || !dir.exists()),
            "{} left after the killed shim's delete; the delete process seen: {seen}",
            dir.display()
        );
        assert_scope_gone(&unit, &dir);
        ns.assert_nothing_left(&id);
        systemctl(&["stop", "minitest.slice"]);
    }

    /// The shim of task `id`: the parent of its init.
    fn shim_of(ns: &Namespace<'_>, id: &str) -> i32 {
        let (pid, _) = ns.task(id).expect("task listed");
        leftovers::processes()
            .into_iter()
            .find(|p| p.pid == pid)
            .map(|p| p.ppid)
            .expect("the task's process exists")
    }

    /// Whether process `pid` still runs (a zombie does not).
    fn alive(pid: i32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
    }

    /// A busybox root directory for a spec given with `ctr run --config`; removed on drop.
    fn busybox_root() -> tempfile::TempDir {
        let dir = mini_e2e::tmp_dir("mini-sdroot-");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            fs::create_dir_all(dir.path().join(d)).expect("rootfs dir");
        }
        fs::copy("/bin/busybox", dir.path().join("bin/busybox")).expect("copying /bin/busybox");
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", dir.path().join("bin").join(applet))
                .expect("applet link");
        }
        dir
    }

    /// `SystemdCgroup = true` and a spec without `linux.cgroupsPath` (the scope is
    /// `system.slice/mini-<id>.scope`), in the host's pid namespace: a child of the init
    /// outlives it. After a `kill -9` of the shim, containerd's `delete` must find the scope
    /// from the bundle's record (the option is not passed to `delete`), kill what is in it
    /// and stop it.
    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn killed_shim_delete_finds_the_scope_of_the_systemd_cgroup_option() {
        use serde_json::json;
        assert_systemd_on_v2();
        let cd = containerd();
        let ns = cd.busybox_namespace("sdrec");
        let id = ns.new_id("sd");
        let options = options_file(&cd, "SystemdCgroup = true\n");
        let root = busybox_root();
        let out = ns.ctr(&["oci", "spec"]);
        out.expect_success();
        let mut spec: serde_json::Value = serde_json::from_str(&out.stdout).expect("spec JSON");
        spec["root"] = json!({"path": root.path(), "readonly": false});
        spec["process"]["args"] = json!(["sh", "-c", "sleep 1000 & wait"]);
        spec["process"]["env"] = json!(["PATH=/bin"]);
        spec["process"]["terminal"] = json!(false);
        let linux = spec["linux"].as_object_mut().expect("linux");
        linux.remove("cgroupsPath");
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .retain(|n| n["type"] != "pid");
        let spec_dir = mini_e2e::tmp_dir("mini-sdspec-");
        let spec_path = spec_dir.path().join("config.json");
        fs::write(&spec_path, spec.to_string()).expect("writing config.json");
        let spec_path = spec_path.to_string_lossy();
        ns.ctr(&[
            "run",
            "-d",
            "--runtime",
            MINI,
            "--runtime-config-path",
            &options,
            "--config",
            &spec_path,
            &id,
        ])
        .expect_success();
        assert!(ns.wait_status(&id, "RUNNING", WAIT), "{id} not running");
        let unit = format!("mini-{id}.scope");
        let dir = PathBuf::from("/sys/fs/cgroup/system.slice").join(&unit);
        assert!(
            wait_until(WAIT, || read(&dir, "cgroup.procs").lines().count() == 2),
            "sh and sleep in {}: {:?}",
            dir.display(),
            fs::read_to_string(dir.join("cgroup.procs"))
        );
        let procs: Vec<i32> = read(&dir, "cgroup.procs")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();

        leftovers::kill(shim_of(&ns, &id));
        let seen = watch_delete(&id);
        let _ = ns.ctr(&["task", "delete", &id]);
        ns.ctr(&["container", "delete", &id]).expect_success();
        assert!(
            wait_until(WAIT, || !dir.exists()),
            "{} left after the killed shim's delete (cgroup.procs {:?}); the delete process \
             seen: {seen}",
            dir.display(),
            fs::read_to_string(dir.join("cgroup.procs"))
        );
        assert_scope_gone(&unit, &dir);
        for pid in procs {
            assert!(wait_until(WAIT, || !alive(pid)), "process {pid} left");
        }
        ns.assert_no_process_mount_or_cgroup(&id);
    }

    /// A scope that another party started under the container's scope name after the
    /// container's own scope went (its init died, systemd removed the emptied scope). Stopped
    /// and its process killed on drop.
    struct ForeignScope {
        unit: String,
        process: std::process::Child,
    }

    impl ForeignScope {
        fn start(unit: &str, dir: &Path) -> Self {
            let stem = unit.strip_suffix(".scope").expect("a scope");
            let process = Command::new("systemd-run")
                .args(["--scope", "--quiet", "--unit", stem, "sleep", "1000"])
                .spawn()
                .expect("running systemd-run");
            let scope = ForeignScope {
                unit: unit.to_string(),
                process,
            };
            assert!(
                wait_until(WAIT, || systemctl(&["is-active", unit]) == "active"
                    && dir.is_dir()),
                "the foreign {unit} did not start"
            );
            scope
        }

        #[track_caller]
        fn assert_untouched(&mut self) {
            assert_eq!(
                self.process.try_wait().expect("waiting for systemd-run"),
                None,
                "the foreign scope's process was killed"
            );
            assert_eq!(
                systemctl(&["is-active", &self.unit]),
                "active",
                "the foreign {} was stopped",
                self.unit
            );
        }
    }

    impl Drop for ForeignScope {
        fn drop(&mut self) {
            let _ = self.process.kill();
            let _ = self.process.wait();
            systemctl(&["stop", &self.unit]);
        }
    }

    /// Runs a container with `SystemdCgroup = true` in `system.slice:mini-test:<id>`, kills
    /// its init (systemd removes the emptied scope), starts a foreign scope of the same name,
    /// then deletes the container — after a `kill -9` of its shim (containerd's `delete`)
    /// when `kill_shim`, else through the Delete RPC — and checks that the foreign scope and
    /// its process are untouched.
    fn foreign_scope_survives_delete(prefix: &str, kill_shim: bool) {
        assert_systemd_on_v2();
        let cd = containerd();
        let ns = cd.busybox_namespace(prefix);
        let id = ns.new_id("sd");
        let options = options_file(&cd, "SystemdCgroup = true\n");
        let path = format!("system.slice:mini-test:{id}");
        ns.run_detached(
            MINI,
            &["--cgroup", &path, "--runtime-config-path", &options],
            &id,
            &["sleep", "1000"],
        );
        let unit = format!("mini-test-{id}.scope");
        let dir = PathBuf::from("/sys/fs/cgroup/system.slice").join(&unit);
        assert_eq!(systemctl(&["is-active", &unit]), "active");
        let shim = shim_of(&ns, &id);
        let (init, _) = ns.task(&id).expect("task listed");
        leftovers::kill(init);
        assert!(ns.wait_status(&id, "STOPPED", WAIT), "{id} not stopped");
        assert!(wait_until(WAIT, || !dir.exists()), "{unit} not removed");

        let mut foreign = ForeignScope::start(&unit, &dir);
        if kill_shim {
            leftovers::kill(shim);
            // containerd runs the shim's `delete` at once.
            watch_delete(&id);
        }
        let _ = ns.ctr(&["task", "delete", &id]);
        ns.ctr(&["container", "delete", &id]).expect_success();
        // The shim's `delete` after its Shutdown too.
        std::thread::sleep(Duration::from_secs(3));
        foreign.assert_untouched();
        drop(foreign);
        assert_scope_gone(&unit, &dir);
        ns.assert_no_process_mount_or_cgroup(&id);
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn killed_shim_delete_leaves_a_scope_it_did_not_start() {
        foreign_scope_survives_delete("sdforeign", true);
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn late_delete_leaves_a_scope_it_did_not_start() {
        foreign_scope_survives_delete("sdlate", false);
    }

    /// A CRI daemon of `version` whose `mini` handler has `SystemdCgroup = true`, as
    /// kubeadm-style nodes set it for runc.
    fn cri_daemon_with_systemd_cgroup(version: Version) -> Containerd {
        let cd = std::panic::catch_unwind(|| Containerd::start_cri(version))
            .unwrap_or_else(|_| Containerd::start_cri(version));
        let options = options_file(&cd, "SystemdCgroup = true\n");
        let plugin = match version {
            Version::V1_6 | Version::V1_7 => "io.containerd.grpc.v1.cri",
            Version::V2 => "io.containerd.cri.v1.runtime",
        };
        let config = cd.dir().join("config.toml");
        let text = fs::read_to_string(&config).expect("reading config.toml")
            + &format!(
                "\n[plugins.\"{plugin}\".containerd.runtimes.{MINI_HANDLER}.options]\n\
                 ConfigPath = {options:?}\n"
            );
        fs::write(&config, text).expect("writing config.toml");
        cd.restart();
        cd
    }

    /// The kubelet's systemd driver gives CRI the pod's slice by name
    /// (`kubepods-besteffort-pod<uid>.slice`, the uid's dashes as underscores); containerd
    /// 1.6 makes `<slice>:cri-containerd:<id>` of it, and mini's systemd driver the scope
    /// `cri-containerd-<id>.scope` in the slice chain.
    ///
    /// The container joins the sandbox's pid namespace: the setup helper then cannot create
    /// threads, and starts the scope from a forked child (`cgroups::systemd::start`).
    fn besteffort_pod_runs_in_scopes_removed_with_it(cri: &Cri<'_>) {
        use k8s_cri::v1::ContainerState;

        let uid = mini_e2e::unique_name("uid").replace('-', "_");
        let slice = format!("kubepods-besteffort-pod{uid}.slice");
        let slice_dir =
            PathBuf::from("/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice").join(&slice);
        let pod = cri.run_pod_with_parent("sdpod", MINI_HANDLER, &slice);
        let sleeper = cri
            .create_container(&pod, "sleeper", &["sleep", "300"])
            .expect("CreateContainer");
        cri.start_container(&sleeper).expect("StartContainer");
        cri.wait_state(&sleeper, ContainerState::ContainerRunning, WAIT);
        let (code, out, _) = cri
            .exec_sync(&sleeper, &["echo", "in"], 20)
            .expect("ExecSync");
        assert_eq!((code, out.trim()), (0, "in"));

        for id in [&pod.id, &sleeper] {
            let unit = format!("cri-containerd-{id}.scope");
            let pid = cri.task_pid(id);
            let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let want = format!(
                "0::/{}",
                slice_dir
                    .join(&unit)
                    .strip_prefix("/sys/fs/cgroup")
                    .unwrap()
                    .display()
            );
            assert_eq!(own.trim(), want, "the cgroup of {id} (pid {pid})");
            assert_eq!(systemctl(&["is-active", &unit]), "active", "{unit}");
        }
        let stats = cri.container_stats(&sleeper).expect("ContainerStats");
        let memory = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value);
        assert!(
            memory.is_some_and(|v| v > 0),
            "memory of {sleeper}: {memory:?}"
        );
        assert!(stats.cpu.is_some(), "no cpu stats of {sleeper}");

        cri.stop_container(&sleeper, 0).expect("StopContainer");
        cri.remove_container(&sleeper).expect("RemoveContainer");
        cri.stop_pod(&pod).expect("StopPodSandbox");
        cri.remove_pod(&pod).expect("RemovePodSandbox");
        for id in [&pod.id, &sleeper] {
            let unit = format!("cri-containerd-{id}.scope");
            assert_scope_gone(&unit, &slice_dir.join(&unit));
        }
        // The pod's slice is the kubelet's to remove.
        systemctl(&["stop", "kubepods.slice"]);
    }

    /// The cgroup of CRI container (or sandbox) `id` in pod slice `slice_dir`: its scope's
    /// directory, after checking that the task runs there and systemd shows the scope.
    #[track_caller]
    fn assert_in_scope(cri: &Cri<'_>, id: &str, slice_dir: &Path) -> PathBuf {
        let unit = format!("cri-containerd-{id}.scope");
        let dir = slice_dir.join(&unit);
        let pid = cri.task_pid(id);
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let want = format!(
            "0::/{}",
            dir.strip_prefix("/sys/fs/cgroup").unwrap().display()
        );
        assert_eq!(own.trim(), want, "the cgroup of {id} (pid {pid})");
        assert_eq!(systemctl(&["is-active", &unit]), "active", "{unit}");
        dir
    }

    /// A Burstable pod as the kubelet's systemd driver places it
    /// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`): a
    /// container's memory and cpu limits land in its scope's files (and systemd's view of
    /// the scope), a container over its memory limit ends with CRI's reason `OOMKilled`
    /// (exit 137), and removing the pod leaves no scope.
    fn burstable_pod_limits_land_in_its_scopes_and_an_oom_kill_is_reported(cri: &Cri<'_>) {
        use k8s_cri::v1::{ContainerState, LinuxContainerResources, NamespaceMode};
        use mini_e2e::cri::container_config;

        let uid = mini_e2e::unique_name("uid").replace('-', "_");
        let slice = format!("kubepods-burstable-pod{uid}.slice");
        let slice_dir =
            PathBuf::from("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice").join(&slice);
        let pod = cri.run_pod_with_parent("burst", MINI_HANDLER, &slice);
        let limited = |name: &str, command: &[&str], memory: i64| {
            let mut config = container_config(name, command, NamespaceMode::Pod);
            if let Some(linux) = config.linux.as_mut() {
                linux.resources = Some(LinuxContainerResources {
                    memory_limit_in_bytes: memory,
                    cpu_shares: 512,
                    cpu_quota: 50000,
                    cpu_period: 100000,
                    ..Default::default()
                });
            }
            cri.create_container_from(&pod, config)
                .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}"))
        };

        let app = limited("app", &["sleep", "300"], 64 << 20);
        cri.start_container(&app).expect("StartContainer app");
        cri.wait_state(&app, ContainerState::ContainerRunning, WAIT);
        assert_in_scope(cri, &pod.id, &slice_dir);
        let dir = assert_in_scope(cri, &app, &slice_dir);
        assert_eq!(read(&dir, "memory.max"), "67108864");
        // runc's conversion of 512 shares: 1 + (512 - 2) * 9999 / 262142.
        assert_eq!(read(&dir, "cpu.weight"), "20");
        assert_eq!(read(&dir, "cpu.max"), "50000 100000");
        let unit = format!("cri-containerd-{app}.scope");
        assert_eq!(
            systemctl(&["show", "-p", "MemoryMax", "--value", &unit]),
            "67108864"
        );

        // busybox tail keeps the current line in memory: /dev/zero has no newline.
        let hog = limited("hog", &["tail", "/dev/zero"], 16 << 20);
        cri.start_container(&hog).expect("StartContainer hog");
        let status = cri.wait_exit_reason(
            &hog,
            "OOMKilled",
            Duration::from_secs(60),
            Duration::from_secs(2),
        );
        assert_eq!(
            (status.exit_code, status.reason.as_str()),
            (137, "OOMKilled"),
            "{status:?}\ncontainerd's log of {hog}:\n{}",
            cri.log_lines_naming(&hog)
        );

        cri.stop_container(&app, 0).expect("StopContainer");
        for id in [&app, &hog] {
            cri.remove_container(id).expect("RemoveContainer");
        }
        cri.stop_pod(&pod).expect("StopPodSandbox");
        cri.remove_pod(&pod).expect("RemovePodSandbox");
        for id in [&pod.id, &app, &hog] {
            let unit = format!("cri-containerd-{id}.scope");
            assert_scope_gone(&unit, &slice_dir.join(&unit));
        }
        // The pod's slice is the kubelet's to remove.
        systemctl(&["stop", "kubepods.slice"]);
    }

    /// Both pods on one CRI daemon of `version`.
    fn cri_pods_in_the_kubelets_slices(version: Version) {
        assert_systemd_on_v2();
        let cd = cri_daemon_with_systemd_cgroup(version);
        let cri = Cri::connect(&cd);
        besteffort_pod_runs_in_scopes_removed_with_it(&cri);
        burstable_pod_limits_land_in_its_scopes_and_an_oom_kill_is_reported(&cri);
    }

    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn cri_pods_in_the_kubelets_slices_on_containerd_1_6() {
        cri_pods_in_the_kubelets_slices(Version::V1_6);
    }

    /// Not in `make vm-test` (its time budget): `MINI_VM_ONLY=slices_on_containerd_2`.
    #[test]
    #[ignore = "needs systemd as PID 1: the host test boots a VM"]
    fn cri_pods_in_the_kubelets_slices_on_containerd_2() {
        cri_pods_in_the_kubelets_slices(Version::V2);
    }
}
