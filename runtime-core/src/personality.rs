//! `linux.personality`: the execution domain (`LINUX`, `LINUX32`) and flags of
//! `personality(2)`, set in the container init before the exec (the personality survives
//! execve).

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

use crate::{Error, Result};

/// PER_LINUX32 of <linux/personality.h>; PER_LINUX is 0.
const PER_LINUX32: libc::c_ulong = 0x0008;

/// The flag names of <linux/personality.h> and their bits. The runtime-spec leaves the
/// names open; any other name is refused rather than ignored.
const FLAGS: &[(&str, libc::c_ulong)] = &[
    ("UNAME26", 0x002_0000),
    ("ADDR_NO_RANDOMIZE", 0x004_0000),
    ("FDPIC_FUNCPTRS", 0x008_0000),
    ("MMAP_PAGE_ZERO", 0x010_0000),
    ("ADDR_COMPAT_LAYOUT", 0x020_0000),
    ("READ_IMPLIES_EXEC", 0x040_0000),
    ("ADDR_LIMIT_32BIT", 0x080_0000),
    ("SHORT_INODE", 0x100_0000),
    ("WHOLE_SECONDS", 0x200_0000),
    ("STICKY_TIMEOUTS", 0x400_0000),
    ("ADDR_LIMIT_3GB", 0x800_0000),
];

/// The `personality(2)` argument of the spec's personality; an unknown flag is an error
/// naming it (`linux.personality.flags[i]`).
pub fn value(p: &LinuxPersonality) -> Result<libc::c_ulong> {
    let mut persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    for (i, name) in p.flags().iter().flatten().enumerate() {
        let bit = FLAGS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bit)| *bit)
            .ok_or_else(|| {
                let known: Vec<&str> = FLAGS.iter().map(|(n, _)| *n).collect();
                Error::invalid(
                    format!("linux.personality.flags[{i}]"),
                    format!("{name:?} is not a personality flag ({})", known.join(", ")),
                )
            })?;
        persona |= bit;
    }
    Ok(persona)
}

/// Sets the calling process's personality to the spec's.
pub fn apply(p: &LinuxPersonality) -> Result<()> {
    let persona = value(p)?;
    // SAFETY: personality takes an integer and changes only this process's execution domain.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(Error::sys(
            "personality",
            format!("linux.personality {:#x}", persona),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LinuxPersonality {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn domains_and_flags_make_the_personality_argument() {
        assert_eq!(value(&parse(r#"{"domain":"LINUX"}"#)).unwrap(), 0);
        assert_eq!(value(&parse(r#"{"domain":"LINUX32"}"#)).unwrap(), 8);
        assert_eq!(
            value(&parse(
                r#"{"domain":"LINUX32","flags":["ADDR_NO_RANDOMIZE","UNAME26"]}"#
            ))
            .unwrap(),
            8 | 0x4_0000 | 0x2_0000
        );
    }

    #[test]
    fn an_unknown_flag_is_refused_naming_it() {
        let err = value(&parse(
            r#"{"domain":"LINUX","flags":["UNAME26","NO_SUCH"]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("linux.personality.flags[1]") && err.contains("NO_SUCH"),
            "{err}"
        );
    }
}
