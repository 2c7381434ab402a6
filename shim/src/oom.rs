//! The OOM watch: `/tasks/oom` for a container whose processes the kernel's OOM killer ended.
//!
//! The kernel counts OOM kills per cgroup (v1 `memory.oom_control`, v2 `memory.events`, line
//! `oom_kill`); one event goes out for each rise of that count. What wakes the watch: on v1 an
//! eventfd registered for `memory.oom_control` through `cgroup.event_control`, on v2 inotify on
//! `memory.events`. Neither polls: an idle shim stays asleep. The exit watcher calls
//! [`OomWatch::check`] before it publishes the init's `/tasks/exit`, so an OOM kill of the
//! init is always published before its exit, whichever wake-up tokio serves first.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use containerd_shim_protos::events::task::TaskOOM;
use runtime_core::cgroups::{CgroupManager, Layout};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::events::Publisher;

/// The watch of one container; ends when dropped.
pub struct OomWatch {
    counter: Arc<Counter>,
    task: Option<JoinHandle<()>>,
}

/// The OOM kills already published, and where to publish the next.
struct Counter {
    cgroup: CgroupManager,
    seen: Mutex<u64>,
    /// Whether an OOM kill of this container was published.
    published: AtomicBool,
    /// v2: what `memory.events` said of the cgroup at its limit at the last look.
    limit: Mutex<LimitSeen>,
    id: String,
    namespace: String,
    publisher: Publisher,
}

impl Counter {
    /// Publishes `/tasks/oom` if the kernel counted OOM kills since the last look; whether
    /// it did.
    fn check(&self) -> bool {
        let Some(now) = self.cgroup.oom_kills() else {
            return false;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now <= *seen {
            return false;
        }
        *seen = now;
        drop(seen);
        self.publish(&format!("oom_kill {now}"));
        true
    }

    fn publish(&self, counted: &str) {
        self.published.store(true, Ordering::SeqCst);
        {
            let mut seen = self.limit.lock().unwrap_or_else(|e| e.into_inner());
            seen.parent_kills = None;
            seen.oom_at = None;
        }
        log::info!("{}: the OOM killer ended a process ({counted})", self.id);
        self.publisher.publish(
            &self.namespace,
            "/tasks/oom",
            &TaskOOM {
                container_id: self.id.clone(),
                ..Default::default()
            },
        );
    }

    /// v2: what `memory.events` says since the last look. An `oom` rise (the OOM killer ran
    /// for this cgroup: its kill follows within moments) notes the parent's `oom_kill`
    /// count, read first, for [`Counter::check_gone`].
    fn look(&self) -> Look {
        let parent = self.parent_kills();
        let Some(events) = self
            .cgroup
            .oom_counter()
            .and_then(|(d, f)| read_events(d, f))
        else {
            return Look::Nothing;
        };
        let count = |key: &str| events.get(key).copied().unwrap_or(0);
        let mut seen = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        let (max, oom) = (count("max"), count("oom"));
        let look = if oom > seen.oom {
            seen.parent_kills = parent;
            seen.oom_at = Some(Instant::now());
            Look::Oom
        } else if max > seen.max {
            Look::Max
        } else {
            Look::Nothing
        };
        seen.max = max;
        seen.oom = oom;
        look
    }

    /// Whether a `max` rise may start a settle: at most once per [`MAX_SETTLE_EVERY`] (a
    /// container sitting at its limit raises it all the time).
    fn max_settle_due(&self) -> bool {
        let mut seen = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        let due = seen
            .max_settled_at
            .is_none_or(|at| at.elapsed() >= MAX_SETTLE_EVERY);
        if due {
            seen.max_settled_at = Some(Instant::now());
        }
        due
    }

    /// The `oom_kill` count of the parent cgroup (v2 counts a kill in every ancestor too).
    fn parent_kills(&self) -> Option<u64> {
        let (dir, file) = self.cgroup.oom_counter()?;
        read_events(dir.parent()?, file)?.get("oom_kill").copied()
    }

    /// For an init the kernel's SIGKILL ended just after the OOM killer ran for its cgroup,
    /// with the cgroup already gone before the kill's count was read (the systemd driver:
    /// systemd removes an emptied scope at once, and the kernel may hold the file's last
    /// notification back): publishes the kill if the parent cgroup counted one since that
    /// OOM (the victim of an OOM of this cgroup is in this cgroup). Whether it did.
    fn check_gone(&self) -> bool {
        if self.cgroup.layout() != Layout::Unified || !self.cgroup_gone() {
            return false;
        }
        let before = {
            let seen = self.limit.lock().unwrap_or_else(|e| e.into_inner());
            match (seen.parent_kills, seen.oom_at) {
                (Some(before), Some(at)) if at.elapsed() < OOM_RECENT => before,
                _ => return false,
            }
        };
        match self.parent_kills() {
            Some(now) if now > before => {
                self.publish(&format!("the cgroup is gone; its parent's oom_kill {now}"));
                true
            }
            _ => false,
        }
    }

    /// Whether the container's cgroup is gone (nothing left to watch).
    fn cgroup_gone(&self) -> bool {
        self.cgroup
            .oom_counter()
            .is_none_or(|(dir, _)| !dir.exists())
    }
}

/// v2: `memory.events` at the last look, as far as a kill to come goes.
#[derive(Default)]
struct LimitSeen {
    max: u64,
    oom: u64,
    /// The parent cgroup's `oom_kill` just before the last `oom` rise seen (none since the
    /// last published kill: none), and when that was.
    parent_kills: Option<u64>,
    oom_at: Option<Instant>,
    /// When a `max` rise last started a settle.
    max_settled_at: Option<Instant>,
}

/// What a look at `memory.events` found since the last one.
enum Look {
    Nothing,
    /// The cgroup at its limit (`max`), no OOM (yet).
    Max,
    /// The OOM killer ran for the cgroup (`oom`).
    Oom,
}

/// How often a `max` rise alone may start a settle.
const MAX_SETTLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long after an OOM of the cgroup an exit may take a kill counted by the parent.
const OOM_RECENT: std::time::Duration = std::time::Duration::from_secs(10);

impl LimitSeen {
    fn now(cgroup: &CgroupManager) -> LimitSeen {
        let events = cgroup.oom_counter().and_then(|(d, f)| read_events(d, f));
        let count = |key: &str| events.as_ref().and_then(|e| e.get(key).copied());
        LimitSeen {
            max: count("max").unwrap_or(0),
            oom: count("oom").unwrap_or(0),
            parent_kills: None,
            oom_at: None,
            max_settled_at: None,
        }
    }
}

/// The key-value lines of a cgroup's `file` in `dir`; `None` if it cannot be read (gone).
fn read_events(dir: &Path, file: &str) -> Option<std::collections::BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    Some(runtime_core::cgroups::stats::parse_key_values(&text))
}

