//! Property tests of the wire codec: encode → decode is the identity for arbitrary
//! messages and REST objects, valid values pass validation, and no input (random bytes,
//! random JSON, valid frames with a random part replaced) panics a decoder.
//!
//! Case counts are proptest's default (256) so the suite stays fast; set
//! `PROPTEST_CASES` for a longer run.

use proptest::prelude::*;
use ran_routing::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::{Date, PrimitiveDateTime, Time};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Integers with their edges over-represented.
fn u64_edgy() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => Just(18446744073709551557u64), // not representable as f64
        6 => any::<u64>(),
    ]
}

fn u32_edgy() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 1 => Just(u32::MAX), 6 => any::<u32>()]
}

/// Any finite float (JSON has no NaN or infinity).
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        (POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO),
        -200.0f64..20.0,
        Just(f64::MAX),
        Just(f64::MIN),
    ]
}

/// Text, including escapes and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-zA-Z0-9/\"\\\\]{0,8}", Just(String::new())]
}

fn modulation() -> BoxedStrategy<Modulation> {
    prop_oneof![
        (any::<u8>(), u32_edgy()).prop_map(|(s, b)| LoRaModulation::new(s, b).into()),
        (u32_edgy(), u32_edgy()).prop_map(|(d, r)| FskModulation::new(d, r).into()),
        (u32_edgy(), text()).prop_map(|(o, c)| FhssModulation::new(o, c).into()),
    ]
    .boxed()
}

fn upstream_radio() -> BoxedStrategy<UpstreamRadio> {
    (u32_edgy(), modulation(), finite(), finite())
        .prop_map(|(frequency, modulation, rssi, snr)| {
            UpstreamRadio::new(frequency, modulation, rssi, snr)
        })
        .boxed()
}

fn gps() -> impl Strategy<Value = Gps> {
    (finite(), finite(), proptest::option::of(finite()))
        .prop_map(|(lat, lng, alt)| Gps::new(lat, lng, alt))
}

fn dev_euis() -> impl Strategy<Value = Vec<DevEui>> {
    proptest::collection::vec(u64_edgy().prop_map(DevEui::new), 0..5)
}

prop_compose! {
    fn upstream_message_inline()(
        protocol_version in prop_oneof![Just(1u32), any::<u32>()],
        transaction_id in u64_edgy(),
        outdated in proptest::option::of(any::<bool>()),
        dev_euis in dev_euis(),
        radio in upstream_radio(),
        phy_payload_no_mic in proptest::collection::vec(any::<u8>(), 0..40),
        mic_challenge in proptest::collection::vec(u32_edgy(), 0..20),
        gps in proptest::option::of(gps()),
    ) -> UpstreamMessage {
        let mut message =
            UpstreamMessage::new(transaction_id, dev_euis, radio, phy_payload_no_mic, mic_challenge)
                .with_outdated(outdated)
                .with_gps(gps);
        message.protocol_version = protocol_version;
        message
    }
}

fn reject_code() -> impl Strategy<Value = UpstreamRejectResultCode> {
    prop_oneof![
        Just("MICFailed".to_owned()),
        Just("Other".to_owned()),
        text()
    ]
    .prop_map(|code| UpstreamRejectResultCode::from(code.as_str()))
}

fn upstream_reply() -> BoxedStrategy<UpstreamReply> {
    prop_oneof![
        (any::<u32>(), u64_edgy(), u64_edgy(), u32_edgy()).prop_map(|(pv, id, eui, mic)| {
            let mut ack = UpstreamAck::new(id, DevEui::new(eui), mic);
            ack.protocol_version = pv;
            ack.into()
        }),
        (
            any::<u32>(),
            u64_edgy(),
            reject_code(),
            proptest::option::of(text())
        )
            .prop_map(|(pv, id, code, message)| {
                let mut reject = UpstreamReject::new(id, code);
                reject.protocol_version = pv;
                reject.result_message = message;
                reject.into()
            }),
    ]
    .boxed()
}

