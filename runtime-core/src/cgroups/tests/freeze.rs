//! Pause's freezer on fixture directories: v1 `freezer.state`, and on a unified host
//! `cgroup.freeze` confirmed by `cgroup.events` (this host has no v2 controllers: the
//! cgroup2 path is covered here only).

use std::fs;
use std::path::Path;

use super::{Fixture, read};

fn events(dir: &Path, frozen: bool) {
    let text = format!("populated 1\nfrozen {}\n", u8::from(frozen));
    fs::write(dir.join("cgroup.events"), text).unwrap();
}

#[test]
fn v2_freeze_writes_cgroup_freeze_and_waits_for_cgroup_events() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    let dir = m.unified_path().unwrap().to_path_buf();
    fs::write(dir.join("cgroup.freeze"), "0").unwrap();
    events(&dir, true);
    m.freeze().unwrap();
    assert_eq!(read(Some(&dir), "cgroup.freeze"), "1");
    assert!(m.is_frozen());
    events(&dir, false);
    m.thaw().unwrap();
    assert_eq!(read(Some(&dir), "cgroup.freeze"), "0");
    assert!(!m.is_frozen());
}

#[test]
fn v2_freeze_that_never_settles_fails_and_is_undone() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    let dir = m.unified_path().unwrap().to_path_buf();
    fs::write(dir.join("cgroup.freeze"), "0").unwrap();
    events(&dir, false);
    let err = m.freeze().unwrap_err().to_string();
    assert!(err.contains("frozen 1"), "{err}");
    assert_eq!(
        read(Some(&dir), "cgroup.freeze"),
        "0",
        "the freeze is undone"
    );
    assert!(!m.is_frozen());
}

#[test]
fn v1_freeze_uses_the_freezer_hierarchy_not_cgroup2() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    let freezer = m.v1_path("freezer").unwrap().to_path_buf();
    fs::write(freezer.join("freezer.state"), "THAWED").unwrap();
    m.freeze().unwrap();
    assert_eq!(read(Some(&freezer), "freezer.state"), "FROZEN");
    assert!(m.is_frozen());
    assert!(!m.unified_path().unwrap().join("cgroup.freeze").exists());
    m.thaw().unwrap();
    assert_eq!(read(Some(&freezer), "freezer.state"), "THAWED");
}
