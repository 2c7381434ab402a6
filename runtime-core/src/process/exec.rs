//! An exec: a further process in a running container (`ctr task exec`, CRI `ExecSync`).
//!
//! The setup helper (a fresh, single-threaded exec of the caller's binary, non-dumpable) may
//! be started ahead ([`super::Launcher::prepare_exec`], at containerd's Exec): it checks the
//! config and waits, joined to nothing of the container, until `Start` brings the process's
//! stdio. Then it joins the container's cgroups while it still sees the host's, then its
//! namespaces through a pidfd of the container's init — a pid reused by another process
//! cannot redirect that — and forks the exec process with `CLONE_PARENT` (so it is the caller's child) into the
//! container's cgroup2 directory; the fork puts it in the container's pid namespace. The
//! process joins the user and cgroup namespaces last (the fork into the cgroup must still be
//! allowed by the host's), closes every inherited fd, and applies the exec's process (rlimits,
//! cwd, user, capabilities, the container's seccomp profile, no_new_privs) with the init's
//! guards before it execs. With `process.terminal` it first makes a new pty from the
//! container's `/dev/ptmx` its stdio and controlling terminal (as the init does, see
//! `terminal`) and sends the master to the caller with `Ready`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::execve;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use super::channel::{Channel, Message};
use super::helper::clone_sibling;
use super::init;
use super::launcher::PIDFD_FD;
use crate::cgroups::CgroupManager;
use crate::namespaces::clone_flag;
use crate::{Error, Result, rlimits, rootfs};

/// Everything the helper needs to start an exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The container's id (messages).
    pub container_id: String,
    /// The exec's id (messages).
    pub exec_id: String,
    /// The container's spec with `process` replaced by the exec's (see [`exec_spec`]): the
    /// namespaces and the seccomp profile are the container's, the rest the exec's own.
    pub spec: Spec,
    /// The container's cgroup.
    pub cgroup: CgroupManager,
    /// Keep the caller's session keyring (as the container's init did, runc's
    /// `--no-new-keyring`); otherwise the process gets a new one, as runc's exec does.
    #[serde(default)]
    pub no_new_keyring: bool,
    /// How many fds the caller passes to the process as fds 3, 4, … (runc's
    /// `--preserve-fds`): see `passed_fds`.
    #[serde(default)]
    pub pass_fds: usize,
    /// The container's bundle, which the container process state names: with a notifying
    /// seccomp profile the caller sends that state and the exec's listener to the agent at
    /// `linux.seccomp.listenerPath`, as for the init.
    #[serde(default)]
    pub bundle: Option<std::path::PathBuf>,
}

/// The container's spec with its process replaced by the exec's process (`json`: an OCI
/// `Process`, as containerd's `ExecProcessRequest.spec` carries it), checked as a container's
/// spec is. An error names the field.
pub fn exec_spec(container: &Spec, json: &[u8]) -> Result<Spec> {
    let process: Process = serde_json::from_slice(json)
        .map_err(|e| Error::invalid("process", format!("not an OCI process: {e}")))?;
    let mut spec = container.clone();
    spec.set_process(Some(process));
    crate::spec::validate(&spec)?;
    Ok(spec)
}

enum Never {}

