//! Runtime integration (root): the runtime core builds real containers from temporary bundles
//! with a busybox rootfs, without containerd. This binary is its own setup helper, hence
//! `harness = false` and the call to `run_helper_if_requested` first in `main`.

use std::ffi::CString;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, Spec};
use runtime_core::cgroups::CgroupManager;
use runtime_core::process::{
    CreatedInit, ExecConfig, HelperConfig, InitStdio, Launcher, PendingInit, exec_spec,
};

/// A bundle in a temp dir, and the cgroup its container gets; removed on drop.
struct Bundle {
    dir: tempfile::TempDir,
    id: String,
    cgroup_parent: String,
}

impl Bundle {
    fn new(name: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("mini-it-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        for d in ["proc", "sys", "dev", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        Bundle {
            dir,
            id: format!("{name}-{}", std::process::id()),
            cgroup_parent: format!("/mini-it-{}", std::process::id()),
        }
    }

    fn cgroups_path(&self) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.cgroup_parent, self.id))
    }

    fn spec(&self, args: &[&str]) -> Spec {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string()])
            .terminal(false)
            .build()
            .unwrap();
        spec.set_process(Some(process));
        let mut linux = spec
            .linux()
            .clone()
            .unwrap_or_else(|| LinuxBuilder::default().build().unwrap());
        linux.set_cgroups_path(Some(self.cgroups_path()));
        spec.set_linux(Some(linux));
        spec
    }

    /// Starts building a container that runs `args`, with /dev/null as stdio.
    fn spawn(&self, launcher: &Launcher, args: &[&str]) -> PendingInit {
        self.spawn_spec(launcher, self.spec(args))
    }

    /// Starts building a container from `spec`, with /dev/null as stdio.
    fn spawn_spec(&self, launcher: &Launcher, spec: Spec) -> PendingInit {
        let config = HelperConfig {
            id: self.id.clone(),
            bundle: self.dir.path().to_path_buf(),
            rootfs: self.dir.path().join("rootfs"),
            spec,
            cgroup: None,
            cgroup_record: None,
            no_new_keyring: false,
            no_pivot: false,
            pass_fds: 0,
        };
        let stdio = InitStdio {
            stdin: null(),
            stdout: null(),
            stderr: null(),
        };
        launcher.spawn(config, stdio).unwrap()
    }

    /// Builds the container and returns it blocked before exec.
    fn create(&self, launcher: &Launcher, args: &[&str]) -> CreatedInit {
        self.create_spec(launcher, self.spec(args))
    }

    /// Builds and starts the container; returns its exit code.
    fn run_spec(&self, launcher: &Launcher, spec: Spec) -> i32 {
        let created = self.create_spec(launcher, spec);
        let pid = created.pid();
        created.start().unwrap();
        exit_code(pid)
    }

    fn create_spec(&self, launcher: &Launcher, spec: Spec) -> CreatedInit {
        let pending = self.spawn_spec(launcher, spec);
        let helper = pending.helper_pid().expect("spawn execs a helper");
        let created = pending.wait_ready().unwrap();
        let _ = waitpid(Pid::from_raw(helper), None);
        created
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(cg) = CgroupManager::new(&self.id, Some(&self.cgroups_path())) {
            let _ = cg.kill_all(nix::sys::signal::Signal::SIGKILL);
            let _ = cg.destroy();
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(
                hierarchy
                    .path()
                    .join(self.cgroup_parent.trim_start_matches('/')),
            );
        }
    }
}

