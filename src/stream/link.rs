//! One WebSocket of a connection and its two threads (see `ARCHITECTURE.md`):
//!
//! - the **reader thread** (`read.rs`), the only reader of the socket, delivering decoded
//!   messages to the connection's bounded channel;
//! - the **writer loop** (`write.rs`), run by the thread that waits for the link's end
//!   (the session's, see [`Link::drive`]): pong and close replies, keepalive pings and
//!   our close;
//!
//! and senders, which write on their own threads under the socket lock (`handover.rs`).
//! A link never reconnects: the session replaces it.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

use super::handover::SocketLock;
use super::read::{Metered, Outbox, Reader, Room, Stamped, Ws};
use super::socket::Socket;
use super::CloseReason;
use crate::error::{Closed, Error, Result, StreamError};
use crate::sync::lock;

/// Tuning of a [`Link`].
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    /// Name for log lines, e.g. `"upstream"`.
    pub(crate) name: String,
    /// How long our close waits for the peer's close reply before dropping the socket.
    pub(crate) close_timeout: Duration,
    /// How long one write may wait for the peer to take data before the connection is
    /// declared dead.
    pub(crate) write_timeout: Duration,
    /// Keepalive: ping the peer this often, and declare it dead when nothing at all
    /// arrives within `pong_timeout` of a ping. `None` disables it.
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Duration,
}

/// What the writer loop is asked to do. At most one of each waits at a time (see
/// [`Shared::flush_wanted`] and [`Shared::close_sent`]), so the channel is bounded.
pub(crate) enum Command {
    /// The reader saw a ping or a close: write the automatic reply.
    Flush,
    /// Keepalive: ping the peer.
    Ping,
    Close,
}

/// Room for one `Flush` and one `Close`.
const COMMANDS: usize = 2;

/// What the threads of one link share.
pub(crate) struct Shared {
    /// Sends fail from now on; set by our close, a failed write, a dead keepalive and the
    /// reader's end.
    pub(crate) closing: AtomicBool,
    /// Why the link ended: the first reason wins.
    reason: Mutex<Option<CloseReason>>,
    /// Dropped on close: the reader stops waiting for room and stashes instead.
    stop_tx: Mutex<Option<Sender<()>>>,
    pub(crate) name: String,
    /// When anything last arrived from the peer, in microseconds since `epoch`.
    last_seen: AtomicU64,
    /// The reader is handing frames over and may be waiting for room in the channel:
    /// meanwhile it reads nothing, pongs included, so silence proves nothing.
    pub(crate) delivering: AtomicBool,
    epoch: Instant,
    /// A `Flush` is queued and not yet taken: the reader queues no other.
    pub(crate) flush_wanted: AtomicBool,
    /// Our `Close` is queued: it is queued once.
    close_sent: AtomicBool,
    /// The close timeout ran out: the reader stops whatever the peer still sends.
    pub(crate) abandoned: AtomicBool,
    /// Where the reader waits for room in the channel: closing wakes it.
    room: Arc<Room>,
}

impl Shared {
    /// Records that the peer was heard from at `at`.
    pub(crate) fn seen_at(&self, at: Instant) {
        let micros = at.saturating_duration_since(self.epoch).as_micros() as u64;
        self.last_seen.store(micros, Ordering::SeqCst);
    }

    /// When the peer was last heard from.
    pub(crate) fn seen(&self) -> Instant {
        self.epoch + Duration::from_micros(self.last_seen.load(Ordering::SeqCst))
    }

    /// Records why the link ended; the first reason wins.
    pub(crate) fn end(&self, reason: CloseReason) {
        let mut slot = lock(&self.reason);
        if slot.is_none() {
            log::debug!("{}: connection ended: {reason}", self.name);
            *slot = Some(reason);
        }
    }

    /// A ping or a close was read: its automatic reply waits in tungstenite for a flush.
    /// One queued flush covers every ping read until the writer takes it.
    pub(crate) fn want_flush(&self, cmd: &Sender<Command>) {
        if !self.flush_wanted.swap(true, Ordering::AcqRel) {
            let _ = cmd.try_send(Command::Flush);
        }
    }

    /// Ends the link after a failure: sends fail from now on, and the reader wakes up.
    pub(crate) fn fail(&self, tcp: &TcpStream, why: StreamError) {
        self.end(CloseReason::Error(why));
        self.closing.store(true, Ordering::Release);
        let _ = tcp.shutdown(Shutdown::Both);
    }
}

/// Sending, with the socket type erased so that [`Link`] needs no type parameter.
trait Outgoing: Send + Sync {
    fn send(&self, message: Message, shared: &Shared) -> Result<()>;
}

/// What senders share with the writer loop: the WebSocket and its TCP stream.
struct Wire<S> {
    ws: Arc<Ws<S>>,
    tcp: Arc<TcpStream>,
    write_timeout: Duration,
}

impl<S: Socket> Outgoing for Wire<S> {
    fn send(&self, message: Message, shared: &Shared) -> Result<()> {
        super::write::send(&self.ws, &self.tcp, shared, message, self.write_timeout)
    }
}

