//! The daemon's log: `log` records written as logfmt lines into the bundle's `log` fifo,
//! which containerd copies into its own log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

struct FifoLogger {
    out: Mutex<File>,
    level: LevelFilter,
}

impl Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = format!(
            "time={secs:.6} level={} msg={:?} runtime={}\n",
            record.level().as_str().to_lowercase(),
            record.args().to_string(),
            crate::RUNTIME_NAME
        );
        if let Ok(mut out) = self.out.lock() {
            // Non-blocking: with no reader (containerd restarting) a full fifo drops lines
            // rather than stalling the daemon.
            let _ = out.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Logs into `bundle/log`. Opened read-write so that it never blocks and survives
/// containerd reopening its end after a restart. Without the fifo, logs are dropped.
pub fn init(bundle: &Path, debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let Ok(out) = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(bundle.join("log"))
    else {
        return;
    };
    let logger: &'static FifoLogger = Box::leak(Box::new(FifoLogger {
        out: Mutex::new(out),
        level,
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
