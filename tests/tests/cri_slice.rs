//! Pods whose cgroup parent is a systemd slice, on a host where systemd does not run.
//!
//! containerd's CRI builds the cgroupsPath `<slice>:cri-containerd:<id>` for every pod whose
//! parent ends in `.slice` (the kubelet's systemd driver), whatever runtime the pod uses and
//! whether systemd runs or not. Without systemd mini takes that path as runc's cgroupfs
//! driver does: one relative cgroup of that literal name below the shim's own cgroup. The
//! shim is put in a cgroup of the test's (`ShimCgroup`) so that everything it creates lands
//! there. `SystemdCgroup = true` on such a host fails the pod naming the option.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::ContainerState;
use mini_e2e::cri::{Cri, MINI_HANDLER};
use mini_e2e::{Containerd, Version, leftovers, on_every_version, unique_name};

const WAIT: Duration = Duration::from_secs(30);

on_every_version!(
    pod_with_a_slice_parent_runs_in_literal_cgroups_removed_with_it,
    systemd_cgroup_option_without_systemd_fails_the_pod_naming_it,
);

/// A CRI daemon whose `mini` runtime has the options `keys` (TOML): the runtime's options
/// table (containerd 1.7 and 2.x send it as `config_body`), or on 1.6 a file the table's
/// `ConfigPath` names.
fn daemon_with_mini_options(version: Version, keys: &str) -> Containerd {
    let cd = Containerd::start_cri(version);
    let body = if version == Version::V1_6 {
        let file = cd.dir().join("mini-options.toml");
        fs::write(&file, keys).unwrap();
        format!("ConfigPath = {:?}\n", file.display().to_string())
    } else {
        keys.to_string()
    };
    let plugin = if version == Version::V2 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let config = cd.dir().join("config.toml");
    let text = fs::read_to_string(&config).unwrap()
        + &format!("\n[plugins.\"{plugin}\".containerd.runtimes.{MINI_HANDLER}.options]\n{body}");
    fs::write(&config, text).unwrap();
    cd.restart();
    cd
}

/// The cgroup directories below `top` in every hierarchy.
fn cgroups_below(top: &str) -> Vec<PathBuf> {
    leftovers::hierarchies()
        .into_iter()
        .filter_map(|h| fs::read_dir(h.join(top)).ok())
        .flat_map(|entries| entries.filter_map(|e| e.ok()))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn pod_with_a_slice_parent_runs_in_literal_cgroups_removed_with_it(version: Version) {
    // The shim's cgroup, in every hierarchy: the relative cgroupsPaths land below it.
    let top = unique_name("mini-slice-shim");
    let keys = format!("ShimCgroup = \"/{top}\"\n");
    let cd = daemon_with_mini_options(version, &keys);
    cd.remove_cgroup_tree_on_drop(&top);
    for h in leftovers::hierarchies() {
        fs::create_dir_all(h.join(&top)).unwrap();
        // A v1 cpuset takes no task before it has cpus and mems.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = fs::read_to_string(h.join(file)) {
                fs::write(h.join(&top).join(file), value.trim()).unwrap();
            }
        }
    }
    let cri = Cri::connect(&cd);
    let parent = format!("kubepods-besteffort-pod{}.slice", unique_name("uid"));
    let pod = cri.run_pod_with_parent("slice", MINI_HANDLER, &parent);

    let sleeper = cri
        .create_container(&pod, "sleeper", &["sleep", "300"])
        .expect("CreateContainer in a pod with a slice parent");
    cri.start_container(&sleeper).expect("StartContainer");
    cri.wait_state(&sleeper, ContainerState::ContainerRunning, WAIT);
    let (code, out, _) = cri
        .exec_sync(&sleeper, &["echo", "in"], 10)
        .expect("ExecSync");
    assert_eq!((code, out.trim()), (0, "in"));

    // The sandbox and the container each in a cgroup named literally by CRI's path.
    for id in [&pod.id, &sleeper] {
        let literal = format!("{parent}:cri-containerd:{id}");
        let pid = cri.task_pid(id);
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = format!("/{top}/{literal}");
        for line in own.lines() {
            assert!(
                line.ends_with(&want),
                "{id} (pid {pid}) not in {want}:\n{own}"
            );
        }
        let memory = Path::new("/sys/fs/cgroup/memory").join(&top).join(&literal);
        assert!(memory.is_dir() || !Path::new("/sys/fs/cgroup/memory").exists());
    }
    assert!(!cgroups_below(&top).is_empty());

    cri.stop_container(&sleeper, 0).expect("StopContainer");
    cri.remove_container(&sleeper).expect("RemoveContainer");
    cri.stop_pod(&pod).expect("StopPodSandbox");
    cri.remove_pod(&pod).expect("RemovePodSandbox");
    let mut left = Vec::new();
    assert!(
        mini_e2e::wait_until(WAIT, || {
            left = cgroups_below(&top);
            left.is_empty()
        }),
        "cgroups left after the pod was removed: {left:?}"
    );
}

fn systemd_cgroup_option_without_systemd_fails_the_pod_naming_it(version: Version) {
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test needs a host where systemd does not run"
    );
    let cd = daemon_with_mini_options(version, "SystemdCgroup = true\n");
    let cri = Cri::connect(&cd);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cri.run_pod("sdopt", MINI_HANDLER);
    }))
    .expect_err("a pod ran with SystemdCgroup = true and no systemd");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("SystemdCgroup"), "{msg}");
    assert!(msg.contains("systemd is not running"), "{msg}");
    assert!(mini_e2e::wait_until(WAIT, || cri
        .shims("containerd-shim-mini-v2")
        .is_empty()));
    assert!(cri.cgroups_below_parent().is_empty());
}
