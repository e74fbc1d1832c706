//! The stream frames, read and written by the emulator's own code: what an LNS sends is
//! decoded strictly (exact keys, no unknown ones, the value rules of the API), and what
//! the emulator sends is written key by key, so a codec bug in the client crate cannot
//! hide by being on both sides. Decoded frames become the client's model types only
//! for recording.

use ran_routing::{
    DevAddr, DevEui, DownstreamMessage, DownstreamRadio, DownstreamRequest, DownstreamResultCode,
    FhssModulation, FskModulation, LoRaModulation, Modulation, MulticastAddr,
    MulticastDownstreamMessage, TransmissionWindow, UpstreamAck, UpstreamMessage, UpstreamReject,
    UpstreamRejectResultCode, UpstreamReply,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The protocol version every frame carries.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// The largest frame (and message) a stream connection reads, as the service allows.
pub(crate) const MAX_FRAME_SIZE: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    #[serde(rename = "ProtocolVersion")]
    protocol_version: u32,
    #[serde(rename = "TransactionID")]
    transaction_id: u64,
    #[serde(rename = "DevEUI")]
    dev_eui: u64,
    #[serde(rename = "MIC")]
    mic: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reject {
    #[serde(rename = "ProtocolVersion")]
    protocol_version: u32,
    #[serde(rename = "TransactionID")]
    transaction_id: u64,
    #[serde(rename = "ResultCode")]
    result_code: String,
    #[serde(rename = "ResultMessage", default)]
    result_message: Option<String>,
    /// The spec's UpstreamReject example names the device it rejects for; the reject
    /// is judged by its transaction alone.
    #[serde(rename = "DevEUI", default)]
    _dev_eui: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Downstream {
    #[serde(rename = "ProtocolVersion")]
    protocol_version: u32,
    #[serde(rename = "TransactionID")]
    transaction_id: u64,
    #[serde(rename = "DevEUI")]
    dev_eui: u64,
    #[serde(rename = "TargetDevAddr", default)]
    target_dev_addr: Option<u32>,
    #[serde(rename = "TxWindow")]
    tx_window: TxWindow,
    #[serde(rename = "PHYPayload")]
    phy_payload: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MulticastDownstream {
    #[serde(rename = "ProtocolVersion")]
    protocol_version: u32,
    #[serde(rename = "TransactionID")]
    transaction_id: u64,
    #[serde(rename = "Addr")]
    addr: u32,
    #[serde(rename = "TxWindow")]
    tx_window: TxWindow,
    #[serde(rename = "PHYPayload")]
    phy_payload: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxWindow {
    #[serde(rename = "Radio")]
    radio: Radio,
    #[serde(rename = "Delay", default)]
    delay: Option<u8>,
    #[serde(rename = "TMMS", default)]
    tmms: Option<Vec<u64>>,
    #[serde(rename = "Deadline", default)]
    deadline: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Radio {
    #[serde(rename = "Frequency")]
    frequency: u32,
    #[serde(rename = "LoRa", default)]
    lora: Option<LoRa>,
    #[serde(rename = "FSK", default)]
    fsk: Option<Fsk>,
    #[serde(rename = "FHSS", default)]
    fhss: Option<Fhss>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoRa {
    #[serde(rename = "Spreading")]
    spreading: u8,
    #[serde(rename = "Bandwidth")]
    bandwidth: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fsk {
    #[serde(rename = "FrequencyDeviation")]
    frequency_deviation: u32,
    #[serde(rename = "BitRate")]
    bit_rate: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fhss {
    #[serde(rename = "OCW")]
    ocw: u32,
    #[serde(rename = "CodingRate")]
    coding_rate: String,
}

type Checked<T> = Result<T, String>;

fn object(frame: &[u8]) -> Checked<Map<String, Value>> {
    serde_json::from_slice(frame).map_err(|e| format!("not a JSON object: {e}"))
}

fn header(protocol_version: u32, transaction_id: u64) -> Checked<()> {
    if protocol_version != PROTOCOL_VERSION {
        return Err(format!("ProtocolVersion {protocol_version}, expected 1"));
    }
    if transaction_id == 0 {
        return Err("TransactionID 0".into());
    }
    Ok(())
}

/// An UpstreamAck or UpstreamReject (a frame with `ResultCode` is a reject, as the
/// reference client decides).
pub(crate) fn upstream_reply(frame: &[u8]) -> Checked<UpstreamReply> {
    let map = object(frame)?;
    if map.contains_key("ResultCode") {
        let r: Reject = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("not an UpstreamReject: {e}"))?;
        header(r.protocol_version, r.transaction_id)?;
        let code = match r.result_code.as_str() {
            "MICFailed" => UpstreamRejectResultCode::MicFailed,
            "Other" => UpstreamRejectResultCode::Other,
            other => return Err(format!("unknown ResultCode {other:?}")),
        };
        let reject = UpstreamReject::new(r.transaction_id, code);
        Ok(match r.result_message {
            Some(m) => reject.with_message(m),
            None => reject,
        }
        .into())
    } else {
        let a: Ack = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("not an UpstreamAck: {e}"))?;
        header(a.protocol_version, a.transaction_id)?;
        Ok(UpstreamAck::new(a.transaction_id, DevEui::new(a.dev_eui), a.mic).into())
    }
}

/// A Downstream or MulticastDownstream (a frame with `Addr` is multicast).
pub(crate) fn downstream_request(frame: &[u8]) -> Checked<DownstreamRequest> {
    let map = object(frame)?;
    if map.contains_key("Addr") {
        let m: MulticastDownstream = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("not a MulticastDownstream: {e}"))?;
        header(m.protocol_version, m.transaction_id)?;
        let window = m.tx_window.check()?;
        Ok(MulticastDownstreamMessage::new(
            m.transaction_id,
            MulticastAddr::new(m.addr),
            window,
            m.phy_payload,
        )
        .into())
    } else {
        let d: Downstream = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("not a Downstream: {e}"))?;
        header(d.protocol_version, d.transaction_id)?;
        let window = d.tx_window.check()?;
        let message = DownstreamMessage::new(
            d.transaction_id,
            DevEui::new(d.dev_eui),
            window,
            d.phy_payload,
        );
        Ok(match d.target_dev_addr {
            Some(addr) => message.with_target_dev_addr(DevAddr::new(addr)),
            None => message,
        }
        .into())
    }
}

impl TxWindow {
    /// The value rules: exactly one modulation and one timing, each in its range. Timing
    /// errors start with "TxWindow", so the downlink can be answered `WindowNotFound`.
    fn check(self) -> Checked<TransmissionWindow> {
        let modulation = match (self.radio.lora, self.radio.fsk, self.radio.fhss) {
            (Some(l), None, None) if l.spreading <= 12 => {
                Modulation::from(LoRaModulation::new(l.spreading, l.bandwidth))
            }
            (Some(l), None, None) => return Err(format!("Spreading {} above 12", l.spreading)),
            (None, Some(f), None) => FskModulation::new(f.frequency_deviation, f.bit_rate).into(),
            (None, None, Some(f)) => FhssModulation::new(f.ocw, f.coding_rate).into(),
            _ => return Err("Radio needs exactly one of LoRa, FSK and FHSS".into()),
        };
        let radio = DownstreamRadio::new(self.radio.frequency, modulation);
        match (self.delay, self.tmms, self.deadline) {
            (Some(delay), None, None) if (1..=15).contains(&delay) => {
                Ok(TransmissionWindow::class_a(radio, delay))
            }
            (Some(delay), None, None) => Err(format!("TxWindow: Delay {delay} outside 1 to 15")),
            (None, Some(slots), None) if (1..=8).contains(&slots.len()) => {
                Ok(TransmissionWindow::class_b(radio, slots))
            }
            (None, Some(slots), None) => {
                Err(format!("TxWindow: {} TMMS slots, not 1 to 8", slots.len()))
            }
            // Any later deadline is clamped to now + 512 s by the judge (the spec's
            // "default and maximum"), a past one means "as soon as possible".
            (None, None, Some(0)) => Err("TxWindow: Deadline 0 is not a time".into()),
            (None, None, Some(deadline)) => Ok(TransmissionWindow::class_c(radio, deadline)),
            _ => Err("TxWindow needs exactly one of Delay, TMMS and Deadline".into()),
        }
    }
}

/// The `TransactionID` of a frame that is a JSON object with `ProtocolVersion` 1 and a
/// non-zero `TransactionID`, valid or not otherwise: a downlink that breaks a value rule
/// is answered with a result under it.
pub(crate) fn transaction_id_of(frame: &[u8]) -> Option<u64> {
    let map = object(frame).ok()?;
    let version = map.get("ProtocolVersion")?.as_u64()?;
    let transaction_id = map.get("TransactionID")?.as_u64()?;
    (version == u64::from(PROTOCOL_VERSION) && transaction_id != 0).then_some(transaction_id)
}

/// An Upstream frame as the specification orders its keys, serialized straight from
/// the model's fields (no intermediate `Value`: a soak sends a million of them).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpstreamOut<'a> {
    protocol_version: u32,
    #[serde(rename = "TransactionID")]
    transaction_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    outdated: Option<bool>,
    #[serde(rename = "DevEUIs", serialize_with = "dev_euis")]
    dev_euis: &'a [DevEui],
    radio: RadioOut<'a>,
    #[serde(rename = "PHYPayloadNoMIC")]
    phy_payload_no_mic: &'a [u8],
    #[serde(rename = "MICChallenge")]
    mic_challenge: &'a [u32],
    #[serde(rename = "GPS", skip_serializing_if = "Option::is_none")]
    gps: Option<GpsOut>,
}

#[derive(Serialize)]
struct RadioOut<'a> {
    #[serde(rename = "Frequency")]
    frequency: u32,
    #[serde(flatten)]
    modulation: ModulationOut<'a>,
    #[serde(rename = "RSSI")]
    rssi: f64,
    #[serde(rename = "SNR")]
    snr: f64,
}

#[derive(Serialize)]
enum ModulationOut<'a> {
    LoRa {
        #[serde(rename = "Spreading")]
        spreading: u8,
        #[serde(rename = "Bandwidth")]
        bandwidth: u32,
    },
    #[serde(rename = "FSK")]
    Fsk {
        #[serde(rename = "FrequencyDeviation")]
        frequency_deviation: u32,
        #[serde(rename = "BitRate")]
        bit_rate: u32,
    },
    #[serde(rename = "FHSS")]
    Fhss {
        #[serde(rename = "OCW")]
        ocw: u32,
        #[serde(rename = "CodingRate")]
        coding_rate: &'a str,
    },
}

#[derive(Serialize)]
struct GpsOut {
    #[serde(rename = "Lat")]
    lat: f64,
    #[serde(rename = "Lng")]
    lng: f64,
    #[serde(rename = "Alt", skip_serializing_if = "Option::is_none")]
    alt: Option<f64>,
}

fn dev_euis<S: serde::Serializer>(ids: &&[DevEui], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|d| d.get()))
}

