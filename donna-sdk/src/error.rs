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
    /// A plugin failed where the SDK's traits have no error path (see [`PluginFailure`]).
    #[error("{0}")]
    Plugin(String),
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

/// The panic payload a plugin adapter raises where the SDK's traits have no error path: a
/// layer's forward pass (tch's `ModuleT::forward_t` returns a tensor, not a result). The
/// plugin side already turned its own panic or error into a value at the boundary; this
/// unwinds host frames only, up to [`catch_plugin_failure`], which makes it an error again.
#[derive(Clone, Debug)]
pub struct PluginFailure(pub String);

/// Runs `f`; a [`PluginFailure`] raised inside becomes [`SdkError::Plugin`]. Other panics
/// (bugs) go on unwinding.
pub fn catch_plugin_failure<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => match payload.downcast::<PluginFailure>() {
            Ok(failure) => Err(SdkError::Plugin(failure.0)),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

/// Keeps the panic hook quiet for [`PluginFailure`]s (they are reported as errors where they
/// are caught); every other panic is printed as before.
pub fn quiet_plugin_failures() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<PluginFailure>().is_none() {
            previous(info);
        }
    }));
}

/// Result with [`SdkError`].
pub type Result<T, E = SdkError> = std::result::Result<T, E>;
