//! Update on fixture directories: the same writes as at create, and a refused value sets
//! back what was written before it. (A fixture file the kernel would lack stands in for a
//! value the kernel refuses: the write fails the same way.)

use std::fs;

use super::{Fixture, read, resources};
use crate::Error;

#[test]
fn v1_update_writes_memory_cpu_and_pids_like_create() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.create().unwrap();
    m.update(&resources(
        r#"{"memory": {"limit": 67108864, "reservation": 33554432},
            "cpu": {"shares": 256, "quota": 20000, "period": 100000, "cpus": "1", "mems": "0"},
            "pids": {"limit": 42},
            "devices": [{"allow": false, "access": "rwm"}]}"#,
    ))
    .unwrap();
    let mem = m.v1_path("memory");
    assert_eq!(read(mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(mem, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(m.v1_path("cpu"), "cpu.shares"), "256");
    assert_eq!(read(m.v1_path("cpu"), "cpu.cfs_quota_us"), "20000");
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.cpus"), "1");
    assert_eq!(read(m.v1_path("pids"), "pids.max"), "42");
    // Device rules are not part of an update (as with runc update).
    assert_eq!(read(m.v1_path("devices"), "devices.deny"), "");
}

#[test]
fn v1_refused_update_names_the_field_and_keeps_the_old_limits() {
    let f = Fixture::v1();
    let m = f.manager("/c1");
    m.create().unwrap();
    m.apply(&resources(
        r#"{"memory": {"limit": 33554432}, "pids": {"limit": 10}}"#,
    ))
    .unwrap();
    // This "kernel" has no cpuset.mems: the write fails after memory and cpus went in.
    fs::remove_file(m.v1_path("cpuset").unwrap().join("cpuset.mems")).unwrap();
    let err = m
        .update(&resources(
            r#"{"memory": {"limit": 67108864}, "pids": {"limit": 20},
                "cpu": {"shares": 512, "cpus": "1", "mems": "0"}}"#,
        ))
        .unwrap_err();
    match &err {
        Error::InvalidSpec { field, msg } => {
            assert_eq!(field, "linux.resources.cpu.mems", "{msg}");
            assert!(msg.contains("cpuset.mems"), "{msg}");
        }
        other => panic!("not a field error: {other:?}"),
    }
    assert_eq!(
        read(m.v1_path("memory"), "memory.limit_in_bytes"),
        "33554432"
    );
    assert_eq!(read(m.v1_path("pids"), "pids.max"), "10");
    assert_eq!(read(m.v1_path("cpu"), "cpu.shares"), "");
    assert_eq!(read(m.v1_path("cpuset"), "cpuset.cpus"), "0-3");
}

#[test]
fn v2_refused_update_names_the_field_and_keeps_the_old_limits() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.create().unwrap();
    m.apply(&resources(r#"{"memory": {"limit": 33554432}}"#))
        .unwrap();
    let dir = m.unified_path().unwrap().to_path_buf();
    fs::remove_file(dir.join("pids.max")).unwrap();
    let err = m
        .update(&resources(
            r#"{"memory": {"limit": 67108864}, "cpu": {"shares": 1024, "quota": 50000},
                "pids": {"limit": 20}}"#,
        ))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec { field, .. } if field == "linux.resources.pids.limit"),
        "{err:?}"
    );
    assert_eq!(read(Some(&dir), "memory.max"), "33554432");
    assert_eq!(read(Some(&dir), "cpu.weight"), "");
    assert_eq!(read(Some(&dir), "cpu.max"), "");
}

#[test]
fn v2_update_writes_weight_max_and_pids() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.create().unwrap();
    m.update(&resources(
        r#"{"memory": {"limit": 67108864, "swap": 134217728}, "cpu": {"shares": 1024,
            "quota": 50000, "period": 100000}, "pids": {"limit": 20}}"#,
    ))
    .unwrap();
    let dir = m.unified_path();
    assert_eq!(read(dir, "memory.max"), "67108864");
    assert_eq!(read(dir, "memory.swap.max"), "67108864");
    assert_eq!(read(dir, "cpu.weight"), "39");
    assert_eq!(read(dir, "cpu.max"), "50000 100000");
    assert_eq!(read(dir, "pids.max"), "20");
}

#[test]
fn v2_refused_unified_key_sets_back_the_keys_written_before_it() {
    let f = Fixture::v2();
    let m = f.manager("/c1");
    m.create().unwrap();
    let dir = m.unified_path().unwrap().to_path_buf();
    fs::write(dir.join("memory.high"), "max").unwrap();
    // The memory limit goes in before the unified keys; the refused key undoes it.
    let err = m
        .update(&resources(
            r#"{"memory": {"limit": 67108864},
                "unified": {"memory.high": "50000000", "cgroup.procs": "1"}}"#,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("cgroup.procs"), "{err}");
    assert_eq!(read(Some(&dir), "memory.max"), "");
    assert_eq!(read(Some(&dir), "memory.high"), "max");
    assert_eq!(read(Some(&dir), "cgroup.procs"), "");
}
