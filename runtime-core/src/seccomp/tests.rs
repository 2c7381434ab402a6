use super::*;
use crate::capabilities::tests::{in_child, status_mask};

const DEFAULT_PROFILE: &str = include_str!("testdata/default-profile.json");

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    parse(&json.to_string()).expect("profile parses")
}

/// The errno of a failed call, or `Ok(ret)`.
fn syscall_result(ret: libc::c_long) -> std::result::Result<libc::c_long, i32> {
    if ret == -1 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(ret)
    }
}

fn personality(persona: libc::c_ulong) -> std::result::Result<libc::c_long, i32> {
    // SAFETY: personality takes a plain integer and reads no memory.
    syscall_result(unsafe { libc::syscall(libc::SYS_personality, persona) })
}

fn getpid_works() -> std::result::Result<(), String> {
    // SAFETY: getpid takes no arguments.
    match syscall_result(unsafe { libc::syscall(libc::SYS_getpid) }) {
        Ok(pid) if pid > 0 => Ok(()),
        other => Err(format!("getpid under the filter: {other:?}")),
    }
}

/// Compiles and loads `seccomp`, then checks that mkdir fails with `errno`.
fn mkdir_fails_with(seccomp: LinuxSeccomp, errno: i32) {
    let dir = std::env::temp_dir().join(format!("mini-seccomp-mkdir-{}", std::process::id()));
    in_child(move || {
        compile(&seccomp)
            .map_err(|e| e.to_string())?
            .load()
            .map_err(|e| e.to_string())?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                Err("mkdir succeeded under the filter".to_string())
            }
            Err(e) if e.raw_os_error() == Some(errno) => getpid_works(),
            Err(e) => Err(format!("mkdir failed with {e}, want errno {errno}")),
        }
    });
}

#[test]
fn mkdir_denied_by_rule_fails_with_eperm_while_getpid_works() {
    mkdir_fails_with(
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        })),
        libc::EPERM,
    );
}

#[test]
fn errno_ret_of_a_rule_is_the_errno_returned() {
    mkdir_fails_with(
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}],
        })),
        libc::ENOSYS,
    );
}

#[test]
fn loading_a_filter_leaves_no_new_privs_unset() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
    }));
    in_child(move || {
        compile(&seccomp)
            .map_err(|e| e.to_string())?
            .load()
            .map_err(|e| e.to_string())?;
        if status_mask("Seccomp:")? != 2 {
            return Err("Seccomp: is not 2 (filter mode) after load".to_string());
        }
        match status_mask("NoNewPrivs:")? {
            0 => Ok(()),
            v => Err(format!("NoNewPrivs: {v} after load")),
        }
    });
}

#[test]
fn argument_condition_allows_personality_only_for_listed_values() {
    let seccomp = parse(DEFAULT_PROFILE).expect("default profile parses");
    in_child(move || {
        compile(&seccomp)
            .map_err(|e| e.to_string())?
            .load()
            .map_err(|e| e.to_string())?;
        personality(0).map_err(|e| format!("personality(0) denied: errno {e}"))?;
        // ADDR_NO_RANDOMIZE is not in the allowed list: the default action answers.
        match personality(0x0040000) {
            Err(libc::EPERM) => {}
            other => {
                return Err(format!(
                    "personality(ADDR_NO_RANDOMIZE) = {other:?}, want EPERM"
                ));
            }
        }
        // SAFETY: clone3 with a null argument only reads memory if the filter lets it through,
        // and then fails with EFAULT.
        match syscall_result(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) }) {
            Err(libc::ENOSYS) => {}
            other => return Err(format!("clone3 = {other:?}, want ENOSYS from errnoRet 38")),
        }
        getpid_works()
    });
}

#[test]
fn repeated_argument_index_matches_any_of_the_values() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,
            "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 0x0040000, "op": "SCMP_CMP_EQ"},
            ],
        }],
    }));
    in_child(move || {
        compile(&seccomp)
            .map_err(|e| e.to_string())?
            .load()
            .map_err(|e| e.to_string())?;
        for denied in [8, 0x0040000] {
            if personality(denied) != Err(libc::ENOSYS) {
                return Err(format!("personality({denied:#x}) was not denied"));
            }
        }
        personality(0xffff_ffff).map_err(|e| format!("personality query denied: errno {e}"))?;
        Ok(())
    });
}

