//! The VM scenarios in a throwaway QEMU VM with a pure cgroup v2 hierarchy
//! (`mini_e2e::vm`), one boot per mode:
//!
//! - a plain init as PID 1: every `cgroup_v2` scenario (`tests/tests/cgroup_v2.rs`);
//! - systemd as PID 1: the `cgroup_v2` scenarios that matter where systemd owns the
//!   hierarchy (the cgroupfs driver's cgroups next to systemd's slices, and its delete after a
//!   killed shim), then every `systemd_cgroup` scenario (`tests/tests/systemd_cgroup.rs`: the
//!   systemd cgroup driver's transient scopes and the CRI pods in the kubelet's slices), in
//!   the same boot.
//!
//! Each test prints one line per scenario and fails, with the guest's output of every failed
//! scenario, unless all passed.
//!
//! Ignored in a plain `cargo test` (a VM takes minutes under TCG): `make vm-test` (part of
//! `make test`) runs them, after building the test binaries they boot.

use mini_e2e::vm::{Boot, TestRun, Vm, test_binary};

/// Runs `runs` in one VM booted with `boot`; panics listing the failures.
///
/// `MINI_VM_ONLY=<filter>[,<filter>...]` replaces every run's own filters with these (a
/// scenario being worked on, without the rest of the boot's).
fn scenarios_pass_in_vm(boot: Boot, runs: &[TestRun]) {
    let started = std::time::Instant::now();
    let only = std::env::var("MINI_VM_ONLY").ok();
    let runs: Vec<TestRun> = match only.as_deref() {
        Some(only) => {
            let filters: Vec<&str> = only.split(',').filter(|f| !f.is_empty()).collect();
            runs.iter()
                .map(|r| TestRun::ignored(r.binary.clone(), &filters))
                .collect()
        }
        None => runs.to_vec(),
    };
    let results = Vm::run(boot, &runs);
    assert!(!results.is_empty(), "no scenario selected by {runs:?}");
    let mut failures = String::new();
    for r in &results {
        println!(
            "vm {boot:?}: {} ... {}",
            r.name,
            if r.passed { "ok" } else { "FAILED" }
        );
        if !r.passed {
            failures.push_str(&format!(
                "\n==== {} (guest output) ====\n{}\n",
                r.name, r.output
            ));
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    println!(
        "vm {boot:?}: {passed} of {} scenarios passed in {:.0} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "scenarios failed in the VM:{failures}");
}

#[test]
#[ignore = "boots a VM for minutes: make vm-test"]
fn cgroup_v2_scenarios_pass_with_a_plain_init() {
    scenarios_pass_in_vm(
        Boot::Init,
        &[TestRun::ignored(test_binary("cgroup_v2"), &[])],
    );
}

/// Under systemd the cgroupfs driver's cgroups sit next to systemd's slices, in a hierarchy
/// systemd owns: the resource and lifecycle scenarios and the killed shim's delete on the
/// guest's containerd; then the systemd driver's scenarios.
#[test]
#[ignore = "boots a VM for minutes: make vm-test"]
fn cgroupfs_and_systemd_driver_scenarios_pass_with_systemd_as_pid_1() {
    scenarios_pass_in_vm(
        Boot::Systemd,
        &[
            TestRun::ignored(
                test_binary("cgroup_v2"),
                &[
                    "resources_are_written_to_the_v2_files_as_runc_converts_them::containerd_1_6",
                    "metrics_are_v2_pause_goes_through_cgroup_freeze_and_kill_all_reaches_every_process::containerd_1_6",
                    "cgroup_is_removed_after_delete_even_when_the_shim_was_killed::containerd_1_6",
                ],
            ),
            systemd_driver_scenarios_on_the_guests_containerd(),
        ],
    );
}

/// Every `systemd_cgroup` scenario: the systemd driver's, and the CRI pods on the guest's
/// containerd 1.6 and on containerd 2.x.
fn systemd_driver_scenarios_on_the_guests_containerd() -> TestRun {
    TestRun::ignored(test_binary("systemd_cgroup"), &["guest::"])
}
