//! A throwaway QEMU VM with a pure cgroup v2 hierarchy (or systemd as PID 1), running
//! end-to-end test binaries of this crate inside it.
//!
//! The guest is a Debian bookworm root directory (`tests/vm/build-rootfs.sh`, built once into
//! `<test cache>/vm/bookworm-v2`) booted with its own kernel over virtio 9p under TCG (KVM does
//! not work on these hosts). The workspace (the shim and the test binaries in `target/`) and
//! the test cache (images, containerd 1.7/2.x) are shared read-only at the same paths as on
//! the host, so the tests' own paths hold in the guest; the guest's `containerd` 1.6 is its
//! own package in `/usr/bin`, like the host's. The guest runs each [`TestRun`] (a libtest
//! binary) and the host parses libtest's `test NAME ... ok|FAILED` lines into one
//! [`Outcome`] per test, with the test's output when it failed.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the guest runs as PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// `tests/vm/guest-init.sh`: mounts cgroup2 at `/sys/fs/cgroup` itself, enables every
    /// controller in the root's `cgroup.subtree_control` and runs the tests (~15 s to boot).
    Init,
    /// systemd (with dbus) as PID 1; the tests run in a oneshot unit
    /// (`mini-vm-job.service`, `Delegate=yes`) after `basic.target` (~60 s to boot).
    Systemd,
}

impl Boot {
    fn name(self) -> &'static str {
        match self {
            Boot::Init => "init",
            Boot::Systemd => "systemd",
        }
    }

    fn boot_time(self) -> Duration {
        match self {
            Boot::Init => Duration::from_secs(90),
            Boot::Systemd => Duration::from_secs(240),
        }
    }
}

/// One libtest binary to run in the guest, with its arguments (test names, `--ignored`, ...).
#[derive(Debug, Clone)]
pub struct TestRun {
    pub binary: PathBuf,
    pub args: Vec<String>,
}

impl TestRun {
    /// Every ignored test of `binary` whose name contains one of `filters` (all of them
    /// when empty), one at a time: `--ignored --test-threads=1 <filters>`.
    pub fn ignored(binary: PathBuf, filters: &[&str]) -> TestRun {
        let mut args = vec!["--ignored".to_string(), "--test-threads=1".to_string()];
        args.extend(filters.iter().map(|f| f.to_string()));
        TestRun { binary, args }
    }
}

/// The result of one test in the guest.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// libtest's name of the test (`module::test`).
    pub name: String,
    pub passed: bool,
    /// What the test printed (its panic message, the daemon log...) when it failed; empty
    /// when it passed.
    pub output: String,
}

/// The test binary `name` (a `tests/<name>.rs` of this crate) built next to the running
/// test binary (`target/debug/deps/<name>-<hash>`; the newest if several), or
/// `MINI_VM_TEST_BINARY_<NAME>` if set. Panics if it is not built.
pub fn test_binary(name: &str) -> PathBuf {
    let var = format!("MINI_VM_TEST_BINARY_{}", name.to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    let prefix = format!("{name}-");
    let newest = fs::read_dir(deps)
        .unwrap_or_else(|e| panic!("reading {}: {e}", deps.display()))
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix)
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    match newest {
        Some((_, path)) => path,
        None => panic!(
            "test binary {name} not built in {}: `cargo test -p mini-e2e --test {name} --no-run` \
             (or set {var})",
            deps.display()
        ),
    }
}

