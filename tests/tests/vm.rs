//! The cgroup v2 scenarios (`tests/tests/cgroup_v2.rs`) in a throwaway QEMU VM with a pure
//! cgroup v2 hierarchy (`mini_e2e::vm`): once with a plain init as PID 1, once with systemd.
//! Each test prints one line per scenario and fails, with the guest's output of every failed
//! scenario, unless all passed.
//!
//! Ignored in a plain `cargo test` (a VM takes minutes under TCG): `make vm-test` (part of
//! `make test`) runs them, after building the `cgroup_v2` test binary they boot.

use mini_e2e::vm::{Boot, TestRun, Vm, test_binary};

/// Runs the `cgroup_v2` scenarios matching `filters` (all when empty) in a VM booted with
/// `boot`; panics listing the failures.
fn scenarios_pass_in_vm(boot: Boot, filters: &[&str]) {
    let started = std::time::Instant::now();
    let results = Vm::run(boot, &[TestRun::ignored(test_binary("cgroup_v2"), filters)]);
    assert!(!results.is_empty(), "no scenario selected by {filters:?}");
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
    scenarios_pass_in_vm(Boot::Init, &[]);
}

/// Under systemd the container cgroups (cgroupfs driver) sit next to systemd's slices, in a
/// hierarchy systemd owns: the resource and lifecycle scenarios on the guest's containerd.
#[test]
#[ignore = "boots a VM for minutes: make vm-test"]
fn cgroup_v2_scenarios_pass_with_systemd_as_pid_1() {
    scenarios_pass_in_vm(
        Boot::Systemd,
        &[
            "resources_are_written_to_the_v2_files_as_runc_converts_them::containerd_1_6",
            "pause_and_resume_go_through_cgroup_freeze::containerd_1_6",
        ],
    );
}
