//! The commands, each over the library and the state directory.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::ContainerState;
use runtime_core::cgroups::CgroupManager;
use runtime_core::hooks::Stage;
use runtime_core::process::{HelperConfig, InitStdio, Launcher};

use crate::Result;
use crate::args::{Command, CreateOpts, ExecOpts, Global};
use crate::log::{Logger, rfc3339};
use crate::state::{self, Container, Record, Root, Status};

/// The runtime-spec version of the state documents.
const OCI_VERSION: &str = "1.2.1";

/// Runs `command`; the exit status on success (the container's, for a foreground `run`).
pub fn run(g: &Global, command: Command, log: &Logger) -> Result<i32> {
    match command {
        Command::Help(command) => match crate::args::usage(command.as_deref()) {
            Some(text) => {
                print!("{text}");
                Ok(0)
            }
            None => Err(format!("unknown command {:?}", command.unwrap_or_default())),
        },
        Command::Version => {
            println!("mini version {}", env!("CARGO_PKG_VERSION"));
            println!("spec: {OCI_VERSION}");
            Ok(0)
        }
        Command::Features => {
            let features = runtime_core::features::features().map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&features).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(0)
        }
        Command::Spec(bundle) => spec(bundle.as_deref()).map(|()| 0),
        Command::Create(id, opts) => {
            let root = Root::open(&g.root)?;
            create(g, &root, &id, &opts, log).map(|_| 0)
        }
        Command::Run(id, opts, detach) => {
            let root = Root::open(&g.root)?;
            run_container(g, &root, &id, &opts, detach, log)
        }
        Command::Exec(id, opts) => exec(&Root::open(&g.root)?, &id, &opts),
        Command::Update(id, file, values) => {
            update(&Root::open(&g.root)?, &id, file.as_deref(), values).map(|()| 0)
        }
        Command::Start(id) => start(&Root::open(&g.root)?, &id, log).map(|()| 0),
        Command::State(id) => state(&Root::open(&g.root)?, &id).map(|()| 0),
        Command::Kill(id, signal, all) => {
            kill(&Root::open(&g.root)?, &id, &signal, all).map(|()| 0)
        }
        Command::Delete(id, force) => delete(&Root::open(&g.root)?, &id, force, log).map(|()| 0),
        Command::List(json, quiet) => list(&Root::open(&g.root)?, json, quiet).map(|()| 0),
        Command::Ps(id, json, args) => ps(&Root::open(&g.root)?, &id, json, &args).map(|()| 0),
        Command::Pause(id) => pause(&Root::open(&g.root)?, &id, true).map(|()| 0),
        Command::Resume(id) => pause(&Root::open(&g.root)?, &id, false).map(|()| 0),
        Command::Events(id, stats, interval) => {
            crate::events::run(&Root::open(&g.root)?, &id, stats, interval).map(|()| 0)
        }
    }
}