/// An Upstream frame, written key by key from the model's fields.
pub(crate) fn upstream_json(m: &UpstreamMessage) -> String {
    let modulation = match &m.radio.modulation {
        Modulation::LoRa(l) => ModulationOut::LoRa {
            spreading: l.spreading,
            bandwidth: l.bandwidth,
        },
        Modulation::Fsk(f) => ModulationOut::Fsk {
            frequency_deviation: f.frequency_deviation,
            bit_rate: f.bit_rate,
        },
        Modulation::Fhss(f) => ModulationOut::Fhss {
            ocw: f.ocw,
            coding_rate: &f.coding_rate,
        },
    };
    let frame = UpstreamOut {
        protocol_version: m.protocol_version,
        transaction_id: m.transaction_id,
        outdated: m.outdated,
        dev_euis: &m.dev_euis,
        radio: RadioOut {
            frequency: m.radio.frequency,
            modulation,
            rssi: m.radio.rssi,
            snr: m.radio.snr,
        },
        phy_payload_no_mic: &m.phy_payload_no_mic,
        mic_challenge: &m.mic_challenge,
        gps: m.gps.as_ref().map(|g| GpsOut {
            lat: g.lat,
            lng: g.lng,
            alt: g.alt,
        }),
    };
    // Serializing our own plain data types cannot fail.
    serde_json::to_string(&frame).unwrap_or_default()
}

