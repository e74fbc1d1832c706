//! The socket under a WebSocket: plain TCP or TLS, and readiness waits on its descriptor.
//!
//! The reader thread must not hold the WebSocket while it waits for data (a send would
//! wait behind it), so it waits on the TCP descriptor with `poll(2)` and only then takes
//! the WebSocket to read what has arrived. Sockets run in non-blocking mode; a write
//! that would block waits for writability the same way, outside the lock.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
/// passes. Returns `false` on timeout.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn wait_ready(
    tcp: &TcpStream,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;

    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut fds = libc::pollfd {
        fd: tcp.as_raw_fd(),
        events,
        revents: 0,
    };
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // Round up so a sub-millisecond remainder does not spin.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `fds` is one valid, initialised pollfd that outlives the call, and the
        // descriptor stays open because `tcp` is borrowed for the whole call.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n > 0 {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Portable fallback: without `poll(2)`, wait in short sleeps. Correct, if less frugal.
#[cfg(not(unix))]
pub(crate) fn wait_ready(
    _tcp: &TcpStream,
    _interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let step = Duration::from_millis(2);
    std::thread::sleep(timeout.map_or(step, |t| t.min(step)));
    Ok(true)
}

/// Whether an I/O error only means "not ready yet".
pub(crate) fn would_block(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
