//! The setup helper: a fresh, single-threaded exec of the caller's binary that creates the
//! cgroup, joins namespaces given by path and clones the container init beside itself.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use super::HELPER_ARG;
use super::channel::{Channel, HelperConfig, Message};
use super::init;
use super::launcher::CHANNEL_FD;
use crate::cgroups::CgroupManager;
use crate::namespaces::Plan;
use crate::{Error, Result};

/// Runs the setup helper and exits if argv[1] is [`HELPER_ARG`]; returns otherwise. Call it
/// first in `main`, before any thread (a tokio runtime) exists.
pub fn run_helper_if_requested() {
    if std::env::args_os().nth(1).is_some_and(|a| a == HELPER_ARG) {
        std::process::exit(helper_main());
    }
}

fn helper_main() -> i32 {
    // No process that enters the container may be inspected or ptraced through /proc by
    // the container's processes (CVE-2019-5736); the init inherits this until its exec.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: the launcher put our end of the channel at CHANNEL_FD; nothing else owns it.
    let stream = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    // Close-on-exec, so the caller sees EOF once the init execs the user's process.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // The launcher set the parent-death signal before our exec; set again here (it is
    // what the init inherits the check from), and a caller already gone has closed the
    // channel, which die_with_caller checks.
    if init::die_with_caller(CHANNEL_FD).is_err() {
        return 2;
    }
    let mut channel = Channel::new(stream);
    let result = match channel.recv() {
        Ok(Some(Message::Config(config))) => build(&config, &mut channel, None),
        Ok(Some(Message::CreateDetached(config))) => {
            super::detached::set_start_listener(super::launcher::PIDFD_FD);
            build(&config, &mut channel, None)
        }
        Ok(Some(Message::Exec(config))) => super::exec::start(&config, &mut channel),
        Ok(Some(Message::RunHooks {
            stage,
            hooks,
            state,
        })) => {
            crate::hooks::run(stage, &hooks, &state).and_then(|()| channel.send(&Message::Ready))
        }
        _ => return 2,
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            let _ = channel.send(&Message::Error {
                message: err.to_string(),
            });
            1
        }
    }
}

/// The helper's work done by the caller itself ([`super::Launcher::build_detached_here`]):
/// the init is the caller's child. Returns in the caller once the init runs; never in the
/// init.
/// `caller_end` is the caller's end of the channel, which the init closes first (so that a
/// caller gone shows as a hang-up).
pub(super) fn build_in_caller(
    config: &HelperConfig,
    channel: &mut Channel,
    caller_end: RawFd,
) -> Result<()> {
    // What helper_main sets first: the init inherits it until its exec.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    build(config, channel, Some(caller_end))
}

