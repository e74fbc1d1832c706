//! The frames the stream benchmarks send: realistic Upstream JSON, pre-encoded server
//! frames and downlinks.

use ran_routing::{DevEui, DownstreamMessage, DownstreamRadio, LoRaModulation, TransmissionWindow};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Bytes;

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
