//! The container init, from its clone to the exec of the user's process. The order follows
//! the runtime-spec's `create` then `start`.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, chdir, execve, getcwd, setgroups, sethostname, setresgid, setresuid};
use oci_spec::runtime::{ContainerState, LinuxNamespaceType, Process, Spec, State};

use super::channel::{Channel, HelperConfig, Message};
use crate::cgroups::CgroupManager;
use crate::hooks::Stage;
use crate::namespaces::Plan;
use crate::{Error, Result, capabilities, rlimits, rootfs, seccomp};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds the container, reports ready, waits for start, execs. Never returns: on error it
/// reports the error on the channel and exits.
pub(super) fn run(
    config: &HelperConfig,
    channel: &mut Channel,
    plan: &Plan,
    cgroup: &CgroupManager,
) -> ! {
    let channel_fd = channel.stream().as_raw_fd();
    let keep: Vec<RawFd> = std::iter::once(channel_fd)
        .chain(super::detached::start_listener())
        .chain(crate::rootfs::prepared_fds())
        .collect();
    let result = close_inherited_fds_except(&keep)
        .and_then(|()| start_listener_close_on_exec())
        .and_then(|()| setup_and_exec(config, channel, plan, cgroup));
    let err = match result {
        Ok(never) => match never {},
        Err(err) => err,
    };
    let _ = channel.send(&Message::Error {
        message: err.to_string(),
    });
    // SAFETY: _exit ends this process without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

enum Never {}

/// The start socket's listener stays open in the init until `start`, but no hook it runs
/// (`createContainer`, `startContainer`) may hold it: a hook that outlived the call could
/// accept the `start` meant for the init.
fn start_listener_close_on_exec() -> Result<()> {
    let Some(fd) = super::detached::start_listener() else {
        return Ok(());
    };
    // SAFETY: F_SETFD on an fd this process owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(Error::io(
            "fcntl",
            "start socket",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn setup_and_exec(
    config: &HelperConfig,
    channel: &mut Channel,
    plan: &Plan,
    cgroup: &CgroupManager,
) -> Result<Never> {
    let spec = &config.spec;
    let process = crate::spec::process_of(spec)?;
    let linux = crate::spec::linux_of(spec)?;

    // Into the container's v1 cgroups before anything else (the cgroup2 one we were born in).
    // In a new user namespace the helper has moved us.
    if !plan.creates(LinuxNamespaceType::User) {
        cgroup.join_v1_self()?;
    }
    if plan.creates(LinuxNamespaceType::User) {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| Error::sys("setresgid", "0 in the new user namespace", e))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| Error::sys("setresuid", "0 in the new user namespace", e))?;
        // The uid change cleared the parent-death signal: set it again.
        die_with_caller(channel.stream().as_raw_fd())?;
    }
    if !config.no_new_keyring {
        join_new_session_keyring()?;
    }
    if plan.creates(LinuxNamespaceType::Cgroup) {
        // Now that the helper put us in the container's cgroup, it becomes our cgroup root.
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::sys("unshare", "cgroup namespace", e))?;
    }

    rootfs::prepare(spec, &config.rootfs, cgroup)?;
    // The mounts are built; before pivot_root the caller runs `prestart` and `createRuntime`
    // in its namespaces, then we run `createContainer` in ours (runtime.md steps 3 to 5).
    let hook_state = run_create_hooks(spec, channel)?;
    if config.no_pivot {
        rootfs::move_root(&config.rootfs)?;
    } else {
        rootfs::pivot(&config.rootfs)?;
    }
    rootfs::apply_root_propagation(spec)?;

    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !plan.isolates(LinuxNamespaceType::Uts) {
            return Err(Error::invalid(
                "hostname",
                "setting a hostname needs a private UTS namespace",
            ));
        }
        sethostname(hostname).map_err(|e| Error::sys("sethostname", hostname, e))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !plan.isolates(LinuxNamespaceType::Uts) {
            return Err(Error::invalid(
                "domainname",
                "setting a domainname needs a private UTS namespace",
            ));
        }
        set_domainname(domain)?;
    }
    // Through the container's own procfs, before /proc/sys becomes read-only; the keys were
    // checked against the namespaces at validation (spec::check_sysctl), and again here.
    if let Some(sysctl) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) {
        let namespaces = linux.namespaces().as_deref().unwrap_or_default();
        let proc = crate::procfs::ProcFs::open()?;
        for (key, value) in sysctl {
            crate::spec::check_sysctl(key, namespaces)?;
            let rel = Path::new("sys").join(crate::spec::sysctl_path(key));
            proc.write(&rel, value).map_err(|e| {
                Error::invalid(format!("linux.sysctl[{key:?}]"), format!("{value:?}: {e}"))
            })?;
        }
    }
    // The pty comes from the container's devpts: after pivot_root, no host fd open; and
    // before the root becomes read-only, which would leave no `/dev/console` to bind it on
    // when `/dev` is the image's own.
    let console = match process.terminal() {
        Some(true) => {
            let master = super::terminal::attach_new_console(process)?;
            super::terminal::bind_console(&master)?;
            Some(master)
        }
        _ => None,
    };
    rootfs::finish(spec)?;

    if let Some(personality) = linux.personality() {
        crate::personality::apply(personality)?;
    }
    apply_lsm_labels(process)?;
    if let Some(limits) = process.rlimits() {
        rlimits::apply(limits)?;
    }
    // With the privileges to grant a real-time policy or I/O class still held.
    crate::sched::apply(process)?;

    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    // From here on spec paths are resolved in the new root, with no fd of the host open
    // (close_inherited_fds) and every lookup also confined by the kernel: a path through
    // /proc/self/fd/N/.. or a symlink cannot name a file outside the root.
    let root = rootfs::resolve::Root::open(Path::new("/"))?;
    // As runc does, a working directory missing from the image is created (as root, inside
    // the new root); enter_cwd then checks where it really is.
    root.mkdir_all(process.cwd()).map_err(|e| {
        Error::invalid(
            "process.cwd",
            format!("cannot create {}: {e}", process.cwd().display()),
        )
    })?;
    enter_cwd(process.cwd())?;
    // Looked up from the cwd, as execve will (a relative `PATH` entry or args[0] names a
    // file there), and checked as the absolute path of that very file.
    let program = find_executable(&args[0], &env)?;
    let program = process.cwd().join(program);
    check_inside_root(&root, &program, "process.args[0]")?;
    drop(root);

    let Privileges {
        late_filter,
        listener,
    } = drop_privileges(process, linux)?;
    // The agent gets the listener during create, before anything may wait for its answer.
    if let Some(listener) = listener {
        channel.send_with_fd(&Message::SeccompListener, listener.as_raw_fd())?;
    }

    // Built: from here the caller knows our pid, and the thread that spawned the helper may
    // end while we wait for Start (tokio ends idle blocking threads): that must not kill us.
    // A detached init outlives its caller only once the caller has recorded it (below).
    let detached = super::detached::start_listener().is_some();
    if !detached {
        set_parent_death_signal(0)?;
    }
    match console {
        Some(master) => channel.send_with_fd(&Message::Ready, master.as_raw_fd())?,
        None => channel.send(&Message::Ready)?,
    }
    // Every spec path is resolved: now the fds the caller passes may be held.
    let passed = super::passed_fds::receive(channel, config.pass_fds)?;
    if detached {
        super::detached::wait_for_detach(channel)?;
        set_parent_death_signal(0)?;
        // The caller waits for this before it may exit.
        channel.send(&Message::Detach)?;
    }
    // A detached init takes its Start from a starter's connection instead (`detached`).
    if !super::detached::wait_for_starter(channel)? {
        match channel.recv()? {
            Some(Message::Start) => {}
            // The caller went away or changed its mind: nothing to run.
            // SAFETY: _exit ends this process without running the parent's atexit handlers.
            _ => unsafe { libc::_exit(1) },
        }
    }

    // Before the filter: a profile need not allow what these use.
    close_fds_on_exec(3)?;
    // In the container, as its user, after start and before the exec (runtime.md step 7);
    // every fd but stdio is close-on-exec by now, so the hooks inherit none of ours (the
    // passed fds are placed after them).
    if let (Some(mut state), Some(hooks)) = (hook_state, spec.hooks()) {
        state.set_status(ContainerState::Created);
        let stage = Stage::StartContainer;
        crate::hooks::run(stage, stage.of(hooks), &state)?;
    }
    let first_closed = super::passed_fds::place(channel, passed)?;
    close_fds_on_exec(first_closed)?;
    reset_signals()?;
    if let Some(filter) = late_filter {
        // Never a notifying filter (drop_privileges loaded that): no listener to hand over.
        filter.load()?;
    }
    let program_c = cstring(program.as_os_str().as_bytes(), "process.args[0]")?;
    let args_c = args
        .iter()
        .map(|a| cstring(a.as_bytes(), "process.args"))
        .collect::<Result<Vec<_>>>()?;
    let env_c = env
        .iter()
        .map(|e| cstring(e.as_bytes(), "process.env"))
        .collect::<Result<Vec<_>>>()?;
    let err = execve(&program_c, &args_c, &env_c).unwrap_err();
    Err(Error::sys("exec", format!("{:?}", args[0]), err))
}

