//! `make bench`: start-up time and memory of mini against the stock runc shim, on one
//! private containerd 2.x daemon.
//!
//! 1. Interleaved N runs each of `ctr run --rm … /bin/true` per runtime: median wall time and
//!    the ratio mini/runc.
//! 2. N detached `sleep 300` containers per runtime: RSS, anonymous memory and PSS (from
//!    `/proc/PID/smaps_rollup`) of each runtime's shims (plus runc processes still around, and
//!    helper processes of mini's shims that are not container processes), per container.
//!
//! 3. Exec: into one running container per runtime, interleaved N runs each of
//!    `ctr task exec --exec-id … <id> /bin/true`: median wall time and the ratio mini/runc.
//! 4. Idle: context switches (voluntary + involuntary, all threads, from
//!    `/proc/PID/task/*/status`) over 10 s of the shim of one idle `sleep` container per
//!    runtime. `--exec-idle-only` runs 3 and 4 alone.
//!
//! 5. Soak: `--soak-cycles N` (or `MINI_BENCH_SOAK_CYCLES`, default 1000) cycles of
//!    `ctr run --rm … /bin/true` through mini from a few threads, beside one container that
//!    runs throughout; containerd's and that container's shim's fd counts, mounts, cgroup
//!    directories and zombies before and after. `--soak-only` skips 1 to 4.
//!
//! 6. CRI pod start: on a second containerd 2.x daemon with its CRI plugin (started after the
//!    first one is gone), interleaved runs per runtime handler (`mini`, `runc`) of
//!    RunPodSandbox (host network) + CreateContainer + StartContainer of one busybox
//!    container: median wall time and the ratio mini/runc; each pod is stopped and removed
//!    after its measurement, untimed. Then ExecSync of `/bin/true` into one running container
//!    per handler, interleaved: median wall time and ratio (an exec probe's cost, with no
//!    ctr process on the path). `--cri-only` runs 6 alone; `--soak-only` and
//!    `--exec-idle-only` skip it.
//!
//! 7. Runtime cycle (first, before any daemon starts): the `mini` command against Debian's
//!    runc (`/usr/sbin/runc`) on the same busybox `/bin/true` bundle, interleaved: `create
//!    --pid-file`, `start`, wait for the init's exit (this process is the child subreaper the
//!    init is reparented to, as a shim or conmon is), `delete -f`. Median wall time of the
//!    whole cycle and of each step, and the ratio mini/runc. `--runtime-only` runs 7 alone;
//!    `--soak-only`, `--exec-idle-only` and `--cri-only` skip it.
//!
//! It reports and never fails: errors are printed and the exit code stays 0.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_cri::v1::NamespaceMode;
use mini_e2e::cri::{Cri, MINI_HANDLER};
use mini_e2e::{Containerd, MINI, Namespace, RUNC, Version, leftovers};

const N: usize = 20;
/// Measured pod starts per CRI runtime handler (after one warm-up pod each).
const CRI_RUNS: usize = 10;
/// ExecSync runs per runtime handler.
const EXEC_SYNC_RUNS: usize = 20;
/// Default number of soak cycles.
const SOAK_CYCLES: usize = 1000;
/// Threads running soak cycles: enough to keep 2 cores busy while ctr and containerd wait.
const SOAK_THREADS: usize = 4;

/// How long the idle shims are watched.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// Measured runtime cycles per runtime (after [`RUNTIME_WARMUP`] each).
const RUNTIME_RUNS: usize = 50;
const RUNTIME_WARMUP: usize = 3;
/// Debian's runc, the reference of the runtime cycle.
const RUNC_BIN: &str = "/usr/sbin/runc";

/// The command line: `[--soak-cycles N] [--soak-only] [--exec-idle-only] [--cri-only]
/// [--runtime-only]`.
struct Options {
    soak_cycles: usize,
    soak_only: bool,
    exec_idle_only: bool,
    cri_only: bool,
    runtime_only: bool,
}

