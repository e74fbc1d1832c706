//! How the RAN answers a downlink: the routing table, the rules on join accepts, the
//! transmission window, and when the result arrives.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ran_routing::{
    DevEui, DownstreamRequest, DownstreamResultCode, Modulation, TransmissionWindow, TxTiming,
};

use super::Heard;
use crate::radio::Window;
use crate::server::Shared;
use crate::sync::lock;

/// How long a class A downlink with no fitting acknowledged uplink waits for one: the
/// LNS's ack travels on the upstream connection, its downlink on the downstream one, and
/// the second may overtake the first here.
const ACK_GRACE: Duration = Duration::from_millis(250);

/// How far ahead a class B slot may be: two beacon periods (128 s each), the most a
/// ping slot schedule plausibly reaches.
const MAX_TMMS_AHEAD: Duration = Duration::from_secs(256);

/// The spec's "default and maximum" class C deadline.
const MAX_DEADLINE_AHEAD_SECS: u64 = 512;

/// The RAN's answer to a downlink: its result, and when to send it (`None`: at once).
pub(super) struct Judged {
    pub(super) code: DownstreamResultCode,
    pub(super) message: String,
    pub(super) at: Option<Instant>,
}

impl Judged {
    fn now(code: DownstreamResultCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            at: None,
        }
    }
}

