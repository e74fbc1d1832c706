//! The engine under every stream connection: one WebSocket, a reader thread and a
//! writer loop, which runs on the thread that waits for the link's end (the session's
//! thread, see [`Link::drive`]).
//!
//! - Reading: whoever holds the link's read token (`lead.rs`) reads. A consumer waiting
//!   in `recv` reads the socket itself when the reader thread lets it ([`Lead`]): one
//!   wake-up per message, as a single-threaded client has. Otherwise the reader thread
//!   waits for readability on the TCP descriptor *without* holding the WebSocket, then
//!   takes it just long enough to read what has arrived, and hands the frames (decoded
//!   by the caller's function) to a bounded channel. A full channel stops the reader
//!   until the consumer has taken half of it ([`Room`]), so a slow consumer pushes back
//!   down to TCP instead of growing memory.
//! - One lock holding reads at most [`READ_BATCH`] frames of any kind and
//!   [`READ_BATCH_BYTES`] bytes off the socket, and a sender waiting for the lock gets it
//!   before the reader takes it again: a peer flooding pings or empty continuation frames
//!   cannot keep sends and the close out.
//! - A send is written on the sender's own thread: it takes the WebSocket just long enough
//!   to hand the frame to the socket, and a write that would block waits for writability
//!   outside the lock, so reads go on meanwhile. Handing each send to another thread and
//!   waiting for its answer cost two thread wake-ups per message (see `benches/streams.rs`).
//! - The writer loop does the rest: pong and close replies (flushed on the reader's
//!   request), keepalive pings and our close.
//!
//! The client's streams run on this engine; the emulator, a crate of its own, has its own
//! server-side engine (`emulator/src/streams/conn.rs`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

use super::lead::{Entry, Token, Waiting};
use super::socket::{wait_ready, would_block, Interest, Socket};
use super::spare::Spare;
use super::CloseReason;
use crate::error::{Error, Result};
use crate::sync::lock;

/// Most frames the reader takes per lock, control and empty frames included, so writers
/// are not starved by a flood. Large batches matter: each lock hand-over between the
/// reader and an acking thread costs a futex round trip (`benches/streams.rs`, ack
/// throughput against the raw tungstenite client: 64 frames per batch was clearly slower
/// than 256).
pub(crate) const READ_BATCH: usize = 256;
/// Most bytes the reader takes off the socket per lock, so a flood of large frames
/// cannot make it hold hundreds of megabytes before handing them over, and a flood of
/// frames tungstenite consumes without returning (empty continuations) still ends the
/// batch.
const READ_BATCH_BYTES: usize = 256 * 1024;
/// How long the reader leaves the lock to a waiting sender before taking it again
/// regardless; only reached if that sender's thread does not get a CPU meanwhile.
const HAND_OVER: Duration = Duration::from_millis(20);

/// The socket as the WebSocket sees it: reads stop at a budget the reader sets before
/// each batch. tungstenite reads continuation and control frames in loops of its own,
/// so counting messages alone cannot bound a batch.
///
/// A read that got less than it asked for found the socket empty: the next read of the
/// same pass answers "would block" without asking the kernel again. tungstenite asks for
/// more only when it holds no complete frame, so nothing above the socket waits unseen;
/// a readiness wait comes next, and finds data that came meanwhile at once. That keeps a
/// read that can only fail off the path of every message (a lone message costs one
/// readiness wait and one read, as a blocking read would).
pub(crate) struct Metered<S> {
    inner: S,
    read_left: usize,
    /// The last read stopped at the budget, not for want of data.
    exhausted: bool,
    /// The last read found the socket drained.
    drained: bool,
}

impl<S> Metered<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            read_left: READ_BATCH_BYTES,
            exhausted: false,
            drained: false,
        }
    }

    /// Before each pass under the lock.
    fn start_pass(&mut self, budget: usize) {
        self.read_left = budget;
        self.exhausted = false;
        self.drained = false;
    }
}