fn timing() -> impl Strategy<Value = TxTiming> {
    prop_oneof![
        any::<u8>().prop_map(TxTiming::Delay),
        proptest::collection::vec(u64_edgy(), 0..10).prop_map(TxTiming::Tmms),
        u64_edgy().prop_map(TxTiming::Deadline),
    ]
}

fn window() -> BoxedStrategy<TransmissionWindow> {
    (u32_edgy(), modulation(), timing())
        .prop_map(|(frequency, modulation, timing)| {
            TransmissionWindow::new(DownstreamRadio::new(frequency, modulation), timing)
        })
        .boxed()
}

fn downstream_request() -> BoxedStrategy<DownstreamRequest> {
    let payload = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (
            any::<u32>(),
            u64_edgy(),
            u64_edgy(),
            proptest::option::of(u32_edgy()),
            window(),
            payload()
        )
            .prop_map(|(pv, id, eui, target, w, p)| {
                let mut m = DownstreamMessage::new(id, DevEui::new(eui), w, p);
                m.protocol_version = pv;
                m.target_dev_addr = target.map(DevAddr::new);
                m.into()
            }),
        (any::<u32>(), u64_edgy(), u32_edgy(), window(), payload()).prop_map(
            |(pv, id, addr, w, p)| {
                let mut m = MulticastDownstreamMessage::new(id, MulticastAddr::new(addr), w, p);
                m.protocol_version = pv;
                m.into()
            }
        ),
    ]
    .boxed()
}

fn downstream_code() -> impl Strategy<Value = DownstreamResultCode> {
    prop_oneof![
        Just("Success".to_owned()),
        Just("WindowNotFound".to_owned()),
        Just("GatewayNotFound".to_owned()),
        Just("TooLate".to_owned()),
        Just("NoAck".to_owned()),
        Just("GatewayError".to_owned()),
        text(),
    ]
    .prop_map(|code| DownstreamResultCode::from(code.as_str()))
}

fn downstream_reply() -> BoxedStrategy<DownstreamReply> {
    prop_oneof![
        (any::<u32>(), u64_edgy(), u64_edgy()).prop_map(|(protocol_version, id, mailbox)| {
            let mut ack = DownstreamAck::new(id, mailbox);
            ack.protocol_version = protocol_version;
            ack.into()
        }),
        (
            any::<u32>(),
            u64_edgy(),
            downstream_code(),
            proptest::option::of(text()),
            proptest::option::of(u64_edgy())
        )
            .prop_map(|(protocol_version, id, code, message, mailbox)| {
                let mut result = DownstreamResult::new(id, code)
                    .with_result_message(message)
                    .with_mailbox_id(mailbox);
                result.protocol_version = protocol_version;
                result.into()
            }),
    ]
    .boxed()
}

/// Any timestamp the REST format can carry: the whole date range, microsecond precision.
fn timestamp() -> impl Strategy<Value = PrimitiveDateTime> {
    (
        Date::MIN.to_julian_day()..=Date::MAX.to_julian_day(),
        0u8..24,
        0u8..60,
        0u8..60,
        0u32..1_000_000,
    )
        .prop_map(|(day, h, m, s, micro)| {
            PrimitiveDateTime::new(
                Date::from_julian_day(day).unwrap(),
                Time::from_hms_micro(h, m, s, micro).unwrap(),
            )
        })
}

fn device() -> BoxedStrategy<Device> {
    let addr = || proptest::option::of(u32_edgy().prop_map(DevAddr::new));
    (
        u64_edgy(),
        proptest::option::of(u64_edgy().prop_map(JoinEui::new)),
        addr(),
        addr(),
        proptest::option::of(text()),
        timestamp(),
    )
        .prop_map(|(eui, join_eui, active, target, details, created_at)| {
            Device::new(DevEui::new(eui), created_at)
                .with_join_eui(join_eui)
                .with_active_dev_addr(active)
                .with_target_dev_addr(target)
                .with_details(details)
        })
        .boxed()
}

fn multicast_group() -> BoxedStrategy<MulticastGroup> {
    (u32_edgy(), timestamp(), text(), dev_euis())
        .prop_map(|(addr, created_at, name, devices)| {
            MulticastGroup::new(MulticastAddr::new(addr), name, created_at, devices)
        })
        .boxed()
}

