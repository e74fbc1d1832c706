//! The reader thread of a link: the only reader of its socket. It waits for readability
//! on the TCP descriptor *without* holding the WebSocket, takes the socket lock just long
//! enough to read what has arrived, and delivers the decoded messages to the connection's
//! bounded channel.
//!
//! Invariants this keeps:
//! - **One reader, one order.** Only this thread reads the socket and only it sends on the
//!   channel (one link at a time: the session starts a new link only after the last
//!   reader ended), so the channel holds messages in arrival order, and any number of
//!   consumers each see an increasing subsequence.
//! - **It never waits for a consumer**, only for room in the channel. While there is room
//!   it reads, so pings are answered and the keepalive is kept however long a consumer
//!   works on one message. A channel that stays full is backpressure by design: frames,
//!   pings included, queue in TCP behind the data until the consumers take half of it.
//! - **Nothing read is lost.** Once the owner closes, what still arrives goes to a stash
//!   of at most one channel's worth, handed out after the channel; then reading stops.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message, WebSocket};

use super::handover::SocketLock;
use super::link::{Command, Shared};
use super::socket::{wait_ready, would_block, Interest, Socket};
use super::CloseReason;
use crate::error::StreamError;
use crate::sync::lock;

/// Most frames the reader takes per lock, control and empty frames included, so senders
/// are not starved by a flood. Large batches matter: each lock hand-over between the
/// reader and an acking thread costs a futex round trip.
pub(crate) const READ_BATCH: usize = 256;
/// Most bytes the reader takes off the socket per lock, so a flood of large frames
/// cannot make it hold hundreds of megabytes before handing them over, and a flood of
/// frames tungstenite consumes without returning (empty continuations) still ends the
/// batch.
const READ_BATCH_BYTES: usize = 256 * 1024;

/// The socket as the WebSocket sees it: reads stop at a budget the reader sets before
/// each pass (tungstenite reads continuation and control frames in loops of its own, so
/// counting messages alone cannot bound a pass).
pub(crate) struct Metered<S> {
    pub(crate) inner: S,
    read_left: usize,
    /// The last read stopped at the budget, not for want of data.
    exhausted: bool,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            read_left: READ_BATCH_BYTES,
            exhausted: false,
        }
    }

    fn start_pass(&mut self, budget: usize) {
        self.read_left = budget;
        self.exhausted = false;
    }
}

impl<S: Socket> Read for Metered<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_left == 0 {
            self.exhausted = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.read_left);
        let got = self.inner.read(&mut buf[..n])?;
        self.read_left -= got;
        Ok(got)
    }
}

impl<S: Write> Write for Metered<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The WebSocket of a link behind its socket lock.
pub(crate) type Ws<S> = SocketLock<WebSocket<Metered<S>>>;

/// Where the reader puts decoded messages: the channel, or once the owner has closed,
/// a stash the receiving side drains after the channel, so nothing read is lost.
pub(crate) struct Outbox<T> {
    pub(crate) tx: Sender<T>,
    pub(crate) stash: Arc<Mutex<VecDeque<T>>>,
    /// Where the reader waits for room in a full channel.
    pub(crate) room: Arc<Room>,
    /// Sees each read pass's messages before they are delivered, and may take some
    /// (a hook's [`screen`](super::Hook::screen)).
    pub(crate) screen: Option<Screen<T>>,
}

/// What a hook does with a read pass's messages on the reader thread.
pub(crate) type Screen<T> = Arc<dyn Fn(&mut Vec<T>) + Send + Sync>;

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            stash: self.stash.clone(),
            room: self.room.clone(),
            screen: self.screen.clone(),
        }
    }
}

impl<T> Outbox<T> {
    /// Whether the stash holds a channel's worth: reading more after a close would only
    /// grow memory for messages nobody may take.
    pub(super) fn stash_full(&self) -> bool {
        let capacity = self.tx.capacity().unwrap_or(usize::MAX).max(1);
        lock(&self.stash).len() >= capacity
    }