/// The cached guest root, built by `tests/vm/build-rootfs.sh` on first use (or rebuilt when
/// the script changed). Returns its path.
pub fn guest_root() -> PathBuf {
    let script = crate::workspace_dir().join("tests/vm/build-rootfs.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("MINI_TEST_CACHE", crate::cache_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() && started.elapsed() > Duration::from_secs(5) {
        // A real build: its one summary line (time, size) is worth keeping in the log.
        if let Some(l) = stderr.lines().rfind(|l| l.starts_with("build-rootfs.sh:")) {
            eprintln!("{l}");
        }
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(path)
}

/// A running VM: dropping it kills qemu and removes the job directory.
pub struct Vm {
    child: Option<Child>,
    job: Option<tempfile::TempDir>,
}

impl Vm {
    /// Boots the guest in `boot` mode, runs `runs` one after the other in it and returns one
    /// [`Outcome`] per test the binaries list for their arguments (`--list`): a test with no
    /// result (the VM timed out or crashed) is a failure carrying the console's tail.
    /// The VM is killed after a time sized from the boot mode and the number of tests.
    /// One VM at a time per process (TCG needs both cores).
    pub fn run(boot: Boot, runs: &[TestRun]) -> Vec<Outcome> {
        let expected: Vec<String> = runs.iter().flat_map(list_tests).collect();
        let timeout = boot.boot_time() + Duration::from_secs(120) * expected.len() as u32;
        Vm::run_with_timeout(boot, runs, timeout)
    }

    /// [`Vm::run`] with an explicit limit for the whole VM.
    pub fn run_with_timeout(boot: Boot, runs: &[TestRun], timeout: Duration) -> Vec<Outcome> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let expected: Vec<String> = runs.iter().flat_map(list_tests).collect();
        let root = guest_root();
        let mut vm = Vm {
            child: None,
            job: Some(crate::tmp_dir("mvm")),
        };
        let job = vm.job_dir().to_path_buf();
        write_job(&job, runs);
        let started = Instant::now();
        vm.child = Some(spawn_qemu(&root, &job, boot));
        let finished = vm.wait(timeout);
        eprintln!(
            "vm ({}): {} in {:.0} s",
            boot.name(),
            if finished {
                "powered off"
            } else {
                "killed at the timeout"
            },
            started.elapsed().as_secs_f64()
        );
        let output = fs::read_to_string(job.join("output")).unwrap_or_default();
        let console = fs::read_to_string(job.join("console.log")).unwrap_or_default();
        let mut results = parse_libtest(&output);
        for name in &expected {
            if !results.iter().any(|o| &o.name == name) {
                let why = if finished {
                    "the guest powered off without a result"
                } else {
                    "the VM was killed at its timeout"
                };
                results.push(Outcome {
                    name: name.clone(),
                    passed: false,
                    output: format!(
                        "no result for {name}: {why} ({timeout:?}).\n--- guest output (tail) ---\n{}\n\
                         --- console (tail) ---\n{}",
                        tail(&output, 40),
                        tail(&console, 60)
                    ),
                });
            }
        }
        results
    }

    fn job_dir(&self) -> &Path {
        self.job.as_ref().expect("job dir").path()
    }

    /// Waits for qemu to exit (the guest powers off); kills it at `timeout`. True if it ended
    /// by itself.
    fn wait(&mut self, timeout: Duration) -> bool {
        let child = self.child.as_mut().expect("qemu started");
        let ended = crate::wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
        if !ended {
            self.kill();
        }
        ended
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        if let Some(job) = self.job.take() {
            let _ = job.close();
        }
    }
}