#[test]
fn default_profile_with_unknown_syscalls_and_masked_clone_compiles() {
    let seccomp = parse(DEFAULT_PROFILE).expect("default profile parses");
    let names = seccomp
        .syscalls()
        .as_ref()
        .map(|s| s[0].names().len())
        .unwrap_or(0);
    assert!(names > 300, "fixture lists {names} syscalls");
    compile(&seccomp).expect("default profile compiles");
}

#[test]
fn rule_repeating_the_default_action_is_skipped() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ERRNO"}],
    }));
    compile(&seccomp).expect("rule equal to the default is skipped");
}

/// The error of compiling `json`, which must name every one of `words`.
fn refused_naming(json: serde_json::Value, words: &[&str]) {
    let err = compile(&profile(json)).expect_err("refused").to_string();
    for word in words {
        assert!(err.contains(word), "{word} not in: {err}");
    }
}

#[test]
fn notify_needs_a_listener_path_and_is_refused_where_it_would_hang_the_setup() {
    refused_naming(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        }),
        &["linux.seccomp.syscalls[0].action", "listenerPath"],
    );
    refused_naming(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_NOTIFY",
            "listenerPath": "/run/agent.sock",
        }),
        &["linux.seccomp.defaultAction", "SCMP_ACT_NOTIFY"],
    );
    refused_naming(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}],
        }),
        &["linux.seccomp.syscalls[0].names[1]", "sendmsg"],
    );
    refused_naming(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerMetadata": "m",
        }),
        &["linux.seccomp.listenerMetadata", "listenerPath"],
    );
}

#[test]
fn a_listener_path_without_a_notifying_rule_is_ignored() {
    let filter = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "m",
    })))
    .expect("compiles");
    assert!(!filter.notifies());
}

#[test]
fn a_notifying_rule_of_syscalls_libseccomp_does_not_know_makes_no_listener() {
    // A profile written for a newer kernel: the rule adds nothing, so loading the filter
    // makes no listener (asking libseccomp for one then failed with EFAULT).
    let filter = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["no_such_syscall_xyz"], "action": "SCMP_ACT_NOTIFY"}],
    })))
    .expect("compiles");
    assert!(!filter.notifies());
}

#[test]
fn a_notified_mkdir_fails_with_the_errno_the_listener_answers() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    let dir = std::env::temp_dir().join(format!("mini-seccomp-notify-{}", std::process::id()));
    in_child(move || {
        let filter = compile(&seccomp).map_err(|e| e.to_string())?;
        let listener = filter
            .load()
            .map_err(|e| e.to_string())?
            .ok_or("no listener")?;
        // SAFETY: F_GETFD on an fd we own.
        let flags =
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&listener), libc::F_GETFD) };
        if flags & libc::FD_CLOEXEC == 0 {
            return Err("the listener is not close-on-exec".to_string());
        }
        let agent = std::thread::spawn(move || {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            let req = libseccomp::ScmpNotifReq::receive(fd).map_err(|e| e.to_string())?;
            libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EDQUOT,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd)
            .map_err(|e| e.to_string())
        });
        let made = std::fs::create_dir(&dir);
        agent.join().map_err(|_| "agent panicked".to_string())??;
        match made {
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                Err("mkdir succeeded under the filter".to_string())
            }
            Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => getpid_works(),
            Err(e) => Err(format!("mkdir failed with {e}, want EDQUOT")),
        }
    });
}

#[test]
fn bad_errno_ret_and_argument_index_are_rejected_naming_the_field() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 70000,
    }));
    let err = compile(&seccomp).expect_err("errno too large").to_string();
    assert!(
        err.contains("linux.seccomp.defaultAction") && err.contains("70000"),
        "{err}"
    );

    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}],
    }));
    let err = compile(&seccomp).expect_err("index too large").to_string();
    assert!(err.contains("linux.seccomp.syscalls[0].args[0]"), "{err}");
}

#[test]
fn malformed_profile_json_is_invalid_linux_seccomp() {
    let err = parse(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#)
        .expect_err("bad action")
        .to_string();
    assert!(err.contains("linux.seccomp"), "{err}");
}
