//! Every resource Pier serves: its group, version, kind, plural, scope, short names and
//! categories, as upstream's discovery documents describe them.

/// Whether objects of a resource live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One resource of the API, such as `services` in the core group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; empty for the core ("legacy") group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served besides the main resource: `status`, `scale`.
    pub subresources: &'static [&'static str],
    /// The OpenAPI definition name of the kind, e.g. `io.k8s.api.core.v1.Service`.
    pub schema_name: &'static str,
}

impl ResourceDef {
    /// `v1` for the core group, `apps/v1` otherwise: the `apiVersion` of objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn is_namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// The verbs upstream lists in discovery for the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $scope:ident,
     $short:expr, $cats:expr, $subs:expr, $schema:expr) => {
        ResourceDef {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            scope: Scope::$scope,
            short_names: $short,
            categories: $cats,
            subresources: $subs,
            schema_name: $schema,
        }
    };
}

/// Every resource, grouped by group-version in the order discovery lists them.
pub static RESOURCES: &[ResourceDef] = &[
    res!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        Namespaced,
        &["cm"],
        NONE,
        NONE,
        "io.k8s.api.core.v1.ConfigMap"
    ),
    res!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        Namespaced,
        &["ep"],
        NONE,
        NONE,
        "io.k8s.api.core.v1.Endpoints"
    ),
    res!("", "v1", "Event", "events", "event", Namespaced, &["ev"], NONE, NONE, "io.k8s.api.core.v1.Event"),
    res!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        Cluster,
        &["ns"],
        NONE,
        &["status"],
        "io.k8s.api.core.v1.Namespace"
    ),
    res!("", "v1", "Node", "nodes", "node", Cluster, &["no"], NONE, &["status"], "io.k8s.api.core.v1.Node"),
    res!("", "v1", "Pod", "pods", "pod", Namespaced, &["po"], ALL, &["status"], "io.k8s.api.core.v1.Pod"),
    res!(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        Namespaced,
        &["rc"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.core.v1.ReplicationController"
    ),
    res!("", "v1", "Secret", "secrets", "secret", Namespaced, NONE, NONE, NONE, "io.k8s.api.core.v1.Secret"),
    res!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        Namespaced,
        &["sa"],
        NONE,
        NONE,
        "io.k8s.api.core.v1.ServiceAccount"
    ),
    res!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        Namespaced,
        &["svc"],
        ALL,
        &["status"],
        "io.k8s.api.core.v1.Service"
    ),
    res!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        Namespaced,
        &["deploy"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.apps.v1.Deployment"
    ),
    res!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        Namespaced,
        &["rs"],
        ALL,
        &["status", "scale"],
        "io.k8s.api.apps.v1.ReplicaSet"
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        Namespaced,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.coordination.v1.Lease"
    ),
    res!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        Namespaced,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.discovery.v1.EndpointSlice"
    ),
    res!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        Namespaced,
        &["ev"],
        NONE,
        NONE,
        "io.k8s.api.events.v1.Event"
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        Cluster,
        NONE,
        NONE,
        NONE,
        "io.k8s.api.networking.v1.IngressClass"
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        Namespaced,
        &["ing"],
        NONE,
        &["status"],
        "io.k8s.api.networking.v1.Ingress"
    ),
];

/// The resource with this group and plural name.
pub fn find(group: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
}

/// The resource of this group and kind.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The distinct group-versions, core (`v1`) first, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The resources of one group-version.
pub fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_comes_first_and_groups_are_distinct() {
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert!(gvs.contains(&("apps", "v1")));
        let mut dedup = gvs.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), gvs.len());
    }

    #[test]
    fn lookups_by_plural_and_kind_agree() {
        let svc = find("", "services").expect("services");
        assert_eq!(svc.kind, "Service");
        assert_eq!(find_kind("", "Service"), Some(svc));
        assert_eq!(svc.api_version(), "v1");
        assert_eq!(find("apps", "deployments").map(|d| d.api_version()), Some("apps/v1".into()));
    }
}
