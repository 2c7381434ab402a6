//! Mounting: containerd's rootfs mounts on the host, and the spec's `mounts` inside the rootfs.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::symlinkat;
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::RootfsMount;
use super::mount_api;
use super::options::{self, MountOptions};
use super::resolve::{Root, fd_path, lexical};
use crate::cgroups::{CgroupManager, Layout};
use crate::{Error, Result};

/// `mount(2)` with `Option<&str>`/`&Path` arguments and an error naming what was mounted where.
pub(crate) fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|e| Error::sys("mount", what(), e))
}

/// The per-mount flags of the mount holding `path` that a bind remount must repeat: without
/// them the kernel refuses to drop flags locked by a less privileged namespace, and they are
/// what the caller expects to keep.
pub(crate) fn kept_flags(path: &Path) -> Result<MsFlags> {
    let st = statvfs(path).map_err(|e| Error::sys("statvfs", path.display().to_string(), e))?;
    let f = st.flags();
    let map = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(map
        .iter()
        .filter(|(st, _)| f.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

/// Changes the flags of the bind mount at `target`. When the kernel refuses (`EPERM`: flags
/// locked by the mount's origin), retries with the mount's current flags added.
pub(crate) fn bind_remount(target: &Path, flags: MsFlags, what: &dyn Fn() -> String) -> Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        target,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let kept = kept_flags(target)?;
            sys_mount(None, target, None, base | flags | kept, None, || {
                format!("{} (remount)", what())
            })
        }
        Err(e) => Err(Error::sys("mount", format!("{} (remount)", what()), e)),
    }
}

// ---------------------------------------------------------------------------------------------
// containerd's rootfs

