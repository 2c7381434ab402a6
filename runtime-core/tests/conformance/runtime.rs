//! runtime.md (state, lifecycle, errors, operations) and runtime-linux.md.

use std::fs;

use crate::bundle::{Bundle, alive};

/// runtime.md, State: "The state of a container MUST include, at least, the following
/// properties: `ociVersion` … `id` … `status` … `pid` (REQUIRED when `status` is `created`
/// or `running` on Linux) … `bundle` (the absolute path to the container's bundle
/// directory) … `annotations`". Query State: "This operation MUST return the state of a
/// container as specified in the State section."
#[test]
fn state_holds_the_required_properties() {
    let mut b = Bundle::new("state", "sleep 30");
    b.spec["annotations"] = serde_json::json!({"org.example.key": "value"});
    b.created();
    let state = b.state();
    assert!(state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(state["id"], b.id.as_str());
    assert_eq!(state["status"], "created");
    assert!(alive(b.pid()));
    let bundle = state["bundle"].as_str().unwrap();
    assert!(bundle.starts_with('/'));
    assert_eq!(bundle, b.path().canonicalize().unwrap().to_str().unwrap());
    assert_eq!(state["annotations"]["org.example.key"], "value");
    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    assert!(alive(b.pid()));
}

/// runtime.md, Lifecycle step 2: "the user-specified program (from `process`) MUST NOT be
/// run at this time." Create: "`process.args` MUST NOT be applied until triggered by the
/// `start` operation." Lifecycle step 8 / Start: "The runtime MUST run the user-specified
/// program, as specified by `process`." Start: "Upon successful completion of this operation
/// the `status` property of this container MUST be `running`."
#[test]
fn create_does_not_run_the_program_and_start_does() {
    let b = Bundle::new("notyet", "touch /ran; sleep 30");
    b.created();
    assert_eq!(b.status(), "created");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !b.rootfs().join("ran").exists(),
        "the program ran at create"
    );
    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !b.rootfs().join("ran").exists() {
        assert!(std::time::Instant::now() < deadline, "start did not run it");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// runtime.md, Lifecycle step 2: "Any updates to `config.json` after this step MUST NOT
/// affect the container."
#[test]
fn config_changes_after_create_do_not_affect_the_container() {
    let mut b = Bundle::new("frozen", "echo original > /out");
    b.created();
    b.spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo changed > /out"]);
    b.spec["hostname"] = "changed".into();
    b.write_spec();
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("out")).unwrap(),
        "original\n"
    );
}

/// runtime.md, Lifecycle step 2: "Any updates to `config.json` after this step MUST NOT
/// affect the container." — its `poststart` and `poststop` hooks, run by `start` and
/// `delete`, are the ones `create` saw.
#[test]
fn hook_changes_after_create_do_not_affect_the_container() {
    let mut b = Bundle::new("frozen-hooks", "true");
    let log = b.path().join("hooks.log");
    let hook = |word: &str| {
        serde_json::json!([{"path": "/bin/sh",
            "args": ["sh", "-c", format!("echo {word} >> {}", log.display())]}])
    };
    b.spec["hooks"] =
        serde_json::json!({"poststart": hook("poststart"), "poststop": hook("poststop")});
    b.created();
    b.spec["hooks"] = serde_json::json!({"poststart": hook("changed-poststart"),
        "poststop": hook("changed-poststop"), "prestart": hook("added-prestart")});
    b.write_spec();
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    b.ok(&["delete", &b.id]);
    assert_eq!(
        fs::read_to_string(&log).unwrap_or_default(),
        "poststart\npoststop\n"
    );
}

/// runtime.md, Lifecycle step 2: "If the runtime is unable to create the environment
/// specified in the `config.json`, it MUST generate an error." Create: "If the runtime
/// cannot apply a property as specified in the configuration, it MUST generate an error and
/// a new container MUST NOT be created." Errors: "generating an error MUST leave the state
/// of the environment as if the operation were never attempted".
#[test]
fn a_config_that_cannot_be_applied_fails_and_leaves_nothing() {
    let mut b = Bundle::new("unable", "true");
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"destination": "/data", "type": "none",
            "source": "/nonexistent/conformance-source", "options": ["rbind"]}));
    let stderr = b.create_fails();
    assert!(
        stderr.contains("/data") || stderr.contains("conformance-source"),
        "{stderr}"
    );
    assert_eq!(b.leftovers(), Vec::<String>::new());
    assert!(
        !b.rootfs().join("data").exists(),
        "the mount point was left"
    );
    let out = b.mini(&["state", &b.id]);
    assert!(!out.status.success(), "a failed create left a container");
}