fn null() -> OwnedFd {
    fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap()
        .into()
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Adds a user key named `name` to a new session keyring of this test process (so that
/// nothing is left in a keyring shared with the shell that ran it).
fn add_session_key(name: &str) {
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    runtime_core::process::join_new_session_keyring().unwrap();
    let typ = CString::new("user").unwrap();
    let desc = CString::new(name).unwrap();
    // SAFETY: add_key reads the two strings and the 1-byte payload, all valid for the call.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            typ.as_ptr(),
            desc.as_ptr(),
            b"x".as_ptr(),
            1usize,
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    assert!(
        id > 0,
        "add_key {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// New namespaces of `types` (those not yet listed); with a user namespace, container ids
/// 0–65535 map to host ids from 100000.
fn add_namespaces(
    linux: &mut oci_spec::runtime::Linux,
    types: &[oci_spec::runtime::LinuxNamespaceType],
) {
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for typ in types {
        if !namespaces.iter().any(|ns| ns.typ() == *typ) {
            namespaces.push(
                oci_spec::runtime::LinuxNamespaceBuilder::default()
                    .typ(*typ)
                    .build()
                    .unwrap(),
            );
        }
    }
    linux.set_namespaces(Some(namespaces));
    if types.contains(&oci_spec::runtime::LinuxNamespaceType::User) {
        let map = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap();
        linux
            .set_uid_mappings(Some(vec![map]))
            .set_gid_mappings(Some(vec![map]));
    }
}

fn exit_code(pid: i32) -> i32 {
    match waitpid(Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

fn init_is_the_callers_child_and_its_exit_code_comes_back(launcher: &Launcher) {
    let bundle = Bundle::new("exit");
    let created = bundle.create(launcher, &["sh", "-c", "exit 7"]);
    let pid = created.pid();
    assert_eq!(
        parent_of(pid),
        std::process::id() as i32,
        "the init must be the caller's child"
    );
    // Born in its cgroup2 directory, moved itself into every v1 hierarchy: in its cgroup
    // everywhere before it runs the user's program.
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = bundle.cgroups_path();
    for line in cgroups.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(Path::new(path), want, "cgroup line {line:?} of the init");
    }
    created.start().unwrap();
    assert_eq!(exit_code(pid), 7);
}

/// CVE-2019-5736: while the init waits before exec it runs our binary. Processes of the
/// container must not be able to open it through /proc/PID/exe (non-dumpable), and even the
/// host's root sees it on a read-only mount, so the binary cannot be rewritten through it.
fn created_init_is_non_dumpable_and_runs_from_a_read_only_view(launcher: &Launcher) {
    let bundle = Bundle::new("dumpable");
    let created = bundle.create(launcher, &["sh", "-c", "true"]);
    let pid = created.pid();
    let exe = format!("/proc/{pid}/exe");

    let vfs = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "{exe} is on a writable mount"
    );

    // A process with the same uid but without CAP_SYS_PTRACE, like one in the container.
    // SAFETY: the child only makes syscalls and leaves with _exit.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let _ = caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_PTRACE,
            );
            let _ = caps::drop(
                None,
                caps::CapSet::Permitted,
                caps::Capability::CAP_SYS_PTRACE,
            );
            let path = CString::new(exe.clone()).unwrap();
            let mut buf = [0u8; 256];
            // SAFETY: readlink into a buffer of the given size.
            let rc = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            let denied = rc < 0
                && matches!(
                    nix::errno::Errno::last(),
                    nix::errno::Errno::EACCES | nix::errno::Errno::EPERM
                );
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(if denied { 0 } else { 1 }) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(
                exit_code(child.as_raw()),
                0,
                "{exe} was readable without CAP_SYS_PTRACE"
            );
        }
    }
    created.start().unwrap();
    assert_eq!(exit_code(pid), 0);
}

fn a_missing_program_fails_create_naming_it(launcher: &Launcher) {
    let bundle = Bundle::new("missing");
    let err = bundle
        .spawn(launcher, &["/no-such-program"])
        .wait_ready()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no-such-program"), "{err}");
}

/// A CRI spec denies every device and lists none: the default devices stay usable (the
/// device cgroup gets runc's default allow rules after the spec's).
fn default_devices_are_usable_under_a_deny_all_device_rule(launcher: &Launcher) {
    let bundle = Bundle::new("devices");
    let mut spec = bundle.spec(&[
        "sh",
        "-c",
        "echo x > /dev/null && head -c 1 /dev/zero > /dev/null && exit 3",
    ]);
    let mut deny_all = oci_spec::runtime::LinuxDeviceCgroup::default();
    deny_all.set_allow(false).set_access(Some("rwm".into()));
    let mut linux = spec.linux().clone().unwrap();
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(vec![deny_all]));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    assert_eq!(bundle.run_spec(launcher, spec), 3);
}

