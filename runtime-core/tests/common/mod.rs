//! What the runtime integration tests share: a temporary directory and a busybox root for
//! their bundles (each test file keeps its own bundle type for its own needs).

use std::fs;
use std::path::Path;

/// A temporary directory named `<prefix>…`, removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// Fills `rootfs` with /bin/busybox, its `applets` as links in /bin, and the directories a
/// container needs as mount points. Panics, naming `who`, unless we are root and the host
/// has /bin/busybox (busybox-static).
pub fn busybox_rootfs(who: &str, rootfs: &Path, applets: &[&str]) {
    assert!(
        nix::unistd::Uid::effective().is_root() && Path::new("/bin/busybox").exists(),
        "{who} need root and /bin/busybox (busybox-static)"
    );
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
}