/// Arbitrary JSON, with the protocol's own keys over-represented so the decoders get past
/// their first field.
fn json() -> BoxedStrategy<Value> {
    let key = prop_oneof![
        3 => proptest::sample::select(&[
            "ProtocolVersion", "TransactionID", "DevEUI", "DevEUIs", "Radio", "Frequency",
            "LoRa", "FSK", "FHSS", "Spreading", "Bandwidth", "RSSI", "SNR", "TxWindow",
            "Delay", "TMMS", "Deadline", "Addr", "ResultCode", "MailboxID", "MIC",
            "MICChallenge", "PHYPayload", "PHYPayloadNoMIC", "GPS", "Lat", "Lng",
            "CreatedAt", "created_at", "addr", "name", "devices", "detail", "error_code",
        ][..]).prop_map(str::to_owned),
        1 => ".{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        u64_edgy().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        text().prop_map(Value::from),
        Just(Value::from("2022-05-31T07:14:04.473749")),
        Just(Value::from("7abe1b8c93d7174f")),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

// Boxed so the composite strategies stay small on the test thread's stack.
fn upstream_message() -> BoxedStrategy<UpstreamMessage> {
    upstream_message_inline().boxed()
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// Encodes, decodes, and checks the value and the text came back unchanged.
fn assert_round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert_eq!(&back, value, "{}", text);
    prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
    Ok(())
}

/// Runs every decoder on `data`; any that succeeds must round-trip. Never panics.
fn decode_all(data: &[u8]) -> Result<(), TestCaseError> {
    fn one<T>(data: &[u8]) -> Result<(), TestCaseError>
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(v) = serde_json::from_slice::<T>(data) {
            // REST timestamps are written with microseconds: compare after one trip.
            let text = serde_json::to_string(&v).unwrap();
            let once: T = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            assert_round_trip(&once)?;
        }
        Ok(())
    }
    one::<UpstreamMessage>(data)?;
    one::<UpstreamReply>(data)?;
    one::<DownstreamRequest>(data)?;
    one::<DownstreamReply>(data)?;
    one::<TransmissionWindow>(data)?;
    one::<Device>(data)?;
    one::<Vec<Device>>(data)?;
    one::<MulticastGroup>(data)?;
    // Error bodies: see the property in src/rest.rs (their parser is not public).
    Ok(())
}

/// `value` with the subtree at a random position replaced by `replacement`.
fn replace_somewhere(mut value: Value, mut pick: usize, replacement: Value) -> Value {
    fn walk(v: &mut Value, pick: &mut usize, replacement: &mut Option<Value>) {
        if replacement.is_none() {
            return;
        }
        if *pick == 0 {
            *v = replacement.take().unwrap();
            return;
        }
        *pick -= 1;
        match v {
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| walk(item, pick, replacement)),
            Value::Object(map) => map
                .values_mut()
                .for_each(|item| walk(item, pick, replacement)),
            _ => {}
        }
    }
    let mut replacement = Some(replacement);
    walk(&mut value, &mut pick, &mut replacement);
    value
}