fn options() -> Options {
    let mut opts = Options {
        soak_cycles: std::env::var("MINI_BENCH_SOAK_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(SOAK_CYCLES),
        soak_only: false,
        exec_idle_only: false,
        cri_only: false,
        runtime_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--soak-cycles" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => opts.soak_cycles = n,
                None => eprintln!("bench: --soak-cycles needs a number; using {SOAK_CYCLES}"),
            },
            "--soak-only" => opts.soak_only = true,
            "--exec-idle-only" => opts.exec_idle_only = true,
            "--cri-only" => opts.cri_only = true,
            "--runtime-only" => opts.runtime_only = true,
            other => eprintln!("bench: unknown argument {other:?} ignored"),
        }
    }
    opts
}

fn main() {
    let opts = options();
    if opts.runtime_only {
        runtime_cycle();
        return;
    }
    if !(opts.soak_only || opts.exec_idle_only || opts.cri_only) {
        runtime_cycle();
    }
    if !opts.cri_only {
        ctr_sections(&opts);
    }
    if opts.cri_only || !(opts.soak_only || opts.exec_idle_only) {
        cri_pod_start();
    }
}

/// Sections 1 to 5, on one daemon without CRI, gone when this returns.
fn ctr_sections(opts: &Options) {
    let cd = match catch_unwind(|| Containerd::start(Version::V2)) {
        Ok(cd) => cd,
        Err(_) => {
            eprintln!("bench: could not start containerd 2.x (run `make deps`)");
            return;
        }
    };
    let mini = cd.namespace("bench-mini");
    let runc = cd.namespace("bench-runc");
    let soak_ns = cd.namespace("bench-soak");
    for ns in [&mini, &runc, &soak_ns] {
        if catch_unwind(AssertUnwindSafe(|| ns.import_busybox())).is_err() {
            eprintln!("bench: image import failed");
            return;
        }
    }
    println!(
        "containerd 2.x, shim from {}",
        mini_e2e::mini_bin_dir().display()
    );
    if opts.exec_idle_only {
        exec_latency(&mini, &runc);
        idle_switches(&mini, &runc);
        return;
    }
    if !opts.soak_only {
        startup(&mini, &runc);
        exec_latency(&mini, &runc);
        idle_switches(&mini, &runc);
        memory(&mini, &runc);
    }
    soak(&cd, &soak_ns, opts.soak_cycles);
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "n/a".into())
}

/// Prints the medians of `what` per runtime and their ratio.
fn report_medians(what: &str, t_mini: &[Duration], t_runc: &[Duration]) {
    report_medians_of(what, N, t_mini, t_runc);
}

/// [`report_medians`] of `runs` runs per runtime.
fn report_medians_of(what: &str, runs: usize, t_mini: &[Duration], t_runc: &[Duration]) {
    let (m, r) = (median(t_mini.to_vec()), median(t_runc.to_vec()));
    println!(
        "{what}, median of {runs}: mini {} ({} ok), runc {} ({} ok)",
        ms(m),
        t_mini.len(),
        ms(r),
        t_runc.len()
    );
    if let (Some(m), Some(r)) = (m, r) {
        println!(
            "  ratio mini/runc: {:.2}",
            m.as_secs_f64() / r.as_secs_f64()
        );
    }
}

/// A detached `sleep 300` container of `runtime`, RUNNING; `None` (reported) if it failed.
fn sleeper(ns: &Namespace<'_>, runtime: &str, prefix: &str) -> Option<String> {
    let id = ns.new_id(prefix);
    match catch_unwind(AssertUnwindSafe(|| {
        ns.run_detached(runtime, &[], &id, &["sleep", "300"])
    })) {
        Ok(()) => Some(id),
        Err(_) => {
            eprintln!("bench: {runtime}: the {prefix} container did not start");
            None
        }
    }
}

fn remove(ns: &Namespace<'_>, id: &str) {
    let _ = catch_unwind(AssertUnwindSafe(|| ns.kill_and_delete(id)));
}

