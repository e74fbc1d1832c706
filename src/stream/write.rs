//! Writing on a link: a sender's frame on the sender's own thread, and the link's own
//! writer loop for pong and close replies, keepalive pings and our close.
//!
//! A send takes the socket lock just long enough to hand the frame to the socket; a
//! write that would block waits for writability outside the lock, so the reader goes on
//! meanwhile. Handing each send to another thread and waiting for its answer cost two
//! thread wake-ups per message (`benches/streams.rs`, `downstream_send_throughput`).

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tungstenite::{Bytes, Message};

use super::link::{Command, LinkOptions, Shared};
use super::read::Ws;
use super::socket::{wait_ready, would_block, Interest, Socket};
use crate::error::{CloseReason, Closed, Error, Result, StreamError, StreamErrorKind, TimeoutKind};

/// Writes one message on the caller's thread; returns once the socket has taken it.
pub(crate) fn send<S: Socket>(
    ws: &Ws<S>,
    tcp: &TcpStream,
    shared: &Shared,
    message: Message,
    write_timeout: Duration,
) -> Result<()> {
    {
        let mut guard = ws.lock_to_write();
        // Usually the socket takes the whole frame at once: flush under the same lock.
        let written = guard.write(message).and_then(|()| match guard.flush() {
            // As in `flush`: nothing left to write on a connection that finished closing.
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                Ok(())
            }
            other => other,
        });
        match written {
            Ok(()) => return Ok(()),
            // Buffered by tungstenite; the flush below finishes it.
            Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
            Err(tungstenite::Error::Io(e)) => {
                drop(guard);
                let e = Error::Io(e);
                shared.fail(tcp, StreamError::write_failed(&e));
                return Err(e);
            }
            Err(e) => return Err(map_ws_error(e)),
        }
    }
    flush(ws, tcp, write_timeout).inspect_err(|e| {
        shared.fail(tcp, StreamError::write_failed(e));
    })
}

/// The writer's keepalive clock.
struct Keepalive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    /// When the unanswered ping was sent.
    awaiting: Option<Instant>,
}

enum Tick {
    Idle,
    Ping,
    Dead(StreamError),
}

impl Keepalive {
    fn due(&self) -> Instant {
        match self.awaiting {
            Some(sent) => self.next_ping.min(sent + self.pong_timeout),
            None => self.next_ping,
        }
    }

    fn tick(&mut self, shared: &Shared) -> Tick {
        let now = Instant::now();
        if let Some(sent) = self.awaiting {
            // Any frame counts as a sign of life, not only the pong. A reader waiting for
            // room in a full channel cannot see the pong: the clock starts again once it
            // reads.
            if shared.delivering.load(Ordering::SeqCst) || shared.seen() >= sent {
                self.awaiting = None;
            } else if now >= sent + self.pong_timeout {
                return Tick::Dead(StreamError::new(
                    StreamErrorKind::Timeout(TimeoutKind::Keepalive),
                    format!(
                        "no answer to a ping within {:?}; the peer is gone",
                        self.pong_timeout
                    ),
                ));
            }
        }
        if now >= self.next_ping {
            self.next_ping = now + self.interval;
            self.awaiting.get_or_insert(now);
            return Tick::Ping;
        }
        Tick::Idle
    }
}

/// The link's writer loop, run by the thread that waits for the link's end (see
/// `Link::drive`): replies the reader asks for, keepalive, and our close.
pub(crate) fn write_loop<S: Socket>(
    ws: &Ws<S>,
    tcp: &TcpStream,
    shared: &Shared,
    cmds: &Receiver<Command>,
    reader_done: &Receiver<()>,
    options: &LinkOptions,
) {
    let mut keepalive = options.ping_interval.map(|interval| Keepalive {
        interval,
        pong_timeout: options.pong_timeout,
        next_ping: Instant::now() + interval,
        awaiting: None,
    });
    loop {
        let wait = keepalive.as_ref().map_or(Duration::MAX, |k| {
            k.due().saturating_duration_since(Instant::now())
        });
        let cmd = select! {
            recv(cmds) -> cmd => cmd.unwrap_or(Command::Close),
            recv(reader_done) -> _ => return,
            default(wait) => {
                let Some(k) = keepalive.as_mut() else { continue };
                match k.tick(shared) {
                    Tick::Idle => continue,
                    Tick::Ping => Command::Ping,
                    Tick::Dead(why) => {
                        shared.fail(tcp, why);
                        return;
                    }
                }
            }
        };
        let close = matches!(cmd, Command::Close);
        if matches!(cmd, Command::Flush) {
            // From now on a ping read needs another flush.
            shared.flush_wanted.store(false, Ordering::Release);
        }
        {
            let mut guard = ws.lock_to_write();
            let written = match cmd {
                // The automatic reply is already queued inside tungstenite.
                Command::Flush => Ok(()),
                Command::Ping => guard.write(Message::Ping(Bytes::new())),
                Command::Close => guard.close(None),
            };
            match written {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
                Err(e) if !close => log::debug!("{}: cannot write: {e}", shared.name),
                Err(_) => {}
            }
        }
        if let Err(e) = flush(ws, tcp, options.write_timeout) {
            if !close {
                shared.fail(tcp, StreamError::write_failed(&e));
                return;
            }
        }
        if close {
            // Give the peer a moment to answer our close, then drop the socket so the
            // reader wakes up whatever the peer does.
            if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                reader_done.recv_timeout(options.close_timeout)
            {
                log::debug!(
                    "{}: no close reply in time; dropping the socket",
                    shared.name
                );
                shared.abandoned.store(true, Ordering::Release);
                let _ = tcp.shutdown(Shutdown::Both);
            }
            return;
        }
    }
}

/// Writes out everything tungstenite has buffered, waiting for writability outside the
/// lock so the reader can go on.
fn flush<S: Socket>(ws: &Ws<S>, tcp: &TcpStream, timeout: Duration) -> Result<()> {
    loop {
        let result = ws.lock_to_write().flush();
        match result {
            Ok(()) => return Ok(()),
            Err(tungstenite::Error::Io(e)) if would_block(&e) => {
                if !wait_ready(tcp, Interest::Write, Some(timeout)).map_err(Error::Io)? {
                    return Err(Error::timeout(
                        TimeoutKind::Write,
                        format!("the peer took no data for {timeout:?}"),
                    ));
                }
            }
            // Nothing left to write on a connection that finished closing.
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return Ok(())
            }
            Err(e) => return Err(map_ws_error(e)),
        }
    }
}

/// Maps a tungstenite error of an established connection.
pub(crate) fn map_ws_error(e: tungstenite::Error) -> Error {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::Io(e) => Error::Io(e),
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::SendAfterClosing) => {
            // The link replaces it with the reason it recorded (`Link::send_message`).
            Error::Closed(Closed::Connection(CloseReason::Local))
        }
        other => Error::WebSocket(StreamError::websocket("write failed", other)),
    }
}