/// The tests `run` selects, from `<binary> <args> --list --format terse` on the host.
fn list_tests(run: &TestRun) -> Vec<String> {
    let out = Command::new(&run.binary)
        .args(&run.args)
        .args(["--list", "--format", "terse"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("listing the tests of {}: {e}", run.binary.display()));
    assert!(
        out.status.success(),
        "{} --list failed: {}",
        run.binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// A string as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The directories shared into the guest at their own paths: the workspace, the test cache
/// and the directory of any binary outside them.
fn shares(runs: &[TestRun]) -> Vec<PathBuf> {
    let mut dirs = vec![
        crate::workspace_dir(),
        crate::cache_dir(),
        crate::mini_bin_dir(),
    ];
    dirs.extend(
        runs.iter()
            .filter_map(|r| r.binary.parent().map(Path::to_path_buf)),
    );
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let d = d.canonicalize().unwrap_or(d);
        if d.is_dir() && !out.iter().any(|o| d.starts_with(o)) {
            out.retain(|o| !o.starts_with(&d));
            out.push(d);
        }
    }
    out
}

/// Writes the job share: `init` (tests/vm/guest-init.sh), `shares` and `run.sh`.
fn write_job(job: &Path, runs: &[TestRun]) {
    let init = crate::workspace_dir().join("tests/vm/guest-init.sh");
    fs::copy(&init, job.join("init")).unwrap_or_else(|e| panic!("copying {}: {e}", init.display()));
    let mut shares_file = String::new();
    for (i, dir) in shares(runs).iter().enumerate() {
        let _ = writeln!(shares_file, "s{i} {}", dir.display());
    }
    fs::write(job.join("shares"), shares_file).expect("writing the job's shares");

    let mut script = String::from("#!/bin/sh\n# Written by tests/src/vm.rs.\n");
    let mut env = vec![
        (
            "MINI_TEST_CACHE".to_string(),
            crate::cache_dir().display().to_string(),
        ),
        ("RUST_BACKTRACE".to_string(), "1".to_string()),
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
    ];
    for var in ["MINI_BIN_DIR", "MINI_E2E_RUNTIME"] {
        if let Ok(v) = std::env::var(var) {
            env.push((var.to_string(), v));
        }
    }
    for (k, v) in env {
        let _ = writeln!(script, "export {k}={}", shell_quote(&v));
    }
    let _ = writeln!(
        script,
        "cd {}",
        shell_quote(&crate::workspace_dir().to_string_lossy())
    );
    let _ = writeln!(
        script,
        "echo \"mini-vm: $(uname -r), $(stat -fc %T /sys/fs/cgroup) at /sys/fs/cgroup\""
    );
    for (i, run) in runs.iter().enumerate() {
        let mut cmd = shell_quote(&run.binary.to_string_lossy());
        for a in &run.args {
            cmd.push(' ');
            cmd.push_str(&shell_quote(a));
        }
        let _ = writeln!(
            script,
            "echo \"mini-vm: run {i}: $(date +%s)\"\n{cmd}\necho \"mini-vm: run {i} exit $? $(date +%s)\""
        );
    }
    fs::write(job.join("run.sh"), script).expect("writing the job's run.sh");
}

/// Starts qemu on the guest root with the job share and the shares it lists.
fn spawn_qemu(root: &Path, job: &Path, boot: Boot) -> Child {
    let kernel = newest_in(&root.join("boot"), "vmlinuz-");
    let initrd = newest_in(&root.join("boot"), "initrd.img-");
    let virtfs = |path: &Path, tag: &str, ro: bool| {
        format!(
            "local,path={},mount_tag={tag},security_model=passthrough{}",
            path.display(),
            if ro { ",readonly=on" } else { "" }
        )
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-m",
        "4096",
        "-smp",
        "2",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", job.join("console.log").display()))
    .arg("-kernel")
    .arg(&kernel)
    .arg("-initrd")
    .arg(&initrd)
    .arg("-append")
    .arg(format!(
        "root=root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=none \
             ro console=ttyS0 init=/sbin/mini-vm-init panic=-1 mini.boot={}",
        boot.name()
    ))
    .arg("-virtfs")
    .arg(virtfs(root, "root", true))
    .arg("-virtfs")
    .arg(virtfs(job, "job", false));
    let listed = fs::read_to_string(job.join("shares")).expect("reading the job's shares");
    for line in listed.lines() {
        if let Some((tag, path)) = line.split_once(' ') {
            cmd.arg("-virtfs").arg(virtfs(Path::new(path), tag, true));
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting qemu-system-x86_64 (make deps installs it): {e}"))
}

/// The newest-sorting file in `dir` whose name starts with `prefix` (the kernel, the initrd).
fn newest_in(dir: &Path, prefix: &str) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The tests libtest reported in `output`: `test NAME ... ok|FAILED` (the verdict may come
/// on a later line when a child process wrote to the shared stderr meanwhile), with the
/// `---- NAME stdout ----` section of each failure.
pub fn parse_libtest(output: &str) -> Vec<Outcome> {
    let mut results: Vec<Outcome> = Vec::new();
    let mut pending: Option<String> = None;
    let verdict = |s: &str| match s.trim() {
        "ok" => Some(true),
        "FAILED" => Some(false),
        _ => None,
    };
    for line in output.lines() {
        if let Some((name, rest)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        {
            pending = None;
            match verdict(rest) {
                Some(passed) => results.push(Outcome {
                    name: name.to_string(),
                    passed,
                    output: String::new(),
                }),
                None if rest.trim() == "ignored" => {}
                None => pending = Some(name.to_string()),
            }
        } else if let Some(passed) = verdict(line)
            && let Some(name) = pending.take()
        {
            results.push(Outcome {
                name,
                passed,
                output: String::new(),
            });
        }
    }
    for r in results.iter_mut().filter(|r| !r.passed) {
        let header = format!("---- {} stdout ----", r.name);
        r.output = match output.split_once(&header) {
            Some((_, after)) => after
                .split("\n---- ")
                .next()
                .unwrap_or("")
                .split("\nfailures:\n")
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => format!("(no output section)\n{}", tail(output, 40)),
        };
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_verdicts_and_failure_sections_are_parsed() {
        let out = "\nrunning 3 tests\n\
            test a::containerd_1_6 ... ok\n\
            test a::containerd_2 ... time=\"x\" level=info msg=noise\n\
            FAILED\n\
            test b::containerd_2 ... FAILED\n\
            test c ... ignored\n\n\
            failures:\n\n\
            ---- a::containerd_2 stdout ----\nthread panicked at x: boom\n\n\
            ---- b::containerd_2 stdout ----\nother\n\n\
            failures:\n    a::containerd_2\n    b::containerd_2\n\n\
            test result: FAILED. 1 passed; 2 failed\n";
        let r = parse_libtest(out);
        let names: Vec<(&str, bool)> = r.iter().map(|o| (o.name.as_str(), o.passed)).collect();
        assert_eq!(
            names,
            [
                ("a::containerd_1_6", true),
                ("a::containerd_2", false),
                ("b::containerd_2", false)
            ]
        );
        assert_eq!(r[1].output, "thread panicked at x: boom");
        assert_eq!(r[2].output, "other");
    }

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
