//! A process's terminal: the pty master that the container's process handed over (it
//! allocated the pty in its own devpts, see `runtime_core::process::terminal`), copied to and
//! from the process's stdio streams (see `stdio`). A tty has no stderr: everything the
//! process writes comes out of the master. The master is closed once the process's side is
//! gone and its output has been read.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SpecialCharacterIndices, tcgetattr};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

type Master = AsyncFd<OwnedFd>;

/// The shim's end of a process's pty.
pub struct Pty {
    /// Held by the output copy only: gone once the output is drained.
    master: Weak<Master>,
}

impl Pty {
    /// Starts copying the master's output into `output` (or nowhere; until every holder of the slave
    /// closed it and what they wrote has been read) and `input` into the master. When
    /// `input` ends (CloseIO), the process reads end-of-file: the terminal's EOF character
    /// is typed. Returns the output copy, which ends when the output is drained.
    pub fn start(
        master: OwnedFd,
        input: Option<OwnedFd>,
        output: Option<OwnedFd>,
    ) -> io::Result<(Pty, JoinHandle<()>)> {
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same fd until both
        // are dropped together.
        let master = Arc::new(unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?);
        let sink = output.map(pipe::Sender::from_owned_fd).transpose()?;
        if let Some(input) = input {
            let source = pipe::Receiver::from_owned_fd(input)?;
            tokio::spawn(copy_input(source, Arc::downgrade(&master)));
        }
        let pty = Pty {
            master: Arc::downgrade(&master),
        };
        Ok((pty, tokio::spawn(copy_output(master, sink))))
    }

    /// Sets the terminal's window size (ResizePty); the process gets SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let master = self.master.upgrade().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the terminal is closed: its process has exited",
            )
        })?;
        runtime_core::process::terminal::set_window_size(master.get_ref(), rows, cols)
    }
}

async fn copy_output(master: Arc<Master>, mut sink: Option<pipe::Sender>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match read(&master, &mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // EIO: the slave is closed everywhere and everything it wrote has been read.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                log::warn!("read pty: {e}");
                break;
            }
        };
        if let Some(out) = &mut sink
            && let Err(e) = out.write_all(&buf[..n]).await
        {
            log::warn!("copy pty output: {e}");
            break;
        }
    }
}

async fn copy_input(mut source: pipe::Receiver, master: Weak<Master>) {
    let mut buf = vec![0u8; 32 * 1024];
    // Whether the line typed so far is empty: EOF then ends the read at once, otherwise the
    // first EOF character only passes on the line.
    let mut at_line_start = true;
    loop {
        let n = match source.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(master) = master.upgrade() else {
            return;
        };
        if let Err(e) = write_all(&master, &buf[..n]).await {
            log::warn!("copy pty input: {e}");
            return;
        }
        at_line_start = matches!(buf[n - 1], b'\n' | b'\r');
    }
    let Some(master) = master.upgrade() else {
        return;
    };
    let eof = match tcgetattr(master.get_ref()) {
        Ok(termios) => termios.control_chars[SpecialCharacterIndices::VEOF as usize],
        Err(_) => 4, // ^D
    };
    let eofs = if at_line_start { 1 } else { 2 };
    for _ in 0..eofs {
        if let Err(e) = write_all(&master, &[eof]).await {
            log::warn!("end pty input: {e}");
            return;
        }
    }
}

async fn read(master: &Master, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = master.readable().await?;
        match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), buf)?)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(master: &Master, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref().as_fd(), data)?)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
