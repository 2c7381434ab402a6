//! Proves the harness with containerd's stock runc shim on every containerd version.

use mini_e2e::{Containerd, RUNC, Version};

fn runc_echo_prints_hi(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.namespace(&format!("smoke-{}", version.tag()));
    ns.import_busybox();
    let id = ns.new_id("smoke");
    let out = ns.run(RUNC, &["--rm"], &id, &["echo", "hi"]);
    out.expect_success();
    assert_eq!(out.stdout.trim(), "hi", "{out}");
    ns.assert_nothing_left(&id);
}

#[test]
fn runc_echo_prints_hi_on_containerd_1_6() {
    runc_echo_prints_hi(Version::V1_6);
}

#[test]
fn runc_echo_prints_hi_on_containerd_1_7() {
    runc_echo_prints_hi(Version::V1_7);
}

#[test]
fn runc_echo_prints_hi_on_containerd_2() {
    runc_echo_prints_hi(Version::V2);
}
