//! Walks of a container's cgroup tree through directory fds.
//!
//! A container with its own cgroup namespace and a writable cgroupfs makes sub-cgroups as
//! deep as it likes: nested far enough, their host paths pass `PATH_MAX` and every call that
//! takes a whole path fails with `ENAMETOOLONG`. So listing, killing, thawing and removing go
//! from directory to directory with `openat`/`unlinkat` on the parent's fd and never build a
//! path. The walk keeps at most [`OPEN_WINDOW`] ancestors open (plus the top); a closed one
//! is reopened through `..` of its child when the walk climbs back to it, checked by device
//! and inode (a cgroup can only be renamed within its parent, so `..` stays its parent), and
//! else found again by name from the top.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};

use super::describe;
use crate::{Error, Result};

/// How many directories below the top a walk keeps open at once.
pub(crate) const OPEN_WINDOW: usize = 16;

/// When a walk calls its visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// [`Visit::Enter`] for every cgroup, parents before their sub-cgroups.
    Pre,
    /// [`Visit::Leave`] for every sub-cgroup below the top, deepest first.
    Post,
}

/// One step of a walk.
pub(crate) enum Visit<'a> {
    /// A cgroup (depth 0 is the top): its directory.
    Enter { dir: BorrowedFd<'a> },
    /// A sub-cgroup whose own sub-cgroups are done: its parent's directory and its name there.
    Leave {
        parent: BorrowedFd<'a>,
        name: &'a CStr,
    },
}

/// One directory on the way down.
struct Frame {
    /// `None` while closed to bound the open fds; never for the top or the deepest frame.
    fd: Option<OwnedFd>,
    /// Device and inode, to check a reopened fd.
    id: (u64, u64),
    /// Its name in its parent (empty for the top).
    name: CString,
    /// Sub-cgroups not visited yet, the next one last.
    pending: Vec<CString>,
}

/// Walks the cgroup `top` and every sub-cgroup below it, calling `visit` as `order` says.
/// A visitor's error (a message) and a sub-cgroup that cannot be opened or listed are
/// recorded and the walk goes on; the first one is returned, naming `top`, and for a
/// sub-cgroup its depth and name. A missing `top` is an empty tree.
pub(crate) fn walk(
    top: &Path,
    order: Order,
    mut visit: impl FnMut(Visit<'_>) -> std::result::Result<(), String>,
) -> Result<()> {
    let top_fd = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(top)
    {
        Ok(f) => OwnedFd::from(f),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::cgroup(top, format!("open: {}", describe(&e)))),
    };
    let (id, links) =
        identity(top_fd.as_fd()).map_err(|e| Error::cgroup(top, format!("fstat: {e}")))?;
    let pending =
        sub_dirs(top_fd.as_fd(), links).map_err(|e| Error::cgroup(top, format!("readdir: {e}")))?;
    let mut errors = Errors { top, first: None };
    if order == Order::Pre
        && let Err(msg) = visit(Visit::Enter {
            dir: top_fd.as_fd(),
        })
    {
        errors.record(0, c"", msg);
    }
    let mut stack = vec![Frame {
        fd: Some(top_fd),
        id,
        name: CString::default(),
        pending,
    }];
    loop {
        let depth = stack.len();
        let deepest = stack.last_mut().expect("the top stays on the stack");
        let Some(name) = deepest.pending.pop() else {
            if depth == 1 {
                break;
            }
            let child = stack.pop().expect("more than the top");
            if let Err(msg) = reopen_parent(&mut stack, &child) {
                // Nothing above the lost directory can be reached by fd any more.
                errors.record(depth - 1, &child.name, msg);
                break;
            }
            if order == Order::Post {
                let parent = stack.last().and_then(|f| f.fd.as_ref());
                let parent = parent.expect("reopened").as_fd();
                if let Err(msg) = visit(Visit::Leave {
                    parent,
                    name: &child.name,
                }) {
                    errors.record(depth - 1, &child.name, msg);
                }
            }
            continue;
        };
        let parent = deepest.fd.as_ref().expect("the deepest frame is open");
        let fd = match open_dir(parent.as_fd(), &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                errors.record(depth, &name, format!("open: {}", e.desc()));
                continue;
            }
        };
        let listed =
            identity(fd.as_fd()).and_then(|(id, links)| Ok((id, sub_dirs(fd.as_fd(), links)?)));
        let (id, pending) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                errors.record(depth, &name, format!("readdir: {e}"));
                continue;
            }
        };
        if order == Order::Pre
            && let Err(msg) = visit(Visit::Enter { dir: fd.as_fd() })
        {
            errors.record(depth, &name, msg);
        }
        stack.push(Frame {
            fd: Some(fd),
            id,
            name,
            pending,
        });
        // Close the ancestor that just left the window (never the top).
        if let Some(i) = stack.len().checked_sub(OPEN_WINDOW + 1).filter(|&i| i > 0) {
            stack[i].fd = None;
        }
    }
    errors.first.map_or(Ok(()), Err)
}

