//! `start`: spawn the daemon in its own session with a listening socket, record the address
//! in the bundle, and print it — nothing else — for containerd.

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult};
use protobuf::Message;
use sha2::{Digest, Sha256};

use crate::args::Args;

/// Where shim sockets live (the convention of containerd's Go and Rust shims).
const SOCKET_DIR: &str = "/run/containerd/s";
/// The task API version announced to callers that send bootstrap parameters (containerd
/// 2.3+). The same service is also served as v2.
const TASK_API_VERSION: i32 = 3;
/// The fd the listening socket has in the daemon.
pub const LISTENER_FD: i32 = 3;
/// The annotation CRI sets on every container of a pod: one shim serves the whole pod.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub fn start(args: &Args) -> Result<(), String> {
    let bundle = args
        .bundle_dir()
        .map_err(|e| format!("working directory: {e}"))?;
    let stdin = read_stdin();
    let grouping = grouping_id(&bundle).unwrap_or_else(|| args.id.clone());
    let socket = socket_path(&args.address, &args.namespace, &grouping);
    let address = format!("unix://{}", socket.display());

    if grouping != args.id && UnixStream::connect(&socket).is_ok() {
        // The pod's shim is already running: it serves this container too.
        write_address(&bundle, &address)?;
        return reply(&address, stdin.as_deref(), args);
    }

    let listener = listen(&socket)?;
    // Removed on a failure below only while it still is this shim's file.
    let socket_file = SocketFile::of_listener(listener.as_raw_fd());
    let remove_socket = || socket_file.iter().for_each(SocketFile::remove);
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut cmd = Command::new(&exe);
    cmd.args([
        "-namespace",
        &args.namespace,
        "-id",
        &args.id,
        "-address",
        &args.address,
    ]);
    if !args.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &args.publish_binary]);
    }
    if args.debug {
        cmd.arg("-debug");
    }
    let listener_fd = listener.as_raw_fd();
    cmd.current_dir(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only setsid and dup2/fcntl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Own session: containerd's restart or a signal to its group must not reach us.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if listener_fd == LISTENER_FD {
                if libc::fcntl(LISTENER_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(listener_fd, LISTENER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        remove_socket();
        format!("spawn daemon {}: {e}", exe.display())
    })?;
    drop(listener);
    let _ = fs::write(bundle.join("shim.pid"), child.id().to_string());
    let result = join_shim_cgroup(child.id(), stdin.as_deref(), args)
        .and_then(|()| write_address(&bundle, &address))
        .and_then(|()| reply(&address, stdin.as_deref(), args));
    if result.is_err() {
        // containerd will not know this daemon: it must not outlive the failed start.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        remove_socket();
    }
    result
}

/// Stdin as containerd pipes it: runtime options (1.6–2.2, when set) or bootstrap parameters
/// (2.3+). Nothing when it is a terminal (a person running `start` by hand).
fn read_stdin() -> Option<Vec<u8>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut buf = Vec::new();
    stdin.read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Bootstrap parameters, only when `stdin` parses as such and names this shim: runtime
/// options (a protobuf `Any`) also parse as `BootstrapParams`.
pub fn bootstrap_params(stdin: &[u8], id: &str, namespace: &str) -> Option<BootstrapParams> {
    if stdin.is_empty() {
        return None;
    }
    let params = BootstrapParams::parse_from_bytes(stdin).ok()?;
    (params.instance_id == id && params.namespace == namespace).then_some(params)
}

/// The runtime options containerd pipes to `start` (an `Any`), when stdin carries them.
fn stdin_options(stdin: Option<&[u8]>, args: &Args) -> Result<mini_protos::TaskOptions, String> {
    let Some(stdin) = stdin.filter(|s| !s.is_empty()) else {
        return Ok(Default::default());
    };
    if bootstrap_params(stdin, &args.id, &args.namespace).is_some() {
        return Ok(Default::default());
    }
    let any = protobuf::well_known_types::any::Any::parse_from_bytes(stdin)
        .map_err(|e| format!("runtime options on stdin: {e}"))?;
    mini_protos::decode_task_options(Some(&any))
}