    /// Delivers `item`, waiting for room in the channel unless `stop` fires first (then
    /// it goes to the stash). Returns `false` when the receiving side is gone.
    pub(super) fn deliver(&self, mut item: T, stop: &Receiver<()>, stopped: &mut bool) -> bool {
        while !*stopped {
            item = match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(item)) => item,
            };
            // Full: wait until the consumers have taken half (see `Room`), not for each
            // message they take.
            self.room.full.store(true, Ordering::SeqCst);
            item = match self.tx.try_send(item) {
                Ok(()) => {
                    self.room.full.store(false, Ordering::SeqCst);
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(item)) => item,
            };
            self.room.wait();
            if matches!(stop.try_recv(), Err(TryRecvError::Disconnected)) {
                *stopped = true;
            }
        }
        // Once anything is stashed, the rest goes after it to keep the order.
        let mut stash = lock(&self.stash);
        if !stash.is_empty() {
            stash.push_back(item);
            return true;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(item)) => {
                stash.push_back(item);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The half-channel wake: the reader's wait for room in a full channel. Waiting on the
/// channel itself would wake the reader for every message a consumer takes (a futex
/// wake on the consumer's thread and a park per message on the reader's); instead a
/// consumer wakes the reader once the channel is half empty ([`Room::taken`]).
#[derive(Default)]
pub(crate) struct Room {
    /// The reader found the channel full and waits (or is about to).
    full: AtomicBool,
    lock: Mutex<()>,
    cv: std::sync::Condvar,
}

impl Room {
    /// Longest wait between two looks at the channel and the stop signal, in case a
    /// wake-up raced with the wait.
    const RECHECK: Duration = Duration::from_millis(50);

    /// A consumer took a message and `left` remain of `capacity`.
    #[inline]
    pub(crate) fn taken(&self, left: usize, capacity: usize) {
        if self.full.load(Ordering::SeqCst) && left <= capacity / 2 {
            self.wake();
        }
    }

    /// Wakes the reader: there is room, or the link is closing.
    pub(crate) fn wake(&self) {
        let _guard = lock(&self.lock);
        self.full.store(false, Ordering::SeqCst);
        self.cv.notify_all();
    }

    fn wait(&self) {
        let guard = lock(&self.lock);
        if self.full.load(Ordering::SeqCst) {
            let _ = self.cv.wait_timeout(guard, Self::RECHECK);
        }
    }
}

/// What one pass under the lock found, besides the frames it added to the batch.
struct Pass {
    /// More may be waiting without the socket becoming readable again.
    more: bool,
    /// A ping or close came: its automatic reply needs a flush.
    reply: bool,
    /// The link ended, and why.
    end: Option<CloseReason>,
}

/// Reads frames into `batch` under the socket lock: at most [`READ_BATCH`] frames of any
/// kind and `budget` bytes off the socket (0: only what tungstenite already holds).
fn read_pass<S: Socket>(
    ws: &Ws<S>,
    shared: &Shared,
    budget: usize,
    batch: &mut Vec<Bytes>,
) -> Pass {
    let mut pass = Pass {
        more: false,
        reply: false,
        end: None,
    };
    // Waiting senders first, before every pass: a flood whose passes each ended with the
    // socket briefly drained found data ready again at once (see `handover.rs`).
    let mut ws = ws.lock_to_read();
    ws.get_mut().start_pass(budget);
    let mut frames = 0;
    let mut batch_bytes = 0;
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                batch_bytes += text.len();
                batch.push(text.into());
            }
            Ok(Message::Binary(data)) => {
                batch_bytes += data.len();
                batch.push(data);
            }
            Ok(Message::Ping(_)) => pass.reply = true,
            Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
            Ok(Message::Close(frame)) => {
                pass.reply = true;
                if !shared.closing.load(Ordering::Acquire) {
                    shared.end(remote_reason(frame));
                }
            }
            Err(tungstenite::Error::Io(e)) if would_block(&e) => {
                pass.more = ws.get_ref().exhausted && budget > 0;
                break;
            }
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                pass.end = Some(CloseReason::Local);
                break;
            }
            Err(e) => {
                pass.end = Some(CloseReason::Error(StreamError::websocket("read failed", e)));
                break;
            }
        }
        // Every frame counts, control frames too: a ping flood is a flood.
        frames += 1;
        if frames >= READ_BATCH || batch_bytes >= READ_BATCH_BYTES {
            pass.more = true;
            break;
        }
    }
    pass.more |= pass.end.is_none() && budget > 0 && ws.get_ref().inner.has_buffered_input();
    pass
}