/// A DownstreamAck.
pub(crate) fn downstream_ack(transaction_id: u64, mailbox_id: u64) -> String {
    json!({
        "ProtocolVersion": PROTOCOL_VERSION,
        "TransactionID": transaction_id,
        "MailboxID": mailbox_id,
    })
    .to_string()
}

/// A DownstreamResult.
pub(crate) fn downstream_result(
    transaction_id: u64,
    code: &DownstreamResultCode,
    message: &str,
    mailbox_id: u64,
) -> String {
    json!({
        "ProtocolVersion": PROTOCOL_VERSION,
        "TransactionID": transaction_id,
        "ResultCode": code.as_str(),
        "ResultMessage": message,
        "MailboxID": mailbox_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: &str = r#"{"ProtocolVersion": 1, "TransactionID": 1, "DevEUI": 5, "TargetDevAddr": 7,
        "TxWindow": {"Radio": {"Frequency": 868300000, "LoRa": {"Spreading": 12, "Bandwidth": 125000}}, "Delay": 1},
        "PHYPayload": [104, 105]}"#;
    const MULTI: &str = r#"{"ProtocolVersion": 1, "TransactionID": 2, "Addr": 4010043934,
        "TxWindow": {"Radio": {"Frequency": 868300000, "FSK": {"FrequencyDeviation": 5000, "BitRate": 50000}}, "TMMS": [1, 2]},
        "PHYPayload": [104, 105]}"#;

    #[test]
    fn reference_frames_decode() {
        let ack = upstream_reply(
            br#"{"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 18446744073709551615, "MIC": 4294967295}"#,
        )
        .unwrap();
        assert_eq!(
            ack,
            UpstreamAck::new(3, DevEui::new(u64::MAX), u32::MAX).into()
        );
        let reject = upstream_reply(
            br#"{"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "MICFailed"}"#,
        )
        .unwrap();
        assert_eq!(
            reject,
            UpstreamReject::new(3, UpstreamRejectResultCode::MicFailed).into()
        );
        let DownstreamRequest::Unicast(d) = downstream_request(DOWN.as_bytes()).unwrap() else {
            panic!("not unicast");
        };
        assert_eq!(d.target_dev_addr, Some(DevAddr::new(7)));
        let DownstreamRequest::Multicast(m) = downstream_request(MULTI.as_bytes()).unwrap() else {
            panic!("not multicast");
        };
        assert_eq!(m.addr, MulticastAddr::new(4010043934));
    }

    #[test]
    fn strict_decoding_refuses_what_a_lenient_codec_would_take() {
        let bad_replies = [
            // Unknown key, a misspelt one, a hex string where a number goes.
            r#"{"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 1, "MIC": 2, "Extra": 0}"#,
            r#"{"ProtocolVersion": 1, "TransactionId": 3, "DevEUI": 1, "MIC": 2}"#,
            r#"{"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": "01", "MIC": 2}"#,
            // No version, another version, transaction 0, an unknown reject code.
            r#"{"TransactionID": 3, "DevEUI": 1, "MIC": 2}"#,
            r#"{"ProtocolVersion": 2, "TransactionID": 3, "DevEUI": 1, "MIC": 2}"#,
            r#"{"ProtocolVersion": 1, "TransactionID": 0, "DevEUI": 1, "MIC": 2}"#,
            r#"{"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "Toolate"}"#,
            r#"{"ProtocolVersion": 1, "TransactionID": 3, "ResultCode": "Other", "MIC": 2}"#,
            r#"{"ProtocolVersion": 1, "TransactionID": 3, "DevEUI": 1, "MIC": 4294967296}"#,
        ];
        for frame in bad_replies {
            assert!(upstream_reply(frame.as_bytes()).is_err(), "{frame}");
        }
        let both = DOWN.replace("\"DevEUI\": 5,", "\"DevEUI\": 5, \"Addr\": 9,");
        let bad_downlinks = [
            both,
            DOWN.replace("\"Delay\": 1", "\"Deadline\": 0"),
            DOWN.replace("\"Delay\": 1", "\"Delay\": 1, \"Deadline\": 1"),
            DOWN.replace("\"Delay\": 1", "\"Delay\": 16"),
            DOWN.replace("\"Spreading\": 12", "\"Spreading\": 13"),
            DOWN.replace("\"LoRa\"", "\"Lora\""),
            DOWN.replace(
                "}}, \"Delay\"",
                "}, \"FSK\": {\"FrequencyDeviation\": 1, \"BitRate\": 2}}, \"Delay\"",
            ),
            DOWN.replace("\"PHYPayload\"", "\"PhyPayload\""),
            MULTI.replace("[1, 2]", "[]"),
            MULTI.replace("\"Addr\": 4010043934", "\"Addr\": 4294967296"),
        ];
        for frame in &bad_downlinks {
            assert!(downstream_request(frame.as_bytes()).is_err(), "{frame}");
        }
    }

    #[test]
    fn written_frames_match_the_reference() {
        let frame = r#"{"ProtocolVersion":1,"TransactionID":4,"Outdated":true,"DevEUIs":[8844537008791951183],"Radio":{"Frequency":868100000,"LoRa":{"Spreading":12,"Bandwidth":125000},"RSSI":-52.0,"SNR":-3.0},"PHYPayloadNoMIC":[64,184],"MICChallenge":[1308830714,114830713],"GPS":{"Lat":1.5,"Lng":2.5,"Alt":3.0}}"#;
        let message: UpstreamMessage = serde_json::from_str(frame).unwrap();
        let written: Value = serde_json::from_str(&upstream_json(&message)).unwrap();
        assert_eq!(written, serde_json::from_str::<Value>(frame).unwrap());
        let result: Value = serde_json::from_str(&downstream_result(
            1,
            &DownstreamResultCode::TooLate,
            "x",
            9,
        ))
        .unwrap();
        let reference = r#"{"ProtocolVersion": 1, "TransactionID": 1, "ResultCode": "TooLate", "ResultMessage": "x", "MailboxID": 9}"#;
        assert_eq!(result, serde_json::from_str::<Value>(reference).unwrap());
        let ack: Value = serde_json::from_str(&downstream_ack(1, 1)).unwrap();
        assert_eq!(
            ack,
            json!({"ProtocolVersion": 1, "TransactionID": 1, "MailboxID": 1})
        );
    }
}
