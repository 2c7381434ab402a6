//! Faults in the middle of a Create: the client gone (ctr SIGKILLed) and containerd
//! SIGKILLed and restarted. The Create is held in the middle by freezing the container's
//! cgroup before it exists (the setup processes freeze as they join it); it is thawed once
//! the fault happened. Afterwards no process, mount, cgroup, socket or bundle of the
//! container may remain, and its shim must have exited.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mini_e2e::{Background, Containerd, MINI, Namespace, Version, leftovers, wait_until};

mini_e2e::on_every_version!(
    client_killed_mid_create_leaves_nothing_and_the_shim_exits,
    containerd_killed_mid_create_leaves_nothing_and_the_shim_exits,
);

/// The container's freezer cgroup, made and frozen before the container exists; thawed
/// on drop (the daemon's drop removes the namespace's cgroups).
struct FrozenCgroup {
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
            state,
            frozen,
            thawed,
        }
    }

    fn thaw(&self) {
        let _ = fs::write(&self.state, self.thawed);
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
    let ctr = ns.spawn_ctr(&[
        "run",
        "-d",
        "--runtime",
        MINI,
        mini_e2e::IMAGE,
        id,
        "sleep",
        "300",
    ]);
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
fn assert_cleaned_up(ns: &Namespace<'_>, id: &str) {
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
    assert_cleaned_up(&ns, &id);
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
    assert_cleaned_up(&ns, &id);
}
