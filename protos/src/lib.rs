//! mini's protobuf messages and the glue to containerd's generated types.
//!
//! containerd's own Task, Events and bootstrap messages come from `containerd-shim-protos`;
//! this crate adds the options containerd sends a runtime that are not in it, and decodes
//! them by type URL.

#![allow(clippy::all)]

mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}

use protobuf::Message;
use protobuf::well_known_types::any::Any;

pub use containerd_shim_protos as containerd;
pub use generated::runc_options::CreateOptions as RuncCreateOptions;
pub use generated::runc_v1_options::Options as RuncOptions;
pub use generated::runtimeoptions::Options as RuntimeOptions;

/// Type URL of containerd's generic runtime options (`runtimeoptions.v1.Options`).
pub const RUNTIME_OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";
/// `containerd.linux.runc.CreateOptions` (ctr's task options, e.g. for `--uidmap`).
pub const RUNC_CREATE_OPTIONS_TYPE_URL: &str = "containerd.linux.runc.CreateOptions";
/// `containerd.runc.v1.Options` (the runc shim's runtime options).
pub const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// What mini takes from the options of a CreateTaskRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// Owner of the process's stdio pipes (for a container in a user namespace).
    pub io_uid: u32,
    pub io_gid: u32,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// The cgroup the shim daemon joins at `start` (`ShimCgroup`).
    pub shim_cgroup: String,
    /// `SystemdCgroup`: place containers with the systemd cgroup driver (a transient scope).
    pub systemd_cgroup: bool,
}

/// The keys of a mini runtime's `options` table (containerd's
/// `[…runtimes.mini.options]`), as CRI sends them in `runtimeoptions.v1.Options.config_body`
/// or as a file named by `ConfigPath`. Any other key is an error naming it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct MiniOptions {
    shim_cgroup: Option<String>,
    io_uid: Option<u32>,
    io_gid: Option<u32>,
    no_new_keyring: Option<bool>,
    systemd_cgroup: Option<bool>,
    /// containerd's own keys of runtimeoptions.v1.Options: it reads them itself.
    type_url: Option<String>,
    config_path: Option<String>,
}

/// The options in a mini runtime's TOML `options` table (`source` names it in errors).
pub fn parse_toml_options(body: &str, source: &str) -> Result<TaskOptions, String> {
    let o: MiniOptions = toml::from_str(body).map_err(|e| {
        format!(
            "runtime options ({source}): {}; mini takes ShimCgroup, IoUid, IoGid, NoNewKeyring and SystemdCgroup",
            e.message()
        )
    })?;
    let _ = (o.type_url, o.config_path);
    Ok(TaskOptions {
        io_uid: o.io_uid.unwrap_or(0),
        io_gid: o.io_gid.unwrap_or(0),
        no_new_keyring: o.no_new_keyring.unwrap_or(false),
        shim_cgroup: o.shim_cgroup.unwrap_or_default(),
        systemd_cgroup: o.systemd_cgroup.unwrap_or(false),
        ..Default::default()
    })
}

/// runtimeoptions.v1.Options: the TOML body (containerd 1.7+), else the file `config_path`
/// names (1.6, or `ConfigPath` set, or ctr's `--runtime-config-path`).
fn runtime_options(o: &RuntimeOptions) -> Result<TaskOptions, String> {
    if !o.config_body.trim().is_empty() {
        return parse_toml_options(&o.config_body, "config_body");
    }
    if o.config_path.is_empty() {
        return Ok(TaskOptions::default());
    }
    if !o.config_path.starts_with('/') {
        return Err(format!(
            "runtime options: ConfigPath {:?} is not an absolute path",
            o.config_path
        ));
    }
    let body = std::fs::read_to_string(&o.config_path)
        .map_err(|e| format!("runtime options: ConfigPath {:?}: {e}", o.config_path))?;
    parse_toml_options(&body, &o.config_path)
}

