//! The malformed `config.json` cases of `bad_config.rs` (the same table,
//! `bad_config/cases.rs`) through the `mini` command: `mini create` of each must exit non-zero,
//! print an error naming the field, and leave nothing (no state directory under its `--root`,
//! no cgroup, no process, no mount). And the bundle `runc spec` writes, with its valid
//! variations, through `mini run`, unchanged.
//!
//! Here the config reaches mini as written (no containerd decodes and re-encodes it first),
//! so every case applies, `time-offsets` included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

#[path = "bad_config/cases.rs"]
mod cases;
use cases::{CASES, RUNC_SPEC_VARIANTS, Rootfs, runc_spec};

/// A bundle of `spec` and a private `--root` for `mini`; the container is force-deleted on
/// drop.
struct CliBundle {
    bundle: tempfile::TempDir,
    root: tempfile::TempDir,
    id: String,
}

/// What a `mini` command printed (the container's stdio and mini's: files, never pipes,
/// which a wrongly created container would hold open).
struct Printed {
    success: bool,
    stdout: String,
    stderr: String,
}

impl CliBundle {
    fn new(spec: &Value, name: &str) -> CliBundle {
        let bundle = mini_e2e::tmp_dir("mini-badcli-");
        fs::write(bundle.path().join("config.json"), spec.to_string()).unwrap();
        CliBundle {
            bundle,
            root: mini_e2e::tmp_dir("mini-badcli-root-"),
            id: format!("badcli-{name}-{}", std::process::id()),
        }
    }

    fn mini(&self, args: &[&str]) -> Printed {
        let out = |n: &str| fs::File::create(self.bundle.path().join(n)).unwrap();
        let status = Command::new(mini_e2e::mini_command())
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out("stdout"))
            .stderr(out("stderr"))
            .status()
            .unwrap();
        let read = |n: &str| fs::read_to_string(self.bundle.path().join(n)).unwrap_or_default();
        Printed {
            success: status.success(),
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }

    fn bundle_arg(&self) -> &str {
        self.bundle.path().to_str().unwrap()
    }

    /// What is left of the container: entries under `--root`, cgroup directories (mini's
    /// default `/<id>`, or the spec's `cgroupsPath` when it stays inside the hierarchy),
    /// processes naming the id, mounts under the bundle or naming the id.
    fn leftovers(&self, spec: &Value) -> Vec<String> {
        let mut left: Vec<String> = fs::read_dir(self.root.path())
            .map(|d| {
                d.flatten()
                    .map(|e| format!("state {}", e.path().display()))
                    .collect()
            })
            .unwrap_or_default();
        let mut paths = vec![PathBuf::from(&self.id)];
        if let Some(p) = spec["linux"]["cgroupsPath"].as_str() {
            let rel = Path::new(p.trim_start_matches('/'));
            if !p.contains("..") && !p.contains(':') && !rel.as_os_str().is_empty() {
                paths.push(rel.to_path_buf());
            }
        }
        for h in mini_e2e::leftovers::hierarchies() {
            for p in &paths {
                let dir = h.join(p);
                if dir.is_dir() {
                    left.push(format!("cgroup {}", dir.display()));
                }
            }
        }
        left.extend(
            mini_e2e::leftovers::processes_of(&self.id)
                .iter()
                .map(|p| format!("process {p:?}")),
        );
        left.extend(
            mini_e2e::leftovers::mounts_of(self.bundle.path(), Some(&self.id))
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        left
    }
}

impl Drop for CliBundle {
    fn drop(&mut self) {
        let _ = self.mini(&["delete", "--force", &self.id]);
    }
}

#[test]
fn malformed_configs_fail_through_mini_create_naming_the_field_and_leave_nothing() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let rootfs = Rootfs::new();
    let mut failures = Vec::new();
    for case in CASES {
        let mut spec = runc_spec(&rootfs, "echo RAN");
        (case.edit)(&mut spec);
        let b = CliBundle::new(&spec, case.name);
        let out = b.mini(&["create", "--bundle", b.bundle_arg(), &b.id]);
        if out.success {
            failures.push(format!("{}: not refused", case.name));
        } else if let Some(missing) = case.names.iter().find(|n| !out.stderr.contains(*n)) {
            failures.push(format!(
                "{}: the error does not name {missing}: {}",
                case.name, out.stderr
            ));
        }
        let left = b.leftovers(&spec);
        if !left.is_empty() {
            failures.push(format!("{}: left {left:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn runc_spec_bundle_runs_unchanged_through_mini_run() {
    let rootfs = Rootfs::new();
    // runc spec lists CAP_KILL (among others) as ambient but not inheritable: skipped, as
    // runc skips it. CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE: permitted and bounding.
    let spec = runc_spec(
        &rootfs,
        "grep -E '^Cap(Amb|Prm|Bnd)' /proc/self/status; echo hostname=$(cat /proc/sys/kernel/hostname)",
    );
    let b = CliBundle::new(&spec, "runcspec");
    let out = b.mini(&["run", "--bundle", b.bundle_arg(), &b.id]);
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    for line in [
        "CapPrm:\t0000000020000420",
        "CapBnd:\t0000000020000420",
        "CapAmb:\t0000000000000000",
        "hostname=runc",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
    assert_eq!(b.leftovers(&spec), Vec::<String>::new());
    for &(name, script, edit) in RUNC_SPEC_VARIANTS {
        let mut spec = runc_spec(&rootfs, script);
        edit(&mut spec);
        let b = CliBundle::new(&spec, name);
        let out = b.mini(&["run", "--bundle", b.bundle_arg(), &b.id]);
        assert!(out.success, "{name}: {}{}", out.stdout, out.stderr);
        let want = if name == "umask" { "umask=0027" } else { "ok" };
        assert!(out.stdout.contains(want), "{name}: {}", out.stdout);
        assert_eq!(b.leftovers(&spec), Vec::<String>::new(), "{name}");
    }
}
