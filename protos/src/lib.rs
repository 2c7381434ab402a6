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
    /// `runtimeoptions.v1.Options.config_path`, when set.
    pub config_path: String,
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
            Ok(TaskOptions {
                config_path: o.config_path,
                ..Default::default()
            })
        }
        RUNC_CREATE_OPTIONS_TYPE_URL => {
            let o = RuncCreateOptions::parse_from_bytes(&any.value).map_err(bad)?;
            Ok(runc_fields(
                o.io_uid,
                o.io_gid,
                o.no_pivot_root,
                o.no_new_keyring,
            ))
        }
        RUNC_OPTIONS_TYPE_URL => {
            let o = RuncOptions::parse_from_bytes(&any.value).map_err(bad)?;
            if o.systemd_cgroup {
                return Err("SystemdCgroup = true needs the systemd cgroup driver, which mini does not have".into());
            }
            Ok(runc_fields(
                o.io_uid,
                o.io_gid,
                o.no_pivot_root,
                o.no_new_keyring,
            ))
        }
        other => Err(format!(
            "runtime options of type {other:?} are not understood by mini (it takes {RUNTIME_OPTIONS_TYPE_URL}, {RUNC_CREATE_OPTIONS_TYPE_URL} or {RUNC_OPTIONS_TYPE_URL})"
        )),
    }
}

/// The fields both runc option messages carry, as mini takes them.
fn runc_fields(io_uid: u32, io_gid: u32, no_pivot_root: bool, no_new_keyring: bool) -> TaskOptions {
    TaskOptions {
        io_uid,
        io_gid,
        no_pivot_root,
        no_new_keyring,
        ..Default::default()
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
    fn runtime_options_with_the_googleapis_prefix_decode() {
        let o = RuntimeOptions {
            config_path: "/etc/mini.toml".into(),
            ..Default::default()
        };
        let got = decode_task_options(Some(&any(
            "type.googleapis.com/runtimeoptions.v1.Options",
            &o,
        )))
        .unwrap();
        assert_eq!(got.config_path, "/etc/mini.toml");
    }

    #[test]
    fn unknown_types_and_systemd_cgroups_are_refused_by_name() {
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
                .unwrap_err()
                .contains("systemd")
        );
    }
}