/// Judges a downlink that arrived at `arrival`.
pub(super) fn judge(shared: &Shared, request: &DownstreamRequest, arrival: Instant) -> Judged {
    let rules = shared.radio.rules();
    let transaction_id = request.transaction_id();
    let codes = lock(&shared.hub.state).codes.clone();
    let unicast = match request {
        DownstreamRequest::Unicast(m) => Some(m),
        DownstreamRequest::Multicast(_) => None,
    };
    let radio_device = unicast
        .map(|m| m.dev_eui)
        .filter(|dev_eui| shared.radio.has(*dev_eui));
    let refuse = |code: DownstreamResultCode, message: String| {
        if radio_device.is_some() {
            shared.radio.not_transmitted(transaction_id, code.clone());
        }
        log::info!("emulator: downlink {transaction_id}: {code}: {message}");
        Judged::now(code, message)
    };

    // TransactionIDs are unique: one still in flight (its result not sent yet) cannot
    // name a second downlink, whose result the LNS could not tell from the first's.
    if let Some(until) = in_flight_until(shared, transaction_id, arrival) {
        return refuse(
            DownstreamResultCode::GatewayError,
            format!(
                "TransactionID {transaction_id} is still in flight (its result is due in \
                 {} ms): a downlink's TransactionID must be unique",
                until.saturating_duration_since(arrival).as_millis()
            ),
        );
    }

    // A failure the test chose.
    let chosen = codes
        .by_transaction
        .get(&transaction_id)
        .or_else(|| unicast.and_then(|m| codes.by_device.get(&m.dev_eui)));
    if let Some(chosen) = chosen.filter(|c| !c.code.is_success()) {
        return refuse(chosen.code.clone(), chosen.message());
    }

    // Only subscribed devices and existing groups get downlinks.
    {
        let store = lock(&shared.store);
        match request {
            DownstreamRequest::Unicast(m) if store.device(m.dev_eui).is_none() => {
                return refuse(
                    DownstreamResultCode::GatewayNotFound,
                    format!(
                        "device {} is not in the routing table: downlink discarded",
                        m.dev_eui
                    ),
                );
            }
            DownstreamRequest::Multicast(m) if store.group(m.addr).is_none() => {
                return refuse(
                    DownstreamResultCode::GatewayNotFound,
                    format!("multicast group {} not found: downlink discarded", m.addr),
                );
            }
            _ => {}
        }
    }
    if !codes.default.code.is_success() {
        return refuse(codes.default.code.clone(), codes.default.message());
    }
    if let Some(m) = unicast {
        if rules.security_contexts && is_join_accept(&m.phy_payload) && m.target_dev_addr.is_none()
        {
            return refuse(
                DownstreamResultCode::GatewayError,
                "join accept refused: TargetDevAddr is mandatory for join accepts (the \
                 address the join accept gives the device; the RAN routes its next uplinks \
                 by it)"
                    .into(),
            );
        }
    }

    // The transmission window.
    let window = request_window(request);
    let mut note = None;
    let mut timed_from = None;
    let mut transmit_at = arrival;
    if rules.downlink_timing {
        match &window.timing {
            TxTiming::Delay(delay) => {
                let Some(m) = unicast else {
                    return refuse(
                        DownstreamResultCode::WindowNotFound,
                        "a class A Delay counts from an uplink, and a multicast group sends \
                         none: use TMMS (class B) or Deadline (class C)"
                            .into(),
                    );
                };
                let delay_real = rules.scale(Duration::from_secs((*delay).into()));
                let Some(heard) = last_acked(shared, m.dev_eui, arrival, delay_real) else {
                    return refuse(
                        DownstreamResultCode::WindowNotFound,
                        format!(
                            "no acknowledged uplink of {} to count the class A Delay from",
                            m.dev_eui
                        ),
                    );
                };
                let opens = heard.at + delay_real;
                if arrival > opens {
                    return refuse(
                        DownstreamResultCode::TooLate,
                        format!(
                            "the RX window {delay} s after uplink {} opened {} ms (real time) \
                             before the downlink arrived",
                            heard.transaction_id,
                            (arrival - opens).as_millis()
                        ),
                    );
                }
                transmit_at = opens;
                timed_from = Some(heard.transaction_id);
            }
            TxTiming::Deadline(deadline) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                // The reading documented on `TxTiming::Deadline`: ASAP goes out at once,
                // any other deadline is Unix seconds and must not have passed.
                if *deadline != TxTiming::DEADLINE_ASAP && *deadline < now {
                    return refuse(
                        DownstreamResultCode::TooLate,
                        format!(
                            "Deadline {deadline} passed {} s before the downlink arrived \
                             (Unix seconds; {} means as soon as possible)",
                            now - deadline,
                            TxTiming::DEADLINE_ASAP
                        ),
                    );
                }
                if *deadline > now + MAX_DEADLINE_AHEAD_SECS {
                    note = Some(format!(
                        "Success (Deadline {deadline} is beyond now + 512 s, the maximum: \
                         clamped to {})",
                        now + MAX_DEADLINE_AHEAD_SECS
                    ));
                }
            }
            TxTiming::Tmms(slots) => match next_slot(slots) {
                Ok(wait) => transmit_at = arrival + wait,
                Err((code, message)) => return refuse(code, message),
            },
        }
    }
    // A group with no member reaches no device through any gateway.
    if let DownstreamRequest::Multicast(m) = request {
        if lock(&shared.store)
            .group(m.addr)
            .is_some_and(|g| g.devices.is_empty())
        {
            return refuse(
                DownstreamResultCode::GatewayNotFound,
                format!(
                    "multicast group {} has no devices: no gateway to send through",
                    m.addr
                ),
            );
        }
    }
    // Transmitted.
    let at = rules.downlink_timing.then(|| {
        transmit_at + rules.scale(airtime(&window.radio.modulation, request_payload(request)))
    });
    if let Some(m) = unicast {
        if let Some(target) = m.target_dev_addr {
            if lock(&shared.store).set_target(m.dev_eui, target) {
                log::info!(
                    "emulator: device {} has target DevAddr {target} until its first uplink \
                     from it",
                    m.dev_eui
                );
            }
        }
        if let Some(dev_eui) = radio_device {
            shared.radio.receive(
                dev_eui,
                transaction_id,
                &m.phy_payload,
                radio_window(&window.timing, timed_from),
            );
        }
    }
    if let DownstreamRequest::Multicast(m) = request {
        let members = lock(&shared.store)
            .group(m.addr)
            .map(|g| g.devices.clone())
            .unwrap_or_default();
        shared.radio.receive_multicast(
            m.addr,
            &members,
            transaction_id,
            &m.phy_payload,
            radio_window(&window.timing, None),
        );
    }
    if let Some(at) = at {
        lock(&shared.hub.state).in_flight.insert(transaction_id, at);
    }
    Judged {
        code: DownstreamResultCode::Success,
        message: note.unwrap_or_else(|| "Success".into()),
        at,
    }
}

/// When the result of the in-flight downlink with this TransactionID is due, if there is
/// one; forgets the downlinks whose result was due by `now`.
fn in_flight_until(shared: &Shared, transaction_id: u64, now: Instant) -> Option<Instant> {
    let mut state = lock(&shared.hub.state);
    state.in_flight.retain(|_, due| *due > now);
    state.in_flight.get(&transaction_id).copied()
}

/// The window a radio device sees a downlink in.
fn radio_window(timing: &TxTiming, timed_from: Option<u64>) -> Window {
    match timing {
        TxTiming::Delay(delay) => Window::A {
            delay: *delay,
            timed_from,
        },
        TxTiming::Tmms(_) => Window::B,
        TxTiming::Deadline(_) => Window::C,
    }
}

