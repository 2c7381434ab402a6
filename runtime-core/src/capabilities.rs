//! The five capability sets of `process.capabilities`.
//!
//! The init calls [`drop_bounding`] while it is still root with `CAP_SETPCAP`, changes its user
//! (keeping its permitted set with `PR_SET_KEEPCAPS`), then calls [`apply`] for the other four
//! sets. A set the spec leaves out is empty. A name that is no capability at all is refused when
//! config.json is parsed (naming its JSON path); a capability this kernel does not have is
//! skipped with a warning, as runc does, so one profile serves hosts of different ages. An
//! ambient capability that is not also permitted and inheritable is skipped, as runc does.

use std::collections::HashSet;

use caps::{CapSet, Capability as KernelCap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::{Error, Result};

/// The JSON keys of `process.capabilities`, in the order the spec lists them.
const SET_NAMES: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Highest capability index a 64-bit capability mask can carry.
const MAX_CAP_INDEX: u32 = 63;

/// Drops every capability not in the bounding set. Runs before the uid changes.
///
/// Also drops capabilities newer than the `caps` crate knows if the kernel has them, so the
/// bounding set never keeps more than the spec lists.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<()> {
    let keep = resolve(caps.bounding().as_ref());
    for cap in kernel_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| cap_error("bounding", "drop", &cap.to_string(), e))?;
        }
    }
    let first_unknown = caps::all()
        .iter()
        .map(|c| u32::from(c.index()))
        .max()
        .unwrap_or(0)
        + 1;
    for index in first_unknown..=MAX_CAP_INDEX {
        if !bounding_has_index(index) {
            break;
        }
        bounding_drop_index(index).map_err(|errno| {
            Error::sys(
                "prctl",
                format!("PR_CAPBSET_DROP capability {index} (process.capabilities.bounding)"),
                errno,
            )
        })?;
    }
    Ok(())
}

/// Sets the effective, permitted, inheritable and ambient sets. Runs after the uid changes
/// (with PR_SET_KEEPCAPS), just before exec.
///
/// The order is inheritable, permitted, effective, ambient. Inheritable goes first because
/// the kernel only lets it grow within the permitted set of the moment (after a uid change
/// the effective set, and with it CAP_SETPCAP, is empty); permitted then narrows, effective
/// takes what the spec lists of it, and ambient capabilities must already be permitted and
/// inheritable.
pub fn apply(caps: &LinuxCapabilities) -> Result<()> {
    let permitted = resolve(caps.permitted().as_ref());
    let inheritable = resolve(caps.inheritable().as_ref());
    let effective = resolve(caps.effective().as_ref());
    let ambient = resolve(caps.ambient().as_ref());

    // The kernel refuses a permitted set that leaves the current effective set outside it, so
    // first narrow effective to what stays permitted.
    let current_effective = caps::read(None, CapSet::Effective)
        .map_err(|e| cap_error("effective", "read", "current set", e))?;
    let narrowed: CapsHashSet = current_effective
        .intersection(&permitted)
        .copied()
        .collect();
    caps::set(None, CapSet::Effective, &narrowed)
        .map_err(|e| set_error("effective", &narrowed, e))?;

    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| set_error("inheritable", &inheritable, e))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| set_error("permitted", &permitted, e))?;
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| set_error("effective", &effective, e))?;

    caps::clear(None, CapSet::Ambient).map_err(|e| cap_error("ambient", "clear", "all", e))?;
    for cap in sorted(&raisable_ambient(&ambient, &permitted, &inheritable)) {
        caps::raise(None, CapSet::Ambient, cap)
            .map_err(|e| Error::Setup(format!("process.capabilities.ambient: raise {cap}: {e}")))?;
    }
    Ok(())
}

/// The ambient capabilities that can be raised: those also permitted and inheritable. The
/// kernel refuses the others, and runc skips them (with a warning) rather than failing the
/// container: `runc spec`'s own config lists ambient capabilities it leaves out of the
/// inheritable set. mini skips them too, with a warning from [`ungranted`].
pub fn raisable_ambient(
    ambient: &CapsHashSet,
    permitted: &CapsHashSet,
    inheritable: &CapsHashSet,
) -> CapsHashSet {
    ambient
        .iter()
        .filter(|cap| permitted.contains(cap) && inheritable.contains(cap))
        .copied()
        .collect()
}

