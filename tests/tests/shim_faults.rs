//! Faults in the middle of a Create: the client gone (ctr SIGKILLed, or a direct ttrpc
//! client that drops its connection) and containerd SIGKILLed and restarted. The Create is held in the middle by freezing the container's
//! cgroup before it exists (the setup processes freeze as they join it); it is thawed once
//! the fault happened. Afterwards no process, mount, cgroup, socket or bundle of the
//! container may remain, and its shim must have exited (the frozen cgroup, the test's, is
//! left emptied: the test removes it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::api::CreateTaskRequest;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::types::mount::Mount;
use mini_e2e::grpc::mini_container;
use mini_e2e::{Background, Containerd, Namespace, Version, leftovers, wait_until};

mini_e2e::on_every_version!(
    client_killed_mid_create_leaves_nothing_and_the_shim_exits,
    containerd_killed_mid_create_leaves_nothing_and_the_shim_exits,
    ttrpc_connection_dropped_mid_create_leaves_nothing_and_the_shim_exits,
    ttrpc_connection_dropped_mid_failing_create_leaves_nothing_and_the_shim_exits,
);

/// The container's freezer cgroup, made and frozen before the container exists; thawed
/// on drop (the daemon's drop removes the namespace's cgroups). The runtime did not make it,
/// so it leaves it (emptied): [`FrozenCgroup::remove`] does.
struct FrozenCgroup {
    dir: PathBuf,
    state: PathBuf,
    frozen: &'static str,
    thawed: &'static str,
}

impl FrozenCgroup {
    fn new(ns: &str, id: &str) -> FrozenCgroup {
        let v1 = Path::new("/sys/fs/cgroup/freezer");
        let (dir, file, frozen, thawed) = if v1.is_dir() {
            (v1.join(ns).join(id), "freezer.state", "FROZEN", "THAWED")
        } else {
            let root = Path::new("/sys/fs/cgroup");
            (root.join(ns).join(id), "cgroup.freeze", "1", "0")
        };
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let state = dir.join(file);
        fs::write(&state, frozen).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
        FrozenCgroup {
            dir,
            state,
            frozen,
            thawed,
        }
    }

    fn thaw(&self) {
        let _ = fs::write(&self.state, self.thawed);
    }

    /// Thaws and removes the cgroup, which must hold nothing of the container by now (no
    /// process, no sub-cgroup: `rmdir` would fail).
    #[track_caller]
    fn remove(&self) {
        self.thaw();
        let mut last = None;
        let removed = wait_until(Duration::from_secs(10), || {
            let result = fs::remove_dir(&self.dir);
            let done = result.is_ok();
            last = result.err();
            done
        });
        assert!(
            removed,
            "the container left something in {}: {last:?}",
            self.dir.display()
        );
    }

    /// Whether the cgroup still is frozen (a check that the test did hold the Create).
    fn is_frozen(&self) -> bool {
        fs::read_to_string(&self.state).is_ok_and(|s| s.trim() == self.frozen)
    }
}

impl Drop for FrozenCgroup {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// Starts `ctr run -d` of container `id` in the background and waits until its Create is
/// held: the setup helper (`mini-init … <id>`) runs and the cgroup is frozen.
fn start_held_create(ns: &Namespace<'_>, id: &str) -> (Background, FrozenCgroup) {
    let frozen = FrozenCgroup::new(ns.name(), id);
    let ctr = ns.spawn_mini_sleep(id);
    assert!(
        wait_until(Duration::from_secs(15), || {
            leftovers::processes_of(id)
                .iter()
                .any(|p| p.cmdline.starts_with("mini-init"))
        }),
        "the Create of {id} never reached the setup helper"
    );
    // Held: nothing of the Create can finish while the cgroup is frozen.
    std::thread::sleep(Duration::from_millis(500));
    assert!(frozen.is_frozen());
    assert!(ns.task(id).is_none_or(|(_, s)| s != "CREATED"));
    (ctr, frozen)
}

/// The shim daemon serving container `id`, if it runs.
fn shim_of(id: &str) -> Option<leftovers::Proc> {
    leftovers::processes_of(id)
        .into_iter()
        .find(|p| p.comm.starts_with("containerd-shim") && !p.cmdline.contains(" start"))
}

fn bundle(ns: &Namespace<'_>, id: &str) -> PathBuf {
    ns.daemon()
        .dir()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns.name())
        .join(id)
}