/// Builds the container and leaves its init blocked before exec, waiting on its start
/// socket; nothing of ours stays running beside it. Returns the init's pid.
fn create(g: &Global, root: &Root, id: &str, o: &CreateOpts, log: &Logger) -> Result<i32> {
    state::check_id(id)?;
    // Before anything is done: run from a view of this executable nothing can write, so that
    // the container's init may be this process's own child rather than that of an exec'd
    // setup helper (the same guard, one exec fewer). The command starts over in the new
    // image; where the kernel offers no such view, the helper does the work as before.
    use runtime_core::exe_guard;
    if std::env::var_os(exe_guard::REEXEC_MARK).is_none() && !exe_guard::running_from_view() {
        let err = exe_guard::reexec_from_view().unwrap_err();
        log.debug(&format!("no re-exec from a view of the executable: {err}"));
    } else {
        // Exec'd as /proc/self/fd/N, the kernel named this process "N".
        // SAFETY: prctl with a NUL-terminated name of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"mini".as_ptr(), 0, 0, 0) };
    }
    let bundle = match &o.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(|e| format!("working directory: {e}"))?,
    };
    let bundle = bundle
        .canonicalize()
        .map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
    let mut spec = runtime_core::spec::load(&bundle).map_err(|e| e.to_string())?;
    let listen = listen_fds();
    let passed = passed_fds(listen + o.preserve_fds as usize)?;
    if listen > 0
        && let Some(process) = spec.process_mut()
    {
        // As runc: the socket-activation fds come first, and the process learns of them
        // as its own (it is pid 1 of its namespace).
        let mut env = process.env().clone().unwrap_or_default();
        env.push(format!("LISTEN_FDS={listen}"));
        env.push("LISTEN_PID=1".into());
        process.set_env(Some(env));
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    match (terminal, &o.console_socket) {
        (true, None) => {
            return Err(
                "cannot allocate tty if mini will detach without setting console socket".into(),
            );
        }
        (false, Some(_)) => {
            return Err("cannot use console socket if mini will not detach or allocate tty".into());
        }
        _ => {}
    }
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    // runc's rule: --systemd-cgroup selects the systemd driver; without it a slice:prefix:name
    // path selects it too where systemd runs (the library's choose_driver).
    let cgroup = CgroupManager::for_container(id, cgroups_path.as_deref(), g.systemd_cgroup)
        .map_err(|e| e.to_string())?;
    let rootfs = runtime_core::spec::rootfs_path(&spec, &bundle);

    let mut record = Record {
        id: id.to_string(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        pid: 0,
        start_time: None,
        ready: false,
        started: false,
        created: rfc3339(SystemTime::now(), true),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: None,
        cgroup_pending: Some(cgroup.clone()),
        late_hooks: state::LateHooks::of(&spec),
    };
    let container = root.create(id, &record)?;
    let built = (|| {
        let listener = runtime_core::process::bind_start_socket(&container.start_socket())
            .map_err(|e| e.to_string())?;
        let config = HelperConfig {
            id: id.to_string(),
            bundle,
            rootfs,
            spec,
            cgroup: Some(cgroup.clone()),
            cgroup_record: Some(container.dir.join(CGROUP_RECORD)),
            no_new_keyring: o.no_new_keyring,
            no_pivot: o.no_pivot,
            pass_fds: passed.len(),
        };
        let launcher = Launcher::new().map_err(|e| e.to_string())?;
        let mut pending = if runtime_core::process::can_build_here(&config) {
            launcher.build_detached_here(config, listener.as_fd())
        } else {
            launcher.spawn_detached(config, our_stdio()?, listener.as_fd())
        }
        .map_err(|e| e.to_string())?;
        pending.pass_fds(&passed).map_err(|e| e.to_string())?;
        let helper = pending.helper_pid();
        let pid = pending.wait_pid();
        if let Some(helper) = helper {
            let _ = waitpid(Pid::from_raw(helper), None);
        }
        let pid = match pid {
            Ok(pid) => pid,
            // What the helper made and recorded is removed by destroy below (if unused); a
            // cgroup that was there before stays.
            Err(err) => return Err(err.to_string()),
        };
        log.debug(&format!("container {id}: init is pid {pid}"));
        record.pid = pid;
        record.start_time = state::start_time(pid);
        // With the directories the helper made (only those are removed at delete) and, with
        // the systemd driver, the scope's identity (delete stops no other scope).
        let made = made_by_setup(&container, &cgroup, log);
        record.cgroup = Some(made.identified(pid).map_err(|e| e.to_string())?);
        container.write(&record)?;
        let created = match pending.wait_ready() {
            Ok(mut created) => {
                if let Some(socket) = &o.console_socket {
                    let master = created
                        .take_console()
                        .ok_or("the container init sent no terminal")?;
                    send_console(socket, master)?;
                }
                created
            }
            Err(err) => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
                return Err(err.to_string());
            }
        };
        record.ready = true;
        container.write(&record)?;
        // Recorded: from now on the init may outlive this command.
        created.detach().map_err(|e| e.to_string())?;
        if let Some(pid_file) = &o.pid_file {
            state::write_atomic(pid_file, pid.to_string().as_bytes())?;
        }
        Ok(pid)
    })();
    match built {
        Ok(pid) => Ok(pid),
        Err(err) => {
            destroy(container, Some(&record), log);
            Err(err)
        }
    }
}

