//! The setup helper: a fresh, single-threaded exec of the caller's binary that creates the
//! cgroup, joins namespaces given by path and clones the container init beside itself.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

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
    let mut channel = Channel::new(stream);
    let config = match channel.recv() {
        Ok(Some(Message::Config(config))) => config,
        _ => return 2,
    };
    match build(&config, &mut channel) {
        Ok(()) => 0,
        Err(err) => {
            let _ = channel.send(&Message::Error {
                message: err.to_string(),
            });
            1
        }
    }
}

fn build(config: &HelperConfig, channel: &mut Channel) -> Result<()> {
    let spec = &config.spec;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux", "missing"))?;
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or_default())?;
    if !plan.creates(LinuxNamespaceType::Mount) {
        return Err(Error::invalid(
            "linux.namespaces",
            "mini needs a new mount namespace (type \"mount\" without a path)",
        ));
    }
    let cgroup = CgroupManager::new(&config.id, linux.cgroups_path().as_deref())?;
    cgroup.create()?;
    if let Some(resources) = linux.resources() {
        cgroup.apply(resources)?;
    }
    plan.enter()?;

    // The init waits on this pipe until it is in its cgroup (and has its id maps), so that a
    // new cgroup namespace, which the init unshares itself, is rooted at the container's
    // cgroup.
    let (go_read, go_write) = pipe()?;
    let flags = plan.clone_flags & !CloneFlags::CLONE_NEWCGROUP;
    match clone_sibling(flags)? {
        None => {
            drop(go_write);
            let mut byte = [0u8; 1];
            let mut go = fs::File::from(go_read);
            if !matches!(go.read(&mut byte), Ok(1)) {
                // The helper failed and reported it; nothing to build.
                // SAFETY: _exit is always safe to call; the child owns no state to flush.
                unsafe { libc::_exit(1) };
            }
            drop(go);
            init::run(config, channel, &plan)
        }
        Some(pid) => {
            drop(go_read);
            let result = (|| {
                cgroup.add_process(pid.as_raw())?;
                if plan.creates(LinuxNamespaceType::User) {
                    write_id_maps(
                        pid,
                        linux.uid_mappings().as_deref(),
                        linux.gid_mappings().as_deref(),
                    )?;
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

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe2", "init start pipe", e))
}

/// clone(2) with fork semantics and CLONE_PARENT: the child is our parent's child. `None` in
/// the child.
fn clone_sibling(flags: CloneFlags) -> Result<Option<Pid>> {
    let all = flags.bits() | libc::CLONE_PARENT | libc::SIGCHLD;
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
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
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
    for (file, text) in [("uid_map", format(uids)), ("gid_map", format(gids))] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, text).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(())
}
