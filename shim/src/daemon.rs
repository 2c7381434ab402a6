//! The daemon: one tokio thread serving the Task API on the socket `start` bound, reaping
//! children as a subreaper, publishing events, until Shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use ttrpc::r#async::Server;

use crate::args::Args;
use crate::bootstrap::{LISTENER_FD, SocketFile};
use crate::events::Publisher;
use crate::logger;
use crate::reaper::ExitMonitor;
use crate::service::TaskService;

pub fn run(args: &Args) -> Result<(), String> {
    let bundle = args
        .bundle_dir()
        .map_err(|e| format!("working directory: {e}"))?;
    logger::init(&bundle, args.debug);
    // Orphans of the container (its init re-parented by CLONE_PARENT is our child anyway)
    // come to us, not to pid 1.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        log::warn!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
    }
    // One malloc arena: the few short-lived blocking threads would each get their own,
    // which stays after they exit.
    // SAFETY: mallopt with integer arguments, before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking work (building a container, removing a cgroup) is rare: do not keep an
        // idle thread and its stack around for long.
        .thread_keep_alive(Duration::from_millis(100))
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = runtime.block_on(serve(args));
    if let Err(err) = &result {
        log::error!("daemon: {err}");
    }
    result
}

async fn serve(args: &Args) -> Result<(), String> {
    let monitor = ExitMonitor::start().map_err(|e| format!("SIGCHLD handler: {e}"))?;
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").unwrap_or_else(|_| format!("{}.ttrpc", args.address));
    let publisher = Publisher::start(ttrpc_address);
    let shutdown = Arc::new(Notify::new());
    // Its path is kept here: the bundle and its `address` file may be gone at shutdown.
    let socket = SocketFile::of_listener(LISTENER_FD);
    let remove_socket = socket.clone();
    let service = Arc::new(TaskService::new(
        args.namespace.clone(),
        publisher.clone(),
        monitor,
        socket,
        shutdown.clone(),
    ));
    // SAFETY: `start` passed us the listening socket as LISTENER_FD; the server owns it now.
    let server = unsafe { Server::new().add_unix_listener(LISTENER_FD) }
        .map_err(|e| format!("listener: {e}"))?;
    let mut server = server.register_service(service.services());
    server.start().await.map_err(|e| format!("serve: {e}"))?;
    log::info!("serving {} for {}", crate::RUNTIME_NAME, args.id);

    shutdown.notified().await;
    log::info!("shutdown");
    // Let the Shutdown reply and the last events go out.
    let _ = tokio::time::timeout(Duration::from_secs(5), publisher.flush()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), server.shutdown()).await;
    // Shutdown removed it already; this is for any other way out.
    if let Some(socket) = remove_socket {
        socket.remove();
    }
    Ok(())
}