/// Builds the container: cgroups, namespaces, the init (cloned as our parent's child by a
/// helper, as the caller's own child with `caller_end`), which then sets itself up.
fn build(config: &HelperConfig, channel: &mut Channel, caller_end: Option<RawFd>) -> Result<()> {
    let sibling = caller_end.is_none();
    let spec = &config.spec;
    // Before anything is created: a caller of the library may not have validated it.
    crate::spec::validate(spec)?;
    let linux = crate::spec::linux_of(spec)?;
    let plan = Plan::from_linux(linux)?;
    if !plan.creates(LinuxNamespaceType::Mount) {
        return Err(Error::invalid(
            "linux.namespaces",
            "mini needs a new mount namespace (type \"mount\" without a path)",
        ));
    }
    // Before the cgroup: a mount the kernel refuses to idmap leaves nothing behind.
    let userns = plan.isolates(LinuxNamespaceType::User);
    let shared_root = matches!(
        linux.rootfs_propagation().as_deref(),
        Some("shared" | "rshared")
    );
    crate::rootfs::prepare_idmapped_binds(
        spec.mounts().as_deref().unwrap_or_default(),
        userns,
        shared_root,
    )?;
    let cgroup = match &config.cgroup {
        Some(cgroup) => cgroup.clone(),
        None => CgroupManager::for_container(&config.id, linux.cgroups_path().as_deref(), false)?,
    };
    // Always: a spec without resources or device rules still gets deny-all and the defaults.
    let devices = linux.devices().as_deref().unwrap_or_default();
    let resources = crate::cgroups::with_default_devices(linux.resources().as_ref(), devices);
    // With the systemd driver, systemd makes the cgroup (a scope) once the init exists: see
    // below. systemd refuses a second scope of the same name, as `occupied` refuses here.
    let systemd = cgroup.systemd_unit().is_some();
    // What this call made, removed again (empty directories only) when setup fails before
    // the init exists: a cgroup that was there before is never removed by a failed Create.
    // Recorded for the caller (and for a `delete` after the caller died) as soon as made:
    // they remove those and no others.
    let record = |made: &[PathBuf]| match &config.cgroup_record {
        Some(path) if !systemd => cgroup.with_made(made.to_vec()).save(path),
        _ => Ok(()),
    };
    let undo = |made: &[PathBuf]| {
        CgroupManager::remove_created(made);
        let left: Vec<PathBuf> = made.iter().filter(|d| d.exists()).cloned().collect();
        let _ = record(&left);
    };
    let mut made = Vec::new();
    if !systemd {
        // Written ahead (what is missing now), then corrected if another process made one of
        // them meanwhile: a helper killed between a mkdir and the record leaves nothing
        // unrecorded.
        let missing = cgroup.missing();
        record(&missing)?;
        made = cgroup.create().inspect_err(|_| {
            let _ = record(&[]);
        })?;
        if made != missing {
            record(&made).inspect_err(|_| undo(&made))?;
        }
        // A cgroup that already holds processes, in any hierarchy, belongs to something else
        // (a container with the same id in another namespace, a leftover, a spec naming
        // another service's cgroup): sharing it would put our limits on those processes and
        // let our Kill and Delete reach them. Refuse, and remove only what this call created.
        // Directories this call just made hold nothing yet (the usual case: CRI and ctr
        // name a new cgroup): the checks read only a cgroup that was there before.
        let fresh = cgroup.dirs().all(|d| made.contains(&d.dir));
        let occupied = match fresh {
            true => None,
            false => cgroup.occupied().inspect_err(|_| undo(&made))?,
        };
        if let Some((dir, pids)) = occupied {
            undo(&made);
            return Err(Error::invalid(
                "linux.cgroupsPath",
                format!(
                    "the cgroup {} already holds processes {pids:?}",
                    dir.display()
                ),
            ));
        }
        // Sub-cgroups (even empty ones) are someone else's too: Delete removes everything
        // below the container's cgroup, with what joined it meanwhile.
        let sub = match fresh {
            true => None,
            false => cgroup.sub_cgroup().inspect_err(|_| undo(&made))?,
        };
        if let Some(sub) = sub {
            undo(&made);
            return Err(Error::invalid(
                "linux.cgroupsPath",
                format!(
                    "the cgroup {} already has a sub-cgroup {}: a container's cgroup must \
                     be new or empty",
                    sub.parent().unwrap_or(&sub).display(),
                    sub.display()
                ),
            ));
        }
        cgroup.apply(&resources).inspect_err(|_| undo(&made))?;
    }
    // In the namespaces the spec joins (a user namespace among them), host paths such as the
    // record's may name other files or be out of reach: from here on, the directories are
    // only removed; the record keeps naming them (the caller's rmdir finds them gone).
    let undo = |made: &[PathBuf]| CgroupManager::remove_created(made);
    plan.enter().inspect_err(|_| undo(&made))?;

    // The init waits on this pipe until the helper has written its id maps and reported its
    // pid. It is born in the container's cgroup2 directory (CLONE_INTO_CGROUP) and moves
    // itself into the v1 hierarchies: neither waits for the RCU grace period that moving
    // another process costs. With the systemd driver it is born here, blocked, and systemd
    // moves it into the new scope (a scope cannot start empty); the D-Bus connection (with
    // its threads) is opened only after the clone, so the init forks from a single thread.
    let (go_read, go_write) = pipe().inspect_err(|_| undo(&made))?;
    let flags = plan.clone_flags & !CloneFlags::CLONE_NEWCGROUP;
    let unified = if systemd {
        None
    } else {
        cgroup.open_unified().inspect_err(|_| undo(&made))?
    };
    let (child, placed_in_unified) =
        clone_sibling(flags, unified.as_ref(), sibling).inspect_err(|_| undo(&made))?;
    match child {
        None => {
            if let Some(fd) = caller_end {
                forked_from_caller(fd, &config.id);
            }
            // The init dies with the caller too until it reports ready; the parent-death
            // signal is not inherited across clone.
            if init::die_with_caller(channel.stream().as_raw_fd()).is_err() {
                // SAFETY: _exit is always safe to call; the child owns no state to flush.
                unsafe { libc::_exit(1) };
            }
            // The cgroup2 directory is a host directory: through /proc/self/fd/N/.. a spec
            // path could walk out of the container from it (CVE-2024-21626). The init does not
            // need it; init::run closes anything else inherited.
            drop(unified);
            drop(go_write);
            let mut byte = [0u8; 1];
            let mut go = fs::File::from(go_read);
            if !matches!(go.read(&mut byte), Ok(1)) {
                // The helper failed and reported it; nothing to build.
                // SAFETY: _exit is always safe to call; the child owns no state to flush.
                unsafe { libc::_exit(1) };
            }
            drop(go);
            if sibling {
                init::run(config, channel, &plan, &cgroup)
            }
            // Forked from the caller, a panic must not unwind into the caller's frames (their
            // destructors would run here, on the caller's state).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                init::run(config, channel, &plan, &cgroup)
            }));
            // SAFETY: _exit ends this process without running the caller's atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Some(pid) => {
            drop(go_read);
            let result = (|| {
                if systemd {
                    cgroup.start_scope(pid.as_raw(), &resources)?;
                    cgroup.apply(&resources)?;
                } else if plan.creates(LinuxNamespaceType::User) {
                    // Born in a user namespace, the init cannot write the host's cgroup files.
                    cgroup.add_process(pid.as_raw())?;
                } else if !placed_in_unified && let Some(dir) = cgroup.unified_path() {
                    crate::cgroups::CgroupManager::add_to(dir, pid.as_raw())?;
                }
                if plan.creates(LinuxNamespaceType::User) {
                    write_id_maps(
                        pid,
                        linux.uid_mappings().as_deref(),
                        linux.gid_mappings().as_deref(),
                    )?;
                }
                if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
                    crate::rlimits::set_oom_score_adj(pid.as_raw() as u32, adj)?;
                }
                channel.send(&Message::Pid { pid: pid.as_raw() })
            })();
            if let Err(err) = result {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(err);
            }
            let mut go = fs::File::from(go_write);
            go.write_all(b"1")
                .map_err(|e| Error::io("write", "container init start pipe", e))?;
            Ok(())
        }
    }
}

