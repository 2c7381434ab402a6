//! The malformed `config.json` cases and the valid variations of `runc spec`'s config that
//! the tests run both through containerd and the shim (`bad_config.rs`) and through the
//! `mini` command (`bad_config_cli.rs`): one table, two front ends.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

/// A busybox root filesystem in a temporary directory under /tmp.
pub struct Rootfs(tempfile::TempDir);

impl Rootfs {
    pub fn new() -> Rootfs {
        let dir = mini_e2e::tmp_dir("mini-badcfg-");
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "cat", "grep", "echo", "uname", "touch"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        Rootfs(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// `runc spec`'s config.json (runc 1.1.5 here) with what `ctr run --config` needs changed and
/// nothing else: an absolute `root.path` (ctr mounts no rootfs into the bundle with
/// `--config`), the command, and `process.terminal` false (`ctr run` without `-t` asks the
/// runtime for no terminal, as `runc run` from a script must).
pub fn runc_spec(rootfs: &Rootfs, script: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(dir.path())
        .output()
        .expect("runc spec");
    assert!(out.status.success(), "runc spec: {out:?}");
    let text = fs::read_to_string(dir.path().join("config.json")).unwrap();
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    spec["root"]["path"] = json!(rootfs.path());
    spec["process"]["args"] = json!(["sh", "-c", script]);
    spec["process"]["terminal"] = json!(false);
    spec
}

/// One malformed config: a name, what the error must contain, and the edit that breaks it.
pub struct Case {
    pub name: &'static str,
    pub names: &'static [&'static str],
    pub edit: fn(&mut Value),
}

const fn case(name: &'static str, names: &'static [&'static str], edit: fn(&mut Value)) -> Case {
    Case { name, names, edit }
}

/// A user namespace with one valid mapping each, for the mapping cases to break.
fn with_user_ns(s: &mut Value) {
    push_ns(s, json!({"type": "user"}));
    s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

pub fn push_ns(s: &mut Value, ns: Value) {
    s["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
}

fn without_ns(s: &mut Value, typ: &str) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

/// A seccomp profile allowing everything, plus `rules`.
fn seccomp(s: &mut Value, rules: Value) {
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    });
}

pub const CASES: &[Case] = &[
    // Values of the spec's enumerations: mini's parser names the JSON path and the value.
    case(
        "cap-bounding",
        &["process.capabilities.bounding[", "CAP_FOO"],
        |s| s["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_FOO"]),
    ),
    case(
        "cap-effective",
        &["process.capabilities.effective[", "CAP_NOPE"],
        |s| s["process"]["capabilities"]["effective"] = json!(["CAP_NOPE"]),
    ),
    case(
        "cap-ambient",
        &["process.capabilities.ambient[", "CAP_BOGUS"],
        |s| s["process"]["capabilities"]["ambient"] = json!(["CAP_BOGUS"]),
    ),
    case(
        "rlimit-type",
        &["process.rlimits[0].type", "RLIMIT_BOGUS"],
        |s| s["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
    ),
    case(
        "seccomp-default",
        &["linux.seccomp.defaultAction", "SCMP_ACT_MAYBE"],
        |s| {
            seccomp(s, json!([]));
            s["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_MAYBE");
        },
    ),
    case(
        "seccomp-arch",
        &["linux.seccomp.architectures[1]", "SCMP_ARCH_Z80"],
        |s| {
            seccomp(s, json!([]));
            s["linux"]["seccomp"]["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]);
        },
    ),
    case(
        "seccomp-action",
        &["linux.seccomp.syscalls[0].action", "SCMP_ACT_NOPE"],
        |s| seccomp(s, json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}])),
    ),
    case(
        "seccomp-op",
        &["linux.seccomp.syscalls[0].args[0].op", "SCMP_CMP_SOMETIMES"],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]),
            )
        },
    ),
    case(
        "seccomp-flag",
        &["linux.seccomp.flags[0]", "SECCOMP_FILTER_FLAG_BOGUS"],
        |s| {
            seccomp(s, json!([]));
            s["linux"]["seccomp"]["flags"] = json!(["SECCOMP_FILTER_FLAG_BOGUS"]);
        },
    ),
    case(
        "personality",
        &["linux.personality.domain", "LINUX64"],
        |s| s["linux"]["personality"] = json!({"domain": "LINUX64"}),
    ),
    case("ns-type", &["linux.namespaces[5].type", "bogus"], |s| {
        push_ns(s, json!({"type": "bogus"}))
    }),
    case("device-type", &["linux.devices[0].type", "z"], |s| {
        s["linux"]["devices"] = json!([{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}])
    }),
    case(
        "device-rule-type",
        &["linux.resources.devices[1].type", "q"],
        |s| {
            s["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(json!({"allow": true, "type": "q", "access": "r"}))
        },
    ),
    // Values of the right type that the spec or the kernel does not allow.
    case("oci-version-empty", &["ociVersion"], |s| {
        s.as_object_mut().unwrap().remove("ociVersion");
    }),
    case("oci-version-not-semver", &["ociVersion", "one"], |s| {
        s["ociVersion"] = json!("one")
    }),
    case("root-path-empty", &["root.path"], |s| {
        s["root"]["path"] = json!("")
    }),
    case("args-empty", &["process.args"], |s| {
        s["process"]["args"] = json!([])
    }),
    case("cwd-relative", &["process.cwd", "tmp"], |s| {
        s["process"]["cwd"] = json!("tmp")
    }),
    case("env-no-equals", &["process.env[2]", "NOEQUALS"], |s| {
        s["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("NOEQUALS"))
    }),
    case("env-empty-name", &["process.env[2]"], |s| {
        s["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("=x"))
    }),
    case("uid-range", &["process.user.uid", "4294967295"], |s| {
        s["process"]["user"]["uid"] = json!(4294967295u32)
    }),
    case("gids-range", &["process.user.additionalGids[1]"], |s| {
        s["process"]["user"]["additionalGids"] = json!([1, 2147483648u32])
    }),
    case(
        "rlimit-twice",
        &["process.rlimits[1].type", "RLIMIT_NOFILE"],
        |s| {
            s["process"]["rlimits"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}))
        },
    ),
    case(
        "rlimit-inverted",
        &["process.rlimits[0].soft", "RLIMIT_CORE"],
        |s| s["process"]["rlimits"] = json!([{"type": "RLIMIT_CORE", "soft": 2, "hard": 1}]),
    ),
    case("oom-score-adj", &["process.oomScoreAdj", "1001"], |s| {
        s["process"]["oomScoreAdj"] = json!(1001)
    }),
    case("mount-relative", &["mounts[7].destination", "data"], |s| {
        s["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}))
    }),
    case(
        "masked-relative",
        &["linux.maskedPaths[", "proc/keys"],
        |s| {
            s["linux"]["maskedPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("proc/keys"))
        },
    ),
    case(
        "readonly-relative",
        &["linux.readonlyPaths[", "proc/sys"],
        |s| {
            s["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("proc/sys"))
        },
    ),
    case("ns-twice", &["linux.namespaces[5].type", "pid"], |s| {
        push_ns(s, json!({"type": "pid"}))
    }),
    case(
        "ns-path-relative",
        &["linux.namespaces[4].path", "run/netns/x"],
        |s| {
            without_ns(s, "network");
            push_ns(s, json!({"type": "network", "path": "run/netns/x"}));
        },
    ),
    case("ns-path-missing", &["/run/mini-no-such-netns"], |s| {
        without_ns(s, "network");
        push_ns(
            s,
            json!({"type": "network", "path": "/run/mini-no-such-netns"}),
        );
    }),
    case("time-offsets", &["linux.timeOffsets"], |s| {
        s["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 100, "nanosecs": 0}})
    }),
    case(
        "time-offsets-clock",
        &["linux.timeOffsets[", "realtime"],
        |s| {
            push_ns(s, json!({"type": "time"}));
            s["linux"]["timeOffsets"] = json!({"realtime": {"secs": 100}});
        },
    ),
    case(
        "personality-flag",
        &["linux.personality.flags[0]", "FLY"],
        |s| s["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["FLY"]}),
    ),
    case("uid-overlap", &["linux.uidMappings[1].containerID"], |s| {
        with_user_ns(s);
        s["linux"]["uidMappings"]
            .as_array_mut()
            .unwrap()
            .push(json!({"containerID": 100, "hostID": 300000, "size": 10}));
    }),
    case("gid-overlap", &["linux.gidMappings[1].hostID"], |s| {
        with_user_ns(s);
        s["linux"]["gidMappings"]
            .as_array_mut()
            .unwrap()
            .push(json!({"containerID": 70000, "hostID": 100010, "size": 10}));
    }),
    case("mapping-size-0", &["linux.uidMappings[0].size"], |s| {
        with_user_ns(s);
        s["linux"]["uidMappings"][0]["size"] = json!(0);
    }),
    case(
        "mapping-host-range",
        &["linux.gidMappings[0].hostID", "4294967295"],
        |s| {
            with_user_ns(s);
            s["linux"]["gidMappings"][0]["hostID"] = json!(4294967295u32);
        },
    ),
    case("device-type-a", &["linux.devices[0].type"], |s| {
        s["linux"]["devices"] = json!([{"path": "/dev/x", "type": "a", "major": 1, "minor": 3}])
    }),
    case(
        "device-relative",
        &["linux.devices[0].path", "dev/x"],
        |s| s["linux"]["devices"] = json!([{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]),
    ),
    case("cgroup-escape", &["linux.cgroupsPath", ".."], |s| {
        s["linux"]["cgroupsPath"] = json!("/../../mini-escaped")
    }),
    case(
        "seccomp-no-names",
        &["linux.seccomp.syscalls[0].names"],
        |s| seccomp(s, json!([{"names": [], "action": "SCMP_ACT_ERRNO"}])),
    ),
    case(
        "seccomp-empty-name",
        &["linux.seccomp.syscalls[0].names[1]"],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir", ""], "action": "SCMP_ACT_ERRNO"}]),
            )
        },
    ),
    case(
        "seccomp-arg-index",
        &["linux.seccomp.syscalls[0].args[0].index", "6"],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
            )
        },
    ),
    case(
        "seccomp-errno-range",
        &["linux.seccomp.syscalls[0].action", "70000"],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]),
            )
        },
    ),
    case(
        "seccomp-notify-no-listener",
        &[
            "linux.seccomp.syscalls[0].action",
            "SCMP_ACT_NOTIFY",
            "listenerPath",
        ],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]),
            )
        },
    ),
    // The agent's socket is not there: create fails when it hands the listener over.
    case(
        "seccomp-notify-no-agent",
        &[
            "linux.seccomp.listenerPath",
            "mini-no-agent.sock",
            "connect",
        ],
        |s| {
            seccomp(
                s,
                json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]),
            );
            s["linux"]["seccomp"]["listenerPath"] = json!("/nonexistent/mini-no-agent.sock");
        },
    ),
    case(
        "sysctl-host",
        &["linux.sysctl", "kernel.core_pattern"],
        |s| s["linux"]["sysctl"] = json!({"kernel.core_pattern": "core.mini-bad-config"}),
    ),
    case(
        "sysctl-no-netns",
        &["linux.sysctl", "net.ipv4.ip_forward"],
        |s| {
            without_ns(s, "network");
            s["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        },
    ),
    case("hostname-no-uts", &["hostname"], |s| without_ns(s, "uts")),
    // A hook's path must be absolute (config.md).
    case(
        "hook-relative-path",
        &["hooks.createRuntime[0].path"],
        |s| s["hooks"] = json!({"createRuntime": [{"path": "bin/true"}]}),
    ),
    // Fields mini does not apply: refused by name rather than ignored.
    case("intel-rdt", &["linux.intelRdt"], |s| {
        s["linux"]["intelRdt"] = json!({"closID": "x"})
    }),
    case("apparmor", &["process.apparmorProfile"], |s| {
        s["process"]["apparmorProfile"] = json!("mini-bad-config")
    }),
    // SELinux is compiled into this host's kernel but not enabled.
    case("selinux-label", &["process.selinuxLabel"], |s| {
        s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0")
    }),
    case("mount-label", &["linux.mountLabel"], |s| {
        s["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0")
    }),
    case(
        "cpu-burst-over-quota",
        &["linux.resources.cpu.burst"],
        |s| {
            s["linux"]["resources"]["cpu"] =
                json!({"quota": 10000, "period": 100000, "burst": 20000})
        },
    ),
    case(
        "weight-device-without-weight",
        &["linux.resources.blockIO.weightDevice[0]"],
        |s| {
            s["linux"]["resources"]["blockIO"] = json!({"weightDevice": [{"major": 8, "minor": 0}]})
        },
    ),
];

/// A valid variation of `runc spec`'s config: its name, the script the container runs
/// (it prints `ok`, or `umask=0027` for `umask`), and the edit.
pub type Variant = (&'static str, &'static str, fn(&mut Value));

/// Valid variations runc 1.1.5 runs: optional fields left out or empty, a umask, an rlimit
/// at its current value, empty capability sets, id mappings without a user namespace
/// (ignored), an ambient capability alone (skipped).
pub const RUNC_SPEC_VARIANTS: &[Variant] = &[
    ("no-optional", "echo ok", |s| {
        let process = s["process"].as_object_mut().unwrap();
        for key in ["capabilities", "rlimits", "noNewPrivileges"] {
            process.remove(key);
        }
        let linux = s["linux"].as_object_mut().unwrap();
        for key in ["resources", "maskedPaths", "readonlyPaths"] {
            linux.remove(key);
        }
        s.as_object_mut().unwrap().remove("hostname");
    }),
    ("empty-resources", "echo ok", |s| {
        s["linux"]["resources"] = json!({
            "devices": [], "memory": {}, "cpu": {}, "pids": {"limit": 0},
            "blockIO": {}, "hugepageLimits": [], "network": {}
        })
    }),
    ("umask", "echo umask=$(umask)", |s| {
        s["process"]["user"]["umask"] = json!(0o027)
    }),
    ("empty-sets", "echo ok", |s| {
        s["process"]["capabilities"] = json!({"bounding": [], "ambient": []})
    }),
    ("rlimit-current", "echo ok", |s| {
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])
    }),
    ("mappings-without-userns", "echo ok", |s| {
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}])
    }),
    ("ambient-only", "echo ok", |s| {
        s["process"]["capabilities"] = json!({"ambient": ["CAP_KILL"]})
    }),
];
