//! Probe kinds and a probe's timing settings with upstream's defaults.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

/// Which of a container's three probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `readinessProbe`: gates the container's `Ready` condition.
    Readiness,
    /// `livenessProbe`: restarts the container after `failureThreshold` failures.
    Liveness,
    /// `startupProbe`: holds the other two back until it succeeds once.
    Startup,
}

impl ProbeKind {
    /// The name upstream uses in event messages: `Readiness`, `Liveness`, `Startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Startup => "Startup",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probe's timing, defaulted as the API server does and clamped so a worker can always run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `initialDelaySeconds` (default 0): no probe until the container has run this long.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10, at least 1).
    pub period: Duration,
    /// `timeoutSeconds` (default 1, at least 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1, at least 1): consecutive successes to count as passing.
    pub success_threshold: u32,
    /// `failureThreshold` (default 3, at least 1): consecutive failures to count as failing.
    pub failure_threshold: u32,
    /// The probe-level `terminationGracePeriodSeconds`, which overrides the pod's when a liveness
    /// or startup failure kills the container.
    pub termination_grace_period_seconds: Option<i64>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
            termination_grace_period_seconds: None,
        }
    }
}

impl From<&Probe> for ProbeSettings {
    fn from(probe: &Probe) -> Self {
        let d = ProbeSettings::default();
        let secs = |v: Option<i32>, default: Duration, min: u64| {
            v.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0).max(min))).unwrap_or(default)
        };
        let count =
            |v: Option<i32>, default: u32| v.map(|n| u32::try_from(n).unwrap_or(0).max(1)).unwrap_or(default);
        ProbeSettings {
            initial_delay: secs(probe.initial_delay_seconds, d.initial_delay, 0),
            period: secs(probe.period_seconds, d.period, 1),
            timeout: secs(probe.timeout_seconds, d.timeout, 1),
            success_threshold: count(probe.success_threshold, d.success_threshold),
            failure_threshold: count(probe.failure_threshold, d.failure_threshold),
            termination_grace_period_seconds: probe.termination_grace_period_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_clamps() {
        assert_eq!(ProbeSettings::from(&Probe::default()), ProbeSettings::default());
        let probe = Probe {
            period_seconds: Some(0),
            failure_threshold: Some(-1),
            initial_delay_seconds: Some(5),
            ..Probe::default()
        };
        let s = ProbeSettings::from(&probe);
        assert_eq!(
            (s.period, s.failure_threshold, s.initial_delay),
            (Duration::from_secs(1), 1, Duration::from_secs(5))
        );
    }
}
