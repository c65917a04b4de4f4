//! The result of running a handler once, in upstream's four-way classification.

/// The outcome of one probe attempt, as upstream's `probe.Result` plus output or error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed; carries the handler's output (an HTTP body, a command's output).
    Success(String),
    /// The check passed with a caveat (an HTTP redirect to another host was not followed); the
    /// kubelet records a `ProbeWarning` event with this text and counts the attempt as a success.
    Warning(String),
    /// The check failed; the text is what the `Unhealthy` event shows after `... probe failed: `.
    Failure(String),
    /// The check could not be run (unknown port name, the command could not start, the body read
    /// timed out). Upstream retries such attempts up to 3 times, then discards the result: it does not
    /// count towards any threshold.
    Errored {
        /// The result upstream reports alongside the error: `unknown` or `failure`.
        state: &'static str,
        /// The error text.
        message: String,
    },
}

impl Outcome {
    /// Whether the attempt counts as a success (`Success` or `Warning`).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_) | Outcome::Warning(_))
    }

    pub(crate) fn unknown(message: impl Into<String>) -> Self {
        Outcome::Errored { state: "unknown", message: message.into() }
    }
}
