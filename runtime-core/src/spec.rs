//! Loading and validating `config.json`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::{Error, Result};

/// Reads `bundle/config.json` and checks what the runtime needs before touching the kernel.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path)
        .map_err(|e| Error::invalid("config.json", format!("{}: {e}", path.display())))?;
    validate(&spec)?;
    Ok(spec)
}

/// Checks the parts of the spec that every container needs.
pub fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing"))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(Error::invalid("process.args", "empty: nothing to run")),
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    if spec.root().is_none() {
        return Err(Error::invalid("root", "missing"));
    }
    if spec.linux().is_none() {
        return Err(Error::invalid(
            "linux",
            "missing: mini runs Linux containers only",
        ));
    }
    refuse_unsupported(spec)
}

/// What mini cannot do yet fails here, by name, rather than being silently ignored.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    if let Some(hooks) = spec.hooks() {
        let any =
            |h: &Option<Vec<oci_spec::runtime::Hook>>| h.as_ref().is_some_and(|v| !v.is_empty());
        #[allow(deprecated)]
        let prestart = any(hooks.prestart());
        if prestart
            || any(hooks.create_runtime())
            || any(hooks.create_container())
            || any(hooks.start_container())
            || any(hooks.poststart())
            || any(hooks.poststop())
        {
            return Err(Error::invalid(
                "hooks",
                "OCI hooks are not supported by mini yet",
            ));
        }
    }
    if let Some(process) = spec.process() {
        if process
            .apparmor_profile()
            .as_deref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(Error::invalid(
                "process.apparmorProfile",
                "AppArmor profiles are not supported by mini yet",
            ));
        }
        if process
            .selinux_label()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
        {
            return Err(Error::invalid(
                "process.selinuxLabel",
                "SELinux labels are not supported by mini yet",
            ));
        }
    }
    Ok(())
}

/// The container's root filesystem on the host: `root.path`, relative to the bundle unless
/// absolute.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, SpecBuilder};

    #[test]
    fn default_spec_is_valid() {
        validate(&Spec::default()).unwrap();
    }

    #[test]
    fn empty_args_are_rejected_naming_the_field() {
        let process = ProcessBuilder::default()
            .args(Vec::<String>::new())
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn hooks_and_lsm_labels_are_refused_by_name() {
        let hook = oci_spec::runtime::HookBuilder::default()
            .path("/bin/true")
            .build()
            .unwrap();
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().hooks(hooks).build().unwrap();
        assert!(validate(&spec).unwrap_err().to_string().contains("hooks"));

        let process = ProcessBuilder::default()
            .apparmor_profile("docker-default")
            .build()
            .unwrap();
        let spec = SpecBuilder::default().process(process).build().unwrap();
        assert!(
            validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("process.apparmorProfile")
        );
    }

    #[test]
    fn relative_root_is_inside_the_bundle() {
        let spec = Spec::default();
        assert_eq!(
            rootfs_path(&spec, Path::new("/b")),
            PathBuf::from("/b/rootfs")
        );
    }
}