/// Reads a `process.capabilities` object, skipping (with a warning) the names that `oci_spec`
/// does not know. config.json itself is parsed strictly (`spec::parse` refuses such a name,
/// naming its JSON path, as the runtime-spec asks); this is for sets assembled elsewhere,
/// such as the tests' own.
pub fn from_json_lenient(value: &serde_json::Value) -> Result<LinuxCapabilities> {
    let object = value
        .as_object()
        .ok_or_else(|| Error::invalid("process.capabilities", "not an object"))?;
    let mut sets: [Option<Capabilities>; 5] = Default::default();
    for (slot, set_name) in sets.iter_mut().zip(SET_NAMES) {
        let Some(list) = object.get(set_name) else {
            continue;
        };
        if list.is_null() {
            continue;
        }
        let names = list.as_array().ok_or_else(|| {
            Error::invalid(
                format!("process.capabilities.{set_name}"),
                "not a list of names",
            )
        })?;
        let mut set = HashSet::new();
        for name in names {
            let text = name.as_str().ok_or_else(|| {
                Error::invalid(
                    format!("process.capabilities.{set_name}"),
                    format!("{name} is not a string"),
                )
            })?;
            match serde_json::from_value::<Capability>(name.clone()) {
                Ok(cap) => {
                    set.insert(cap);
                }
                Err(_) => log::warn!(
                    "process.capabilities.{set_name}: unknown capability {text}, skipped"
                ),
            }
        }
        *slot = Some(set);
    }
    let [bounding, effective, inheritable, permitted, ambient] = sets;
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(bounding)
        .set_effective(effective)
        .set_inheritable(inheritable)
        .set_permitted(permitted)
        .set_ambient(ambient);
    Ok(caps)
}

/// The kernel capabilities of one spec set: names the `caps` crate or this kernel does not
/// know are skipped ([`ungranted`] warns of them before the container is made); an absent set
/// is empty.
fn resolve(set: Option<&Capabilities>) -> CapsHashSet {
    let supported = kernel_supported();
    set.into_iter()
        .flatten()
        .filter_map(|cap| format!("CAP_{cap}").parse::<KernelCap>().ok())
        .filter(|cap| supported.contains(cap))
        .collect()
}

/// What of `caps` cannot be granted, one warning each naming the set and the capability:
/// names this kernel does not know, and ambient capabilities that are not also permitted and
/// inheritable. They are skipped, as runc skips them; the runtime-spec asks for a warning
/// ("MUST be logged as a warning by the runtime"). Checked with the spec, in the caller's
/// process, whose log the warnings reach (the container's init has no way to report them).
pub fn ungranted(caps: &LinuxCapabilities) -> Vec<String> {
    let supported = kernel_supported();
    let mut out = Vec::new();
    for (set_name, set) in [
        ("bounding", caps.bounding()),
        ("effective", caps.effective()),
        ("inheritable", caps.inheritable()),
        ("permitted", caps.permitted()),
        ("ambient", caps.ambient()),
    ] {
        for cap in set.iter().flatten() {
            let name = format!("CAP_{cap}");
            if !name
                .parse::<KernelCap>()
                .is_ok_and(|c| supported.contains(&c))
            {
                out.push(format!(
                    "process.capabilities.{set_name}: {name} is not supported by this kernel, skipped"
                ));
            }
        }
    }
    let ambient = resolve(caps.ambient().as_ref());
    let raisable = raisable_ambient(
        &ambient,
        &resolve(caps.permitted().as_ref()),
        &resolve(caps.inheritable().as_ref()),
    );
    for cap in sorted(&ambient) {
        if !raisable.contains(&cap) {
            out.push(format!(
                "process.capabilities.ambient: {cap} is not also permitted and inheritable, skipped"
            ));
        }
    }
    out
}

