//! A private containerd daemon per test, and the ctr namespace a test works in.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::ctr::{self, Background, CtrOutput};
use crate::leftovers;

/// Hard limit for one ctr command unless a test asks for another.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// The containerd release lines the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian bookworm's system containerd (1.6.20).
    V1_6,
    /// Debian trixie's containerd (1.7.x), unpacked by `deploy/install-deps.sh`.
    V1_7,
    /// Debian sid's containerd (2.x), unpacked by `deploy/install-deps.sh`.
    V2,
}

impl Version {
    /// Every version, for tests that loop over them.
    pub const ALL: [Version; 3] = [Version::V1_6, Version::V1_7, Version::V2];

    /// The directory holding this version's `containerd`, `ctr` and runc shim.
    pub fn bin_dir(self) -> PathBuf {
        match self {
            Version::V1_6 => PathBuf::from("/usr/bin"),
            Version::V1_7 => crate::cache_dir().join("containerd-1.7/usr/bin"),
            Version::V2 => crate::cache_dir().join("containerd-2/usr/bin"),
        }
    }

    /// A short tag for names: `v1-6`, `v1-7`, `v2`.
    pub fn tag(self) -> &'static str {
        match self {
            Version::V1_6 => "v1-6",
            Version::V1_7 => "v1-7",
            Version::V2 => "v2",
        }
    }

    /// True if this version's ctr has `run --hostname` (1.7+).
    pub fn has_hostname_flag(self) -> bool {
        self != Version::V1_6
    }

    /// The `deploy/` snippet that adds the mini runtime to this version's config.
    pub fn deploy_config(self) -> PathBuf {
        let name = match self {
            Version::V1_6 | Version::V1_7 => "containerd-1.x.toml",
            Version::V2 => "containerd-2.x.toml",
        };
        crate::workspace_dir().join("deploy").join(name)
    }

    /// The daemon's config: private paths, then the `deploy/` snippet as a user installs it
    /// (so the tests check it), then, with `cri`, the CRI plugin set up for this host.
    fn config(self, dir: &Path, cri: bool) -> String {
        let d = dir.display();
        let deploy = fs::read_to_string(self.deploy_config()).unwrap_or_else(|e| {
            panic!("reading {}: {e}", self.deploy_config().display());
        });
        // Plugins a test never uses; skipping them speeds startup and keeps daemons from
        // sharing host paths (NRI's socket) with each other.
        let mut disabled = vec![
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
            "io.containerd.nri.v1.nri",
        ];
        if !cri {
            disabled.extend(match self {
                Version::V1_6 | Version::V1_7 => &["io.containerd.grpc.v1.cri"][..],
                Version::V2 => &[
                    "io.containerd.grpc.v1.cri",
                    "io.containerd.cri.v1.images",
                    "io.containerd.cri.v1.runtime",
                    "io.containerd.podsandbox.controller.v1.podsandbox",
                ][..],
            });
        }
        let disabled: Vec<String> = disabled.iter().map(|p| format!("{p:?}")).collect();
        // Top-level keys first: the deploy snippet opens tables.
        let mut config = format!(
            "root = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [{}]\n\n{deploy}\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            disabled.join(", ")
        );
        if cri {
            config.push_str(&self.cri_config(dir));
        }
        config
    }

    /// The CRI plugin on this host: the local pause image as the sandbox image, no CNI
    /// (host-network pods only; a private, empty config dir), and `restrict_oom_score_adj`
    /// (sandboxes ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE here).
    fn cri_config(self, dir: &Path) -> String {
        let d = dir.display();
        let pause = crate::cri::PAUSE_IMAGE;
        match self {
            Version::V1_6 | Version::V1_7 => format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".cni]
  conf_dir = "{d}/cni/net.d"
  bin_dir = "{d}/cni/bin"
"#
            ),
            Version::V2 => format!(
                r#"[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{pause}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = "{d}/cni/net.d"
  bin_dir = "{d}/cni/bin"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#
            ),
        }
    }
}

/// A private containerd daemon: its own directory under /tmp (short, for the 107-byte unix
/// socket limit) holding `root`, `state`, the sockets, `config.toml` and `containerd.log`.
///
/// Dropping it kills the daemon, its shims and containers, unmounts what is left below its
/// directory, removes the directory and the cgroups of every namespace it handed out.
pub struct Containerd {
    version: Version,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    namespaces: Mutex<Vec<String>>,
    ids: Mutex<Vec<(String, String)>>,
}

impl Containerd {
    /// Starts a daemon of `version` and waits until `ctr version` answers.
    /// Panics (with the daemon's log) if it does not come up.
    pub fn start(version: Version) -> Containerd {
        Containerd::start_with(version, false)
    }

