//! `process.rlimits` and `process.oomScoreAdj`.
//!
//! The rlimits are set by the container init before the user changes, `oom_score_adj` by the
//! setup helper for the init before it runs; either way the runtime's own privileges decide
//! what is allowed: lowering a limit always works, raising a hard limit above its current value
//! needs `CAP_SYS_RESOURCE`, and so does lowering `oom_score_adj` below its current value.

use std::collections::HashSet;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use oci_spec::runtime::PosixRlimit;

use crate::procfs::ProcFs;
use crate::{Error, Result};

/// The spec name of every rlimit the kernel has, with the resource it sets.
const RLIMITS: [(&str, Resource); 16] = [
    ("RLIMIT_AS", Resource::RLIMIT_AS),
    ("RLIMIT_CORE", Resource::RLIMIT_CORE),
    ("RLIMIT_CPU", Resource::RLIMIT_CPU),
    ("RLIMIT_DATA", Resource::RLIMIT_DATA),
    ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
    ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
    ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
    ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", Resource::RLIMIT_NICE),
    ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
    ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
    ("RLIMIT_RSS", Resource::RLIMIT_RSS),
    ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
    ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
    ("RLIMIT_STACK", Resource::RLIMIT_STACK),
];

/// The resource named `name` (`RLIMIT_NOFILE`, …); an unknown name is an invalid
/// `process.rlimits` entry.
pub fn resource_from_name(name: &str) -> Result<Resource> {
    RLIMITS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, resource)| *resource)
        .ok_or_else(|| Error::invalid("process.rlimits", format!("unknown rlimit type {name:?}")))
}

/// Checks `process.rlimits` without touching the process: every type known, none twice, and
/// no soft limit above its hard limit.
pub fn validate(rlimits: &[PosixRlimit]) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, rlimit) in rlimits.iter().enumerate() {
        let name = rlimit.typ().to_string();
        resource_from_name(&name).map_err(|_| {
            Error::invalid(
                format!("process.rlimits[{i}].type"),
                format!("unknown rlimit type {name:?}"),
            )
        })?;
        if !seen.insert(name.clone()) {
            return Err(Error::invalid(
                format!("process.rlimits[{i}].type"),
                format!("{name} is listed twice"),
            ));
        }
        if rlimit.soft() > rlimit.hard() {
            return Err(Error::invalid(
                format!("process.rlimits[{i}].soft"),
                format!(
                    "{name}: soft limit {} is above hard limit {}",
                    rlimit.soft(),
                    rlimit.hard()
                ),
            ));
        }
    }
    Ok(())
}

/// Sets each rlimit; an error names the limit (e.g. `RLIMIT_NOFILE`) and the values asked.
///
/// Validates the whole list first, so a bad entry changes nothing.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    validate(rlimits)?;
    for rlimit in rlimits {
        let name = rlimit.typ().to_string();
        let resource = resource_from_name(&name)?;
        let (soft, hard) = (rlimit.soft(), rlimit.hard());
        setrlimit(resource, soft, hard)
            .map_err(|errno| setrlimit_error(&name, resource, soft, hard, errno))?;
    }
    Ok(())
}

/// Explains a failed setrlimit. EPERM is what a spec gets for a hard limit above the current
/// one without `CAP_SYS_RESOURCE` (even root, on hosts that withhold it): say so, with the
/// current hard limit, since "Operation not permitted" alone sends people looking elsewhere.
fn setrlimit_error(name: &str, resource: Resource, soft: u64, hard: u64, errno: Errno) -> Error {
    if errno == Errno::EPERM {
        let current = getrlimit(resource)
            .map(|(_, current_hard)| format!("the current hard limit {current_hard}"))
            .unwrap_or_else(|_| "the current hard limit".to_string());
        return Error::invalid(
            "process.rlimits",
            format!(
                "{name} soft={soft} hard={hard}: raising a hard limit above {current} needs \
                 CAP_SYS_RESOURCE: {errno}"
            ),
        );
    }
    Error::sys(
        "setrlimit",
        format!("process.rlimits {name} soft={soft} hard={hard}"),
        errno,
    )
}