fn exec_latency(mini: &Namespace<'_>, runc: &Namespace<'_>) {
    let (Some(m_id), Some(r_id)) = (sleeper(mini, MINI, "exec"), sleeper(runc, RUNC, "exec"))
    else {
        return;
    };
    let (mut t_mini, mut t_runc) = (Vec::new(), Vec::new());
    for i in 0..N {
        for (ns, id, times) in [(mini, &m_id, &mut t_mini), (runc, &r_id, &mut t_runc)] {
            let exec_id = format!("bench{i}");
            let start = Instant::now();
            let out = ns.ctr(&["task", "exec", "--exec-id", &exec_id, id, "/bin/true"]);
            if out.success() {
                times.push(start.elapsed());
            } else {
                eprintln!("bench: exec into {id} failed: {out}");
            }
        }
    }
    report_medians(
        "ctr task exec … /bin/true into a running container",
        &t_mini,
        &t_runc,
    );
    remove(mini, &m_id);
    remove(runc, &r_id);
}

/// Voluntary and involuntary context switches of every thread of `pid` so far.
fn context_switches(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn idle_switches(mini: &Namespace<'_>, runc: &Namespace<'_>) {
    let mut watched = Vec::new();
    for (ns, runtime) in [(mini, MINI), (runc, RUNC)] {
        let Some(id) = sleeper(ns, runtime, "idle") else {
            continue;
        };
        match shim_of_task(ns, &id) {
            Some(shim) => watched.push((ns, runtime, id, shim)),
            None => {
                eprintln!("bench: {runtime}: no shim found for {id}");
                remove(ns, &id);
            }
        }
    }
    // Past the start-up's own work (and mini's blocking thread's idle timeout).
    std::thread::sleep(Duration::from_secs(2));
    let before: Vec<u64> = watched
        .iter()
        .map(|(_, _, _, shim)| context_switches(*shim))
        .collect();
    std::thread::sleep(IDLE_WINDOW);
    let mut counts = Vec::new();
    for ((ns, runtime, id, shim), b) in watched.iter().zip(before) {
        let total = context_switches(*shim);
        let n = total.saturating_sub(b);
        println!(
            "idle shim of one sleeping container, {runtime}: {n} context switches in {} s \
             ({total} since it started, {} threads)",
            IDLE_WINDOW.as_secs(),
            threads(*shim)
        );
        counts.push(n);
        remove(ns, id);
    }
    if let [m, r] = counts[..]
        && r > 0
    {
        println!("  ratio mini/runc: {:.2}", m as f64 / r as f64);
    }
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
    report_medians("ctr run --rm /bin/true", &t_mini, &t_runc);
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

/// What a leak would show up in, sampled before and after the soak.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    containerd_fds: usize,
    keeper_shim_fds: usize,
    shims: usize,
    host_mounts: usize,
    daemon_mounts: usize,
    ns_cgroup_dirs: usize,
    host_cgroup_dirs: usize,
    keeper_shim_zombies: usize,
    host_zombies: usize,
}

impl Sample {
    /// Each count with its label, in report order.
    fn rows(&self) -> [(&'static str, usize); 9] {
        [
            ("containerd fds", self.containerd_fds),
            (
                "fds of the long-lived container's shim",
                self.keeper_shim_fds,
            ),
            ("shims of the soak namespace", self.shims),
            ("mounts below the daemon's dir", self.daemon_mounts),
            ("mounts on the host (all users)", self.host_mounts),
            ("cgroup dirs of the soak namespace", self.ns_cgroup_dirs),
            ("cgroup dirs on the host (all users)", self.host_cgroup_dirs),
            ("zombie children of that shim", self.keeper_shim_zombies),
            ("zombies on the host (all users)", self.host_zombies),
        ]
    }
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Directories at and below `dir`.
fn dirs_below(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    1 + entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| dirs_below(&e.path()))
        .sum::<usize>()
}

/// Zombies on the host, and those among `parent`'s children.
fn zombies(parent: i32) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    let (mut all, mut children) = (0, 0);
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat
            .get(stat.rfind(')').unwrap_or(0) + 2..)
            .unwrap_or("")
            .split_whitespace();
        if fields.next() == Some("Z") {
            all += 1;
            if fields.next().and_then(|p| p.parse().ok()) == Some(parent) {
                children += 1;
            }
        }
    }
    (all, children)
}

