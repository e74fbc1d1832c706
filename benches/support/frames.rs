//! The frames the stream benchmarks send: realistic Upstream JSON, pre-encoded server
//! frames and downlinks.

use ran_routing::{DevEui, DownstreamMessage, DownstreamRadio, LoRaModulation, TransmissionWindow};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Bytes, WebSocket};

/// A realistic Upstream frame: two candidate devices, a 23-byte uplink without its MIC,
/// 16 MIC candidates and a gateway position (about 500 bytes of JSON).
pub fn upstream_json(id: u64) -> String {
    let challenge: Vec<String> = (0..16u64)
        .map(|i| ((id.wrapping_mul(2_654_435_761) ^ (i << 20)) & 0xffff_ffff).to_string())
        .collect();
    format!(
        concat!(
            r#"{{"ProtocolVersion":1,"TransactionID":{id},"Outdated":false,"#,
            r#""DevEUIs":[8844537008791951183,{eui}],"#,
            r#""Radio":{{"Frequency":868100000,"LoRa":{{"Spreading":7,"Bandwidth":125000}},"RSSI":-52.0,"SNR":9.25}},"#,
            r#""PHYPayloadNoMIC":[64,218,27,1,38,128,{lo},{hi},{b3},35,178,44,90,11,208,76,2,150,64,11,7,100,3],"#,
            r#""MICChallenge":[{challenge}],"#,
            r#""GPS":{{"Lat":52.3676,"Lng":4.9041,"Alt":3.5}}}}"#
        ),
        id = id,
        eui = u64::MAX - id,
        lo = id & 0xff,
        hi = (id >> 8) & 0xff,
        // Distinct payloads past 65 536 frames: no duplicates for de-duplication to find.
        b3 = 1 + ((id >> 16) & 0xff),
        challenge = challenge.join(","),
    )
}

/// The length of an Upstream frame's `PHYPayloadNoMIC`.
pub fn payload_len(json: &str) -> usize {
    let message: serde_json::Value = serde_json::from_str(json).unwrap();
    message["PHYPayloadNoMIC"].as_array().map_or(0, Vec::len)
}

/// Server-side (unmasked) WebSocket text frames, ready to write.
pub fn encode(texts: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut wire = Vec::new();
    for text in texts {
        Frame::message(Bytes::from(text), OpCode::Data(OpData::Text), true)
            .format(&mut wire)
            .expect("encoding into a Vec");
    }
    wire
}

pub fn downlinks(n: usize) -> Vec<DownstreamMessage> {
    let radio = DownstreamRadio::new(868_300_000, LoRaModulation::new(9, 125_000));
    (0..n as u64)
        .map(|id| {
            DownstreamMessage::new(
                id + 1,
                DevEui::new(0x7abe_1b8c_93d7_0000 | id),
                TransmissionWindow::class_a(radio.clone(), 1),
                vec![
                    96,
                    218,
                    27,
                    1,
                    38,
                    0,
                    (id & 0xff) as u8,
                    0,
                    1,
                    2,
                    3,
                    4,
                    5,
                    6,
                    7,
                    8,
                ],
            )
        })
        .collect()
}

/// Counts the client's data frames straight off a server stream (plain TCP, or the
/// plaintext side of TLS): headers parsed, payloads skipped, no unmasking, UTF-8 check or
/// allocation, so the server's reading costs next to nothing beside the client under test.
pub struct FrameCounter<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: std::io::Read + std::io::Write> FrameCounter<S> {
    /// Counts frames read from `stream`, whose WebSocket handshake is done.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Blocks until `n` more data frames have arrived.
    pub fn read(&mut self, n: usize) {
        let mut seen = 0;
        while seen < n {
            match self.next_frame() {
                Some(opcode) => seen += usize::from(opcode == 1 || opcode == 2),
                None => self.fill(),
            }
        }
    }

    /// The opcode of the next complete frame in the buffer, consuming it.
    fn next_frame(&mut self) -> Option<u8> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return None;
        }
        let (mut header, len7) = (2, u64::from(b[1] & 0x7f));
        let len = match len7 {
            126 => {
                header += 2;
                u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().unwrap()))
            }
            127 => {
                header += 8;
                u64::from_be_bytes(b.get(2..10)?.try_into().unwrap())
            }
            n => n,
        };
        if b[1] & 0x80 != 0 {
            header += 4;
        }
        let total = header + len as usize;
        if b.len() < total {
            return None;
        }
        let opcode = b[0] & 0x0f;
        self.start += total;
        Some(opcode)
    }

    fn fill(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        assert!(self.end < self.buf.len(), "bench server: frame too large");
        let got = self
            .stream
            .read(&mut self.buf[self.end..])
            .expect("bench server: read");
        assert!(got > 0, "bench server: the client went away");
        self.end += got;
    }

    /// A WebSocket that goes on after the counted frames (e.g. the client's close frame
    /// may already be in the buffer), for the close handshake.
    pub fn finish(self) -> WebSocket<S> {
        let rest = self.buf[self.start..self.end].to_vec();
        WebSocket::from_partially_read(self.stream, rest, tungstenite::protocol::Role::Server, None)
    }
}