/// v1 signals the eventfd when the cgroup hits its limit, before the OOM killer has chosen
/// and counted its victim: after a wake-up the count is looked at again for a moment (this
/// runs only after an OOM, never while the container is idle).
const V1_SETTLE_STEPS: u32 = 50;
const V1_SETTLE_STEP: std::time::Duration = std::time::Duration::from_millis(10);
/// v2 wakes the watch on any change of `memory.events`: the first is `max` (the cgroup at its
/// limit), the kill comes just after, and the kernel holds back a file's next notification
/// for up to 20 ms. By then the victim may be gone, and with the systemd driver systemd
/// removes the emptied scope, `memory.events` with it (the exit's own check then finds
/// nothing): after a wake for an OOM (`oom` rose) the count is looked at again for a moment,
/// as on v1, and after one for a limit hit (`max` rose) too, at most once a second (a
/// container sitting at its limit makes those all the time; one below it sleeps). Should the
/// scope still go first, the exit's check looks at the parent's count
/// ([`Counter::check_gone`]).
const V2_SETTLE_STEPS: u32 = 100;
const V2_SETTLE_STEP: std::time::Duration = std::time::Duration::from_millis(2);

/// How long an exit waits for its container's `/tasks/oom` to reach containerd (which may be
/// restarting: the exit must not wait for it).
const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl OomWatch {
    /// Starts watching the container's cgroup. A host without a memory controller, or a
    /// kernel that refuses the notification, gets a watch that only checks the count when
    /// asked (before the exit is published).
    pub fn start(
        id: &str,
        cgroup: &CgroupManager,
        publisher: Publisher,
        namespace: &str,
    ) -> OomWatch {
        let counter = Arc::new(Counter {
            seen: Mutex::new(cgroup.oom_kills().unwrap_or(0)),
            published: AtomicBool::new(false),
            limit: Mutex::new(LimitSeen::now(cgroup)),
            cgroup: cgroup.clone(),
            id: id.to_string(),
            namespace: namespace.to_string(),
            publisher,
        });
        let settle = match cgroup.layout() {
            Layout::Legacy | Layout::Hybrid => (V1_SETTLE_STEPS, V1_SETTLE_STEP),
            Layout::Unified => (V2_SETTLE_STEPS, V2_SETTLE_STEP),
        };
        let task = match wake_up_source(cgroup) {
            Ok(Some(fd)) => {
                let c = counter.clone();
                Some(tokio::spawn(async move { watch(fd, c, settle).await }))
            }
            Ok(None) => None,
            Err(err) => {
                log::warn!("{id}: no OOM notification, the exit check only: {err}");
                None
            }
        };
        OomWatch { counter, task }
    }

    /// Publishes `/tasks/oom` now if an OOM kill has not been published yet.
    pub fn check(&self) {
        self.counter.check();
    }

    /// Before the init's exit goes on (Wait answers): publishes a kill not published yet
    /// and, when the container had one, waits (at most [`DELIVERY_WAIT`]) until containerd
    /// has taken it. CRI learns of the exit from Wait and of the kill from the event stream:
    /// an exit that got there first read as reason `Error` instead of `OOMKilled` (the kubelet
    /// keeps what it saw first). A container without an OOM kill does not wait.
    ///
    /// `sigkill`: the init died of SIGKILL, as the OOM killer's victims do; only then may a
    /// kill counted by the parent cgroup after this one's went be taken for its own.
    pub async fn deliver(&self, sigkill: bool) {
        if !self.counter.check() && sigkill {
            self.counter.check_gone();
        }
        if self.counter.published.load(Ordering::SeqCst) {
            let flushed = self.counter.publisher.flush();
            if tokio::time::timeout(DELIVERY_WAIT, flushed).await.is_err() {
                log::warn!(
                    "{}: /tasks/oom not taken by containerd within {:?}",
                    self.counter.id,
                    DELIVERY_WAIT
                );
            }
        }
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What wakes the watch: an eventfd (v1) or an inotify fd (v2), readable on news.
fn wake_up_source(cgroup: &CgroupManager) -> std::io::Result<Option<OwnedFd>> {
    let Some((dir, file)) = cgroup.oom_counter() else {
        return Ok(None);
    };
    match cgroup.layout() {
        Layout::Legacy | Layout::Hybrid => v1_eventfd(dir, file).map(Some),
        Layout::Unified => inotify_modify(&dir.join(file)).map(Some),
    }
}

/// An eventfd the kernel signals on each OOM of the memory cgroup `dir` (and on its removal).
fn v1_eventfd(dir: &Path, oom_control: &str) -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd takes plain integers; a new fd is ours alone.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by eventfd and is owned by nothing else.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let control = File::open(dir.join(oom_control))?;
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?
        .write_all(line.as_bytes())?;
    // The registration holds its own reference to the control file.
    drop(control);
    Ok(efd)
}

/// An inotify fd reporting each modification of `path`.
fn inotify_modify(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
    // SAFETY: inotify_init1 takes flags only; a new fd is ours alone.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by inotify_init1 and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), name.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Reads whatever is pending on `fd` (an eventfd's count, inotify records): only the wake-up
/// matters. Ok once nothing is left to read.
fn drain(fd: &OwnedFd) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a buffer of ours of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            let err = std::io::Error::last_os_error();
            return match err.kind() {
                ErrorKind::WouldBlock => Ok(()),
                _ => Err(err),
            };
        }
    }
}

