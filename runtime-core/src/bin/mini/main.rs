//! `mini`: the runtime core as an OCI runtime with runc's command line, for podman,
//! containerd's stock runc shim (`BinaryName`) and people. A thin layer: every container
//! operation is the library's ([`runtime_core::process::Launcher`], the cgroup manager, the
//! features document); this binary parses arguments, keeps the state directory ([`state`])
//! and reports errors as runc does (a log line, exit status 1).

mod args;
mod commands;
mod events;
mod log;
mod state;
mod user;

/// Errors of a command: the message runc would print.
pub type Result<T, E = String> = std::result::Result<T, E>;

fn main() {
    // The setup helper is this binary re-exec'd: before anything else.
    runtime_core::process::run_helper_if_requested();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (global, command) = match args::parse(argv) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("mini: {err}");
            std::process::exit(1);
        }
    };
    let logger = match log::Logger::open(&global) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("mini: {err}");
            std::process::exit(1);
        }
    };
    logger.install();
    match commands::run(&global, command, &logger) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            logger.fatal(&err);
            std::process::exit(1);
        }
    }
}