/// With hooks before the user's process in the spec: asks the caller to run `prestart` and
/// `createRuntime`, then runs `createContainer` here, in the container's namespaces with the
/// host's files still in view (before pivot_root). Returns the container's state the caller
/// sent, for `startContainer`; `None` without such hooks.
/// The hook kinds for which the init asks its caller for the `prestart`/`createRuntime` run
/// and the container's state (the caller knows the init will ask by these).
pub(super) const ASKS_FOR_HOOKS: [Stage; 4] = [
    Stage::Prestart,
    Stage::CreateRuntime,
    Stage::CreateContainer,
    Stage::StartContainer,
];

fn run_create_hooks(spec: &Spec, channel: &mut Channel) -> Result<Option<State>> {
    let Some(hooks) = spec
        .hooks()
        .as_ref()
        .filter(|_| crate::hooks::any(spec, &ASKS_FOR_HOOKS))
    else {
        return Ok(None);
    };
    channel.send(&Message::RuntimeHooks)?;
    let state = match channel.recv()? {
        Some(Message::HooksDone { state }) => state,
        // The caller's hooks failed (it reports that itself) or it went away.
        // SAFETY: _exit ends this process without running the parent's atexit handlers.
        _ => unsafe { libc::_exit(1) },
    };
    let stage = Stage::CreateContainer;
    crate::hooks::run(stage, stage.of(hooks), &state)?;
    Ok(Some(state))
}

