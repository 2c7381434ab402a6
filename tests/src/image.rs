//! The local busybox OCI image (there is no image registry here).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Returns the path of the busybox image tar, building it with
/// `tests/fixtures/build-busybox-image.sh` if it is missing (`MINI_TEST_CACHE`, default
/// `/var/cache/mini-test`, holds it).
pub fn busybox_image_tar() -> PathBuf {
    // One builder at a time inside this process; the script itself writes atomically.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tar = crate::cache_dir().join("busybox-oci.tar");
    if tar.is_file() {
        return tar;
    }
    let script = crate::workspace_dir().join("tests/fixtures/build-busybox-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&tar)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}