/// How many socket-activation fds systemd passed us, as go-systemd's `activation.Files`
/// (which runc uses) counts them: `LISTEN_FDS`, when `LISTEN_PID` is our pid.
fn listen_fds() -> usize {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Our fds 3 .. 3 + `count`, which the container's process gets as the same numbers
/// (`LISTEN_FDS` ones first, then `--preserve-fds`); each must be open.
fn passed_fds(count: usize) -> Result<Vec<std::os::fd::BorrowedFd<'static>>> {
    (0..count)
        .map(|n| {
            let fd = 3 + n as i32;
            // SAFETY: F_GETFD only reads the flags of an fd number.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(format!(
                    "unable to stat preserved-fd {n} (of {count}): fd {fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: the fd is open (checked) and this process never closes fds it did not
            // open, so it stays open for the whole command.
            Ok(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        })
        .collect()
}

/// Hands the master of the container's pty to whoever listens on `socket` (podman's conmon,
/// containerd's shim), as runc does: one message, the pty's name as data, the fd attached.
fn send_console(socket: &Path, master: OwnedFd) -> Result<()> {
    use std::os::fd::AsRawFd;
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect to console socket {}: {e}", socket.display()))?;
    runtime_core::process::channel::send_with_fds(&stream, b"/dev/ptmx", &[master.as_raw_fd()])
        .map_err(|e| format!("send the terminal to {}: {e}", socket.display()))
}

/// The container's stdio is the command's own (runc's pass-through mode).
fn our_stdio() -> Result<InitStdio> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> Result<OwnedFd> {
        fd.try_clone_to_owned()
            .map_err(|e| format!("duplicate stdio: {e}"))
    };
    Ok(InitStdio {
        stdin: dup(std::io::stdin().as_fd())?,
        stdout: dup(std::io::stdout().as_fd())?,
        stderr: dup(std::io::stderr().as_fd())?,
    })
}

fn load(root: &Root, id: &str, locked: bool) -> Result<(Container, Option<Record>, Status)> {
    let c = if locked {
        root.lock(id)?
    } else {
        root.peek(id)?
    };
    let record = c.record()?;
    let status = c.status(record.as_ref());
    Ok((c, record, status))
}

fn start(root: &Root, id: &str, log: &Logger) -> Result<()> {
    let (c, record, status) = load(root, id, true)?;
    match status {
        Status::Created => {}
        Status::Stopped => return Err("cannot start a container that has stopped".into()),
        Status::Running | Status::Paused => {
            return Err("cannot start an already running container".into());
        }
        Status::Creating => return Err(format!("cannot start a container in state {status:?}")),
    }
    let mut record = record.ok_or("container does not exist")?;
    let socket = c.start_socket();
    let (released, result) = match runtime_core::process::start_detached(&socket) {
        Ok(()) => (true, Ok(())),
        // Nobody listens: the init was released by a start that crashed before recording it.
        Err(runtime_core::Error::Io {
            op: "connect",
            source,
            ..
        }) if matches!(
            source.raw_os_error(),
            Some(libc::ECONNREFUSED | libc::ENOENT)
        ) && state::init_alive(&record) =>
        {
            (
                true,
                Err("cannot start an already running container".to_string()),
            )
        }
        // Not reached: the init still waits.
        Err(e @ runtime_core::Error::Io { op: "connect", .. }) => (false, Err(e.to_string())),
        // The init got Start and its exec failed.
        Err(e) => (true, Err(e.to_string())),
    };
    if released {
        // Under the lock, once the init is released (or found released): from now on it is
        // running, whatever its program shows.
        record.started = true;
        c.write(&record)?;
        let _ = std::fs::remove_file(&socket);
    }
    result?;
    run_late_hooks(&record, Stage::Poststart, ContainerState::Running, log);
    Ok(())
}

