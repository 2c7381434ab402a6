//! Copies between the process's pipes and containerd's fifos (or a `file://` log file). The
//! fifos are opened read-write: that never blocks, and writes do not fail while containerd,
//! the reader, restarts.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::os_pipe;

/// The process's stdin: what containerd writes into the fifo at `path` is copied into a pipe.
/// Returns the process's end of it and the sender that ends the copy (CloseIO): what is
/// already in the fifo is passed on, then the process reads EOF.
pub fn stdin(path: &str) -> io::Result<(OwnedFd, oneshot::Sender<()>)> {
    let source = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(fifo_path(path)?)
        .map_err(|e| annotate(e, path))?;
    let (read, write) = os_pipe()?;
    let sink = pipe::Sender::from_owned_fd(write)?;
    let (close, closed) = oneshot::channel();
    tokio::spawn(copy_stdin(source, sink, closed));
    Ok((read, close))
}

/// The process's stdout or stderr: a pipe whose read end is copied into the fifo at `path`,
/// or into a `file://` URI's log file. Returns the process's end and the copy, which ends
/// once every holder of that end has closed it and the output is written.
pub fn output(path: &str) -> io::Result<(OwnedFd, JoinHandle<()>)> {
    let (read, write) = os_pipe()?;
    let source = pipe::Receiver::from_owned_fd(read)?;
    let handle = match path.strip_prefix("file://") {
        // ctr --log-uri file:///x: a log file, created as needed.
        Some(file) => {
            if let Some(dir) = std::path::Path::new(file).parent() {
                std::fs::create_dir_all(dir).map_err(|e| annotate(e, path))?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .map_err(|e| annotate(e, path))?;
            tokio::spawn(copy_out(source, tokio::fs::File::from_std(file)))
        }
        None => {
            // Read-write: never blocks on open, and writes do not fail while containerd (the
            // reader) restarts.
            let sink = pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(fifo_path(path)?)
                .map_err(|e| annotate(e, path))?;
            tokio::spawn(copy_out(source, sink))
        }
    };
    Ok((write, handle))
}

async fn copy_out<W: tokio::io::AsyncWrite + Unpin>(mut source: pipe::Receiver, mut sink: W) {
    if let Err(err) = tokio::io::copy(&mut source, &mut sink).await {
        log::warn!("copy output: {err}");
    }
    let _ = sink.flush().await;
}

async fn copy_stdin(
    mut source: pipe::Receiver,
    mut sink: pipe::Sender,
    mut close: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            read = tokio::io::AsyncReadExt::read(&mut source, &mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if sink.write_all(&buf[..n]).await.is_err() { return },
            },
            _ = &mut close => {
                // Pass on what is already in the fifo, then close: the process reads EOF.
                loop {
                    match source.try_read(&mut buf) {
                        Ok(n) if n > 0 => if sink.write_all(&buf[..n]).await.is_err() { return },
                        _ => return,
                    }
                }
            }
        }
    }
}

/// containerd passes fifo paths (and `file://` or `binary://` URIs, handled by the callers).
fn fifo_path(uri: &str) -> io::Result<&str> {
    if uri.contains("://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("stdio {uri:?}: only fifo paths, file:// and binary:// URIs are supported"),
        ));
    }
    Ok(uri)
}

fn annotate(err: io::Error, path: &str) -> io::Error {
    io::Error::new(err.kind(), format!("open {path}: {err}"))
}