/// Writes `oom_score_adj` of process `pid` (of the caller's pid namespace), through [`ProcFs`]
/// so that the write cannot be redirected to another file; an error names
/// `process.oomScoreAdj` and the value.
///
/// The setup helper writes it for the container init before the init runs: from inside a new
/// user namespace the init could not, its /proc files being owned by the host's root.
///
/// Raising the score always works; lowering it below the current value needs
/// `CAP_SYS_RESOURCE`, which a failure message spells out.
pub fn set_oom_score_adj(pid: u32, value: i32) -> Result<()> {
    if !(-1000..=1000).contains(&value) {
        return Err(Error::invalid(
            "process.oomScoreAdj",
            format!("{value} is outside -1000..=1000"),
        ));
    }
    let invalid = |msg: String| Error::invalid("process.oomScoreAdj", msg);
    let proc = ProcFs::open().map_err(|e| invalid(format!("cannot set {value}: {e}")))?;
    let file = Path::new(&pid.to_string()).join("oom_score_adj");
    proc.write(&file, &value.to_string()).map_err(|e| {
        let denied = matches!(
            e,
            Error::Sys {
                source: Errno::EPERM | Errno::EACCES,
                ..
            }
        );
        if denied {
            let current = proc
                .read(&file)
                .map(|s| format!(" {}", s.trim()))
                .unwrap_or_default();
            invalid(format!(
                "cannot set {value}: lowering below the current value{current} needs \
                 CAP_SYS_RESOURCE: {e}"
            ))
        } else {
            invalid(format!("cannot set {value}: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tests::in_child;
    use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType};

    fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .expect("rlimit")
    }

    #[test]
    fn every_spec_rlimit_type_has_a_resource() {
        let json: Vec<String> = RLIMITS
            .iter()
            .map(|(name, _)| format!("{{\"type\":\"{name}\",\"soft\":1,\"hard\":1}}"))
            .collect();
        let parsed: Vec<PosixRlimit> =
            serde_json::from_str(&format!("[{}]", json.join(","))).expect("parse");
        validate(&parsed).expect("all known");
    }

    #[test]
    fn unknown_rlimit_type_is_invalid_naming_it() {
        let err = resource_from_name("RLIMIT_BOGUS").unwrap_err().to_string();
        assert!(
            err.contains("process.rlimits") && err.contains("RLIMIT_BOGUS"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_and_inverted_rlimits_are_rejected() {
        let twice = [
            rlimit(PosixRlimitType::RlimitCore, 0, 0),
            rlimit(PosixRlimitType::RlimitCore, 0, 0),
        ];
        let err = validate(&twice).unwrap_err().to_string();
        assert!(
            err.contains("RLIMIT_CORE") && err.contains("twice"),
            "{err}"
        );
        let inverted = [rlimit(PosixRlimitType::RlimitNofile, 10, 5)];
        let err = validate(&inverted).unwrap_err().to_string();
        assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    }

    #[test]
    fn nofile_limit_is_set_to_soft_and_hard() {
        in_child(|| {
            apply(&[rlimit(PosixRlimitType::RlimitNofile, 1024, 1024)])
                .map_err(|e| e.to_string())?;
            let got = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
            if got != (1024, 1024) {
                return Err(format!("getrlimit(RLIMIT_NOFILE) = {got:?}"));
            }
            Ok(())
        });
    }

    #[test]
    fn raising_nofile_hard_limit_fails_naming_the_limit() {
        in_child(|| {
            // Lower the hard limit first: raising it back needs CAP_SYS_RESOURCE, which the
            // child drops, so this fails on any host, not only on ones that withhold it.
            setrlimit(Resource::RLIMIT_NOFILE, 512, 512).map_err(|e| e.to_string())?;
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_RESOURCE,
            )
            .map_err(|e| e.to_string())?;
            let err = match apply(&[rlimit(PosixRlimitType::RlimitNofile, 1024, 1024)]) {
                Ok(()) => return Err("raising the hard limit succeeded".to_string()),
                Err(e) => e.to_string(),
            };
            if !(err.contains("process.rlimits")
                && err.contains("RLIMIT_NOFILE")
                && err.contains("CAP_SYS_RESOURCE"))
            {
                return Err(format!("error does not name the limit: {err}"));
            }
            Ok(())
        });
    }

    #[test]
    fn oom_score_adj_can_be_raised() {
        in_child(|| {
            set_oom_score_adj(std::process::id(), 500).map_err(|e| e.to_string())?;
            let got =
                std::fs::read_to_string("/proc/self/oom_score_adj").map_err(|e| e.to_string())?;
            if got.trim() != "500" {
                return Err(format!("oom_score_adj reads {got:?}"));
            }
            Ok(())
        });
    }

    #[test]
    fn lowering_oom_score_adj_without_cap_sys_resource_names_the_field() {
        in_child(|| {
            set_oom_score_adj(std::process::id(), 500).map_err(|e| e.to_string())?;
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_RESOURCE,
            )
            .map_err(|e| e.to_string())?;
            let err = match set_oom_score_adj(std::process::id(), -500) {
                Ok(()) => return Err("lowering oom_score_adj succeeded".to_string()),
                Err(e) => e.to_string(),
            };
            if !(err.contains("process.oomScoreAdj") && err.contains("-500")) {
                return Err(format!("error does not name the field: {err}"));
            }
            Ok(())
        });
    }

    #[test]
    fn out_of_range_oom_score_adj_is_invalid() {
        let err = set_oom_score_adj(1, 1001).unwrap_err().to_string();
        assert!(
            err.contains("process.oomScoreAdj") && err.contains("1001"),
            "{err}"
        );
    }
}
