//! runc's log: `--log FILE` (stderr by default) in logrus's `text` form
//! (`time="…" level=error msg="…"`) or `json` (`{"level":"error","msg":"…","time":"…"}`):
//! containerd's go-runc and podman read the last error from it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::Global;

pub struct Logger {
    file: Option<File>,
    json: bool,
    debug: bool,
}

impl Logger {
    pub fn open(global: &Global) -> Result<Self, String> {
        let file = match &global.log {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("open log {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Self {
            file,
            json: global.log_json,
            debug: global.debug,
        })
    }

    fn line(&self, level: &str, msg: &str) -> String {
        let time = rfc3339(SystemTime::now(), false);
        if self.json {
            let line = serde_json::json!({"level": level, "msg": msg, "time": time});
            format!("{line}\n")
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let line = self.line(level, msg);
        match &self.file {
            Some(file) => {
                let _ = (&*file).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    pub fn warn(&self, msg: &str) {
        self.write("warning", msg);
    }

    /// Makes this log the library's too (the `log` records of runtime-core): warnings and
    /// errors, everything with `--debug`. runc's warnings (a capability skipped, a resource
    /// left out) reach the same log as its errors.
    pub fn install(&self) {
        let copy = Logger {
            file: self.file.as_ref().and_then(|f| f.try_clone().ok()),
            json: self.json,
            debug: self.debug,
        };
        if ::log::set_logger(Box::leak(Box::new(copy))).is_ok() {
            ::log::set_max_level(if self.debug {
                ::log::LevelFilter::Debug
            } else {
                ::log::LevelFilter::Warn
            });
        }
    }

    /// The error that ends the command: to the log and, as runc does, plainly to stderr when
    /// the log is a file.
    pub fn fatal(&self, msg: &str) {
        self.write("error", msg);
        if self.file.is_some() {
            eprintln!("{msg}");
        }
    }
}

impl ::log::Log for Logger {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        metadata.level() <= ::log::Level::Warn || self.debug
    }

    fn log(&self, record: &::log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            ::log::Level::Error => "error",
            ::log::Level::Warn => "warning",
            ::log::Level::Info => "info",
            ::log::Level::Debug | ::log::Level::Trace => "debug",
        };
        self.write(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// `t` as RFC 3339 in UTC (`2006-01-02T15:04:05Z`, or with nanoseconds).
pub fn rfc3339(t: SystemTime, nanos: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let frac = if nanos {
        format!(".{:09}", d.subsec_nanos())
    } else {
        String::new()
    };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 5);
        assert_eq!(rfc3339(t, false), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(t, true), "2026-11-18T11:06:40.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
    }
}
