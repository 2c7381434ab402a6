//! The spec's OCI hooks through containerd and the shim (`ctr run --config`), on containerd
//! 1.6, 1.7 and 2.x: NRI plugins and CDI add hooks to specs through containerd, so the shim
//! runs them as the `mini` command does (runtime-core/tests/hooks.rs checks each kind's
//! namespaces and failures in detail).

use std::fs;
use std::path::Path;

use mini_e2e::{Namespace, Version};
use serde_json::{Value, json};

mini_e2e::on_every_version!(
    hooks_run_at_their_points_through_the_shim,
    a_failing_create_runtime_hook_fails_the_run_naming_it_and_leaves_nothing,
    poststop_runs_once_when_the_shim_was_killed,
);

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A busybox rootfs with an `/out` mount point, and the host directory bound there; both
/// under /tmp, removed on drop.
struct Dirs {
    rootfs: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let rootfs = mini_e2e::tmp_dir("mini-hooks-");
        let bin = rootfs.path().join("bin");
        for d in ["bin", "proc", "dev", "sys", "tmp", "out"] {
            fs::create_dir_all(rootfs.path().join(d)).unwrap();
        }
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "cat", "echo", "readlink", "test", "sleep"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        fs::write(rootfs.path().join("in-the-container"), "").unwrap();
        Dirs {
            rootfs,
            out: mini_e2e::tmp_dir("mini-hook-out-"),
        }
    }

    fn log(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.out.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }
}

/// ctr's default spec running `sh -c script` on the rootfs, with `/out` bound.
fn spec(ns: &Namespace<'_>, dirs: &Dirs, script: &str) -> Value {
    let out = ns.ctr(&["oci", "spec"]);
    out.expect_success();
    let mut spec: Value = serde_json::from_str(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = json!({"path": dirs.rootfs.path(), "readonly": false});
    spec["process"]["args"] = json!(["sh", "-c", script]);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["process"]["terminal"] = json!(false);
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/out", "type": "bind",
        "source": dirs.out.path(), "options": ["rbind", "rw"]
    }));
    spec
}

/// A hook of `kind` that saves its stdin to `<out>/<kind>.json` and appends its kind, its
/// mount namespace and whether it sees the container's files to `<out>/log` (at `/out` for
/// `startContainer`, which runs in the container).
fn recording_hook(dirs: &Dirs, kind: &str) -> Value {
    let out = if kind == "startContainer" {
        Path::new("/out")
    } else {
        dirs.out.path()
    };
    let script = format!(
        "cat > {o}/{kind}.json; \
         if test -e /in-the-container; then view=container; else view=host; fi; \
         echo {kind} $(readlink /proc/self/ns/mnt) $view >> {o}/log",
        o = out.display()
    );
    json!([{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 20}])
}

fn run(ns: &Namespace<'_>, spec: &Value, id: &str) -> mini_e2e::CtrOutput {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, spec.to_string()).unwrap();
    ns.run_config(&path, id)
}