/// CVE-2024-21626 class: blocked before exec, the init has resolved every spec path (mounts,
/// devices, the program, the cwd). At that point it holds nothing but stdio and its channel
/// socket: no host directory (the setup helper's cgroup2 directory, opened for
/// CLONE_INTO_CGROUP) through which `/proc/self/fd/N/..` would lead out of the root.
fn created_init_holds_only_stdio_and_its_channel(launcher: &Launcher) {
    let bundle = Bundle::new("fds");
    let created = bundle.create(launcher, &["sh", "-c", "true"]);
    let pid = created.pid();
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_str().unwrap().parse().unwrap();
            let target = fs::read_link(e.path()).unwrap();
            (n, target.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    let numbers: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [0, 1, 2, 3], "fds of the created init: {fds:?}");
    assert!(fds[3].1.starts_with("socket:"), "fd 3: {fds:?}");
    for fd in 0..=2 {
        let st = nix::sys::stat::stat(format!("/proc/{pid}/fd/{fd}").as_str()).unwrap();
        assert_ne!(st.st_mode & libc::S_IFMT, libc::S_IFDIR, "fd {fd}: {fds:?}");
    }
    created.start().unwrap();
    assert_eq!(exit_code(pid), 0);
}

/// A host directory fd the caller forgot to mark close-on-exec reaches the setup helper and
/// would reach the init: the init closes it before it resolves a spec path, so an args[0] or
/// cwd through `/proc/self/fd/N/..` cannot reach the host directory.
fn a_host_directory_fd_of_the_caller_does_not_reach_spec_paths(launcher: &Launcher) {
    let victim = tempfile::Builder::new()
        .prefix("mini-victim-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::copy("/bin/busybox", victim.path().join("sh")).unwrap();
    // Not close-on-exec, as a careless caller would leave it.
    let root = fs::File::open("/").unwrap();
    // Above the fds the launcher sets up in the helper (stdio, channel).
    // SAFETY: F_DUPFD returns a new fd (not close-on-exec) that this test owns.
    let n = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&root), libc::F_DUPFD, 40) };
    assert!(n >= 40);
    // SAFETY: n is a fresh fd nothing else owns.
    let leaked = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) };
    let up = "../".repeat(12);
    let host = victim
        .path()
        .strip_prefix("/")
        .unwrap()
        .display()
        .to_string();

    let bundle = Bundle::new("leakexe");
    let program = format!("/proc/self/fd/{n}/{up}{host}/sh");
    let result = bundle
        .spawn(launcher, &[&program, "-c", "true"])
        .wait_ready();
    let exe_refused = result.is_err();
    if let Ok(created) = result {
        let _ = nix::sys::signal::kill(
            Pid::from_raw(created.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = exit_code(created.pid());
    }

    let bundle = Bundle::new("leakcwd");
    let mut spec = bundle.spec(&["sh", "-c", "true"]);
    let mut process = spec.process().clone().unwrap();
    process.set_cwd(PathBuf::from(format!("/proc/self/fd/{n}/{up}{host}/made")));
    spec.set_process(Some(process));
    let result = bundle.spawn_spec(launcher, spec).wait_ready();
    if let Ok(created) = result {
        let pid = created.pid();
        created.start().unwrap();
        let _ = exit_code(pid);
    }
    drop(leaked);
    assert!(
        exe_refused,
        "create succeeded with args[0] {program} through a leaked host fd"
    );
    assert!(
        !victim.path().join("made").exists(),
        "the cwd was created on the host through a leaked fd"
    );
}

/// A host block device that root can open here (a loop device will do), as `(major, minor)`.
fn openable_block_device() -> Option<(u64, u64)> {
    fs::read_dir("/sys/dev/block")
        .ok()?
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (major, minor) = name.split_once(':')?;
            let uevent = fs::read_to_string(e.path().join("uevent")).ok()?;
            let dev = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            fs::File::open(format!("/dev/{dev}")).ok()?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
}

/// A spec without `linux.resources` still gets a device cgroup: a block device node made with
/// CAP_MKNOD cannot be opened, while the default devices work.
fn without_resources_a_device_node_cannot_be_read(launcher: &Launcher) {
    let (major, minor) = openable_block_device().expect("a block device root can open here");
    let bundle = Bundle::new("nodevrules");
    let mut spec = bundle.spec(&[
        "sh",
        "-c",
        &format!(
            "mknod /dev/disk-node b {major} {minor} || exit 10; echo x > /dev/null || exit 11; \
             head -c 1 /dev/disk-node > /dev/null 2>&1 && exit 12; exit 3"
        ),
    ]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_resources(None);
    spec.set_linux(Some(linux));
    let mut process = spec.process().clone().unwrap();
    let caps: std::collections::HashSet<_> = [oci_spec::runtime::Capability::Mknod].into();
    let mut set = oci_spec::runtime::LinuxCapabilities::default();
    set.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(Default::default()))
        .set_ambient(Some(Default::default()));
    process.set_capabilities(Some(set));
    spec.set_process(Some(process));
    assert_eq!(
        bundle.run_spec(launcher, spec),
        3,
        "10: mknod failed, 11: /dev/null unusable, 12: the block device {major}:{minor} was opened"
    );
}

/// Namespaced sysctls and `oomScoreAdj` are written through the container's own procfs and
/// land inside: the container reads them back, the host keeps its values.
fn sysctls_and_oom_score_adj_land_inside(launcher: &Launcher) {
    for userns in [false, true] {
        sysctls_and_oom_score_adj_land_inside_of(launcher, userns);
    }
}

fn sysctls_and_oom_score_adj_land_inside_of(launcher: &Launcher, userns: bool) {
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let bundle = Bundle::new(if userns { "sysctl-userns" } else { "sysctl" });
    let mut spec = bundle.spec(&[
        "sh",
        "-c",
        "[ $(cat /proc/sys/kernel/shmmax) = 7654321 ] || exit 10; \
         [ $(cat /proc/self/oom_score_adj) = 321 ] || exit 11; exit 3",
    ]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_sysctl(Some(
        [("kernel.shmmax".to_string(), "7654321".to_string())].into(),
    ));
    if userns {
        add_namespaces(&mut linux, &[oci_spec::runtime::LinuxNamespaceType::User]);
    }
    spec.set_linux(Some(linux));
    let mut process = spec.process().clone().unwrap();
    process.set_oom_score_adj(Some(321));
    spec.set_process(Some(process));
    assert_eq!(
        bundle.run_spec(launcher, spec),
        3,
        "user namespace {userns}: 10: shmmax not set inside, 11: oom_score_adj not set"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
}

/// CVE-2022-29162: inheritable and ambient capabilities the caller holds do not reach the
/// container's process when the spec asks for none.
fn inheritable_and_ambient_capabilities_of_the_caller_do_not_reach_the_process(
    launcher: &Launcher,
) {
    use caps::{CapSet, Capability};
    let bundle = Bundle::new("capinh");
    let mut spec = bundle.spec(&[
        "sh",
        "-c",
        "grep -q '^CapInh:\t0000000000000000' /proc/self/status || exit 10; \
         grep -q '^CapAmb:\t0000000000000000' /proc/self/status || exit 11; exit 3",
    ]);
    let mut process = spec.process().clone().unwrap();
    let mut set = process.capabilities().clone().unwrap();
    set.set_inheritable(Some(Default::default()))
        .set_ambient(Some(Default::default()));
    process.set_capabilities(Some(set));
    spec.set_process(Some(process));
    // The caller (this process) holds CAP_KILL inheritable and ambient; the helper and the init
    // inherit both across their exec and clone.
    caps::raise(None, CapSet::Inheritable, Capability::CAP_KILL).unwrap();
    caps::raise(None, CapSet::Ambient, Capability::CAP_KILL).unwrap();
    let code = bundle.run_spec(launcher, spec);
    caps::clear(None, CapSet::Ambient).unwrap();
    caps::clear(None, CapSet::Inheritable).unwrap();
    assert_eq!(code, 3, "10: CapInh not empty, 11: CapAmb not empty");
}

/// A spec naming a cgroup that already holds processes in only some hierarchies (here the
/// cgroup2 and memory ones of a hybrid host, not `pids`) is refused: no limit or device rule
/// lands on those processes, they survive, and the directories Create made elsewhere are
/// removed again while the occupied ones are left to their owner.
fn a_cgroup_occupied_in_some_hierarchies_only_is_refused_and_left_alone(launcher: &Launcher) {
    let bundle = Bundle::new("occupied");
    let victim = format!("{}/victim", bundle.cgroup_parent);
    let victim_rel = victim.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut occupied: Vec<PathBuf> = ["unified", "memory"]
        .iter()
        .map(|h| root.join(h))
        .filter(|h| h.is_dir())
        .collect();
    if occupied.is_empty() {
        occupied.push(root.to_path_buf());
    }
    let mut sleeper = std::process::Command::new("/bin/busybox")
        .args(["sleep", "1000"])
        .spawn()
        .unwrap();
    let dirs: Vec<PathBuf> = occupied.iter().map(|h| h.join(victim_rel)).collect();
    for dir in &dirs {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    }
    let limit_before = fs::read_to_string(
        root.join("memory")
            .join(victim_rel)
            .join("memory.limit_in_bytes"),
    )
    .ok();

    let mut spec = bundle.spec(&["true"]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_cgroups_path(Some(PathBuf::from(&victim)));
    let mut memory = oci_spec::runtime::LinuxMemory::default();
    memory.set_limit(Some(64 << 20));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_memory(Some(memory));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    let result = bundle.spawn_spec(launcher, spec).wait_ready();

    let alive = sleeper.try_wait().unwrap().is_none();
    let limit_after = fs::read_to_string(
        root.join("memory")
            .join(victim_rel)
            .join("memory.limit_in_bytes"),
    )
    .ok();
    let made_elsewhere: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|h| h.path().join(victim_rel))
        .filter(|d| d.is_dir() && !dirs.contains(d))
        .collect();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    if let Ok(created) = &result {
        // Without the guard: the container was built inside the occupied cgroup.
        let _ = nix::sys::signal::kill(Pid::from_raw(created.pid()), nix::sys::signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(created.pid()), None);
    }
    for hierarchy in fs::read_dir(root).unwrap().flatten() {
        remove_cgroup_tree(&hierarchy.path().join(victim_rel));
    }
    let err = result.map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("already holds processes"), "{err}");
    assert!(alive, "the cgroup's own process was killed");
    assert_eq!(
        limit_before, limit_after,
        "a limit landed on the occupied cgroup"
    );
    assert!(made_elsewhere.is_empty(), "left behind: {made_elsewhere:?}");
}

/// Removes `dir` and its sub-cgroups, deepest first (rmdir only).
/// What an exec left to check: its output, and its cgroups read while it ran.
struct ExecRun {
    out: String,
    cgroup: String,
}

/// Runs `process` (an OCI process as JSON) as an exec in the running container of `bundle`
/// (built from `spec`, init `init`); the process must end with status 0 and outlive the
/// exec's start by a moment (its cgroups are read then).
fn run_exec(
    launcher: &Launcher,
    bundle: &Bundle,
    spec: &Spec,
    init: i32,
    process: serde_json::Value,
) -> ExecRun {
    let cgroup = CgroupManager::new(&bundle.id, Some(&bundle.cgroups_path())).unwrap();
    let exec = ExecConfig {
        container_id: bundle.id.clone(),
        exec_id: "probe".into(),
        spec: exec_spec(spec, process.to_string().as_bytes()).unwrap(),
        cgroup,
        no_new_keyring: false,
        pass_fds: 0,
        bundle: None,
    };
    let (read, write) = nix::unistd::pipe().unwrap();
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, init, 0) };
    assert!(fd >= 0, "pidfd_open {init}");
    // SAFETY: a new fd nothing else owns.
    let init_fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let stdio = InitStdio {
        stdin: null(),
        stdout: write,
        stderr: null(),
    };
    let mut pending = launcher
        .spawn_exec(exec, stdio, std::os::fd::AsFd::as_fd(&init_fd))
        .unwrap();
    let helper = pending.helper_pid();
    let pid = pending.wait_pid().unwrap();
    pending.wait_exec().unwrap();
    let _ = waitpid(Pid::from_raw(helper), None);
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        parent_of(pid),
        std::process::id() as i32,
        "the exec is the caller's child"
    );
    assert_eq!(exit_code(pid), 0);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(read), &mut out).unwrap();
    ExecRun { out, cgroup }
}