fn sample(cd: &Containerd, ns: &Namespace<'_>, keeper_shim: i32) -> Sample {
    let address = cd.address().display().to_string();
    let ns_flag = format!("-namespace {} ", ns.name());
    let (host_zombies, keeper_shim_zombies) = zombies(keeper_shim);
    let hierarchies = leftovers::hierarchies();
    Sample {
        containerd_fds: cd.pid().map(fd_count).unwrap_or(0),
        keeper_shim_fds: fd_count(keeper_shim),
        shims: leftovers::processes()
            .iter()
            .filter(|p| {
                p.comm.starts_with("containerd-shim")
                    && p.cmdline.contains(&address)
                    && p.cmdline.contains(&ns_flag)
            })
            .count(),
        host_mounts: leftovers::mount_points().len(),
        daemon_mounts: leftovers::mounts_of(cd.dir(), None).len(),
        ns_cgroup_dirs: hierarchies
            .iter()
            .map(|h| dirs_below(&h.join(ns.name())))
            .sum(),
        host_cgroup_dirs: hierarchies.iter().map(|h| dirs_below(h)).sum(),
        keeper_shim_zombies,
        host_zombies,
    }
}

/// The shim (parent process) of task `id`.
fn shim_of_task(ns: &Namespace<'_>, id: &str) -> Option<i32> {
    let (pid, _) = ns.task(id)?;
    leftovers::processes()
        .into_iter()
        .find(|p| p.pid == pid)
        .map(|p| p.ppid)
}

fn soak(cd: &Containerd, ns: &Namespace<'_>, cycles: usize) {
    let keeper = ns.new_id("keeper");
    let started = catch_unwind(AssertUnwindSafe(|| {
        ns.run_detached(MINI, &[], &keeper, &["sleep", "100000"])
    }));
    let Some(keeper_shim) = started.ok().and_then(|()| shim_of_task(ns, &keeper)) else {
        eprintln!("bench: soak: the long-lived container did not start");
        return;
    };
    let cycle = |n: usize| {
        let id = ns.new_id("soak");
        let out = ns.run(MINI, &["--rm"], &id, &["/bin/true"]);
        (n, out)
    };
    // Warm-up: what containerd and the shim open once (clients, plugins, caches) is not a
    // leak; take the first sample after it.
    for n in 0..10 {
        let _ = cycle(n);
    }
    let settle = || std::thread::sleep(Duration::from_secs(3));
    settle();
    let before = sample(cd, ns, keeper_shim);

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..SOAK_THREADS {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= cycles {
                        break;
                    }
                    let (n, out) = cycle(n);
                    if !out.success() {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("cycle {n}: {out}"));
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    // Exits are reaped and orphans collected asynchronously.
    settle();
    let after = sample(cd, ns, keeper_shim);
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());

    println!(
        "soak: {cycles} cycles of `ctr run --rm --runtime {MINI} … /bin/true` from {SOAK_THREADS} threads in {:.1} s: {} ok, {} failed",
        elapsed.as_secs_f64(),
        cycles - failures.len(),
        failures.len()
    );
    for f in failures.iter().take(3) {
        eprintln!("bench: soak {f}");
    }
    println!("  {:<40} {:>8} {:>8}", "", "before", "after");
    for ((name, b), (_, a)) in before.rows().into_iter().zip(after.rows()) {
        println!("  {name:<40} {b:>8} {a:>8}");
    }
    let _ = catch_unwind(AssertUnwindSafe(|| ns.kill_and_delete(&keeper)));
}

