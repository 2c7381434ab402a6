//! Mount option strings (`ro`, `nosuid`, `rbind`, `rprivate`, `lowerdir=…`) to flags and data.
//!
//! OCI and containerd pass fstab-style options. Those the kernel takes as `mount(2)` flags are
//! split out here; everything else is filesystem data, handed to the filesystem as the
//! comma-joined `data` argument.

use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW` (Linux 5.10); nix's `MsFlags` does not name it.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// The parsed form of a mount's option list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set (`ro`, `nosuid`, `remount`, …).
    pub set: MsFlags,
    /// Flags the options explicitly turn off (`rw`, `suid`, `exec`, …).
    pub clear: MsFlags,
    /// Propagation changes, in the order given; each already carries `MS_REC` when the option
    /// was the recursive form (`rprivate`, `rslave`, …).
    pub propagation: Vec<MsFlags>,
    /// Filesystem data: every option that is not a flag, comma-joined in order.
    pub data: String,
    /// `bind` or `rbind` was given.
    pub is_bind: bool,
    /// `rbind` was given: submounts of the source come along.
    pub recursive: bool,
    /// `MOUNT_ATTR_*` bits the recursive options (`rro`, `rnosuid`, …) set on the mount and
    /// every submount (`mount_setattr` with `AT_RECURSIVE`).
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` bits the recursive options (`rrw`, `rsuid`, …) clear likewise.
    pub attr_clear: u64,
    /// `idmap` or `ridmap` was given: the mount is idmapped with the mount's
    /// `uidMappings`/`gidMappings` (`ridmap`: submounts too).
    pub idmap: Option<IdmapScope>,
}

/// Which mounts of an idmapped bind get the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdmapScope {
    /// `idmap`: the mount itself (and its submounts when it is an `rbind`, as runc does).
    Mount,
    /// `ridmap`: the mount and all its submounts.
    Recursive,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            set: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            is_bind: false,
            recursive: false,
            attr_set: 0,
            attr_clear: 0,
            idmap: None,
        }
    }
}

impl MountOptions {
    /// The flags for `mount(2)`: those set minus those explicitly cleared. (`difference` and
    /// `remove`, not `& !`: the complement drops the bits nix does not name, `MS_NOSYMFOLLOW`.)
    pub fn flags(&self) -> MsFlags {
        self.set.difference(self.clear)
    }

    /// The filesystem data, or `None` when there is none (the kernel wants NULL then).
    pub fn data(&self) -> Option<&str> {
        if self.data.is_empty() {
            None
        } else {
            Some(&self.data)
        }
    }