/// See [`super::mount_rootfs`].
pub(crate) fn mount_rootfs(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one_rootfs(m, target) {
            // Leave nothing half-mounted behind: the caller sees the error and a clean target.
            if i > 0 {
                let _ = unmount_rootfs(target);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one_rootfs(m: &RootfsMount, target: &Path) -> Result<()> {
    let opts = options::parse(&m.options);
    let what = || format!("rootfs {} ({}) on {}", m.source, m.typ, target.display());
    let source = Path::new(&m.source);
    if opts.is_bind || m.typ == "bind" || m.typ == "rbind" {
        let rec = if opts.recursive || m.typ == "rbind" {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        sys_mount(
            Some(source),
            target,
            None,
            MsFlags::MS_BIND | rec,
            None,
            what,
        )?;
        let extra = opts.remount_flags();
        if !extra.is_empty() {
            bind_remount(target, extra, &what)?;
        }
    } else {
        sys_mount(
            Some(source),
            target,
            Some(&m.typ),
            opts.flags(),
            opts.data(),
            what,
        )?;
    }
    apply_propagation(target, &opts, &what)
}

/// See [`super::unmount_rootfs`].
pub(crate) fn unmount_rootfs(target: &Path) -> Result<()> {
    // Several mounts may be stacked at `target`; each MNT_DETACH removes the top one and its
    // submounts. EINVAL means "not a mount point": done.
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::sys(
                    "umount2",
                    format!("{} (MNT_DETACH)", target.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::sys(
        "umount2",
        format!("{}: still mounted after 64 detaches", target.display()),
        Errno::EBUSY,
    ))
}

fn apply_propagation(target: &Path, opts: &MountOptions, what: &dyn Fn() -> String) -> Result<()> {
    for p in &opts.propagation {
        sys_mount(None, target, None, *p, None, || {
            format!("{} (propagation {p:?})", what())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// spec mounts

/// What the spec's mounts need to know about the container besides the mounts themselves.
pub(crate) struct MountContext<'a> {
    /// The container's cgroup: a `cgroup` mount shows its directories.
    pub cgroup: &'a CgroupManager,
    /// The container has a cgroup namespace of its own.
    pub cgroupns: bool,
    /// The container has a user namespace.
    pub userns: bool,
}

/// Files inside /proc a spec may mount over (lxcfs emulates them), as runc allows.
const ALLOWED_IN_PROC: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// One `spec.mounts` entry, ready to mount.
struct SpecMount<'a> {
    /// Its index in `mounts`, for errors.
    index: usize,
    /// The destination as the spec writes it.
    dest: &'a Path,
    /// Where it resolved to when it was checked; every later open must find exactly that.
    at: PathBuf,
    typ: &'a str,
    source: Option<&'a Path>,
    opts: MountOptions,
    /// The mount's own `uidMappings`/`gidMappings`: an idmapped bind mount.
    uid_mappings: &'a [LinuxIdMapping],
    gid_mappings: &'a [LinuxIdMapping],
}

impl<'a> SpecMount<'a> {
    /// `spec.mounts[index]`, its destination not resolved yet.
    fn new(index: usize, m: &'a Mount) -> SpecMount<'a> {
        SpecMount {
            index,
            dest: m.destination(),
            at: PathBuf::new(),
            typ: m.typ().as_deref().unwrap_or_default(),
            source: m.source().as_deref(),
            opts: options::parse(m.options().as_deref().unwrap_or_default()),
            uid_mappings: m.uid_mappings().as_deref().unwrap_or_default(),
            gid_mappings: m.gid_mappings().as_deref().unwrap_or_default(),
        }
    }

    /// A bind mount with its own id mappings.
    fn is_idmapped_bind(&self) -> bool {
        self.is_bind() && !(self.uid_mappings.is_empty() && self.gid_mappings.is_empty())
    }

    fn recursive(&self) -> bool {
        self.opts.recursive || self.typ == "rbind"
    }

    fn describe(&self) -> String {
        let src = self
            .source
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| self.typ.to_string());
        format!("{src} on {} ({})", self.dest.display(), self.typ)
    }

    fn is_bind(&self) -> bool {
        self.opts.is_bind || self.typ == "bind" || self.typ == "rbind"
    }

    fn field(&self) -> String {
        format!("mounts[{}].destination", self.index)
    }
}

/// True when the spec bind-mounts something (normally the host's /dev) at /dev: then the
/// runtime creates no device nodes or /dev symlinks of its own.
pub(crate) fn dev_is_bind_mounted(spec_mounts: &[Mount]) -> bool {
    spec_mounts.iter().any(|m| {
        let opts = options::parse(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().as_deref().unwrap_or_default();
        super::resolve::relative(m.destination()) == Path::new("dev")
            && (opts.is_bind || typ == "bind" || typ == "rbind")
    })
}

/// Mounts `spec.mounts[index]` inside `root`.
pub(crate) fn mount_spec_mount(
    root: &Root,
    index: usize,
    m: &Mount,
    ctx: &MountContext,
) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(Error::invalid(
            format!("mounts[{index}].destination"),
            format!("{} is not an absolute path", dest.display()),
        ));
    }
    let mut sm = SpecMount::new(index, m);
    sm.at = check_destination(root, &sm)?;
    mount_by_type(root, &sm, ctx)?;
    if sm.opts.attr_set != 0 || sm.opts.attr_clear != 0 {
        // `rro` and the other recursive options: on the mount and every submount.
        let fd = root.open_exact(&sm.at)?;
        mount_api::set_attributes(
            &fd,
            true,
            sm.opts.attr_set,
            sm.opts.attr_clear,
            None,
            &|| {
                format!(
                    "{} (recursive attributes of mounts[{}].options)",
                    sm.describe(),
                    sm.index
                )
            },
        )?;
    }
    Ok(())
}

fn mount_by_type(root: &Root, sm: &SpecMount, ctx: &MountContext) -> Result<()> {
    let index = sm.index;
    let dest = sm.dest;
    if sm.is_bind() {
        mount_bind(root, sm)
    } else {
        match sm.typ {
            "cgroup" | "cgroup2" => mount_cgroup(root, sm, ctx),
            "sysfs" => mount_sysfs(root, sm),
            "" => Err(Error::invalid(
                format!("mounts[{index}].type"),
                format!(
                    "mount on {} has no type and is not a bind mount",
                    dest.display()
                ),
            )),
            _ => mount_fs(root, sm, sm.typ, sm.source, sm.opts.flags(), sm.opts.data()),
        }
    }
}

/// Refuses a destination that would put a mount where the kernel's own files are
/// (CVE-2019-16884, CVE-2019-19921, CVE-2025-52565):
///
/// - `proc` and `sysfs` mounts, and every mount under /dev, must not go through a symlink of
///   the image (an image's `/dev/pts -> /proc/sys/kernel` would put devpts there);
/// - nothing may be mounted inside /proc, except the proc filesystem at /proc itself and the
///   files lxcfs emulates ([`ALLOWED_IN_PROC`]).
fn check_destination(root: &Root, sm: &SpecMount) -> Result<PathBuf> {
    let resolved = root.resolve(sm.dest)?;
    let literal = lexical(sm.dest);
    let kernel_fs = !sm.is_bind() && (sm.typ == "proc" || sm.typ == "sysfs");
    if resolved != literal && (kernel_fs || literal.starts_with("/dev")) {
        return Err(Error::invalid(
            sm.field(),
            format!(
                "{} goes through a symlink in the rootfs (to {}): a {} mount must be on a \
                 real directory",
                sm.dest.display(),
                resolved.display(),
                if kernel_fs { sm.typ } else { "/dev" }
            ),
        ));
    }
    if resolved.starts_with("/proc") {
        let allowed = if resolved == Path::new("/proc") {
            sm.typ == "proc" && !sm.is_bind()
        } else {
            ALLOWED_IN_PROC.iter().any(|p| resolved == Path::new(p))
        };
        if !allowed {
            return Err(Error::invalid(
                sm.field(),
                format!(
                    "{} resolves to {}, inside /proc: only the proc filesystem may be mounted \
                     at /proc, and over /proc only {}",
                    sm.dest.display(),
                    resolved.display(),
                    ALLOWED_IN_PROC.join(", ")
                ),
            ));
        }
    }
    Ok(resolved)
}

/// The destination directory, created if missing, and the `/proc/self/fd` path to mount on.
fn dest_dir(root: &Root, sm: &SpecMount) -> Result<(OwnedFd, PathBuf)> {
    let fd = root.mkdir_exact(&sm.at)?;
    let path = fd_path(&fd);
    Ok((fd, path))
}

/// A fresh handle on the destination after something was mounted there (the earlier handle
/// still points to the directory underneath), for remounts and propagation changes.
fn reopen(root: &Root, sm: &SpecMount) -> Result<(OwnedFd, PathBuf)> {
    let fd = root.open_exact(&sm.at)?;
    let path = fd_path(&fd);
    Ok((fd, path))
}

fn mount_fs(
    root: &Root,
    sm: &SpecMount,
    fstype: &str,
    source: Option<&Path>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    let (_fd, target) = dest_dir(root, sm)?;
    let source = source.unwrap_or(Path::new(fstype));
    sys_mount(Some(source), &target, Some(fstype), flags, data, || {
        sm.describe()
    })?;
    if !sm.opts.propagation.is_empty() {
        let (_fd, target) = reopen(root, sm)?;
        apply_propagation(&target, &sm.opts, &|| sm.describe())?;
    }
    Ok(())
}

fn mount_bind(root: &Root, sm: &SpecMount) -> Result<()> {
    let source = sm.source.ok_or_else(|| {
        Error::invalid(
            "mounts.source",
            format!("bind mount on {} has no source", sm.dest.display()),
        )
    })?;
    // An idmapped bind was made from the source on the host's side: the init, maybe in a user
    // namespace already, need not reach the source (kubelet's volume directories are 0750).
    let prepared = match sm.is_idmapped_bind() {
        true => take_prepared(sm.index),
        false => None,
    };
    let is_dir = match &prepared {
        Some(p) => p.is_dir,
        // Check the source first so the error names it rather than the destination we would
        // otherwise create for nothing.
        None => std::fs::metadata(source)
            .map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                Error::sys("mount", sm.describe(), errno)
            })?
            .is_dir(),
    };
    if sm.is_idmapped_bind() && prepared.is_none() {
        return Err(Error::Setup(format!(
            "{}: the idmapped tree was not made before the container's namespaces",
            sm.describe()
        )));
    }
    let fd = if is_dir {
        root.mkdir_exact(&sm.at)?
    } else {
        root.create_file_exact(&sm.at)?
    };
    let target = fd_path(&fd);
    let recursive = sm.recursive();
    if let Some(prepared) = prepared {
        match prepared.tree {
            Tree::Detached(tree) => mount_api::attach(&tree, &fd, &|| sm.describe())?,
            // Recursive: an `rbind` tree's submounts are locked to it.
            Tree::Staged(at) => sys_mount(
                Some(&at),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                || sm.describe(),
            )?,
        }
    } else {
        let rec = if recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        sys_mount(
            Some(source),
            &target,
            None,
            MsFlags::MS_BIND | rec,
            None,
            || sm.describe(),
        )?;
    }
    drop(fd);
    let (_fd, target) = reopen(root, sm)?;
    let extra = sm.opts.remount_flags();
    if !extra.is_empty() {
        bind_remount(&target, extra, &|| sm.describe())?;
    }
    apply_propagation(&target, &sm.opts, &|| sm.describe())
}

/// The idmapped binds of `spec.mounts`, made by the setup helper before the init is born,
/// by index. They are made on the host's side: only a process privileged over a
/// filesystem's user namespace (the host's) may idmap its mounts, which an init in a user
/// namespace of its own is not.
static PREPARED: std::sync::Mutex<Vec<(usize, Prepared)>> = std::sync::Mutex::new(Vec::new());

struct Prepared {
    tree: Tree,
    /// Whether the source is a directory (else a file): the mount point to make.
    is_dir: bool,
}

enum Tree {
    /// A detached tree the init inherits ([`prepared_fds`]) and attaches.
    Detached(OwnedFd),
    /// For a container with a user namespace: the tree attached at this path in the
    /// helper's own mount namespace, which the init's is copied from (see [`stage`]).
    Staged(PathBuf),
}

/// Where the helper attaches the trees in its own mount namespace: a tmpfs over this empty
/// directory of mini's (made once, kept: nothing is ever mounted on it in the host's mount
/// namespace). Gone from the container's view with the old root, unless the spec itself
/// binds the host's `/run` (or `/`) recursively: that copy carries the staged trees, with
/// every mount option of theirs (see [`stage`]), but not the masked and read-only paths the
/// init lays over the destinations. Not below /proc or /sys: a locked mount covering part
/// of the host's procfs or sysfs keeps the kernel from giving the container a procfs or
/// sysfs of its own.
const STAGING: &str = "/run/mini-idmap";

/// Makes the idmapped bind of every `spec.mounts` entry that asks for one: a detached copy
/// of the source's mount (with its submounts for `rbind`), given the mount's id mappings
/// through a user namespace made for them (on every copied mount for `rbind` or `ridmap`).
/// A mount whose source is missing is left to the init, whose error names it as for any
/// bind mount. With `userns` the trees are staged ([`stage`]).
pub(crate) fn prepare_idmapped_binds(
    spec_mounts: &[Mount],
    userns: bool,
    shared_root: bool,
) -> Result<()> {
    let mut trees = Vec::new();
    // On every create's path: a mount without mappings costs no option parsing and no stat.
    let mapped = |m: &Mount| {
        m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
            || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
    };
    for (index, m) in spec_mounts.iter().enumerate().filter(|(_, m)| mapped(m)) {
        let sm = SpecMount::new(index, m);
        let Some(source) = sm.source.filter(|s| s.exists()) else {
            continue;
        };
        if sm.is_idmapped_bind() {
            let tree = idmapped_tree(&sm, source, shared_root)?;
            let is_dir = nix::sys::stat::fstat(&tree)
                .map_err(|e| Error::sys("fstat", sm.describe(), e))?
                .st_mode
                & libc::S_IFMT
                == libc::S_IFDIR;
            trees.push((sm, tree, is_dir));
        }
    }
    let prepared = if userns && !trees.is_empty() {
        stage(trees)?
    } else {
        trees
            .into_iter()
            .map(|(sm, tree, is_dir)| {
                let tree = Tree::Detached(tree);
                (sm.index, Prepared { tree, is_dir })
            })
            .collect()
    };
    *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = prepared;
    Ok(())
}

/// For a container with a user namespace: the kernel locks the mounts that a user
/// namespace's mount namespace copies from a more privileged one (no unmounting a submount
/// to see what it covers, no dropping `ro`, `nosuid`, `nodev`, `noexec`), but a detached
/// tree attached from inside it is not locked. So the helper moves into a mount namespace
/// of its own (a slave of the host's: nothing done in it reaches the host), gives each tree
/// the mount's `ro`/`nosuid`/`nodev`/`noexec` and attaches it below [`STAGING`]; the init's
/// mount namespace is then copied from this one, the trees locked in it, and the init binds
/// them from there.
fn stage(trees: Vec<(SpecMount, OwnedFd, bool)>) -> Result<Vec<(usize, Prepared)>> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::sys("unshare", "mount namespace for idmapped mounts", e))?;
    sys_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
        || "/ (rslave, the helper's mount namespace)".into(),
    )?;
    let staging = Path::new(STAGING);
    match nix::unistd::mkdir(staging, nix::sys::stat::Mode::from_bits_truncate(0o711)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(Error::sys("mkdir", STAGING, e)),
    }
    let meta = std::fs::symlink_metadata(staging).map_err(|e| Error::io("stat", STAGING, e))?;
    if !meta.is_dir() {
        return Err(Error::Setup(format!(
            "{STAGING} is not a directory: mini stages idmapped mounts there"
        )));
    }
    sys_mount(
        Some(Path::new("tmpfs")),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0711,size=64k"),
        || format!("tmpfs on {STAGING} (staging of idmapped mounts)"),
    )?;
    let mut staged = Vec::new();
    for (sm, tree, is_dir) in trees {
        let index = sm.index;
        let what = || format!("{} (idmapped, staged at {STAGING}/{index})", sm.describe());
        // The mount's own options, then its recursive ones, as the init would apply them
        // after the attach: here they are in place before the copy that locks them.
        let (set, clear) = mount_attrs(sm.opts.remount_flags());
        if set != 0 || clear != 0 {
            mount_api::set_attributes(&tree, false, set, clear, None, &what)?;
        }
        let (set, clear) = recursive_attrs(sm.opts.attr_set, sm.opts.attr_clear);
        if set != 0 || clear != 0 {
            mount_api::set_attributes(&tree, true, set, clear, None, &what)?;
        }
        let at = staging.join(index.to_string());
        if is_dir {
            nix::unistd::mkdir(&at, nix::sys::stat::Mode::from_bits_truncate(0o711))
                .map_err(|e| Error::sys("mkdir", what(), e))?;
        } else {
            std::fs::File::create(&at).map_err(|e| Error::io("create", what(), e))?;
        }
        let target = nix::fcntl::open(
            &at,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys("open", what(), e))?;
        mount_api::attach(&tree, &target, &what)?;
        let tree = Tree::Staged(at);
        staged.push((index, Prepared { tree, is_dir }));
    }
    Ok(staged)
}

/// The `mount_setattr` attributes (set, clear) of a bind remount's `flags`, for a staged
/// tree: the flags it sets (a flag the source's mount has stays, as it stays locked in a
/// plain bind in a user namespace), and the access-time mode the kernel's remount gives
/// (strict, else noatime, else relatime, when any access-time flag is given; else the
/// source's).
fn mount_attrs(flags: MsFlags) -> (u64, u64) {
    let mut set = [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (options::MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ]
    .iter()
    .filter(|(flag, _)| flags.contains(*flag))
    .fold(0, |all, (_, attr)| all | attr);
    let mut clear = 0;
    let atime = MsFlags::MS_NOATIME
        | MsFlags::MS_STRICTATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_NODIRATIME;
    if flags.intersects(atime) {
        set |= if flags.contains(MsFlags::MS_STRICTATIME) {
            libc::MOUNT_ATTR_STRICTATIME
        } else if flags.contains(MsFlags::MS_NOATIME) {
            libc::MOUNT_ATTR_NOATIME
        } else {
            libc::MOUNT_ATTR_RELATIME
        };
        clear |= libc::MOUNT_ATTR__ATIME;
        if flags.contains(MsFlags::MS_NODIRATIME) {
            set |= libc::MOUNT_ATTR_NODIRATIME;
        } else {
            clear |= libc::MOUNT_ATTR_NODIRATIME;
        }
    }
    (set, clear)
}

/// The recursive attributes a staged tree takes (`rro`, `rnoatime`, …): all it sets, and of
/// its clears only the access-time mode's (clearing `ro`, `nosuid`, … of the host's
/// submounts is refused to a plain bind in a user namespace, as they are locked).
fn recursive_attrs(set: u64, clear: u64) -> (u64, u64) {
    (
        set,
        clear & (libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME),
    )
}

/// The fds of the prepared idmapped trees (the init keeps them open until it attaches them).
pub(crate) fn prepared_fds() -> Vec<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    let trees = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    trees
        .iter()
        .filter_map(|(_, p)| match &p.tree {
            Tree::Detached(fd) => Some(fd.as_raw_fd()),
            Tree::Staged(_) => None,
        })
        .collect()
}

fn take_prepared(index: usize) -> Option<Prepared> {
    let mut trees = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    let at = trees.iter().position(|(i, _)| *i == index)?;
    Some(trees.swap_remove(at).1)
}

fn idmapped_tree(sm: &SpecMount, source: &Path, shared_root: bool) -> Result<OwnedFd> {
    let field = format!("mounts[{}].uidMappings", sm.index);
    let proc = crate::procfs::ProcFs::open()?;
    let userns = mount_api::userns_with_mappings(&proc, sm.uid_mappings, sm.gid_mappings)
        .map_err(|e| Error::invalid(field.clone(), e.to_string()))?;
    let recursive = sm.recursive();
    let tree = mount_api::clone_tree(source, recursive).map_err(|e| {
        Error::invalid(
            format!("mounts[{}].source", sm.index),
            format!("{}: {e}", sm.describe()),
        )
    })?;
    // A copy of a shared mount is in the source's peer group: what the container mounts
    // below it would show on the host. A slave, as a bind made in the init's namespace is
    // (the mount's own propagation option is applied once it is attached); a peer still
    // where the container's root is shared with the host's (`rootfsPropagation` shared).
    if !shared_root {
        mount_api::set_propagation(&tree, libc::MS_SLAVE, &|| sm.describe())?;
    }
    let all = recursive || sm.opts.idmap == Some(options::IdmapScope::Recursive);
    mount_api::set_attributes(
        &tree,
        all,
        libc::MOUNT_ATTR_IDMAP,
        0,
        Some(&userns),
        &|| {
            format!(
                "{} (idmap; the kernel allows it on filesystems that support idmapped mounts, \
             e.g. ext4, xfs, btrfs, tmpfs since Linux 6.3)",
                sm.describe()
            )
        },
    )
    .map_err(|e| Error::invalid(field, e.to_string()))?;
    Ok(tree)
}

fn mount_sysfs(root: &Root, sm: &SpecMount) -> Result<()> {
    match mount_fs(
        root,
        sm,
        "sysfs",
        sm.source,
        sm.opts.flags(),
        sm.opts.data(),
    ) {
        // In a user namespace without a network namespace of its own the kernel refuses a new
        // sysfs. runc fails there too. Binding the host's /sys instead would need `rbind` (a
        // plain bind is refused while /sys has submounts locked by the user namespace), which
        // shows the host's cgroup trees and the rest of its submounts: refuse.
        Err(Error::Sys {
            source: Errno::EPERM,
            ..
        }) => Err(Error::invalid(
            sm.field(),
            format!(
                "sysfs on {}: the kernel refuses a new sysfs (EPERM) in a user namespace \
                 without a network namespace of its own; mini does not bind the host's /sys \
                 with its submounts instead (give the container a network namespace)",
                sm.dest.display()
            ),
        )),
        other => other,
    }
}

/// A `cgroup` mount, as runc makes it: on cgroup v1 (legacy and hybrid hosts) a tmpfs
/// holding, per v1 hierarchy, a bind of the container's own cgroup directory, named as the
/// host names the hierarchy, with a symlink per controller of a combined hierarchy
/// (`cpu -> cpu,cpuacct`); on a unified host cgroup2.
///
/// Read-only when the mount says `ro` (CRI sends it unless privileged) and, whatever it
/// says, for a container in a user namespace without a cgroup namespace of its own
/// (CVE-2023-25809).
fn mount_cgroup(root: &Root, sm: &SpecMount, ctx: &MountContext) -> Result<()> {
    let readonly = cgroup_readonly(&sm.opts, ctx);
    match ctx.cgroup.layout() {
        Layout::Unified => mount_cgroup2(root, sm, ctx, readonly),
        Layout::Legacy | Layout::Hybrid => mount_cgroup_v1(root, sm, ctx, readonly),
    }
}

/// Whether a `cgroup` mount with options `opts` is read-only: see [`mount_cgroup`].
pub(crate) fn cgroup_readonly(opts: &MountOptions, ctx: &MountContext) -> bool {
    opts.flags().contains(MsFlags::MS_RDONLY) || (ctx.userns && !ctx.cgroupns)
}

const CGROUP_MOUNT_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn readonly_flag(readonly: bool) -> MsFlags {
    if readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    }
}

