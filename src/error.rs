//! Errors.
//!
//! One [`Error`] type for every call, with variants a caller can match on and that keep
//! apart what went wrong where:
//!
//! - [`Error::Invalid`]: the input broke a rule of the API; nothing was sent.
//! - [`Error::Api`]: the service answered with one of its error codes ([`ApiError`]).
//! - [`Error::Io`], [`Error::Timeout`], [`Error::Tls`], [`Error::WebSocket`]: the transport
//!   failed.
//! - [`Error::Decode`]: the service answered something this crate cannot read.
//! - [`Error::Closed`], [`Error::NotConnected`]: the stream connection is closed or
//!   reconnecting; nothing was sent.
//!
//! No error text ever contains the access token.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input broke a rule of the API; it was caught before anything was sent.
    #[error("invalid input: {0}")]
    Invalid(#[from] InvalidInput),
    /// The client was configured with something unusable (a bad URL, a bad certificate).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The service refused the request with one of its error codes.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A network error: connection refused, reset, unreachable host, ...
    #[error("network error: {0}")]
    Io(#[source] std::io::Error),
    /// The server did not answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The TLS handshake failed, for example because the server's certificate is not
    /// trusted.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The WebSocket protocol failed (handshake or framing).
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The service answered something this crate cannot read.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was being decoded, e.g. `"devices/insert response"`.
        what: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// The stream connection is closed; nothing was sent.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The stream connection is down and reconnecting; nothing was sent.
    #[error("not connected: {0}")]
    NotConnected(String),
    /// A downlink was sent but its result did not arrive in time.
    #[error(
        "no result for downlink {transaction_id} in time ({})",
        if ack.is_some() { "the RAN acknowledged it" } else { "not even acknowledged" }
    )]
    DownstreamTimeout {
        /// The downlink's transaction id.
        transaction_id: u64,
        /// The RAN's ack, if it came.
        ack: Option<crate::model::DownstreamAck>,
    },
    /// A downlink was sent, but the connection ended before its result came.
    #[error(
        "the connection ended before the result of downlink {transaction_id} came ({}): {reason}",
        if ack.is_some() { "the RAN acknowledged it" } else { "it may have been sent" }
    )]
    DownstreamInterrupted {
        /// The downlink's transaction id.
        transaction_id: u64,
        /// The RAN's ack, if it came before the end.
        ack: Option<crate::model::DownstreamAck>,
        /// Why the connection ended.
        reason: String,
    },
}

impl Error {
    /// The service's error, if this is one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the failure was caught before anything went on the wire.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::Config(_) | Error::Closed(_) | Error::NotConnected(_)
        )
    }

    pub(crate) fn decode(what: &'static str, message: impl fmt::Display) -> Self {
        Error::Decode {
            what,
            message: message.to_string(),
        }
    }
}

/// An input that breaks a rule of the API, caught before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A LoRa spreading factor above 12.
    #[error("spreading factor {0} is out of range 0..=12")]
    Spreading(u8),
    /// A class A delay outside 1..=15 seconds.
    #[error("class A delay {0} s is out of range 1..=15")]
    Delay(u8),
    /// A class B window with no slots or more than 8.
    #[error("class B needs 1 to 8 TMMS slots, got {0}")]
    TmmsSlots(usize),
    /// A class C deadline of zero or more than 512 s ahead.
    #[error("class C deadline {deadline} must be positive and at most now ({now}) + 512 s")]
    Deadline {
        /// The deadline given, unix seconds.
        deadline: u64,
        /// The system clock when it was checked, unix seconds.
        now: u64,
    },
    /// A transaction id of zero; the service requires positive ids.
    #[error("transaction id must be positive")]
    TransactionId,
    /// A result code this crate does not know cannot be sent.
    #[error("unknown result code {0:?}")]
    ResultCode(String),
    /// A multicast group name longer than 255 characters.
    #[error("multicast group name has {len} characters, at most 255 are allowed")]
    GroupNameTooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// An update that changes nothing.
    #[error("nothing to update: give at least one of {0}")]
    NothingToUpdate(&'static str),
    /// Device details that are not a JSON document.
    #[error("device details must be a string of JSON: {0}")]
    DetailsNotJson(String),
    /// A pagination value the service cannot take.
    #[error("{0}")]
    Other(String),
}

/// An error answer of the service, by its `error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The access token was refused (`Unauthorized`).
    #[error("unauthorized: {description}")]
    Unauthorized {
        /// The service's description.
        description: String,
    },
    /// The request did not pass the service's validation (`ValidationFailed`).
    #[error("validation failed: {description}{}", FieldErrors(detail))]
    ValidationFailed {
        /// The service's description.
        description: String,
        /// Which fields failed, and why.
        detail: Vec<FieldError>,
    },
    /// The DevEUI is already in the routing table (`Device.AlreadyExists`).
    #[error("device already exists: {description}")]
    DeviceAlreadyExists {
        /// The service's description.
        description: String,
    },
    /// No such device (`Device.NotFound`).
    #[error("device not found: {description}")]
    DeviceNotFound {
        /// The service's description.
        description: String,
    },
    /// The account's device limit is reached (`Device.LimitExhausted`).
    #[error("devices limit exhausted: {description}")]
    DevicesLimitExhausted {
        /// The service's description.
        description: String,
    },
    /// A group with this address exists (`MulticastGroup.AlreadyExists`).
    #[error("multicast group already exists: {description}")]
    MulticastGroupAlreadyExists {
        /// The service's description.
        description: String,
    },
    /// No such multicast group (`MulticastGroup.NotFound`).
    #[error("multicast group not found: {description}")]
    MulticastGroupNotFound {
        /// The service's description.
        description: String,
    },
    /// The device is already in the group (`MulticastGroup.AlreadyContainsTheDevice`).
    #[error("multicast group already contains the device: {description}")]
    MulticastGroupAlreadyContainsDevice {
        /// The service's description.
        description: String,
    },
    /// Any other answer: the `Unknown` code, an unknown code, a 5xx, or a 4xx whose body
    /// is not the documented error object.
    #[error("unexpected answer (HTTP {status}{}): {body}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Unknown {
        /// The HTTP status.
        status: u16,
        /// The `error_code`, when the body had one.
        code: Option<String>,
        /// The response body (or its description), truncated to a sane length.
        body: String,
    },
}

