//! The scheduler's decision, free of I/O: which nodes a pod fits (upstream's
//! NodeUnschedulable, TaintToleration and NodeAffinity filter plugins, in that order,
//! the first failing one giving a node's reason), which of them wins, and the
//! `FailedScheduling` message in upstream's (1.33) words.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Why one node does not fit, worded as upstream's plugins word it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeReason {
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeSelector,
}

impl NodeReason {
    fn text(&self) -> String {
        match self {
            NodeReason::Unschedulable => "node(s) were unschedulable".to_string(),
            NodeReason::UntoleratedTaint { key, value } => {
                format!("node(s) had untolerated taint {{{key}: {value}}}")
            }
            NodeReason::NodeSelector => "node(s) didn't match Pod's node affinity/selector".to_string(),
        }
    }
}

/// Why a pod fits no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// There are no nodes at all (upstream's `ErrNoNodesAvailable`).
    NoNodes,
    /// Every node failed a filter: how many nodes there are and each one's reason.
    Filtered { nodes: usize, reasons: Vec<NodeReason> },
}

impl Unfit {
    /// The PodScheduled condition's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            // Upstream reports a scheduler error, not an unschedulable pod, then.
            Unfit::NoNodes => "SchedulerError",
            Unfit::Filtered { .. } => "Unschedulable",
        }
    }

    /// The message of the FailedScheduling event and of the condition, e.g.
    /// `0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.
    /// preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.`
    pub fn message(&self) -> String {
        match self {
            Unfit::NoNodes => "no nodes available to schedule pods".to_string(),
            Unfit::Filtered { nodes, reasons } => {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for r in reasons {
                    *counts.entry(r.text()).or_default() += 1;
                }
                // Upstream sorts the "<count> <reason>" strings themselves.
                let mut parts: Vec<String> = counts.iter().map(|(text, n)| format!("{n} {text}")).collect();
                parts.sort();
                // Every filter here fails in a way evicting pods cannot fix, so
                // preemption is not helpful on any node.
                format!(
                    "0/{nodes} nodes are available: {}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling.",
                    parts.join(", ")
                )
            }
        }
    }
}

/// The facts about a node that scheduling depends on: a change in them may let
/// pods that fit nowhere fit now; any other change (heartbeats) cannot.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    ready: Option<String>,
    unschedulable: bool,
    labels: Option<BTreeMap<String, String>>,
    taints: Vec<Taint>,
}

impl NodeFacts {
    pub fn of(node: &Node) -> Self {
        NodeFacts {
            ready: ready_status(node),
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            labels: node.metadata.labels.clone(),
            taints: node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
        }
    }
}

fn ready_status(node: &Node) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

/// Upstream's `ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.to_string(), effect: effect.to_string(), value: None, time_added: None }
}

/// The node's taints as the scheduler sees them: its own, plus the one upstream's
/// node lifecycle controller would add for a node that is not Ready (Pier has no
/// such controller, and nodes written by tests carry only a condition).
fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let implicit = match ready_status(node).as_deref() {
        Some("True") => None,
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        _ => Some(NOT_READY_TAINT),
    };
    if let Some(key) = implicit {
        if !taints.iter().any(|t| t.key == key) {
            taints.push(taint(key, "NoSchedule"));
        }
    }
    taints
}

/// Why `pod` does not fit `node`, or `None` when it does.
pub fn unfit_reason(pod: &Pod, node: &Node) -> Option<NodeReason> {
    let spec = pod.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    // NodeUnschedulable.
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        let cordon = taint(UNSCHEDULABLE_TAINT, "NoSchedule");
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Some(NodeReason::Unschedulable);
        }
    }
    // TaintToleration: the first untolerated NoSchedule/NoExecute taint.
    for t in effective_taints(node) {
        if t.effect != "NoSchedule" && t.effect != "NoExecute" {
            continue;
        }
        if !tolerations.iter().any(|tol| tolerates(tol, &t)) {
            return Some(NodeReason::UntoleratedTaint { key: t.key, value: t.value.unwrap_or_default() });
        }
    }
    // NodeAffinity (the nodeSelector part).
    let labels = node.metadata.labels.as_ref();
    let selector = spec.and_then(|s| s.node_selector.as_ref());
    if !selector.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
        return Some(NodeReason::NodeSelector);
    }
    None
}