/// Capabilities this kernel has (those `PR_CAPBSET_READ` accepts); needs no /proc. Probed
/// once per process (one prctl per capability; a create asked about 600 times across its
/// processes): the kernel's list does not change, and a forked child inherits it. Kept as a
/// bit mask in an atomic, never behind a lock: a child forked while another thread probes
/// (the setup paths fork) must not inherit a lock held by a thread it does not have.
fn kernel_supported() -> CapsHashSet {
    use std::sync::atomic::{AtomicU64, Ordering};
    /// Bit 63: the mask is known (capability numbers stay far below it).
    const KNOWN: u64 = 1 << 63;
    static SUPPORTED: AtomicU64 = AtomicU64::new(0);
    let mut mask = SUPPORTED.load(Ordering::Relaxed);
    if mask & KNOWN == 0 {
        mask = caps::runtime::thread_all_supported()
            .iter()
            .fold(KNOWN, |m, c| m | 1 << c.index());
        SUPPORTED.store(mask, Ordering::Relaxed);
    }
    caps::all()
        .into_iter()
        .filter(|c| mask & (1 << c.index()) != 0)
        .collect()
}

/// A set's members in index order, so errors and ambient raises are deterministic.
fn sorted(set: &CapsHashSet) -> Vec<KernelCap> {
    let mut caps: Vec<KernelCap> = set.iter().copied().collect();
    caps.sort_by_key(|c| c.index());
    caps
}

fn set_error(set_name: &str, value: &CapsHashSet, e: caps::errors::CapsError) -> Error {
    let names: Vec<String> = sorted(value).iter().map(|c| c.to_string()).collect();
    cap_error(set_name, "set", &format!("[{}]", names.join(", ")), e)
}

fn cap_error(set_name: &str, action: &str, what: &str, e: caps::errors::CapsError) -> Error {
    Error::Setup(format!(
        "process.capabilities.{set_name}: {action} {what}: {e}"
    ))
}

/// Whether the bounding set has capability `index`; false once the kernel does not know it.
fn bounding_has_index(index: u32) -> bool {
    // SAFETY: PR_CAPBSET_READ takes a capability number and reads no memory.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(index), 0, 0, 0) };
    ret == 1
}