/// What [`drop_privileges`] leaves to do.
pub(super) struct Privileges {
    /// The filter still to load right before exec (with no_new_privs, as late as possible).
    pub late_filter: Option<seccomp::Filter>,
    /// The listener of a filter with `SCMP_ACT_NOTIFY` rules, loaded already: the caller
    /// hands it to the seccomp agent. Close-on-exec; close it once sent.
    pub listener: Option<OwnedFd>,
}

/// The process's seccomp filter (the container's profile), user and capabilities, and
/// no_new_privs. Without no_new_privs the filter is loaded here, while CAP_SYS_ADMIN is held,
/// as runc does; with it, the filter is left to load right before exec, unless it notifies:
/// its listener must reach the agent before the process can wait for it, so it is loaded
/// here too, after no_new_privs.
pub(super) fn drop_privileges(
    process: &Process,
    linux: &oci_spec::runtime::Linux,
) -> Result<Privileges> {
    let filter = match linux.seccomp() {
        Some(profile) => Some(seccomp::compile(profile)?),
        None => None,
    };
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    let mut privileges = Privileges {
        late_filter: None,
        listener: None,
    };
    let mut filter_after_nnp = None;
    if let Some(filter) = filter {
        if !no_new_privs {
            privileges.listener = filter.load()?;
        } else if filter.notifies() {
            filter_after_nnp = Some(filter);
        } else {
            privileges.late_filter = Some(filter);
        }
    }
    set_identity(process)?;
    // Changing ids resets the dumpable flag to `fs.suid_dumpable`: with that at 1, container
    // processes of the same uid could ptrace us (and reach the channel) until our exec.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::sys(
                "prctl",
                "PR_SET_NO_NEW_PRIVS",
                nix::errno::Errno::last(),
            ));
        }
    }
    if let Some(filter) = filter_after_nnp {
        privileges.listener = filter.load()?;
    }
    Ok(privileges)
}

