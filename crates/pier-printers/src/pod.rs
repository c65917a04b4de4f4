//! The Pod row: READY, STATUS and RESTARTS as upstream's `printPod` derives them from the
//! pod's phase, conditions and container statuses.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::duration::translate_timestamp_since;
use crate::json::{arr_at, bool_at, get, int_at, object, str_at, time_at};

/// The node controller's `status.reason` for pods on a node that stopped reporting.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

pub(crate) fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = get(pod, &["spec"]);
    let status = get(pod, &["status"]);
    let init_specs = arr_at(spec, &["initContainers"]);
    let conditions = arr_at(status, &["conditions"]);
    let phase = str_at(status, &["phase"]);

    let mut reason = phase.to_string();
    if !str_at(status, &["reason"]).is_empty() {
        reason = str_at(status, &["reason"]).to_string();
    }
    if conditions
        .iter()
        .any(|c| str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    // Sidecars (init containers that keep running) count as containers of the pod.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .find(|c| str_at(c, &["name"]) == name)
            .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
    };
    let mut total = arr_at(spec, &["containers"]).len();
    total += init_specs.iter().filter(|c| str_at(c, &["restartPolicy"]) == "Always").count();

    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut sidecar_restarts = 0i64;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let mut initializing = false;
    for (i, c) in arr_at(status, &["initContainerStatuses"]).iter().enumerate() {
        let restart_count = int_at(c, &["restartCount"]);
        let finished = time_at(c, &["lastState", "terminated", "finishedAt"]);
        restarts += restart_count;
        last_restart = later(last_restart, finished);
        let sidecar = is_sidecar(str_at(c, &["name"]));
        if sidecar {
            sidecar_restarts += restart_count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = object(c, &["state", "terminated"]);
        let waiting_reason = str_at(c, &["state", "waiting", "reason"]);
        match terminated {
            Some(t) if int_at(t, &["exitCode"]) == 0 => continue,
            _ if sidecar && bool_at(c, &["started"]) => {
                if bool_at(c, &["ready"]) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match str_at(t, &["reason"]) {
                    "" if int_at(t, &["signal"]) != 0 => format!("Init:Signal:{}", int_at(t, &["signal"])),
                    "" => format!("Init:ExitCode:{}", int_at(t, &["exitCode"])),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{}/{}", i, init_specs.len()),
        }
        // The first init container that has not completed decides the status.
        initializing = true;
        break;
    }

    if !initializing || is_condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // In reverse, so that the first container's state is the one left in `reason`.
        for c in arr_at(status, &["containerStatuses"]).iter().rev() {
            restarts += int_at(c, &["restartCount"]);
            last_restart = later(last_restart, time_at(c, &["lastState", "terminated", "finishedAt"]));
            let waiting = object(c, &["state", "waiting"]);
            let terminated = object(c, &["state", "terminated"]);
            if let Some(w) = waiting.filter(|w| !str_at(w, &["reason"]).is_empty()) {
                reason = str_at(w, &["reason"]).to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" if int_at(t, &["signal"]) != 0 => format!("Signal:{}", int_at(t, &["signal"])),
                    "" => format!("ExitCode:{}", int_at(t, &["exitCode"])),
                    r => r.to_string(),
                };
            } else if bool_at(c, &["ready"]) && object(c, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose first container completed but another still runs is not completed.
        if reason == "Completed" && has_running {
            reason = if is_condition_true(conditions, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = !get(pod, &["metadata", "deletionTimestamp"]).is_null();
    if deleting && str_at(status, &["reason"]) == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", translate_timestamp_since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // Upstream reads the internal podIPs[0], which conversion from v1 always makes equal
    // to status.podIP.
    let pod_ip = or_none(str_at(status, &["podIP"]));
    let node_name = or_none(str_at(spec, &["nodeName"]));
    let nominated = or_none(str_at(status, &["nominatedNodeName"]));
    let gates = arr_at(spec, &["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                let ty = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == ty)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };

    vec![
        json!(str_at(pod, &["metadata", "name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(translate_timestamp_since(time_at(pod, &["metadata", "creationTimestamp"]), now)),
        json!(pod_ip),
        json!(node_name),
        json!(nominated),
        json!(readiness_gates),
    ]
}

/// Row conditions: upstream marks finished pods `Completed` so that clients may dim them.
pub(crate) fn conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

/// Whether the first condition of this type has status True.
fn is_condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions.iter().find(|c| str_at(c, &["type"]) == ty).is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}
