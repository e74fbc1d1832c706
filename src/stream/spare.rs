//! Threads started before their work is known, so that starting them overlaps a wait.
//!
//! A connection needs two threads (the link's reader and the session's), and starting a
//! thread costs its caller 10-30 µs (`clone3`, the stack, then the thread's own set-up
//! competing for the CPU). `connect()` spends longer than that waiting for the server's
//! first TLS flight, so the threads are started then, parked, and handed their work once
//! the connection is up: an `unpark`, a couple of microseconds. The caller starts only
//! the session's thread; that one starts the reader's (`benches/tls.rs`, `tls_connect`).

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::sync::lock;

type Job = Box<dyn FnOnce() + Send>;

enum Handoff {
    Waiting,
    Job(Job),
    /// The spare was dropped unused: the thread ends.
    Abandoned,
}

/// A started thread waiting for its work. Dropped unused, the thread ends.
///
/// The thread parks until its work comes (`park`/`unpark`, a bare futex): a channel's
/// receive spins and yields for a while first, which the other threads of the connect
/// (the caller's, a local server's) paid for on a two-core machine.
pub(crate) struct Spare {
    handoff: Arc<Mutex<Handoff>>,
    handle: Option<JoinHandle<()>>,
}

impl Spare {
    /// Starts a thread that runs `first`, then waits for its work.
    pub(crate) fn spawn(name: String, first: impl FnOnce() + Send + 'static) -> io::Result<Spare> {
        let handoff = Arc::new(Mutex::new(Handoff::Waiting));
        let mine = handoff.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            first();
            loop {
                let job = std::mem::replace(&mut *lock(&mine), Handoff::Waiting);
                match job {
                    Handoff::Job(job) => return job(),
                    Handoff::Abandoned => return,
                    // No work yet (or a spurious wake-up): wait for it.
                    Handoff::Waiting => std::thread::park(),
                }
            }
        })?;
        Ok(Spare {
            handoff,
            handle: Some(handle),
        })
    }

    /// Gives the thread its work.
    pub(crate) fn run(mut self, job: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
        self.hand(Handoff::Job(Box::new(job)))
            .expect("a spare is run at most once")
    }

    fn hand(&mut self, handoff: Handoff) -> Option<JoinHandle<()>> {
        let handle = self.handle.take()?;
        *lock(&self.handoff) = handoff;
        handle.thread().unpark();
        Some(handle)
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.hand(Handoff::Abandoned);
    }
}

/// The threads one `connect` starts early: the link's reader, and on a first connect the
/// session's thread. The caller starts one thread only: the session's starts the reader's,
/// so the second start costs the caller nothing.
pub(crate) struct Early {
    reader_name: String,
    session_name: Option<String>,
    started: bool,
    session: Option<Spare>,
    reader: Option<Spare>,
    /// The reader's thread, from the session's thread that starts it.
    reader_later: Option<Receiver<Spare>>,
}

impl Early {
    /// For a connection to `stream`; a first connect also needs the session's thread,
    /// named `session_name`.
    pub(crate) fn new(stream: &str, session_name: Option<String>) -> Self {
        Self {
            reader_name: format!("ran-{stream}-reader"),
            session_name,
            started: false,
            session: None,
            reader: None,
            reader_later: None,
        }
    }

    /// Starts the threads, once; the handshake calls it where it waits for the server.
    /// A thread that cannot be started now is started later, where its error is
    /// reported.
    pub(crate) fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let reader_name = self.reader_name.clone();
        match &self.session_name {
            Some(session_name) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let first = move || {
                    if let Ok(reader) = Spare::spawn(reader_name, || {}) {
                        let _ = tx.send(reader);
                    }
                };
                self.session = Spare::spawn(session_name.clone(), first).ok();
                self.reader_later = Some(rx);
            }
            None => self.reader = Spare::spawn(reader_name, || {}).ok(),
        }
    }

    /// The reader's thread: the one started early, or a new one.
    pub(crate) fn reader(&mut self) -> io::Result<Spare> {
        if let Some(reader) = self.reader.take() {
            return Ok(reader);
        }
        // Ready long since, unless the session's thread could not start it.
        if let Some(Ok(reader)) = self.reader_later.take().map(|rx| rx.recv()) {
            return Ok(reader);
        }
        Spare::spawn(self.reader_name.clone(), || {})
    }

    /// The session's thread: the one started early, or a new one.
    pub(crate) fn session(&mut self) -> io::Result<Spare> {
        match (self.session.take(), &self.session_name) {
            (Some(session), _) => Ok(session),
            (None, Some(name)) => Spare::spawn(name.clone(), || {}),
            (None, None) => Err(io::Error::other("no session thread was asked for")),
        }
    }
}