/// An exec into a container with every namespace of its own (user with id maps, cgroup and
/// time included) joins each of them and the container's cgroups, with the exec's user,
/// oom_score_adj, rlimits and cwd, and is the caller's child.
fn exec_joins_every_namespace_and_the_cgroup_of_the_container(launcher: &Launcher) {
    const NAMESPACES: [&str; 8] = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];
    let bundle = Bundle::new("exec-ns");
    let mut spec = bundle.spec(&["busybox", "sleep", "30"]);
    let mut linux = spec.linux().clone().unwrap();
    add_namespaces(
        &mut linux,
        &[
            oci_spec::runtime::LinuxNamespaceType::User,
            oci_spec::runtime::LinuxNamespaceType::Cgroup,
            oci_spec::runtime::LinuxNamespaceType::Time,
        ],
    );
    spec.set_linux(Some(linux));
    let created = bundle.create_spec(launcher, spec.clone());
    let init = created.pid();
    created.start().unwrap();

    let script = format!(
        "for n in {}; do busybox readlink /proc/self/ns/$n; done; busybox id -u; \
         busybox cat /proc/self/oom_score_adj; ulimit -n; busybox pwd; busybox sleep 1",
        NAMESPACES.join(" ")
    );
    let process = serde_json::json!({
        "args": ["sh", "-c", script],
        "env": ["PATH=/bin"],
        "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000},
        "oomScoreAdj": 321,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
    });
    let run = run_exec(launcher, &bundle, &spec, init, process);
    let init_view: String = NAMESPACES
        .iter()
        .map(|n| {
            let link = fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
            let own = fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
            assert_ne!(link, own, "the container has a {n} namespace of its own");
            format!("{}\n", link.display())
        })
        .collect();
    assert_eq!(
        run.out,
        format!("{init_view}1000\n321\n512\n/tmp\n"),
        "the exec's namespaces, uid, oom_score_adj, rlimit and cwd"
    );
    assert_eq!(
        run.cgroup,
        fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap(),
        "the exec's cgroups"
    );
    let _ = nix::sys::signal::kill(Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL);
    exit_code(init);
}

