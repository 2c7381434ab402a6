//! `make bench`: start-up time and memory of mini against the stock runc shim, on one
//! private containerd 2.x daemon.
//!
//! 1. Interleaved N runs each of `ctr run --rm … /bin/true` per runtime: median wall time and
//!    the ratio mini/runc.
//! 2. N detached `sleep 300` containers per runtime: RSS, anonymous memory and PSS (from
//!    `/proc/PID/smaps_rollup`) of each runtime's shims (plus runc processes still around, and
//!    helper processes of mini's shims that are not container processes), per container.
//!
//! It reports and never fails: errors are printed and the exit code stays 0.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use mini_e2e::{Containerd, MINI, Namespace, RUNC, Version, leftovers};

const N: usize = 20;

fn main() {
    let cd = match catch_unwind(|| Containerd::start(Version::V2)) {
        Ok(cd) => cd,
        Err(_) => {
            eprintln!("bench: could not start containerd 2.x (run `make deps`)");
            return;
        }
    };
    let mini = cd.namespace("bench-mini");
    let runc = cd.namespace("bench-runc");
    for ns in [&mini, &runc] {
        if catch_unwind(AssertUnwindSafe(|| ns.import_busybox())).is_err() {
            eprintln!("bench: image import failed");
            return;
        }
    }
    println!(
        "containerd 2.x, shim from {}",
        mini_e2e::mini_bin_dir().display()
    );
    startup(&mini, &runc);
    memory(&mini, &runc);
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn startup(mini: &Namespace<'_>, runc: &Namespace<'_>) {
    let (mut t_mini, mut t_runc) = (Vec::new(), Vec::new());
    for _ in 0..N {
        for (ns, runtime, times) in [(mini, MINI, &mut t_mini), (runc, RUNC, &mut t_runc)] {
            let id = ns.new_id("true");
            let start = Instant::now();
            let out = ns.run(runtime, &["--rm"], &id, &["/bin/true"]);
            if out.success() {
                times.push(start.elapsed());
            } else {
                eprintln!("bench: {runtime} run failed: {out}");
            }
        }
    }
    let ms = |d: Option<Duration>| d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    let (m, r) = (median(t_mini.clone()), median(t_runc.clone()));
    println!(
        "ctr run --rm /bin/true, median of {N}: mini {} ({} ok), runc {} ({} ok)",
        ms(m).unwrap_or_else(|| "n/a".into()),
        t_mini.len(),
        ms(r).unwrap_or_else(|| "n/a".into()),
        t_runc.len()
    );
    if let (Some(m), Some(r)) = (m, r) {
        println!(
            "  ratio mini/runc: {:.2}",
            m.as_secs_f64() / r.as_secs_f64()
        );
    }
}

/// Rss, anonymous and Pss in KiB from /proc/PID/smaps_rollup.
fn smaps_rollup(pid: i32) -> [u64; 3] {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    [field("Rss:"), field("Anonymous:"), field("Pss:")]
}

/// Memory per container of one runtime's processes: shims of namespace `ns`, their children
/// that are not container inits, and (for runc) runc processes of the namespace.
fn runtime_memory(ns: &Namespace<'_>, task_pids: &HashSet<i32>) -> ([u64; 3], usize) {
    let procs = leftovers::processes();
    let ns_flag = format!("-namespace {}", ns.name());
    let shims: HashSet<i32> = procs
        .iter()
        .filter(|p| p.comm.starts_with("containerd-shim") && p.cmdline.contains(&ns_flag))
        .map(|p| p.pid)
        .collect();
    let mut counted = Vec::new();
    for p in &procs {
        let helper = shims.contains(&p.ppid) && !task_pids.contains(&p.pid);
        let runc = p.comm == "runc" && leftovers::contains_token(&p.cmdline, ns.name());
        if shims.contains(&p.pid) || helper || runc {
            counted.push(p.pid);
        }
    }
    let mut sum = [0u64; 3];
    for pid in &counted {
        for (s, v) in sum.iter_mut().zip(smaps_rollup(*pid)) {
            *s += v;
        }
    }
    (sum, counted.len())
}

fn memory(mini: &Namespace<'_>, runc: &Namespace<'_>) {
    let mut results = Vec::new();
    for (ns, runtime) in [(mini, MINI), (runc, RUNC)] {
        let mut pids = HashSet::new();
        for _ in 0..N {
            let id = ns.new_id("sleep");
            let out = ns.run(runtime, &["-d"], &id, &["sleep", "300"]);
            if !out.success() {
                eprintln!("bench: {runtime} detached run failed: {out}");
                continue;
            }
            mini_e2e::wait_until(Duration::from_secs(10), || {
                ns.task_status(&id).as_deref() == Some("RUNNING")
            });
            if let Some((pid, _)) = ns.task(&id) {
                pids.insert(pid);
            }
        }
        let (sum, nprocs) = runtime_memory(ns, &pids);
        let n = pids.len().max(1) as u64;
        println!(
            "{runtime}: {} containers, {nprocs} runtime processes; per container: RSS {} KiB, anon {} KiB, PSS {} KiB",
            pids.len(),
            sum[0] / n,
            sum[1] / n,
            sum[2] / n
        );
        results.push((pids.len(), sum.map(|v| v / n)));
    }
    if let [(nm, m), (nr, r)] = results[..]
        && nm > 0
        && nr > 0
    {
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        println!(
            "  ratios mini/runc: RSS {:.2}, anon {:.2}, PSS {:.2}",
            ratio(m[0], r[0]),
            ratio(m[1], r[1]),
            ratio(m[2], r[2])
        );
    }
}