/// First thing in an init forked from the caller itself (not from an exec'd helper): what it
/// inherited of the caller that the helper's exec used to leave behind. Closes the caller's
/// end of the channel; silences the caller's logger (its fd is closed below, and the number
/// may be reused); replaces the command line (`mini create` with the host's paths, which
/// `/proc/PID/cmdline` shows to anyone) and the environment with `mini-init <id>`, in place.
fn forked_from_caller(caller_end: RawFd, id: &str) {
    // SAFETY: the caller's end is a copy this process owns and never uses.
    unsafe { libc::close(caller_end) };
    log::set_max_level(log::LevelFilter::Off);
    let name = c"mini-init";
    // SAFETY: prctl with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    // Addresses this process will write to: only as procfs tells them (fields 48-51:
    // arg_start, arg_end, env_start, env_end).
    let Some([arg_start, arg_end, env_start, env_end]) =
        crate::procfs::own_stat_fields(48).map(|f| f.map(|v| v as usize))
    else {
        return;
    };
    let title = format!("mini-init\0{id}\0");
    for (start, end, text) in [
        (arg_start, arg_end, title.as_bytes()),
        (env_start, env_end, &[][..]),
    ] {
        if end <= start {
            continue;
        }
        let len = end - start;
        let text = &text[..text.len().min(len.saturating_sub(1))];
        // SAFETY: [start, end) is this process's own argument (or environment) area, on its
        // stack, writable and mapped for the life of the process; nothing reads it
        // concurrently (one thread). The last byte stays NUL.
        unsafe {
            std::ptr::write_bytes(start as *mut u8, 0, len);
            std::ptr::copy_nonoverlapping(text.as_ptr(), start as *mut u8, text.len());
        }
    }
    // And no entry left in `environ` (they now point at empty strings), as after the
    // helper's exec with an empty environment.
    // SAFETY: one thread; nothing holds a pointer into `environ` across this call.
    unsafe { libc::clearenv() };
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe2", "init start pipe", e))
}