/// The process's AppArmor profile and SELinux label, for the kernel to put on at the exec
/// (written to the init's own `attr/…/exec`; `spec::check_lsm_labels` refused them where the
/// host lacks the LSM).
pub(super) fn apply_lsm_labels(process: &Process) -> Result<()> {
    crate::spec::check_lsm_labels(process)?;
    let apparmor = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty());
    let selinux = process.selinux_label().as_deref().filter(|l| !l.is_empty());
    if apparmor.is_none() && selinux.is_none() {
        return Ok(());
    }
    let proc = crate::procfs::ProcFs::open()?;
    let attr = Path::new(&crate::procfs::ProcFs::own_dir()).join("attr");
    if let Some(profile) = apparmor {
        let value = format!("exec {profile}");
        // The LSM-stacking interface first, then the one of older kernels.
        proc.write(&attr.join("apparmor/exec"), &value)
            .or_else(|_| proc.write(&attr.join("exec"), &value))
            .map_err(|e| Error::invalid("process.apparmorProfile", e.to_string()))?;
    }
    if let Some(label) = selinux {
        proc.write(&attr.join("exec"), label)
            .map_err(|e| Error::invalid("process.selinuxLabel", e.to_string()))?;
    }
    Ok(())
}

/// Makes a setup process (the helper, and the init until it reports ready) die with its
/// caller: the kernel sends SIGKILL, which also ends a stopped process, when the caller's
/// thread that spawned the helper ends (PR_SET_PDEATHSIG; the init, cloned with
/// CLONE_PARENT, has the same parent). Otherwise a setup process stopped or stuck (a hung
/// mount) when the caller dies stays forever, and no one knows its pid. A caller that died
/// before this call has closed its end of the setup channel: an error then (getppid() cannot
/// tell: in a new pid namespace the parent is outside it and reads as 0).
pub(crate) fn die_with_caller(channel: RawFd) -> Result<()> {
    set_parent_death_signal(libc::SIGKILL)?;
    let mut fds = [libc::pollfd {
        fd: channel,
        events: 0,
        revents: 0,
    }];
    // SAFETY: poll on one pollfd that outlives the call, with no timeout.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    if rc > 0 && fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
        return Err(Error::Setup("the caller went away during setup".into()));
    }
    Ok(())
}

/// PR_SET_PDEATHSIG: `signal` when the parent thread ends; 0 clears it.
pub(super) fn set_parent_death_signal(signal: i32) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl",
            format!("PR_SET_PDEATHSIG {signal}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A new anonymous session keyring, so the container cannot see the keys of the caller's
/// session (the kernel keyring is not namespaced).
pub fn join_new_session_keyring() -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, NULL) takes no pointers we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match rc {
        r if r >= 0 => Ok(()),
        // Kernels without keyrings.
        _ if nix::errno::Errno::last() == nix::errno::Errno::ENOSYS => Ok(()),
        _ => Err(Error::sys(
            "keyctl",
            "join a new session keyring",
            nix::errno::Errno::last(),
        )),
    }
}

pub(super) fn cstring(bytes: &[u8], field: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::invalid(field, "contains a NUL byte"))
}

