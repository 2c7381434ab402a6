//! `delete`: containerd runs it after every disconnect from a shim (a normal Shutdown too),
//! with a 5 s timeout. It must be fast, idempotent, and succeed when nothing is left; when
//! the daemon died it kills what the container left, unmounts its rootfs and removes its
//! cgroup and socket. It prints a `DeleteResponse` and exits 0.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim_protos::api::DeleteResponse;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use protobuf::Message;
use runtime_core::cgroups::CgroupManager;

use crate::args::Args;

pub fn delete(args: &Args) -> Result<(), String> {
    let bundle = args
        .bundle_dir()
        .map_err(|e| format!("working directory: {e}"))?;
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    clean(&bundle, &args.id, pid);
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
/// and the next step still runs.
fn clean(bundle: &Path, id: &str, pid: i32) {
    // Read, not validated: cleaning up needs only the cgroup path, even of a spec that
    // Create refused.
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok();
    let cgroups_path = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.cgroups_path().clone());
    // The cgroup is ours to empty and remove only if our init was created in it (its pid was
    // recorded): a Create that failed may have found it holding others' processes.
    let cgroup = if pid > 0 {
        CgroupManager::new(id, cgroups_path.as_deref()).ok()
    } else {
        None
    };

    if pid > 0 && init_is_ours(pid, cgroups_path.as_deref(), id) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(cgroup) = &cgroup {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let _ = cgroup.kill_all(Signal::SIGKILL);
            match cgroup.pids() {
                Ok(pids) if !pids.is_empty() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
    }
    let rootfs = bundle.join("rootfs");
    if let Err(err) = runtime_core::rootfs::unmount_rootfs(&rootfs) {
        eprintln!("unmount {}: {err}", rootfs.display());
    }
    if let Some(cgroup) = &cgroup
        && let Err(err) = cgroup.destroy()
    {
        eprintln!("remove cgroup: {err}");
    }
    if let Some(socket) = crate::bootstrap::recorded_socket(bundle)
        && UnixStream::connect(&socket).is_err()
    {
        let _ = std::fs::remove_file(&socket);
    }
}

/// Whether `pid` still is the container's init: its cgroup is the container's. Guards
/// against killing an unrelated process that reused the pid.
fn init_is_ours(pid: i32, cgroups_path: Option<&Path>, id: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let wanted = match cgroups_path {
        Some(p) => p.display().to_string(),
        None => format!("/{id}"),
    };
    let wanted = wanted.trim_end_matches('/');
    text.lines()
        .any(|line| line.rsplit(':').next().is_some_and(|p| p.ends_with(wanted)))
}