/// The kernel's keyrings are not namespaced: an exec gets a session keyring of its own, so a
/// key of the caller's session is not visible in the container's /proc/keys.
fn exec_does_not_possess_the_callers_session_keys(launcher: &Launcher) {
    let bundle = Bundle::new("exec-keys");
    let mut spec = bundle.spec(&["busybox", "sleep", "30"]);
    let mut linux = spec.linux().clone().unwrap();
    // /proc/keys readable inside (masked by default).
    linux.set_masked_paths(Some(Vec::new()));
    spec.set_linux(Some(linux));
    let key = format!("mini-exec-key-{}", std::process::id());
    add_session_key(&key);
    let created = bundle.create_spec(launcher, spec.clone());
    let init = created.pid();
    created.start().unwrap();
    let process = serde_json::json!({
        "args": ["sh", "-c", format!("busybox grep -c {key} /proc/keys; busybox sleep 0.2")],
        "env": ["PATH=/bin"],
        "cwd": "/",
        // Not the key's owner: it sees the key only if it possesses it.
        "user": {"uid": 1000, "gid": 1000},
    });
    let run = run_exec(launcher, &bundle, &spec, init, process);
    assert_eq!(
        run.out, "0\n",
        "the caller's key {key} is visible to the exec"
    );
    let _ = nix::sys::signal::kill(Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL);
    exit_code(init);
}

