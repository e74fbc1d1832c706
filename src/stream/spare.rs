//! Threads started before their work is known, so that starting them overlaps a wait.
//!
//! A connection needs two threads (the link's reader and the session's), and starting a
//! thread costs its caller tens of microseconds (`clone`, the stack, the thread's own
//! set-up competing for the CPU). `connect()` spends longer than that waiting for the
//! server's first TLS flight, so the threads are started then and handed their work once
//! the connection is up: a channel send, a few microseconds (`benches/tls.rs`,
//! `tls_connect`).

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
    pub(crate) fn spawn(name: String) -> io::Result<Spare> {
        let handoff = Arc::new(Mutex::new(Handoff::Waiting));
        let mine = handoff.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || loop {
            let job = std::mem::replace(&mut *lock(&mine), Handoff::Waiting);
            match job {
                Handoff::Job(job) => return job(),
                Handoff::Abandoned => return,
                // Woken before its work came (a spurious wake-up): wait on.
                Handoff::Waiting => std::thread::park(),
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

/// The threads one `connect` starts early: the link's reader, and whatever its caller
/// asked for (the session's thread on a first connect).
pub(crate) struct Early<'a> {
    reader_name: String,
    reader: Option<Spare>,
    also: Option<&'a mut dyn FnMut()>,
}

impl<'a> Early<'a> {
    pub(crate) fn new(reader_name: String, also: Option<&'a mut dyn FnMut()>) -> Self {
        Self {
            reader_name,
            reader: None,
            also,
        }
    }

    /// Starts the threads, once; the handshake calls it where it waits for the server.
    /// A thread that cannot be started now is started later, where its error is
    /// reported.
    pub(crate) fn start(&mut self) {
        if self.reader.is_none() {
            self.reader = Spare::spawn(self.reader_name.clone()).ok();
        }
        if let Some(also) = self.also.take() {
            also();
        }
    }

    /// The reader's thread: the one started early, or a new one.
    pub(crate) fn reader(&mut self) -> io::Result<Spare> {
        match self.reader.take() {
            Some(spare) => Ok(spare),
            None => Spare::spawn(self.reader_name.clone()),
        }
    }
}
