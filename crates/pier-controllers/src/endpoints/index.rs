//! The in-memory index the controller reacts from: pods by namespace and by label,
//! Services by namespace and by selector term. One pod change looks up only the
//! Services whose selector could match it (through one of its labels), and one
//! Service sync looks only at the pods carrying its rarest selector term, so neither
//! grows with the size of the namespace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::desired;

type Term = (String, String);

#[derive(Default)]
struct NsPods {
    by_name: HashMap<String, Arc<Pod>>,
    by_label: HashMap<Term, HashSet<String>>,
}

#[derive(Default)]
struct NsServices {
    by_name: HashMap<String, Arc<Service>>,
    /// Services by each `key=value` term of their selector.
    by_term: HashMap<Term, HashSet<String>>,
}

/// Pods and Services, indexed for the two questions the controller asks.
#[derive(Default)]
pub struct Index {
    pods: HashMap<String, NsPods>,
    services: HashMap<String, NsServices>,
}

fn ns_name<K: kube::Resource>(obj: &K) -> Option<(String, String)> {
    let m = obj.meta();
    Some((m.namespace.clone()?, m.name.clone()?))
}

fn labels_of(pod: &Pod) -> impl Iterator<Item = Term> + '_ {
    pod.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone()))
}

/// Whether every term of `selector` is among `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl Index {
    /// Adds or replaces a pod; returns the version it replaced.
    pub fn upsert_pod(&mut self, pod: Arc<Pod>) -> Option<Arc<Pod>> {
        let (ns, name) = ns_name(pod.as_ref())?;
        let old = self.remove_pod(&ns, &name);
        let entry = self.pods.entry(ns).or_default();
        for term in labels_of(&pod) {
            entry.by_label.entry(term).or_default().insert(name.clone());
        }
        entry.by_name.insert(name, pod);
        old
    }

    pub fn remove_pod(&mut self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        let entry = self.pods.get_mut(ns)?;
        let old = entry.by_name.remove(name)?;
        for term in labels_of(&old) {
            if let Some(set) = entry.by_label.get_mut(&term) {
                set.remove(name);
                if set.is_empty() {
                    entry.by_label.remove(&term);
                }
            }
        }
        if entry.by_name.is_empty() {
            self.pods.remove(ns);
        }
        Some(old)
    }

    /// Every pod's namespace and name (for pruning after a relist).
    pub fn pod_keys(&self) -> Vec<(String, String)> {
        self.pods.iter().flat_map(|(ns, p)| p.by_name.keys().map(move |n| (ns.clone(), n.clone()))).collect()
    }

    /// Adds or replaces a Service; returns the version it replaced.
    pub fn upsert_service(&mut self, svc: Arc<Service>) -> Option<Arc<Service>> {
        let (ns, name) = ns_name(svc.as_ref())?;
        let old = self.remove_service(&ns, &name);
        let entry = self.services.entry(ns).or_default();
        for term in desired::selector(&svc).into_iter().flatten() {
            entry.by_term.entry((term.0.clone(), term.1.clone())).or_default().insert(name.clone());
        }
        entry.by_name.insert(name, svc);
        old
    }

    pub fn remove_service(&mut self, ns: &str, name: &str) -> Option<Arc<Service>> {
        let entry = self.services.get_mut(ns)?;
        let old = entry.by_name.remove(name)?;
        for (k, v) in desired::selector(&old).into_iter().flatten() {
            let term = (k.clone(), v.clone());
            if let Some(set) = entry.by_term.get_mut(&term) {
                set.remove(name);
                if set.is_empty() {
                    entry.by_term.remove(&term);
                }
            }
        }
        if entry.by_name.is_empty() {
            self.services.remove(ns);
        }
        Some(old)
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Arc<Service>> {
        self.services.get(ns)?.by_name.get(name)
    }

    pub fn service_keys(&self) -> Vec<(String, String)> {
        self.services
            .iter()
            .flat_map(|(ns, s)| s.by_name.keys().map(move |n| (ns.clone(), n.clone())))
            .collect()
    }

    /// Names of the Services in `ns` whose selector matches `labels`.
    pub fn services_selecting(&self, ns: &str, labels: Option<&BTreeMap<String, String>>) -> Vec<String> {
        let Some(entry) = self.services.get(ns) else { return Vec::new() };
        let mut out: HashSet<&String> = HashSet::new();
        for (k, v) in labels.into_iter().flatten() {
            let Some(names) = entry.by_term.get(&(k.clone(), v.clone())) else { continue };
            for name in names {
                let matches = entry
                    .by_name
                    .get(name)
                    .and_then(|s| desired::selector(s))
                    .is_some_and(|sel| selects(sel, labels));
                if matches {
                    out.insert(name);
                }
            }
        }
        out.into_iter().cloned().collect()
    }

    /// The pods in `ns` that `selector` matches, found through its rarest term.
    pub fn pods_selected(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Arc<Pod>> {
        let Some(entry) = self.pods.get(ns) else { return Vec::new() };
        let mut smallest: Option<&HashSet<String>> = None;
        for (k, v) in selector {
            match entry.by_label.get(&(k.clone(), v.clone())) {
                None => return Vec::new(),
                Some(set) if smallest.is_none_or(|s| set.len() < s.len()) => smallest = Some(set),
                Some(_) => {}
            }
        }
        let Some(candidates) = smallest else { return Vec::new() };
        let mut pods: Vec<Arc<Pod>> = candidates
            .iter()
            .filter_map(|n| entry.by_name.get(n))
            .filter(|p| selects(selector, p.metadata.labels.as_ref()))
            .cloned()
            .collect();
        // A stable order keeps plans deterministic.
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }
}
