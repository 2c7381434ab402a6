//! `delete`: containerd runs it after every disconnect from a shim (a normal Shutdown too),
//! with a 5 s timeout. It must be fast, idempotent, and succeed when nothing is left; when
//! the daemon died it kills what the container left, unmounts its rootfs and removes its
//! cgroup and socket. It prints a `DeleteResponse` and exits 0.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::api::DeleteResponse;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use protobuf::Message;
use runtime_core::cgroups::CgroupManager;

use crate::args::Args;

/// The bundle files where the daemon records its container's init as soon as it learns of
/// it: the pid, and its start time (for `delete` to tell it from a later process that reused
/// the pid).
pub const INIT_PID: &str = "init.pid";
pub const INIT_START: &str = "init.start";
/// The bundle file where Create records the container's cgroup as soon as it has chosen it:
/// the driver, the directories, then the directories the setup helper made, and with the
/// systemd driver the scope and, once the init is in it, the scope's identity
/// ([`CgroupManager::save`]).
pub const CGROUP_RECORD: &str = "cgroup.json";
/// The bundle file the daemon writes when it runs the container's poststop hooks (Delete):
/// a `delete` after the daemon was killed runs them itself, unless it is there.
pub const POSTSTOP_RAN: &str = "poststop.ran";

pub fn delete(args: &Args) -> Result<(), String> {
    // containerd ends this process after 5 s: a slow systemd must not take all of them, and
    // the poststop hooks get what is left of DELETE_BUDGET.
    let deadline = Instant::now() + DELETE_BUDGET;
    runtime_core::cgroups::systemd::limit_for_delete();
    let bundle = args
        .bundle_dir()
        .map_err(|e| format!("working directory: {e}"))?;
    let pid = read_number(&bundle.join(INIT_PID)).unwrap_or(0);
    let start = read_number(&bundle.join(INIT_START));
    let gone = clean(&bundle, &args.id, pid, start);
    if pid > 0 && gone {
        poststop(&bundle, &args.id, deadline);
    } else if pid > 0 {
        eprintln!("container {}: still running: no poststop hooks", args.id);
    }
    let response = DeleteResponse {
        pid: pid.max(0) as u32,
        exit_status: 128 + Signal::SIGKILL as u32,
        exited_at: protobuf::MessageField::some(crate::events::timestamp(SystemTime::now())),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .map_err(|e| format!("encode DeleteResponse: {e}"))?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| format!("write DeleteResponse: {e}"))
}

/// Best effort, each step on its own: a failure is reported on stderr (containerd's log)
/// and the next step still runs. Whether the container's processes are gone.
fn clean(bundle: &Path, id: &str, pid: i32, start: Option<u64>) -> bool {
    // The cgroup Create chose, with the driver it chose (the runtime options and the host
    // decide, and `delete` knows neither): without the record, Create stopped before it
    // created any cgroup, and there is none to look for. A systemd scope is killed and
    // stopped only while it is the one Create started (kill_all and destroy check its
    // recorded identity, one D-Bus connection each at most: `delete` has 5 s): the name may
    // be someone else's by now, and then its processes keep it from being removed here.
    let cgroup = match CgroupManager::load_on_host(&bundle.join(CGROUP_RECORD)) {
        Ok(cgroup) => cgroup,
        Err(err) => {
            eprintln!("{err}: no cgroup to remove");
            None
        }
    };
    // The cgroup is ours to empty only if our init was placed in it (its pid was recorded):
    // a Create that failed may have found it holding others' processes. Without a recorded
    // pid, what our setup left in it (an init the daemon never learnt of) dies with the
    // daemon (parent-death signal): wait for it to go, and remove what the setup helper
    // recorded it made, once empty. Either way a directory that was there before stays.
    let ours = pid > 0;

    // The recorded start time tells our init from a process that reused its pid; the init
    // may not be in the cgroup yet (stopped before it joined its v1 hierarchies).
    let init_alive = || match start {
        Some(start) => start_time(pid) == Some(start),
        None => cgroup.as_ref().is_some_and(|c| init_is_ours(pid, c)),
    };
    if ours && init_alive() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let empty = cgroup
        .as_ref()
        .is_some_and(|cgroup| settle(cgroup, ours, SETTLE));
    let rootfs = bundle.join("rootfs");
    if let Err(err) = runtime_core::rootfs::unmount_rootfs(&rootfs) {
        eprintln!("unmount {}: {err}", rootfs.display());
    }
    if let Some(cgroup) = &cgroup {
        if !empty {
            eprintln!("cgroup of {id} still holds processes: left in place");
        } else if let Err(err) = if ours {
            cgroup.destroy()
        } else {
            // No init of ours was recorded in it: only an unused cgroup is removed.
            cgroup.remove_if_unused()
        } {
            eprintln!("remove cgroup: {err}");
        }
    }
    if let Some(socket) = crate::bootstrap::recorded_socket(bundle) {
        crate::bootstrap::remove_dead_socket(&socket);
    }
    cgroup.is_none() || empty
}

