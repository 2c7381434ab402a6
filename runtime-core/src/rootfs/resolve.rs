//! Resolving container paths inside the rootfs without escaping it.
//!
//! A mount destination such as `/etc/x` may go through symlinks the image controls (`/etc` →
//! `/host-etc`, `../../..`). Followed naively on the host, such a path lands outside the rootfs
//! and the runtime would mount over host files. Two layers keep it inside:
//!
//! - [`secure_join`] resolves the path in user space, component by component, treating the
//!   rootfs as `/` (absolute links restart at the rootfs, `..` stops at it); it also resolves
//!   dangling links, so the directories to create are known.
//! - [`Root`] then creates and opens the result with `openat2(RESOLVE_IN_ROOT)`, so even a
//!   symlink swapped in after the first step is resolved by the kernel inside the rootfs. The
//!   mount itself targets the opened file through `/proc/self/fd/N`.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};

use crate::{Error, Result};

/// Symlinks followed in one resolution before giving up (the kernel's limit is 40).
const MAX_SYMLINKS: usize = 255;

/// Resolves `path` as if `root` were `/`, following symlinks found under `root` without ever
/// leaving it. Components that do not exist are taken as written. Returns `root` joined with
/// the resolved path.
pub fn secure_join(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new();
    // Components still to walk, front first; a symlink's target is pushed in front.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let on_host = root.join(&candidate);
        match std::fs::symlink_metadata(&on_host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::sys(
                        "resolve",
                        path.display().to_string(),
                        Errno::ELOOP,
                    ));
                }
                let target =
                    std::fs::read_link(&on_host).map_err(|e| Error::io("readlink", &on_host, e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => resolved = candidate,
            // ENOTDIR: a file in the middle of the path; the later open reports it with context.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => resolved = candidate,
            Err(e) => return Err(Error::io("lstat", on_host, e)),
        }
    }
    Ok(root.join(resolved))
}

/// Pushes the components of `path` onto the stack `pending` so that the first component is
/// popped first. `.` and the root are dropped; `..` is kept for the walker.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

