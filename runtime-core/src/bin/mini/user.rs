//! `exec --user USER[:GROUP]`: names looked up in the container's own `/etc/passwd` and
//! `/etc/group`, as runc does, read through the init's root so that the container's mounts
//! count and no symlink of the image leads outside it.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::Result;

/// Files larger than this are not an `/etc/passwd` we read.
const MAX_FILE: u64 = 4 << 20;

/// The identity `exec --user` gives the process.
#[derive(Debug, PartialEq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Groups of the container's `/etc/group` that list the user's name as a member (runc
    /// adds them the same way); empty for a uid `/etc/passwd` does not list.
    pub additional_gids: Vec<u32>,
}

/// The identity of `user` (`USER[:GROUP]`, names or numbers) in the container whose init
/// is `init_pid`. Without a group: for a name, its primary group from `/etc/passwd`; for a
/// number, `default_gid` (the container process's gid, as runc keeps it). A name the
/// container's files do not list is an error naming it; a number need not be listed.
pub fn resolve(user: &str, init_pid: i32, default_gid: u32) -> Result<ExecUser> {
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    if name.is_empty() || group.is_some_and(str::is_empty) {
        return Err(format!("--user {user:?}: not USER[:GROUP]"));
    }
    let root = format!("/proc/{init_pid}/root");
    let root = Path::new(&root);
    let passwd = read_in_root(root, "etc/passwd")?.unwrap_or_default();
    let number = name.parse::<u32>().ok();
    // name:password:uid:gid:…
    let entry = entries(&passwd, 4)
        .find(|f| f[0] == name)
        .or_else(|| number.and_then(|_| entries(&passwd, 4).find(|f| f[2] == name)));
    let (uid, primary) = match (&entry, number) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("--user {name}: bad uid {:?} in /etc/passwd", f[2]))?,
            f[3].parse::<u32>().ok(),
        ),
        (None, Some(uid)) => (uid, None),
        (None, None) => {
            return Err(format!(
                "--user {name}: unable to find user {name}: no matching entries in the \
                 container's /etc/passwd"
            ));
        }
    };
    let groups = read_in_root(root, "etc/group")?.unwrap_or_default();
    let gid = match (group, number) {
        (None, Some(_)) => default_gid,
        (None, None) => primary.unwrap_or(default_gid),
        (Some(g), _) => match g.parse::<u32>() {
            Ok(gid) => gid,
            // name:password:gid:members
            Err(_) => entries(&groups, 3)
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| {
                    format!(
                        "--user {user}: unable to find group {g}: no matching entries in the \
                         container's /etc/group"
                    )
                })?,
        },
    };
    let additional_gids = match &entry {
        Some(f) => entries(&groups, 4)
            .filter(|g| g[3].split(',').any(|member| member.trim() == f[0]))
            .filter_map(|g| g[2].parse::<u32>().ok())
            .collect(),
        None => Vec::new(),
    };
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The colon-separated lines of a passwd or group file with at least `fields` fields.
fn entries(text: &str, fields: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= fields)
}

/// The file `path` (relative) of the container root `root`, resolved by the kernel inside
/// it; `None` if it does not exist. Only a regular file is read.
fn read_in_root(root: &Path, path: &str) -> Result<Option<String>> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", root.display()))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(root_fd.as_fd(), path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("the container's /{path}: {e}")),
    };
    let stat =
        nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("the container's /{path}: {e}"))?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("the container's /{path} is not a regular file"));
    }
    // Reopened through our own fd table: the O_PATH handle is the file already checked.
    let file = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("the container's /{path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("the container's /{path}: {e}"))?;
    Ok(Some(text))
}