/// Section 6: pod start-up through containerd 2.x's CRI plugin, `mini` against `runc`.
fn cri_pod_start() {
    let cd = match catch_unwind(|| Containerd::start_cri(Version::V2)) {
        Ok(cd) => cd,
        Err(_) => {
            eprintln!("bench: could not start containerd 2.x with CRI (run `make deps`)");
            return;
        }
    };
    let Ok(cri) = catch_unwind(AssertUnwindSafe(|| Cri::connect(&cd))) else {
        eprintln!("bench: CRI: image import or connect failed");
        return;
    };
    println!(
        "containerd 2.x with CRI, shim from {}",
        mini_e2e::mini_bin_dir().display()
    );
    let handlers = [MINI_HANDLER, "runc"];
    // Warm-up: the first pod of a handler pays for what the daemon does once (snapshots of
    // the images, the runtime's first use).
    for handler in handlers {
        if let Err(e) = start_one_pod(&cri, handler) {
            eprintln!("bench: CRI warm-up: {e}");
        }
    }
    let mut times: [Vec<Duration>; 2] = Default::default();
    for _ in 0..CRI_RUNS {
        for (handler, t) in handlers.iter().zip(times.iter_mut()) {
            match start_one_pod(&cri, handler) {
                Ok(elapsed) => t.push(elapsed),
                Err(e) => eprintln!("bench: CRI: {e}"),
            }
        }
    }
    let [t_mini, t_runc] = times;
    report_medians_of(
        "CRI RunPodSandbox (host network) + CreateContainer + StartContainer",
        CRI_RUNS,
        &t_mini,
        &t_runc,
    );
    cri_exec_sync(&cri, handlers);
}

/// ExecSync of `/bin/true` (what an exec readiness or liveness probe costs): interleaved runs
/// into one running container per handler, no ctr process on the path.
fn cri_exec_sync(cri: &Cri<'_>, handlers: [&str; 2]) {
    let mut pods = Vec::new();
    for handler in handlers {
        let pod = match catch_unwind(AssertUnwindSafe(|| cri.run_pod("bench-exec", handler))) {
            Ok(pod) => pod,
            Err(_) => {
                eprintln!("bench: CRI ExecSync: {handler}: RunPodSandbox failed");
                return;
            }
        };
        let started = cri
            .create_container_in(&pod, "app", &["sleep", "300"], NamespaceMode::Container)
            .and_then(|id| cri.start_container(&id).map(|()| id));
        pods.push((pod, started));
    }
    let mut times: [Vec<Duration>; 2] = Default::default();
    if pods.iter().all(|(_, c)| c.is_ok()) {
        for _ in 0..EXEC_SYNC_RUNS {
            for ((pod, id), t) in pods.iter().zip(times.iter_mut()) {
                let id = id.as_ref().expect("checked above");
                let start = Instant::now();
                match cri.exec_sync(id, &["/bin/true"], 10) {
                    Ok((0, _, _)) => t.push(start.elapsed()),
                    other => eprintln!("bench: CRI ExecSync in pod {}: {other:?}", pod.id),
                }
            }
        }
    } else {
        let errors: Vec<_> = pods.iter().filter_map(|(_, c)| c.as_ref().err()).collect();
        eprintln!("bench: CRI ExecSync: a container did not start: {errors:?}");
    }
    let [t_mini, t_runc] = times;
    report_medians_of(
        "CRI ExecSync /bin/true into a running container",
        EXEC_SYNC_RUNS,
        &t_mini,
        &t_runc,
    );
    for (pod, _) in &pods {
        if let Err(e) = cri.stop_pod(pod).and_then(|()| cri.remove_pod(pod)) {
            eprintln!("bench: CRI: removing pod {}: {e:?}", pod.id);
        }
    }
}

