//! `binary://` log URIs (`ctr run --log-uri binary:///path?k=v`, nerdctl's detached
//! containers): the shim starts the logging binary as containerd's own shims do — the
//! container's stdout and stderr as fds 3 and 4, a ready pipe as fd 5, only CONTAINER_ID and
//! CONTAINER_NAMESPACE in its environment, the URI's query as arguments — and ends it at
//! Delete.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mini_e2e::{Containerd, MINI, Version, leftovers, wait_until};

mini_e2e::on_every_version!(
    a_logging_binary_gets_the_output_fds_env_and_args_and_is_gone_after_delete,
    a_missing_logging_binary_fails_create_naming_it_and_leaves_nothing,
    a_logging_binary_that_keeps_running_is_ended_at_delete,
);

/// A logger that records what it was given, copies fd 3 and fd 4 to files and, when both
/// reach EOF, writes `done`. Delete sends SIGTERM right after it closes the pipes (as
/// containerd's shims do): like a real logger, this one finishes its copy first.
const LOGGER: &str = r#"#!/bin/sh
trap '' TERM
dir=$(/usr/bin/dirname "$0")
{
    echo "args=$*"
    echo "id=$CONTAINER_ID"
    echo "ns=$CONTAINER_NAMESPACE"
    echo "env=$(/usr/bin/env | /usr/bin/cut -d= -f1 | /usr/bin/sort | /usr/bin/tr '\n' ' ')"
    for fd in 3 4 5; do echo "fd$fd=$(/usr/bin/readlink /proc/$$/fd/$fd)"; done
} > "$dir/info"
exec 5>&-
/bin/cat <&3 > "$dir/stdout" &
/bin/cat <&4 > "$dir/stderr" &
wait
echo done > "$dir/done"
"#;

/// Writes `script` as an executable `logger.sh` in a new directory under /tmp.
fn logger_script(script: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = mini_e2e::tmp_dir("logbin");
    let path = dir.path().join("logger.sh");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

/// Waits until no process runs `script`.
#[track_caller]
fn assert_logger_gone(script: &Path) {
    let script = script.to_string_lossy().into_owned();
    assert!(
        wait_until(Duration::from_secs(15), || leftovers::processes()
            .iter()
            .all(|p| !p.cmdline.contains(&script))),
        "the logging binary {script} still runs after delete"
    );
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn line<'a>(info: &'a str, key: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_default()
}

fn a_logging_binary_gets_the_output_fds_env_and_args_and_is_gone_after_delete(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("logbin");
    let id = ns.new_id("logbin");
    let (dir, script) = logger_script(LOGGER);
    let uri = format!("binary://{}?arg=x&--flag=a+b", script.display());

    let out = ns.run(
        MINI,
        &["--rm", "--log-uri", &uri],
        &id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    assert_eq!(out.code, Some(3), "{out}");

    let info = read(&dir.path().join("info"));
    assert_eq!(line(&info, "args"), "arg x --flag a b", "{info}");
    assert_eq!(line(&info, "id"), id, "{info}");
    assert_eq!(line(&info, "ns"), ns.name(), "{info}");
    // Only these two: nothing of the shim's own environment (containerd's addresses). The
    // shell itself sets PWD.
    let env: Vec<&str> = line(&info, "env")
        .split_whitespace()
        .filter(|name| *name != "PWD")
        .collect();
    assert_eq!(env, ["CONTAINER_ID", "CONTAINER_NAMESPACE"], "{info}");
    let (fd3, fd4) = (line(&info, "fd3"), line(&info, "fd4"));
    assert!(
        fd3.starts_with("pipe:") && fd4.starts_with("pipe:") && fd3 != fd4,
        "fds 3 and 4 must be two pipes: {info}"
    );
    assert!(line(&info, "fd5").starts_with("pipe:"), "{info}");

    // The output went through the logger (and not to ctr).
    assert!(
        wait_until(Duration::from_secs(5), || dir.path().join("done").exists()),
        "the logger never saw EOF on both fds"
    );
    assert_eq!(read(&dir.path().join("stdout")), "to-stdout\n");
    assert_eq!(read(&dir.path().join("stderr")), "to-stderr\n");
    assert!(!out.stdout.contains("to-stdout"), "{out}");

    assert_logger_gone(&script);
    ns.assert_nothing_left(&id);
}

fn a_logging_binary_that_keeps_running_is_ended_at_delete(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("logstay");
    let id = ns.new_id("logstay");
    // Ready at once, then never reads or exits by itself.
    let (_dir, script) = logger_script("#!/bin/sh\nexec 5>&-\nwhile :; do /bin/sleep 1; done\n");
    let uri = format!("binary://{}", script.display());
    ns.run_detached(MINI, &["--log-uri", &uri], &id, &["sleep", "300"]);
    assert!(
        leftovers::processes()
            .iter()
            .any(|p| p.cmdline.contains(&*script.to_string_lossy())),
        "the logging binary runs alongside the task"
    );
    ns.kill_and_delete(&id);
    assert_logger_gone(&script);
    ns.assert_nothing_left(&id);
}

fn a_missing_logging_binary_fails_create_naming_it_and_leaves_nothing(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("logmiss");
    let id = ns.new_id("logmiss");
    let uri = "binary:///nonexistent/mini-logger";
    let out = ns.run(MINI, &["--rm", "--log-uri", uri], &id, &["true"]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("/nonexistent/mini-logger"), "{out}");
    let _ = ns.ctr(&["container", "delete", &id]);
    ns.assert_nothing_left(&id);
}