impl<S: Socket> Read for Metered<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_left == 0 {
            self.exhausted = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.drained && !self.inner.has_buffered_input() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.read_left);
        let got = self.inner.read(&mut buf[..n])?;
        self.read_left -= got;
        self.drained = got < n;
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

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            name: "stream".into(),
            close_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(30),
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the reader puts decoded frames: the channel, or once the owner has asked to
/// stop, a stash the receiving side drains after the channel, so nothing read is lost.
pub(crate) struct Outbox<T> {
    pub(crate) tx: Sender<T>,
    pub(crate) stash: Arc<Mutex<VecDeque<T>>>,
    /// Where the reader waits for room in a full channel.
    pub(crate) room: Arc<Room>,
    /// The current link's socket, for a consumer that reads it itself (see `lead.rs`).
    pub(crate) lead: LeadSlot<T>,
}

/// Where each new link leaves its [`Lead`] for the receiving side.
pub(crate) type LeadSlot<T> = Arc<Mutex<Option<Arc<dyn Lead<T>>>>>;

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            stash: self.stash.clone(),
            room: self.room.clone(),
            lead: self.lead.clone(),
        }
    }
}

impl<T> Outbox<T> {
    /// Whether the stash holds a channel's worth: reading more after a close would only
    /// grow memory for messages nobody may take.
    fn stash_full(&self) -> bool {
        let capacity = self.tx.capacity().unwrap_or(usize::MAX).max(1);
        lock(&self.stash).len() >= capacity
    }

