//! One stream connection: a thread that owns the WebSocket, reads the LNS's frames and
//! writes everything the emulator sends on it.
//!
//! The socket is non-blocking and the thread sleeps in a readiness wait on it, woken by
//! another thread that queues a frame ([`Handle::send`]) or asks to close. Memory stays
//! bounded whatever the peer does: the queue of frames from other threads is bounded
//! (a sender waits, then fails), the thread reads nothing while its own answers are not
//! flushed (a peer that sends without reading stalls on TCP instead of growing our
//! buffers), and it reads at most [`BATCH`] frames before it serves the queue again, so
//! a flood of any kind of frame cannot starve writes or a close.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use polling::{Event, Events, Poller};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::frames::MAX_FRAME_SIZE;

/// The reason text of the close frame that `close_stream_connections` sends, with
/// code 1001 (going away).
const RESTART_REASON: &str = "server restart";
use super::{handle_frame, Kind};
use crate::error::{Error, Result};
use crate::server::{Shared, Socket};

/// Frames read (of any kind) before the queue and the timers are served again.
const BATCH: usize = 64;
/// Frames other threads may queue on one connection.
const QUEUE: usize = 64;
/// How long a send may wait for room in the queue, then for its frame to be written;
/// also how long written bytes may stay unflushed before the peer counts as stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close waits for the peer's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// tungstenite's read buffer: frames here are small JSON.
const READ_BUFFER: usize = 16 * 1024;
/// The socket's key in its poller.
const KEY: usize = 0;

/// A frame from another thread, and where to say whether it was written.
struct Command {
    message: Message,
    done: Sender<std::result::Result<(), String>>,
}

/// What other threads hold of a connection: they queue frames and ask it to close.
pub(crate) struct Handle {
    tx: Sender<Command>,
    poller: Arc<Poller>,
    close_requested: AtomicBool,
    closed: AtomicBool,
}