impl ApiError {
    /// The service's `error_code` for this error (`"Device.NotFound"`, ...).
    pub fn code(&self) -> &str {
        match self {
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::ValidationFailed { .. } => "ValidationFailed",
            ApiError::DeviceAlreadyExists { .. } => "Device.AlreadyExists",
            ApiError::DeviceNotFound { .. } => "Device.NotFound",
            ApiError::DevicesLimitExhausted { .. } => "Device.LimitExhausted",
            ApiError::MulticastGroupAlreadyExists { .. } => "MulticastGroup.AlreadyExists",
            ApiError::MulticastGroupNotFound { .. } => "MulticastGroup.NotFound",
            ApiError::MulticastGroupAlreadyContainsDevice { .. } => {
                "MulticastGroup.AlreadyContainsTheDevice"
            }
            ApiError::Unknown { code, .. } => code.as_deref().unwrap_or("Unknown"),
        }
    }

    /// Maps an error answer to its variant: by the documented `error_code` when the body
    /// has one, otherwise [`ApiError::Unknown`] keeping the status and body text.
    pub fn from_response(status: u16, body: &str) -> Self {
        let parsed = if (400..500).contains(&status) {
            serde_json::from_str::<crate::wire::ErrorBody>(body).ok()
        } else {
            None
        };
        let Some(crate::wire::ErrorBody { detail }) = parsed else {
            return ApiError::Unknown {
                status,
                code: None,
                body: bounded(body),
            };
        };
        let description = if detail.error_description.len() > MAX_TEXT {
            bounded(&detail.error_description)
        } else {
            detail.error_description
        };
        match detail.error_code.as_str() {
            "Unauthorized" => ApiError::Unauthorized { description },
            "ValidationFailed" => ApiError::ValidationFailed {
                description,
                detail: detail.error_detail.unwrap_or_default(),
            },
            "Device.AlreadyExists" => ApiError::DeviceAlreadyExists { description },
            "Device.NotFound" => ApiError::DeviceNotFound { description },
            "Device.LimitExhausted" => ApiError::DevicesLimitExhausted { description },
            "MulticastGroup.AlreadyExists" => ApiError::MulticastGroupAlreadyExists { description },
            "MulticastGroup.NotFound" => ApiError::MulticastGroupNotFound { description },
            "MulticastGroup.AlreadyContainsTheDevice" => {
                ApiError::MulticastGroupAlreadyContainsDevice { description }
            }
            other => ApiError::Unknown {
                status,
                code: Some(other.to_owned()),
                body: description,
            },
        }
    }
}

/// How much of a server-chosen text an error keeps (bodies, descriptions).
const MAX_TEXT: usize = 2048;

/// Cuts a server-chosen text to a length that is safe to keep in an error and log.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut cut = MAX_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// One failed field of a `ValidationFailed` answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldError {
    /// Where the field is, e.g. `["body", "DevEUI"]` (list indices as their decimal text).
    #[serde(deserialize_with = "loc_segments")]
    pub loc: Vec<String>,
    /// What is wrong with it.
    #[serde(default)]
    pub msg: String,
    /// The kind of failure, e.g. `"value_error"`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

fn loc_segments<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Segment {
        Name(String),
        Index(i64),
    }
    Ok(Vec::<Segment>::deserialize(d)?
        .into_iter()
        .map(|s| match s {
            Segment::Name(n) => n,
            Segment::Index(i) => i.to_string(),
        })
        .collect())
}

struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            write!(f, "; {}: {}", e.loc.join("."), e.msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_documented_codes() {
        let body =
            r#"{"detail": {"error_code": "Device.AlreadyExists", "error_description": "exists"}}"#;
        assert_eq!(
            ApiError::from_response(409, body),
            ApiError::DeviceAlreadyExists {
                description: "exists".into()
            }
        );
        let body = r#"{"detail": {"error_code": "ValidationFailed", "error_description": "bad",
            "error_detail": [{"loc": ["body", "DevEUIs", 0], "msg": "not hex", "type": "value_error"}]}}"#;
        let err = ApiError::from_response(422, body);
        assert_eq!(err.code(), "ValidationFailed");
        assert_eq!(
            err.to_string(),
            "validation failed: bad; body.DevEUIs.0: not hex"
        );
    }

    #[test]
    fn unknown_keeps_status_and_body() {
        let err = ApiError::from_response(500, "boom");
        assert_eq!(
            err,
            ApiError::Unknown {
                status: 500,
                code: None,
                body: "boom".into()
            }
        );
        let err = ApiError::from_response(418, "<html>");
        assert!(matches!(err, ApiError::Unknown { status: 418, .. }));
        let err = ApiError::from_response(400, r#"{"detail": {"error_code": "Shiny.New"}}"#);
        assert_eq!(err.code(), "Shiny.New");
        let long = "é".repeat(5000);
        let ApiError::Unknown { body, .. } = ApiError::from_response(500, &long) else {
            panic!()
        };
        assert!(body.len() <= 2048 + '…'.len_utf8());
    }
}
