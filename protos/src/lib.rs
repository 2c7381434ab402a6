//! mini's protobuf messages and the glue to containerd's generated types.
//!
//! containerd's own Task, Events and bootstrap messages come from `containerd-shim-protos`;
//! this crate adds the messages containerd sends a runtime that are not in it.

#![allow(clippy::all)]

mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}

pub use containerd_shim_protos as containerd;
pub use generated::runtimeoptions::Options as RuntimeOptions;

/// Type URL of containerd's generic runtime options (`runtimeoptions.v1.Options`).
pub const RUNTIME_OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";
