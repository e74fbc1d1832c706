//! A typed client of the control API under `/emulator/`, for driving a `ran-emulator`
//! that runs in another process (or a test's in-process [`Emulator`](crate::Emulator)
//! over HTTP, as a test in another language would).

use std::time::Duration;

use ran_routing::{
    DevAddr, DevEui, Device, DownstreamRequest, DownstreamResultCode, JoinEui, MulticastGroup,
    UpstreamMessage, UpstreamRejectResultCode, UpstreamReply,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::radio::{MicStats, PlayedUpstream, RadioDevice, UpstreamVerdict};

/// What `GET /emulator/status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The API's base URL.
    pub base_url: String,
    /// Open upstream connections.
    pub upstream_connections: usize,
    /// Open downstream connections.
    pub downstream_connections: usize,
    /// TCP connections accepted so far, of any kind.
    pub accepted_connections: u64,
    /// Stream frames that were not valid messages.
    pub invalid_frames: u64,
    /// Connections open now (HTTP and streams), each holding a connection slot.
    #[serde(default)]
    pub open_connections: usize,
    /// Connections served at once: `max_connections`, or fewer if the descriptor limit
    /// cannot cover that many.
    #[serde(default)]
    pub connection_slots: usize,
    /// Connections answered 503 because every slot was taken (or no descriptor was
    /// left).
    #[serde(default)]
    pub refused_connections: u64,
    /// Recorded replies and downlinks dropped, oldest first, to keep the records
    /// bounded, since they were last cleared.
    #[serde(default)]
    pub records_dropped: u64,
}

/// A device on the emulated air, as `GET /emulator/radio/devices` lists it (no keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RadioDeviceInfo {
    /// The device.
    pub dev_eui: DevEui,
    /// Its JoinEUI, for an OTAA device.
    pub join_eui: Option<JoinEui>,
    /// The DevNonce of its next join request, for an OTAA device.
    pub next_dev_nonce: Option<u16>,
    /// Its session's DevAddr.
    pub dev_addr: Option<DevAddr>,
    /// The full counter of its next data uplink.
    pub fcnt: Option<u32>,
    /// MIC candidates of its next challenge.
    pub candidates: usize,
}

/// A played upstream as the control API reports it.
#[derive(Deserialize)]
struct PlayedBody {
    transaction_id: u64,
    dev_eui: DevEui,
    mic: u32,
    fcnt: Option<u32>,
    #[serde(default)]
    dev_nonce: Option<u16>,
    candidates: usize,
    #[serde(default)]
    outdated: bool,
    verdict: String,
    #[serde(default)]
    ack_dev_eui: Option<DevEui>,
    #[serde(default)]
    ack_mic: Option<u32>,
    #[serde(default)]
    result_code: Option<String>,
}

impl PlayedBody {
    fn into_played(self) -> Result<PlayedUpstream> {
        let verdict = match (self.verdict.as_str(), self.ack_dev_eui, self.ack_mic) {
            ("Unanswered", ..) => UpstreamVerdict::Unanswered,
            ("Solved", ..) => UpstreamVerdict::Solved,
            ("Withheld", ..) => UpstreamVerdict::Withheld,
            ("WrongAck", Some(dev_eui), Some(mic)) => UpstreamVerdict::WrongAck { dev_eui, mic },
            ("Rejected", ..) => UpstreamVerdict::Rejected(UpstreamRejectResultCode::from(
                self.result_code.as_deref().unwrap_or(""),
            )),
            (other, ..) => {
                return Err(Error::Transport(format!("unknown verdict {other:?}")));
            }
        };
        Ok(PlayedUpstream {
            transaction_id: self.transaction_id,
            dev_eui: self.dev_eui,
            mic: self.mic,
            fcnt: self.fcnt,
            dev_nonce: self.dev_nonce,
            candidates: self.candidates,
            outdated: self.outdated,
            verdict,
        })
    }
}

#[derive(Deserialize)]
struct StatsBody {
    played: u64,
    solved: u64,
    wrong_acks: u64,
    mic_failed: u64,
    other_rejects: u64,
    duplicate_replies: u64,
    #[serde(default)]
    unknown_replies: u64,
    #[serde(default)]
    withheld: u64,
    #[serde(default)]
    joins: u64,
    #[serde(default)]
    ignored_downlinks: u64,
}

/// A client of an emulator's control API: one method per route, the same names and
/// results as the in-process [`Emulator`](crate::Emulator) handle. A 503
/// `Emulator.NoUpstreamConnection` is [`Error::Closed`], a 422 is [`Error::Invalid`],
/// any other refusal [`Error::Control`].
///
/// ```
/// use ran_routing_emulator::{ControlClient, Emulator, Error};
/// use ran_routing::DownstreamResultCode;
///
/// let emu = Emulator::start()?;
/// let control = ControlClient::new(emu.control_url());
/// assert_eq!(control.status()?.upstream_connections, 0);
/// control.set_downstream_result(DownstreamResultCode::TooLate)?;
/// assert!(matches!(control.send_upstream_raw("{}"), Err(Error::Closed(_))));
/// # Ok::<(), ran_routing_emulator::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    agent: ureq::Agent,
    /// Its `Debug` never shows the secret.
    token: Option<crate::server::Token>,
}