fn mount_cgroup_v1(root: &Root, sm: &SpecMount, ctx: &MountContext, readonly: bool) -> Result<()> {
    // Read-only only once the hierarchies' directories and symlinks are in.
    let tmpfs_flags = (sm.opts.flags() | CGROUP_MOUNT_FLAGS) & !MsFlags::MS_RDONLY;
    mount_fs(
        root,
        sm,
        "tmpfs",
        Some(Path::new("tmpfs")),
        tmpfs_flags,
        Some("mode=755"),
    )?;
    let mut binds = Vec::new();
    for dir in ctx.cgroup.dirs().filter(|d| !d.controllers.is_empty()) {
        let Some(name) = dir.mount_point.file_name() else {
            continue;
        };
        let dest = sm.at.join(name);
        let what = || {
            format!(
                "{} on {} (bind, mounts[{}] cgroup)",
                dir.dir.display(),
                dest.display(),
                sm.index
            )
        };
        let fd = root.mkdir_exact(&dest)?;
        sys_mount(
            Some(&dir.dir),
            &fd_path(&fd),
            None,
            MsFlags::MS_BIND,
            None,
            what,
        )?;
        drop(fd);
        let described = what();
        binds.push((dest, described));
        let name = name.to_string_lossy();
        if name.contains(',') {
            let top = root.open_exact(&sm.at)?;
            for controller in name.split(',') {
                match symlinkat(name.as_ref(), top.as_fd(), controller) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(Error::sys(
                            "symlinkat",
                            format!("{}/{controller} -> {name}", sm.dest.display()),
                            e,
                        ));
                    }
                }
            }
        }
    }
    // The hierarchies' binds nosuid, nodev, noexec (and with the tmpfs read-only) in one
    // recursive mount_setattr, not a remount each; before Linux 5.12, a remount each.
    let top = root.open_exact(&sm.at)?;
    let (set, _) = mount_attrs(CGROUP_MOUNT_FLAGS | readonly_flag(readonly));
    match mount_api::set_attributes(&top, true, set, 0, None, &|| {
        format!("{} (nosuid, nodev, noexec, ro)", sm.describe())
    }) {
        // Kernels without it, and a seccomp filter or an LSM of the caller's that refuses
        // it: the remounts below.
        Err(Error::Sys {
            source: Errno::ENOSYS | Errno::EPERM | Errno::EINVAL,
            ..
        }) => {}
        other => return other,
    }
    for (dest, what) in &binds {
        let fd = root.open_exact(dest)?;
        bind_remount(
            &fd_path(&fd),
            CGROUP_MOUNT_FLAGS | readonly_flag(readonly),
            &|| what.clone(),
        )?;
    }
    if readonly {
        bind_remount(&fd_path(&top), tmpfs_flags | MsFlags::MS_RDONLY, &|| {
            sm.describe()
        })?;
    }
    Ok(())
}

