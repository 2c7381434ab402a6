//! What the runtime integration tests share: a temporary directory and a busybox root for
//! their bundles, and the processes a container left (each test file keeps its own bundle
//! type for its own needs). Not every test crate uses every helper.
#![allow(dead_code)]

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

/// Whether `pid` runs and is not a zombie.
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
}

/// Live processes (not zombies) whose command line has `word` as an argument (a container
/// id: the setup helper and the init carry it).
pub fn processes_naming(word: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            alive(*pid) && cmdline.split(|b| *b == 0).any(|a| a == word.as_bytes())
        })
        .collect()
}
