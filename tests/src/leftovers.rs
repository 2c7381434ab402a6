//! Finding (and removing) what containers and shims leave behind: processes, mounts,
//! cgroups, shim sockets, bundle directories and stdio fifos.
//!
//! The checks ignore zombies: orphans are reaped late on this machine, and a zombie holds
//! no resource a user would notice.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where ctr (containerd's client library) creates a task's stdio fifos by default: one
/// random directory per task holding `<id>-stdin`, `<id>-stdout` and `<id>-stderr`.
const CLIENT_FIFO_ROOT: &str = "/run/containerd/fifo";
/// The runtime v2 plugin's directory below containerd's `state` and `root`: the bundles
/// (`state/…/<ns>/<id>`, holding config.json, the rootfs mount point and the `log` fifo)
/// and their work directories (`root/…/<ns>/<id>`).
const TASK_PLUGIN_DIR: &str = "io.containerd.runtime.v2.task";
/// The machine's own memory cgroup: never touched.
const PROTECTED_CGROUP: &str = "process_api";

/// True if `needle` occurs in `hay` as a whole token (not inside a longer id such as
/// `x-1` inside `x-10` or `bx-1`).
pub fn contains_token(hay: &str, needle: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// A live (non-zombie) process, as seen in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub cmdline: String,
    pub cwd: String,
    pub cgroup: String,
}

/// All live processes except zombies and this test process.
pub fn processes() -> Vec<Proc> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(read_proc)
        .collect()
}

fn read_proc(pid: i32) -> Option<Proc> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let stat = fs::read_to_string(base.join("stat")).ok()?;
    // comm may contain spaces and parentheses: the state follows the last ')'.
    let close = stat.rfind(')')?;
    let comm = stat.get(stat.find('(')? + 1..close)?.to_string();
    let mut rest = stat.get(close + 2..)?.split_whitespace();
    let state = rest.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = rest.next()?.parse().ok()?;
    let cmdline = fs::read(base.join("cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    let cwd = fs::read_link(base.join("cwd"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = fs::read_to_string(base.join("cgroup")).unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        comm,
        cmdline,
        cwd,
        cgroup,
    })
}

/// Live processes whose command line, cwd or cgroup names the container `id`.
pub fn processes_of(id: &str) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| {
            contains_token(&p.cmdline, id)
                || contains_token(&p.cwd, id)
                || contains_token(&p.cgroup, id)
        })
        .collect()
}

/// Mount points (from /proc/self/mountinfo) that lie under `dir` or whose path names `id`.
pub fn mounts_of(dir: &Path, id: Option<&str>) -> Vec<String> {
    mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir) || id.is_some_and(|id| contains_token(m, id)))
        .collect()
}

/// Every mount point of this mount namespace, unescaped.
pub fn mount_points() -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup hierarchies: every `/sys/fs/cgroup/<ctrl>` (v1) and `unified` (v2), or the
/// root itself on a pure v2 host.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let Ok(dir) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        // Skip the symlinks (cpu -> cpu,cpuacct): the real directory is listed too.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Existing cgroup directories `<hierarchy>/<ns>/<id>` (ctr's default cgroupsPath).
pub fn cgroups_of(ns: &str, id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(ns).join(id))
        .filter(|p| p.is_dir())
        .collect()
}

/// The socket path the Go and Rust shims (and mini) use for container `id`:
/// `/run/containerd/s/<sha256(address/ns/id)>`.
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    let joined = address.join(ns).join(id);
    let digest = Sha256::digest(joined.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/run/containerd/s").join(hex)
}

/// The task's bundle below the daemon directory `dir`.
pub fn bundle_dir(dir: &Path, ns: &str, id: &str) -> PathBuf {
    dir.join("state").join(TASK_PLUGIN_DIR).join(ns).join(id)
}

