//! Runtime-spec conformance (root): each test runs `mini` on a busybox bundle and checks one
//! MUST or SHOULD clause of the OCI runtime-spec 1.2 (runtime.md, runtime-linux.md,
//! config.md, config-linux.md), quoted in its doc comment, from inside the container or from
//! the host. docs/conformance.md maps every clause to its test or says why it has none.

#[path = "conformance/bundle.rs"]
mod bundle;
mod common;
#[path = "conformance/config.rs"]
mod config;
#[path = "conformance/hooks.rs"]
mod hooks;
#[path = "conformance/linux.rs"]
mod linux;
#[path = "conformance/runtime.rs"]
mod runtime;
