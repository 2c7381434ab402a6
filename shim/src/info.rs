//! `-v` and `-info`.
//!
//! `-info` prints containerd's `RuntimeInfo` with the runtime-spec features document
//! (`features.json`), built by the runtime core ([`runtime_core::features`]), which the
//! `mini features` command prints too.

use std::io::Write;

use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use protobuf::Message;
use protobuf::well_known_types::any::Any;
use runtime_core::features::features;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The type URL containerd's `RuntimeInfo.features` carries: the JSON document of the
/// runtime-spec's `features` schema.
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

pub fn print_version() {
    println!("containerd-shim-mini-v2:");
    println!("  Runtime: {}", crate::RUNTIME_NAME);
    println!("  Version: {VERSION}");
}

/// containerd 2.x asks `-info` for a `RuntimeInfo` protobuf on stdout.
pub fn print_runtime_info() -> Result<(), String> {
    let bytes = runtime_info()?
        .write_to_bytes()
        .map_err(|e| format!("encode runtime info: {e}"))?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| format!("write runtime info: {e}"))
}

pub fn runtime_info() -> Result<RuntimeInfo, String> {
    let features = serde_json::to_vec(&features().map_err(|e| e.to_string())?)
        .map_err(|e| format!("encode runtime features: {e}"))?;
    Ok(RuntimeInfo {
        name: crate::RUNTIME_NAME.to_string(),
        version: protobuf::MessageField::some(RuntimeVersion {
            version: VERSION.to_string(),
            revision: String::new(),
            ..Default::default()
        }),
        features: protobuf::MessageField::some(Any {
            type_url: FEATURES_TYPE_URL.to_string(),
            value: features,
            ..Default::default()
        }),
        ..Default::default()
    })
}
