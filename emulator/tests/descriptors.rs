//! The emulator under a low descriptor limit, as a separate process (`ulimit -n` is per
//! process, and the test's own sockets must not count against the server's).
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `ran-emulator` binary under `ulimit -n limit`, and the address it serves.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(limit: u32) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" --port 0"))
            .arg(env!("CARGO_BIN_EXE_ran-emulator"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ran-emulator");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("URL:").map(|u| u.trim().to_owned()))
            .expect("the emulator prints its URL");
        // Read to the end: a closed pipe would fail the emulator's next line of output.
        std::thread::spawn(move || lines.for_each(drop));
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap();
        Self {
            child,
            addr: authority.parse().unwrap(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server says on a fresh connection within `wait` before anything is sent:
/// the status of an answer, or `None` (a connection holding a slot, or one left
/// waiting in the backlog).
fn unprompted_status(tcp: &mut TcpStream, wait: Duration) -> Option<u16> {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn status(addr: SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    let request =
        format!("GET /emulator/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).ok()?;
    unprompted_status(&mut tcp, Duration::from_secs(2))
}

/// A connection costs the server several descriptors, so a slot cap the descriptor
/// limit cannot cover would leave `accept` failing and clients waiting in the backlog
/// with no answer. The slots are sized from the limit (raised where allowed), so a
/// connection past them is answered 503 at once. Here the limit is 64: 6 slots, and
/// every other connection refused at once.
#[test]
fn past_the_descriptor_limit_clients_are_refused_at_once() {
    let server = Server::start(64);
    assert_eq!(status(server.addr), Some(200));
    let mut held = Vec::new();
    let mut refused = 0;
    let began = Instant::now();
    for i in 0..60 {
        let mut tcp = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        match unprompted_status(&mut tcp, Duration::from_millis(300)) {
            None => held.push(tcp),
            Some(503) => refused += 1,
            Some(other) => panic!("connection {i}: status {other}"),
        }
    }
    // Each held connection waited out the 300 ms above; refusals came at once.
    assert!(
        held.len() <= 8,
        "{} connections held a slot or got no answer (refused {refused}) in {:?}",
        held.len(),
        began.elapsed()
    );
    assert_eq!(held.len() + refused, 60);
    // A client now is told at once, and served once the idle connections are gone.
    let asked = Instant::now();
    assert_eq!(status(server.addr), Some(503));
    assert!(asked.elapsed() < Duration::from_secs(1));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(server.addr) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not served after the idle clients left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