    /// Starts a daemon of `version` with its CRI plugin serving on its gRPC socket (see
    /// [`crate::cri`]).
    pub fn start_cri(version: Version) -> Containerd {
        Containerd::start_with(version, true)
    }

    fn start_with(version: Version, cri: bool) -> Containerd {
        let bin = version.bin_dir();
        for b in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            assert!(
                bin.join(b).is_file(),
                "{} missing: run `make deps` (deploy/install-deps.sh) first",
                bin.join(b).display()
            );
        }
        let dir = crate::tmp_dir("mc").keep();
        fs::write(dir.join("config.toml"), version.config(&dir, cri)).expect("writing config.toml");
        let cd = Containerd {
            version,
            dir,
            child: Mutex::new(None),
            namespaces: Mutex::new(Vec::new()),
            ids: Mutex::new(Vec::new()),
        };
        cd.spawn_daemon();
        cd
    }

    fn spawn_daemon(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening containerd.log");
        let log2 = log.try_clone().expect("dup of containerd.log");
        let system_path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        let path = format!(
            "{}:{}:{system_path}",
            crate::mini_bin_dir().display(),
            self.version.bin_dir().display()
        );
        let child = Command::new(self.version.bin_dir().join("containerd"))
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a signal meant for the test runner does not reach it.
            .process_group(0)
            .spawn()
            .expect("spawning containerd");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);

        let ready = crate::wait_until(Duration::from_secs(30), || {
            if let Some(c) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("containerd exited early ({status}):\n{}", self.log_tail(60));
            }
            ctr::run(
                &self.ctr_path(),
                &self.address(),
                "default",
                &["version"],
                None,
                Duration::from_secs(5),
            )
            .success()
        });
        assert!(
            ready,
            "containerd did not answer in 30 s:\n{}",
            self.log_tail(60)
        );
    }

    fn stop_daemon(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = crate::wait_until(Duration::from_secs(3), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Kills the daemon and starts it again on the same directories (shims keep running).
    pub fn restart(&self) {
        self.stop_daemon();
        self.spawn_daemon();
    }

    /// SIGKILLs the daemon, as a crash would (shims keep running); [`Containerd::start_again`]
    /// brings it back.
    pub fn crash(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same directories after [`Containerd::crash`].
    pub fn start_again(&self) {
        self.spawn_daemon();
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.id() as i32)
    }

    /// The containerd version line this daemon runs.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The daemon's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gRPC socket.
    pub fn address(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// This version's ctr binary.
    pub fn ctr_path(&self) -> PathBuf {
        self.version.bin_dir().join("ctr")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The lines of the daemon's log (the shim's included) that name `needle`, for failure
    /// messages about one container.
    pub fn log_lines_naming(&self, needle: &str) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `lines` lines of the daemon's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A fresh ctr namespace `mini-<test>-<pid>-<n>` whose cgroups are removed on drop.
    pub fn namespace(&self, test: &str) -> Namespace<'_> {
        let name = crate::unique_name(&format!("mini-{test}"));
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        Namespace { cd: self, name }
    }

    /// A fresh namespace for `test` (its name tagged with the daemon's version) holding the
    /// busybox image.
    pub fn busybox_namespace(&self, test: &str) -> Namespace<'_> {
        let ns = self.namespace(&format!("{test}-{}", self.version().tag()));
        ns.import_busybox();
        ns
    }

    /// The namespace containerd's CRI plugin keeps pods in (`k8s.io`). Its cgroups are not
    /// removed on drop: a CRI test names its own cgroup parent
    /// ([`Containerd::remove_cgroup_tree_on_drop`]).
    pub fn cri_namespace(&self) -> Namespace<'_> {
        Namespace {
            cd: self,
            name: crate::cri::CRI_NAMESPACE.to_string(),
        }
    }

    /// Remembers container `id` of namespace `ns`, created by another client than ctr (the
    /// CRI), so that dropping the daemon kills what is left of it.
    pub fn track(&self, ns: &str, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ns.to_string(), id.to_string()));
    }

    /// Removes the cgroup tree `/<top>` of every hierarchy when the daemon is dropped.
    pub fn remove_cgroup_tree_on_drop(&self, top: &str) {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(top.to_string());
    }

    fn cleanup(&self) {
        self.stop_daemon();
        let dir = self.dir.to_string_lossy().into_owned();
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Shims name the daemon's socket on their command line and run in a bundle below
        // its state dir; containers are found by id in their cgroup or command line.
        let ours = |p: &leftovers::Proc| {
            p.cmdline.contains(&dir)
                || Path::new(&p.cwd).starts_with(&self.dir)
                || ids.iter().any(|(_, id)| {
                    leftovers::contains_token(&p.cgroup, id)
                        || leftovers::contains_token(&p.cmdline, id)
                })
        };
        crate::wait_until(Duration::from_secs(5), || {
            let left: Vec<_> = leftovers::processes().into_iter().filter(&ours).collect();
            left.iter().for_each(|p| leftovers::kill(p.pid));
            left.is_empty()
        });
        leftovers::unmount_below(&self.dir);
        for ns in &namespaces {
            leftovers::remove_namespace_cgroups(ns);
            // runc's state root for the namespace (used by the stock shim).
            let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(ns));
        }
        for (ns, id) in &ids {
            let _ = fs::remove_file(leftovers::shim_socket(&self.address(), ns, id));
            leftovers::remove_client_fifos(id);
        }
        // Never recurse into something still mounted below the directory.
        if leftovers::mounts_of(&self.dir, None).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "leaving {} in place: mounts remain below it",
                self.dir.display()
            );
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- containerd {:?} log ({}) ---\n{}",
                self.version,
                self.log_path().display(),
                self.log_tail(80)
            );
        }
        self.cleanup();
    }
}