/// The first error of a walk.
struct Errors<'a> {
    top: &'a Path,
    first: Option<Error>,
}

impl Errors<'_> {
    fn record(&mut self, depth: usize, name: &CStr, msg: String) {
        if self.first.is_some() {
            return;
        }
        self.first = Some(match depth {
            0 => Error::cgroup(self.top, msg),
            _ => Error::cgroup(
                self.top,
                format!(
                    "sub-cgroup {:?}, {depth} level(s) below: {msg}",
                    name.to_string_lossy()
                ),
            ),
        });
    }
}

/// Makes sure the frame now deepest (the parent of `child`, just popped) is open: through
/// `..` of the child, else by name from the top; either must be the directory first seen.
fn reopen_parent(stack: &mut [Frame], child: &Frame) -> std::result::Result<(), String> {
    let parent = stack.last_mut().expect("the top stays on the stack");
    if parent.fd.is_some() {
        return Ok(());
    }
    let child_fd = child.fd.as_ref().expect("the deepest frame is open");
    if let Ok(fd) = open_dir(child_fd.as_fd(), c"..")
        && identity(fd.as_fd()).is_ok_and(|(id, _)| id == parent.id)
    {
        parent.fd = Some(fd);
        return Ok(());
    }
    // From the nearest open ancestor down by name, holding one fd at a time on the way.
    let open = stack
        .iter()
        .rposition(|f| f.fd.is_some())
        .expect("the top stays open");
    let mut dir: Option<OwnedFd> = None;
    for frame in &stack[open + 1..] {
        let from = match &dir {
            Some(fd) => fd.as_fd(),
            None => stack[open].fd.as_ref().expect("open").as_fd(),
        };
        let fd =
            open_dir(from, &frame.name).map_err(|e| format!("reopen its parent: {}", e.desc()))?;
        if identity(fd.as_fd()).ok().map(|(id, _)| id) != Some(frame.id) {
            return Err("reopen its parent: the cgroup tree changed during the walk".into());
        }
        dir = Some(fd);
    }
    stack.last_mut().expect("the top stays on the stack").fd = dir;
    Ok(())
}

/// Opens directory `name` of `dir` without following a symlink.
fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty())
}

fn identity(dir: BorrowedFd<'_>) -> std::result::Result<((u64, u64), u64), String> {
    let st = fstat(dir).map_err(|e| e.desc().to_string())?;
    #[allow(clippy::useless_conversion)]
    Ok((
        (u64::from(st.st_dev), u64::from(st.st_ino)),
        u64::from(st.st_nlink),
    ))
}

/// The sub-directories of `dir` (the sub-cgroups), sorted so that the walk takes them in
/// name order. `links` is the directory's link count: cgroupfs (kernfs) keeps it at two
/// plus the number of sub-directories, refreshed at each stat, so a cgroup without
/// sub-cgroups (nearly every one a walk meets) is not listed at all. Any other count is
/// listed, 1 included (a filesystem that does not count).
fn sub_dirs(dir: BorrowedFd<'_>, links: u64) -> std::result::Result<Vec<CString>, String> {
    if links == 2 {
        return Ok(Vec::new());
    }
    // A description of its own: reading a directory moves its offset.
    let listing = openat(
        dir,
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .and_then(Dir::from_fd)
    .map_err(|e| e.desc().to_string())?;
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| e.desc().to_string())?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == Type::Directory,
            None => fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }),
        };
        if is_dir {
            out.push(name.to_owned());
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ok(out)
}

/// Reads file `name` of `dir`; a missing file reads as `None`.
pub(crate) fn read_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> std::result::Result<Option<String>, String> {
    let fd = match openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("read {}: {}", name.to_string_lossy(), e.desc())),
    };
    let mut text = String::new();
    fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|e| format!("read {}: {}", name.to_string_lossy(), describe(&e)))?;
    Ok(Some(text))
}

/// Writes `value` to the existing file `name` of `dir`.
pub(crate) fn write_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    value: &str,
) -> std::result::Result<(), String> {
    let what = || format!("write {}={value}", name.to_string_lossy());
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {}", what(), e.desc()))?;
    fs::File::from(fd)
        .write_all(value.as_bytes())
        .map_err(|e| format!("{}: {}", what(), describe(&e)))
}

/// `rmdir` of sub-cgroup `name` of `dir`; gone already counts as done.
pub(crate) fn rmdir_at(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir) {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    }
}