/// The spec's poststop hooks of a created container whose daemon was killed before Delete
/// (runtime.md step 13: after the container is deleted), as `runc delete` runs them for the
/// stock shim. At most once: run only by whoever makes the mark ([`claim_poststop`]). Each
/// hook gets at most [`POSTSTOP_LIMIT`], all of them together what is left until
/// `deadline` (containerd ends this process after 5 s); those that do not fit are skipped.
fn poststop(bundle: &Path, id: &str, deadline: Instant) {
    use runtime_core::hooks::Stage;
    let spec = match oci_spec::runtime::Spec::load(bundle.join("config.json")) {
        Ok(spec) => spec,
        Err(err) => {
            eprintln!("poststop hooks: config.json: {err}");
            return;
        }
    };
    let hooks = match spec.hooks() {
        Some(hooks) if !Stage::Poststop.of(hooks).is_empty() => Stage::Poststop.of(hooks),
        _ => return,
    };
    // Not claimed when no hook could run: a retried delete may have the time.
    if deadline.saturating_duration_since(Instant::now()) < MIN_HOOK_TIME {
        eprintln!("container {id}: no time left in delete for the poststop hooks");
        return;
    }
    match claim_poststop(bundle) {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => eprintln!("{err}"),
    }
    let state = runtime_core::hooks::state(
        &spec,
        id,
        bundle,
        oci_spec::runtime::ContainerState::Stopped,
        0,
    );
    // Each gets at most POSTSTOP_LIMIT and what is left (whole seconds: a hook's timeout is
    // in seconds); once less than a second is left the rest are skipped.
    let adjust = |_: usize, hook: &oci_spec::runtime::Hook| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_HOOK_TIME {
            return None;
        }
        let limit = left.min(POSTSTOP_LIMIT).as_secs().max(1) as i64;
        let mut hook = hook.clone();
        hook.set_timeout(Some(hook.timeout().map_or(limit, |t| t.clamp(1, limit))));
        Some(hook)
    };
    if let Err(err) = runtime_core::hooks::run_each(Stage::Poststop, hooks, &state, adjust) {
        eprintln!("container {id}: {err}");
    }
}

/// Makes the bundle's [`POSTSTOP_RAN`] mark; whether this call made it (and so runs the
/// poststop hooks). A mark that cannot be made for another reason than its being there
/// is the error; the hooks still run then.
pub fn claim_poststop(bundle: &Path) -> std::io::Result<bool> {
    let mark = bundle.join(POSTSTOP_RAN);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&mark)
    {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(std::io::Error::new(
            err.kind(),
            format!("{}: {err}", mark.display()),
        )),
    }
}

/// How long each poststop hook may run in `delete`.
const POSTSTOP_LIMIT: Duration = Duration::from_secs(2);
/// The least time left in `delete` a poststop hook is started with.
const MIN_HOOK_TIME: Duration = Duration::from_secs(1);
/// What `delete` may take in all: containerd ends it after 5 s.
const DELETE_BUDGET: Duration = Duration::from_millis(4500);

/// How long `delete` waits for the processes in the container's cgroup to go, after the
/// SIGKILL (which on cgroup v1 waits up to 2 s itself): within containerd's 5 s timeout.
const SETTLE: Duration = Duration::from_secs(1);