/// One test's ctr namespace on a daemon.
pub struct Namespace<'a> {
    cd: &'a Containerd,
    name: String,
}

impl Namespace<'_> {
    /// The namespace's name (also the parent cgroup of its containers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The daemon this namespace lives on.
    pub fn daemon(&self) -> &Containerd {
        self.cd
    }

    /// A unique container id `<prefix>-<pid>-<n>`, remembered for cleanup.
    pub fn new_id(&self, prefix: &str) -> String {
        let id = crate::unique_name(prefix);
        self.cd
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.name.clone(), id.clone()));
        id
    }

    /// Runs `ctr -n <ns> args…` with the default hard timeout.
    pub fn ctr(&self, args: &[&str]) -> CtrOutput {
        self.ctr_timeout(args, CTR_TIMEOUT)
    }

    /// Runs ctr with an explicit hard timeout (SIGKILL when it expires).
    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> CtrOutput {
        ctr::run(
            &self.cd.ctr_path(),
            &self.cd.address(),
            &self.name,
            args,
            None,
            timeout,
        )
    }

    /// Runs ctr with `stdin` as its standard input.
    pub fn ctr_stdin(&self, args: &[&str], stdin: &[u8]) -> CtrOutput {
        ctr::run(
            &self.cd.ctr_path(),
            &self.cd.address(),
            &self.name,
            args,
            Some(stdin),
            CTR_TIMEOUT,
        )
    }

    /// Starts ctr in the background (e.g. `ctr events`).
    pub fn spawn_ctr(&self, args: &[&str]) -> Background {
        Background::spawn(&self.cd.ctr_path(), &self.cd.address(), &self.name, args)
    }

    /// `ctr events`, once it provably receives this namespace's events: it subscribes
    /// asynchronously, so the namespace is labelled until the resulting
    /// `/namespaces/update` shows up. Panics if none does within 15 s.
    #[track_caller]
    pub fn subscribe_events(&self) -> Background {
        let events = self.spawn_ctr(&["events"]);
        let mut probe = 0;
        let subscribed = crate::wait_until(Duration::from_secs(15), || {
            probe += 1;
            let label = format!("probe={probe}");
            let _ = self.ctr(&["namespaces", "label", &self.name, &label]);
            events.stdout_so_far().contains("/namespaces/update")
        });
        assert!(subscribed, "ctr events shows no events");
        events
    }

    /// `ctr run -d` of mini container `id` (busybox, `sleep 300`) in the background.
    pub fn spawn_mini_sleep(&self, id: &str) -> Background {
        self.spawn_ctr(&[
            "run",
            "-d",
            "--runtime",
            crate::MINI,
            crate::IMAGE,
            id,
            "sleep",
            "300",
        ])
    }

    /// Imports the busybox test image as `localhost/busybox:latest`.
    pub fn import_busybox(&self) {
        let tar = crate::busybox_image_tar();
        let tar = tar.to_string_lossy();
        self.ctr(&["images", "import", "--base-name", "localhost/busybox", &tar])
            .expect_success();
    }

    /// `ctr run --runtime <runtime> <opts…> localhost/busybox:latest <id> <cmd…>`.
    pub fn run(&self, runtime: &str, opts: &[&str], id: &str, cmd: &[&str]) -> CtrOutput {
        let mut args = vec!["run", "--runtime", runtime];
        args.extend_from_slice(opts);
        args.push(crate::IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// `ctr run --rm --config <spec>` of container `id` with the runtime under test (the
    /// spec gives the rootfs and the process; no image).
    pub fn run_config(&self, spec: &Path, id: &str) -> CtrOutput {
        let runtime = crate::runtime_under_test();
        let spec = spec.to_string_lossy();
        self.ctr(&["run", "--rm", "--runtime", &runtime, "--config", &spec, id])
    }

    /// `ctr run -d --config <spec>` of container `id` with the runtime under test, which
    /// must succeed.
    #[track_caller]
    pub fn run_config_detached(&self, spec: &Path, id: &str) {
        let runtime = crate::runtime_under_test();
        let spec = spec.to_string_lossy();
        self.ctr(&["run", "-d", "--runtime", &runtime, "--config", &spec, id])
            .expect_success();
    }

    /// `ctr run -d` of `cmd` with `runtime`, then waits until the task is RUNNING.
    #[track_caller]
    pub fn run_detached(&self, runtime: &str, opts: &[&str], id: &str, cmd: &[&str]) {
        let mut all = vec!["-d"];
        all.extend_from_slice(opts);
        self.run(runtime, &all, id, cmd).expect_success();
        assert!(
            self.wait_status(id, "RUNNING", Duration::from_secs(10)),
            "task {id} not RUNNING: {:?}",
            self.task_status(id)
        );
    }

    /// SIGKILLs the task, waits for STOPPED, deletes it — checking that `ctr task delete`
    /// reports exit status 137 (as a warning on stderr) — and deletes the container.
    #[track_caller]
    pub fn kill_and_delete(&self, id: &str) {
        self.ctr(&["task", "kill", "-s", "SIGKILL", id])
            .expect_success();
        assert!(
            self.wait_status(id, "STOPPED", Duration::from_secs(10)),
            "task {id} not STOPPED after SIGKILL: {:?}",
            self.task_status(id)
        );
        let del = self.ctr(&["task", "delete", id]);
        del.expect_success();
        assert!(
            del.stderr.contains("exit code 137"),
            "exit status of a SIGKILLed task must be 137: {del}"
        );
        self.ctr(&["container", "delete", id]).expect_success();
    }

    /// [`Namespace::run`] with the mini runtime.
    pub fn run_mini(&self, opts: &[&str], id: &str, cmd: &[&str]) -> CtrOutput {
        self.run(crate::MINI, opts, id, cmd)
    }

    /// The task's `(pid, status)` from `ctr task ls`, if it is listed.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().skip(1).find_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != id {
                return None;
            }
            let pid = f.next()?.parse().ok()?;
            Some((pid, f.next()?.to_string()))
        })
    }

    /// The task's status (`RUNNING`, `STOPPED`, …) from `ctr task ls`.
    pub fn task_status(&self, id: &str) -> Option<String> {
        self.task(id).map(|(_, s)| s)
    }

    /// Polls until the task reaches `status`; false after `timeout`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        crate::wait_until(timeout, || self.task_status(id).as_deref() == Some(status))
    }

    /// The task's bundle (containerd's state dir for it: config.json, rootfs, `log`, and the
    /// shim's `address` / containerd 2.x's `bootstrap.json`).
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        leftovers::bundle_dir(&self.cd.dir, &self.name, id)
    }

    /// What remains of container `id`: processes, mounts, cgroups, bundle, the shim socket.
    pub fn remains(&self, id: &str) -> Vec<String> {
        leftovers::remains_of(&self.cd.dir, &self.cd.address(), &self.name, id)
    }

    /// Polls (10 s) until nothing of container `id` remains; panics listing what does.
    #[track_caller]
    pub fn assert_nothing_left(&self, id: &str) {
        self.assert_clean(id, true);
    }

    /// Like [`Namespace::assert_nothing_left`] but tolerates the shim's socket file (left
    /// when the shim itself was SIGKILLed).
    #[track_caller]
    pub fn assert_no_process_mount_or_cgroup(&self, id: &str) {
        self.assert_clean(id, false);
    }

    /// Polls (10 s) until ctr's stdio fifos of container `id` are gone; panics listing them.
    /// Separate from [`Namespace::assert_nothing_left`]: ctr, not the runtime, removes them,
    /// and it cannot when the task vanished before `ctr task delete`.
    #[track_caller]
    pub fn assert_no_client_fifos(&self, id: &str) {
        let mut last = Vec::new();
        let gone = crate::wait_until(Duration::from_secs(10), || {
            last = leftovers::client_fifos_of(id);
            last.is_empty()
        });
        assert!(gone, "ctr's fifos of {id} left behind: {last:?}");
    }

    #[track_caller]
    fn assert_clean(&self, id: &str, socket_too: bool) {
        let mut last = Vec::new();
        let clean = crate::wait_until(Duration::from_secs(10), || {
            last = self.remains(id);
            if !socket_too {
                last.retain(|r| !r.starts_with("shim socket"));
            }
            last.is_empty()
        });
        assert!(
            clean,
            "container {id} left behind:\n  {}",
            last.join("\n  ")
        );
    }
}