fn set_domainname(domain: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `domain`'s bytes, valid for the call.
    let rc = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
    if rc != 0 {
        return Err(Error::sys(
            "setdomainname",
            domain,
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Finds the program as execvp would, in the container's root and `PATH` (from the spec's
/// env). Missing programs fail here, at create, with an error naming them.
pub(super) fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        return match fs::metadata(&path) {
            Ok(_) if is_exec(&path) => Ok(path),
            Ok(_) => Err(Error::Setup(format!(
                "exec: {arg0:?}: permission denied (not an executable file)"
            ))),
            Err(e) => Err(Error::Setup(format!("exec: {arg0:?}: stat {arg0}: {e}"))),
        };
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
        .find(|candidate| is_exec(candidate))
        .ok_or_else(|| {
            Error::Setup(format!(
                "exec: {arg0:?}: executable file not found in $PATH"
            ))
        })
}

/// Closes every fd above 2 except the channel to the caller, right after the clone: the
/// setup helper, and whoever started it, may have left fds open that lead to host
/// directories (the cgroup2 directory for CLONE_INTO_CGROUP), and a spec path through
/// `/proc/self/fd/N/..` would walk out of the container from them (CVE-2024-21626). The
/// standard streams must not be directories either.
pub(super) fn close_inherited_fds(channel: RawFd) -> Result<()> {
    close_inherited_fds_except(&[channel])
}

/// [`close_inherited_fds`], keeping every fd in `keep` (the channel, a detached init's start
/// socket).
fn close_inherited_fds_except(keep: &[RawFd]) -> Result<()> {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    for (fd, stream) in stdio.into_iter().enumerate() {
        if nix::sys::stat::fstat(stream).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        {
            return Err(Error::Setup(format!(
                "stdio fd {fd} is a directory: refused, it would lead outside the container"
            )));
        }
    }
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut ranges = Vec::new();
    let mut first = 3;
    for fd in keep.into_iter().filter(|fd| *fd >= 3) {
        ranges.push((first, fd - 1));
        first = fd + 1;
    }
    ranges.push((first, i32::MAX));
    for (first, last) in ranges.into_iter().filter(|(f, l)| f <= l) {
        // SAFETY: close_range closes fd numbers of this process only; nothing in the init
        // owns an fd in these ranges (the helper dropped its own before calling run).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
        if rc != 0 {
            // Kernels before 5.9: close each open fd.
            let open: Vec<RawFd> = fs::read_dir("/proc/self/fd")
                .map_err(|e| Error::io("read", "/proc/self/fd", e))?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| (first..=last).contains(fd))
                .collect();
            for fd in open {
                // SAFETY: closes an fd number nothing in this process owns (see above); the
                // directory's own fd is already closed and fails harmlessly.
                unsafe { libc::close(fd) };
            }
        }
    }
    Ok(())
}

/// Refuses `path` unless the plain lookup (what execve does) and a lookup confined to the
/// root by the kernel (`RESOLVE_IN_ROOT`, no magic links) reach the same file.
pub(super) fn check_inside_root(
    root: &rootfs::resolve::Root,
    path: &Path,
    field: &str,
) -> Result<()> {
    let outside = |why: String| {
        Error::invalid(
            field,
            format!(
                "{} does not resolve inside the container's root: {why}",
                path.display()
            ),
        )
    };
    let confined = root.open_path(path).map_err(|e| outside(e.to_string()))?;
    let confined = nix::sys::stat::fstat(&confined)
        .map_err(|e| Error::sys("fstat", path.display().to_string(), e))?;
    let plain = fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
    if (plain.dev(), plain.ino()) != (confined.st_dev, confined.st_ino) {
        return Err(outside("it names another file".into()));
    }
    Ok(())
}

/// chdir to the spec's cwd and check that it is inside the container's root: a cwd reached
/// through an fd or path that leads outside (CVE-2024-21626) has no path from `/`, which
/// getcwd reports as "(unreachable)…" or an error.
pub fn enter_cwd(cwd: &Path) -> Result<()> {
    chdir(cwd).map_err(|e| Error::sys("chdir", format!("process.cwd {}", cwd.display()), e))?;
    match getcwd() {
        Ok(actual) if actual.is_absolute() => Ok(()),
        Ok(actual) => Err(Error::invalid(
            "process.cwd",
            format!(
                "{} leads outside the container's root ({})",
                cwd.display(),
                actual.display()
            ),
        )),
        Err(e) => Err(Error::invalid(
            "process.cwd",
            format!(
                "{} is not reachable from the container's root: {e}",
                cwd.display()
            ),
        )),
    }
}

pub(super) fn set_identity(process: &Process) -> Result<()> {
    let user = process.user();
    // No `process.capabilities` means no capabilities at all (oci-spec's Default has some).
    let none = no_capabilities();
    let caps = process.capabilities().as_ref().unwrap_or(&none);
    capabilities::drop_bounding(caps)?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&gids).map_err(|e| {
        Error::sys(
            "setgroups",
            format!("process.user.additionalGids {gids:?}"),
            e,
        )
    })?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid)
        .map_err(|e| Error::sys("setresgid", format!("process.user.gid {gid}"), e))?;
    // Keep the permitted set across the uid change; capabilities::apply then sets the
    // spec's sets.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl",
            "PR_SET_KEEPCAPS",
            nix::errno::Errno::last(),
        ));
    }
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid)
        .map_err(|e| Error::sys("setresuid", format!("process.user.uid {uid}"), e))?;
    capabilities::apply(caps)?;
    if let Some(mask) = user.umask() {
        umask(Mode::from_bits_truncate(mask as libc::mode_t));
    }
    Ok(())
}

fn no_capabilities() -> oci_spec::runtime::LinuxCapabilities {
    let empty = std::collections::HashSet::new;
    let mut caps = oci_spec::runtime::LinuxCapabilities::default();
    caps.set_bounding(Some(empty()))
        .set_effective(Some(empty()))
        .set_permitted(Some(empty()))
        .set_inheritable(Some(empty()))
        .set_ambient(Some(empty()));
    caps
}