/// The spec's `poststart` or `poststop` hooks (as `create` recorded them), in our
/// namespaces. A failing hook is a warning and the lifecycle goes on (runtime.md).
fn run_late_hooks(record: &Record, stage: Stage, status: ContainerState, log: &Logger) {
    let Some(late) = record
        .late_hooks
        .as_ref()
        .filter(|l| !stage.of(&l.hooks).is_empty())
    else {
        return;
    };
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_version(late.oci_version.clone());
    spec.set_annotations(Some(record.annotations.clone().into_iter().collect()));
    let pid = if status == ContainerState::Stopped {
        0
    } else {
        record.pid
    };
    let state = runtime_core::hooks::state(&spec, &record.id, &record.bundle, status, pid);
    let ran = Launcher::new().and_then(|l| l.run_hooks(stage, Some(&late.hooks), &state));
    if let Err(err) = ran {
        log.warn(&format!("container {}: {err}", record.id));
    }
}

fn state_json(id: &str, record: Option<&Record>, status: Status) -> serde_json::Value {
    let pid = match status {
        Status::Stopped => 0,
        _ => record.map_or(0, |r| r.pid),
    };
    let mut doc = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": id,
        "pid": pid,
        "status": status.as_str(),
        "bundle": record.map(|r| r.bundle.clone()).unwrap_or_default(),
        "rootfs": record.map(|r| r.rootfs.clone()).unwrap_or_default(),
        "created": record.map(|r| r.created.clone()).unwrap_or_default(),
        "owner": "",
    });
    if let Some(r) = record.filter(|r| !r.annotations.is_empty()) {
        doc["annotations"] = serde_json::json!(r.annotations);
    }
    doc
}