/// The task's bundle and work directories below the daemon directory `dir`, if they exist.
pub fn bundle_dirs_of(dir: &Path, ns: &str, id: &str) -> Vec<PathBuf> {
    let work = dir.join("root").join(TASK_PLUGIN_DIR).join(ns).join(id);
    [bundle_dir(dir, ns, id), work]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// ctr's stdio fifos of container `id` still present in the default fifo directory.
pub fn client_fifos_of(id: &str) -> Vec<PathBuf> {
    let Ok(sets) = fs::read_dir(CLIENT_FIFO_ROOT) else {
        return Vec::new();
    };
    sets.filter_map(|e| e.ok())
        .flat_map(|set| {
            ["stdin", "stdout", "stderr"].map(|stream| set.path().join(format!("{id}-{stream}")))
        })
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Removes ctr's fifos of container `id` and their directories, once empty. For tests in
/// which ctr itself cannot clean up (it exited on an error, or the task vanished with its
/// shim before `ctr task delete`): containerd's client owns these, not the runtime.
pub fn remove_client_fifos(id: &str) {
    for fifo in client_fifos_of(id) {
        let _ = fs::remove_file(&fifo);
        if let Some(set) = fifo.parent() {
            let _ = fs::remove_dir(set);
        }
    }
}

/// Everything of container `id` still present, one line each; empty when nothing is left.
pub fn remains_of(dir: &Path, address: &Path, ns: &str, id: &str) -> Vec<String> {
    let mut out: Vec<String> = processes_of(id)
        .into_iter()
        .map(|p| {
            format!(
                "process {} ({}) {} cgroup={:?}",
                p.pid, p.comm, p.cmdline, p.cgroup
            )
        })
        .collect();
    out.extend(
        mounts_of(dir, Some(id))
            .into_iter()
            .map(|m| format!("mount {m}")),
    );
    out.extend(
        cgroups_of(ns, id)
            .into_iter()
            .map(|c| format!("cgroup {}", c.display())),
    );
    out.extend(
        bundle_dirs_of(dir, ns, id)
            .into_iter()
            .map(|b| format!("bundle {}", b.display())),
    );
    let sock = shim_socket(address, ns, id);
    if sock.exists() {
        out.push(format!("shim socket {}", sock.display()));
    }
    out
}

/// SIGKILLs `pid` (errors ignored: it may be gone already).
pub fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Unmounts (lazily, deepest first) everything mounted at or below `dir`.
pub fn unmount_below(dir: &Path) {
    let mut mounts = mounts_of(dir, None);
    mounts.sort_by_key(|m| std::cmp::Reverse(Path::new(m).components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes the cgroup tree `<hierarchy>/<ns>` in every hierarchy, leaves first, killing
/// what still runs in it. Never touches the machine's own cgroup.
pub fn remove_namespace_cgroups(ns: &str) {
    assert!(
        !ns.is_empty() && !ns.contains('/') && ns != PROTECTED_CGROUP,
        "refusing to remove cgroup {ns:?}"
    );
    for h in hierarchies() {
        let top = h.join(ns);
        if top.is_dir() {
            kill_and_remove_tree(&top);
        }
    }
}

fn kill_and_remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_and_remove_tree(&e.path());
            }
        }
    }
    // A dying process keeps the cgroup busy for a moment: kill and retry for a while.
    crate::wait_until(std::time::Duration::from_secs(5), || {
        for pid in fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
        {
            kill(pid);
        }
        fs::remove_dir(dir).is_ok() || !dir.exists()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_match_does_not_match_inside_longer_ids() {
        assert!(contains_token("/mini-a/box-1-001", "box-1-001"));
        assert!(contains_token("-id box-1-001 -address x", "box-1-001"));
        assert!(!contains_token("/mini-a/box-1-0012", "box-1-001"));
        assert!(!contains_token("/mini-a/xbox-1-001", "box-1-001"));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn shim_socket_is_hash_of_address_namespace_and_id() {
        let s = shim_socket(
            Path::new("/run/containerd/containerd.sock"),
            "default",
            "c1",
        );
        assert!(s.starts_with("/run/containerd/s"));
        assert_eq!(s.file_name().map(|n| n.len()), Some(64));
    }
}