fn hooks_run_at_their_points_through_the_shim(version: Version) {
    let cd = mini_e2e::Containerd::start(version);
    let ns = cd.namespace(&format!("hooks-{}", version.tag()));
    let dirs = Dirs::new();
    // The user's process records itself between the hooks of create and those after it.
    let mut spec = spec(
        &ns,
        &dirs,
        "echo process $(readlink /proc/self/ns/mnt) container >> /out/log",
    );
    for kind in KINDS {
        spec["hooks"][kind] = recording_hook(&dirs, kind);
    }
    spec["annotations"] = json!({"org.example.hooks": "yes"});
    let id = ns.new_id("hooks");
    run(&ns, &spec, &id).expect_success();
    // `ctr run --rm` returns once the task is deleted: poststop ran before Delete answered.
    let log = dirs.log();
    let kinds: Vec<&str> = log.iter().map(|l| l[0].as_str()).collect();
    let host_mnt = fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_str().unwrap();
    let (before, after) = kinds.split_at(kinds.len().min(4));
    assert_eq!(before, &KINDS[..4], "{log:?}");
    // The user's process and poststart race (poststart follows its start); poststop is last.
    let mut rest: Vec<&str> = after.to_vec();
    rest.sort_unstable();
    assert_eq!(rest, ["poststart", "poststop", "process"], "{log:?}");
    assert_eq!(after.last(), Some(&"poststop"), "{log:?}");

    let container_mnt = &log.iter().find(|l| l[0] == "process").unwrap()[1];
    assert_ne!(container_mnt, host_mnt);
    for line in &log {
        let want = match line[0].as_str() {
            "createContainer" => (container_mnt.as_str(), "host"),
            "startContainer" | "process" => (container_mnt.as_str(), "container"),
            _ => (host_mnt, "host"),
        };
        assert_eq!((line[1].as_str(), line[2].as_str()), want, "{}", line[0]);
    }
    // containerd also runs the shim's `delete` after the shim went: poststop ran already.
    ns.assert_nothing_left(&id);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let poststops = dirs.log().iter().filter(|l| l[0] == "poststop").count();
    assert_eq!(poststops, 1, "{:?}", dirs.log());
    for kind in KINDS {
        let text = fs::read(dirs.out.path().join(format!("{kind}.json"))).unwrap();
        let state: Value = serde_json::from_slice(&text)
            .unwrap_or_else(|e| panic!("{kind}'s stdin is not a state document: {e}"));
        assert_eq!(state["id"], id.as_str(), "{kind}");
        assert_eq!(state["annotations"]["org.example.hooks"], "yes", "{kind}");
        let status = match kind {
            "startContainer" => "created",
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "creating",
        };
        assert_eq!(state["status"], status, "{kind}");
        if kind != "poststop" {
            assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{kind}: {state}");
        }
    }
    ns.assert_nothing_left(&id);
}

fn a_failing_create_runtime_hook_fails_the_run_naming_it_and_leaves_nothing(version: Version) {
    let cd = mini_e2e::Containerd::start(version);
    let ns = cd.namespace(&format!("hookfail-{}", version.tag()));
    let dirs = Dirs::new();
    let mut spec = spec(&ns, &dirs, "echo RAN");
    spec["hooks"]["createRuntime"] = json!([{
        "path": "/bin/sh",
        "args": ["sh", "-c", "echo no network for you >&2; exit 7"]
    }]);
    // The lifecycle goes on at the container's destruction, then poststop (runtime.md).
    spec["hooks"]["poststop"] = recording_hook(&dirs, "poststop");
    let id = ns.new_id("hookfail");
    let out = run(&ns, &spec, &id);
    assert!(!out.success() && !out.stdout.contains("RAN"), "{out}");
    for name in [
        "hooks.createRuntime[0]",
        "exit status 7",
        "no network for you",
    ] {
        assert!(
            out.stderr.contains(name),
            "the error does not name {name}: {out}"
        );
    }
    let kinds: Vec<String> = dirs.log().into_iter().map(|l| l[0].clone()).collect();
    assert_eq!(kinds, ["poststop"]);
    ns.assert_nothing_left(&id);
    let _ = ns.ctr(&["container", "delete", &id]);
}

/// A shim killed while its container runs: containerd runs the shim's `delete`, which ends
/// the container and then runs its poststop hooks (as `runc delete` does for the stock
/// shim), once, with the stopped state.
fn poststop_runs_once_when_the_shim_was_killed(version: Version) {
    let cd = mini_e2e::Containerd::start(version);
    let ns = cd.namespace(&format!("hookkill-{}", version.tag()));
    let dirs = Dirs::new();
    let mut spec = spec(&ns, &dirs, "sleep 300");
    spec["hooks"]["poststop"] = recording_hook(&dirs, "poststop");
    let id = ns.new_id("hookkill");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::write(&path, spec.to_string()).unwrap();
    ns.run_config_detached(&path, &id);
    let shim: i32 = fs::read_to_string(ns.bundle_dir(&id).join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .unwrap();
    assert!(dirs.log().is_empty(), "{:?}", dirs.log());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        mini_e2e::wait_until(std::time::Duration::from_secs(20), || !dirs
            .log()
            .is_empty()),
        "no poststop hook ran after the shim was killed"
    );
    let text = fs::read(dirs.out.path().join("poststop.json")).unwrap();
    let state: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "stopped");
    let _ = ns.ctr(&["task", "delete", "-f", &id]);
    let _ = ns.ctr(&["container", "delete", &id]);
    ns.assert_nothing_left(&id);
    let kinds: Vec<String> = dirs.log().into_iter().map(|l| l[0].clone()).collect();
    assert_eq!(kinds, ["poststop"]);
}