/// The wall time of RunPodSandbox + CreateContainer + StartContainer of one busybox
/// `sleep` container (its own pid namespace, the Kubernetes default) with runtime handler
/// `handler`; the pod is stopped and removed afterwards, untimed.
fn start_one_pod(cri: &Cri<'_>, handler: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let pod = catch_unwind(AssertUnwindSafe(|| cri.run_pod("bench", handler)))
        .map_err(|_| format!("{handler}: RunPodSandbox failed"))?;
    let started = cri
        .create_container_in(&pod, "app", &["sleep", "300"], NamespaceMode::Container)
        .and_then(|id| cri.start_container(&id))
        .map(|()| start.elapsed())
        .map_err(|e| format!("{handler}: {e:?}"));
    if let Err(e) = cri.stop_pod(&pod).and_then(|()| cri.remove_pod(&pod)) {
        eprintln!("bench: CRI: {handler}: removing pod {}: {e:?}", pod.id);
    }
    started
}

/// Section 7: `create` + `start` + wait + `delete -f` of a `/bin/true` bundle, the `mini`
/// command against runc, interleaved; no containerd.
fn runtime_cycle() {
    let mini = mini_e2e::mini_bin_dir().join("mini");
    for bin in [mini.as_path(), Path::new(RUNC_BIN)] {
        if !bin.is_file() {
            eprintln!(
                "bench: runtime cycle: {} missing (`make release`, `make deps`)",
                bin.display()
            );
            return;
        }
    }
    let dir = mini_e2e::tmp_dir("rb");
    let cgroup_parent = mini_e2e::unique_name("mini-bench-rt");
    let runtimes: Vec<RuntimeBench> = [("mini", mini.as_path()), ("runc", Path::new(RUNC_BIN))]
        .into_iter()
        .filter_map(
            |(name, bin)| match RuntimeBench::new(name, bin, dir.path(), &cgroup_parent) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("bench: runtime cycle: {name}: {e}");
                    None
                }
            },
        )
        .collect();
    if runtimes.len() == 2 {
        println!(
            "runtime cycle: {} against {} ({})",
            mini.display(),
            RUNC_BIN,
            first_line(RUNC_BIN, "--version")
        );
        // The init is reparented to this process when `create` exits, as to a shim.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("bench: runtime cycle: PR_SET_CHILD_SUBREAPER: {e}");
        }
        let mut times: [[Vec<Duration>; 4]; 2] = Default::default();
        for i in 0..RUNTIME_WARMUP + RUNTIME_RUNS {
            for (r, t) in runtimes.iter().zip(times.iter_mut()) {
                match r.cycle(&format!("c{i}")) {
                    Ok(steps) if i >= RUNTIME_WARMUP => {
                        for (k, d) in steps.into_iter().enumerate() {
                            t[k].push(d);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("bench: runtime cycle: {}: {e}", r.name),
                }
            }
        }
        let _ = nix::sys::prctl::set_child_subreaper(false);
        reap_children();
        let [m, r] = times;
        report_medians_of(
            "runtime create + start + wait + delete -f of /bin/true",
            RUNTIME_RUNS,
            &m[3],
            &r[3],
        );
        // Each mini cycle ran right before its runc cycle: the median of the pairs' ratios
        // follows a load that changes during the run less than the ratio of the medians.
        if m[3].len() == r[3].len() && !m[3].is_empty() {
            let mut pairs: Vec<f64> = m[3]
                .iter()
                .zip(&r[3])
                .map(|(m, r)| m.as_secs_f64() / r.as_secs_f64())
                .collect();
            pairs.sort_by(f64::total_cmp);
            println!(
                "  median of the {} paired ratios: {:.2} (quartiles {:.2}-{:.2})",
                pairs.len(),
                pairs[pairs.len() / 2],
                pairs[pairs.len() / 4],
                pairs[pairs.len() * 3 / 4]
            );
        }
        println!("  load average after the runs: {}", load_average());
        for (k, step) in ["create", "start until the exit", "delete -f"]
            .iter()
            .enumerate()
        {
            println!(
                "  {step}: mini {}, runc {}",
                ms(median(m[k].clone())),
                ms(median(r[k].clone()))
            );
        }
    }
    leftovers::remove_namespace_cgroups(&cgroup_parent);
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), as the numbers are noisy under
/// load.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

