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

#[test]
fn notify_action_is_rejected_naming_it() {
    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    let err = compile(&seccomp).expect_err("NOTIFY rejected").to_string();
    assert!(
        err.contains("SCMP_ACT_NOTIFY") && err.contains("linux.seccomp.syscalls[0].action"),
        "{err}"
    );

    let seccomp = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
    }));
    let err = compile(&seccomp)
        .expect_err("listenerPath rejected")
        .to_string();
    assert!(
        err.contains("linux.seccomp.listenerPath") && err.contains("not supported"),
        "{err}"
    );
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