fn remove_cgroup_tree(dir: &Path) {
    for child in fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.path().is_dir() {
            remove_cgroup_tree(&child.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// `process.terminal`: the process's stdio is a pty of the container's devpts whose master
/// comes back with Ready, sized by `process.consoleSize` before the process runs.
fn terminal_master_comes_back_sized_by_console_size(launcher: &Launcher) {
    use std::io::Read;
    let bundle = Bundle::new("tty");
    let mut spec = bundle.spec(&["sh", "-c", "stty size; tty"]);
    let mut process = spec.process().clone().unwrap();
    process.set_terminal(Some(true));
    process.set_console_size(Some(
        oci_spec::runtime::BoxBuilder::default()
            .height(33u64)
            .width(77u64)
            .build()
            .unwrap(),
    ));
    spec.set_process(Some(process));
    let mut created = bundle.create_spec(launcher, spec);
    let master = created
        .take_console()
        .expect("the pty master comes with Ready");
    let pid = created.pid();
    created.start().unwrap();
    let mut output = Vec::new();
    // Read until the process's side is closed everywhere (EIO).
    let _ = fs::File::from(master).read_to_end(&mut output);
    assert_eq!(exit_code(pid), 0);
    let output = String::from_utf8_lossy(&output);
    assert!(
        output.starts_with("33 77\r\n/dev/pts/0\r\n"),
        "stty size and tty: {output:?}"
    );
}

/// Without a devpts in the container there is no pty to allocate: Create fails naming
/// `process.terminal`.
fn terminal_without_a_container_ptmx_fails_naming_process_terminal(launcher: &Launcher) {
    let bundle = Bundle::new("tty-noptmx");
    let mut spec = bundle.spec(&["true"]);
    let mut process = spec.process().clone().unwrap();
    process.set_terminal(Some(true));
    spec.set_process(Some(process));
    let mounts = spec.mounts().clone().unwrap_or_default();
    let mounts = mounts
        .into_iter()
        .filter(|m| !m.destination().starts_with("/dev"))
        .collect();
    spec.set_mounts(Some(mounts));
    let pending = bundle.spawn_spec(launcher, spec);
    let helper = pending.helper_pid().expect("spawn execs a helper");
    let err = pending
        .wait_ready()
        .expect_err("a terminal without /dev/ptmx");
    let _ = waitpid(Pid::from_raw(helper), None);
    let msg = err.to_string();
    assert!(
        msg.contains("process.terminal") && msg.contains("/dev/ptmx"),
        "{msg}"
    );
}

/// A test: its name and its body.
type Test = (&'static str, fn(&Launcher));

fn main() {
    runtime_core::process::run_helper_if_requested();
    if !Path::new("/bin/busybox").exists() || !nix::unistd::Uid::effective().is_root() {
        eprintln!("container tests need root and /bin/busybox (busybox-static)");
        std::process::exit(1);
    }
    let launcher = Launcher::new().unwrap();
    let tests: [Test; 14] = [
        (
            "terminal_master_comes_back_sized_by_console_size",
            terminal_master_comes_back_sized_by_console_size,
        ),
        (
            "terminal_without_a_container_ptmx_fails_naming_process_terminal",
            terminal_without_a_container_ptmx_fails_naming_process_terminal,
        ),
        (
            "exec_does_not_possess_the_callers_session_keys",
            exec_does_not_possess_the_callers_session_keys,
        ),
        (
            "exec_joins_every_namespace_and_the_cgroup_of_the_container",
            exec_joins_every_namespace_and_the_cgroup_of_the_container,
        ),
        (
            "a_cgroup_occupied_in_some_hierarchies_only_is_refused_and_left_alone",
            a_cgroup_occupied_in_some_hierarchies_only_is_refused_and_left_alone,
        ),
        (
            "inheritable_and_ambient_capabilities_of_the_caller_do_not_reach_the_process",
            inheritable_and_ambient_capabilities_of_the_caller_do_not_reach_the_process,
        ),
        (
            "sysctls_and_oom_score_adj_land_inside",
            sysctls_and_oom_score_adj_land_inside,
        ),
        (
            "without_resources_a_device_node_cannot_be_read",
            without_resources_a_device_node_cannot_be_read,
        ),
        (
            "created_init_holds_only_stdio_and_its_channel",
            created_init_holds_only_stdio_and_its_channel,
        ),
        (
            "a_host_directory_fd_of_the_caller_does_not_reach_spec_paths",
            a_host_directory_fd_of_the_caller_does_not_reach_spec_paths,
        ),
        (
            "init_is_the_callers_child_and_its_exit_code_comes_back",
            init_is_the_callers_child_and_its_exit_code_comes_back,
        ),
        (
            "created_init_is_non_dumpable_and_runs_from_a_read_only_view",
            created_init_is_non_dumpable_and_runs_from_a_read_only_view,
        ),
        (
            "default_devices_are_usable_under_a_deny_all_device_rule",
            default_devices_are_usable_under_a_deny_all_device_rule,
        ),
        (
            "a_missing_program_fails_create_naming_it",
            a_missing_program_fails_create_naming_it,
        ),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        match std::panic::catch_unwind(|| test(&launcher)) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