fn remote_reason(frame: Option<CloseFrame>) -> CloseReason {
    match frame {
        Some(f) => CloseReason::Remote {
            code: f.code.into(),
            reason: f.reason.to_string(),
        },
        None => CloseReason::Remote {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// A message and when its read pass was: one clock reading per pass, which the receiving
/// side hands to a hook (de-duplication) so that it need not read the clock per message.
pub(crate) type Stamped<T> = (T, Instant);

/// The reader thread's side of a link.
pub(crate) struct Reader<S, T, D> {
    pub(crate) ws: Arc<Ws<S>>,
    pub(crate) tcp: Arc<TcpStream>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cmd: Sender<Command>,
    pub(crate) decode: D,
    pub(crate) outbox: Outbox<Stamped<T>>,
    /// Disconnects when the owner closes: stop waiting for room, stash instead.
    pub(crate) stop: Receiver<()>,
}

impl<S: Socket, T, D: Fn(Bytes) -> Option<T>> Reader<S, T, D> {
    /// Reads until the link ends, then records why and shuts the socket down.
    pub(crate) fn run(self) {
        let shared = &*self.shared;
        let mut batch: Vec<Bytes> = Vec::with_capacity(READ_BATCH);
        let mut decoded: Vec<Stamped<T>> = Vec::with_capacity(READ_BATCH);
        // The handshake may have read frames past its response: look before waiting.
        let mut more = true;
        let mut stopped = false;
        // Once closing with a channel's worth stashed: hand over only the frames already
        // read off the socket, then stop.
        let mut last_passes = false;
        let end = loop {
            if shared.abandoned.load(Ordering::Acquire) {
                break CloseReason::Local;
            }
            if stopped && !last_passes && self.outbox.stash_full() {
                log::debug!(
                    "{}: closing with a channel's worth of messages waiting; reading no more",
                    shared.name
                );
                last_passes = true;
            }
            let budget = if last_passes { 0 } else { READ_BATCH_BYTES };
            if !more && !last_passes {
                if let Err(e) = wait_ready(&self.tcp, Interest::Read, None) {
                    break CloseReason::Error(StreamError::io("waiting for data", e));
                }
            }
            let pass = read_pass(&self.ws, shared, budget, &mut batch);
            more = pass.more;
            let mut end = pass.end;
            if last_passes && batch.is_empty() && !more {
                end = end.or(Some(CloseReason::Local));
            }
            let read_at = Instant::now();
            shared.seen_at(read_at);
            if pass.reply {
                shared.want_flush(&self.cmd);
            }
            shared.delivering.store(true, Ordering::SeqCst);
            decoded.extend(
                batch
                    .drain(..)
                    .filter_map(|frame| Some(((self.decode)(frame)?, read_at))),
            );
            if let Some(screen) = &self.outbox.screen {
                if !decoded.is_empty() {
                    screen(&mut decoded);
                }
            }
            for item in decoded.drain(..) {
                if !self.outbox.deliver(item, &self.stop, &mut stopped) {
                    log::debug!("{}: receiver gone; dropping the connection", shared.name);
                    end = end.or(Some(CloseReason::Local));
                    break;
                }
            }
            // Not delivered: the receiving side is gone, nobody may take them.
            decoded.clear();
            // Whatever the peer sent while we waited for room counts from now.
            shared.seen_at(Instant::now());
            shared.delivering.store(false, Ordering::SeqCst);
            if let Some(end) = end {
                break end;
            }
        };
        shared.end(end);
        shared.closing.store(true, Ordering::Release);
        // Wakes a sender waiting for writability on a peer that is gone.
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}
