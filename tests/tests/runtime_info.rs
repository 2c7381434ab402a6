//! What containerd learns about mini from `containerd-shim-mini-v2 -info` (the runtime-spec
//! features document containerd 2.x shows in `ctr plugins inspect-runtime`), and the runtime
//! options of `[…runtimes.mini.options]` (here through ctr's `--runtime-config-path`).

use std::fs;
use std::path::PathBuf;

use mini_e2e::cri::Cri;
use mini_e2e::{Containerd, MINI, Version};

mini_e2e::on_every_version!(
    the_shim_daemon_joins_the_shim_cgroup_of_its_runtime_options,
    cri_passes_the_options_table_and_the_pods_shim_joins_its_shim_cgroup,
    cri_with_an_unknown_option_fails_the_pod_naming_the_key,
);

#[test]
fn inspect_runtime_shows_the_features_containerd_2() {
    let cd = Containerd::start(Version::V2);
    let ns = cd.namespace("rtinfo");
    let out = ns.ctr(&["plugins", "inspect-runtime", "--runtime", MINI]);
    out.expect_success();
    let text = out.stdout.clone();
    // containerd decoded the document (it shows it as JSON, not as bytes of an unknown Any).
    assert!(
        text.contains("\"ociVersionMax\""),
        "no features document:\n{text}"
    );
    for want in [
        "CAP_SYS_ADMIN",
        "SCMP_ACT_ERRNO",
        "\"cgroup\"",
        "SCMP_ARCH_X86_64",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from inspect-runtime:\n{text}"
        );
    }
}

/// Cgroup directories the test made; removed (after the daemon and its shims) on drop.
struct CgroupDirs(Vec<PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A cgroup `/mini-shim-test-<tag>-<what>-<pid>` in the pids and memory hierarchies (this
/// host is hybrid: the shim joins each hierarchy that has the cgroup).
fn shim_cgroup(version: Version, what: &str) -> (String, CgroupDirs) {
    let cgroup = format!(
        "/mini-shim-test-{}-{what}-{}",
        version.tag(),
        std::process::id()
    );
    let dirs = CgroupDirs(
        ["pids", "memory"]
            .iter()
            .map(|h| PathBuf::from("/sys/fs/cgroup").join(h).join(&cgroup[1..]))
            .collect(),
    );
    for dir in &dirs.0 {
        fs::create_dir_all(dir).unwrap();
    }
    (cgroup, dirs)
}

#[track_caller]
fn assert_in_cgroup(pid: i32, cgroup: &str) {
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for controller in ["pids", "memory"] {
        let want = format!(":{controller}:{cgroup}");
        assert!(
            own.lines().any(|l| l.ends_with(&want)),
            "shim {pid} not in {controller} cgroup {cgroup}:\n{own}"
        );
    }
}

/// A CRI daemon whose `mini` runtime has the options `keys` (TOML lines): in the table for
/// 1.7 and 2.x (sent as config_body), in a file named by `ConfigPath` for 1.6.
fn cri_with_options(version: Version, keys: &str) -> Containerd {
    let cd = Containerd::start_cri(version);
    let table = match version {
        Version::V2 => "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.mini.options",
        _ => "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.mini.options",
    };
    let keys = if version == Version::V1_6 {
        let file = cd.dir().join("mini-options.toml");
        fs::write(&file, keys).unwrap();
        format!("ConfigPath = {:?}\n", file.display().to_string())
    } else {
        keys.to_string()
    };
    let config = cd.dir().join("config.toml");
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[{table}]\n{keys}"));
    fs::write(&config, text).unwrap();
    cd.restart();
    cd
}

fn cri_with_an_unknown_option_fails_the_pod_naming_the_key(version: Version) {
    let cd = cri_with_options(version, "ShimCgroup = \"/\"\nBinaryName = \"crun\"\n");
    let cri = Cri::connect(&cd);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cri.run_pod("badopt", "mini");
    }))
    .expect_err("a pod ran with an unknown runtime option");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("BinaryName"), "{msg}");
    assert!(cri.shims("containerd-shim-mini-v2").is_empty());
}

fn cri_passes_the_options_table_and_the_pods_shim_joins_its_shim_cgroup(version: Version) {
    let (cgroup, _dirs) = shim_cgroup(version, "cri");
    let cd = cri_with_options(
        version,
        &format!("ShimCgroup = {cgroup:?}\nNoNewKeyring = false\n"),
    );
    let cri = Cri::connect(&cd);
    let pod = cri.run_pod("shimcg", "mini");
    let shims = cri.shims("containerd-shim-mini-v2");
    assert_eq!(shims.len(), 1, "{shims:?}");
    assert_in_cgroup(shims[0].pid, &cgroup);
    cri.stop_pod(&pod).unwrap();
    cri.remove_pod(&pod).unwrap();
}

fn the_shim_daemon_joins_the_shim_cgroup_of_its_runtime_options(version: Version) {
    let (cgroup, _dirs) = shim_cgroup(version, "ctr");
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("shimcg");
    let options = cd.dir().join("mini-options.toml");
    fs::write(&options, format!("ShimCgroup = {cgroup:?}\n")).unwrap();
    let options = options.to_str().unwrap().to_string();

    let id = ns.new_id("shimcg");
    ns.run_detached(
        MINI,
        &["--runtime-config-path", &options],
        &id,
        &["sleep", "300"],
    );
    let shim_pid = fs::read_to_string(
        cd.dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(ns.name())
            .join(&id)
            .join("shim.pid"),
    )
    .unwrap();
    assert_in_cgroup(shim_pid.trim().parse().unwrap(), &cgroup);
    ns.kill_and_delete(&id);

    // An unknown option is refused, naming it; nothing runs.
    fs::write(&options, "SystemdCgroup = true\n").unwrap();
    let bad = ns.new_id("shimcg-bad");
    let out = ns.run(
        MINI,
        &["-d", "--runtime-config-path", &options],
        &bad,
        &["sleep", "300"],
    );
    assert!(!out.success(), "unknown option accepted: {out}");
    assert!(out.stderr.contains("SystemdCgroup"), "{out}");
}
