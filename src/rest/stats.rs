//! Counters of the REST calls made through a [`Core`](crate::Core) and its clones, and
//! their publication through `metrics` (the crate docs list the names).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::{ApiError, Error};

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A REST operation of the API, as counted in [`RestStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RestOperation {
    /// `devices/insert`.
    Insert,
    /// `devices/select`.
    Select,
    /// `devices/update`.
    Update,
    /// `devices/drop`.
    Delete,
    /// `devices/drop-all`.
    DeleteAll,
    /// `multicast-groups/create`.
    MulticastCreate,
    /// `multicast-groups/get`.
    MulticastGet,
    /// `multicast-groups/update`.
    MulticastUpdate,
    /// `multicast-groups/delete`.
    MulticastDelete,
    /// `multicast-groups/add-device`.
    MulticastAddDevice,
    /// `multicast-groups/remove-device`.
    MulticastRemoveDevice,
}

const OPERATIONS: usize = 11;

impl RestOperation {
    /// Every operation, in index order.
    pub const ALL: [RestOperation; OPERATIONS] = [
        RestOperation::Insert,
        RestOperation::Select,
        RestOperation::Update,
        RestOperation::Delete,
        RestOperation::DeleteAll,
        RestOperation::MulticastCreate,
        RestOperation::MulticastGet,
        RestOperation::MulticastUpdate,
        RestOperation::MulticastDelete,
        RestOperation::MulticastAddDevice,
        RestOperation::MulticastRemoveDevice,
    ];

    /// The name in [`RestStats`] and in the `operation` label: `insert`, `select`,
    /// `update`, `delete`, `delete_all`, `multicast_create`, `multicast_get`,
    /// `multicast_update`, `multicast_delete`, `multicast_add_device`,
    /// `multicast_remove_device`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestOperation::Insert => "insert",
            RestOperation::Select => "select",
            RestOperation::Update => "update",
            RestOperation::Delete => "delete",
            RestOperation::DeleteAll => "delete_all",
            RestOperation::MulticastCreate => "multicast_create",
            RestOperation::MulticastGet => "multicast_get",
            RestOperation::MulticastUpdate => "multicast_update",
            RestOperation::MulticastDelete => "multicast_delete",
            RestOperation::MulticastAddDevice => "multicast_add_device",
            RestOperation::MulticastRemoveDevice => "multicast_remove_device",
        }
    }

    /// The operation of a REST path (below its service's base).
    pub(crate) fn from_path(path: &str) -> Option<RestOperation> {
        Some(match path {
            "devices/insert" => RestOperation::Insert,
            "devices/select" => RestOperation::Select,
            "devices/update" => RestOperation::Update,
            "devices/drop" => RestOperation::Delete,
            "devices/drop-all" => RestOperation::DeleteAll,
            "multicast-groups/create" => RestOperation::MulticastCreate,
            "multicast-groups/get" => RestOperation::MulticastGet,
            "multicast-groups/update" => RestOperation::MulticastUpdate,
            "multicast-groups/delete" => RestOperation::MulticastDelete,
            "multicast-groups/add-device" => RestOperation::MulticastAddDevice,
            "multicast-groups/remove-device" => RestOperation::MulticastRemoveDevice,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RestOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The API error codes counted one by one; anything else is `unknown`.
const API_CODES: [&str; 9] = [
    "Unauthorized",
    "ValidationFailed",
    "Device.AlreadyExists",
    "Device.NotFound",
    "Device.LimitExhausted",
    "MulticastGroup.AlreadyExists",
    "MulticastGroup.NotFound",
    "MulticastGroup.AlreadyContainsTheDevice",
    "unknown",
];

fn api_index(e: &ApiError) -> usize {
    match e {
        ApiError::Unauthorized { .. } => 0,
        ApiError::ValidationFailed { .. } => 1,
        ApiError::DeviceAlreadyExists { .. } => 2,
        ApiError::DeviceNotFound { .. } => 3,
        ApiError::DevicesLimitExhausted { .. } => 4,
        ApiError::MulticastGroupAlreadyExists { .. } => 5,
        ApiError::MulticastGroupNotFound { .. } => 6,
        ApiError::MulticastGroupAlreadyContainsDevice { .. } => 7,
        _ => 8,
    }
}

/// Outcome slots: ok, the API codes, transport, decode.
const OUTCOMES: usize = 1 + API_CODES.len() + 2;
const OK: usize = 0;
const TRANSPORT: usize = 1 + API_CODES.len();
const DECODE: usize = TRANSPORT + 1;

/// The outcome of one REST call that went to the network.
pub(crate) enum Outcome<'a> {
    Ok,
    Failed(&'a Error),
}

fn outcome_index(outcome: &Outcome<'_>) -> usize {
    match outcome {
        Outcome::Ok => OK,
        Outcome::Failed(Error::Api(e)) => 1 + api_index(e),
        Outcome::Failed(Error::Decode { .. }) => DECODE,
        Outcome::Failed(_) => TRANSPORT,
    }
}

#[cfg(feature = "metrics")]
fn outcome_label(i: usize) -> &'static str {
    match i {
        OK => "ok",
        TRANSPORT => "transport",
        DECODE => "decode",
        i => API_CODES[i - 1],
    }
}

/// The live REST counters of a `Core` and its clones.
pub(crate) struct RestCounters {
    calls: [[AtomicU64; OUTCOMES]; OPERATIONS],
    micros: [AtomicU64; OPERATIONS],
}

impl RestCounters {
    pub(crate) fn new() -> Self {
        Self {
            calls: Default::default(),
            micros: Default::default(),
        }
    }

    /// Counts a call of `op` that took `elapsed`.
    pub(crate) fn record(&self, op: RestOperation, outcome: Outcome<'_>, elapsed: Duration) {
        let o = outcome_index(&outcome);
        self.calls[op.index()][o].fetch_add(1, Relaxed);
        self.micros[op.index()].fetch_add(elapsed.as_micros() as u64, Relaxed);
        #[cfg(feature = "metrics")]
        {
            // Not a hot path: a REST call costs a round trip, a registry look-up is noise.
            metrics::counter!(
                "ran_routing_rest_requests_total",
                "operation" => op.as_str(),
                "outcome" => outcome_label(o),
            )
            .increment(1);
            metrics::histogram!(
                "ran_routing_rest_request_duration_seconds",
                "operation" => op.as_str(),
            )
            .record(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> RestStats {
        let operations = RestOperation::ALL
            .iter()
            .map(|op| {
                let c = &self.calls[op.index()];
                let get = |i: usize| c[i].load(Relaxed);
                let api_errors = API_CODES
                    .iter()
                    .enumerate()
                    .map(|(i, code)| (*code, get(1 + i)))
                    .filter(|(_, n)| *n > 0)
                    .collect::<BTreeMap<_, _>>();
                let stats = RestOperationStats {
                    calls: (0..OUTCOMES).map(get).sum(),
                    ok: get(OK),
                    api_errors,
                    transport_errors: get(TRANSPORT),
                    decode_errors: get(DECODE),
                    total_time: Duration::from_micros(self.micros[op.index()].load(Relaxed)),
                };
                (op.as_str(), stats)
            })
            .collect();
        RestStats { operations }
    }
}

/// The REST calls of one operation, in [`RestStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestOperationStats {
    /// Calls that went to the network (a call refused before, for bad input or a closed
    /// `Core`, is not counted).
    pub calls: u64,
    /// Calls answered with success.
    pub ok: u64,
    /// Calls the API answered with an error, by its error code
    /// ([`ApiError::code`], or `unknown`); only codes seen are listed.
    pub api_errors: BTreeMap<&'static str, u64>,
    /// Calls that failed in transport: connect, TLS, timeout, I/O.
    pub transport_errors: u64,
    /// Calls answered with success whose body did not decode.
    pub decode_errors: u64,
    /// Time spent in all the calls, from the request to the answer's last byte.
    /// Serialized in seconds.
    #[serde(serialize_with = "secs")]
    pub total_time: Duration,
}

impl RestOperationStats {
    /// Calls that failed, for any reason.
    pub fn errors(&self) -> u64 {
        self.calls - self.ok
    }

    /// The mean time of a call; `None` before the first.
    pub fn mean_time(&self) -> Option<Duration> {
        (self.calls > 0).then(|| self.total_time / self.calls as u32)
    }
}

/// A snapshot of a `Core`'s REST calls, from [`Core::rest_stats`](crate::Core::rest_stats):
/// counted since the `Core` was built, over all its clones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestStats {
    /// Every operation by [its name](RestOperation::as_str), called or not.
    pub operations: BTreeMap<&'static str, RestOperationStats>,
}

impl RestStats {
    /// The counters of `op`.
    pub fn operation(&self, op: RestOperation) -> &RestOperationStats {
        &self.operations[op.as_str()]
    }

    /// Calls of every operation.
    pub fn calls(&self) -> u64 {
        self.operations.values().map(|o| o.calls).sum()
    }

    /// Failed calls of every operation.
    pub fn errors(&self) -> u64 {
        self.operations.values().map(|o| o.errors()).sum()
    }
}

impl fmt::Display for RestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time: Duration = self.operations.values().map(|o| o.total_time).sum();
        write!(
            f,
            "rest: {} calls, {} failed, {:.3}s total",
            self.calls(),
            self.errors(),
            time.as_secs_f64()
        )
    }
}
