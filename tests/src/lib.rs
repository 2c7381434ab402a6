//! Fixtures for the end-to-end tests: private containerd daemons, the busybox image, ctr.
//!
//! Every test starts its own [`Containerd`] (its own root, state and sockets under a short
//! directory in `/tmp`), works in its own ctr namespace ([`Namespace`]) and uses unique
//! container ids, so tests run in parallel and never meet a user's containers. Dropping the
//! daemon removes everything it and its shims left behind, even when the test failed.

pub mod cri;
mod ctr;
mod daemon;
pub mod grpc;
mod image;
pub mod leftovers;
pub mod vm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use ctr::{Background, CtrOutput, run_command};
pub use daemon::{Containerd, Namespace, Version};
pub use image::{LayerEntry, build_image, build_image_variants, busybox_image_tar};

/// Generates, for each scenario `fn name(version: Version)`, a module `name` with one
/// `#[test]` per containerd version: `name::containerd_1_6`, `containerd_1_7`, `containerd_2`.
#[macro_export]
macro_rules! on_every_version {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn containerd_1_6() { super::$scenario($crate::Version::V1_6) }
            #[test]
            fn containerd_1_7() { super::$scenario($crate::Version::V1_7) }
            #[test]
            fn containerd_2() { super::$scenario($crate::Version::V2) }
        }
    )*};
}

/// The reference the busybox test image is imported under.
pub const IMAGE: &str = "localhost/busybox:latest";
/// Runtime type of the shim under test.
pub const MINI: &str = "io.containerd.mini.v2";
/// Runtime type of containerd's stock shim, the reference behaviour.
pub const RUNC: &str = "io.containerd.runc.v2";
/// The effective capabilities ctr's default spec grants (runc/containerd default set).
pub const DEFAULT_CAP_EFF: &str = "00000000a80425fb";

/// The runtime the scenario tests drive: [`MINI`], unless `MINI_E2E_RUNTIME` names another
/// (e.g. `io.containerd.runc.v2`, to check a scenario itself against the stock shim).
pub fn runtime_under_test() -> String {
    std::env::var("MINI_E2E_RUNTIME").unwrap_or_else(|_| MINI.to_string())
}

/// The workspace root (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where `deploy/install-deps.sh` put the private containerd builds and the image cache.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MINI_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/mini-test"))
}

/// The directory holding the freshly built `containerd-shim-mini-v2` (`MINI_BIN_DIR`,
/// default `<workspace>/target/debug`).
pub fn mini_bin_dir() -> PathBuf {
    std::env::var_os("MINI_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/debug"))
}

/// The `mini` command (runc's command line) beside the shim in [`mini_bin_dir`]; panics if
/// it was not built.
#[track_caller]
pub fn mini_command() -> PathBuf {
    let mini = mini_bin_dir().join("mini");
    assert!(
        mini.is_file(),
        "{} missing: run `cargo build -p runtime-core --bin mini` first",
        mini.display()
    );
    mini
}

/// `mini --root <root> state <id>` as JSON: how the interop tests see that another engine
/// drove `mini` (runc's state under that root is not mini's). Panics, naming `who` (the
/// engine), unless it succeeds.
#[track_caller]
pub fn mini_state(root: &Path, id: &str, who: &str) -> serde_json::Value {
    let out = std::process::Command::new(mini_command())
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .expect("running mini state");
    assert!(
        out.status.success(),
        "`mini --root {} state {id}` failed (did {who} run mini?): {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mini state prints JSON")
}

/// A name unique in this machine for this run: `<prefix>-<pid>-<n>`. Used for container ids
/// and namespaces so that parallel tests and leftovers of earlier runs never collide.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n:03}", std::process::id())
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns whether it
/// became true. Needed because exits, reaping and cleanup here are asynchronous (orphans are
/// reaped about 2 s late on this machine).
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new directory `/tmp/<prefix>XXXXXX`, removed on drop. Under `/tmp` because socket paths
/// below it must stay within 107 bytes, and a host directory the tests can check.
/// The trimmed contents of `file` in directory `dir` (a cgroup file, mostly); panics naming
/// the path.
#[track_caller]
pub fn read_trimmed(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

pub fn tmp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("temporary directory /tmp/{prefix}…: {e}"))
}