/// Drops capability `index` from the bounding set.
fn bounding_drop_index(index: u32) -> std::result::Result<(), nix::errno::Errno> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and reads no memory.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork, pipe};

    /// Runs `f` in a forked child, so changes to process-wide state (capabilities, rlimits,
    /// seccomp) stay out of the test process; panics with the child's message if it fails.
    pub(crate) fn in_child(f: impl FnOnce() -> std::result::Result<(), String>) {
        let (read_end, write_end): (OwnedFd, OwnedFd) = pipe().expect("pipe");
        // SAFETY: the child only runs `f`, writes to a pipe and `_exit`s; it never returns into
        // the test harness and touches no lock another thread may hold besides malloc's, which
        // glibc resets in the child.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                drop(read_end);
                let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    Ok(Ok(())) => 0,
                    Ok(Err(msg)) => {
                        let _ = std::fs::File::from(write_end).write_all(msg.as_bytes());
                        1
                    }
                    Err(_) => 2,
                };
                // SAFETY: _exit ends the child without running the parent's atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                let mut msg = String::new();
                let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
                match waitpid(child, None).expect("waitpid") {
                    WaitStatus::Exited(_, 0) => {}
                    status => panic!("child failed: {status:?}: {msg}"),
                }
            }
        }
    }

    /// The hex mask of a `/proc/self/status` line such as `CapEff:`.
    /// Checks each `/proc/self/status` capability line against its expected mask.
    fn expect_masks(want: &[(&str, u64)]) -> Result<(), String> {
        for &(key, expected) in want {
            let mask = status_mask(key)?;
            if mask != expected {
                return Err(format!("{key} {mask:#x}, want {expected:#x}"));
            }
        }
        Ok(())
    }

    pub(crate) fn status_mask(key: &str) -> std::result::Result<u64, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| format!("no {key} in /proc/self/status"))?;
        u64::from_str_radix(line.trim(), 16).map_err(|e| format!("{key} {line}: {e}"))
    }

    fn only_chown_json() -> serde_json::Value {
        serde_json::json!({
            "bounding": ["CAP_CHOWN"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN"],
        })
    }

    #[test]
    fn every_oci_capability_maps_to_a_kernel_capability() {
        let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        let spec: Capabilities = serde_json::from_value(serde_json::json!(all)).expect("oci names");
        for cap in &spec {
            format!("CAP_{cap}")
                .parse::<KernelCap>()
                .expect("caps crate name");
        }
        assert_eq!(spec.len(), caps::all().len());
    }

    #[test]
    fn unknown_capability_name_is_skipped() {
        let json = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_FROM_THE_FUTURE"],
            "effective": ["CAP_FROM_THE_FUTURE"],
        });
        let caps = from_json_lenient(&json).expect("lenient parse");
        assert_eq!(caps.bounding().as_ref().map(|s| s.len()), Some(1));
        assert!(
            caps.bounding()
                .as_ref()
                .is_some_and(|s| s.contains(&Capability::Chown))
        );
        assert_eq!(caps.effective().as_ref().map(|s| s.len()), Some(0));
        assert!(caps.permitted().is_none(), "absent set stays absent");
    }

    #[test]
    fn malformed_capability_set_is_rejected_naming_it() {
        let err = from_json_lenient(&serde_json::json!({"ambient": "CAP_CHOWN"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("process.capabilities.ambient"), "{err}");
    }

    #[test]
    fn only_chown_leaves_cap_eff_and_cap_bnd_at_bit_zero() {
        let caps = from_json_lenient(&only_chown_json()).expect("parse");
        in_child(move || {
            drop_bounding(&caps).map_err(|e| e.to_string())?;
            apply(&caps).map_err(|e| e.to_string())?;
            for key in ["CapEff:", "CapBnd:", "CapPrm:"] {
                let mask = status_mask(key)?;
                if mask != 0x1 {
                    return Err(format!("{key} {mask:#x}, want 0x1"));
                }
            }
            for key in ["CapInh:", "CapAmb:"] {
                let mask = status_mask(key)?;
                if mask != 0 {
                    return Err(format!("{key} {mask:#x}, want 0 (absent set)"));
                }
            }
            Ok(())
        });
    }

    #[test]
    fn ambient_capabilities_that_cannot_be_raised_are_warned_of() {
        let caps = from_json_lenient(&serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_NET_RAW"],
        }))
        .unwrap();
        assert_eq!(
            ungranted(&caps),
            [
                "process.capabilities.ambient: CAP_KILL is not also permitted and inheritable, skipped"
            ]
        );
    }

    #[test]
    fn ambient_capability_is_raised_when_permitted_and_inheritable() {
        let json = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"],
        });
        let caps = from_json_lenient(&json).expect("parse");
        in_child(move || {
            drop_bounding(&caps).map_err(|e| e.to_string())?;
            apply(&caps).map_err(|e| e.to_string())?;
            let kill = 1u64 << 5;
            let want = [
                ("CapAmb:", kill),
                ("CapInh:", kill),
                ("CapEff:", kill | 1),
                ("CapBnd:", kill | 1),
            ];
            expect_masks(&want)
        });
    }

    #[test]
    fn sets_apply_after_uid_change_with_inheritable_outside_permitted() {
        let json = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN"],
            "inheritable": ["CAP_KILL"],
        });
        let caps = from_json_lenient(&json).expect("parse");
        in_child(move || {
            drop_bounding(&caps).map_err(|e| e.to_string())?;
            // What the init does between the two calls: keep permitted across setresuid.
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
                return Err("PR_SET_KEEPCAPS failed".to_string());
            }
            let uid = nix::unistd::Uid::from_raw(1000);
            nix::unistd::setresuid(uid, uid, uid).map_err(|e| e.to_string())?;
            apply(&caps).map_err(|e| e.to_string())?;
            let want = [
                ("CapEff:", 1),
                ("CapPrm:", 1),
                ("CapInh:", 1u64 << 5),
                ("CapAmb:", 0),
            ];
            expect_masks(&want)
        });
    }

    #[test]
    fn ambient_capability_not_inheritable_is_skipped_as_runc_does() {
        // `runc spec`'s default: CAP_KILL ambient and permitted but not inheritable.
        let json = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "inheritable": ["CAP_CHOWN"],
            "ambient": ["CAP_CHOWN", "CAP_KILL"],
        });
        let caps = from_json_lenient(&json).expect("parse");
        in_child(move || {
            drop_bounding(&caps).map_err(|e| e.to_string())?;
            apply(&caps).map_err(|e| e.to_string())?;
            let kill = 1u64 << 5;
            expect_masks(&[
                ("CapAmb:", 1),
                ("CapInh:", 1),
                ("CapPrm:", kill | 1),
                ("CapEff:", kill | 1),
            ])
        });
    }
}