fn mount_cgroup2(root: &Root, sm: &SpecMount, ctx: &MountContext, readonly: bool) -> Result<()> {
    let flags = sm.opts.flags() | readonly_flag(readonly);
    if ctx.cgroupns {
        // In its own cgroup namespace a new cgroup2 mount shows the container's cgroup as root.
        let source = sm.source.unwrap_or(Path::new("cgroup"));
        match mount_fs(root, sm, "cgroup2", Some(source), flags, sm.opts.data()) {
            // A user namespace that does not own the cgroup namespace: bind instead.
            Err(Error::Sys {
                source: Errno::EPERM | Errno::EBUSY,
                ..
            }) => {}
            other => return other,
        }
    }
    // Without a cgroup namespace a new mount would show the host's whole tree: bind the
    // container's own directory.
    let Some(own) = ctx.cgroup.unified_path() else {
        return Err(Error::invalid(
            sm.field(),
            "the container has no cgroup2 directory to mount",
        ));
    };
    let what = || format!("{} on {} (bind, cgroup2)", own.display(), sm.dest.display());
    let (fd, target) = dest_dir(root, sm)?;
    sys_mount(Some(own), &target, None, MsFlags::MS_BIND, None, what)?;
    drop(fd);
    let (_fd, target) = reopen(root, sm)?;
    bind_remount(
        &target,
        sm.opts.remount_flags() | readonly_flag(readonly) | CGROUP_MOUNT_FLAGS,
        &what,
    )
}

