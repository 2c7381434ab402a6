//! `-v` and `-info`.

use std::io::Write;

use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use protobuf::Message;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn print_version() {
    println!("containerd-shim-mini-v2:");
    println!("  Runtime: {}", crate::RUNTIME_NAME);
    println!("  Version: {VERSION}");
}

/// containerd 2.x asks `-info` for a `RuntimeInfo` protobuf on stdout.
pub fn print_runtime_info() -> Result<(), String> {
    let info = RuntimeInfo {
        name: crate::RUNTIME_NAME.to_string(),
        version: protobuf::MessageField::some(RuntimeVersion {
            version: VERSION.to_string(),
            revision: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = info
        .write_to_bytes()
        .map_err(|e| format!("encode runtime info: {e}"))?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| format!("write runtime info: {e}"))
}