/// After the fault and the thaw: the shim exits by itself, the container record can be
/// deleted, and nothing of the container remains.
#[track_caller]
fn assert_cleaned_up(ns: &Namespace<'_>, id: &str, frozen: &FrozenCgroup) {
    assert!(
        wait_until(Duration::from_secs(15), || shim_of(id).is_none()),
        "the shim of {id} is still running after its Create was abandoned: {:?}",
        shim_of(id)
    );
    assert!(
        wait_until(Duration::from_secs(10), || ns.task(id).is_none()),
        "containerd still lists task {id}: {:?}",
        ns.task(id)
    );
    ns.ctr(&["container", "delete", id]).expect_success();
    frozen.remove();
    ns.assert_nothing_left(id);
    let bundle = bundle(ns, id);
    assert!(
        wait_until(Duration::from_secs(5), || !bundle.exists()),
        "the bundle {} remains: {:?}",
        bundle.display(),
        fs::read_dir(&bundle).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}

fn client_killed_mid_create_leaves_nothing_and_the_shim_exits(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("gone");
    let id = ns.new_id("gone");
    let (ctr, frozen) = start_held_create(&ns, &id);
    let out = ctr.stop(); // SIGKILL
    assert!(out.code.is_none(), "ctr was not killed: {out}");
    // containerd gives up the Create (its request context is cancelled) and cleans up.
    std::thread::sleep(Duration::from_secs(2));
    frozen.thaw();
    assert_cleaned_up(&ns, &id, &frozen);
}

fn containerd_killed_mid_create_leaves_nothing_and_the_shim_exits(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cdkill");
    let id = ns.new_id("cdkill");
    let (ctr, frozen) = start_held_create(&ns, &id);
    let daemon = leftovers::processes()
        .into_iter()
        .find(|p| p.comm == "containerd" && p.cmdline.contains(&*cd.dir().to_string_lossy()))
        .expect("the test's containerd runs");
    leftovers::kill(daemon.pid);
    drop(ctr);
    cd.restart();
    frozen.thaw();
    assert_cleaned_up(&ns, &id, &frozen);
}

fn ttrpc_connection_dropped_mid_create_leaves_nothing_and_the_shim_exits(version: Version) {
    drop_connection_mid_create(version, &["sleep", "300"]);
}

/// The same with a Create that fails once thawed (no such executable).
fn ttrpc_connection_dropped_mid_failing_create_leaves_nothing_and_the_shim_exits(version: Version) {
    drop_connection_mid_create(version, &["/no/such/binary"]);
}

/// containerd's part played by hand: a bundle with a spec running `args` and the image's
/// rootfs mounts, the shim bootstrapped with `start`, and Create called over the shim's
/// ttrpc socket. The connection is dropped while the Create is held; the shim then has
/// nobody to report to.
fn drop_connection_mid_create(version: Version, args: &[&str]) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("drop");
    let id = ns.new_id("drop");
    let (_, rootfs) = mini_container(&ns, &id, &["true"]);
    let rootfs: Vec<Mount> = rootfs
        .into_iter()
        .map(|m| Mount {
            type_: m.r#type,
            source: m.source,
            target: m.target,
            options: m.options,
            ..Default::default()
        })
        .collect();

    let bundle = cd.dir().join("bundles").join(&id);
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let spec = ns.ctr(&["oci", "spec"]);
    spec.expect_success();
    let mut spec: serde_json::Value = serde_json::from_str(&spec.stdout).unwrap();
    spec["process"]["args"] = serde_json::json!(args);
    spec["root"] = serde_json::json!({ "path": "rootfs" });
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", ns.name()));
    fs::write(bundle.join("config.json"), spec.to_string()).unwrap();

    let shim = mini_e2e::mini_bin_dir().join("containerd-shim-mini-v2");
    let start = Command::new(&shim)
        .args(["-namespace", ns.name(), "-id", &id, "-address"])
        .arg(cd.address())
        .args(["-publish-binary", "/bin/true", "start"])
        .env("TTRPC_ADDRESS", cd.dir().join("c.sock.ttrpc"))
        .current_dir(&bundle)
        .stdin(Stdio::null())
        .output()
        .expect("running the shim's start");
    let address = String::from_utf8_lossy(&start.stdout).trim().to_string();
    assert!(
        start.status.success() && address.starts_with("unix://"),
        "start: {start:?}"
    );

    let frozen = FrozenCgroup::new(ns.name(), &id);
    let req = CreateTaskRequest {
        id: id.clone(),
        bundle: bundle.to_string_lossy().into_owned(),
        rootfs,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = ttrpc::r#async::Client::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("connecting to {address}: {e:?}"));
        let task = TaskClient::new(client);
        let create = task.create(ttrpc::context::with_timeout(60_000_000_000), &req);
        // Held by the frozen cgroup: the Create cannot answer; once the setup helper runs,
        // the client goes away.
        let held = async {
            while !leftovers::processes_of(&id)
                .iter()
                .any(|p| p.cmdline.starts_with("mini-init"))
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tokio::select! {
            answer = create => panic!("Create answered while held: {answer:?}"),
            () = held => {}
            () = tokio::time::sleep(Duration::from_secs(15)) => {
                panic!("the Create of {id} never reached the setup helper")
            }
        }
        // Dropping the client closes the connection.
    });
    drop(runtime);
    assert!(frozen.is_frozen());
    frozen.thaw();

    assert!(
        wait_until(Duration::from_secs(15), || shim_of(&id).is_none()),
        "the shim of {id} still runs after its Create's client went away: {:?}",
        shim_of(&id)
    );
    frozen.remove();
    ns.assert_nothing_left(&id);
    assert!(
        leftovers::mounts_of(&bundle, None).is_empty(),
        "the rootfs is still mounted"
    );
    // Nothing mounted below it any more: what containerd would remove is plain files.
    fs::remove_dir_all(&bundle).unwrap();
    ns.ctr(&["container", "delete", &id]).expect_success();
}