/// Decodes the options by their type URL (with or without the `type.googleapis.com/`
/// prefix). An unknown type is an error naming it.
pub fn decode_task_options(any: Option<&Any>) -> Result<TaskOptions, String> {
    let Some(any) = any else {
        return Ok(TaskOptions::default());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let bad = |e: protobuf::Error| format!("decode {name}: {e}");
    match name {
        "" if any.value.is_empty() => Ok(TaskOptions::default()),
        RUNTIME_OPTIONS_TYPE_URL => {
            let o = RuntimeOptions::parse_from_bytes(&any.value).map_err(bad)?;
            runtime_options(&o)
        }
        RUNC_CREATE_OPTIONS_TYPE_URL => {
            let o = RuncCreateOptions::parse_from_bytes(&any.value).map_err(bad)?;
            Ok(runc_fields(
                o.io_uid,
                o.io_gid,
                o.no_pivot_root,
                o.no_new_keyring,
                o.shim_cgroup,
                false,
            ))
        }
        RUNC_OPTIONS_TYPE_URL => {
            let o = RuncOptions::parse_from_bytes(&any.value).map_err(bad)?;
            Ok(runc_fields(
                o.io_uid,
                o.io_gid,
                o.no_pivot_root,
                o.no_new_keyring,
                o.shim_cgroup,
                o.systemd_cgroup,
            ))
        }
        other => Err(format!(
            "runtime options of type {other:?} are not understood by mini (it takes {RUNTIME_OPTIONS_TYPE_URL}, {RUNC_CREATE_OPTIONS_TYPE_URL} or {RUNC_OPTIONS_TYPE_URL})"
        )),
    }
}

/// The fields of the runc option messages, as mini takes them (`systemd_cgroup` is in
/// `Options` only).
fn runc_fields(
    io_uid: u32,
    io_gid: u32,
    no_pivot_root: bool,
    no_new_keyring: bool,
    shim_cgroup: String,
    systemd_cgroup: bool,
) -> TaskOptions {
    TaskOptions {
        io_uid,
        io_gid,
        no_pivot_root,
        no_new_keyring,
        shim_cgroup,
        systemd_cgroup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any<M: Message>(url: &str, m: &M) -> Any {
        Any {
            type_url: url.into(),
            value: m.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn no_options_are_defaults() {
        assert_eq!(decode_task_options(None).unwrap(), TaskOptions::default());
    }

    #[test]
    fn ctr_uidmap_create_options_give_the_io_owner() {
        let o = RuncCreateOptions {
            io_uid: 100000,
            io_gid: 100000,
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(RUNC_CREATE_OPTIONS_TYPE_URL, &o))).unwrap();
        assert_eq!((got.io_uid, got.io_gid), (100000, 100000));
    }

    #[test]
    fn runtime_options_with_the_googleapis_prefix_read_the_config_path() {
        let dir = std::env::temp_dir().join(format!("mini-protos-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mini.toml");
        std::fs::write(&file, "ShimCgroup = \"/shim\"\nIoUid = 7\n").unwrap();
        let o = RuntimeOptions {
            config_path: file.to_str().unwrap().into(),
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(
            "type.googleapis.com/runtimeoptions.v1.Options",
            &o,
        )));
        std::fs::remove_dir_all(&dir).unwrap();
        let got = got.unwrap();
        assert_eq!((got.shim_cgroup.as_str(), got.io_uid), ("/shim", 7));
    }

    #[test]
    fn cri_config_body_decodes_and_unknown_keys_are_named() {
        let o = RuntimeOptions {
            type_url: "runtimeoptions.v1.Options".into(),
            config_body:
                "ShimCgroup = \"/k8s-shims\"\nIoUid = 1000\nIoGid = 1001\nNoNewKeyring = true\n"
                    .into(),
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(RUNTIME_OPTIONS_TYPE_URL, &o))).unwrap();
        assert_eq!(got.shim_cgroup, "/k8s-shims");
        assert_eq!(
            (got.io_uid, got.io_gid, got.no_new_keyring),
            (1000, 1001, true)
        );

        let o = RuntimeOptions {
            config_body: "SystemdCgroup = true\n".into(),
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(RUNTIME_OPTIONS_TYPE_URL, &o))).unwrap();
        assert!(got.systemd_cgroup);
        let o = RuntimeOptions {
            config_body: "SystemdCgroups = true\n".into(),
            ..Default::default()
        };
        let err = decode_task_options(Some(&any(RUNTIME_OPTIONS_TYPE_URL, &o))).unwrap_err();
        assert!(err.contains("SystemdCgroups"), "{err}");
        let o = RuntimeOptions {
            config_body: "IoUid = \"root\"\n".into(),
            ..Default::default()
        };
        assert!(decode_task_options(Some(&any(RUNTIME_OPTIONS_TYPE_URL, &o))).is_err());
        let o = RuntimeOptions {
            config_path: "relative.toml".into(),
            ..Default::default()
        };
        let err = decode_task_options(Some(&any(RUNTIME_OPTIONS_TYPE_URL, &o))).unwrap_err();
        assert!(err.contains("relative.toml"), "{err}");
    }

    #[test]
    fn runc_options_carry_the_shim_cgroup() {
        let o = RuncOptions {
            shim_cgroup: "/shims".into(),
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(RUNC_OPTIONS_TYPE_URL, &o))).unwrap();
        assert_eq!(got.shim_cgroup, "/shims");
    }

    #[test]
    fn unknown_types_are_refused_by_name_and_runc_systemd_cgroup_is_taken() {
        let a = Any {
            type_url: "example.Unknown".into(),
            value: vec![1],
            ..Default::default()
        };
        assert!(
            decode_task_options(Some(&a))
                .unwrap_err()
                .contains("example.Unknown")
        );
        let o = RuncOptions {
            systemd_cgroup: true,
            ..Default::default()
        };
        assert!(
            decode_task_options(Some(&any(RUNC_OPTIONS_TYPE_URL, &o)))
                .unwrap()
                .systemd_cgroup
        );
    }
}
