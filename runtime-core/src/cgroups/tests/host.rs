//! Tests on this host's real cgroups (root only; skipped otherwise). Each test works under its
//! own `/mini-unit-<pid>-<n>` parent in every hierarchy, removed by a guard even on failure.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::resources;
use crate::cgroups::*;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Removes the test's cgroup directories in every hierarchy on drop, and kills and reaps the
/// child it was given. Also removes what crashed earlier runs of these tests left behind.
struct Guard {
    parent: String,
    mounts: Vec<PathBuf>,
    child: Option<Pid>,
}

impl Guard {
    fn new() -> Self {
        let h = discover(Path::new(DEFAULT_ROOT)).expect("cgroup mounts");
        let mounts: Vec<PathBuf> =
            h.v1.iter()
                .chain(h.unified.iter())
                .map(|h| h.mount_point.clone())
                .collect();
        for mount in &mounts {
            remove_stale(mount);
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Self {
            parent: format!("mini-unit-{}-{n}", std::process::id()),
            mounts,
            child: None,
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/{}/c", self.parent))
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.mounts.iter().map(|m| m.join(&self.parent)).collect()
    }
}

/// Removes `mini-unit-<pid>-*` trees whose test process no longer exists.
fn remove_stale(mount: &Path) {
    let Ok(entries) = fs::read_dir(mount) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mini-unit-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            rmdir_tree(&entry.path());
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        for dir in self.dirs() {
            rmdir_tree(&dir);
        }
    }
}

/// A child that sleeps until killed. Only async-signal-safe calls after fork.
/// A created cgroup `c` below the guard's path, holding a sleeping child (which the guard
/// kills if the test fails).
fn created_with_sleeping_child() -> (Guard, CgroupManager, Pid) {
    let mut guard = Guard::new();
    let m = CgroupManager::new("c", Some(&guard.path())).unwrap();
    m.create().unwrap();
    let child = sleeping_child();
    guard.child = Some(child);
    m.add_process(child.as_raw()).unwrap();
    (guard, m, child)
}

fn sleeping_child() -> Pid {
    // SAFETY: the child calls only pause() and _exit(), both async-signal-safe, so forking
    // this multi-threaded test process is sound.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => loop {
            // SAFETY: pause() takes no arguments and only waits for a signal.
            unsafe { libc::pause() };
        },
        ForkResult::Parent { child } => child,
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn host_layout_is_hybrid() {
    if !is_root() {
        return;
    }
    assert_eq!(detect(Path::new(DEFAULT_ROOT)).unwrap(), Layout::Hybrid);
}

#[test]
fn limits_and_membership_reach_the_real_hierarchies_and_destroy_removes_them() {
    if !is_root() {
        return;
    }
    let mut guard = Guard::new();
    let m = CgroupManager::new("c", Some(&guard.path())).unwrap();
    m.create().unwrap();
    m.apply(&resources(
        r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32}, "cpu": {"shares": 512}}"#,
    ))
    .unwrap();
    let child = sleeping_child();
    guard.child = Some(child);
    m.add_process(child.as_raw()).unwrap();

    let memory = m.v1_path("memory").unwrap();
    assert_eq!(
        memory,
        Path::new(DEFAULT_ROOT)
            .join("memory")
            .join(&guard.parent)
            .join("c")
    );
    assert_eq!(read(memory, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(m.v1_path("pids").unwrap(), "pids.max"), "32");
    assert_eq!(read(m.v1_path("cpu").unwrap(), "cpu.shares"), "512");
    let cpuset = m.v1_path("cpuset").unwrap();
    assert_eq!(
        read(cpuset, "cpuset.cpus"),
        read(Path::new("/sys/fs/cgroup/cpuset"), "cpuset.cpus")
    );
    assert!(m.unified_path().is_some());
    for d in m.dirs() {
        assert_eq!(procs(&d.dir), [child.as_raw()], "{}", d.dir.display());
    }
    assert_eq!(m.pids().unwrap(), [child.as_raw()]);

    m.kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(
        waitpid(child, None).unwrap(),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    guard.child = None;
    m.destroy().unwrap();
    for d in m.dirs() {
        assert!(!d.dir.exists(), "{} still exists", d.dir.display());
    }
    // The shared parent stays: other containers may live there.
    assert!(guard.dirs().iter().all(|d| d.exists()));
    // Destroying again finds nothing and succeeds.
    m.destroy().unwrap();
}

#[test]
fn kill_all_with_sigterm_signals_each_process_in_the_cgroup() {
    if !is_root() {
        return;
    }
    let (mut guard, m, child) = created_with_sleeping_child();
    m.kill_all(Signal::SIGTERM).unwrap();
    assert_eq!(
        waitpid(child, None).unwrap(),
        WaitStatus::Signaled(child, Signal::SIGTERM, false)
    );
    guard.child = None;
    m.destroy().unwrap();
}

#[test]
fn freeze_stops_the_cgroup_and_thaw_resumes_it() {
    if !is_root() {
        return;
    }
    let (mut guard, m, child) = created_with_sleeping_child();
    let freezer = m.v1_path("freezer").unwrap();
    m.freeze().unwrap();
    assert_eq!(read(freezer, "freezer.state"), "FROZEN");
    m.thaw().unwrap();
    assert_eq!(read(freezer, "freezer.state"), "THAWED");
    m.kill_all(Signal::SIGKILL).unwrap();
    let _ = waitpid(child, None);
    guard.child = None;
    m.destroy().unwrap();
}

#[test]
fn a_value_the_kernel_refuses_fails_naming_the_file_and_value() {
    if !is_root() {
        return;
    }
    let guard = Guard::new();
    let m = CgroupManager::new("c", Some(&guard.path())).unwrap();
    m.create().unwrap();
    let err = m
        .apply(&resources(r#"{"cpu": {"cpus": "4095"}}"#))
        .unwrap_err();
    let cpuset = m.v1_path("cpuset").unwrap();
    // The kernel answers ERANGE or EINVAL depending on its version; the message names both.
    let msg = err.to_string();
    let prefix = format!("cgroup {}: write cpuset.cpus=4095: ", cpuset.display());
    assert!(
        msg.starts_with(&prefix) && msg.len() > prefix.len(),
        "{msg}"
    );
    m.destroy().unwrap();
}

#[test]
fn destroy_of_a_cgroup_never_created_succeeds() {
    if !is_root() {
        return;
    }
    let guard = Guard::new();
    let m = CgroupManager::new("c", Some(&guard.path())).unwrap();
    m.destroy().unwrap();
    assert!(guard.dirs().iter().all(|d| !d.exists()));
}

#[test]
fn sigkill_reaches_processes_of_a_frozen_cgroup() {
    if !is_root() {
        return;
    }
    let (mut guard, m, child) = created_with_sleeping_child();
    m.freeze().unwrap();
    m.kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(
        waitpid(child, None).unwrap(),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    guard.child = None;
    m.destroy().unwrap();
}

#[test]
fn cgroup2_freeze_reports_frozen_in_cgroup_events() {
    if !is_root() {
        return;
    }
    let (mut guard, m, child) = created_with_sleeping_child();
    let unified = m.unified_path().unwrap();
    crate::cgroups::v2::set_frozen(unified, true).unwrap();
    assert!(read(unified, "cgroup.events").contains("frozen 1"));
    crate::cgroups::v2::set_frozen(unified, false).unwrap();
    assert!(read(unified, "cgroup.events").contains("frozen 0"));
    m.kill_all(Signal::SIGKILL).unwrap();
    let _ = waitpid(child, None);
    guard.child = None;
    m.destroy().unwrap();
}

/// Directories made with `nest`, removed on drop deepest first through their fds (their
/// paths may pass `PATH_MAX`), after killing and reaping the child placed in them.
struct Nested(Vec<std::os::fd::OwnedFd>, String, Option<Pid>);

impl Drop for Nested {
    fn drop(&mut self) {
        if let Some(child) = self.2.take() {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        while let Some(fd) = self.0.pop() {
            drop(fd);
            if let Some(parent) = self.0.last() {
                let _ = nix::unistd::unlinkat(
                    parent,
                    self.1.as_str(),
                    nix::unistd::UnlinkatFlags::RemoveDir,
                );
            }
        }
    }
}

/// Waits up to 5 s for `child` to end; its status then.
fn wait_briefly(child: Pid) -> Option<WaitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(20)),
            status => return status.ok(),
        }
    }
    None
}

#[test]
fn a_process_in_sub_cgroups_nested_past_path_max_is_listed_killed_and_removed() {
    if !is_root() {
        return;
    }
    let guard = Guard::new();
    let m = CgroupManager::new("c", Some(&guard.path())).unwrap();
    m.create().unwrap();
    let memory = m.v1_path("memory").unwrap();
    // 24 levels of 200-byte names: a host path of about 4900 bytes.
    let name = "n".repeat(200);
    let mut nested = Nested(super::nest(memory, &name, 24), name, None);
    // Only in the v1 memory hierarchy: cgroup.kill of the cgroup2 directory cannot reach it.
    let child = sleeping_child();
    nested.2 = Some(child);
    let bottom = nested.0.last().unwrap();
    super::tree::write_at(bottom.as_fd(), c"cgroup.procs", &child.to_string()).unwrap();

    assert_eq!(m.pids().unwrap(), [child.as_raw()]);
    m.kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(
        wait_briefly(child),
        Some(WaitStatus::Signaled(child, Signal::SIGKILL, false))
    );
    nested.2 = None;
    m.destroy().unwrap();
    assert!(!memory.exists());
    drop(nested);
}

#[test]
fn sigkill_reaches_a_process_in_a_sub_freezer_frozen_by_itself() {
    if !is_root() {
        return;
    }
    let (mut guard, m, child) = created_with_sleeping_child();
    let freezer = m.v1_path("freezer").unwrap();
    let sub = freezer.join("sub");
    fs::create_dir(&sub).unwrap();
    /// Thaws the sub-freezer before the guard kills the child.
    struct Thaw(PathBuf);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = fs::write(self.0.join("freezer.state"), "THAWED");
        }
    }
    let _thaw = Thaw(sub.clone());
    fs::write(sub.join("cgroup.procs"), child.to_string()).unwrap();
    v1::set_frozen(&sub, true).unwrap();
    // Frozen by itself: the parent is thawed and stays so.
    assert_eq!(read(freezer, "freezer.state"), "THAWED");
    assert_eq!(read(&sub, "freezer.self_freezing"), "1");

    m.kill_all(Signal::SIGKILL).unwrap();
    assert_eq!(
        wait_briefly(child),
        Some(WaitStatus::Signaled(child, Signal::SIGKILL, false))
    );
    guard.child = None;
    m.destroy().unwrap();
    assert!(!freezer.exists());
}