/// How long until the first class B slot that has not passed; a refusal when every slot
/// has passed (`TooLate`: a slot computed from a stale clock, or GPS seconds given as
/// milliseconds) or the first one left is implausibly far ahead (`WindowNotFound`: Unix
/// milliseconds instead of GPS ones are ten years ahead).
fn next_slot(slots: &[u64]) -> Result<Duration, (DownstreamResultCode, String)> {
    let now = ran_routing::timing::gps_time(SystemTime::now())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let Some(&next) = slots.iter().filter(|&&slot| slot >= now).min() else {
        return Err((
            DownstreamResultCode::TooLate,
            format!(
                "every TMMS slot had passed when the downlink arrived (GPS time now \
                 {now} ms; TMMS counts milliseconds since the GPS epoch)"
            ),
        ));
    };
    let ahead = next - now;
    if ahead > MAX_TMMS_AHEAD.as_millis() as u64 {
        return Err((
            DownstreamResultCode::WindowNotFound,
            format!(
                "TMMS slot {next} is {} s ahead, more than {} s: GPS milliseconds, not \
                 Unix ones?",
                ahead / 1000,
                MAX_TMMS_AHEAD.as_secs()
            ),
        ));
    }
    Ok(Duration::from_millis(ahead))
}

/// Whether a PHYPayload is a join accept (MType 001).
pub(super) fn is_join_accept(phy_payload: &[u8]) -> bool {
    phy_payload.first().is_some_and(|mhdr| mhdr >> 5 == 0b001)
}

fn request_window(request: &DownstreamRequest) -> &TransmissionWindow {
    match request {
        DownstreamRequest::Unicast(m) => &m.tx_window,
        DownstreamRequest::Multicast(m) => &m.tx_window,
    }
}

fn request_payload(request: &DownstreamRequest) -> usize {
    match request {
        DownstreamRequest::Unicast(m) => m.phy_payload.len(),
        DownstreamRequest::Multicast(m) => m.phy_payload.len(),
    }
}

/// The last acknowledged uplink of `dev_eui` whose window of `delay` had not passed when
/// the downlink arrived, waiting a little for an ack still on its way; else the last one
/// (too old), or `None`.
fn last_acked(
    shared: &Shared,
    dev_eui: DevEui,
    arrival: Instant,
    delay: Duration,
) -> Option<Heard> {
    shared
        .hub
        .wait_for(ACK_GRACE, |s| {
            let heard = s.last_acked.get(&dev_eui)?;
            (heard.at + delay >= arrival).then_some(*heard)
        })
        .or_else(|| lock(&shared.hub.state).last_acked.get(&dev_eui).copied())
}

/// A downlink's time on air: LoRa by the Semtech formula (8 preamble symbols, explicit
/// header, coding rate 4/5, no payload CRC as for downlinks, low data rate optimisation
/// at SF11 and SF12 on 125 kHz), FSK with 5 preamble and 3 sync bytes and a CRC.
pub(crate) fn airtime(modulation: &Modulation, len: usize) -> Duration {
    match modulation {
        Modulation::LoRa(l) => {
            // Values no radio has (the reference client's example sends Spreading 1,
            // Bandwidth 1) are taken as the nearest real ones: SF5 to SF12, 7.8 to
            // 500 kHz.
            let sf = f64::from(l.spreading.clamp(5, 12));
            let bw = f64::from(l.bandwidth.clamp(7_800, 500_000));
            let symbol = sf.exp2() / bw;
            let ldro = if sf >= 11.0 && bw <= 125_000.0 {
                1.0
            } else {
                0.0
            };
            let bits = 8.0 * len as f64 - 4.0 * sf + 28.0 - 20.0 * 0.0;
            let payload_symbols = 8.0 + ((bits / (4.0 * (sf - 2.0 * ldro))).ceil() * 5.0).max(0.0);
            Duration::from_secs_f64((12.25 + payload_symbols) * symbol)
        }
        Modulation::Fsk(f) => {
            let rate = f64::from(f.bit_rate.max(600));
            Duration::from_secs_f64((5 + 3 + 1 + len + 2) as f64 * 8.0 / rate)
        }
        // LR-FHSS: a rough figure; its timing is not modelled.
        Modulation::Fhss(_) => Duration::from_millis(100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ran_routing::{FskModulation, LoRaModulation};

    #[test]
    fn lora_airtime_matches_the_semtech_calculator() {
        // 17-byte join accept: SF12 1155 ms, SF7 46 ms (Semtech's LoRa calculator, CR 4/5,
        // 8 preamble symbols, explicit header, CRC off).
        let sf12 = airtime(&LoRaModulation::new(12, 125_000).into(), 17);
        let sf7 = airtime(&LoRaModulation::new(7, 125_000).into(), 17);
        assert!((1_100..1_200).contains(&sf12.as_millis()), "{sf12:?}");
        assert!((40..50).contains(&sf7.as_millis()), "{sf7:?}");
        let fsk = airtime(&FskModulation::new(25_000, 50_000).into(), 17);
        assert!((4..6).contains(&fsk.as_millis()), "{fsk:?}");
        // Nonsense radio values stay within what a real radio takes.
        let odd = airtime(&LoRaModulation::new(1, 1).into(), 2);
        assert!(odd < Duration::from_secs(1), "{odd:?}");
    }
}