#[cfg(test)]
mod attr_tests {
    use super::*;

    #[test]
    fn a_staged_trees_attributes_follow_the_kernels_bind_remount() {
        let attrs = |words: &[&str]| mount_attrs(options::parse(words).remount_flags());
        // Nothing said of access times: the source's mode stays.
        assert_eq!(
            attrs(&["bind", "ro", "nosuid"]),
            (libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID, 0)
        );
        // `rw`, `suid`: nothing is cleared (a flag of the source's stays, as it is locked).
        assert_eq!(attrs(&["bind", "rw", "suid"]), (0, 0));
        let atime = libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME;
        assert_eq!(
            attrs(&["bind", "relatime"]),
            (libc::MOUNT_ATTR_RELATIME, atime)
        );
        assert_eq!(
            attrs(&["bind", "noatime", "strictatime"]),
            (libc::MOUNT_ATTR_STRICTATIME, atime)
        );
        // `nodiratime` alone: relatime, as the kernel's remount makes it.
        assert_eq!(
            attrs(&["bind", "nodiratime"]),
            (
                libc::MOUNT_ATTR_RELATIME | libc::MOUNT_ATTR_NODIRATIME,
                libc::MOUNT_ATTR__ATIME
            )
        );
        // Recursive: sets kept, only the access-time clears.
        let r = options::parse(&["rbind", "rrw", "rnoatime"]);
        assert_eq!(
            recursive_attrs(r.attr_set, r.attr_clear),
            (libc::MOUNT_ATTR_NOATIME, libc::MOUNT_ATTR__ATIME)
        );
    }
}