async fn watch(
    fd: OwnedFd,
    counter: Arc<Counter>,
    (settle_steps, settle_step): (u32, std::time::Duration),
) {
    // SAFETY: `fd` is an OwnedFd that the AsyncFd owns from here on: it stays open and the
    // same for the AsyncFd's whole life.
    let fd = match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(err) => {
            log::warn!("{}: OOM watch: {err}", counter.id);
            return;
        }
    };
    loop {
        let mut ready = match fd.readable().await {
            Ok(ready) => ready,
            Err(err) => {
                log::warn!("{}: OOM watch: {err}", counter.id);
                return;
            }
        };
        if let Err(err) = drain(fd.get_ref()) {
            log::warn!("{}: OOM watch: {err}", counter.id);
            return;
        }
        ready.clear_ready();
        let mut steps = 0;
        // v2 wakes for every change of `memory.events`: look again only after an OOM, or a
        // limit hit (at most once a second: a container at its limit makes one every few ms).
        let unified = counter.cgroup.layout() == Layout::Unified;
        let settle_steps = match unified {
            true => match counter.look() {
                Look::Oom => settle_steps,
                Look::Max if counter.max_settle_due() => settle_steps,
                _ => 0,
            },
            false => settle_steps,
        };
        while !counter.check() && steps < settle_steps && !counter.cgroup_gone() {
            tokio::time::sleep(settle_step).await;
            if unified {
                counter.look();
            }
            steps += 1;
        }
        // v1 signals the eventfd once more when the cgroup goes: then nothing is left to watch.
        if counter.cgroup_gone() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use runtime_core::cgroups::{CgroupManager, Hierarchies, Hierarchy, Layout, ProcessCgroups};

    use super::*;

    /// A unified-layout manager for `/c1` below a fixture mount, with a `memory.events`.
    fn unified_fixture(mount: &Path) -> CgroupManager {
        let hierarchies = Hierarchies {
            layout: Layout::Unified,
            v1: Vec::new(),
            unified: Some(Hierarchy {
                controllers: Vec::new(),
                mount_point: mount.to_path_buf(),
                root: "/".into(),
            }),
        };
        let m = CgroupManager::with_hierarchies(
            &hierarchies,
            &ProcessCgroups::default(),
            "c1",
            Some(Path::new("/c1")),
        )
        .unwrap();
        std::fs::create_dir_all(m.unified_path().unwrap()).unwrap();
        write_events(&m, 0);
        m
    }

    fn write_events(m: &CgroupManager, oom_kill: u64) {
        let text = format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {oom_kill}\n");
        std::fs::write(m.unified_path().unwrap().join("memory.events"), text).unwrap();
    }

    #[tokio::test]
    async fn v2_memory_events_oom_kill_rise_publishes_one_oom_event_each() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = unified_fixture(tmp.path());
        let (publisher, mut events) = Publisher::captured();
        let watch = OomWatch::start("c1", &cgroup, publisher, "ns");
        assert!(
            watch.task.is_some(),
            "inotify on memory.events must be set up"
        );

        // A modification that does not raise oom_kill (a `max` event) publishes nothing.
        write_events(&cgroup, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(events.topics_so_far().is_empty());

        write_events(&cgroup, 1);
        let topic = tokio::time::timeout(Duration::from_secs(5), events.next_topic()).await;
        assert_eq!(topic.ok().flatten().as_deref(), Some("/tasks/oom"));

        // The exit's check finds nothing new: no second event for the same kill.
        watch.check();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(events.topics_so_far().is_empty());
    }

    #[tokio::test]
    async fn a_kill_counted_after_the_wake_up_is_published_without_another_notification() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = unified_fixture(tmp.path());
        let (publisher, mut events) = Publisher::captured();
        let _watch = OomWatch::start("c1", &cgroup, publisher, "ns");
        let dir = cgroup.unified_path().unwrap().to_path_buf();
        // The wake-up: the cgroup at its limit (`max`), no OOM counted yet.
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 0\noom_kill 0\n",
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The kill is counted, but the kernel's next notification never comes (held back,
        // and the cgroup soon gone): a new file renamed over the watched one.
        // (A second link keeps the watched inode alive: its removal would wake the watch.)
        std::fs::hard_link(dir.join("memory.events"), dir.join("memory.events.old")).unwrap();
        let next = dir.join("memory.events.new");
        std::fs::write(&next, "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n").unwrap();
        std::fs::rename(&next, dir.join("memory.events")).unwrap();
        let topic = tokio::time::timeout(Duration::from_secs(2), events.next_topic()).await;
        assert_eq!(topic.ok().flatten().as_deref(), Some("/tasks/oom"));
    }

    #[tokio::test]
    async fn a_sigkilled_init_whose_cgroup_went_first_counts_the_parents_kill_after_its_oom() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = unified_fixture(tmp.path());
        // The parent cgroup (the fixture's mount), which counts its children's kills too; a
        // sibling's kill before this container's OOM is not this container's.
        let parent_events = |oom_kill: u64| {
            let text = format!("low 0\nhigh 0\nmax 5\noom 5\noom_kill {oom_kill}\n");
            std::fs::write(tmp.path().join("memory.events"), text).unwrap();
        };
        parent_events(3);
        let (publisher, mut events) = Publisher::captured();
        let watch = OomWatch::start("c1", &cgroup, publisher, "ns");
        let dir = cgroup.unified_path().unwrap().to_path_buf();
        // The OOM wakes the watch; the kill is counted, the scope removed before the file's
        // next notification, and the count with it.
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 2\noom_kill 0\n",
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        parent_events(4);
        std::fs::remove_dir_all(&dir).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(events.topics_so_far().is_empty());

        // An init that did not die of SIGKILL was not the OOM killer's.
        tokio::time::timeout(Duration::from_millis(500), watch.deliver(false))
            .await
            .expect("no kill to deliver");
        assert!(events.topics_so_far().is_empty());

        let deliver = tokio::spawn(async move { watch.deliver(true).await });
        let topic = tokio::time::timeout(Duration::from_secs(2), events.next_topic()).await;
        assert_eq!(topic.ok().flatten().as_deref(), Some("/tasks/oom"));
        deliver.await.unwrap();
    }

    #[tokio::test]
    async fn a_gone_cgroup_without_an_oom_of_its_own_takes_no_kill_from_its_parent() {
        for limit_hit in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let cgroup = unified_fixture(tmp.path());
            let parent = tmp.path().join("memory.events");
            std::fs::write(&parent, "max 5\noom 5\noom_kill 3\n").unwrap();
            let (publisher, mut events) = Publisher::captured();
            let watch = OomWatch::start("c1", &cgroup, publisher, "ns");
            let dir = cgroup.unified_path().unwrap().to_path_buf();
            if limit_hit {
                // At its limit (page cache reclaimed, as a container writing files makes it),
                // but no OOM of its own.
                std::fs::write(dir.join("memory.events"), "max 9\noom 1\noom_kill 0\n").unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A sibling's kill, and this container killed from outside, its cgroup gone.
            std::fs::write(&parent, "max 6\noom 6\noom_kill 4\n").unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            tokio::time::timeout(Duration::from_millis(500), watch.deliver(true))
                .await
                .expect("no kill to deliver");
            assert!(events.topics_so_far().is_empty(), "limit hit: {limit_hit}");
        }
    }

    #[tokio::test]
    async fn the_exit_check_publishes_a_kill_the_watch_has_not_seen_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = unified_fixture(tmp.path());
        let (publisher, mut events) = Publisher::captured();
        let watch = OomWatch::start("c1", &cgroup, publisher, "ns");
        write_events(&cgroup, 2);
        // Before the watch task runs (this test holds the only thread): the check alone.
        watch.check();
        assert_eq!(events.topics_so_far(), ["/tasks/oom"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(events.topics_so_far().is_empty(), "published once");
    }

    #[tokio::test]
    async fn an_exit_after_an_oom_kill_waits_until_the_kill_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = unified_fixture(tmp.path());
        let (publisher, mut events) = Publisher::captured();
        let watch = OomWatch::start("c1", &cgroup, publisher, "ns");

        // No kill: nothing to wait for, even with nobody taking the queue.
        tokio::time::timeout(Duration::from_millis(500), watch.deliver(false))
            .await
            .expect("an exit without an OOM kill must not wait");

        write_events(&cgroup, 1);
        let taker = {
            let deliver = watch.deliver(false);
            tokio::pin!(deliver);
            assert!(
                tokio::time::timeout(Duration::from_millis(300), &mut deliver)
                    .await
                    .is_err(),
                "the exit went on before containerd took /tasks/oom"
            );
            let taker = tokio::spawn(async move {
                let mut topics = Vec::new();
                while let Some(topic) = events.next_topic().await {
                    topics.push(topic);
                }
                topics
            });
            tokio::time::timeout(Duration::from_secs(5), &mut deliver)
                .await
                .expect("delivered once the queue was taken");
            taker
        };
        drop(watch);
        let topics = tokio::time::timeout(Duration::from_secs(5), taker).await;
        assert_eq!(topics.unwrap().unwrap(), ["/tasks/oom"]);
    }
}
