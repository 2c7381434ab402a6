//! What containerd learns about mini from `containerd-shim-mini-v2 -info` (the runtime-spec
//! features document containerd 2.x shows in `ctr plugins inspect-runtime`), and the runtime
//! options of `[…runtimes.mini.options]` (here through ctr's `--runtime-config-path`).

use std::fs;
use std::path::PathBuf;

use mini_e2e::{Containerd, MINI, Version};

mini_e2e::on_every_version!(the_shim_daemon_joins_the_shim_cgroup_of_its_runtime_options,);

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

fn the_shim_daemon_joins_the_shim_cgroup_of_its_runtime_options(version: Version) {
    let cgroup = format!("/mini-shim-test-{}-{}", version.tag(), std::process::id());
    // This host is hybrid (v1 controllers); the shim joins each hierarchy that has the cgroup.
    let dirs = CgroupDirs(
        ["pids", "memory"]
            .iter()
            .map(|h| PathBuf::from("/sys/fs/cgroup").join(h).join(&cgroup[1..]))
            .collect(),
    );
    for dir in &dirs.0 {
        fs::create_dir_all(dir).unwrap();
    }
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
    let own = fs::read_to_string(format!("/proc/{}/cgroup", shim_pid.trim())).unwrap();
    for controller in ["pids", "memory"] {
        let want = format!(":{controller}:{cgroup}");
        assert!(
            own.lines().any(|l| l.ends_with(&want)),
            "shim {} not in {controller} cgroup {cgroup}:\n{own}",
            shim_pid.trim()
        );
    }
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