/// The node for `pod`: among those it fits, the one with the fewest pods, the first by
/// name on a tie (`nodes` come sorted by name).
pub fn pick(pod: &Pod, nodes: &[&Node], pods_per_node: &HashMap<String, usize>) -> Result<String, Unfit> {
    if nodes.is_empty() {
        return Err(Unfit::NoNodes);
    }
    let mut best: Option<(usize, &str)> = None;
    let mut reasons = Vec::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match unfit_reason(pod, node) {
            Some(r) => reasons.push(r),
            None => {
                let count = pods_per_node.get(name).copied().unwrap_or(0);
                if best.is_none_or(|(c, _)| count < c) {
                    best = Some((count, name));
                }
            }
        }
    }
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(Unfit::Filtered { nodes: nodes.len(), reasons }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use kube::api::ObjectMeta;

    fn node(name: &str, ready: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn pod(selector: &[(&str, &str)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_selector: (!selector.is_empty())
                    .then(|| selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn fewest_pods_wins_and_ties_go_to_the_first_name() {
        let (a, b) = (node("a", "True", &[]), node("b", "True", &[]));
        let mut counts = HashMap::new();
        assert_eq!(pick(&pod(&[]), &[&a, &b], &counts), Ok("a".to_string()));
        counts.insert("a".to_string(), 2);
        counts.insert("b".to_string(), 1);
        assert_eq!(pick(&pod(&[]), &[&a, &b], &counts), Ok("b".to_string()));
    }

    #[test]
    fn node_selector_is_respected_with_upstreams_message() {
        let n = node("n1", "True", &[("disk", "hdd")]);
        let p = pod(&[("disk", "ssd")]);
        let err = pick(&p, &[&n], &HashMap::new()).expect_err("does not fit");
        assert_eq!(err.reason(), "Unschedulable");
        assert_eq!(
            err.message(),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        let m = node("n2", "True", &[("disk", "ssd")]);
        assert_eq!(pick(&p, &[&n, &m], &HashMap::new()), Ok("n2".to_string()));
    }

    #[test]
    fn not_ready_unschedulable_and_tainted_nodes_are_filtered_and_counted() {
        let not_ready = node("a", "False", &[]);
        let mut cordoned = node("b", "True", &[]);
        cordoned.spec = Some(NodeSpec { unschedulable: Some(true), ..NodeSpec::default() });
        let mut tainted = node("c", "True", &[]);
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("db".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            ..NodeSpec::default()
        });
        let wrong_labels = node("d", "True", &[]);
        let p = pod(&[("zone", "x")]);
        let err = pick(&p, &[&not_ready, &cordoned, &tainted, &wrong_labels], &HashMap::new())
            .expect_err("fits nowhere");
        assert_eq!(
            err.message(),
            "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had untolerated taint \
             {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. preemption: 0/4 nodes \
             are available: 4 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn tolerations_let_pods_onto_tainted_nodes() {
        let n = node("a", "False", &[]);
        let mut p = pod(&[]);
        if let Some(spec) = p.spec.as_mut() {
            spec.tolerations = Some(vec![Toleration {
                key: Some(NOT_READY_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Toleration::default()
            }]);
        }
        assert_eq!(pick(&p, &[&n], &HashMap::new()), Ok("a".to_string()));
    }

    #[test]
    fn no_nodes_is_a_scheduler_error() {
        let err = pick(&pod(&[]), &[], &HashMap::new()).expect_err("no nodes");
        assert_eq!(err.message(), "no nodes available to schedule pods");
        assert_eq!(err.reason(), "SchedulerError");
    }
}
