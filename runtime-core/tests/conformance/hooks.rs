//! runtime.md, Lifecycle (the hooks' points and failures) and config.md, POSIX-platform Hooks.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::bundle::Bundle;

/// One hook running the host's `sh -c script` (the container's `sh` for `startContainer`).
fn sh(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

/// A hook that appends `word` to `log` (a path in the namespace the hook runs in).
fn record(word: &str, log: &Path) -> Value {
    sh(&format!("echo {word} >> {}", log.display()))
}

fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A hook of `kind` (run by `create`) runs before create returns and before the program;
/// when it fails, create fails naming it, the hooks after it do not run, the container is
/// destroyed (nothing left) and the poststop hooks run (step 12, then 13).
fn a_create_hook_runs_and_its_failure_ends_the_container(kind: &str) {
    let mut b = Bundle::new(&format!("hook-{}", kind.to_lowercase()), "echo ran >> /ran");
    let log = b.path().join("hooks.log");
    b.spec["hooks"][kind] = json!([record(kind, &log)]);
    b.created();
    assert_eq!(lines(&log), [kind]);
    assert!(
        !b.rootfs().join("ran").exists(),
        "the program ran at create"
    );
    b.ok(&["delete", "--force", &b.id]);

    let mut b = Bundle::new(&format!("hookfail-{}", kind.to_lowercase()), "true");
    let log = b.path().join("hooks.log");
    b.spec["hooks"] = json!({
        kind: [sh("echo refused >&2; exit 7")],
        "startContainer": [record("startContainer", Path::new("/started"))],
        "poststart": [record("poststart", &log)],
        "poststop": [record("poststop", &log)],
    });
    if kind != "createContainer" {
        b.spec["hooks"]["createContainer"] = json!([record("createContainer", &log)]);
    }
    let stderr = b.create_fails();
    assert!(
        stderr.contains(&format!("hooks.{kind}[0]")) && stderr.contains("refused"),
        "{stderr}"
    );
    assert_eq!(lines(&log), ["poststop"], "only step 13 after the failure");
    assert!(!b.rootfs().join("started").exists());
    assert_eq!(b.leftovers(), Vec::<String>::new());
    assert!(!b.mini(&["state", &b.id]).status.success());
}

/// runtime.md, Lifecycle step 3: "The `prestart` hooks MUST be invoked by the runtime. If
/// any `prestart` hook fails, the runtime MUST generate an error, stop the container, and
/// continue the lifecycle at step 12."
#[test]
fn prestart_hooks_run_at_create_and_a_failure_ends_the_container() {
    a_create_hook_runs_and_its_failure_ends_the_container("prestart");
}

/// runtime.md, Lifecycle step 4: "The `createRuntime` hooks MUST be invoked by the runtime.
/// If any `createRuntime` hook fails, the runtime MUST generate an error, stop the
/// container, and continue the lifecycle at step 12."
#[test]
fn create_runtime_hooks_run_at_create_and_a_failure_ends_the_container() {
    a_create_hook_runs_and_its_failure_ends_the_container("createRuntime");
}

/// runtime.md, Lifecycle step 5: "The `createContainer` hooks MUST be invoked by the
/// runtime. If any `createContainer` hook fails, the runtime MUST generate an error, stop
/// the container, and continue the lifecycle at step 12."
#[test]
fn create_container_hooks_run_at_create_and_a_failure_ends_the_container() {
    a_create_hook_runs_and_its_failure_ends_the_container("createContainer");
}

/// runtime.md, Lifecycle step 7: "The `startContainer` hooks MUST be invoked by the
/// runtime. If any `startContainer` hook fails, the runtime MUST generate an error, stop
/// the container, and continue the lifecycle at step 12."
#[test]
fn start_container_hooks_run_before_the_program_and_a_failure_ends_the_container() {
    // The hook runs in the container: /hooks.log is the rootfs's.
    let mut b = Bundle::new("hook-start", "test -e /hooks.log && echo after-hook > /ran");
    b.spec["hooks"]["startContainer"] = json!([record("startContainer", Path::new("/hooks.log"))]);
    b.created();
    assert!(!b.rootfs().join("hooks.log").exists(), "ran at create");
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    assert_eq!(lines(&b.rootfs().join("hooks.log")), ["startContainer"]);
    assert_eq!(lines(&b.rootfs().join("ran")), ["after-hook"]);
    b.ok(&["delete", &b.id]);

    let mut b = Bundle::new("hookfail-start", "echo ran > /ran");
    let log = b.path().join("hooks.log");
    b.spec["hooks"] = json!({
        "startContainer": [sh("echo refused >&2; exit 3")],
        "poststart": [record("poststart", &log)],
        "poststop": [record("poststop", &log)],
    });
    b.created();
    let out = b.mini(&["start", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start succeeded despite the hook");
    assert!(stderr.contains("hooks.startContainer[0]"), "{stderr}");
    b.wait_status("stopped");
    assert!(!b.rootfs().join("ran").exists(), "the program ran");
    b.ok(&["delete", &b.id]);
    assert_eq!(lines(&log), ["poststop"]);
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// runtime.md, Lifecycle step 9: "The `poststart` hooks MUST be invoked by the runtime. If
/// any `poststart` hook fails, the runtime MUST log a warning, but the remaining hooks and
/// lifecycle continue as if the hook had succeeded."
#[test]
fn poststart_hooks_run_after_start_and_a_failure_is_a_warning() {
    let mut b = Bundle::new("hook-poststart", "sleep 30");
    let log = b.path().join("hooks.log");
    b.spec["hooks"]["poststart"] = json!([sh("exit 4"), record("poststart", &log)]);
    b.created();
    assert_eq!(lines(&log), Vec::<String>::new());
    let out = b.mini(&["start", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.contains("hooks.poststart[0]"), "{stderr}");
    assert_eq!(lines(&log), ["poststart"], "the remaining hook ran");
    assert_eq!(b.status(), "running");
}

/// runtime.md, Lifecycle step 13: "The `poststop` hooks MUST be invoked by the runtime. If
/// any `poststop` hook fails, the runtime MUST log a warning, but the remaining hooks and
/// lifecycle continue as if the hook had succeeded."
#[test]
fn poststop_hooks_run_at_delete_and_a_failure_is_a_warning() {
    let mut b = Bundle::new("hook-poststop", "true");
    let log = b.path().join("hooks.log");
    b.spec["hooks"]["poststop"] = json!([sh("exit 5"), record("poststop", &log)]);
    b.created();
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    assert_eq!(lines(&log), Vec::<String>::new());
    let out = b.mini(&["delete", &b.id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.contains("hooks.poststop[0]"), "{stderr}");
    assert_eq!(lines(&log), ["poststop"], "the remaining hook ran");
    assert_eq!(b.leftovers(), Vec::<String>::new());
}

/// config.md, POSIX-platform Hooks: "`path` (string, REQUIRED) … This specification extends
/// the IEEE standard in that `path` MUST be absolute"; "`timeout` (int, OPTIONAL) …
/// If set, `timeout` MUST be greater than zero"; `createContainer`: "The value of `path`
/// MUST resolve in the runtime namespace. The `createContainer` hooks MUST be executed in
/// the container namespace"; `startContainer`: "The value of `path` MUST resolve in the
/// container namespace. The `startContainer` hooks MUST be executed in the container
/// namespace."
#[test]
fn hook_paths_are_absolute_timeouts_positive_and_resolved_in_their_namespace() {
    let mut b = Bundle::new("hook-path", "true");
    b.spec["hooks"]["prestart"] = json!([{"path": "bin/true"}]);
    let stderr = b.create_fails();
    assert!(stderr.contains("hooks.prestart[0].path"), "{stderr}");
    b.spec["hooks"]["prestart"] = json!([{"path": "/bin/true", "timeout": 0}]);
    let stderr = b.create_fails();
    assert!(stderr.contains("hooks.prestart[0].timeout"), "{stderr}");
    assert_eq!(b.leftovers(), Vec::<String>::new());

    // Scripts only the host has (in the bundle) and only the container has (in its root).
    let mut b = Bundle::new("hook-ns", "true");
    let log = b.path().join("hooks.log");
    let host_only = b.path().join("host-hook");
    // The createContainer hook runs before pivot_root: the host's files, the container's
    // mount namespace.
    fs::write(
        &host_only,
        format!(
            "#!/bin/sh\necho createContainer $(readlink /proc/self/ns/mnt) >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    let container_only = b.rootfs().join("container-hook");
    fs::write(
        &container_only,
        "#!/bin/sh\necho startContainer $(readlink /proc/self/ns/mnt) >> /container-log\n",
    )
    .unwrap();
    for f in [&host_only, &container_only] {
        fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    b.spec["hooks"] = json!({
        "createContainer": [{"path": host_only}],
        "startContainer": [{"path": "/container-hook"}],
    });
    b.created();
    let container_mnt = fs::read_link(format!("/proc/{}/ns/mnt", b.pid()))
        .unwrap()
        .display()
        .to_string();
    assert_ne!(
        container_mnt,
        fs::read_link("/proc/self/ns/mnt")
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(lines(&log), [format!("createContainer {container_mnt}")]);
    b.ok(&["start", &b.id]);
    b.wait_status("stopped");
    assert_eq!(
        lines(&b.rootfs().join("container-log")),
        [format!("startContainer {container_mnt}")]
    );
}