/// `path` relative to `/`: `/dev/pts` → `dev/pts`. `openat2` wants a relative name.
pub fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// `path` made absolute and cleaned without looking at the filesystem: `.` dropped, `..`
/// removing the component before it (never above `/`). A container path resolved by
/// [`Root::resolve`] equals this exactly when no symlink was followed.
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The `/proc/self/fd/N` name of an open file: a path `mount(2)` can use as its target or
/// source that refers to exactly that file.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The container's rootfs, opened once, with every lookup confined to it by the kernel.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` (a directory) as the root of later lookups. Open it after anything is
    /// mounted on the rootfs itself: the handle keeps pointing to the mount it saw.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("open", path.display().to_string(), e))?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The rootfs path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `openat2(root, path, RESOLVE_IN_ROOT)`: `path` is a container path (absolute or not).
    fn open_in_root(
        &self,
        path: &Path,
        flags: OFlag,
        mode: Mode,
    ) -> std::result::Result<OwnedFd, Errno> {
        let rel = relative(path);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), &rel, how)
    }

    /// Opens an existing container path as an `O_PATH` handle (symlinks followed inside the
    /// rootfs), and checks that it is the file `path` resolves to: see [`Root::verify`].
    pub fn open_path(&self, path: &Path) -> Result<OwnedFd> {
        let resolved = self.resolve(path)?;
        let fd = self
            .open_in_root(&resolved, OFlag::O_PATH, Mode::empty())
            .map_err(|e| Error::sys("openat2", self.describe(path), e))?;
        self.verify(&fd, path, &resolved)?;
        Ok(fd)
    }

    /// Fails unless the open file `fd` is `resolved` (a container path) inside the rootfs.
    ///
    /// Between resolving a path and opening it, a directory on a shared volume may be
    /// swapped for a symlink (CVE-2021-30465). `openat2(RESOLVE_IN_ROOT)` keeps the open
    /// inside the rootfs, but it could still land on another file of the container than the
    /// one checked (e.g. under /proc). The kernel's name for the open file tells where it
    /// really is.
    pub fn verify(&self, fd: &impl AsRawFd, path: &Path, resolved: &Path) -> Result<()> {
        let expected = self.path.join(relative(resolved));
        let actual =
            std::fs::read_link(fd_path(fd)).map_err(|e| Error::io("readlink", fd_path(fd), e))?;
        if actual != expected {
            return Err(Error::sys(
                "openat2",
                format!(
                    "{}: opened {} instead of {} (the path changed while it was being \
                     resolved)",
                    self.describe(path),
                    actual.display(),
                    expected.display()
                ),
                Errno::EXDEV,
            ));
        }
        Ok(())
    }

    /// Creates the directory `path` and its missing parents inside the rootfs (mode 0755) and
    /// returns an `O_PATH` handle to it.
    pub fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        let resolved = self.resolve(path)?;
        // Already there (the usual case): one open instead of one per component.
        if let Ok(dir) =
            self.open_in_root(&resolved, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
        {
            self.verify(&dir, path, &resolved)?;
            return Ok(dir);
        }
        let mut dir = self
            .open_in_root(
                Path::new("/"),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .map_err(|e| Error::sys("openat2", self.describe(Path::new("/")), e))?;
        let mut sofar = PathBuf::from("/");
        for part in resolved.components() {
            let Component::Normal(name) = part else {
                continue;
            };
            sofar.push(name);
            match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::sys("mkdirat", self.describe(&sofar), e)),
            }
            // Open by the full path from the root, not relative to `dir`: a component replaced
            // by a symlink meanwhile is still resolved inside the rootfs.
            dir = self
                .open_in_root(&sofar, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
                .map_err(|e| Error::sys("openat2", self.describe(&sofar), e))?;
        }
        self.verify(&dir, path, &resolved)?;
        Ok(dir)
    }

    /// Creates `path` as an empty file if it does not exist (its parents as directories) and
    /// returns an `O_PATH` handle to it: the mount point of a bind mount of a file.
    pub fn create_file(&self, path: &Path) -> Result<OwnedFd> {
        let resolved = self.resolve(path)?;
        if let Some(parent) = resolved.parent() {
            self.mkdir_all(parent)?;
        }
        match self.open_in_root(&resolved, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => {
                self.verify(&fd, path, &resolved)?;
                return Ok(fd);
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys("openat2", self.describe(path), e)),
        }
        let created = self
            .open_in_root(
                &resolved,
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(|e| Error::sys("openat2 (create)", self.describe(path), e))?;
        drop(created);
        let fd = self
            .open_in_root(&resolved, OFlag::O_PATH, Mode::empty())
            .map_err(|e| Error::sys("openat2", self.describe(path), e))?;
        self.verify(&fd, path, &resolved)?;
        Ok(fd)
    }

    /// [`Root::mkdir_all`] of a path that must not go through a symlink (one already resolved
    /// and checked): fails if it now does.
    pub fn mkdir_exact(&self, path: &Path) -> Result<OwnedFd> {
        if let Some(fd) = self.existing_exact(path, OFlag::O_DIRECTORY) {
            return Ok(fd);
        }
        // Only the last component missing (a mount point in a fresh tmpfs): made in its
        // parent, opened as written and checked as above.
        let literal = lexical(path);
        if let (Some(parent), Some(name)) = (literal.parent(), literal.file_name())
            && let Some(dir) = self.existing_exact(parent, OFlag::O_DIRECTORY)
            && matches!(
                mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)),
                Ok(()) | Err(Errno::EEXIST)
            )
            && let Some(fd) = self.existing_exact(path, OFlag::O_DIRECTORY)
        {
            return Ok(fd);
        }
        let fd = self.mkdir_all(path)?;
        self.verify(&fd, path, &lexical(path))?;
        Ok(fd)
    }

    /// The usual case of the `_exact` calls, in one `openat2` and one `readlink`: `path`
    /// exists and opening it as written (inside the rootfs) lands on the file of that very
    /// name, which is what the full resolution and both checks would accept. Anything else
    /// (missing, a symlink on the way, an error) is `None`, for the full path with its
    /// creation and its error messages.
    fn existing_exact(&self, path: &Path, flags: OFlag) -> Option<OwnedFd> {
        let literal = lexical(path);
        let fd = self
            .open_in_root(&literal, OFlag::O_PATH | flags, Mode::empty())
            .ok()?;
        let actual = std::fs::read_link(fd_path(&fd)).ok()?;
        (actual == self.path.join(relative(&literal))).then_some(fd)
    }

    /// [`Root::create_file`] of a path that must not go through a symlink.
    pub fn create_file_exact(&self, path: &Path) -> Result<OwnedFd> {
        if let Some(fd) = self.existing_exact(path, OFlag::empty()) {
            return Ok(fd);
        }
        let fd = self.create_file(path)?;
        self.verify(&fd, path, &lexical(path))?;
        Ok(fd)
    }

    /// [`Root::open_path`] of a path that must not go through a symlink.
    pub fn open_exact(&self, path: &Path) -> Result<OwnedFd> {
        if let Some(fd) = self.existing_exact(path, OFlag::empty()) {
            return Ok(fd);
        }
        let fd = self.open_path(path)?;
        self.verify(&fd, path, &lexical(path))?;
        Ok(fd)
    }

    /// The container path `path` with every symlink resolved inside the rootfs, as an
    /// absolute container path (`/etc` for a link to `../../etc`).
    pub fn resolve(&self, path: &Path) -> Result<PathBuf> {
        let joined = secure_join(&self.path, path)?;
        let inner = joined.strip_prefix(&self.path).unwrap_or(Path::new(""));
        Ok(Path::new("/").join(inner))
    }

    fn describe(&self, path: &Path) -> String {
        format!("{} in rootfs {}", path.display(), self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        dir
    }

    #[test]
    fn plain_path_joins_under_root() {
        let t = tree();
        assert_eq!(
            secure_join(t.path(), Path::new("/usr/lib")).unwrap(),
            t.path().join("usr/lib")
        );
    }

    #[test]
    fn dotdot_stops_at_the_root() {
        let t = tree();
        assert_eq!(
            secure_join(t.path(), Path::new("/../../etc")).unwrap(),
            t.path().join("etc")
        );
        assert_eq!(
            secure_join(t.path(), Path::new("usr/../../../x")).unwrap(),
            t.path().join("x")
        );
    }

    #[test]
    fn absolute_symlink_to_etc_lands_in_rootfs_etc() {
        let t = tree();
        symlink("/etc", t.path().join("link")).unwrap();
        assert_eq!(
            secure_join(t.path(), Path::new("/link/passwd")).unwrap(),
            t.path().join("etc/passwd")
        );
    }

    #[test]
    fn relative_symlink_climbing_out_is_clamped() {
        let t = tree();
        symlink("../../../../etc", t.path().join("usr/lib/up")).unwrap();
        assert_eq!(
            secure_join(t.path(), Path::new("/usr/lib/up")).unwrap(),
            t.path().join("etc")
        );
    }

    #[test]
    fn dangling_symlink_resolves_to_its_target_inside_root() {
        let t = tree();
        symlink("/nowhere/deeper", t.path().join("dangling")).unwrap();
        assert_eq!(
            secure_join(t.path(), Path::new("/dangling/x")).unwrap(),
            t.path().join("nowhere/deeper/x")
        );
    }

    #[test]
    fn symlink_loop_fails_with_eloop() {
        let t = tree();
        symlink("/b", t.path().join("a")).unwrap();
        symlink("/a", t.path().join("b")).unwrap();
        let err = secure_join(t.path(), Path::new("/a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ELOOP"), "{err}");
    }

    #[test]
    fn mkdir_all_through_an_escaping_symlink_creates_inside_rootfs() {
        let t = tree();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("out")).unwrap();
        let root = Root::open(t.path()).unwrap();
        root.mkdir_all(Path::new("/out/made")).unwrap();
        assert!(
            t.path()
                .join(outside.path().strip_prefix("/").unwrap())
                .join("made")
                .is_dir()
        );
        assert!(
            !outside.path().join("made").exists(),
            "created outside the rootfs"
        );
    }

    #[test]
    fn create_file_makes_an_empty_file_and_its_parents() {
        let t = tree();
        let root = Root::open(t.path()).unwrap();
        root.create_file(Path::new("/etc/resolv.d/resolv.conf"))
            .unwrap();
        let meta = std::fs::metadata(t.path().join("etc/resolv.d/resolv.conf")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), 0);
        // A second call finds the existing file.
        root.create_file(Path::new("/etc/resolv.d/resolv.conf"))
            .unwrap();
    }

    #[test]
    fn resolve_returns_the_container_path() {
        let t = tree();
        symlink("../etc", t.path().join("usr/etc")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert_eq!(
            root.resolve(Path::new("/usr/etc/x")).unwrap(),
            PathBuf::from("/etc/x")
        );
    }

    #[test]
    fn relative_drops_the_leading_slash() {
        assert_eq!(relative(Path::new("/dev/pts")), PathBuf::from("dev/pts"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }
}