/// A running WebSocket connection. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub(crate) struct Link {
    cmd: Sender<Command>,
    wire: Box<dyn Outgoing>,
    shared: Arc<Shared>,
    done: Receiver<()>,
    reader: Mutex<Option<JoinHandle<()>>>,
    /// The writer's loop, until a thread takes it to run (see [`Link::drive`]).
    writer: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Link {
    /// Starts the reader thread over a non-blocking socket (the handshake left it so)
    /// whose WebSocket upgrade is done, and readies the writer loop for the thread that
    /// will wait for the link's end; `read_ahead` is what the handshake read past its
    /// end. Every inbound text or binary message goes through `decode`; what it returns
    /// is delivered to `outbox`.
    pub(crate) fn spawn<S, T, D>(
        stream: S,
        read_ahead: Vec<u8>,
        config: WebSocketConfig,
        options: LinkOptions,
        decode: D,
        outbox: Outbox<Stamped<T>>,
    ) -> Result<Link>
    where
        S: Socket,
        T: Send + 'static,
        D: Fn(Bytes) -> Option<T> + Send + 'static,
    {
        // One descriptor for readiness waits and shutdown, shared by every thread of
        // the link.
        let tcp = Arc::new(stream.tcp().try_clone().map_err(Error::Io)?);
        let ws = WebSocket::from_partially_read(
            Metered::new(stream),
            read_ahead,
            Role::Client,
            Some(config),
        );
        let ws = Arc::new(SocketLock::new(ws));
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(COMMANDS);
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let (alive_tx, done) = crossbeam_channel::bounded::<()>(0);
        let (reader_alive, reader_done) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            reason: Mutex::new(None),
            stop_tx: Mutex::new(Some(stop_tx)),
            name: options.name.clone(),
            last_seen: AtomicU64::new(0),
            delivering: AtomicBool::new(false),
            epoch: Instant::now(),
            flush_wanted: AtomicBool::new(false),
            close_sent: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            room: outbox.room.clone(),
        });
        let reader = Reader {
            ws: ws.clone(),
            tcp: tcp.clone(),
            shared: shared.clone(),
            cmd: cmd_tx.clone(),
            decode,
            outbox,
            stop,
        };
        let alive = alive_tx.clone();
        let reader = std::thread::Builder::new()
            .name(format!("ran-{}-reader", options.name))
            .spawn(move || {
                let _alive = (alive, reader_alive);
                reader.run();
            })
            .map_err(Error::Io)?;
        let wire = Box::new(Wire {
            ws: ws.clone(),
            tcp: tcp.clone(),
            write_timeout: options.write_timeout,
        });
        let writer: Box<dyn FnOnce() + Send> = {
            let shared = shared.clone();
            Box::new(move || {
                let _alive = alive_tx;
                super::write::write_loop(&ws, &tcp, &shared, &cmd_rx, &reader_done, &options);
            })
        };
        Ok(Link {
            cmd: cmd_tx,
            wire,
            shared,
            done,
            reader: Mutex::new(Some(reader)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Runs the writer's loop on the calling thread until the link ends; at once if
    /// another thread runs or ran it. [`wait_closed`](Self::wait_closed) calls it first,
    /// so the thread that waits for the link's end (the session's) is its writer: a
    /// thread of its own per connection cost a spawn on every connect.
    fn drive(&self) {
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer();
        }
    }

    /// Sends one text message; returns once it has been written to the socket.
    pub(crate) fn send_text(&self, text: String) -> Result<()> {
        self.send_message(Message::text(text))
    }

    /// Sends any WebSocket message; returns once it has been written to the socket.
    pub(crate) fn send_message(&self, message: Message) -> Result<()> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        self.wire.send(message, &self.shared).map_err(|e| match e {
            // Say why the connection is closed, not only that it is.
            Error::Closed(Closed::Connection(_)) => self.closed_error(),
            other => other,
        })
    }

    /// Starts closing: sends a close frame, lets the reader finish, then drops the
    /// socket. Returns at once.
    pub(crate) fn close(&self) {
        if !self.shared.closing.swap(true, Ordering::AcqRel) {
            self.shared.end(CloseReason::Local);
        }
        lock(&self.shared.stop_tx).take();
        self.shared.room.wake();
        if !self.shared.close_sent.swap(true, Ordering::AcqRel) {
            let _ = self.cmd.try_send(Command::Close);
        }
    }

    /// Commands waiting for the writer loop, for tests of the bound.
    #[cfg(test)]
    pub(crate) fn queued_commands(&self) -> usize {
        self.cmd.len()
    }

    /// Blocks until the reader and the writer are done, running the writer here if no
    /// thread has yet, and returns why the link ended.
    pub(crate) fn wait_closed(&self) -> CloseReason {
        self.drive();
        let _ = self.done.recv();
        let reader = lock(&self.reader).take();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        self.reason().unwrap_or(CloseReason::Local)
    }

    /// Waits up to `timeout` for the reader and the writer to be done; `None` if they are
    /// still running. Runs nothing itself: the session's thread is the writer.
    pub(crate) fn wait_closed_timeout(&self, timeout: Duration) -> Option<CloseReason> {
        match self.done.recv_timeout(timeout) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            _ => Some(self.wait_closed()),
        }
    }

    /// Why the link ended, once it has.
    pub(crate) fn reason(&self) -> Option<CloseReason> {
        lock(&self.shared.reason).clone()
    }

    fn closed_error(&self) -> Error {
        // Every path that sets `closing` records its reason first; none recorded would
        // be our own close under way.
        let reason = self.reason().unwrap_or(CloseReason::Local);
        Error::Closed(Closed::Connection(reason))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
        self.wait_closed();
    }
}
