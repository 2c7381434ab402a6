//! config.md: root, mounts, process, user, hostname, annotations, extensibility, valid values.

use std::fs;

use serde_json::json;

use crate::bundle::{Bundle, mount_options, mounts_at, status_field};

fn push_mount(b: &mut Bundle, mount: serde_json::Value) {
    b.spec["mounts"].as_array_mut().unwrap().push(mount);
}

/// config.md, Specification version: "`ociVersion` (string, REQUIRED) MUST be in SemVer
/// v2.0.0 format". Valid values: "Runtimes … MUST generate an error when invalid or
/// unsupported values are encountered." (checked: a version that is not SemVer)
#[test]
fn oci_version_that_is_not_semver_is_refused() {
    let mut b = Bundle::new("semver", "true");
    b.spec["ociVersion"] = "not-a-version".into();
    let stderr = b.create_fails();
    assert!(stderr.contains("ociVersion"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, Root: "`root` (object, OPTIONAL) … On all other platforms, this field is
/// REQUIRED." (Linux: a config without it is an invalid value, an error naming `root`)
#[test]
fn a_config_without_root_is_refused() {
    let mut b = Bundle::new("noroot-field", "true");
    b.spec.as_object_mut().unwrap().remove("root");
    let stderr = b.create_fails();
    assert!(stderr.contains("root"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, Root: "On POSIX platforms, `path` is either an absolute path or a relative
/// path to the bundle."
#[test]
fn root_path_may_be_relative_to_the_bundle_or_absolute() {
    let mut b = Bundle::new("rootpath", "cat /marker");
    fs::write(b.rootfs().join("marker"), "in-rootfs\n").unwrap();
    assert_eq!(b.spec["root"]["path"], "rootfs");
    assert_eq!(b.stdout(), "in-rootfs\n");
    b.spec["root"]["path"] = b.rootfs().to_str().unwrap().into();
    assert_eq!(b.stdout(), "in-rootfs\n");
}

/// config.md, Root: "A directory MUST exist at the path declared by the field."
#[test]
fn a_missing_root_directory_is_an_error() {
    let mut b = Bundle::new("noroot", "true");
    b.spec["root"]["path"] = "no-such-rootfs".into();
    let stderr = b.create_fails();
    assert!(stderr.contains("no-such-rootfs"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, Root: "`readonly` (bool, OPTIONAL) If true then the root filesystem MUST be
/// read-only inside the container, defaults to false."
#[test]
fn readonly_root_cannot_be_written_and_the_default_can() {
    let mut b = Bundle::new("rootro", "touch /x 2>&1; cat /proc/self/mountinfo");
    b.spec["root"]["readonly"] = true.into();
    let out = b.stdout();
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        mount_options(&out, "/").contains(&"ro".to_string()),
        "{out}"
    );
    b.spec["root"].as_object_mut().unwrap().remove("readonly");
    let out = b.stdout();
    assert!(!out.contains("Read-only"), "{out}");
    assert!(b.rootfs().join("x").exists());
}

/// config.md, Mounts: "The runtime MUST mount entries in the listed order."
#[test]
fn mounts_are_made_in_the_listed_order() {
    let mut b = Bundle::new(
        "order",
        "stat -c %a /m; cat /m/inner/f; grep ' /m' /proc/self/mountinfo",
    );
    push_mount(
        &mut b,
        json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]}),
    );
    let host = b.path().join("inner");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("f"), "inner\n").unwrap();
    // Needs /m's second tmpfs to be there already: made on it, under it.
    push_mount(
        &mut b,
        json!({"destination": "/m/inner", "type": "none", "source": host, "options": ["bind"]}),
    );
    let out = b.stdout();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("755"));
    assert_eq!(lines.next(), Some("inner"));
    assert_eq!(mounts_at(&out, "/m").len(), 2, "{out}");
}

/// config.md, Mounts, `source`: "Path values for bind mounts are either absolute or relative
/// to the bundle. A mount is a bind mount if it has either `bind` or `rbind` in the
/// options." POSIX-platform Mounts, `type`: "For bind mounts … the type is a dummy".
#[test]
fn bind_sources_are_relative_to_the_bundle() {
    let mut b = Bundle::new("relsrc", "cat /rel/f /abs/f");
    fs::create_dir(b.path().join("vol")).unwrap();
    fs::write(b.path().join("vol/f"), "from-bundle\n").unwrap();
    let abs = b.path().join("vol");
    push_mount(
        &mut b,
        json!({"destination": "/rel", "type": "none", "source": "vol", "options": ["bind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/abs", "source": abs, "options": ["rbind"]}),
    );
    assert_eq!(b.stdout(), "from-bundle\nfrom-bundle\n");
}

/// config.md, Linux mount options (MUST): `ro`, `rw`, `nosuid`/`suid`, `nodev`/`dev`,
/// `noexec`/`exec`, `noatime`, `nodiratime`/`diratime`, `relatime`/`norelatime`,
/// `strictatime`/`nostrictatime`, `atime`, `sync`/`async`, `dirsync`, `lazytime`/
/// `nolazytime`, `iversion`/`noiversion`, `silent`/`loud`, `defaults`; "Runtimes SHOULD treat
/// unknown options as filesystem-specific ones and pass those as a comma-separated string to
/// the fifth (`const void *data`) argument of mount(2)."
#[test]
fn the_must_mount_options_reach_the_kernel() {
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        // (options, per-mount flags present, superblock options present)
        (
            &["ro", "nosuid", "nodev", "noexec"],
            &["ro", "nosuid", "nodev", "noexec"],
            &[],
        ),
        (&["rw", "suid", "dev", "exec", "defaults"], &["rw"], &[]),
        (&["noatime", "nodiratime"], &["noatime", "nodiratime"], &[]),
        (&["strictatime", "diratime"], &[], &[]),
        (&["relatime"], &["relatime"], &[]),
        (&["sync", "dirsync"], &[], &["sync", "dirsync"]),
        (&["lazytime", "silent", "iversion"], &[], &["lazytime"]),
        (
            &["lazytime", "nolazytime", "loud", "noiversion", "async"],
            &[],
            &[],
        ),
        (&["norelatime", "nostrictatime", "atime"], &[], &[]),
        (&["size=1m", "mode=0711"], &[], &["size=1024k", "mode=711"]),
    ];
    let mut script = String::new();
    let mut b = Bundle::new("opts", "");
    for (i, (options, _, _)) in cases.iter().enumerate() {
        push_mount(
            &mut b,
            json!({"destination": format!("/o{i}"), "type": "tmpfs", "source": "tmpfs",
                   "options": options}),
        );
        script += &format!("grep ' /o{i} ' /proc/self/mountinfo; ");
    }
    b.spec["process"]["args"] = json!(["sh", "-c", script]);
    let out = b.stdout();
    for (i, (options, flags, super_options)) in cases.iter().enumerate() {
        let dir = format!("/o{i}");
        let line = mounts_at(&out, &dir)[0];
        let mine = mount_options(&out, &dir);
        let sb: Vec<&str> = line.rsplit(' ').next().unwrap().split(',').collect();
        for f in *flags {
            assert!(
                mine.iter().any(|m| m == f),
                "{options:?}: {f} not in {line}"
            );
        }
        for s in *super_options {
            assert!(sb.contains(s), "{options:?}: {s} not in {line}");
        }
        // What a flag's opposite must have taken away.
        let absent: &[&str] = match i {
            1 => &["ro", "nosuid", "nodev", "noexec"],
            3 => &["noatime", "relatime", "nodiratime"],
            7 => &["lazytime"],
            // The kernel's default is relatime unless strictatime or noatime is given.
            8 => &["noatime", "strictatime"],
            _ => &[],
        };
        for a in absent {
            assert!(
                !mine.iter().any(|m| m == a) && !sb.contains(a),
                "{options:?}: {a} in {line}"
            );
        }
    }
}

/// config.md, Linux mount options (MUST): `bind` (bind mount), `rbind` (recursive bind
/// mount), `remount`, and the propagation options `private`, `shared`, `slave`,
/// `unbindable`, `rprivate`, `rshared`, `rslave`, `runbindable`.
#[test]
fn bind_rbind_remount_and_propagation_options() {
    let mut b = Bundle::new("bind", "");
    // A host directory with a submount: `bind` leaves the submount out, `rbind` keeps it.
    let host = b.path().join("tree");
    fs::create_dir_all(host.join("sub")).unwrap();
    fs::write(host.join("top"), "top\n").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &host.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(host.join("sub"));
    fs::write(host.join("sub/inner"), "inner\n").unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/b", "type": "none", "source": host, "options": ["bind"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/r", "type": "none", "source": host, "options": ["rbind"]}),
    );
    // `remount` of an existing mount point changes its flags.
    push_mount(
        &mut b,
        json!({"destination": "/rm", "type": "tmpfs", "source": "tmpfs"}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/rm", "type": "tmpfs", "source": "tmpfs",
               "options": ["remount", "ro"]}),
    );
    let props = [
        "private",
        "shared",
        "slave",
        "unbindable",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
    ];
    for p in props {
        push_mount(
            &mut b,
            json!({"destination": format!("/p-{p}"), "type": "tmpfs", "source": "tmpfs",
                   "options": [p]}),
        );
    }
    b.spec["process"]["args"] = json!([
        "sh",
        "-c",
        "cat /b/top; cat /b/sub/inner 2>/dev/null || echo no-submount; cat /r/sub/inner; \
         touch /rm/x 2>&1; cat /proc/self/mountinfo"
    ]);
    let out = b.stdout();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("top"));
    assert_eq!(lines.next(), Some("no-submount"));
    assert_eq!(lines.next(), Some("inner"));
    assert!(lines.next().unwrap().contains("Read-only file system"));
    assert_eq!(
        mounts_at(&out, "/rm").len(),
        1,
        "remount made a second mount: {out}"
    );
    let propagation = |dir: &str| -> String {
        let line = *mounts_at(&out, dir).last().unwrap();
        line.split(" - ")
            .next()
            .unwrap()
            .split(' ')
            .skip(6)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for p in ["private", "rprivate"] {
        assert_eq!(propagation(&format!("/p-{p}")), "", "{p}");
    }
    for p in ["shared", "rshared"] {
        assert!(
            propagation(&format!("/p-{p}")).starts_with("shared:"),
            "{p}"
        );
    }
    for p in ["unbindable", "runbindable"] {
        assert_eq!(propagation(&format!("/p-{p}")), "unbindable", "{p}");
    }
    // A fresh tmpfs has no master: `slave` of a mount with no peers makes it private.
    for p in ["slave", "rslave"] {
        assert!(!propagation(&format!("/p-{p}")).contains("shared"), "{p}");
    }
}