/// The first line `bin arg` prints.
fn first_line(bin: &str, arg: &str) -> String {
    std::process::Command::new(bin)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// Reaps every exited child (containers' inits reparented to this process).
fn reap_children() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// One runtime binary with its own `--root`, bundle (busybox, `/bin/true`, cgroup
/// `/<parent>/<runtime name>`) and log of its stderr.
struct RuntimeBench {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
    log: PathBuf,
}

impl RuntimeBench {
    fn new(
        name: &'static str,
        bin: &Path,
        dir: &Path,
        cgroup_parent: &str,
    ) -> Result<RuntimeBench, String> {
        let r = RuntimeBench {
            name,
            bin: bin.to_path_buf(),
            root: dir.join(format!("{name}-root")),
            bundle: dir.join(format!("{name}-bundle")),
            log: dir.join(format!("{name}.log")),
        };
        let rootfs = r.bundle.join("rootfs");
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        std::fs::create_dir_all(rootfs.join("bin")).map_err(|e| io("rootfs", e))?;
        for d in ["proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).map_err(|e| io(d, e))?;
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .map_err(|e| io("/bin/busybox (busybox-static)", e))?;
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/true"))
            .map_err(|e| io("bin/true", e))?;
        // One spec for both: `mini spec`'s default (runc runs it unchanged), running
        // /bin/true in a cgroup of the bench's own.
        let bundle = r.bundle.to_string_lossy().into_owned();
        let mini = mini_e2e::mini_bin_dir().join("mini");
        let out = std::process::Command::new(&mini)
            .args(["spec", "--bundle", &bundle])
            .output()
            .map_err(|e| io("mini spec", e))?;
        if !out.status.success() {
            return Err(format!(
                "mini spec: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = r.bundle.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| io("config.json", e))?;
        let mut spec: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("config.json: {e}"))?;
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{cgroup_parent}/{name}"));
        std::fs::write(&path, spec.to_string()).map_err(|e| io("config.json", e))?;
        Ok(r)
    }

    /// `<bin> --root <root> args…` with stdin and stdout on /dev/null and stderr appended to
    /// the log (the container inherits them: a pipe would stay open); an error carries the
    /// log's tail.
    fn run(&self, args: &[&str]) -> Result<(), String> {
        use std::process::Stdio;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let status = std::process::Command::new(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        if status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        Err(format!("{} {args:?}: {status}: {tail:?}", self.name))
    }

    /// One cycle of container `id`: the times of create, start until the init's exit,
    /// delete -f, and the whole.
    fn cycle(&self, id: &str) -> Result<[Duration; 4], String> {
        let bundle = self.bundle.to_string_lossy();
        let pid_file = self.bundle.join("pid");
        let pid_path = pid_file.to_string_lossy();
        let t0 = Instant::now();
        let created = self.run(&["create", "--bundle", &bundle, "--pid-file", &pid_path, id]);
        let t1 = Instant::now();
        let result = created.and_then(|()| {
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| format!("{}: no pid in {pid_path}", self.name))?;
            self.run(&["start", id])?;
            wait_exit(pid);
            Ok(())
        });
        let t2 = Instant::now();
        let deleted = self.run(&["delete", "-f", id]);
        let t3 = Instant::now();
        let _ = std::fs::remove_file(&pid_file);
        result.and(deleted)?;
        Ok([t1 - t0, t2 - t1, t3 - t2, t3 - t0])
    }
}

/// Waits for the exit of `pid`, a child of this process (the subreaper); polls if it is not.
fn wait_exit(pid: i32) {
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::wait::waitpid(pid, None).is_ok() {
        return;
    }
    mini_e2e::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    });
}