impl Handle {
    /// Queues frames in order and waits until every one is written to the socket: one
    /// wake-up of the connection's thread for the lot, not one thread switch per frame.
    /// Returns how many were written before the first failure, and that failure (the
    /// frames after it are not written: the connection writes in order and ends on a
    /// failed write).
    pub(crate) fn send_all(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> (usize, Result<()>) {
        let mut pending = Vec::new();
        let mut queued = Ok(());
        for message in messages {
            if self.is_closed() {
                queued = Err(Error::Closed("the connection is closed".into()));
                break;
            }
            let (done, written) = crossbeam_channel::bounded(1);
            let command = match self.tx.try_send(Command { message, done }) {
                Ok(()) => {
                    pending.push(written);
                    continue;
                }
                Err(TrySendError::Full(command)) => command,
                Err(TrySendError::Disconnected(_)) => {
                    queued = Err(Error::Closed("the connection is closed".into()));
                    break;
                }
            };
            // The queue is full: the thread must be awake to drain it.
            let _ = self.poller.notify();
            match self.tx.send_timeout(command, WRITE_TIMEOUT) {
                Ok(()) => pending.push(written),
                Err(SendTimeoutError::Timeout(_)) => {
                    queued = Err(Error::Closed(
                        "the connection's send queue stayed full".into(),
                    ));
                    break;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    queued = Err(Error::Closed("the connection is closed".into()));
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let _ = self.poller.notify();
        }
        let mut written = 0;
        for outcome in pending {
            let outcome = match outcome.recv_timeout(WRITE_TIMEOUT) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Closed(e)),
                Err(RecvTimeoutError::Timeout) => {
                    Err(Error::Closed("the frame was not written in time".into()))
                }
                Err(RecvTimeoutError::Disconnected) => Err(Error::Closed(
                    "the connection ended before the frame was written".into(),
                )),
            };
            if let Err(e) = outcome {
                return (written, Err(e));
            }
            written += 1;
        }
        (written, queued)
    }

    /// Asks the connection to close with a close frame; returns at once.
    pub(crate) fn close(&self) {
        self.close_requested.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A connection ready to run on the current thread.
pub(crate) struct Conn<S: Socket> {
    shared: Arc<Shared>,
    kind: Kind,
    ws: WebSocket<Metered<S>>,
    /// A clone of the socket, registered with the poller until drop.
    tcp: TcpStream,
    poller: Arc<Poller>,
    rx: Receiver<Command>,
    handle: Arc<Handle>,
}

impl<S: Socket> Conn<S> {
    /// Takes over a socket whose upgrade was answered; `buf` holds bytes read past the
    /// upgrade request (the first frames).
    pub(crate) fn start(
        shared: &Arc<Shared>,
        kind: Kind,
        stream: S,
        buf: Vec<u8>,
    ) -> io::Result<Self> {
        let tcp = stream.tcp().try_clone()?;
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: `tcp` is owned by the returned value, whose `Drop` deletes it from the
        // poller before the descriptor closes.
        #[allow(unsafe_code)]
        unsafe {
            poller.add(&tcp, Event::readable(KEY))?
        };
        // tungstenite zero-fills its free read buffer before every read: at the default
        // 128 KiB that costs more than reading a few small frames.
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_FRAME_SIZE))
            .max_frame_size(Some(MAX_FRAME_SIZE));
        let stream = Metered {
            inner: stream,
            unproductive: 0,
        };
        let ws = WebSocket::from_partially_read(stream, buf, Role::Server, Some(config));
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let handle = Arc::new(Handle {
            tx,
            poller: poller.clone(),
            close_requested: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        Ok(Self {
            shared: shared.clone(),
            kind,
            ws,
            tcp,
            poller,
            rx,
            handle,
        })
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub(crate) fn handle(&self) -> Arc<Handle> {
        self.handle.clone()
    }

    /// Serves the connection until it ends; returns why it ended.
    pub(crate) fn run(mut self) -> String {
        let reason = self.serve();
        self.handle.closed.store(true, Ordering::SeqCst);
        reason
    }

    fn serve(&mut self) -> String {
        let ping_interval = self.shared.config.ping_interval;
        let pong_timeout = self.shared.config.pong_timeout;
        let mut events = Events::new();
        let mut next_ping = Instant::now() + ping_interval;
        let mut ping_sent: Option<Instant> = None;
        let mut closing: Option<Instant> = None;
        // Frames written to the WebSocket, waiting for the flush that puts them on the
        // socket, and since when output has been stuck.
        let mut unflushed: Vec<Sender<std::result::Result<(), String>>> = Vec::new();
        let mut stuck_since: Option<Instant> = None;
        // Answers due later (DownstreamResults after their transmission time), in order
        // of time, then of arrival.
        let mut later: BinaryHeap<Reverse<(Instant, u64, String)>> = BinaryHeap::new();
        let mut next_seq: u64 = 0;
        loop {
            if closing.is_none() && self.handle.close_requested.load(Ordering::SeqCst) {
                closing = Some(Instant::now() + CLOSE_TIMEOUT);
                // What a server going down for a restart says (RFC 6455, 7.4.1).
                let going_away = CloseFrame {
                    code: CloseCode::Away,
                    reason: RESTART_REASON.into(),
                };
                match self.ws.close(Some(going_away)) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {}
                    Err(e) => return format!("close failed: {e}"),
                }
            }
            // Frames from other threads, only once earlier output is out.
            if stuck_since.is_none() {
                for _ in 0..BATCH {
                    let command = match self.rx.try_recv() {
                        Ok(command) => command,
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    };
                    match self.ws.write(command.message) {
                        Ok(()) => unflushed.push(command.done),
                        // Buffered, to be flushed below.
                        Err(e) if would_block(&e) => unflushed.push(command.done),
                        Err(e) => {
                            let _ = command.done.send(Err(e.to_string()));
                            if is_fatal(&e) {
                                return format!("write failed: {e}");
                            }
                        }
                    }
                }
            }
            // Answers whose time has come.
            if stuck_since.is_none() {
                let now = Instant::now();
                while later.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    let Some(Reverse((_, _, text))) = later.pop() else {
                        break;
                    };
                    match self.ws.write(Message::text(text)) {
                        Ok(()) => {}
                        Err(e) if would_block(&e) => {}
                        Err(e) => return format!("write failed: {e}"),
                    }
                }
            }
            // The peer's frames, unless our answers to earlier ones are still unsent.
            let mut more_to_read = false;
            if stuck_since.is_none() {
                for i in 0..BATCH {
                    match self.ws.read() {
                        Ok(message) => {
                            self.ws.get_mut().progress();
                            ping_sent = None;
                            let data = match message {
                                Message::Text(text) => Some(text.as_bytes().to_vec()),
                                Message::Binary(data) => Some(data.to_vec()),
                                _ => None,
                            };
                            if let Some(data) = data {
                                for answer in handle_frame(&self.shared, self.kind, &data) {
                                    if let Some(at) = answer.at.filter(|at| *at > Instant::now()) {
                                        later.push(Reverse((at, next_seq, answer.text)));
                                        next_seq += 1;
                                        continue;
                                    }
                                    match self.ws.write(Message::text(answer.text)) {
                                        Ok(()) => {}
                                        Err(e) if would_block(&e) => {}
                                        Err(e) => return format!("write failed: {e}"),
                                    }
                                }
                            }
                            more_to_read = i + 1 == BATCH;
                        }
                        Err(e) if would_block(&e) => break,
                        Err(tungstenite::Error::ConnectionClosed) => {
                            return if closing.is_some() {
                                "closed by the emulator".into()
                            } else {
                                "closed by the peer".into()
                            };
                        }
                        Err(e) => return format!("read failed: {e}"),
                    }
                }
            }
            match self.ws.flush() {
                Ok(()) => {
                    stuck_since = None;
                    for done in unflushed.drain(..) {
                        let _ = done.send(Ok(()));
                    }
                }
                Err(e) if would_block(&e) => {
                    stuck_since.get_or_insert_with(Instant::now);
                }
                Err(tungstenite::Error::ConnectionClosed) => return "closed".into(),
                Err(e) => return format!("write failed: {e}"),
            }
            let now = Instant::now();
            if closing.is_some_and(|deadline| now >= deadline) {
                return "the peer did not answer the close frame".into();
            }
            if stuck_since.is_some_and(|t| now.duration_since(t) >= WRITE_TIMEOUT) {
                return "the peer stopped reading".into();
            }
            if ping_sent.is_some_and(|t| now.duration_since(t) >= pong_timeout) {
                return "no answer to a ping".into();
            }
            if now >= next_ping && closing.is_none() {
                match self.ws.write(Message::Ping(Default::default())) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {}
                    Err(e) => return format!("ping failed: {e}"),
                }
                ping_sent.get_or_insert(now);
                next_ping = now + ping_interval;
                continue;
            }
            if more_to_read || (stuck_since.is_none() && !self.rx.is_empty()) {
                continue;
            }
            if closing.is_none() && self.handle.close_requested.load(Ordering::SeqCst) {
                continue;
            }
            // Sleep until the socket is ready, another thread wakes us, or a timer.
            let mut wake = next_ping;
            for deadline in [
                closing,
                ping_sent.map(|t| t + pong_timeout),
                stuck_since.map(|t| t + WRITE_TIMEOUT),
                later.peek().map(|Reverse((at, _, _))| *at),
            ]
            .into_iter()
            .flatten()
            {
                wake = wake.min(deadline);
            }
            let interest = if stuck_since.is_some() {
                Event::writable(KEY)
            } else {
                Event::readable(KEY)
            };
            if let Err(e) = self.poller.modify(&self.tcp, interest) {
                return format!("readiness wait failed: {e}");
            }
            events.clear();
            let timeout = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            match self.poller.wait(&mut events, Some(timeout)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return format!("readiness wait failed: {e}"),
            }
        }
    }
}

impl<S: Socket> Drop for Conn<S> {
    fn drop(&mut self) {
        let _ = self.poller.delete(&self.tcp);
    }
}

/// Bytes a peer may send without completing a message: the largest message, its
/// frame headers even if cut into small fragments, and a read buffer's worth.
const NO_PROGRESS_BYTES: usize = 2 * MAX_FRAME_SIZE + 64 * 1024;

/// The socket as the WebSocket reads it, counting the bytes read since the last whole
/// message. tungstenite reads frames until a message is complete, so a peer sending
/// endless empty continuation frames would keep one `read` call, and a core, busy for
/// good: past [`NO_PROGRESS_BYTES`] without a message, reads fail and the connection
/// ends.
struct Metered<S> {
    inner: S,
    unproductive: usize,
}

impl<S> Metered<S> {
    /// A whole message came out of the bytes read so far.
    fn progress(&mut self) {
        self.unproductive = 0;
    }
}

impl<S: io::Read> io::Read for Metered<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.unproductive > NO_PROGRESS_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{NO_PROGRESS_BYTES} bytes of frames without a message"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.unproductive += n;
        Ok(n)
    }
}

impl<S: io::Write> io::Write for Metered<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock
        || e.kind() == io::ErrorKind::Interrupted)
}

/// Whether a failed write leaves the connection unusable (a frame too large does not).
fn is_fatal(e: &tungstenite::Error) -> bool {
    !matches!(
        e,
        tungstenite::Error::Capacity(_) | tungstenite::Error::WriteBufferFull(_)
    )
}