/// config.md, Linux mount options (SHOULD): `nosymfollow` and its opposite `symfollow`.
#[test]
fn nosymfollow_and_symfollow() {
    let mut b = Bundle::new("symfollow", "cat /proc/self/mountinfo");
    push_mount(
        &mut b,
        json!({"destination": "/s", "type": "tmpfs", "source": "tmpfs", "options": ["nosymfollow"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/f", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosymfollow", "symfollow"]}),
    );
    let out = b.stdout();
    assert!(
        mount_options(&out, "/s").contains(&"nosymfollow".to_string()),
        "{out}"
    );
    assert!(
        !mount_options(&out, "/f").contains(&"nosymfollow".to_string()),
        "{out}"
    );
}

/// A host directory with a tmpfs mounted at `sub` with `flags`; unmounted on drop.
struct Volume(tempfile::TempDir);

impl Volume {
    fn new(flags: nix::mount::MsFlags) -> Volume {
        let dir = tempfile::Builder::new()
            .prefix("mini-conf-vol-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir.path().join("sub"),
            Some("tmpfs"),
            flags,
            Some("size=1m"),
        )
        .unwrap();
        Volume(dir)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.path().join("sub"), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// config.md, Linux mount options (SHOULD): the recursive `rro`, `rrw`, `rnosuid`, `rsuid`,
/// `rnodev`, `rdev`, `rnoexec`, `rexec`, `rnosymfollow`, `rsymfollow` ("Recursively" set or
/// clear the flag, through `mount_setattr(2)` with `AT_RECURSIVE`): they reach a submount of
/// an `rbind`, which the plain options do not.
#[test]
fn recursive_mount_options_reach_submounts() {
    use nix::mount::MsFlags as F;
    let set = ["rro", "rnosuid", "rnodev", "rnoexec", "rnosymfollow"];
    let flags = ["ro", "nosuid", "nodev", "noexec", "nosymfollow"];
    let vol = Volume::new(F::empty());
    let mut b = Bundle::new("rflags", "cat /proc/self/mountinfo");
    let mut options = vec!["rbind"];
    options.extend(set);
    push_mount(
        &mut b,
        json!({"destination": "/v", "type": "bind", "source": vol.0.path(), "options": options}),
    );
    let out = b.stdout();
    let sub = mount_options(&out, "/v/sub");
    for flag in flags {
        assert!(sub.contains(&flag.to_string()), "{flag}: {sub:?}");
    }

    let cleared = ["rrw", "rsuid", "rdev", "rexec", "rsymfollow"];
    let vol = Volume::new(
        F::MS_RDONLY
            | F::MS_NOSUID
            | F::MS_NODEV
            | F::MS_NOEXEC
            | F::from_bits_retain(libc::MS_NOSYMFOLLOW),
    );
    let mut b = Bundle::new("rflags-clear", "cat /proc/self/mountinfo");
    let mut options = vec!["rbind"];
    options.extend(cleared);
    push_mount(
        &mut b,
        json!({"destination": "/v", "type": "bind", "source": vol.0.path(), "options": options}),
    );
    let out = b.stdout();
    let sub = mount_options(&out, "/v/sub");
    assert!(sub.contains(&"rw".to_string()), "{sub:?}");
    for flag in flags {
        assert!(!sub.contains(&flag.to_string()), "{flag}: {sub:?}");
    }
}

/// config.md, Process, `consoleSize`: "Runtimes MUST ignore `consoleSize` if `terminal` is
/// `false` or unset." (its size with a terminal: `cli::console_size_is_the_ptys_window_size`)
#[test]
fn console_size_without_a_terminal_is_ignored() {
    let mut b = Bundle::new("winsize-noterm", "echo ran");
    for terminal in [json!(false), serde_json::Value::Null] {
        b.spec["process"]["terminal"] = terminal;
        b.spec["process"]["consoleSize"] = json!({"height": 37, "width": 111});
        assert_eq!(b.stdout(), "ran\n");
    }
}

/// config.md, Process, `cwd`: "the working directory that will be set for the executable.
/// This value MUST be an absolute path." (a relative one is refused)
#[test]
fn cwd_is_set_and_must_be_absolute() {
    let mut b = Bundle::new("cwd", "pwd");
    fs::create_dir_all(b.rootfs().join("work/dir")).unwrap();
    b.spec["process"]["cwd"] = "/work/dir".into();
    assert_eq!(b.stdout(), "/work/dir\n");
    b.spec["process"]["cwd"] = "work".into();
    let stderr = b.create_fails();
    assert!(stderr.contains("cwd"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, Process, `env`: "with the same semantics as IEEE Std 1003.1-2008's `environ`".
#[test]
fn env_is_the_processs_environment() {
    let mut b = Bundle::new("env", "env");
    b.spec["process"]["env"] = json!(["PATH=/bin", "A=1", "WITH_SPACE=a b", "EMPTY="]);
    let mut got: Vec<String> = b.stdout().lines().map(str::to_string).collect();
    got.retain(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL="));
    got.sort();
    assert_eq!(got, ["A=1", "EMPTY=", "PATH=/bin", "WITH_SPACE=a b"]);
}

/// config.md, Process, `args`: "This specification extends the IEEE standard in that at
/// least one entry is REQUIRED (non-Windows), and that entry is used with the same
/// semantics as `execvp`'s *file*." (a name without a slash is looked up in `PATH`)
#[test]
fn args_need_one_entry_which_is_found_through_path() {
    let mut b = Bundle::new("args", "");
    b.spec["process"]["args"] = json!(["echo", "looked", "up"]);
    b.spec["process"]["env"] = json!(["PATH=/nowhere:/bin"]);
    assert_eq!(b.stdout(), "looked up\n");
    b.spec["process"]["args"] = json!([]);
    let stderr = b.create_fails();
    assert!(stderr.contains("args"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, POSIX process, `rlimits`: "For each entry in `rlimits`, a getrlimit(3) on
/// `type` MUST succeed." "`rlim.rlim_cur` MUST match the configured value." "`rlim.rlim_max`
/// MUST match the configured value."
#[test]
fn rlimits_are_set_as_configured() {
    let mut b = Bundle::new("rlimits", "cat /proc/self/limits");
    b.spec["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_MSGQUEUE", "soft": 8192, "hard": 8192},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
    ]);
    let out = b.stdout();
    for (name, soft, hard) in [
        ("Max open files", "321", "654"),
        ("Max core file size", "0", "4096"),
        ("Max msgqueue size", "8192", "8192"),
        ("Max processes", "1000", "2000"),
    ] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(&fields[..2], &[soft, hard], "{line}");
    }
}

/// config.md, POSIX process, `rlimits`: "The runtime MUST generate an error for any values
/// which cannot be mapped to a relevant kernel interface." "If `rlimits` contains duplicated
/// entries with same `type`, the runtime MUST generate an error."
#[test]
fn unknown_and_duplicated_rlimits_are_errors() {
    let mut b = Bundle::new("badrlimit", "true");
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    let stderr = b.create_fails();
    assert!(stderr.contains("RLIMIT_BOGUS"), "{stderr}");
    b.spec["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
        {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20},
    ]);
    let stderr = b.create_fails();
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

fn cap_mask(names: &[u32]) -> String {
    format!("{:016x}", names.iter().fold(0u64, |m, c| m | 1 << c))
}

/// config.md, Linux process, `capabilities`: "`effective` … `bounding` … `inheritable` …
/// `permitted` … `ambient` … capabilities that are kept for the process." (As a non-root user
/// the kernel keeps the permitted and effective sets the ambient set gives across execve;
/// as root they become the bounding set.)
#[test]
fn capability_sets_are_kept_as_configured() {
    const CHOWN: u32 = 0;
    const KILL: u32 = 5;
    const NET_BIND_SERVICE: u32 = 10;
    let mut b = Bundle::new("caps", "grep ^Cap /proc/self/status");
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.spec["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    });
    let out = b.stdout();
    assert_eq!(
        status_field(&out, "CapBnd"),
        cap_mask(&[CHOWN, KILL, NET_BIND_SERVICE])
    );
    assert_eq!(
        status_field(&out, "CapInh"),
        cap_mask(&[KILL, NET_BIND_SERVICE])
    );
    assert_eq!(status_field(&out, "CapAmb"), cap_mask(&[NET_BIND_SERVICE]));
    assert_eq!(status_field(&out, "CapPrm"), cap_mask(&[NET_BIND_SERVICE]));
    assert_eq!(status_field(&out, "CapEff"), cap_mask(&[NET_BIND_SERVICE]));

    b.spec["process"]["user"] = json!({"uid": 0, "gid": 0});
    b.spec["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
    });
    let out = b.stdout();
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(status_field(&out, set), cap_mask(&[CHOWN, KILL]), "{set}");
    }
    assert_eq!(status_field(&out, "CapInh"), cap_mask(&[]));
}

/// config.md, Linux process, `capabilities`: "Any value which cannot be mapped to a
/// relevant kernel interface, or cannot be granted otherwise MUST be logged as a warning by
/// the runtime. Runtimes SHOULD NOT fail if the container configuration requests
/// capabilities that cannot be granted".
#[test]
fn capabilities_that_cannot_be_granted_are_a_warning() {
    let mut b = Bundle::new("capwarn", "grep ^CapAmb /proc/self/status");
    // The ambient capability is not inheritable: it cannot be granted.
    b.spec["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "effective": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    });
    let out = b.run();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CapAmb:\t0000000000000000\n"
    );
}

/// config.md, Linux process, `noNewPrivileges`: "setting `noNewPrivileges` to true prevents
/// the process from gaining additional privileges."
#[test]
fn no_new_privileges_sets_no_new_privs() {
    let mut b = Bundle::new("nnp", "grep ^NoNewPrivs /proc/self/status");
    b.spec["process"]["noNewPrivileges"] = true.into();
    assert_eq!(b.stdout(), "NoNewPrivs:\t1\n");
    b.spec["process"]["noNewPrivileges"] = false.into();
    assert_eq!(b.stdout(), "NoNewPrivs:\t0\n");
}

/// config.md, Linux process, `oomScoreAdj`: "If `oomScoreAdj` is set, the runtime MUST set
/// `oom_score_adj` to the given value. If `oomScoreAdj` is not set, the runtime MUST NOT
/// change the value of `oom_score_adj`."
#[test]
fn oom_score_adj_is_set_or_left_alone() {
    let mut b = Bundle::new("oom", "cat /proc/self/oom_score_adj");
    b.spec["process"]["oomScoreAdj"] = 123.into();
    assert_eq!(b.stdout(), "123\n");
    b.spec["process"]
        .as_object_mut()
        .unwrap()
        .remove("oomScoreAdj");
    let ours = fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    assert_eq!(b.stdout(), ours);
}

/// config.md, POSIX-platform User: "`uid` … specifies the user ID in the container
/// namespace." "`gid` … the group ID". "`additionalGids` … additional group IDs in the
/// container namespace to be added to the process." "`umask` … specifies the umask of the
/// user."
#[test]
fn user_ids_groups_and_umask() {
    let mut b = Bundle::new(
        "user",
        "grep -E '^(Uid|Gid|Groups|Umask)' /proc/self/status",
    );
    b.spec["process"]["user"] =
        json!({"uid": 1234, "gid": 2345, "additionalGids": [3, 4567], "umask": 63});
    let out = b.stdout();
    assert_eq!(status_field(&out, "Uid"), "1234\t1234\t1234\t1234");
    assert_eq!(status_field(&out, "Gid"), "2345\t2345\t2345\t2345");
    let mut groups: Vec<&str> = status_field(&out, "Groups").split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["3", "4567"]);
    assert_eq!(status_field(&out, "Umask"), "0077");
}

/// config.md, Hostname: "`hostname` … specifies the container's hostname as seen by
/// processes running inside the container. On Linux, for example, this will change the
/// hostname in the container UTS namespace." Domainname: the same for `domainname`.
#[test]
fn hostname_and_domainname_are_the_containers() {
    let mut b = Bundle::new("uts", "hostname; cat /proc/sys/kernel/domainname");
    b.spec["hostname"] = "conformance-host".into();
    b.spec["domainname"] = "conformance.test".into();
    assert_eq!(b.stdout(), "conformance-host\nconformance.test\n");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "conformance-host");
}

/// config.md, Annotations: "Implementations that are reading/processing this configuration
/// file MUST NOT generate an error if they encounter an unknown annotation key."
/// Extensibility: "Runtimes that are reading or processing this configuration file MUST NOT
/// generate an error if they encounter an unknown property. Instead they MUST ignore unknown
/// properties."
#[test]
fn unknown_annotations_and_properties_are_ignored() {
    let mut b = Bundle::new("unknown", "echo ran");
    b.spec["annotations"] = json!({"org.example.unknown": "x", "com.acme/thing": ""});
    b.spec["org.example.topLevel"] = json!({"nested": [1, 2]});
    b.spec["process"]["org.example.inProcess"] = true.into();
    b.spec["linux"]["org.example.inLinux"] = "x".into();
    b.spec["mounts"][0]["org.example.inMount"] = 1.into();
    assert_eq!(b.stdout(), "ran\n");
}

/// config.md, Valid values: "Runtimes that are reading or processing this configuration file
/// MUST generate an error when invalid or unsupported values are encountered." (invalid: an
/// unknown namespace type, a negative uid; unsupported by mini: `process.scheduler` and
/// `process.ioPriority`; each error names the field)
#[test]
fn invalid_or_unsupported_values_are_errors() {
    let cases = [
        ("/linux/namespaces/0/type", json!("bogus"), "namespaces"),
        ("/process/user/uid", json!(-1), "uid"),
        (
            "/process/scheduler",
            json!({"policy": "SCHED_BATCH", "nice": 40}),
            "process.scheduler.nice",
        ),
        (
            "/process/ioPriority",
            json!({"class": "IOPRIO_CLASS_IDLE", "priority": 8}),
            "process.ioPriority.priority",
        ),
        ("/mounts/0/options", json!("ro"), "mounts"),
    ];
    for (pointer, value, field) in cases {
        let mut b = Bundle::new("invalid", "true");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        b.spec.pointer_mut(parent).unwrap()[key] = value;
        let stderr = b.create_fails();
        assert!(stderr.contains(field), "{pointer}: {stderr}");
        assert_eq!(b.leftovers(), Vec::<String>::new(), "{pointer}");
    }
}

/// config.md, `scheduler`: "scheduler (object, OPTIONAL) is an object describing the
/// scheduler properties for the process" (`policy` REQUIRED, `nice`, `priority`, …): the
/// container's process runs with them (its child `cat` inherits them: fields 19, nice, and
/// 41, policy, of /proc/self/stat).
#[test]
fn the_scheduler_policy_and_nice_value_reach_the_process() {
    let mut b = Bundle::new("sched", "cat /proc/self/stat");
    b.spec["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    let stat = b.stdout();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command's name the fields are numbered from 3.
    assert_eq!((fields[19 - 3], fields[41 - 3]), ("5", "3"), "{stat}");
    // A bad value is named.
    let mut b = Bundle::new("sched-bad", "true");
    b.spec["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 0});
    let stderr = b.create_fails();
    assert!(stderr.contains("process.scheduler.priority"), "{stderr}");
}

/// config.md, `ioPriority`: "ioPriority (object, OPTIONAL) configures the I/O priority
/// settings for the container's processes" (`class`, `priority`): the init has it
/// (ioprio_get from the host) once created.
#[test]
fn the_io_priority_reaches_the_process() {
    let mut b = Bundle::new("ioprio", "true");
    b.spec["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 7});
    b.created();
    // SAFETY: ioprio_get takes integers only (IOPRIO_WHO_PROCESS, the pid).
    let value = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, b.pid()) };
    assert_eq!(value, (3 << 13) | 7);
    // An exec's own process object sets its own.
    let process = b.path().join("process.json");
    let json = json!({"args": ["sleep", "5"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                      "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 3}});
    fs::write(&process, json.to_string()).unwrap();
    let pid_file = b.path().join("exec.pid");
    assert!(b.detached(&[
        "exec",
        "--detach",
        "--process",
        process.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]));
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    // SAFETY: as above.
    let value = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid) };
    assert_eq!(value, (2 << 13) | 3);
}

/// config.md, `execCPUAffinity`: "`final` (string, OPTIONAL) is a list of CPUs a runtime
/// parent process to be run on after the transition to container's cgroup" (exec only):
/// the exec'd program runs on those CPUs; a malformed list is named.
#[test]
fn an_execs_final_cpu_affinity_is_its_own() {
    let b = Bundle::new("affinity", "sleep 30");
    b.created();
    b.ok(&["start", &b.id]);
    let process = b.path().join("process.json");
    let exec = |affinity: serde_json::Value| {
        let json = json!({"args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
                          "cwd": "/", "user": {"uid": 0, "gid": 0},
                          "execCPUAffinity": affinity});
        fs::write(&process, json.to_string()).unwrap();
        b.mini(&["exec", "--process", process.to_str().unwrap(), &b.id])
    };
    let out = exec(json!({"initial": "1", "final": "0"}));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Cpus_allowed_list:\t0\n"
    );
    let out = exec(json!({"final": "1-0"}));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("process.execCPUAffinity.final"),
        "{out:?}"
    );
}
