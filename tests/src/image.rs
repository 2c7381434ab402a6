//! The local busybox OCI image (there is no image registry here).

use std::path::{Path, PathBuf};
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
    run_build_script(&[tar.as_os_str()]);
    tar
}

/// Runs `tests/fixtures/build-busybox-image.sh` with `args`; panics with its stderr if it fails.
fn run_build_script(args: &[&std::ffi::OsStr]) {
    let script = crate::workspace_dir().join("tests/fixtures/build-busybox-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One file system entry of an extra image layer.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl LayerEntry {
    fn to_json(&self) -> serde_json::Value {
        match self {
            LayerEntry::Dir { path, mode } => {
                serde_json::json!({"path": path, "type": "dir", "mode": mode})
            }
            LayerEntry::File { path, mode, data } => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({"path": path, "type": "file", "mode": mode, "hex": hex})
            }
            LayerEntry::Symlink { path, target } => {
                serde_json::json!({"path": path, "type": "symlink", "mode": 0o777, "link": target})
            }
        }
    }
}

/// Builds, at `tar`, an OCI image layout holding one variant of the busybox image per
/// `(tag, config)`: busybox's layer, then one layer of `extra` entries (if any), and an image
/// config whose keys (`Entrypoint`, `Cmd`, `WorkingDir`, `User`, `Env`…) are replaced by those
/// of `config` (a JSON object). Import it with `ctr images import --base-name BASE tar`: the
/// variants are then `BASE:tag`.
pub fn build_image_variants(
    tar: &Path,
    extra: &[LayerEntry],
    variants: &[(&str, serde_json::Value)],
) {
    let spec = serde_json::json!({
        "layer": extra.iter().map(LayerEntry::to_json).collect::<Vec<_>>(),
        "images": variants
            .iter()
            .map(|(tag, config)| serde_json::json!({"tag": tag, "config": config}))
            .collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("variants.json");
    std::fs::write(&spec_path, spec.to_string()).expect("writing variants.json");
    run_build_script(&[tar.as_os_str(), spec_path.as_os_str()]);
}

/// [`build_image_variants`] with a single variant.
pub fn build_image(tar: &Path, tag: &str, extra: &[LayerEntry], config: serde_json::Value) {
    build_image_variants(tar, extra, &[(tag, config)]);
}