/// runtime.md, Create: "If the ID provided is not unique across all containers within the
/// scope of the runtime, or is not valid in any other way, the implementation MUST generate
/// an error and a new container MUST NOT be created." State: "`id` … MUST be unique across
/// all containers on this host."
#[test]
fn a_taken_or_invalid_id_is_refused() {
    let b = Bundle::new("unique", "sleep 30");
    b.created();
    let pid = b.pid();
    let out = b.mini(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    assert!(!out.status.success());
    assert_eq!(b.pid(), pid, "the first container was replaced");
    assert_eq!(b.status(), "created");
    for bad in ["", "..", "a/b"] {
        let out = b.mini(&["create", "--bundle", b.path().to_str().unwrap(), bad]);
        assert!(!out.status.success(), "id {bad:?} accepted");
    }
}

/// runtime.md, Create: "This operation MUST generate an error if it is not provided a path
/// to the bundle and the container ID to associate with the container." (A bundle that is
/// not there is not provided.)
#[test]
fn create_without_an_id_or_bundle_fails() {
    let b = Bundle::new("noargs", "true");
    b.write_spec();
    assert!(!b.mini(&["create"]).status.success());
    let out = b.mini(&["create", "--bundle", "/nonexistent/bundle", &b.id]);
    assert!(!out.status.success());
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// runtime.md, Query State, Start, Kill, Delete: "This operation MUST generate an error if it
/// is not provided the ID of a container / the container ID." "Attempting to query a
/// container that does not exist MUST generate an error." "Attempting to start a container
/// that does not exist MUST generate an error." "Attempting to delete a container that does
/// not exist MUST generate an error."
#[test]
fn operations_without_an_id_or_on_an_unknown_one_fail() {
    let b = Bundle::new("noid", "true");
    for op in [&["state"][..], &["start"], &["kill"], &["delete"]] {
        assert!(!b.mini(op).status.success(), "{op:?} without an id");
    }
    for op in [
        &["state", "conf-none"][..],
        &["start", "conf-none"],
        &["kill", "conf-none", "KILL"],
        &["delete", "conf-none"],
    ] {
        assert!(!b.mini(op).status.success(), "{op:?} of an unknown id");
    }
}

/// runtime.md, Start: "Attempting to `start` a container that is not `created` MUST have no
/// effect on the container and MUST generate an error."
#[test]
fn start_of_a_running_or_stopped_container_fails_without_effect() {
    let b = Bundle::new("restart", "echo x >> /count; sleep 30");
    b.created();
    b.ok(&["start", &b.id]);
    let pid = b.pid();
    assert!(!b.mini(&["start", &b.id]).status.success());
    assert_eq!(b.pid(), pid);
    assert_eq!(b.status(), "running");
    b.ok(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    assert!(!b.mini(&["start", &b.id]).status.success());
    assert_eq!(b.status(), "stopped");
    assert_eq!(fs::read_to_string(b.rootfs().join("count")).unwrap(), "x\n");
}

/// runtime.md, Start: "This operation MUST generate an error if `process` was not set."
/// config.md, Process: "This property is REQUIRED when `start` is called."
#[test]
fn a_container_without_process_cannot_start() {
    let mut b = Bundle::new("noprocess", "true");
    b.spec.as_object_mut().unwrap().remove("process");
    b.write_spec();
    let out = b.mini(&["create", "--bundle", b.path().to_str().unwrap(), &b.id]);
    if out.status.success() {
        assert!(!b.mini(&["start", &b.id]).status.success());
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("process"), "{stderr}");
    }
}

/// runtime.md, Kill: "This operation MUST send the specified signal to the container
/// process." Lifecycle step 10 / Kill (1.0): "When the process in the container is stopped,
/// irrespective of it being as a result of a `kill` operation or any other reason, the
/// `status` property of this container MUST be `stopped`."
#[test]
fn kill_delivers_the_signal_and_the_container_becomes_stopped() {
    let b = Bundle::new(
        "kill",
        "trap 'echo got-usr1 > /sig; exit 3' USR1; while :; do sleep 0.05; done",
    );
    b.created();
    b.ok(&["start", &b.id]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    b.ok(&["kill", &b.id, "USR1"]);
    b.wait_status("stopped");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("sig")).unwrap(),
        "got-usr1\n"
    );
}

/// runtime.md, Kill: "Attempting to send a signal to a container that is neither `created`
/// nor `running` MUST have no effect on the container and MUST generate an error." (and a
/// created container can be signalled.)
#[test]
fn kill_of_a_stopped_container_fails_and_a_created_one_is_killed() {
    let b = Bundle::new("killstopped", "sleep 30");
    b.created();
    let pid = b.pid();
    b.ok(&["kill", &b.id, "KILL"]);
    b.wait_status("stopped");
    assert!(!alive(pid));
    let out = b.mini(&["kill", &b.id, "TERM"]);
    assert!(
        !out.status.success(),
        "kill of a stopped container succeeded"
    );
    assert_eq!(b.status(), "stopped");
}

/// runtime.md, Delete: "Attempting to `delete` a container that is not `stopped` MUST have
/// no effect on the container and MUST generate an error." (Checked for `running`; a
/// `created` container is deleted as runc does, see docs/conformance.md.)
#[test]
fn delete_of_a_running_container_fails_without_effect() {
    let b = Bundle::new("delrunning", "sleep 30");
    b.created();
    b.ok(&["start", &b.id]);
    let pid = b.pid();
    assert!(!b.mini(&["delete", &b.id]).status.success());
    assert_eq!(b.status(), "running");
    assert!(alive(pid));
    assert!(b.state_dir().exists());
}

/// runtime.md, Delete: "Deleting a container MUST delete the resources that were created
/// during the `create` step. Note that resources associated with the container, but not
/// created by this container, MUST NOT be deleted." Lifecycle step 12: "The container MUST
/// be destroyed by undoing the steps performed during create phase (step 2)." "Once a
/// container is deleted its ID MAY be used by a subsequent container."
#[test]
fn delete_removes_what_create_made_and_nothing_else() {
    let mut b = Bundle::new("delete", "true");
    let host = b.path().join("host-volume");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("keep"), "kept").unwrap();
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"destination": "/volume", "type": "none",
            "source": host, "options": ["rbind"]}));
    // A cgroup parent that exists before the container: not the container's to remove.
    let parent = format!("mini-conf-parent-{}", std::process::id());
    b.spec["linux"]["cgroupsPath"] = format!("/{parent}/{}", b.id).into();
    let parents: Vec<_> = b
        .cgroup()
        .dirs()
        .map(|d| d.dir.parent().unwrap().to_owned())
        .collect();
    for p in &parents {
        fs::create_dir(p).unwrap();
    }
    b.created();
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    b.ok(&["delete", &b.id]);
    let left = b.leftovers();
    let parent_kept = parents.iter().all(|p| p.exists());
    // The id is free again.
    let reused = b.create().success() && b.status() == "created";
    let _ = b.mini(&["delete", "--force", &b.id]);
    for p in &parents {
        let _ = fs::remove_dir(p);
    }
    assert_eq!(left, Vec::<String>::new());
    assert!(parent_kept, "delete removed a cgroup it did not create");
    assert_eq!(fs::read_to_string(host.join("keep")).unwrap(), "kept");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(b.path().to_str().unwrap()));
    assert!(
        reused,
        "the id of a deleted container could not be used again"
    );
}

/// runtime-linux.md, File descriptors: "By default, only the `stdin`, `stdout` and `stderr`
/// file descriptors are kept open for the application by the runtime."
#[test]
fn only_stdio_is_open_in_the_container() {
    let b = Bundle::new("fds", "ls /proc/$$/fd; true");
    let fds = b.stdout();
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
}

/// runtime-linux.md, Dev symbolic links: "While creating the container (step 2 in the
/// lifecycle), runtimes MUST create the following symlinks if the source file exists after
/// processing mounts: `/dev/fd` -> `/proc/self/fd`, `/dev/stdin` -> `/proc/self/fd/0`,
/// `/dev/stdout` -> `/proc/self/fd/1`, `/dev/stderr` -> `/proc/self/fd/2`."
#[test]
fn dev_symlinks_to_proc_self_fd() {
    let b = Bundle::new(
        "devlinks",
        "for l in fd stdin stdout stderr; do readlink /dev/$l; done",
    );
    assert_eq!(
        b.stdout(),
        "/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n"
    );
}
