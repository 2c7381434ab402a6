//! A busybox bundle for the conformance tests: `mini spec`'s config, kept as JSON the test
//! edits before each command, a rootfs with busybox and its applets, and a private `--root`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_core::cgroups::CgroupManager;

pub use crate::common::alive;
use crate::common::processes_naming;

const MINI: &str = env!("CARGO_BIN_EXE_mini");

/// The busybox applets the tests call inside containers.
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "ls", "stat", "readlink", "id", "hostname", "touch", "mkdir", "sleep",
    "grep", "head", "ionice", "pwd", "env", "true", "mknod", "wc", "sed", "test", "kill",
];

pub struct Bundle {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    pub id: String,
    /// `config.json`, written before every command that reads it.
    pub spec: serde_json::Value,
}

impl Bundle {
    /// `mini spec`'s bundle with a writable root and `sh -c script` as the process.
    pub fn new(name: &str, script: &str) -> Bundle {
        let dir = crate::common::temp_dir("mini-conf-");
        let root = crate::common::temp_dir("mini-conf-root-");
        crate::common::busybox_rootfs("the conformance tests", &dir.path().join("rootfs"), APPLETS);
        let out = Command::new(MINI)
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mini spec: {out:?}");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        spec["root"]["readonly"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        Bundle {
            dir,
            root,
            id: format!("conf-{name}-{}", std::process::id()),
            spec,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join(&self.id)
    }

    pub fn write_spec(&self) {
        fs::write(self.path().join("config.json"), self.spec.to_string()).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MINI);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd.current_dir(self.path());
        cmd
    }

    /// `mini --root R args…`, stdin on /dev/null, output captured.
    pub fn mini(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `mini args…` that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.mini(args);
        assert!(out.status.success(), "mini {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes the spec and runs the container in the foreground: its output and status.
    pub fn run(&self) -> Output {
        self.write_spec();
        self.mini(&["run", &self.id])
    }

    /// Runs the container, which must succeed: its stdout.
    pub fn stdout(&self) -> String {
        let out = self.run();
        assert!(out.status.success(), "mini run: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes the spec and runs `mini create` with every stdio on /dev/null (the container's
    /// stdio is the command's: a pipe would be held open by the container).
    pub fn create(&self) -> std::process::ExitStatus {
        self.write_spec();
        let bundle = self.path().to_str().unwrap().to_string();
        self.command(&["create", "--bundle", &bundle, &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    /// `mini args…` with every stdio on /dev/null (a detached process would hold a pipe
    /// open); whether it succeeded.
    pub fn detached(&self, args: &[&str]) -> bool {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `create` that must succeed.
    pub fn created(&self) {
        assert!(self.create().success(), "mini create failed");
    }

    /// Writes the spec and runs `mini create`, which must fail; its stderr. (stderr goes
    /// through a file: a create that wrongly succeeds leaves a container holding its stdio.)
    pub fn create_fails(&self) -> String {
        self.write_spec();
        let log = self.path().join("create.stderr");
        let bundle = self.path().to_str().unwrap().to_string();
        let status = self
            .command(&["create", "--bundle", &bundle, &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        assert!(
            !status.success(),
            "mini create succeeded on a config that must be refused"
        );
        fs::read_to_string(&log).unwrap()
    }

    /// Runs the container with `process.terminal`: `create --console-socket`, takes the pty
    /// master the runtime sends there, `start`, and reads the terminal until the container's
    /// side closes.
    pub fn terminal_output(&mut self) -> String {
        use std::io::Read;
        let (out, master) = self.create_with_terminal();
        assert!(out.status.success(), "mini create: {out:?}");
        let master = master.expect("create sent the pty master");
        self.ok(&["start", &self.id]);
        let mut output = Vec::new();
        // A pty master reads EIO once the last slave fd is closed.
        let _ = fs::File::from(master).read_to_end(&mut output);
        String::from_utf8_lossy(&output).replace("\r\n", "\n")
    }

    /// `mini create --console-socket` of the container with `process.terminal`: the
    /// command's output and the pty master it sent, if any.
    pub fn create_with_terminal(&mut self) -> (Output, Option<std::os::fd::OwnedFd>) {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        self.spec["process"]["terminal"] = true.into();
        self.write_spec();
        let socket = self.path().join("console.sock");
        let _ = fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let receiver = std::thread::spawn(move || -> Option<OwnedFd> {
            use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
            let (stream, _) = listener.accept().ok()?;
            let mut buf = [0u8; 256];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([i32; 1]);
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .ok()?;
            let fd = msg.cmsgs().ok()?.find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })?;
            // SAFETY: the kernel just installed this fd in our table.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        let bundle = self.path().to_str().unwrap().to_string();
        let log = self.path().join("create.stderr");
        let status = self
            .command(&[
                "create",
                "--bundle",
                &bundle,
                "--console-socket",
                socket.to_str().unwrap(),
                &self.id,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        // Unblocks the receiver if create connected to nothing.
        drop(std::os::unix::net::UnixStream::connect(&socket));
        let master = receiver.join().unwrap();
        let out = Output {
            status,
            stdout: Vec::new(),
            stderr: fs::read(&log).unwrap(),
        };
        (out, master)
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().unwrap() as i32
    }

    pub fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.status() != want {
            assert!(Instant::now() < deadline, "status never became {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's cgroups (the spec's `linux.cgroupsPath` or the default).
    pub fn cgroup(&self) -> CgroupManager {
        let path = self.spec["linux"]["cgroupsPath"].as_str().map(Path::new);
        CgroupManager::new(&self.id, path).unwrap()
    }

    /// What the host still holds of the container: cgroup directories, the state directory,
    /// processes naming it.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .cgroup()
            .dirs()
            .map(|d| d.dir.clone())
            .chain([self.state_dir()])
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        left.extend(
            processes_naming(&self.id)
                .into_iter()
                .map(|p| format!("pid {p}")),
        );
        left
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

/// The value of `key:` in a `/proc/PID/status` text.
pub fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
}

/// The lines of a mountinfo text whose mount point is `dir`.
pub fn mounts_at<'a>(mountinfo: &'a str, dir: &str) -> Vec<&'a str> {
    mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(dir))
        .collect()
}

/// The per-mount options (field 6) of the last mount at `dir`.
pub fn mount_options(mountinfo: &str, dir: &str) -> Vec<String> {
    let line = *mounts_at(mountinfo, dir)
        .last()
        .unwrap_or_else(|| panic!("nothing mounted at {dir}:\n{mountinfo}"));
    line.split(' ')
        .nth(5)
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect()
}