/// Waits until `cgroup` holds no process, after SIGKILLing what is in it when `kill_first`;
/// whether it is empty (a cgroup that cannot be read counts as not empty).
fn settle(cgroup: &CgroupManager, kill_first: bool, timeout: Duration) -> bool {
    if kill_first && let Err(err) = cgroup.kill_all(Signal::SIGKILL) {
        eprintln!("kill the cgroup's processes: {err}");
    }
    let deadline = Instant::now() + timeout;
    loop {
        match cgroup.pids() {
            Ok(pids) if pids.is_empty() => return true,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}

/// Whether `pid` still is the container's init: its cgroup is the container's. Guards
/// against killing an unrelated process that reused the pid.
fn init_is_ours(pid: i32, cgroup: &CgroupManager) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    in_cgroup(&text, cgroup)
}

/// Whether a `/proc/PID/cgroup` text places the process exactly in one of the container's
/// cgroup directories (not in one that merely ends with the same names).
fn in_cgroup(proc_cgroup: &str, cgroup: &CgroupManager) -> bool {
    let ours: Vec<PathBuf> = cgroup
        .dirs()
        .filter_map(|d| d.dir.strip_prefix(&d.mount_point).ok())
        .map(|rel| Path::new("/").join(rel))
        .collect();
    proc_cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .any(|path| ours.iter().any(|o| o == Path::new(path)))
}

/// The start time of process `pid` (clock ticks after boot, `/proc/PID/stat` field 22): with
/// the pid, it names one process for the whole uptime.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces and ')': field 3 onwards.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle whose config.json has `n` poststop hooks, each appending a line to `ran`
    /// and then, if `slow`, sleeping past any limit.
    fn bundle_with_poststop_hooks(n: usize, slow: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let sleep = if slow { "; sleep 30" } else { "" };
        let hook = serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo x >> {}{sleep}", ran.display())],
            "timeout": 30,
        });
        let spec = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "hooks": {"poststop": vec![hook; n]},
        });
        std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        dir
    }

    fn runs(bundle: &Path) -> usize {
        std::fs::read_to_string(bundle.join("ran"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[test]
    fn poststop_in_delete_runs_once_and_within_what_is_left_of_the_budget() {
        let bundle = bundle_with_poststop_hooks(3, true);
        // 3.5 s left for three slow hooks: 2 s, then 1 s, then less than a second: skipped.
        let deadline = Instant::now() + Duration::from_millis(3500);
        poststop(bundle.path(), "c1", deadline);
        assert_eq!(runs(bundle.path()), 2);
        // Marked: a second delete runs none.
        poststop(bundle.path(), "c1", Instant::now() + Duration::from_secs(4));
        assert_eq!(runs(bundle.path()), 2);
        // Quick hooks all run in a short budget.
        let bundle = bundle_with_poststop_hooks(5, false);
        poststop(bundle.path(), "c1", Instant::now() + Duration::from_secs(2));
        assert_eq!(runs(bundle.path()), 5);
        // No time left: nothing runs, nothing is marked (a retried delete runs them).
        let bundle = bundle_with_poststop_hooks(1, false);
        poststop(bundle.path(), "c1", Instant::now());
        assert_eq!(runs(bundle.path()), 0);
        assert!(!bundle.path().join(POSTSTOP_RAN).exists());
    }

    #[test]
    fn the_poststop_mark_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(claim_poststop(dir.path()).unwrap());
        assert!(!claim_poststop(dir.path()).unwrap());
        assert!(claim_poststop(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn start_time_names_one_process() {
        let me = std::process::id() as i32;
        let ours = start_time(me).expect("our own start time");
        assert_eq!(start_time(me), Some(ours));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let theirs = start_time(child.id() as i32).expect("a child's start time");
        assert!(theirs >= ours, "{theirs} < {ours}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(start_time(child.id() as i32), None);
    }

    #[test]
    fn the_init_must_be_in_exactly_the_containers_cgroup() {
        use runtime_core::cgroups::{ProcessCgroups, parse_mountinfo};
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                         31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let hierarchies = parse_mountinfo(mountinfo, Path::new("/sys/fs/cgroup")).unwrap();
        let own = ProcessCgroups::parse("5:memory:/\n0::/\n").unwrap();
        let cgroup = CgroupManager::with_hierarchies(
            &hierarchies,
            &own,
            "c1",
            Some(Path::new("/default/c1")),
        )
        .unwrap();
        assert!(in_cgroup("5:memory:/default/c1\n0::/default/c1\n", &cgroup));
        // Same trailing names, another cgroup: not ours.
        assert!(!in_cgroup(
            "5:memory:/x/default/c1\n0::/x/default/c1\n",
            &cgroup
        ));
        assert!(!in_cgroup("5:memory:/default/c10\n", &cgroup));
    }
}