/// The helper's part: cgroups, namespaces, the fork. Returns once the exec process's pid is
/// sent; the process itself never returns from here.
pub(super) fn start(config: &ExecConfig, channel: &mut Channel) -> Result<()> {
    // SAFETY: the launcher put the init's pidfd at PIDFD_FD; nothing else owns it.
    let init_fd = unsafe { OwnedFd::from_raw_fd(PIDFD_FD) };
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(PIDFD_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let spec = &config.spec;
    crate::spec::validate(spec)?;
    let linux = crate::spec::linux_of(spec)?;
    let process = crate::spec::process_of(spec)?;
    let (early, late) = namespaces_to_join(linux.namespaces().as_deref().unwrap_or_default())?;
    // Checked; now wait for Start (containerd's Start may come much later than its Exec),
    // without having joined anything of the container.
    match channel.recv()? {
        Some(Message::Start) => attach_stdio(channel.take_fds())?,
        // The exec was deleted, or its caller went away, before it started.
        None => return Ok(()),
        Some(other) => {
            return Err(Error::Setup(format!(
                "exec {}: setup helper got {other:?} instead of start",
                config.exec_id
            )));
        }
    }

    // Into the container's cgroups while this process still sees the host's cgroup
    // namespace and holds the host's credentials: v1 by writing 0 to `tasks` (no RCU wait),
    // cgroup2 at the fork below (CLONE_INTO_CGROUP).
    crate::sched::apply_exec_affinity(process, crate::sched::AffinityStage::Initial)?;
    config.cgroup.join_v1_self()?;
    let unified = config.cgroup.open_unified()?;
    // Inherited by the fork; written here, through the host's procfs, where the process could
    // not (its /proc files belong to the host's root in a user namespace).
    if let Some(adj) = process.oom_score_adj() {
        rlimits::set_oom_score_adj(std::process::id(), adj)?;
    }
    join(&init_fd, early, &config.container_id)?;

    // The process waits on this pipe until its pid is on the channel: what it sends there
    // itself (its seccomp listener, an error) must come after the pid the caller reads first.
    let (go_read, go_write) = super::helper::pipe()?;
    let (child, placed) = clone_sibling(CloneFlags::empty(), unified.as_ref(), true)?;
    match child {
        None => {
            // The cgroup2 directory is a host directory (CVE-2024-21626); run() closes the
            // rest of what was inherited.
            drop(unified);
            drop(go_write);
            let mut byte = [0u8; 1];
            let go = std::io::Read::read(&mut std::fs::File::from(go_read), &mut byte);
            if config.cgroup.unified_path().is_some() && !placed || !matches!(go, Ok(1)) {
                // The helper reports it.
                // SAFETY: _exit is always safe to call; the child owns no state to flush.
                unsafe { libc::_exit(1) };
            }
            run(config, channel, init_fd, late)
        }
        Some(pid) => {
            drop(go_read);
            if config.cgroup.unified_path().is_some() && !placed {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(Error::Setup(format!(
                    "exec {}: the kernel cannot fork into a cgroup (clone3 CLONE_INTO_CGROUP)",
                    config.exec_id
                )));
            }
            channel.send(&Message::Pid { pid: pid.as_raw() })?;
            std::io::Write::write_all(&mut std::fs::File::from(go_write), b"1")
                .map_err(|e| Error::io("write", "exec process start pipe", e))
        }
    }
}

/// The process's stdin, stdout and stderr (sent with Start) as fds 0, 1 and 2; the copies
/// received are closed. They arrive above 4 (0-4 are taken), so no dup2 overwrites another.
fn attach_stdio(fds: Vec<OwnedFd>) -> Result<()> {
    if fds.len() != 3 {
        return Err(Error::Setup(format!(
            "start came with {} fds instead of stdin, stdout and stderr",
            fds.len()
        )));
    }
    for (target, fd) in fds.iter().enumerate() {
        // SAFETY: dup2 onto fds 0-2, which this process owns (std's stdio, /dev/null until
        // now); dup2 clears close-on-exec on the target.
        if unsafe { libc::dup2(fd.as_raw_fd(), target as i32) } < 0 {
            return Err(Error::sys(
                "dup2",
                format!("stdio fd {target}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

/// The namespaces of the container other than the caller's, as setns flags: those to join
/// before the fork (mount, pid, net, ipc, uts, time) and those after it (user and cgroup:
/// with them joined, the host's cgroup rules would refuse the fork into the cgroup).
fn namespaces_to_join(
    namespaces: &[oci_spec::runtime::LinuxNamespace],
) -> Result<(CloneFlags, CloneFlags)> {
    let (mut early, mut late) = (CloneFlags::empty(), CloneFlags::empty());
    for ns in namespaces {
        if !crate::spec::has_own_namespace(namespaces, ns.typ())? {
            continue;
        }
        match ns.typ() {
            LinuxNamespaceType::User | LinuxNamespaceType::Cgroup => late |= clone_flag(ns.typ()),
            typ => early |= clone_flag(typ),
        }
    }
    Ok((early, late))
}

/// setns through the init's pidfd: every namespace in `flags` at once, atomically, the user
/// namespace first (kernel 5.8+).
fn join(init_fd: &OwnedFd, flags: CloneFlags, container: &str) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::setns(init_fd.as_fd(), flags).map_err(|e| {
        let why = if e == nix::errno::Errno::ESRCH {
            "the container's init has exited".to_string()
        } else {
            format!("{flags:?}")
        };
        Error::sys(
            "setns",
            format!("namespaces of container {container}: {why}"),
            e,
        )
    })
}

/// The exec process, from its fork to the exec of the program. Never returns: on error it
/// reports the error on the channel and exits.
fn run(config: &ExecConfig, channel: &mut Channel, init_fd: OwnedFd, late: CloneFlags) -> ! {
    let fd = channel.stream().as_raw_fd();
    let result = init::die_with_caller(fd)
        .and_then(|()| join(&init_fd, late, &config.container_id))
        .and_then(|()| {
            drop(init_fd);
            // Joining a user namespace changes credentials, which clears the parent-death
            // signal; keep the process closed to /proc inspection.
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            init::die_with_caller(fd)
        })
        .and_then(|()| init::close_inherited_fds(fd))
        .and_then(|()| {
            // The kernel's keyrings are not namespaced: the caller's session keys stay out.
            if config.no_new_keyring {
                Ok(())
            } else {
                init::join_new_session_keyring()
            }
        })
        .and_then(|()| setup_and_exec(&config.spec, config.pass_fds, channel));
    let err = match result {
        Ok(never) => match never {},
        Err(err) => err,
    };
    let _ = channel.send(&Message::Error {
        message: format!("exec {}: {err}", config.exec_id),
    });
    // SAFETY: _exit ends this process without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

fn setup_and_exec(spec: &Spec, pass_fds: usize, channel: &mut Channel) -> Result<Never> {
    let process = crate::spec::process_of(spec)?;
    let linux = crate::spec::linux_of(spec)?;
    if let Some(limits) = process.rlimits() {
        rlimits::apply(limits)?;
    }
    crate::sched::apply(process)?;
    crate::sched::apply_exec_affinity(process, crate::sched::AffinityStage::Final)?;
    // The container's execution domain, as its init has it (runc sets it for execs too).
    if let Some(personality) = linux.personality() {
        crate::personality::apply(personality)?;
    }
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    // Every fd of the host is closed (run); spec paths are resolved in the container's root,
    // which the mount namespace gave us, and checked against a lookup the kernel confines.
    // Unlike the init's, an exec's cwd must exist (as with runc). Entered before the root is
    // opened: a cwd of /proc/self/fd/N then finds no directory fd at all.
    init::enter_cwd(process.cwd())?;
    let root = rootfs::resolve::Root::open(Path::new("/"))?;
    init::check_inside_root(&root, process.cwd(), "process.cwd")?;
    let program = init::find_executable(&args[0], &env)?;
    let program = process.cwd().join(program);
    init::check_inside_root(&root, &program, "process.args[0]")?;
    drop(root);
    // The pty comes from the container's devpts (the mount namespace is joined, no host fd
    // is open); the master goes to the caller at once and is closed here.
    if process.terminal() == Some(true) {
        let master = super::terminal::attach_new_console(process)?;
        channel.send_with_fd(&Message::Ready, master.as_raw_fd())?;
    }
    // Every path is resolved: now the fds the caller passes may be held.
    let passed = super::passed_fds::receive(channel, pass_fds)?;

    init::apply_lsm_labels(process)?;
    let init::Privileges {
        late_filter,
        listener,
    } = init::drop_privileges(process, linux)?;
    // A notifying profile: the agent gets the listener (through the caller) before the
    // program can make a call only the agent answers; the caller says when it has.
    if let Some(listener) = listener {
        channel.send_with_fd(&Message::SeccompListener, listener.as_raw_fd())?;
        drop(listener);
        let waiting = "waiting for the runtime to hand the listener to the seccomp agent \
                       (linux.seccomp.listenerPath)";
        match channel.recv() {
            Ok(Some(Message::Ready)) => {}
            Ok(_) => return Err(Error::Setup(format!("{waiting}: the runtime gave up"))),
            Err(err) => return Err(Error::Setup(format!("{waiting}: {err}"))),
        }
    }
    // The program must outlive the caller's thread that started it.
    init::set_parent_death_signal(0)?;
    let first_closed = super::passed_fds::place(channel, passed)?;
    init::close_fds_on_exec(first_closed)?;
    init::reset_signals()?;
    if let Some(filter) = late_filter {
        filter.load()?;
    }
    let program_c = init::cstring(program.as_os_str().as_bytes(), "process.args[0]")?;
    let args_c = args
        .iter()
        .map(|a| init::cstring(a.as_bytes(), "process.args"))
        .collect::<Result<Vec<_>>>()?;
    let env_c = env
        .iter()
        .map(|e| init::cstring(e.as_bytes(), "process.env"))
        .collect::<Result<Vec<CString>>>()?;
    let err = execve(&program_c, &args_c, &env_c).unwrap_err();
    Err(Error::sys("exec", format!("{:?}", args[0]), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Spec {
        Spec::default()
    }

    #[test]
    fn exec_process_replaces_the_container_process_and_is_checked() {
        let json =
            br#"{"args":["/bin/echo","hi"],"cwd":"/tmp","user":{"uid":5,"gid":6},"env":["A=b"]}"#;
        let spec = exec_spec(&container(), json).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref().unwrap(), ["/bin/echo", "hi"]);
        assert_eq!(process.user().uid(), 5);
        assert_eq!(spec.linux(), container().linux());

        let err = exec_spec(
            &container(),
            br#"{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("process.args"), "{err}");
        let err = exec_spec(
            &container(),
            br#"{"args":["sh"],"cwd":"tmp","user":{"uid":0,"gid":0}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("process.cwd"), "{err}");
        let err = exec_spec(&container(), b"not json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("process"), "{err}");
    }

    #[test]
    fn user_and_cgroup_namespaces_are_joined_after_the_fork() {
        use oci_spec::runtime::LinuxNamespaceBuilder;
        let nss: Vec<_> = [
            LinuxNamespaceType::User,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Time,
        ]
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().unwrap())
        .collect();
        let (early, late) = namespaces_to_join(&nss).unwrap();
        assert_eq!(
            late,
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWCGROUP
        );
        assert_eq!(
            early,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNS
                | clone_flag(LinuxNamespaceType::Time)
        );
    }
}