fn state(root: &Root, id: &str) -> Result<()> {
    let (_, record, status) = load(root, id, false)?;
    // A directory without a record (an older create that crashed) is no container.
    let record = record.ok_or("container does not exist")?;
    let doc = state_json(id, Some(&record), status);
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// A signal by name (`KILL`, `SIGKILL`) or number (1–64, real-time ones included).
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("invalid signal: {s}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

fn kill(root: &Root, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let (_, record, status) = load(root, id, false)?;
    let record = match (status, record) {
        (Status::Stopped, _) | (_, None) => return Err("container not running".into()),
        (_, Some(r)) => r,
    };
    if all && let Some(cgroup) = &record.cgroup {
        match Signal::try_from(sig) {
            Ok(Signal::SIGKILL) => {
                cgroup
                    .kill_all(Signal::SIGKILL)
                    .map_err(|e| e.to_string())?;
                // The cgroup's SIGKILL waits for its processes to go: the init may be gone
                // (reaped by its parent) by now, which is what was asked.
                return match signal_init(&record, sig) {
                    Err(_) if !state::init_alive(&record) => Ok(()),
                    other => other,
                };
            }
            _ => {
                for pid in cgroup.pids().map_err(|e| e.to_string())? {
                    // SAFETY: kill with integer arguments.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
    signal_init(&record, sig)
}

/// Signals the recorded init through a pidfd, so a pid reused since cannot be hit.
fn signal_init(record: &Record, sig: i32) -> Result<()> {
    // SAFETY: pidfd_open with integer arguments; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, record.pid, 0) };
    if fd < 0 {
        return Err("container not running".into());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    let pidfd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
    if !state::init_alive(record) {
        return Err("container not running".into());
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal on our pidfd, without siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "signal {sig} to pid {}: {}",
            record.pid,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn delete(root: &Root, id: &str, force: bool, log: &Logger) -> Result<()> {
    let c = match root.lock(id) {
        Ok(c) => c,
        Err(e) if force && e == "container does not exist" => return Ok(()),
        Err(e) => return Err(e),
    };
    let record = match c.record() {
        Ok(record) => record,
        // Not written by us (we write it atomically): with --force the directory goes.
        Err(e) if force => {
            log.warn(&format!("delete {id}: unreadable state: {e}"));
            None
        }
        Err(e) => return Err(e),
    };
    let status = c.status(record.as_ref());
    match status {
        // runc deletes a created container too: it never ran.
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(format!(
                "cannot delete container {id} that is not stopped: {}",
                status.as_str()
            ));
        }
    }
    if destroy(c, record.as_ref(), log) {
        Ok(())
    } else {
        Err(format!("container {id}: its cgroup still holds processes"))
    }
}

/// Kills what is left of the container, removes its cgroup and its state directory;
/// whether everything went. Each step runs even when an earlier one failed.
fn destroy(c: Container, record: Option<&Record>, log: &Logger) -> bool {
    let mut clean = true;
    log.debug(&format!("destroy {}: record {record:?}", c.dir.display()));
    if let Some(record) = record.filter(|r| r.pid > 0) {
        let _ = signal_init(record, libc::SIGKILL);
        if let Some(cgroup) = &record.cgroup {
            // Returns once no process is left (it waits for the killed ones to go).
            if let Err(err) = cgroup.kill_all(Signal::SIGKILL) {
                log.warn(&format!("kill the container's processes: {err}"));
            }
            log.debug(&format!("container {}: removing its cgroup", record.id));
            if let Err(err) = cgroup.destroy() {
                log.warn(&format!("remove cgroup: {err}"));
                clean = false;
            }
        }
    }
    if let Some(pending) = record
        .filter(|r| r.cgroup.is_none())
        .and_then(|r| r.cgroup_pending.as_ref())
        .map(|pending| made_by_setup(&c, pending, log))
        .filter(|pending| pending.made_any() || pending.systemd_unit().is_some())
    {
        // What the setup helper made for a create that ended before recording its init:
        // removed only if empty (its init, killed with that create, may take a moment to
        // go); what else is in it is not ours (nor are its sub-cgroups: destroy would remove
        // them), nor is a cgroup that was there before.
        let deadline = Instant::now() + Duration::from_secs(1);
        while pending.occupied().is_ok_and(|o| o.is_some()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        match pending.occupied() {
            Ok(None) => {
                if let Err(err) = pending.remove_if_unused() {
                    log.debug(&format!("leave cgroup of an unfinished create: {err}"));
                }
            }
            _ => log.debug("leave cgroup of an unfinished create: it holds processes"),
        }
    }
    if let Err(err) = c.remove() {
        log.warn(&err);
        clean = false;
    }
    // After the container is gone, before delete returns (runtime.md steps 12 and 13; a
    // create that failed is destroyed through here too, as runc does).
    if let Some(record) = record {
        run_late_hooks(record, Stage::Poststop, ContainerState::Stopped, log);
    }
    clean
}

/// The state file where the setup helper records the cgroup with the directories it made.
const CGROUP_RECORD: &str = "cgroup.json";

/// `cgroup` with the directories the setup helper made for it, as it recorded them in the
/// container's state directory; `cgroup` itself (nothing known made) without that record.
fn made_by_setup(c: &Container, cgroup: &CgroupManager, log: &Logger) -> CgroupManager {
    cgroup
        .with_recorded_made(&c.dir.join(CGROUP_RECORD))
        .unwrap_or_else(|err| {
            log.warn(&err.to_string());
            cgroup.clone()
        })
}

/// `run`: create and start; in the foreground, forward signals to the init, wait for it,
/// delete the container and exit with its status (128 + signal when killed).
fn run_container(
    g: &Global,
    root: &Root,
    id: &str,
    o: &CreateOpts,
    detach: bool,
    log: &Logger,
) -> Result<i32> {
    let set = if detach {
        SigSet::empty()
    } else {
        block_forwarded()?
    };
    let pid = create(g, root, id, o, log)?;
    if let Err(err) = start(root, id, log) {
        if let Ok(c) = root.lock(id) {
            let record = c.record().ok().flatten();
            destroy(c, record.as_ref(), log);
        }
        return Err(err);
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(Pid::from_raw(pid), &set)?;
    if let Ok(c) = root.lock(id) {
        let record = c.record().ok().flatten();
        destroy(c, record.as_ref(), log);
    }
    Ok(code)
}

/// The signals a foreground `run` or `exec` passes on to its process.
const FORWARDED: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Blocks [`FORWARDED`] and SIGCHLD before the process exists, so none is lost (the
/// container's process unblocks them before its exec); the set to wait on.
fn block_forwarded() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in FORWARDED.into_iter().chain([Signal::SIGCHLD]) {
        set.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    Ok(set)
}

/// Waits for our child `pid`, passing on the signals of `set` but SIGCHLD; its exit status
/// (128 + signal when killed).
fn wait_forwarding(pid: Pid, set: &SigSet) -> Result<i32> {
    loop {
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(e) => return Err(format!("wait for the container's process: {e}")),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
    }
}

/// `exec`: a further process in the running container, through the library's exec helper
/// (it joins the init's namespaces through a pidfd and the container's cgroup). In the
/// foreground the command waits for it and exits with its status.
fn exec(root: &Root, id: &str, o: &ExecOpts) -> Result<i32> {
    let (_, record, status) = load(root, id, false)?;
    let record = match (status, record) {
        // runc execs into a created container too: its namespaces and cgroup are made.
        (Status::Running | Status::Created, Some(r)) => r,
        // As runc: only when asked; the process is frozen with the container until resume.
        (Status::Paused, Some(r)) if o.ignore_paused => r,
        (Status::Paused, _) => {
            return Err(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            );
        }
        _ => return Err("cannot exec in a stopped container".into()),
    };
    let cgroup = record.cgroup.clone().ok_or("container not running")?;
    let cgroup = if o.cgroups.is_empty() {
        cgroup
    } else {
        cgroup.for_exec_in(&o.cgroups).map_err(|e| e.to_string())?
    };
    // Held from here: the init whose root `--user` names are looked up in stays this one.
    // SAFETY: pidfd_open with integer arguments; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, record.pid, 0) };
    if fd < 0 || !state::init_alive(&record) {
        return Err("container not running".into());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    let pidfd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
    let spec = runtime_core::spec::read(&record.bundle).map_err(|e| e.to_string())?;
    let json = match &o.process {
        Some(path) => std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?,
        None => exec_process_json(&spec, o, record.pid)?,
    };
    let spec = runtime_core::process::exec_spec(&spec, &json).map_err(|e| e.to_string())?;
    let passed = passed_fds(o.preserve_fds as usize)?;
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    if terminal && o.console_socket.is_none() {
        return Err(
            "cannot allocate tty if mini will detach without setting console socket".into(),
        );
    }
    let set = if o.detach {
        SigSet::empty()
    } else {
        block_forwarded()?
    };
    let config = runtime_core::process::ExecConfig {
        container_id: id.to_string(),
        exec_id: format!("exec-{}", std::process::id()),
        spec,
        cgroup,
        no_new_keyring: false,
        pass_fds: passed.len(),
        bundle: Some(record.bundle.clone()),
    };
    let launcher = Launcher::new().map_err(|e| e.to_string())?;
    let mut pending = launcher
        .spawn_exec(config, our_stdio()?, pidfd.as_fd())
        .map_err(|e| e.to_string())?;
    pending.pass_fds(&passed).map_err(|e| e.to_string())?;
    let helper = Pid::from_raw(pending.helper_pid());
    let pid = pending.wait_pid();
    let _ = waitpid(helper, None);
    let pid = pid.map_err(|e| e.to_string())?;
    let (_, console) = pending
        .wait_exec_with_console()
        .map_err(|e| e.to_string())?;
    if let (Some(socket), Some(master)) = (&o.console_socket, console) {
        send_console(socket, master)?;
    }
    if let Some(pid_file) = &o.pid_file {
        state::write_atomic(pid_file, pid.to_string().as_bytes())?;
    }
    if o.detach {
        return Ok(0);
    }
    wait_forwarding(Pid::from_raw(pid), &set)
}

/// The exec's process from the command line: the container's, with the given arguments,
/// terminal, cwd, extra env, user (`USER[:GROUP]`, names looked up in the container of
/// `init_pid`) and added capabilities.
fn exec_process_json(
    spec: &oci_spec::runtime::Spec,
    o: &ExecOpts,
    init_pid: i32,
) -> Result<Vec<u8>> {
    let mut process =
        serde_json::to_value(spec.process().as_ref().ok_or("the spec has no process")?)
            .map_err(|e| e.to_string())?;
    process["args"] = serde_json::json!(o.args);
    process["terminal"] = serde_json::json!(o.tty);
    if let Some(cwd) = &o.cwd {
        process["cwd"] = serde_json::json!(cwd);
    }
    if !o.env.is_empty() {
        let mut env: Vec<serde_json::Value> =
            process["env"].as_array().cloned().unwrap_or_default();
        env.extend(o.env.iter().map(|e| serde_json::json!(e)));
        process["env"] = serde_json::Value::Array(env);
    }
    if let Some(user) = &o.user {
        let default_gid = process["user"]["gid"].as_u64().unwrap_or(0) as u32;
        let found = crate::user::resolve(user, init_pid, default_gid)?;
        let additional = process["user"]["additionalGids"].take();
        process["user"] = serde_json::json!({"uid": found.uid, "gid": found.gid,
                                             "additionalGids": additional});
        add_gids(&mut process, &found.additional_gids);
    }
    add_gids(&mut process, &o.additional_gids);
    if o.no_new_privs {
        process["noNewPrivileges"] = serde_json::json!(true);
    }
    if let Some(profile) = &o.apparmor {
        process["apparmorProfile"] = serde_json::json!(profile);
    }
    if let Some(label) = &o.process_label {
        process["selinuxLabel"] = serde_json::json!(label);
    }
    add_caps(&mut process, &o.caps);
    serde_json::to_vec(&process).map_err(|e| e.to_string())
}

/// Adds `gids` to the process's `user.additionalGids` (each once).
fn add_gids(process: &mut serde_json::Value, gids: &[u32]) {
    if gids.is_empty() {
        return;
    }
    let mut all: Vec<u32> = process["user"]["additionalGids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_u64())
                .map(|g| g as u32)
                .collect()
        })
        .unwrap_or_default();
    all.extend(gids);
    all.sort_unstable();
    all.dedup();
    process["user"]["additionalGids"] = serde_json::json!(all);
}

/// `exec --cap`: as runc (since 1.1.2, CVE-2022-29162) adds each to the bounding,
/// effective and permitted sets, never to the inheritable one; and to the ambient set only
/// where it is already inheritable (an ambient capability needs that).
fn add_caps(process: &mut serde_json::Value, caps: &[String]) {
    if caps.is_empty() {
        return;
    }
    let sets = &mut process["capabilities"];
    let inheritable: Vec<serde_json::Value> =
        sets["inheritable"].as_array().cloned().unwrap_or_default();
    for cap in caps {
        let value = serde_json::json!(cap);
        let mut names = vec!["bounding", "effective", "permitted"];
        if inheritable.contains(&value) {
            names.push("ambient");
        }
        for name in names {
            if !sets[name].is_array() {
                sets[name] = serde_json::json!([]);
            }
            if let Some(set) = sets[name].as_array_mut().filter(|s| !s.contains(&value)) {
                set.push(value.clone());
            }
        }
    }
}

/// `update`: new resource limits for a running, paused or created container, through the
/// cgroup manager's `update` (the code that applied them at create). The flags override
/// the same fields of the `--resources` document.
fn update(root: &Root, id: &str, file: Option<&Path>, flags: serde_json::Value) -> Result<()> {
    let (_, record, status) = load(root, id, true)?;
    let cgroup = match (status, record.and_then(|r| r.cgroup)) {
        (Status::Stopped, _) | (_, None) => return Err("container not running".into()),
        (_, Some(cgroup)) => cgroup,
    };
    let mut doc = match file {
        Some(path) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("read resources from stdin: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("resources: {e}"))?
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => serde_json::json!({}),
    };
    if let (Some(doc), Some(flags)) = (doc.as_object_mut(), flags.as_object()) {
        for (section, values) in flags {
            let entry = doc.entry(section.clone()).or_insert(serde_json::json!({}));
            for (key, value) in values.as_object().into_iter().flatten() {
                entry[key] = value.clone();
            }
        }
    }
    let resources: oci_spec::runtime::LinuxResources =
        serde_path_to_error::deserialize(doc).map_err(|e| format!("resources: {e}"))?;
    cgroup.update(&resources).map_err(|e| e.to_string())
}

fn list(root: &Root, json: bool, quiet: bool) -> Result<()> {
    let mut rows = Vec::new();
    for id in root.ids()? {
        // A directory without a record (an older create that crashed) is no container.
        if let Ok((_, Some(record), status)) = load(root, &id, false) {
            rows.push(state_json(&id, Some(&record), status));
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if quiet {
        for row in &rows {
            println!("{}", row["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    println!(
        "{:<12}{:<12}{:<12}{:<40}{:<32}OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for row in &rows {
        println!(
            "{:<12}{:<12}{:<12}{:<40}{:<32}root",
            row["id"].as_str().unwrap_or_default(),
            row["pid"].to_string(),
            row["status"].as_str().unwrap_or_default(),
            row["bundle"].as_str().unwrap_or_default(),
            row["created"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

fn ps(root: &Root, id: &str, json: bool, ps_args: &[String]) -> Result<()> {
    let (_, record, status) = load(root, id, false)?;
    let pids = match (&record, status) {
        (_, Status::Stopped) => Vec::new(),
        (Some(r), _) => match &r.cgroup {
            Some(cgroup) => cgroup.pids().map_err(|e| e.to_string())?,
            None => Vec::new(),
        },
        (None, _) => Vec::new(),
    };
    if json {
        println!("{}", serde_json::json!(pids));
        return Ok(());
    }
    // As runc: the host's `ps` (default `-ef`), keeping the header and the container's rows.
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| format!("run ps: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or("ps: no PID column in its output")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

fn pause(root: &Root, id: &str, freeze: bool) -> Result<()> {
    let (_, record, status) = load(root, id, true)?;
    let cgroup = record
        .and_then(|r| r.cgroup)
        .ok_or("container not running")?;
    match (freeze, status) {
        (true, Status::Running) => cgroup.freeze().map_err(|e| e.to_string()),
        (true, _) => Err("container not running".into()),
        (false, Status::Paused) => cgroup.thaw().map_err(|e| e.to_string()),
        (false, _) => Err("container not paused".into()),
    }
}

/// `spec`: runc's default `config.json` in the bundle, changed where mini would refuse it
/// (no terminal: `--console-socket` is not there yet; ambient capabilities only with the
/// inheritable set, as the kernel requires).
fn spec(bundle: Option<&Path>) -> Result<()> {
    let dir = bundle.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let path = dir.join("config.json");
    if path.exists() {
        return Err("File config.json exists. Remove it first".into());
    }
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let doc = serde_json::json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "mini",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("term"), Ok(15));
        assert_eq!(parse_signal("34"), Ok(34));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