    /// Delivers `item`, waiting for room in the channel unless `stop` fires first.
    /// Returns `false` when the receiving side is gone.
    fn deliver(&self, mut item: T, stop: &Receiver<()>, stopped: &mut bool) -> bool {
        while !*stopped {
            item = match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
                Err(crossbeam_channel::TrySendError::Full(item)) => item,
            };
            // Full: wait until the consumer has taken half (see `Room`), not for each
            // message it takes.
            self.room.full.store(true, Ordering::SeqCst);
            item = match self.tx.try_send(item) {
                Ok(()) => {
                    self.room.full.store(false, Ordering::SeqCst);
                    return true;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
                Err(crossbeam_channel::TrySendError::Full(item)) => item,
            };
            self.room.wait();
            if matches!(
                stop.try_recv(),
                Err(crossbeam_channel::TryRecvError::Disconnected)
            ) {
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
            Err(crossbeam_channel::TrySendError::Full(item)) => {
                stash.push_back(item);
                true
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The reader's wait for room in a full channel. Waiting on the channel itself would
/// wake the reader for every message the consumer takes (a futex wake on the
/// consumer's thread, and a park per message on the reader's): a consumer slower than
/// the reader paid that on each message. The consumer wakes the reader instead once the
/// channel is half empty ([`Room::taken`]).
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

    /// The consumer took a message and `left` remain of `capacity`.
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

/// What the writer loop is asked to do. At most one of each waits at a time (see
/// [`Shared::flush_wanted`] and [`Shared::close_sent`]), so the channel is bounded.
enum Command {
    /// The reader saw a ping or a close: write the automatic reply.
    Flush,
    /// Keepalive: ping the peer.
    Ping,
    Close,
}

/// Room for one `Flush` and one `Close`.
const COMMANDS: usize = 2;

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
    Dead(String),
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
            // Any frame counts as a sign of life, not only the pong. A reader held by a
            // slow consumer cannot see the pong: the clock starts again once it reads.
            let delivering = shared.delivering.load(Ordering::SeqCst);
            let seen =
                shared.epoch + Duration::from_micros(shared.last_seen.load(Ordering::SeqCst));
            if delivering || seen >= sent {
                self.awaiting = None;
            } else if now >= sent + self.pong_timeout {
                return Tick::Dead(format!(
                    "no answer to a ping within {:?}; the peer is gone",
                    self.pong_timeout
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

struct Shared {
    closing: AtomicBool,
    reason: Mutex<Option<CloseReason>>,
    stop_tx: Mutex<Option<Sender<()>>>,
    name: String,
    /// When anything last arrived from the peer, in microseconds since `epoch`.
    last_seen: AtomicU64,
    /// The reader is handing frames over and may be waiting for room in the channel:
    /// meanwhile it reads nothing, pongs included, so silence proves nothing.
    delivering: AtomicBool,
    epoch: Instant,
    /// A `Flush` is queued and not yet taken: the reader queues no other.
    flush_wanted: AtomicBool,
    /// Our `Close` is queued: it is queued once.
    close_sent: AtomicBool,
    /// Writers that started waiting for the WebSocket, and those that got it: the
    /// reader lets the ones waiting at the end of its batch go first.
    write_tickets: AtomicUsize,
    write_grants: AtomicUsize,
    /// The close timeout ran out: the reader stops whatever the peer still sends.
    abandoned: AtomicBool,
    /// Who reads the socket: the reader thread or a consumer waiting in `recv`.
    token: Arc<Token>,
    /// Where the reader waits for room in the channel: closing wakes it.
    room: Arc<Room>,
}

impl Shared {
    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Records why the link ended; the first reason wins.
    fn end(&self, reason: CloseReason) {
        let mut slot = lock(&self.reason);
        if slot.is_none() {
            log::debug!("{}: connection ended: {reason}", self.name);
            *slot = Some(reason);
        }
    }

    fn stop_delivery(&self) {
        lock(&self.stop_tx).take();
        self.room.wake();
    }

    /// A ping or a close was read: its automatic reply waits in tungstenite for a flush.
    /// One queued flush covers every ping read until the writer takes it.
    fn want_flush(&self, cmd: &Sender<Command>) {
        if !self.flush_wanted.swap(true, Ordering::AcqRel) {
            let _ = cmd.try_send(Command::Flush);
        }
    }

    /// Takes the WebSocket to write: counted, so the reader hands it over.
    fn lock_to_write<'a, S>(&self, ws: &'a Mutex<S>) -> std::sync::MutexGuard<'a, S> {
        self.write_tickets.fetch_add(1, Ordering::SeqCst);
        let guard = lock(ws);
        self.write_grants.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Before the reader takes the WebSocket again: lets the writers waiting now have it
    /// first (not those that come later, so busy senders cannot hold the reader off). A
    /// mutex lets the thread that just unlocked take it straight back, which is how a
    /// flood kept sends waiting for tens of seconds.
    fn hand_over_to_writers(&self) {
        let waiting = self.write_tickets.load(Ordering::SeqCst);
        let served = |grants: usize| grants.wrapping_sub(waiting) as isize >= 0;
        if served(self.write_grants.load(Ordering::SeqCst)) {
            return;
        }
        let started = Instant::now();
        while !served(self.write_grants.load(Ordering::SeqCst)) && started.elapsed() < HAND_OVER {
            std::thread::yield_now();
        }
    }

    /// Ends the link after a failed write: sends fail from now on, and the reader wakes up.
    fn fail(&self, tcp: &TcpStream, why: String) {
        self.end(CloseReason::Error(why));
        self.closing.store(true, Ordering::Release);
        let _ = tcp.shutdown(Shutdown::Both);
    }
}

/// What senders share with the writer loop: the WebSocket and its TCP stream.
struct Wire<S> {
    ws: Arc<Mutex<WebSocket<Metered<S>>>>,
    tcp: Arc<TcpStream>,
    write_timeout: Duration,
}

/// Sending, with the socket type erased so that [`Link`] needs no type parameter.
trait Outgoing: Send + Sync {
    fn send(&self, message: Message, shared: &Shared) -> Result<()>;
}

impl<S: Socket> Outgoing for Wire<S> {
    fn send(&self, message: Message, shared: &Shared) -> Result<()> {
        {
            let mut ws = shared.lock_to_write(&self.ws);
            // Usually the socket takes the whole frame at once: flush under the same lock.
            let written = ws.write(message).and_then(|()| match ws.flush() {
                // As in `flush`: nothing left to write on a connection that finished
                // closing.
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => Ok(()),
                other => other,
            });
            match written {
                Ok(()) => return Ok(()),
                // Buffered by tungstenite; the flush below finishes it.
                Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
                Err(tungstenite::Error::Io(e)) => {
                    drop(ws);
                    shared.fail(&self.tcp, format!("write failed: {e}"));
                    return Err(Error::Io(e));
                }
                Err(e) => return Err(map_ws_error(e)),
            }
        }
        flush(&self.ws, &self.tcp, shared, self.write_timeout).inspect_err(|e| {
            shared.fail(&self.tcp, format!("write failed: {e}"));
        })
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
    /// Runs the reader on the `reader` thread over a non-blocking socket (the handshake
    /// left it so) whose WebSocket upgrade is done, and readies the writer loop for the
    /// thread that will wait for the link's end; `read_ahead` is what the handshake read
    /// past its end. Every inbound text or binary message goes through `decode`; what it
    /// returns is delivered to `outbox`.
    pub(crate) fn spawn<S, T, D>(
        stream: S,
        read_ahead: Vec<u8>,
        config: WebSocketConfig,
        options: LinkOptions,
        decode: D,
        outbox: Outbox<T>,
        reader: Spare,
    ) -> Result<Link>
    where
        S: Socket,
        T: Send + 'static,
        D: Fn(Bytes) -> Option<T> + Send + Sync + 'static,
    {
        // One descriptor for readiness waits and shutdown, shared by every thread of
        // the link: a duplicate each cost a `dup` and a `close`.
        let tcp = Arc::new(stream.tcp().try_clone().map_err(Error::Io)?);
        let ws = WebSocket::from_partially_read(
            Metered::new(stream),
            read_ahead,
            Role::Client,
            Some(config),
        );
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(COMMANDS);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
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
            write_tickets: AtomicUsize::new(0),
            write_grants: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
            token: Arc::new(Token::new()),
            room: outbox.room.clone(),
        });
        let ws = Arc::new(Mutex::new(ws));
        let wire = Box::new(Wire {
            ws: ws.clone(),
            tcp: tcp.clone(),
            write_timeout: options.write_timeout,
        });

        let decode = Arc::new(decode);
        let pending = Arc::new(Mutex::new(None));
        let lead: Arc<dyn Lead<T>> = Arc::new(Reading {
            ws: ws.clone(),
            tcp: tcp.clone(),
            shared: shared.clone(),
            cmd: cmd_tx.clone(),
            decode: decode.clone(),
            ahead_limit: outbox
                .tx
                .capacity()
                .unwrap_or(READ_BATCH)
                .clamp(1, READ_BATCH),
            pending: pending.clone(),
        });
        *lock(&outbox.lead) = Some(lead);
        let reader = {
            let (ws, shared, cmd, alive) =
                (ws.clone(), shared.clone(), cmd_tx.clone(), alive_tx.clone());
            let tcp = tcp.clone();
            reader.run(move || {
                let _alive = (alive, reader_alive);
                let reading = Delivery {
                    decode: &*decode,
                    outbox: &outbox,
                    pending: &pending,
                    stop: &stop_rx,
                };
                read_loop(&ws, &tcp, &shared, &cmd, reading);
            })
        };
        let writer: Box<dyn FnOnce() + Send> = {
            let shared = shared.clone();
            Box::new(move || {
                let _alive = alive_tx;
                write_loop(&ws, &tcp, &shared, &cmd_rx, &reader_done, &options);
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
            Error::Closed(_) => self.closed_error(),
            other => other,
        })
    }

    /// Starts closing: sends a close frame, lets the reader finish, then drops the
    /// socket. Returns at once.
    pub(crate) fn close(&self) {
        if !self.shared.closing.swap(true, Ordering::AcqRel) {
            self.shared.end(CloseReason::Local);
        }
        self.shared.stop_delivery();
        self.shared.token.end();
        if !self.shared.close_sent.swap(true, Ordering::AcqRel) {
            let _ = self.cmd.try_send(Command::Close);
        }
    }

    /// Commands waiting for the writer loop, for tests of the bound.
    #[cfg(test)]
    pub(crate) fn queued_commands(&self) -> usize {
        self.cmd.len()
    }

    /// Whether the link is closed or closing.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire) || lock(&self.shared.reason).is_some()
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
        Error::Closed(match self.reason() {
            Some(reason) => reason.to_string(),
            None => "the connection is closing".into(),
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
        self.wait_closed();
    }
}

/// What one pass under the lock found, besides the frames it added to the batch.
struct Pass {
    /// More may be waiting without the socket becoming readable again.
    more: bool,
    /// A ping or close came: its automatic reply needs a flush.
    reply: bool,
    /// The peer's close came.
    closed: bool,
    /// The link ended, and why.
    end: Option<CloseReason>,
}

/// Reads frames into `batch` under the lock: at most [`READ_BATCH`] frames of any kind,
/// `messages` text or binary ones, and `budget` bytes off the socket (0: only what
/// tungstenite already holds).
fn read_pass<S: Socket>(
    ws: &Mutex<WebSocket<Metered<S>>>,
    shared: &Shared,
    budget: usize,
    messages: usize,
    batch: &mut Vec<Bytes>,
) -> Pass {
    let mut pass = Pass {
        more: false,
        reply: false,
        closed: false,
        end: None,
    };
    // Waiting senders first, before every pass and not only after one that hit its
    // budget: a flood whose passes each ended with the socket briefly drained found the
    // data ready again at once, and the unfair mutex kept a waiting sender out for good.
    shared.hand_over_to_writers();
    let mut ws = lock(ws);
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
                pass.closed = true;
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
                pass.end = Some(CloseReason::Error(e.to_string()));
                break;
            }
        }
        // Every frame counts, control frames too: a ping flood is a flood.
        frames += 1;
        if frames >= READ_BATCH || batch_bytes >= READ_BATCH_BYTES || batch.len() >= messages {
            pass.more = true;
            break;
        }
    }
    pass.more |= pass.end.is_none() && budget > 0 && ws.get_ref().inner.has_buffered_input();
    pass
}

/// Where the reader thread's frames go.
struct Delivery<'a, T, D> {
    decode: &'a D,
    outbox: &'a Outbox<T>,
    /// A message a consumer read but could not deliver (see [`Lead::deliver`]).
    pending: &'a Mutex<Option<T>>,
    stop: &'a Receiver<()>,
}

fn read_loop<S: Socket, T, D: Fn(Bytes) -> Option<T>>(
    ws: &Mutex<WebSocket<Metered<S>>>,
    tcp: &TcpStream,
    shared: &Shared,
    cmd: &Sender<Command>,
    delivery: Delivery<'_, T, D>,
) {
    let Delivery {
        decode,
        outbox,
        pending,
        stop,
    } = delivery;
    let mut batch: Vec<Bytes> = Vec::with_capacity(READ_BATCH);
    // The handshake may have read frames past its response: look before waiting.
    let mut more = true;
    let mut stopped = false;
    // Once closing with a channel's worth stashed: hand over only the frames already
    // read off the socket, then stop.
    let mut last_passes = false;
    // The read token (see `lead.rs`): without it a consumer reads, and this thread waits.
    let mut holding = true;
    let end = loop {
        if !holding {
            shared.token.take();
            holding = true;
            // The consumer may have left frames in tungstenite's buffer.
            more = true;
            let waiting = lock(pending).take();
            if let Some(item) = waiting {
                if !outbox.deliver(item, stop, &mut stopped) {
                    break CloseReason::Local;
                }
            }
        }
        if shared.abandoned.load(Ordering::Acquire) {
            break CloseReason::Local;
        }
        if stopped && !last_passes && outbox.stash_full() {
            log::debug!(
                "{}: closing with a channel's worth of messages waiting; reading no more",
                shared.name
            );
            last_passes = true;
        }
        let budget = if last_passes { 0 } else { READ_BATCH_BYTES };
        if !more && !last_passes {
            if let Err(e) = wait_ready(tcp, Interest::Read, None) {
                break CloseReason::Error(format!("waiting for data: {e}"));
            }
        }
        let Pass {
            more: again,
            reply,
            mut end,
            ..
        } = read_pass(ws, shared, budget, usize::MAX, &mut batch);
        more = again;
        if last_passes && batch.is_empty() && !more {
            end = end.or(Some(CloseReason::Local));
        }
        shared
            .last_seen
            .store(shared.now_micros(), Ordering::Release);
        if reply {
            shared.want_flush(cmd);
        }
        shared.delivering.store(true, Ordering::SeqCst);
        let read_messages = !batch.is_empty();
        for frame in batch.drain(..) {
            if let Some(item) = decode(frame) {
                if !outbox.deliver(item, stop, &mut stopped) {
                    log::debug!("{}: receiver gone; dropping the connection", shared.name);
                    end = end.or(Some(CloseReason::Local));
                    break;
                }
            }
        }
        // Whatever the peer sent while we were not reading counts from now.
        shared
            .last_seen
            .store(shared.now_micros(), Ordering::SeqCst);
        shared.delivering.store(false, Ordering::SeqCst);
        if let Some(end) = end {
            break end;
        }
        // A consumer that waited for these reads the next ones itself.
        if read_messages && !more && !stopped && !last_passes && shared.token.release() {
            holding = false;
        }
    };
    shared.end(end);
    shared.closing.store(true, Ordering::Release);
    shared.token.end();
    {
        let mut slot = lock(&outbox.lead);
        if slot
            .as_ref()
            .is_some_and(|lead| Arc::ptr_eq(lead.token(), &shared.token))
        {
            // Nobody may read a finished link; its socket closes with the last handle.
            slot.take();
        }
    }
    // Wakes a writer waiting for writability on a peer that is gone.
    let _ = tcp.shutdown(Shutdown::Both);
}

/// What a consumer's own read of the socket came to.
pub(crate) enum Led<T> {
    Message(T),
    /// A frame went elsewhere (a waiter's reply), and the caller asked to hear of it.
    Routed,
    /// The deadline passed; the caller still holds the token.
    TimedOut,
    /// The link is ending; the reader thread has the token back.
    Ended,
}

/// A receiving thread's turn when nothing waits for it: read the socket itself, or wait
/// on its channel (counted as waiting, so the reader thread serves it).
pub(crate) enum Turn<T> {
    Read(Arc<dyn Lead<T>>),
    /// Dropping the guard uncounts the waiter. No link is held meanwhile: its socket
    /// closes with its last handle.
    Wait(Option<Waiting>),
}

/// Takes the current link's read token if nobody reads, else counts the caller waiting.
pub(crate) fn turn<T>(slot: &LeadSlot<T>) -> Turn<T> {
    let lead = lock(slot).clone();
    match lead {
        Some(lead) => match lead.token().enter() {
            Entry::Lead => Turn::Read(lead),
            Entry::Wait(waiting) => Turn::Wait(Some(waiting)),
        },
        None => Turn::Wait(None),
    }
}

/// A consumer's own read of the current link's socket (see `lead.rs`), the socket type
/// erased.
pub(crate) trait Lead<T>: Send + Sync {
    fn token(&self) -> &Arc<Token>;

    /// With the token held: reads until a frame decodes to a message for the caller,
    /// `deadline` passes, or the link ends; with `routed`, also until a frame goes to a
    /// waiter instead (a tracker reads for its replies). With `ahead`, what else has
    /// arrived is read in the same pass and left there, in order, after the message
    /// returned: a busy stream costs one pass per batch, not per message.
    fn read(
        &self,
        deadline: Option<Instant>,
        routed: bool,
        ahead: Option<&mut VecDeque<T>>,
    ) -> Led<T>;

    /// With the token held: hands a message read for the connection's channel, and the
    /// token, to the reader thread, which delivers it before it reads on (waiting for
    /// room in the channel, which the caller must not). Holding no sender of the channel
    /// here lets it disconnect when the link ends.
    fn deliver(&self, message: T);
}

struct Reading<S, D, T> {
    ws: Arc<Mutex<WebSocket<Metered<S>>>>,
    tcp: Arc<TcpStream>,
    shared: Arc<Shared>,
    cmd: Sender<Command>,
    decode: Arc<D>,
    /// Most messages one read takes: no more than the channel holds, so what waits for
    /// the consumer stays within its capacity.
    ahead_limit: usize,
    /// A message the reader thread delivers before it reads again.
    pending: Arc<Mutex<Option<T>>>,
}

impl<S: Socket, T: Send, D> Lead<T> for Reading<S, D, T>
where
    D: Fn(Bytes) -> Option<T> + Send + Sync,
{
    fn token(&self) -> &Arc<Token> {
        &self.shared.token
    }

    fn deliver(&self, message: T) {
        *lock(&self.pending) = Some(message);
        self.shared.token.hand_back();
    }

    fn read(
        &self,
        deadline: Option<Instant>,
        routed: bool,
        mut ahead: Option<&mut VecDeque<T>>,
    ) -> Led<T> {
        let shared = &*self.shared;
        let limit = if ahead.is_some() { self.ahead_limit } else { 1 };
        // Reading again: whatever the backlog held back is being taken.
        shared.delivering.store(false, Ordering::SeqCst);
        let mut batch = Vec::new();
        // tungstenite or rustls may hold frames already: look before waiting.
        let mut more = true;
        loop {
            if shared.closing.load(Ordering::Acquire) {
                shared.token.give_back();
                return Led::Ended;
            }
            if !more {
                let left = match deadline {
                    None => None,
                    Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return Led::TimedOut,
                    },
                };
                match wait_ready(&self.tcp, Interest::Read, left) {
                    Ok(true) => {}
                    Ok(false) => return Led::TimedOut,
                    Err(e) => {
                        shared.end(CloseReason::Error(format!("waiting for data: {e}")));
                        shared.token.give_back();
                        return Led::Ended;
                    }
                }
            }
            let pass = read_pass(&self.ws, shared, READ_BATCH_BYTES, limit, &mut batch);
            shared
                .last_seen
                .store(shared.now_micros(), Ordering::Release);
            if pass.reply {
                shared.want_flush(&self.cmd);
            }
            more = pass.more;
            let mut first = None;
            let mut went_elsewhere = false;
            for frame in batch.drain(..) {
                let Some(item) = (self.decode)(frame) else {
                    went_elsewhere = true;
                    continue;
                };
                match (&first, ahead.as_deref_mut()) {
                    (None, _) => first = Some(item),
                    (Some(_), Some(ahead)) => ahead.push_back(item),
                    // Without `ahead` a pass reads one message (`limit`).
                    (Some(_), None) => unreachable!("a second message in a one-message pass"),
                }
            }
            if pass.end.is_some() || pass.closed {
                // The first reason is kept: the reader, reading next, sees only the
                // aftermath and ends the link.
                if let Some(end) = pass.end {
                    shared.end(end);
                }
                shared.token.give_back();
                return first.map_or(Led::Ended, Led::Message);
            }
            if let Some(item) = first {
                if ahead.is_some_and(|ahead| !ahead.is_empty()) {
                    // Nobody reads until the backlog is taken: silence proves nothing.
                    shared.delivering.store(true, Ordering::SeqCst);
                }
                return Led::Message(item);
            }
            if went_elsewhere {
                if routed {
                    return Led::Routed;
                }
                more = true;
            }
        }
    }
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

fn write_loop<S: Socket>(
    ws: &Mutex<WebSocket<Metered<S>>>,
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
            recv(cmds) -> cmd => match cmd {
                Ok(cmd) => cmd,
                Err(_) => Command::Close,
            },
            recv(reader_done) -> _ => return,
            default(wait) => {
                let Some(k) = keepalive.as_mut() else { continue };
                match k.tick(shared) {
                    Tick::Idle => continue,
                    Tick::Ping => Command::Ping,
                    Tick::Dead(why) => {
                        shared.end(CloseReason::Error(why));
                        shared.closing.store(true, Ordering::Release);
                        let _ = tcp.shutdown(Shutdown::Both);
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
            let mut guard = shared.lock_to_write(ws);
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
        if let Err(e) = flush(ws, tcp, shared, options.write_timeout) {
            if !close {
                shared.fail(tcp, format!("write failed: {e}"));
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
fn flush<S: Socket>(
    ws: &Mutex<WebSocket<Metered<S>>>,
    tcp: &TcpStream,
    shared: &Shared,
    timeout: Duration,
) -> Result<()> {
    loop {
        let result = shared.lock_to_write(ws).flush();
        match result {
            Ok(()) => return Ok(()),
            Err(tungstenite::Error::Io(e)) if would_block(&e) => {
                if !wait_ready(tcp, Interest::Write, Some(timeout)).map_err(Error::Io)? {
                    return Err(Error::timeout(
                        crate::error::TimeoutKind::Write,
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
            Error::Closed("the connection is closed".into())
        }
        other => Error::WebSocket(other.to_string()),
    }
}
