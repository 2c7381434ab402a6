//! The systemd cgroup driver's naming: a `slice:prefix:name` cgroupsPath becomes the
//! transient scope `prefix-name.scope` in the slice, whose directory systemd keeps at the
//! slice chain's path (`a-b.slice` lives in `a.slice/a-b.slice`), as runc's systemd driver
//! names it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What `sd_booted(3)` checks: the directory systemd creates when it runs as the init.
pub const RUNNING_MARKER: &str = "/run/systemd/system";

/// The slice of a scope whose cgroupsPath leaves the slice empty (a system instance's).
const DEFAULT_SLICE: &str = "system.slice";
/// The scope prefix when there is no cgroupsPath at all (runc uses `runc`).
const DEFAULT_PREFIX: &str = "mini";

const FIELD: &str = "linux.cgroupsPath";

/// Whether systemd runs as this host's init.
pub fn running() -> bool {
    Path::new(RUNNING_MARKER).is_dir()
}

/// A container's transient scope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// The scope's unit name, e.g. `cri-containerd-abc.scope`.
    pub name: String,
    /// The slice it is started in, e.g. `kubepods-besteffort-pod1.slice`.
    pub slice: String,
    /// Its cgroup below the cgroup2 root, e.g.
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope`.
    pub cgroup: PathBuf,
}

impl Unit {
    /// The scope for container `id` at `cgroups_path`: `slice:prefix:name`, or none for
    /// `system.slice` and `mini-<id>.scope`. An empty slice means `system.slice`; an empty
    /// prefix gives `name.scope`.
    pub fn for_container(id: &str, cgroups_path: Option<&Path>) -> Result<Self> {
        let (slice, prefix, name) = match cgroups_path {
            None => (DEFAULT_SLICE.to_string(), DEFAULT_PREFIX, id.to_string()),
            Some(path) => {
                let text = path.to_string_lossy();
                let parts: Vec<&str> = text.split(':').collect();
                let [slice, prefix, name] = parts[..] else {
                    return Err(Error::invalid(
                        FIELD,
                        format!(
                            "{text:?}: the systemd cgroup driver takes the form \
                             slice:prefix:name, e.g. system.slice:mini:{id}"
                        ),
                    ));
                };
                let slice = if slice.is_empty() {
                    DEFAULT_SLICE
                } else {
                    slice
                };
                return Self::build(slice.to_string(), prefix, name, &text);
            }
        };
        Self::build(slice, prefix, &name, id)
    }

    fn build(slice: String, prefix: &str, name: &str, shown: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::invalid(
                FIELD,
                format!("{shown:?}: the name part of slice:prefix:name is empty"),
            ));
        }
        if name.ends_with(".slice") {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "{shown:?}: a name ending in .slice asks for a slice unit; mini places a \
                     container in a scope only"
                ),
            ));
        }
        let unit = if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        if let Some(bad) = unit.chars().find(|c| !valid_unit_char(*c)) {
            return Err(Error::invalid(
                FIELD,
                format!("{shown:?}: {bad:?} cannot be part of the systemd unit name {unit:?}"),
            ));
        }
        let mut cgroup = expand_slice(&slice)
            .map_err(|msg| Error::invalid(FIELD, format!("{shown:?}: slice {slice:?}: {msg}")))?;
        cgroup.push(&unit);
        Ok(Self {
            name: unit,
            slice,
            cgroup,
        })
    }
}

/// Characters systemd accepts in a unit name (`unit_name_is_valid`); `\` escapes aside.
fn valid_unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')
}

/// The cgroup of a slice below the cgroup2 root, as systemd nests slices: every `-` in the
/// name is one level (`a-b.slice` is `a.slice/a-b.slice`); `-.slice` is the root itself.
pub fn expand_slice(slice: &str) -> std::result::Result<PathBuf, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err("a slice name ends in .slice".into());
    };
    if stem.is_empty() || slice.contains('/') {
        return Err("not a slice unit name".into());
    }
    if let Some(bad) = slice.chars().find(|c| !valid_unit_char(*c)) {
        return Err(format!("{bad:?} cannot be part of a unit name"));
    }
    let mut path = PathBuf::new();
    if stem == "-" {
        return Ok(path);
    }
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return Err("empty component between dashes".into());
        }
        path.push(format!("{prefix}{component}.slice"));
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_nest_at_each_dash() {
        assert_eq!(
            expand_slice("kubepods-besteffort-pod12ab.slice").unwrap(),
            Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12ab.slice")
        );
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            Path::new("system.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new(""));
        for bad in [
            "system",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            "a b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cri_path_gives_a_prefixed_scope_in_the_pods_slice() {
        let unit = Unit::for_container(
            "abc",
            Some(Path::new(
                "kubepods-burstable-pod1.slice:cri-containerd:abc",
            )),
        )
        .unwrap();
        assert_eq!(unit.name, "cri-containerd-abc.scope");
        assert_eq!(unit.slice, "kubepods-burstable-pod1.slice");
        assert_eq!(
            unit.cgroup,
            Path::new(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
            )
        );
    }

    #[test]
    fn empty_slice_is_system_slice_and_empty_prefix_drops_the_dash() {
        let unit = Unit::for_container("c1", Some(Path::new(":mini-test:c1"))).unwrap();
        assert_eq!(unit.cgroup, Path::new("system.slice/mini-test-c1.scope"));
        let unit = Unit::for_container("c1", Some(Path::new("system.slice::c1"))).unwrap();
        assert_eq!(unit.name, "c1.scope");
        let unit = Unit::for_container("c1", None).unwrap();
        assert_eq!(unit.cgroup, Path::new("system.slice/mini-c1.scope"));
    }

    #[test]
    fn paths_not_in_the_systemd_form_are_named_in_the_error() {
        for bad in [
            "/mini/c1",
            "a.slice:b",
            "system.slice:mini:",
            "system.slice:mini:x.slice",
            "system:mini:c1",
            "system.slice:mi/ni:c1",
            "system.slice:mini:c 1",
        ] {
            let err = Unit::for_container("c1", Some(Path::new(bad))).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("linux.cgroupsPath"), "{bad}: {msg}");
            assert!(msg.contains(bad), "{bad}: {msg}");
        }
    }
}
