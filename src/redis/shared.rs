//! The commands behind shared de-duplication: each one round trip, atomic on the server,
//! holding no lock of ours while it waits.
//!
//! De-duplication keeps one key per uplink payload, `{prefix}up:{PHYPayloadNoMIC}`, for
//! the de-duplication window:
//! - `p` + claim token: a first copy is with one application, unanswered;
//! - `a` + DevEUI (8 bytes, big-endian) + MIC (4 bytes): the first copy was acked.
//!
//! A rejected first copy deletes its key: the next copy claims it afresh and goes to an
//! application (a reject is never copied, so a forged copy cannot silence the genuine one).
//! Answers and deletions compare the claim token, so a claim that outlived its window and
//! was taken over by a later copy is never overwritten by the old one's answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::RedisStore;
use crate::error::Result;
use crate::ids::DevEui;

const UPLINK: &[u8] = b"up:";

/// Sets `KEYS[1]` to `ARGV[2]` (keeping its expiry) only while it holds claim `ARGV[1]`.
const ANSWER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0";

/// Deletes `KEYS[1]` only while it holds claim `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// What the store knows of an uplink's payload when a copy of it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// No copy in the window: this one is first and now holds the claim (the token).
    First(ClaimToken),
    /// A first copy is with an application, unanswered.
    Pending,
    /// The first copy was acked with this DevEUI and MIC.
    Acked {
        /// The DevEUI the application named.
        dev_eui: DevEui,
        /// The MIC the application named.
        mic: u32,
    },
}

/// The application's answer to a first copy this process claimed.
pub(crate) struct Answered {
    /// The uplink's `PHYPayloadNoMIC`.
    pub(crate) payload: Vec<u8>,
    /// The claim it was handed out under.
    pub(crate) token: ClaimToken,
    /// The ack's DevEUI and MIC; `None` for a reject.
    pub(crate) ack: Option<(DevEui, u32)>,
}

/// Proves which claim an answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimToken(Vec<u8>);

impl ClaimToken {
    /// Unique across processes: a random per-process part and a counter.
    fn next() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        });
        let mut token = Vec::with_capacity(17);
        token.push(b'p');
        token.extend_from_slice(&seed.to_be_bytes());
        token.extend_from_slice(&COUNT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        Self(token)
    }
}

fn decode(value: Option<Vec<u8>>, token: ClaimToken) -> Claim {
    match value.as_deref() {
        None => Claim::First(token),
        Some([b'a', rest @ ..]) if rest.len() == 12 => {
            let (eui, mic) = rest.split_at(8);
            Claim::Acked {
                dev_eui: DevEui::new(u64::from_be_bytes(eui.try_into().expect("8 bytes"))),
                mic: u32::from_be_bytes(mic.try_into().expect("4 bytes")),
            }
        }
        // A claim, or a value this version does not know: wait for an answer.
        Some(_) => Claim::Pending,
    }
}

impl RedisStore {
    /// Claims each payload for `window`, or reads what its first copy's claim holds, in
    /// one round trip (`SET key token NX PX window GET` each, pipelined).
    pub(crate) fn claim(&self, payloads: &[&[u8]], window: Duration) -> Result<Vec<Claim>> {
        let px = window.as_millis().clamp(1, u64::MAX as u128) as u64;
        let tokens: Vec<ClaimToken> = payloads.iter().map(|_| ClaimToken::next()).collect();
        let mut pipe = redis::pipe();
        for (payload, token) in payloads.iter().zip(&tokens) {
            pipe.cmd("SET")
                .arg(self.key(UPLINK, payload))
                .arg(&token.0)
                .arg("NX")
                .arg("PX")
                .arg(px)
                .arg("GET");
        }
        let values: Vec<Option<Vec<u8>>> = self.run(|con| pipe.query(con))?;
        Ok(values
            .into_iter()
            .zip(tokens)
            .map(|(v, t)| decode(v, t))
            .collect())
    }

    /// Records the application's answers to first copies, for copies in any process, in
    /// one round trip: an ack is stored under the claim, a reject gives the claim up (the
    /// next copy is first). An answer whose claim is no longer its own changes nothing.
    pub(crate) fn record_answers(&self, answers: &[Answered]) -> Result<()> {
        let mut pipe = redis::pipe();
        for answer in answers {
            let key = self.key(UPLINK, &answer.payload);
            match answer.ack {
                Some((dev_eui, mic)) => {
                    let mut value = Vec::with_capacity(13);
                    value.push(b'a');
                    value.extend_from_slice(&dev_eui.get().to_be_bytes());
                    value.extend_from_slice(&mic.to_be_bytes());
                    pipe.cmd("EVAL")
                        .arg(ANSWER)
                        .arg(1)
                        .arg(key)
                        .arg(&answer.token.0)
                        .arg(value)
                        .ignore();
                }
                None => {
                    pipe.cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(key)
                        .arg(&answer.token.0)
                        .ignore();
                }
            }
        }
        self.run(|con| pipe.query::<()>(con))
    }
}