/// `ShimCgroup`: the daemon joins that cgroup, as containerd's runc shim puts itself there —
/// on cgroup v2 the unified hierarchy, on v1 every hierarchy that has the cgroup. The cgroup
/// must exist (mini does not create it).
fn join_shim_cgroup(pid: u32, stdin: Option<&[u8]>, args: &Args) -> Result<(), String> {
    let path = stdin_options(stdin, args)?.shim_cgroup;
    if path.is_empty() {
        return Ok(());
    }
    let dirs = shim_cgroup_dirs(Path::new(CGROUP_ROOT), &path)?;
    if dirs.is_empty() {
        return Err(format!(
            "ShimCgroup {path:?}: no such cgroup under {CGROUP_ROOT}"
        ));
    }
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .map_err(|e| format!("ShimCgroup {path:?}: write {}: {e}", procs.display()))?;
    }
    Ok(())
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directories of cgroup `path` below `root`: `root/path` on a unified (v2) host, else
/// `root/<hierarchy>/path` for each v1 hierarchy (and the hybrid `unified` one) that has it.
fn shim_cgroup_dirs(root: &Path, path: &str) -> Result<Vec<PathBuf>, String> {
    let rel = Path::new(path);
    let clean = rel.is_absolute()
        && rel
            .components()
            .skip(1)
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !clean {
        return Err(format!(
            "ShimCgroup {path:?} is not an absolute cgroup path without \"..\""
        ));
    }
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(rel);
        return Ok(if dir.is_dir() { vec![dir] } else { Vec::new() });
    }
    let mut dirs = Vec::new();
    let entries = fs::read_dir(root).map_err(|e| format!("read {}: {e}", root.display()))?;
    for entry in entries.flatten() {
        // Co-mounted controllers appear once as a directory and again as symlinks to it.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path().join(rel);
        if dir.is_dir() && dir.join("cgroup.procs").exists() {
            dirs.push(dir);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// What `start` prints: a `BootstrapResult` for a caller that sent bootstrap parameters, the
/// plain address otherwise (containerd 1.6 cannot parse more; 1.7–2.2 then use task API v2).
pub fn reply_bytes(address: &str, stdin: Option<&[u8]>, args: &Args) -> Vec<u8> {
    match stdin.and_then(|s| bootstrap_params(s, &args.id, &args.namespace)) {
        Some(_) => {
            let result = BootstrapResult {
                version: TASK_API_VERSION,
                address: address.to_string(),
                protocol: "ttrpc".to_string(),
                ..Default::default()
            };
            result.write_to_bytes().unwrap_or_default()
        }
        None => address.as_bytes().to_vec(),
    }
}

fn reply(address: &str, stdin: Option<&[u8]>, args: &Args) -> Result<(), String> {
    let bytes = reply_bytes(address, stdin, args);
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| format!("write address: {e}"))
}

/// The socket of a shim: sha256 of containerd's address, the namespace and the grouping id,
/// as containerd's own shims name it (82 bytes, well under the 107-byte limit).
pub fn socket_path(address: &str, namespace: &str, grouping: &str) -> PathBuf {
    let joined = Path::new(address).join(namespace).join(grouping);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(hex)
}

/// The socket recorded in `<bundle>/address`, if it is one of ours.
pub fn recorded_socket(bundle: &Path) -> Option<PathBuf> {
    let address = fs::read_to_string(bundle.join("address")).ok()?;
    let path = PathBuf::from(address.trim().strip_prefix("unix://")?);
    // Exactly a file of the socket directory: `starts_with` alone would take
    // `/run/containerd/s/../../x`.
    let name = path.file_name()?.to_str()?;
    (path.parent() == Some(Path::new(SOCKET_DIR)) && name != ".." && name != ".").then_some(path)
}

/// Read leniently on purpose: a config.json that does not parse or validate must still get
/// its shim started, so that Create reports the field at fault (`runtime_core::spec::load`).
fn grouping_id(bundle: &Path) -> Option<String> {
    let text = fs::read_to_string(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_str(&text).ok()?;
    spec.get("annotations")?
        .get(SANDBOX_ANNOTATION)?
        .as_str()
        .map(str::to_string)
}

/// A path socket (never abstract: CVE-2020-15257) in a root-only directory.
fn listen(socket: &Path) -> Result<UnixListener, String> {
    let dir = socket.parent().unwrap_or(Path::new(SOCKET_DIR));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let _lock = lock_socket_dir(dir);
    if socket.exists() {
        if is_served(socket) {
            return Err(format!("{} is in use by another shim", socket.display()));
        }
        // A dead shim's socket.
        let _ = fs::remove_file(socket);
    }
    // `bind` listens at once: under the lock, nobody sees the file before it is served.
    let listener =
        UnixListener::bind(socket).map_err(|e| format!("listen on {}: {e}", socket.display()))?;
    let _ = fs::set_permissions(socket, fs::Permissions::from_mode(0o600));
    Ok(listener)
}

/// Removes a socket file that no daemon serves: what a daemon killed with `kill -9` left.
/// A new shim for the same id may bind the path at any moment (containerd re-creates an id
/// while it still runs the old shim's `delete`): the check and the removal are one step
/// under the directory's lock, which `listen` holds from its own check until it listens.
pub fn remove_dead_socket(socket: &Path) {
    let _lock = lock_socket_dir(socket.parent().unwrap_or(Path::new(SOCKET_DIR)));
    if !is_served(socket) {
        let _ = fs::remove_file(socket);
    }
}

/// An exclusive `flock` on the socket directory, released when dropped: serializes the
/// check-then-change of socket files between shims (held for a connect and an unlink or a
/// bind, never across anything that can block long). Without it (the directory cannot be
/// opened), the changes happen unserialized, as before the lock existed.
fn lock_socket_dir(dir: &Path) -> Option<nix::fcntl::Flock<fs::File>> {
    let file = fs::File::open(dir).ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Whether a daemon listens on `socket`. The connect does not block: a listener whose
/// backlog is full (a busy or wedged daemon) counts as served.
fn is_served(socket: &Path) -> bool {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket as sock};
    let Ok(addr) = UnixAddr::new(socket) else {
        return false;
    };
    let Ok(fd) = sock(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        // Cannot tell: never remove what may be served.
        return true;
    };
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => true,
        Err(_) => false,
    }
}

/// The daemon's socket file, known by its inode: a daemon that is shutting down removes it
/// at once (a new shim for the same id then binds the path while the old one finishes), and
/// never removes the file of a newer shim that bound the same path since.
#[derive(Clone)]
pub struct SocketFile {
    path: PathBuf,
    inode: FileId,
    /// Shared by the clones: the file is removed at most once. The socket directory is on
    /// the host's disk (ext4), which hands a freed inode number to the next file at once —
    /// often the new shim's socket — so a second removal could match it.
    removed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What tells one file at a path from another: device, inode and the change time to the
/// nanosecond (an inode number alone is reused as soon as it is freed).
type FileId = (u64, u64, i64, i64);

impl SocketFile {
    /// The file the listening socket `fd` is bound to.
    pub fn of_listener(fd: std::os::fd::RawFd) -> Option<SocketFile> {
        let addr = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).ok()?;
        let path = addr.path()?.to_path_buf();
        let inode = inode(&path)?;
        Some(SocketFile {
            path,
            inode,
            removed: Default::default(),
        })
    }

    /// Removes the file if it still is ours.
    pub fn remove(&self) {
        if self.removed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _lock = lock_socket_dir(self.path.parent().unwrap_or(Path::new(SOCKET_DIR)));
        if inode(&self.path) == Some(self.inode) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn inode(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()))
}

/// `<bundle>/address`: containerd 1.6 and 1.7 reconnect through it after a restart.
fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    let path = bundle.join("address");
    let tmp = bundle.join(".address.tmp");
    fs::write(&tmp, address)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Action;

    fn args() -> Args {
        Args {
            namespace: "ns".into(),
            id: "c1".into(),
            address: "/run/containerd/containerd.sock".into(),
            publish_binary: String::new(),
            bundle: None,
            debug: false,
            action: Action::Start,
        }
    }

    #[test]
    fn shim_cgroup_is_every_v1_hierarchy_that_has_it_or_the_v2_directory() {
        let root = tempfile::tempdir().unwrap();
        for h in ["pids", "memory", "cpu,cpuacct"] {
            fs::create_dir_all(root.path().join(h).join("shims")).unwrap();
            fs::write(root.path().join(h).join("shims/cgroup.procs"), "").unwrap();
        }
        fs::create_dir_all(root.path().join("devices")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        let dirs = shim_cgroup_dirs(root.path(), "/shims").unwrap();
        assert_eq!(dirs.len(), 3, "{dirs:?}");
        assert!(shim_cgroup_dirs(root.path(), "/nope").unwrap().is_empty());
        for bad in ["shims", "/a/../../etc"] {
            assert!(
                shim_cgroup_dirs(root.path(), bad)
                    .unwrap_err()
                    .contains("ShimCgroup"),
                "{bad}"
            );
        }
        // v2: one directory.
        let v2 = tempfile::tempdir().unwrap();
        fs::write(v2.path().join("cgroup.controllers"), "").unwrap();
        fs::create_dir_all(v2.path().join("shims")).unwrap();
        assert_eq!(
            shim_cgroup_dirs(v2.path(), "/shims").unwrap(),
            vec![v2.path().join("shims")]
        );
    }

    #[test]
    fn socket_path_is_the_hash_of_address_namespace_and_id_and_fits() {
        let p = socket_path("/run/containerd/containerd.sock", "default", "c1");
        let s = p.to_str().unwrap();
        assert!(s.starts_with("/run/containerd/s/"));
        assert_eq!(s.len(), "/run/containerd/s/".len() + 64);
        assert!(format!("unix://{s}").len() < 107);
        assert_ne!(
            p,
            socket_path("/run/containerd/containerd.sock", "default", "c2")
        );
    }

    #[test]
    fn plain_address_without_bootstrap_params() {
        let a = args();
        assert_eq!(reply_bytes("unix:///x", None, &a), b"unix:///x");
        assert_eq!(reply_bytes("unix:///x", Some(b""), &a), b"unix:///x");
    }

    #[test]
    fn runtime_options_on_stdin_are_not_taken_for_bootstrap_params() {
        // containerd 1.6–2.2 pipe the runtime options (an Any) when set.
        let any = protobuf::well_known_types::any::Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: b"\x12\x05/conf".to_vec(),
            ..Default::default()
        };
        let bytes = any.write_to_bytes().unwrap();
        assert_eq!(
            reply_bytes("unix:///x", Some(&bytes), &args()),
            b"unix:///x"
        );
    }

    #[test]
    fn genuine_bootstrap_params_get_a_bootstrap_result() {
        let params = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        let out = reply_bytes(
            "unix:///x",
            Some(&params.write_to_bytes().unwrap()),
            &args(),
        );
        let result = BootstrapResult::parse_from_bytes(&out).unwrap();
        assert_eq!(result.address, "unix:///x");
        assert_eq!(result.version, 3);
        assert_eq!(result.protocol, "ttrpc");
    }

    #[test]
    fn listening_socket_is_a_path_in_a_root_only_directory() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s").join("abc");
        let _listener = listen(&socket).unwrap();
        // A path socket (not abstract: CVE-2020-15257) that only root may reach.
        assert!(fs::metadata(&socket).unwrap().file_type().is_socket());
        let mode = fs::metadata(socket.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A second shim on the same socket is refused; a dead one's socket is replaced.
        assert!(listen(&socket).unwrap_err().contains("in use"));
    }

    #[test]
    fn removing_a_dead_socket_waits_for_a_shim_that_is_binding_the_path() {
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s").join("abc");
        // A daemon killed with `kill -9` left its socket file.
        drop(listen(&socket).unwrap());
        assert!(socket.exists() && !is_served(&socket));
        // A new shim for the same id is in `listen`, between its check and its bind, while
        // the old shim's `delete` removes what it takes for the dead daemon's socket.
        let lock = lock_socket_dir(socket.parent().unwrap()).unwrap();
        let (done, finished) = mpsc::channel();
        let path = socket.clone();
        let delete = std::thread::spawn(move || {
            remove_dead_socket(&path);
            done.send(()).unwrap();
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the removal did not wait for the shim that is binding the path"
        );
        fs::remove_file(&socket).unwrap();
        let new = UnixListener::bind(&socket).unwrap();
        drop(lock);
        delete.join().unwrap();
        assert!(is_served(&socket), "the new shim's socket was removed");
        drop(new);
    }

    #[test]
    fn only_a_file_of_the_socket_directory_is_taken_from_the_address_file() {
        let bundle = tempfile::tempdir().unwrap();
        let recorded = |address: &str| {
            fs::write(bundle.path().join("address"), address).unwrap();
            recorded_socket(bundle.path())
        };
        assert_eq!(
            recorded("unix:///run/containerd/s/abc"),
            Some(PathBuf::from("/run/containerd/s/abc"))
        );
        assert_eq!(
            recorded("unix:///run/containerd/s/../../../etc/passwd"),
            None
        );
        assert_eq!(recorded("unix:///run/containerd/s/x/y"), None);
        assert_eq!(recorded("unix:///tmp/abc"), None);
    }

    #[test]
    fn a_daemons_socket_is_removed_once_even_when_its_inode_number_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s").join("abc");
        let old = listen(&socket).unwrap();
        let file = SocketFile::of_listener(old.as_raw_fd()).unwrap();
        // Shutdown removes it; a new shim for the same id binds the path at once.
        file.remove();
        let _new = listen(&socket).unwrap();
        // ext4 gave the new file the freed inode (and the same second): the record now
        // names the new file, as far as an inode can tell.
        let reused = SocketFile {
            inode: inode(&socket).unwrap(),
            ..file.clone()
        };
        // The daemon's last clean-up on its way out.
        reused.remove();
        assert!(socket.exists(), "the new shim's socket was removed");
        drop(old);
    }

    #[test]
    fn a_shutting_down_shim_removes_its_socket_but_never_a_newer_shims() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s").join("abc");
        let old = listen(&socket).unwrap();
        let file = SocketFile::of_listener(old.as_raw_fd()).unwrap();
        file.remove();
        // Gone while the old listener still exists: a new shim binds the path at once.
        assert!(!socket.exists());
        let _new = listen(&socket).unwrap();
        // The old daemon's last clean-up leaves the new shim's socket alone.
        file.remove();
        assert!(socket.exists());
        drop(old);
    }
}
