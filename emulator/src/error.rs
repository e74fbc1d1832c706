//! The emulator's error type.

/// Why an emulator call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting is unusable (a bad base path, a zero timeout, a bad token).
    #[error("bad emulator configuration: {0}")]
    Config(String),
    /// Binding the socket or starting a thread failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The self-signed certificate could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The call's input is unusable: an unknown radio device, a device without the keys
    /// the call needs, a challenge size out of range, a payload too long.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// No stream connection could take the frame: none is open, or the one chosen failed.
    #[error("{0}")]
    Closed(String),
    /// The control API refused a [`ControlClient`](crate::ControlClient) call with this
    /// status and error code (the service's error body).
    #[error("the control API answered {status} {code}: {description}")]
    Control {
        /// The HTTP status.
        status: u16,
        /// The `error_code`, e.g. `Emulator.UnknownRadioDevice`.
        code: String,
        /// The `error_description`.
        description: String,
    },
    /// A [`ControlClient`](crate::ControlClient) call could not reach the control API, or
    /// its answer could not be read.
    #[error("control API request failed: {0}")]
    Transport(String),
}

/// The emulator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