/// The kernel's `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `flags`, and with CLONE_PARENT (the child is our parent's child) when
/// `sibling`, into the cgroup2 directory `cgroup` when given. `None` in the child; the bool
/// says whether the child was born in `cgroup` (false on kernels without clone3, where the
/// caller moves it).
pub(super) fn clone_sibling(
    flags: CloneFlags,
    cgroup: Option<&fs::File>,
    sibling: bool,
) -> Result<(Option<Pid>, bool)> {
    let base = flags.bits() as u64
        | if sibling {
            libc::CLONE_PARENT as u64
        } else {
            0
        };
    if let Some(dir) = cgroup {
        let args = CloneArgs {
            flags: base | CLONE_INTO_CGROUP,
            // With CLONE_PARENT the child inherits our exit signal (SIGCHLD to our parent);
            // clone3 refuses another.
            exit_signal: if sibling { 0 } else { libc::SIGCHLD as u64 },
            cgroup: dir.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: clone3 without CLONE_VM and with no stack behaves like fork(); `args`
        // outlives the call and its size is passed. This process is single-threaded (a fresh
        // exec), so the child may run any code.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match rc {
            0 => return Ok((None, true)),
            pid if pid > 0 => return Ok((Some(Pid::from_raw(pid as i32)), true)),
            _ => {
                let errno = nix::errno::Errno::last();
                if !matches!(errno, nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) {
                    return Err(Error::sys(
                        "clone3",
                        format!("{flags:?} into its cgroup"),
                        errno,
                    ));
                }
            }
        }
    }
    let all = base | libc::SIGCHLD as u64;
    // SAFETY: a raw clone without CLONE_VM and with a NULL stack behaves like fork(); this
    // process is single-threaded (a fresh exec), so the child may run any code.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            all as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        -1 => Err(Error::sys(
            "clone",
            format!("{flags:?}"),
            nix::errno::Errno::last(),
        )),
        0 => Ok((None, false)),
        pid => Ok((Some(Pid::from_raw(pid as i32)), false)),
    }
}

fn write_id_maps(
    pid: Pid,
    uids: Option<&[LinuxIdMapping]>,
    gids: Option<&[LinuxIdMapping]>,
) -> Result<()> {
    let format = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let (uids, gids) = match (uids, gids) {
        (Some(u), Some(g)) if !u.is_empty() && !g.is_empty() => (u, g),
        _ => {
            return Err(Error::invalid(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    };
    let proc = crate::procfs::ProcFs::open()?;
    for (file, text) in [("uid_map", format(uids)), ("gid_map", format(gids))] {
        proc.write(&std::path::Path::new(&pid.to_string()).join(file), &text)?;
    }
    Ok(())
}