proptest! {
    #[test]
    fn upstream_message_round_trips(m in upstream_message()) {
        assert_round_trip(&m)?;
    }

    #[test]
    fn upstream_reply_round_trips(r in upstream_reply()) {
        assert_round_trip(&r)?;
        match &r {
            UpstreamReply::Ack(a) => assert_round_trip(a)?,
            UpstreamReply::Reject(j) => assert_round_trip(j)?,
        }
    }

    #[test]
    fn downstream_request_round_trips(d in downstream_request()) {
        assert_round_trip(&d)?;
        match &d {
            DownstreamRequest::Unicast(m) => assert_round_trip(m)?,
            DownstreamRequest::Multicast(m) => assert_round_trip(m)?,
        }
    }

    #[test]
    fn downstream_reply_round_trips(r in downstream_reply()) {
        assert_round_trip(&r)?;
        match &r {
            DownstreamReply::Ack(a) => assert_round_trip(a)?,
            DownstreamReply::Result(x) => assert_round_trip(x)?,
        }
    }

    #[test]
    fn rest_objects_round_trip(d in device(), g in multicast_group()) {
        assert_round_trip(&d)?;
        assert_round_trip(&g)?;
        assert_round_trip(&vec![d.clone(), d])?;
        assert_round_trip(&vec![g])?;
    }

    #[test]
    fn ids_print_and_parse_back(eui in u64_edgy(), addr in u32_edgy()) {
        let eui = DevEui::new(eui);
        prop_assert_eq!(eui.to_string().parse::<DevEui>(), Ok(eui));
        prop_assert_eq!(eui.to_string().to_uppercase().parse::<DevEui>(), Ok(eui));
        prop_assert_eq!(format!("0x{eui}").parse::<DevEui>(), Ok(eui));
        prop_assert_eq!(eui.to_string().len(), 16);
        let addr = DevAddr::new(addr);
        prop_assert_eq!(addr.to_string().parse::<DevAddr>(), Ok(addr));
        prop_assert_eq!(addr.to_string().len(), 8);
    }

    #[test]
    fn valid_windows_pass_validation(
        frequency in any::<u32>(),
        spreading in 0u8..=12,
        bandwidth in any::<u32>(),
        delay in 1u8..=15,
        slots in proptest::collection::vec(any::<u64>(), 1..=8),
        ahead in 0u64..=500,
        id in 1u64..,
    ) {
        let radio = DownstreamRadio::new(frequency, LoRaModulation::new(spreading, bandwidth));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for window in [
            TransmissionWindow::class_a(radio.clone(), delay),
            TransmissionWindow::class_b(radio.clone(), slots.clone()),
            TransmissionWindow::class_c(radio.clone(), now + ahead),
        ] {
            prop_assert_eq!(window.validate(), Ok(()));
            let unicast = DownstreamMessage::new(id, DevEui::new(id), window.clone(), [1]);
            prop_assert_eq!(unicast.validate(), Ok(()));
            let multicast =
                MulticastDownstreamMessage::new(id, MulticastAddr::new(1), window, [1]);
            prop_assert_eq!(multicast.validate(), Ok(()));
        }
    }

    #[test]
    fn invalid_windows_fail_with_their_error(
        spreading in 13u8..,
        delay in prop_oneof![Just(0u8), 16u8..],
        slots in prop_oneof![Just(0usize), 9usize..64],
    ) {
        let lora = |sf| DownstreamRadio::new(868_100_000, LoRaModulation::new(sf, 125_000));
        prop_assert_eq!(
            TransmissionWindow::class_a(lora(spreading), 1).validate(),
            Err(InvalidInput::Spreading(spreading))
        );
        prop_assert_eq!(
            TransmissionWindow::class_a(lora(7), delay).validate(),
            Err(InvalidInput::Delay(delay))
        );
        prop_assert_eq!(
            TransmissionWindow::class_b(lora(7), vec![1; slots]).validate(),
            Err(InvalidInput::TmmsSlots(slots))
        );
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&data)?;
    }

    #[test]
    fn random_json_never_panics(value in json()) {
        decode_all(value.to_string().as_bytes())?;
    }

    #[test]
    fn mutated_frames_never_panic(
        frame in prop_oneof![
            upstream_message().prop_map(|m| serde_json::to_value(m).unwrap()),
            upstream_reply().prop_map(|m| serde_json::to_value(m).unwrap()),
            downstream_request().prop_map(|m| serde_json::to_value(m).unwrap()),
            downstream_reply().prop_map(|m| serde_json::to_value(m).unwrap()),
            device().prop_map(|m| serde_json::to_value(m).unwrap()),
            multicast_group().prop_map(|m| serde_json::to_value(m).unwrap()),
        ],
        pick in 0usize..40,
        replacement in json(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mutated = replace_somewhere(frame, pick, replacement).to_string();
        decode_all(mutated.as_bytes())?;
        // Truncated frames, as a broken connection delivers them.
        let cut = cut.index(mutated.len() + 1);
        decode_all(&mutated.as_bytes()[..cut])?;
    }
}