/// Marks every fd from `first` (3, or above the passed fds) close-on-exec: the user's
/// process starts with only stdio and what was passed (CVE-2024-21626 leaked a host
/// directory fd this way).
pub(super) fn close_fds_on_exec(first: RawFd) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: mark each open fd.
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::io("read", "/proc/self/fd", e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on an fd number; a stale one (the directory's own) fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Every signal back to its default disposition and an empty mask: ignored signals and the
/// mask survive execve, and Rust's runtime ignores SIGPIPE. The raw syscall reaches the
/// signals glibc reserves for itself (32, 33), which its `signal()` refuses.
pub(super) fn reset_signals() -> Result<()> {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct installing SIG_DFL (no handler code) and no
        // old-action pointer; the size is that of the kernel's sigset.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if rc != 0 {
            return Err(Error::sys(
                "rt_sigaction",
                format!("signal {sig} SIG_DFL"),
                nix::errno::Errno::last(),
            ));
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::sys("sigprocmask", "clear", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_named_in_the_error() {
        let err = find_executable("/nonexistent-binary", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent-binary"), "{err}");
        let err = find_executable("no-such-program-xyz", &["PATH=/bin".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no-such-program-xyz") && err.contains("PATH"),
            "{err}"
        );
    }

    #[test]
    fn program_is_found_on_the_spec_path() {
        assert_eq!(
            find_executable("sh", &["PATH=/nope:/bin".into()]).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    /// Forks; the child runs `prepare` then execs `sh -c script` (after `close_fds_on_exec`
    /// and `reset_signals` when `guarded`); returns the child's exit code.
    fn exec_after(guarded: bool, prepare: impl FnOnce(), script: &str) -> i32 {
        let sh = CString::new("/bin/sh").unwrap();
        let args = [
            sh.clone(),
            CString::new("-c").unwrap(),
            CString::new(script).unwrap(),
        ];
        // SAFETY: the child only makes syscalls, execs or leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                prepare();
                if guarded && (close_fds_on_exec(3).is_err() || reset_signals().is_err()) {
                    // SAFETY: ends the forked child.
                    unsafe { libc::_exit(3) };
                }
                let _ = execve::<CString, CString>(&sh, &args, &[]);
                // SAFETY: ends the forked child.
                unsafe { libc::_exit(4) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("child ended with {other:?}"),
                }
            }
        }
    }

    fn leak_an_fd() -> i32 {
        let file = fs::File::open("/etc/hostname").unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // Not close-on-exec, as a careless library would leave it.
        // SAFETY: fcntl on an fd this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        fd
    }

    #[test]
    fn the_user_process_starts_with_only_stdio_open() {
        let script = "for fd in /proc/self/fd/*; do n=${fd##*/}; [ $n -gt 2 ] && [ -e /proc/self/fd/$n ] && [ \"$(readlink $fd)\" = /etc/hostname ] && exit 1; done; exit 0";
        assert_eq!(
            exec_after(
                true,
                || {
                    leak_an_fd();
                },
                script
            ),
            0
        );
        // The check sees a leak when the guard is not there.
        assert_eq!(
            exec_after(
                false,
                || {
                    leak_an_fd();
                },
                script
            ),
            1
        );
    }

    #[test]
    fn ignored_and_blocked_signals_are_reset_before_exec() {
        let prepare = || {
            // SAFETY: setting SIG_IGN installs no handler code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            let mut set = SigSet::empty();
            set.add(nix::sys::signal::Signal::SIGUSR1);
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        };
        let script = "grep -q '^SigIgn:\t0000000000000000' /proc/self/status && grep -q '^SigBlk:\t0000000000000000' /proc/self/status";
        assert_eq!(exec_after(true, prepare, script), 0);
        assert_ne!(exec_after(false, prepare, script), 0);
    }

    /// CVE-2024-21626: a cwd of /proc/self/fd/N, where N is a directory fd opened before the
    /// root changed, lands outside the root. The guard must refuse it.
    #[test]
    fn cwd_through_a_leaked_directory_fd_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        // SAFETY: the child only makes syscalls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    let leaked = fs::File::open(outside.path()).ok()?;
                    nix::unistd::chroot(root.path()).ok()?;
                    chdir("/").ok()?;
                    // What chdir("/proc/self/fd/N") does when N is a leaked directory fd.
                    nix::unistd::fchdir(&leaked).ok()?;
                    Some(if enter_cwd(Path::new(".")).is_err() {
                        0
                    } else {
                        1
                    })
                })()
                .unwrap_or(2);
                // SAFETY: ends the forked child.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
