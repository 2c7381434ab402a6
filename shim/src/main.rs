//! `containerd-shim-mini-v2`: containerd's runtime v2 shim for mini.
//!
//! containerd runs this binary as `… -id ID start` (bootstrap: spawn the daemon, print its
//! address), `… -id ID -bundle B delete` (clean up after a dead daemon), `-v` and `-info`.
//! Without an action it is the daemon, serving the Task API over ttrpc. Run with the hidden
//! runtime-core argument it is the single-threaded container setup helper.

mod args;
mod bootstrap;
mod cleanup;
mod container;
mod daemon;
mod errors;
mod events;
mod info;
mod logger;
mod metrics;
mod oom;
mod process;
mod reaper;
mod service;
mod stdio;

use std::process::ExitCode;

use args::{Action, Args};

/// The runtime type containerd knows this shim by.
pub const RUNTIME_NAME: &str = "io.containerd.mini.v2";

fn main() -> ExitCode {
    // Before anything else, and before any thread exists: the setup helper mode.
    runtime_core::process::run_helper_if_requested();

    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("containerd-shim-mini-v2: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match args.action {
        Action::Version => {
            info::print_version();
            Ok(())
        }
        Action::Info => info::print_runtime_info(),
        Action::Start => bootstrap::start(&args),
        Action::Delete => cleanup::delete(&args),
        Action::Daemon => daemon::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `start` must print nothing but the address on success; on failure containerd
            // shows this text in its error.
            eprintln!("containerd-shim-mini-v2: {err}");
            ExitCode::FAILURE
        }
    }
}
