//! The socket under a WebSocket: plain TCP or TLS, and readiness waits on its descriptor.
//!
//! The reader thread must not hold the WebSocket while it waits for data (a send would
//! wait behind it), so it waits on the TCP descriptor with `poll` and only then takes
//! the WebSocket to read what has arrived. Sockets run in non-blocking mode; a write
//! that would block waits for writability the same way, outside the lock.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A byte stream a [`super::link::Link`] can drive: TCP, or TLS over TCP.
pub(crate) trait Socket: Read + Write + Send + 'static {
    /// The TCP stream underneath, for readiness waits, shutdown and options.
    fn tcp(&self) -> &TcpStream;

    /// Whether bytes are already decrypted and buffered above the TCP stream, so a read
    /// can succeed although the descriptor is not readable.
    fn has_buffered_input(&self) -> bool {
        false
    }
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn has_buffered_input(&self) -> bool {
        !self.conn.wants_read()
    }
}

impl Socket for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    fn has_buffered_input(&self) -> bool {
        !self.conn.wants_read()
    }
}

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Blocks until `tcp` is ready for `interest`, has hung up or failed, or `timeout`
/// passes. Returns `false` on timeout. `poll(2)` on unix, `WSAPoll` on Windows, through
/// rustix: every platform sleeps in the kernel until the socket is ready.
pub(crate) fn wait_ready(
    tcp: &TcpStream,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    let flags = match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = match deadline {
            None => None,
            Some(deadline) => {
                // Seconds well past any real timeout, and within every platform's range.
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1 << 20));
                Some(Timespec::try_from(left).map_err(io::Error::other)?)
            }
        };
        let mut fds = [PollFd::new(tcp, flags)];
        match poll(&mut fds, left.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether an I/O error only means "not ready yet".
pub(crate) fn would_block(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
