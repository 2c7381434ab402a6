//! Extra fds the caller passes to the container's process (runc's `--preserve-fds` and
//! `LISTEN_FDS` socket activation): the process gets them as fds 3, 4, … in order.
//!
//! They may lead anywhere on the host (a directory, a socket), so the process must not hold
//! them while it resolves the spec's paths. The caller queues them on the setup channel
//! right after the config ([`send`], [`MAX_FDS`] per `Fds` message); the init, or the exec
//! process, reads them only once it has resolved every path (after `Ready`), and puts them in
//! place right before exec ([`place`]).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::channel::{Channel, MAX_FDS, Message};
use crate::{Error, Result};

/// Queues `fds` for the process (it expects as many: the config's `pass_fds`).
pub(super) fn send(channel: &mut Channel, fds: &[BorrowedFd<'_>]) -> Result<()> {
    for chunk in fds.chunks(MAX_FDS) {
        let raw: Vec<RawFd> = chunk.iter().map(|fd| fd.as_raw_fd()).collect();
        channel.send_with_fds(&Message::Fds, &raw)?;
    }
    Ok(())
}

/// Reads the `count` fds the caller queued (close-on-exec until [`place`]).
pub(super) fn receive(channel: &mut Channel, count: usize) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::with_capacity(count);
    while fds.len() < count {
        match channel.recv()? {
            Some(Message::Fds) => fds.extend(channel.take_fds()),
            other => {
                return Err(Error::Setup(format!(
                    "expected {count} passed fds, got {} and then {other:?}",
                    fds.len()
                )));
            }
        }
    }
    if fds.len() != count {
        return Err(Error::Setup(format!(
            "expected {count} passed fds, got {}",
            fds.len()
        )));
    }
    Ok(fds)
}

/// Puts `fds` at 3, 4, … (without close-on-exec); the channel moves above them. Returns the
/// first fd number above them, from which everything must close on exec.
pub(super) fn place(channel: &mut Channel, fds: Vec<OwnedFd>) -> Result<RawFd> {
    let first_free = 3 + fds.len() as RawFd;
    if fds.is_empty() {
        return Ok(first_free);
    }
    let above = |fd: RawFd| -> Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd or -1.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free) };
        if new < 0 {
            return Err(Error::sys(
                "fcntl",
                format!("F_DUPFD_CLOEXEC {fd}"),
                nix::errno::Errno::last(),
            ));
        }
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(new) })
    };
    // The targets may hold the channel or the fds themselves: move all of them above first.
    let moved = above(channel.stream().as_raw_fd())?;
    *channel = Channel::new(UnixStream::from(moved));
    let sources = fds
        .iter()
        .map(|fd| above(fd.as_raw_fd()))
        .collect::<Result<Vec<_>>>()?;
    drop(fds);
    for (n, source) in sources.iter().enumerate() {
        let target = 3 + n as RawFd;
        // SAFETY: dup2 onto a number below first_free, where nothing we still use lives;
        // dup2 clears close-on-exec on the target.
        if unsafe { libc::dup2(source.as_raw_fd(), target) } < 0 {
            return Err(Error::sys(
                "dup2",
                format!("passed fd to {target}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(first_free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn fds_cross_in_chunks_and_arrive_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Channel::new(a), Channel::new(b));
        let files: Vec<std::fs::File> = (0..5).map(|_| tempfile::tempfile().unwrap()).collect();
        let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        send(&mut a, &borrowed).unwrap();
        a.send(&Message::Start).unwrap();
        let got = receive(&mut b, 5).unwrap();
        use std::os::unix::fs::MetadataExt;
        for (sent, got) in files.iter().zip(got) {
            let got = std::fs::File::from(got);
            assert_eq!(
                sent.metadata().unwrap().ino(),
                got.metadata().unwrap().ino()
            );
        }
        assert!(matches!(b.recv().unwrap(), Some(Message::Start)));
    }
}