    /// Flags that a bind mount only gets through a second `MS_REMOUNT` call: the kernel ignores
    /// everything but `MS_BIND|MS_REC` on the first one.
    pub fn remount_flags(&self) -> MsFlags {
        self.flags()
            .difference(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// What one option word means.
enum Opt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    Bind {
        recursive: bool,
    },
    /// A recursive mount attribute to set (`rro`) or clear (`rrw`).
    SetRecursive(u64),
    ClearRecursive(u64),
    /// A recursive access-time mode (`rnoatime`): one of `MOUNT_ATTR_RELATIME`, `_NOATIME`,
    /// `_STRICTATIME`, which are values of one field, not flags.
    RecursiveAtime(u64),
    Idmap(IdmapScope),
    /// Accepted and meaningless (`defaults`).
    Nothing,
}

fn classify(opt: &str) -> Option<Opt> {
    use MsFlags as F;
    let o = match opt {
        "defaults" => Opt::Nothing,
        "ro" => Opt::Set(F::MS_RDONLY),
        "rw" => Opt::Clear(F::MS_RDONLY),
        "suid" => Opt::Clear(F::MS_NOSUID),
        "nosuid" => Opt::Set(F::MS_NOSUID),
        "dev" => Opt::Clear(F::MS_NODEV),
        "nodev" => Opt::Set(F::MS_NODEV),
        "exec" => Opt::Clear(F::MS_NOEXEC),
        "noexec" => Opt::Set(F::MS_NOEXEC),
        "sync" => Opt::Set(F::MS_SYNCHRONOUS),
        "async" => Opt::Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Opt::Set(F::MS_DIRSYNC),
        "remount" => Opt::Set(F::MS_REMOUNT),
        "mand" => Opt::Set(F::MS_MANDLOCK),
        "nomand" => Opt::Clear(F::MS_MANDLOCK),
        "atime" => Opt::Clear(F::MS_NOATIME),
        "noatime" => Opt::Set(F::MS_NOATIME),
        "diratime" => Opt::Clear(F::MS_NODIRATIME),
        "nodiratime" => Opt::Set(F::MS_NODIRATIME),
        "relatime" => Opt::Set(F::MS_RELATIME),
        "norelatime" => Opt::Clear(F::MS_RELATIME),
        "strictatime" => Opt::Set(F::MS_STRICTATIME),
        "nostrictatime" => Opt::Clear(F::MS_STRICTATIME),
        "lazytime" => Opt::Set(F::MS_LAZYTIME),
        "nolazytime" => Opt::Clear(F::MS_LAZYTIME),
        "iversion" => Opt::Set(F::MS_I_VERSION),
        "noiversion" => Opt::Clear(F::MS_I_VERSION),
        "silent" => Opt::Set(F::MS_SILENT),
        "loud" => Opt::Clear(F::MS_SILENT),
        "nosymfollow" => Opt::Set(MS_NOSYMFOLLOW),
        "symfollow" => Opt::Clear(MS_NOSYMFOLLOW),
        "bind" => Opt::Bind { recursive: false },
        "rbind" => Opt::Bind { recursive: true },
        "private" => Opt::Propagation(F::MS_PRIVATE),
        "rprivate" => Opt::Propagation(F::MS_PRIVATE | F::MS_REC),
        "shared" => Opt::Propagation(F::MS_SHARED),
        "rshared" => Opt::Propagation(F::MS_SHARED | F::MS_REC),
        "slave" => Opt::Propagation(F::MS_SLAVE),
        "rslave" => Opt::Propagation(F::MS_SLAVE | F::MS_REC),
        "rro" => Opt::SetRecursive(libc::MOUNT_ATTR_RDONLY),
        "rrw" => Opt::ClearRecursive(libc::MOUNT_ATTR_RDONLY),
        "rnosuid" => Opt::SetRecursive(libc::MOUNT_ATTR_NOSUID),
        "rsuid" => Opt::ClearRecursive(libc::MOUNT_ATTR_NOSUID),
        "rnodev" => Opt::SetRecursive(libc::MOUNT_ATTR_NODEV),
        "rdev" => Opt::ClearRecursive(libc::MOUNT_ATTR_NODEV),
        "rnoexec" => Opt::SetRecursive(libc::MOUNT_ATTR_NOEXEC),
        "rexec" => Opt::ClearRecursive(libc::MOUNT_ATTR_NOEXEC),
        "rnosymfollow" => Opt::SetRecursive(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => Opt::ClearRecursive(libc::MOUNT_ATTR_NOSYMFOLLOW),
        "rnodiratime" => Opt::SetRecursive(libc::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => Opt::ClearRecursive(libc::MOUNT_ATTR_NODIRATIME),
        "rnoatime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_NOATIME),
        "rrelatime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_RELATIME),
        "rstrictatime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_STRICTATIME),
        // The negations name the mode they leave: access times on (`atime` gives the
        // kernel's default, relatime), not relatime (strict), not strict (relatime).
        "ratime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_RELATIME),
        "rnorelatime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => Opt::RecursiveAtime(libc::MOUNT_ATTR_RELATIME),
        "idmap" => Opt::Idmap(IdmapScope::Mount),
        "ridmap" => Opt::Idmap(IdmapScope::Recursive),
        "unbindable" => Opt::Propagation(F::MS_UNBINDABLE),
        "runbindable" => Opt::Propagation(F::MS_UNBINDABLE | F::MS_REC),
        _ => return None,
    };
    Some(o)
}

/// Parses a mount's option list. Never fails: an option that is not a flag is filesystem data,
/// and the filesystem is the one to reject it.
pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_ref();
        match classify(opt) {
            // A later option wins over an earlier opposite one (`ro,rw` is rw), as in mount(8).
            Some(Opt::Set(f)) => {
                out.set |= f;
                out.clear.remove(f);
            }
            Some(Opt::Clear(f)) => {
                out.clear |= f;
                out.set.remove(f);
            }
            Some(Opt::Propagation(f)) => out.propagation.push(f),
            Some(Opt::Bind { recursive }) => {
                out.is_bind = true;
                out.recursive |= recursive;
            }
            Some(Opt::SetRecursive(a)) => {
                out.attr_set |= a;
                out.attr_clear &= !a;
            }
            Some(Opt::ClearRecursive(a)) => {
                out.attr_clear |= a;
                out.attr_set &= !a;
            }
            // The kernel takes a mode only with the whole field in `attr_clr`
            // (mount_setattr(2)); the last mode given wins.
            Some(Opt::RecursiveAtime(mode)) => {
                out.attr_set = (out.attr_set & !libc::MOUNT_ATTR__ATIME) | mode;
                out.attr_clear |= libc::MOUNT_ATTR__ATIME;
            }
            Some(Opt::Idmap(scope)) => out.idmap = Some(scope),
            Some(Opt::Nothing) => {}
            None if opt.is_empty() => {}
            None => data.push(opt),
        }
    }
    if out.is_bind {
        out.set |= MsFlags::MS_BIND;
        if out.recursive {
            out.set |= MsFlags::MS_REC;
        }
    }
    out.data = data.join(",");
    out
}

/// Parses a single propagation word (`linux.rootfsPropagation`: `slave`, `rprivate`, …).
pub fn propagation(word: &str) -> Option<MsFlags> {
    match classify(word) {
        Some(Opt::Propagation(f)) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_attributes_and_idmap_are_not_data() {
        let o = parse(&["rbind", "rro", "rnosuid", "rrw", "ridmap", "mode=1"]);
        assert_eq!(o.attr_set, libc::MOUNT_ATTR_NOSUID);
        assert_eq!(o.attr_clear, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(o.idmap, Some(IdmapScope::Recursive));
        assert_eq!(o.data, "mode=1");
        assert_eq!(parse(&["rro"]).attr_set, libc::MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn recursive_access_time_modes_clear_the_whole_field() {
        let o = parse(&["rnoatime"]);
        assert_eq!(o.attr_set, libc::MOUNT_ATTR_NOATIME);
        assert_eq!(o.attr_clear, libc::MOUNT_ATTR__ATIME);
        // The last mode wins; the other recursive attributes stay.
        let o = parse(&["rro", "rnoatime", "rstrictatime", "rnodiratime"]);
        assert_eq!(
            o.attr_set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_STRICTATIME | libc::MOUNT_ATTR_NODIRATIME
        );
        assert_eq!(o.attr_clear, libc::MOUNT_ATTR__ATIME);
        let o = parse(&["rnoatime", "rrelatime"]);
        assert_eq!((o.attr_set, o.attr_clear), (0, libc::MOUNT_ATTR__ATIME));
        assert!(o.data.is_empty());
    }

    #[test]
    fn flags_and_data_are_split() {
        let o = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.set, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.is_bind);
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn overlay_options_are_all_data_in_order() {
        let o = parse(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]);
        assert_eq!(o.flags(), MsFlags::empty());
        assert_eq!(
            o.data(),
            Some("index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b")
        );
    }

    #[test]
    fn rbind_ro_is_a_recursive_bind_that_needs_a_readonly_remount() {
        let o = parse(&["rbind", "ro"]);
        assert!(o.is_bind && o.recursive);
        assert!(
            o.flags()
                .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY)
        );
        assert_eq!(o.remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(o.data(), None);
    }

    #[test]
    fn plain_bind_is_not_recursive() {
        let o = parse(&["bind"]);
        assert!(o.is_bind && !o.recursive);
        assert_eq!(o.flags(), MsFlags::MS_BIND);
    }

    #[test]
    fn clearing_options_turn_flags_off_and_the_last_word_wins() {
        let o = parse(&["ro", "rw", "nosuid", "suid", "exec"]);
        assert_eq!(o.flags(), MsFlags::empty());
        assert!(
            o.clear
                .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)
        );
        let o = parse(&["rw", "ro"]);
        assert_eq!(o.flags(), MsFlags::MS_RDONLY);
    }

    #[test]
    fn every_flag_word_maps_to_its_mount_flag() {
        let cases: &[(&str, MsFlags)] = &[
            ("ro", MsFlags::MS_RDONLY),
            ("nosuid", MsFlags::MS_NOSUID),
            ("nodev", MsFlags::MS_NODEV),
            ("noexec", MsFlags::MS_NOEXEC),
            ("sync", MsFlags::MS_SYNCHRONOUS),
            ("dirsync", MsFlags::MS_DIRSYNC),
            ("remount", MsFlags::MS_REMOUNT),
            ("mand", MsFlags::MS_MANDLOCK),
            ("noatime", MsFlags::MS_NOATIME),
            ("nodiratime", MsFlags::MS_NODIRATIME),
            ("relatime", MsFlags::MS_RELATIME),
            ("strictatime", MsFlags::MS_STRICTATIME),
            ("nosymfollow", MS_NOSYMFOLLOW),
            ("lazytime", MsFlags::MS_LAZYTIME),
            ("iversion", MsFlags::MS_I_VERSION),
            ("silent", MsFlags::MS_SILENT),
        ];
        for (word, flag) in cases {
            let o = parse(&[*word]);
            assert_eq!(o.set, *flag, "{word}");
            assert_eq!(o.flags(), *flag, "{word}");
            assert!(o.data.is_empty(), "{word} must not be data");
        }
        for word in [
            "rw",
            "suid",
            "dev",
            "exec",
            "async",
            "nomand",
            "atime",
            "diratime",
            "norelatime",
            "nolazytime",
            "noiversion",
            "loud",
            "symfollow",
        ] {
            let o = parse(&[word]);
            assert_eq!(o.set, MsFlags::empty(), "{word}");
            assert!(!o.clear.is_empty(), "{word} must clear a flag");
        }
    }

    #[test]
    fn propagation_words_keep_order_and_recursion() {
        let o = parse(&[
            "rbind",
            "rprivate",
            "slave",
            "runbindable",
            "shared",
            "rshared",
            "private",
            "rslave",
            "unbindable",
        ]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SLAVE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                MsFlags::MS_PRIVATE,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                MsFlags::MS_UNBINDABLE,
            ]
        );
        // Propagation is applied by its own mount(2) calls, never mixed into the mount flags.
        assert_eq!(o.flags(), MsFlags::MS_BIND | MsFlags::MS_REC);
    }

    #[test]
    fn rootfs_propagation_word_parses_alone() {
        assert_eq!(
            propagation("rslave"),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(propagation("private"), Some(MsFlags::MS_PRIVATE));
        assert_eq!(propagation("ro"), None);
        assert_eq!(propagation("bogus"), None);
    }

    #[test]
    fn defaults_and_empty_words_are_ignored() {
        let o = parse(&["defaults", "", "mode=1777"]);
        assert_eq!(o.flags(), MsFlags::empty());
        assert_eq!(o.data, "mode=1777");
    }
}
