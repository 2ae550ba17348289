//! Typed errors of the SDK. The binary adds context (which file, which command) on top.

use thiserror::Error;

/// Everything that can go wrong inside the SDK.
#[derive(Debug, Error)]
pub enum SdkError {
    /// An architecture string or file that does not fit its space.
    #[error("{0}")]
    Arch(String),
    /// A name that is not registered (space, layer type, device, searcher...).
    #[error("unknown {kind} `{name}` (known: {known})")]
    Unknown {
        /// What kind of thing was looked up.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The registered names.
        known: String,
    },
    /// A layer or option setting that is missing or of the wrong type.
    #[error("{0}")]
    Setting(String),
    /// A configuration that cannot be built (resolution, widths, heads...).
    #[error("{0}")]
    Config(String),
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A malformed JSON document with the path it came from.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

impl SdkError {
    /// Whether the error comes from what the user gave (exit code 2): a bad architecture, name,
    /// setting, configuration or document, rather than a failure of the system.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            SdkError::Arch(_)
                | SdkError::Unknown { .. }
                | SdkError::Setting(_)
                | SdkError::Config(_)
                | SdkError::Json { .. }
        )
    }
}

/// Result with [`SdkError`].
pub type Result<T, E = SdkError> = std::result::Result<T, E>;