impl ControlClient {
    /// A client of the control API at `url`, e.g. `http://127.0.0.1:8080/emulator/` (what
    /// [`Emulator::control_url`](crate::Emulator::control_url) and the binary print).
    /// The host must name the emulator as it knows itself (`127.0.0.1`, `localhost`,
    /// `[::1]` or its listening address): the control API refuses other `Host`s.
    pub fn new(url: impl Into<String>) -> Self {
        let mut url = url.into();
        if !url.ends_with('/') {
            url.push('/');
        }
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        Self {
            url,
            agent,
            token: None,
        }
    }

    /// Sends `token` with every call, as `Authorization: Bearer <token>`: for an
    /// emulator started with a control token
    /// ([`EmulatorBuilder::control_token`](crate::EmulatorBuilder::control_token), or
    /// `ran-emulator --control-token`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(crate::server::Token::unchecked(token.into()));
        self
    }

    /// The control API's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn call(&self, method: &str, path: &str, body: Option<String>) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        let sent = match (method, body) {
            ("GET", _) => with_auth(self.agent.get(&url), auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), auth).call(),
            (_, Some(body)) => with_auth(self.agent.post(&url), auth)
                .header("Content-Type", "application/json")
                .send(body),
            (_, None) => with_auth(self.agent.post(&url), auth).send_empty(),
        };
        let mut response = sent.map_err(|e| Error::Transport(format!("{method} {url}: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::Transport(format!("{method} {url}: {e}")))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Transport(format!("{method} {url}: not JSON ({e})")))?;
        if status == 200 {
            return Ok(value);
        }
        let detail = &value["detail"];
        let code = detail["error_code"]
            .as_str()
            .unwrap_or("Unknown")
            .to_owned();
        let mut description = detail["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(fields) = detail["error_detail"].as_array() {
            for msg in fields.iter().filter_map(|f| f["msg"].as_str()) {
                description.push_str(": ");
                description.push_str(msg);
            }
        }
        Err(match (status, code.as_str()) {
            (503, "Emulator.NoUpstreamConnection") => Error::Closed(description),
            (422, _) => Error::Invalid(description),
            _ => Error::Control {
                status,
                code,
                description,
            },
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.call("GET", path, None)?)
    }

    fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call("POST", path, Some(body.to_string()))
    }

    // --- streams ---------------------------------------------------------------------

    /// `POST upstream`: sends an Upstream frame to the next upstream connection.
    pub fn send_upstream(&self, message: &UpstreamMessage) -> Result<()> {
        let frame = crate::streams::upstream_json(message);
        self.call("POST", "upstream", Some(frame)).map(drop)
    }

    /// `POST upstream/raw`: sends any text as an upstream frame, valid or not.
    pub fn send_upstream_raw(&self, text: &str) -> Result<()> {
        self.call("POST", "upstream/raw", Some(text.to_owned()))
            .map(drop)
    }

    /// `GET upstream/replies`: every UpstreamAck and UpstreamReject received, in order.
    pub fn upstream_replies(&self) -> Result<Vec<UpstreamReply>> {
        self.get("upstream/replies")
    }

    /// `GET downstream/received`: every Downstream and MulticastDownstream received.
    pub fn downstream_received(&self) -> Result<Vec<DownstreamRequest>> {
        self.get("downstream/received")
    }

    /// `POST downstream/result-code`: the result code for every downlink from now on.
    pub fn set_downstream_result(&self, code: DownstreamResultCode) -> Result<()> {
        self.post("downstream/result-code", json!({"code": code.as_str()}))
            .map(drop)
    }

    /// `POST downstream/result-code` with `dev_eui`: the code for downlinks to it.
    pub fn set_downstream_result_for_device(
        &self,
        dev_eui: DevEui,
        code: DownstreamResultCode,
    ) -> Result<()> {
        let body = json!({"code": code.as_str(), "dev_eui": dev_eui.to_string()});
        self.post("downstream/result-code", body).map(drop)
    }

    /// `POST downstream/result-code` with `transaction_id`: the code for that downlink.
    pub fn set_downstream_result_for_transaction(
        &self,
        transaction_id: u64,
        code: DownstreamResultCode,
    ) -> Result<()> {
        let body = json!({"code": code.as_str(), "transaction_id": transaction_id});
        self.post("downstream/result-code", body).map(drop)
    }

    /// `DELETE downstream/result-code`: back to `Success` for every downlink.
    pub fn reset_downstream_results(&self) -> Result<()> {
        self.call("DELETE", "downstream/result-code", None)
            .map(drop)
    }

    /// `GET status`.
    pub fn status(&self) -> Result<Status> {
        self.get("status")
    }

    /// `POST streams/drop`: cuts every stream connection at the TCP level.
    pub fn drop_stream_connections(&self) -> Result<()> {
        self.call("POST", "streams/drop", None).map(drop)
    }

    /// `POST streams/close`: closes every stream connection with a close frame (code
    /// 1001, reason `"server restart"`).
    pub fn close_stream_connections(&self) -> Result<()> {
        self.call("POST", "streams/close", None).map(drop)
    }

    /// `POST records/clear`: forgets the recorded replies and downlinks.
    pub fn clear_records(&self) -> Result<()> {
        self.call("POST", "records/clear", None).map(drop)
    }

    // --- state -----------------------------------------------------------------------

    /// `GET devices`: the routing table, in insertion order.
    pub fn devices(&self) -> Result<Vec<Device>> {
        self.get("devices")
    }

    /// `GET multicast-groups`: the multicast groups, in creation order.
    pub fn multicast_groups(&self) -> Result<Vec<MulticastGroup>> {
        self.get("multicast-groups")
    }

    // --- radio -----------------------------------------------------------------------

    /// `POST radio/devices`: puts a device with its keys on the air.
    pub fn add_radio_device(&self, device: &RadioDevice) -> Result<()> {
        self.post("radio/devices", device.control_body()).map(drop)
    }

    /// `GET radio/devices`: the devices on the air.
    pub fn radio_devices(&self) -> Result<Vec<RadioDeviceInfo>> {
        self.get("radio/devices")
    }

    /// `DELETE radio/devices/{dev_eui}`: takes a device off the air; `false` if there
    /// was none.
    pub fn remove_radio_device(&self, dev_eui: DevEui) -> Result<bool> {
        match self.call("DELETE", &format!("radio/devices/{dev_eui}"), None) {
            Ok(_) => Ok(true),
            Err(Error::Control { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST radio/join-request`: the device sends its next join request.
    pub fn play_join_request(&self, dev_eui: DevEui) -> Result<PlayedUpstream> {
        let body = json!({"dev_eui": dev_eui.to_string()});
        decode::<PlayedBody>(self.post("radio/join-request", body)?)?.into_played()
    }

    /// `POST radio/uplink`: the device sends its next data uplink.
    pub fn play_uplink(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: &[u8],
        confirmed: bool,
    ) -> Result<PlayedUpstream> {
        let payload_hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let body = json!({
            "dev_eui": dev_eui.to_string(),
            "fport": fport,
            "payload_hex": payload_hex,
            "confirmed": confirmed,
        });
        decode::<PlayedBody>(self.post("radio/uplink", body)?)?.into_played()
    }

    /// `POST radio/uplink` with `copies`: the device sends its next data uplink and the
    /// RAN delivers it `copies` times, `spacing` apart; returns the copies' transaction
    /// ids.
    pub fn play_uplink_copies(
        &self,
        dev_eui: DevEui,
        fport: u8,
        payload: &[u8],
        copies: usize,
        spacing: Duration,
    ) -> Result<Vec<u64>> {
        let payload_hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let body = json!({
            "dev_eui": dev_eui.to_string(),
            "fport": fport,
            "payload_hex": payload_hex,
            "copies": copies,
            "copies_spacing_ms": spacing.as_millis() as u64,
        });
        Ok(decode::<CopiesBody>(self.post("radio/uplink", body)?)?.copies)
    }

    /// `POST radio/join-request` with `copies`; see
    /// [`play_uplink_copies`](Self::play_uplink_copies).
    pub fn play_join_request_copies(
        &self,
        dev_eui: DevEui,
        copies: usize,
        spacing: Duration,
    ) -> Result<Vec<u64>> {
        let body = json!({
            "dev_eui": dev_eui.to_string(),
            "copies": copies,
            "copies_spacing_ms": spacing.as_millis() as u64,
        });
        Ok(decode::<CopiesBody>(self.post("radio/join-request", body)?)?.copies)
    }

    /// `GET radio/upstreams/{transaction_id}`: a played upstream and its verdict; `None`
    /// if the emulator did not play it.
    pub fn played_upstream(&self, transaction_id: u64) -> Result<Option<PlayedUpstream>> {
        match self.get::<PlayedBody>(&format!("radio/upstreams/{transaction_id}")) {
            Ok(body) => body.into_played().map(Some),
            Err(Error::Control { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET radio/stats`: played upstreams counted by verdict.
    pub fn mic_stats(&self) -> Result<MicStats> {
        let s: StatsBody = self.get("radio/stats")?;
        Ok(MicStats {
            played: s.played,
            solved: s.solved,
            wrong_acks: s.wrong_acks,
            mic_failed: s.mic_failed,
            other_rejects: s.other_rejects,
            duplicate_replies: s.duplicate_replies,
            unknown_replies: s.unknown_replies,
            withheld: s.withheld,
            joins: s.joins,
            ignored_downlinks: s.ignored_downlinks,
        })
    }

    /// `POST radio/challenge-size`: MIC candidates per challenge, `min` to `max`.
    pub fn set_mic_challenge_size(&self, min: usize, max: usize) -> Result<()> {
        self.post("radio/challenge-size", json!({"min": min, "max": max}))
            .map(drop)
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(auth) => request.header("Authorization", auth),
        None => request,
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Transport(format!("unexpected answer: {e}")))
}

/// The copies' transaction ids in a `radio/uplink` or `radio/join-request` answer.
#[derive(serde::Deserialize)]
struct CopiesBody {
    copies: Vec<u64>,
}
