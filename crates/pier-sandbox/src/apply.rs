//! Applying network plans: the [`NetApplier`] trait, a recording test double, and
//! [`apply_plan`] with rollback.

use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::names::{IfName, NetnsName};
use crate::plan::{NetOp, Netns};

/// Why one operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A named namespace is missing (`/run/netns/<name>` cannot be opened).
    #[error("network namespace {0} does not exist")]
    NoSuchNetns(NetnsName),
    /// `AddNetns` for a name that exists: never take over a namespace we did not make.
    #[error("network namespace {0} already exists")]
    NetnsExists(NetnsName),
    /// A link the operation needs is missing.
    #[error("link {name} not found in {ns:?}")]
    NoSuchLink {
        /// Where it was looked up.
        ns: Netns,
        /// Link name.
        name: IfName,
    },
    /// A system call (namespace, mount, file) failed.
    #[error("{op} {path}")]
    Sys {
        /// What was done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("netlink request failed")]
    Netlink(#[source] rtnetlink::Error),
    /// A recording applier was told to fail here.
    #[error("injected failure")]
    Injected,
}

impl OpError {
    /// The kernel's errno, when the kernel refused a netlink request.
    pub fn netlink_errno(&self) -> Option<i32> {
        match self {
            OpError::Netlink(rtnetlink::Error::NetlinkError(m)) => Some(m.raw_code().abs()),
            _ => None,
        }
    }
}

/// Carries out single [`NetOp`]s. Calls block: async callers apply whole plans on a
/// blocking thread, so one pod's dozen requests cost one hop off the runtime.
///
/// Contract: deletions succeed when the object is already gone; creations fail when
/// it exists (so a rollback never deletes something another party made).
pub trait NetApplier: Send + Sync {
    /// Performs `op`.
    fn apply(&self, op: &NetOp) -> Result<(), OpError>;
}

/// Applying a plan failed; everything it had created was rolled back.
#[derive(Debug, thiserror::Error)]
#[error("apply `{op}` (step {step}); rolled back {rolled_back} step(s), {} rollback failure(s)", rollback_failures.len())]
pub struct ApplyError {
    /// The failed operation.
    pub op: NetOp,
    /// Its index in the plan.
    pub step: usize,
    /// Why it failed.
    #[source]
    pub source: OpError,
    /// How many undo operations succeeded.
    pub rolled_back: usize,
    /// Undo operations that failed too (what may be left behind).
    pub rollback_failures: Vec<(NetOp, OpError)>,
}

/// Applies `ops` in order. On the first failure, runs the [`NetOp::undo`] of every
/// operation that succeeded, newest first, and returns the failure.
// A failed plan is rare and carries its whole story (op, cause, rollback); its size
// costs nothing on the success path.
#[allow(clippy::result_large_err)]
pub fn apply_plan<A: NetApplier + ?Sized>(applier: &A, ops: &[NetOp]) -> Result<(), ApplyError> {
    for (step, op) in ops.iter().enumerate() {
        if let Err(source) = applier.apply(op) {
            let mut rolled_back = 0;
            let mut rollback_failures = Vec::new();
            for done in ops[..step].iter().rev() {
                if let Some(undo) = done.undo() {
                    match applier.apply(&undo) {
                        Ok(()) => rolled_back += 1,
                        Err(e) => rollback_failures.push((undo, e)),
                    }
                }
            }
            return Err(ApplyError { op: op.clone(), step, source, rolled_back, rollback_failures });
        }
    }
    Ok(())
}

/// Some teardown operations failed; the others were still carried out.
#[derive(Debug, thiserror::Error)]
#[error("teardown: {} operation(s) failed, first `{}`", failures.len(), failures.first().map(|(op, _)| op.to_string()).unwrap_or_default())]
pub struct TeardownError {
    /// Every failed operation with its error.
    pub failures: Vec<(NetOp, OpError)>,
}

/// Applies every operation of a teardown, continuing past failures so one stuck link
/// does not leave a namespace behind.
pub fn apply_teardown<A: NetApplier + ?Sized>(applier: &A, ops: &[NetOp]) -> Result<(), TeardownError> {
    let mut failures = Vec::new();
    for op in ops {
        if let Err(e) = applier.apply(op) {
            failures.push((op.clone(), e));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(TeardownError { failures })
    }
}

/// A [`NetApplier`] that records operations instead of performing them, and can be
/// told to fail on one.
#[derive(Debug, Default)]
pub struct RecordingApplier {
    log: Mutex<Vec<NetOp>>,
    fail_on: Option<String>,
}

impl RecordingApplier {
    /// Records everything, fails nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails (with [`OpError::Injected`]) on the operation whose text is `line`.
    pub fn failing_on(line: impl Into<String>) -> Self {
        Self { log: Mutex::new(Vec::new()), fail_on: Some(line.into()) }
    }

    /// The operations applied so far, the failed one included.
    pub fn ops(&self) -> Vec<NetOp> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The operations as text, one per line.
    pub fn text(&self) -> String {
        crate::plan::render_text(&self.ops())
    }
}

impl NetApplier for RecordingApplier {
    fn apply(&self, op: &NetOp) -> Result<(), OpError> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(op.clone());
        if self.fail_on.as_deref() == Some(op.to_string().as_str()) {
            return Err(OpError::Injected);
        }
        Ok(())
    }
}
